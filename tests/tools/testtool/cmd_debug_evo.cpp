// `evoq debug-evo`: internal entry points the tests drive from Python.
//  - `equations --in IN.json --out OUT.json`: Eq. 1-6 on JSON inputs (compared with oracles written
//    from the paper in tests/python/test_evo_equations.py).
//  - `vote-fake --pairs pairs.h5 --out labels.h5 ...`: the real voting loop (MPI rank split, shards,
//    resume, early stop, merge) with a deterministic fake model: answers come from a counter-based
//    hash, so runs are comparable bit for bit (tests/python/test_evo_labels.py).
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "evoq/evo/fidelity_reward.h"
#include "evoq/evo/group_advantage.h"
#include "evoq/evo/grpo_loss.h"
#include "evoq/evo/label_store.h"
#include "evoq/evo/majority_vote.h"
#include "evoq/evo/pairs.h"
#include "evoq/evo/vote_loop.h"
#include "evoq/evo/vote_stage.h"

namespace {

using namespace evoq;
using nlohmann::json;
namespace po = boost::program_options;

torch::Tensor to_tensor(const json& j, torch::Dtype dtype) {
  std::vector<double> flat;
  std::vector<int64_t> shape;
  if (j.is_array() && !j.empty() && j[0].is_array()) {
    shape = {int64_t(j.size()), int64_t(j[0].size())};
    for (const auto& row : j) {
      EVOQ_CHECK(int64_t(row.size()) == shape[1], "ragged 2-D array");
      for (const auto& v : row) flat.push_back(v.get<double>());
    }
  } else {
    shape = {int64_t(j.size())};
    for (const auto& v : j) flat.push_back(v.get<double>());
  }
  return torch::tensor(flat, torch::kFloat64).reshape(shape).to(dtype);
}

json from_tensor(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kFloat64).contiguous();
  if (c.dim() == 0) return c.item<double>();
  json out = json::array();
  if (c.dim() == 1) {
    for (int64_t i = 0; i < c.size(0); ++i) out.push_back(c[i].item<double>());
  } else {
    for (int64_t i = 0; i < c.size(0); ++i) out.push_back(from_tensor(c[i]));
  }
  return out;
}

json run_reward(const json& in) {
  evo::RewardConfig config;
  config.gamma = in.value("gamma", config.gamma);
  config.min_partner_valid = in.value("min_partner_valid", config.min_partner_valid);
  const auto& images = in.at("images");
  std::vector<std::vector<double>> scores;
  std::vector<std::vector<std::uint8_t>> valid;
  std::vector<evo::ScoreStats> stats;
  for (const auto& image : images) {
    scores.push_back(image.at("scores").get<std::vector<double>>());
    valid.push_back(image.at("valid").get<std::vector<std::uint8_t>>());
    stats.push_back(evo::score_stats(scores.back(), valid.back()));
  }
  std::vector<evo::LabelledPair> pairs;
  for (const auto& pair : in.at("pairs")) pairs.push_back({pair[0].get<std::size_t>(), pair[1].get<std::size_t>(), pair[2].get<double>()});
  const auto rewards = evo::step_rewards(scores, valid, pairs, config);
  json out = json::array();
  for (std::size_t i = 0; i < images.size(); ++i) {
    const auto& r = rewards[i];
    out.push_back({{"rewards", r.rewards}, {"invalid", r.invalid}, {"partners_used", r.partners_used},
                   {"partners_skipped", r.partners_skipped}, {"has_signal", r.has_signal},
                   {"mean", stats[i].mean}, {"var", stats[i].var}, {"valid", stats[i].valid}});
  }
  return out;
}

json run_advantage(const json& in) {
  evo::AdvantageConfig config;
  config.epsilon = in.value("epsilon", config.epsilon);
  config.divide_by_std = in.value("divide_by_std", config.divide_by_std);
  json out = json::array();
  for (const auto& group : in.at("groups")) {
    auto a = evo::group_advantages(group.get<std::vector<double>>(), config);
    out.push_back({{"advantages", a.advantages}, {"zero_variance", a.zero_variance}});
  }
  return out;
}

