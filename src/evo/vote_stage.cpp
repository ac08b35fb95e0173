#include "evoq/evo/vote_stage.h"

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/evo/model_voter.h"
#include "evoq/dist/stop_signal.h"
#include "evoq/gen/prompts.h"
#include "evoq/io/checkpoint_summary.h"
#include "evoq/io/atomic_file.h"

namespace evoq::evo {

namespace {

using nlohmann::json;

json stats_json(const VoteStats& s, int rank) {
  return {{"rank", rank},       {"assigned", s.assigned}, {"skipped", s.skipped},
          {"done", s.done},     {"failed", s.failed},     {"samples", s.samples},
          {"samples_saved", s.samples_saved}, {"invalid", s.invalid}, {"seconds", s.seconds},
          {"stopped", s.stopped}, {"flush_seconds", s.flush_seconds}};
}

// Votes this rank's pairs; returns its statistics, or throws (every rank) after the agreement.
json vote_on_every_rank(const PairSet& pairs, const LabelRunInfo& info, const VoteStageConfig& config,
                        const BatchVoteFn& vote, dist::Communicator& comm,
                        const std::function<json()>& rank_extras, std::vector<json>& all_ranks) {
  dist::install_stop_handlers();
  std::string error;
  json mine;
  try {
    LabelStore store(config.shard_dir, comm.rank(), info);
    if (comm.is_root())
      log::info("vote: ", pairs.size(), " pairs, K = ", config.loop.K, ", ", comm.size(), " rank(s), ",
                store.finished_count(), " already finished in ", config.shard_dir);
    const auto progress = [&](const std::string& line) {
      if (comm.is_root()) log::info(line);
    };
    const auto stats = run_voting(pairs, comm.rank(), comm.size(), vote, store, config.loop, progress);
    mine = stats_json(stats, comm.rank());
    if (rank_extras) mine.update(rank_extras());
  } catch (const std::exception& e) {
    error = e.what();
    log::error("rank ", comm.rank(), ": ", error, " — stopping this rank's vote; flushed pairs are kept");
  }
  const auto agreed = dist::agree_on_error(comm, error);
  if (!agreed.empty()) fail("vote: ", agreed, "; rerun the same command to continue");
  for (const auto& blob : comm.all_gather_bytes(dist::to_bytes(mine.dump())))
    all_ranks.push_back(json::parse(dist::to_string(blob)));
  return mine;
}

void report(const std::vector<json>& ranks, const std::string& stats_path) {
  std::size_t done = 0, samples = 0, saved = 0, invalid = 0;
  double seconds = 0;
  for (const auto& r : ranks) {
    done += r["done"].get<std::size_t>();
    samples += r["samples"].get<std::size_t>();
    saved += r["samples_saved"].get<std::size_t>();
    invalid += r["invalid"].get<std::size_t>();
    seconds = std::max(seconds, r["seconds"].get<double>());
  }
  log::info("vote: ", done, " pairs voted in ", seconds, " s (", seconds > 0 ? double(done) / seconds : 0.0,
            " pairs/s), ", samples, " samples (", done ? double(samples) / double(done) : 0.0,
            " per pair; early stop saved ", saved, "), invalid answers ", invalid);
  if (!stats_path.empty()) io::write_file_atomic(stats_path, json{{"ranks", ranks}}.dump(2) + "\n");
}

}  // namespace

int run_vote_stage(const PairSet& pairs, const LabelRunInfo& info, const VoteStageConfig& config,
                   const BatchVoteFn& vote, dist::Communicator& comm, const std::function<json()>& rank_extras) {
  if (!config.merge_only) {
    std::vector<json> ranks;
    vote_on_every_rank(pairs, info, config, vote, comm, rank_extras, ranks);
    bool stopped = false;
    for (const auto& r : ranks) stopped = stopped || r.value("stopped", false);
    if (stopped) {
      log::info("vote: stopped on a signal; finished pairs are in ", config.shard_dir,
                " — rerun the same command to continue");
      return dist::kExitStoppedBySignal;
    }
    dist::run_agreed(comm, "vote", true, [&] { report(ranks, config.stats_path); });
  }
  MergeSummary summary;
  dist::run_agreed(comm, "vote: merge", true, [&] {
    summary = merge_labels(config.shard_dir, pairs, info, config.out_path, config.allow_partial);
    log::info("merged ", summary.pairs, " pairs into ", config.out_path, ": ", summary.labelled, " labelled, ",
              summary.no_label, " without label (all answers invalid), ", summary.failed, " failed, ",
              summary.missing, " missing");
    if (summary.failed > 0)
      for (const auto& l : read_shards(config.shard_dir))
        if (l.failed) log::warn("pair ", l.pair_index, " failed: ", l.fail_reason);
  });
  // Every rank returns the same status: rank 0 knows whether pairs failed.
  auto flag = torch::tensor({summary.failed > 0 ? 1.0 : 0.0}, torch::kFloat64);
  comm.all_reduce(flag, dist::ReduceOp::max);
  return flag.item<double>() > 0 ? kExitSomePairsFailed : 0;
}

void VoteSettings::validate() const {
  if (model_dir.empty()) throw UsageError("the option '--model' is required");
  if (pairs_path.empty()) throw UsageError("the option '--pairs' is required");
  if (out_path.empty()) throw UsageError("the option '--out' is required");
  if (K < 1) throw UsageError("--samples must be >= 1");
  if (pairs_per_batch < 1) throw UsageError("--pairs-per-batch must be >= 1");
  if (max_batch_sequences < 1) throw UsageError("--max-batch-sequences must be >= 1");
  if (flush_every < 1) throw UsageError("--flush-every must be >= 1");
}

int run_vote(const VoteSettings& s, dist::Communicator& comm) {
  s.validate();
  PairSet pairs = read_pairs_h5(s.pairs_path);
  if (!s.root.empty()) pairs.root = s.root;
  if (pairs.size() == 0) fail(s.pairs_path, ": no pairs to vote");

  VoteStageConfig stage;
  auto& loop = stage.loop;
  loop.K = s.K;
  loop.seed = s.seed;
  loop.early_stop = s.early_stop;
  loop.pairs_per_batch = s.pairs_per_batch;
  loop.flush_every_pairs = s.flush_every;
  loop.flush_every_seconds = s.flush_seconds;
  loop.progress_every_seconds = s.progress_every;
  loop.keep_responses = s.keep_responses;
  loop.split = s.split;
  stage.shard_dir = s.shard_dir.empty() ? s.out_path + ".shards" : s.shard_dir;
  stage.out_path = s.out_path;
  stage.stats_path = s.stats_path;
  stage.merge_only = s.merge_only;
  stage.allow_partial = s.allow_partial;

  const std::string prompt = gen::with_reasoning_suffix(
      s.prompt_file.empty() ? std::string(gen::kComparePrompt) : gen::read_prompt_file(s.prompt_file, 2), s.reasoning);
  const auto device = s.runtime.torch_device(comm.local_rank());
  const auto dtype = s.runtime.torch_dtype(device);
  s.runtime.apply(device);
  // The model is loaded before the fingerprint so that a bad model folder fails fast everywhere.
  std::unique_ptr<gen::VlmSession> session;
  if (!s.merge_only) {
    if (comm.is_root()) log::info("vote: ", s.runtime.describe(device));
    session = std::make_unique<gen::VlmSession>(gen::VlmSession::load(s.model_dir, dtype, device));
  }
  gen::EngineOptions engine;
  engine.sampling = gen::with_overrides(
      vote_sampling_defaults(session ? session->defaults : gen::model_sampling_defaults(s.model_dir)), s.sampling,
      "sampling options");
  engine.seed = s.seed;
  engine.max_batch_sequences = s.max_batch_sequences;
  if (session) engine.stop_ids = session->stop_ids;

  LabelRunInfo info;
  info.model_path = s.model_dir;
  info.model_checksum = dist::shared_weights_checksum(comm, "vote", s.model_dir);
  info.K = s.K;
  info.sampling = gen::to_json(engine.sampling);
  info.sampling.erase("do_sample");
  info.sampling["dtype"] = s.runtime.dtype_name();
  info.seed = s.seed;
  info.prompt = prompt;
  info.early_stop = s.early_stop;
  info.pairs_file = s.pairs_path;
  info.num_pairs = pairs.size();
  info.keep_responses = s.keep_responses;
  info.root = pairs.root;

  std::unique_ptr<ModelVoter> voter;
  BatchVoteFn vote;
  if (session) {
    voter = std::make_unique<ModelVoter>(*session, prompt, engine);
    vote = [&voter](const std::vector<PairWave>& waves) { return (*voter)(waves); };
  }
  return run_vote_stage(pairs, info, stage, vote, comm, [&] {
    return json{{"prefill_seconds", voter->prefill_seconds()}, {"decode_seconds", voter->decode_seconds()}};
  });
}

}  // namespace evoq::evo
