#include "evoq/train/rollout.h"

#include <cmath>
#include <cstring>
#include <map>

#include "evoq/core/error.h"
#include "evoq/evo/pairs.h"
#include "evoq/gen/answer_parser.h"
#include "evoq/gen/model_decoder.h"

namespace evoq::train {

using namespace evoq::evo;  // the method's equations and stores this layer trains with

std::uint64_t rollout_seed(std::uint64_t seed, std::int64_t step) {
  return counter_hash(seed, 0x726f6c6c6f7574ULL, std::uint64_t(step));
}

std::vector<ImageRollout> generate_rollouts(const gen::VlmSession& session, const TrainData& data,
                                            const std::vector<std::int64_t>& images, std::int64_t step,
                                            const RolloutConfig& config) {
  std::vector<ImageRollout> rollouts(images.size());
  std::vector<gen::GenerationRequest> requests;
  for (std::size_t n = 0; n < images.size(); ++n) {
    rollouts[n].image = images[n];
    rollouts[n].prompt = session.build_prompt({data.image_paths.at(std::size_t(images[n]))}, config.prompt);
    gen::GenerationRequest r;
    r.request_id = std::uint64_t(images[n]);
    r.prompt = rollouts[n].prompt;
    r.samples = config.samples;
    requests.push_back(std::move(r));
  }
  if (requests.empty()) return rollouts;
  auto options = config.engine;
  options.seed = rollout_seed(config.engine.seed, step);
  torch::NoGradGuard no_grad;
  gen::ModelDecoder decoder(session.model, options.sampling.max_new_tokens);
  auto out = gen::Engine(decoder, options).generate(requests);
  for (std::size_t n = 0; n < images.size(); ++n) {
    auto& r = rollouts[n];
    for (auto& g : out[n]) {
      auto text = session.decode_text(g.tokens);
      auto a = gen::parse_score(text);
      r.scores.push_back(a.valid() ? a.score : 0.0);
      r.valid.push_back(a.valid() ? 1 : 0);
      r.texts.push_back(std::move(text));
      r.responses.push_back(std::move(g.tokens));
    }
    r.stats = score_stats(r.scores, r.valid);
  }
  return rollouts;
}

namespace {

// Wire format of the shared statistics: per image {int64 id, int64 valid, double mean, double var}.
struct WireStats {
  std::int64_t image, valid;
  double mean, var;
};

}  // namespace

RunningPartnerStats::RunningPartnerStats(const TrainData& data, double momentum) : momentum_(momentum) {
  if (!(momentum >= 0.0 && momentum < 1.0))
    throw UsageError("--running-momentum must be in [0, 1) (got " + std::to_string(momentum) + ")");
  for (std::size_t p = 0; p < data.pairs.size(); ++p) {
    pairs_of_[data.pairs[p].i].push_back(p);
    if (data.pairs[p].j != data.pairs[p].i) pairs_of_[data.pairs[p].j].push_back(p);
  }
}

const std::vector<std::size_t>& RunningPartnerStats::pairs_of(std::int64_t image) const {
  static const std::vector<std::size_t> none;
  const auto it = pairs_of_.find(image);
  return it == pairs_of_.end() ? none : it->second;
}

const ScoreStats* RunningPartnerStats::estimate(std::int64_t image) const {
  const auto it = estimates_.find(image);
  return it == estimates_.end() ? nullptr : &it->second;
}

void RunningPartnerStats::observe(std::int64_t image, const ScoreStats& fresh, int min_valid) {
  if (fresh.valid < min_valid) return;  // unusable as a partner: keep the older estimate
  auto [it, first] = estimates_.emplace(image, fresh);
  if (first) return;
  auto& e = it->second;
  e.mean = momentum_ * e.mean + (1.0 - momentum_) * fresh.mean;
  e.var = momentum_ * e.var + (1.0 - momentum_) * fresh.var;
  e.valid = fresh.valid;
}

nlohmann::json RunningPartnerStats::to_json() const {
  auto out = nlohmann::json::array();
  for (const auto& [id, e] : estimates_) out.push_back({id, e.valid, e.mean, e.var});
  return out;
}

void RunningPartnerStats::load_json(const nlohmann::json& j) {
  estimates_.clear();
  for (const auto& row : j)
    estimates_[row.at(0).get<std::int64_t>()] =
        ScoreStats{row.at(1).get<int>(), row.at(2).get<double>(), row.at(3).get<double>()};
}

RewardSummary assign_rewards(std::vector<ImageRollout>& rollouts, const TrainData& data,
                             const std::vector<std::size_t>& step_pairs, const RolloutConfig& config,
                             dist::Communicator& comm, RunningPartnerStats* running) {
  std::vector<std::uint8_t> mine(rollouts.size() * sizeof(WireStats));
  for (std::size_t n = 0; n < rollouts.size(); ++n) {
    const WireStats w{rollouts[n].image, rollouts[n].stats.valid, rollouts[n].stats.mean, rollouts[n].stats.var};
    std::memcpy(mine.data() + n * sizeof(WireStats), &w, sizeof(WireStats));
  }
  std::map<std::int64_t, ScoreStats> stats;
  for (const auto& blob : comm.all_gather_bytes(mine)) {
    EVOQ_CHECK(blob.size() % sizeof(WireStats) == 0, "rollout statistics: malformed message");
    for (std::size_t off = 0; off < blob.size(); off += sizeof(WireStats)) {
      WireStats w;
      std::memcpy(&w, blob.data() + off, sizeof(WireStats));
      stats[w.image] = ScoreStats{int(w.valid), w.mean, w.var};
    }
  }

  RewardSummary summary;
  for (auto& r : rollouts) {
    // P_i: every partner of x_i among the step's pairs, with p*(x_i, x_j) (1 - p* when x_i is second).
    std::vector<Partner> partners;
    if (config.reward_kind == RewardKind::kFidelity && running) {
      // every labelled partner: fresh statistics, else the running estimate
      for (auto p : running->pairs_of(r.image)) {
        const auto& pair = data.pairs.at(p);
        const bool first = pair.i == r.image;
        const auto other = first ? pair.j : pair.i;
        const auto fresh = stats.find(other);
        const ScoreStats* s = fresh != stats.end() ? &fresh->second : running->estimate(other);
        if (s) partners.push_back({*s, first ? pair.p_star : 1.0 - pair.p_star});
      }
    } else if (config.reward_kind == RewardKind::kFidelity) {
      for (auto p : step_pairs) {
        const auto& pair = data.pairs.at(p);
        if (pair.i == r.image) partners.push_back({stats.at(pair.j), pair.p_star});
        else if (pair.j == r.image) partners.push_back({stats.at(pair.i), 1.0 - pair.p_star});
      }
    }
    FidelityRewards fr;
    if (config.reward_kind == RewardKind::kEstimate) {
      const auto id = std::size_t(r.image);
      const double pseudo = id < config.pseudo_scores.size() ? config.pseudo_scores[id] : NAN;
      const auto er = estimate_rewards(r.scores, r.valid, pseudo, config.estimate_threshold);
      fr.rewards = er.rewards;
      fr.invalid = er.invalid;
      fr.has_signal = er.has_signal;
    } else {
      fr = fidelity_rewards(r.scores, r.valid, partners, config.reward);
    }
    r.rewards = fr.rewards;
    r.has_signal = fr.has_signal;
    r.partners_used = fr.partners_used;
    r.partners_skipped = fr.partners_skipped;
    const auto ga = group_advantages(r.rewards, config.advantage);
    r.advantages = ga.advantages;
    r.zero_variance = ga.zero_variance;
    if (!r.has_signal) std::fill(r.advantages.begin(), r.advantages.end(), 0.0);
    ++summary.groups;
    summary.zero_variance += r.zero_variance ? 1 : 0;
    summary.no_signal += r.has_signal ? 0 : 1;
    summary.invalid += fr.invalid;
    summary.partners_skipped += fr.partners_skipped;
  }
  if (running)  // the same update on every rank: each holds every image's fresh statistics
    for (const auto& [image, st] : stats) running->observe(image, st, config.reward.min_partner_valid);
  return summary;
}

}  // namespace evoq::train