json run_loss(const json& in) {
  evo::GrpoLossConfig config;
  const json c = in.value("config", json::object());
  config.clip_low = c.value("clip_low", config.clip_low);
  config.clip_high = c.value("clip_high", config.clip_high);
  config.beta = c.value("beta", config.beta);
  config.log_ratio_clamp = c.value("log_ratio_clamp", config.log_ratio_clamp);
  config.aggregation = evo::parse_loss_aggregation(c.value("aggregation", std::string("token-mean")));
  config.constant_divisor = c.value("constant_divisor", config.constant_divisor);
  const auto dtype = in.value("dtype", std::string("float64")) == "float32" ? torch::kFloat32 : torch::kFloat64;
  auto logp_new = to_tensor(in.at("logp_new"), dtype);
  auto mask = to_tensor(in.at("mask"), dtype);
  auto adv = to_tensor(in.at("advantages"), dtype);
  torch::Tensor old, ref;
  if (in.contains("logp_old") && !in["logp_old"].is_null()) old = to_tensor(in["logp_old"], dtype);
  if (in.contains("logp_ref") && !in["logp_ref"].is_null()) ref = to_tensor(in["logp_ref"], dtype);
  // Micro-batches (lists of row indices); default one micro-batch with every row.
  std::vector<std::vector<int64_t>> micro;
  if (in.contains("micro_batches")) micro = in["micro_batches"].get<std::vector<std::vector<int64_t>>>();
  else {
    micro.emplace_back();
    for (int64_t s = 0; s < logp_new.size(0); ++s) micro.back().push_back(s);
  }
  // The global normaliser: counts summed over every micro-batch (what an all-reduce would give).
  evo::LossCounts global;
  for (const auto& rows : micro) {
    auto counts = evo::local_counts(mask.index_select(0, torch::tensor(rows)));
    global.tokens += counts.tokens;
    global.sequences += counts.sequences;
  }
  const double normaliser = evo::loss_normaliser(config, global);
  auto leaf = logp_new.clone().requires_grad_(true);
  double loss = 0.0, clipped = 0.0, kl = 0.0, ratio = 0.0, tokens = 0.0;
  for (const auto& rows : micro) {
    auto idx = torch::tensor(rows);
    evo::GrpoLossInputs inputs{leaf.index_select(0, idx), old.defined() ? old.index_select(0, idx) : old,
                               ref.defined() ? ref.index_select(0, idx) : ref, adv.index_select(0, idx),
                               mask.index_select(0, idx)};
    auto out = evo::grpo_loss(inputs, config, normaliser);
    out.loss.backward();
    loss += out.loss.item<double>();
    clipped += out.clipped_tokens;
    kl += out.kl_sum;
    ratio += out.ratio_sum;
    tokens += out.tokens;
  }
  return {{"loss", loss}, {"grad", from_tensor(leaf.grad())}, {"normaliser", normaliser},
          {"clip_fraction", tokens > 0 ? clipped / tokens : 0.0}, {"kl_mean", tokens > 0 ? kl / tokens : 0.0},
          {"ratio_mean", tokens > 0 ? ratio / tokens : 0.0}, {"tokens", tokens}};
}

int run_equations(const po::variables_map& vm) {
  const std::string in_path = cli::require_string(vm, "in");
  std::ifstream f(in_path);
  EVOQ_CHECK(f, "cannot open '", in_path, "'");
  const json in = json::parse(f);
  json out = json::object();
  if (in.contains("majority")) {
    out["majority"] = json::array();
    for (const auto& v : in["majority"]) {
      const auto p = evo::preference_value(evo::majority_vote(v[0].get<int>(), v[1].get<int>()));
      out["majority"].push_back(p ? json(*p) : json(nullptr));
    }
  }
  if (in.contains("early_stop")) {
    out["early_stop"] = json::array();
    for (const auto& v : in["early_stop"])
      out["early_stop"].push_back(evo::outcome_decided(v[0].get<int>(), v[1].get<int>(), v[2].get<int>()));
  }
  // Each of reward / advantage / loss is a list of independent cases (one process start for all).
  for (const char* key : {"reward", "advantage"}) {
    if (!in.contains(key)) continue;
    out[key] = json::array();
    for (const auto& c : in[key]) out[key].push_back(std::string(key) == "reward" ? run_reward(c) : run_advantage(c));
  }
  if (in.contains("loss")) {
    out["loss"] = json::array();
    for (const auto& l : in["loss"]) out["loss"].push_back(run_loss(l));
  }
  std::ofstream(cli::require_string(vm, "out")) << out.dump();
  return 0;
}

// Fake model: image quality u(x) = hash of the image index; x_i is judged better with probability
// clamp(0.5 + 2 (u_i - u_j), 0.02, 0.98); a fraction of answers is invalid. All draws are
// counter-based hashes of (fake seed, pair, sample), so any rank split gives the same answers.
double unit(std::uint64_t h) { return double(h >> 11) * 0x1.0p-53; }

evo::SampleResult fake_answer(const evo::PairTask& task, int k, bool swapped, std::uint64_t fake_seed,
                              double invalid_rate) {
  const double u_i = unit(evo::counter_hash(fake_seed, std::uint64_t(task.image_i), 0));
  const double u_j = unit(evo::counter_hash(fake_seed, std::uint64_t(task.image_j), 0));
  const double p_i = std::clamp(0.5 + 2.0 * (u_i - u_j), 0.02, 0.98);
  if (unit(evo::counter_hash(fake_seed ^ 0x1111, std::uint64_t(task.pair_index), std::uint64_t(k))) < invalid_rate)
    return {evo::ShownAnswer::invalid, "no idea"};
  const bool i_better = unit(evo::counter_hash(fake_seed ^ 0x2222, std::uint64_t(task.pair_index), std::uint64_t(k))) < p_i;
  const bool first_better = i_better != swapped;
  return {first_better ? evo::ShownAnswer::first : evo::ShownAnswer::second,
          std::string("<think>fake</think> boxed{") + (first_better ? "0" : "1") + "}"};
}

std::set<std::int64_t> parse_index_list(const std::string& s) {
  std::set<std::int64_t> out;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (!tok.empty()) out.insert(std::stoll(tok));
  return out;
}

int run_vote_fake(const po::variables_map& vm) {
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  const std::string pairs_path = cli::require_string(vm, "pairs");
  const std::string out = cli::require_string(vm, "out");
  const std::string shard_dir = vm.count("shards") ? vm["shards"].as<std::string>() : out + ".shards";
  const auto pairs = evo::read_pairs_h5(pairs_path);
  evo::VoteConfig config;
  config.K = vm["K"].as<int>();
  config.seed = vm["seed"].as<unsigned long long>();
  config.early_stop = !vm.count("no-early-stop");
  config.flush_every_pairs = vm["flush-every"].as<int>();
  config.flush_every_seconds = vm["flush-seconds"].as<double>();
  config.samples_per_call = vm["samples-per-call"].as<int>();
  config.keep_responses = vm.count("keep-responses") > 0;
  config.split = evo::parse_rank_split(vm["split"].as<std::string>());
  config.progress_every_seconds = vm["progress-every"].as<double>();
  evo::LabelRunInfo info;
  info.model_path = "fake";
  info.model_checksum = "fake-" + std::to_string(vm["fake-seed"].as<unsigned long long>());
  info.K = config.K;
  info.sampling = {{"temperature", 1.0}, {"top_p", 1.0}, {"invalid_rate", vm["invalid-rate"].as<double>()}};
  info.seed = config.seed;
  info.prompt = "fake compare prompt";
  info.early_stop = config.early_stop;
  info.pairs_file = pairs_path;
  info.num_pairs = pairs.size();
  info.keep_responses = config.keep_responses;

  const auto fake_seed = vm["fake-seed"].as<unsigned long long>();
  const double invalid_rate = vm["invalid-rate"].as<double>();
  const int sleep_ms = vm["sleep-ms"].as<int>();
  const int sleep_us = vm["sleep-us"].as<int>();
  const auto response_bytes = std::size_t(std::max(0, vm["response-bytes"].as<int>()));
  const auto fail_images = parse_index_list(vm["fail-images"].as<std::string>());
  auto vote = evo::per_sample([&](const evo::PairTask& task, int k, bool swapped) {
    if (fail_images.count(task.image_i) || fail_images.count(task.image_j))
      fail("cannot read image '", pairs.image_paths[fail_images.count(task.image_i) ? task.image_i : task.image_j], "'");
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    if (sleep_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    auto answer = fake_answer(task, k, swapped, fake_seed, invalid_rate);
    if (response_bytes > answer.response.size())  // a long reasoning before the answer (benchmarks)
      answer.response.insert(0, std::string(response_bytes - answer.response.size(), 'x'));
    return answer;
  });
  evo::VoteStageConfig stage;
  stage.loop = config;
  stage.shard_dir = shard_dir;
  stage.out_path = out;
  stage.merge_only = vm.count("merge-only") > 0;
  stage.stats_path = vm.count("stats") ? vm["stats"].as<std::string>() : "";
  return evo::run_vote_stage(pairs, info, stage, evo::batched(vote), *comm);
}

void add_options(po::options_description& o, po::positional_options_description& pos) {
  o.add_options()
      ("what", po::value<std::string>(), "equations | vote-fake")
      ("in", po::value<std::string>(), "equations: input JSON")
      ("out", po::value<std::string>(), "equations: output JSON; vote-fake: labels.h5")
      ("pairs", po::value<std::string>(), "vote-fake: pairs.h5")
      ("shards", po::value<std::string>(), "vote-fake: shard folder (default OUT.shards)")
      ("K", po::value<int>()->default_value(8), "vote-fake: samples per pair")
      ("seed", po::value<unsigned long long>()->default_value(0), "vote-fake: vote seed (order swaps)")
      ("fake-seed", po::value<unsigned long long>()->default_value(7), "vote-fake: seed of the fake model")
      ("invalid-rate", po::value<double>()->default_value(0.1), "vote-fake: fraction of invalid answers")
      ("no-early-stop", "vote-fake: draw all K samples")
      ("flush-every", po::value<int>()->default_value(4), "vote-fake: flush the shard every N pairs")
      ("samples-per-call", po::value<int>()->default_value(1), "vote-fake: samples per vote call (0 = adaptive waves)")
      ("split", po::value<std::string>()->default_value("block"), "vote-fake: block | strided")
      ("sleep-ms", po::value<int>()->default_value(0), "vote-fake: sleep per sample (crash tests)")
      ("sleep-us", po::value<int>()->default_value(0), "vote-fake: sleep per sample in microseconds (benchmarks)")
      ("response-bytes", po::value<int>()->default_value(0), "vote-fake: pad each response to this length (benchmarks)")
      ("flush-seconds", po::value<double>()->default_value(60.0), "vote-fake: also flush after this many seconds")
      ("fail-images", po::value<std::string>()->default_value(""), "vote-fake: image indices that fail to load")
      ("keep-responses", "vote-fake: store raw responses")
      ("progress-every", po::value<double>()->default_value(10.0), "vote-fake: seconds between progress lines")
      ("merge-only", "vote-fake: only merge existing shards")
      ("stats", po::value<std::string>(), "vote-fake: per-rank statistics JSON");
  pos.add("what", 1);
}

int run(const po::variables_map& vm) {
  const std::string what = cli::require_string(vm, "what");
  if (what == "equations") return run_equations(vm);
  if (what == "vote-fake") return run_vote_fake(vm);
  throw UsageError("unknown debug-evo action '" + what + "' (equations | vote-fake)");
}

EVOQ_COMMAND("debug-evo", "internal: evaluate Eq. 1-6 on JSON / run the vote loop with a fake model (tests)",
             add_options, run, "evoq-testtool debug-evo equations --in IN.json --out OUT.json | vote-fake --pairs P --out L",
             /*hidden=*/false);

}  // namespace
