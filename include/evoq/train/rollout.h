#pragma once
// Rollouts of one GRPO step (paper Algorithm 1 lines 8-12): each image of this rank is answered K
// times with c_score, the answers are parsed into scores, per-image score statistics are shared
// across ranks, and every image gets its fidelity rewards (Eq. 2-3) against all of its partners in
// the step and its group advantages (Eq. 4).
//
// Reproducibility: sample k of image x is drawn from the engine stream (rollout_seed(seed, step),
// image id x, k), so the samples do not depend on the rank count or on a resume.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "evoq/dist/communicator.h"
#include "evoq/evo/estimate_reward.h"
#include "evoq/evo/fidelity_reward.h"
#include "evoq/evo/group_advantage.h"
#include "evoq/train/train_batches.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/vlm_session.h"

namespace evoq::train {

// Which reward the rollouts get: EvoQuality's fidelity reward against the step's pairs (Eq. 2-3) or
// EvoEstimate's closeness to a pseudo score (estimate_reward.h).
enum class RewardKind { kFidelity, kEstimate };

struct RolloutConfig {
  int samples = 8;             // K
  std::string prompt;          // c_score (with the reasoning suffix when on)
  gen::EngineOptions engine;   // sampling, stop ids, seed (the run seed), batch size
  evo::RewardConfig reward;
  evo::AdvantageConfig advantage;
  RewardKind reward_kind = RewardKind::kFidelity;
  std::vector<double> pseudo_scores;  // kEstimate: pseudo score per image id (NaN: none)
  double estimate_threshold = 0.35;   // kEstimate: reward 1 when |score - pseudo| < threshold
};

struct ImageRollout {
  std::int64_t image = -1;  // image id (TrainData::image_paths index)
  gen::PromptInput prompt;  // the c_score chat prompt with this image's pixels
  std::vector<std::vector<std::int32_t>> responses;  // K sampled token sequences
  std::vector<std::string> texts;
  std::vector<double> scores;  // parsed score (0 when invalid)
  std::vector<std::uint8_t> valid;
  evo::ScoreStats stats;
  // After rewards:
  std::vector<double> rewards, advantages;
  bool has_signal = false, zero_variance = true;
  int partners_used = 0, partners_skipped = 0;
  // After the update (sums over each response's tokens; NaN when not computed):
  std::vector<double> logp_old_sum, logp_ref_sum;
};

// Engine seed of a step's rollouts.
std::uint64_t rollout_seed(std::uint64_t seed, std::int64_t step);

// Generates K answers for each of `images` (this rank's share) and parses them.
std::vector<ImageRollout> generate_rollouts(const gen::VlmSession& session, const TrainData& data,
                                            const std::vector<std::int64_t>& images, std::int64_t step,
                                            const RolloutConfig& config);

struct RewardSummary {
  int groups = 0;              // images of this rank
  int zero_variance = 0;       // groups whose K rewards are all equal (advantages 0)
  int no_signal = 0;           // images without a usable partner
  int invalid = 0;             // invalid answers
  int partners_skipped = 0;
};

// Optional running estimate of q(x_j) for partners absent from a step (`evoq train
// --absent-partners running`, off by default). Every rank keeps the same copy: after each step's
// rewards, each image rolled out in the step with at least min_partner_valid valid samples updates
// its estimate, mean and variance by an exponential moving average
//   est = momentum * est + (1 - momentum) * fresh   (the first observation is taken as is),
// valid = the fresh count. With the estimate on, P_i is every labelled partner of x_i (the paper's
// offline P_i): fresh statistics when the partner was rolled out in this step, else its estimate
// from earlier steps, else the partner is left out (not counted as skipped).
class RunningPartnerStats {
 public:
  RunningPartnerStats(const TrainData& data, double momentum);
  double momentum() const { return momentum_; }
  const std::vector<std::size_t>& pairs_of(std::int64_t image) const;  // indices into data.pairs
  const evo::ScoreStats* estimate(std::int64_t image) const;                // nullptr: never observed
  void observe(std::int64_t image, const evo::ScoreStats& fresh, int min_valid);
  // [[id, valid, mean, var], ...] in ascending id (the checkpoint's trainer JSON) and back.
  nlohmann::json to_json() const;
  void load_json(const nlohmann::json& j);

 private:
  double momentum_;
  std::map<std::int64_t, std::vector<std::size_t>> pairs_of_;
  std::map<std::int64_t, evo::ScoreStats> estimates_;
};

// Shares the score statistics of every rank's images (all_gather_bytes), then fills rewards (Eq. 2-3)
// and advantages (Eq. 4) of this rank's rollouts. P_i = partners of x_i among the step's pairs, or,
// with `running`, every labelled partner (see RunningPartnerStats), whose estimates are then updated.
// With RewardKind::kEstimate the rewards are EvoEstimate's instead (no partners are used).
RewardSummary assign_rewards(std::vector<ImageRollout>& rollouts, const TrainData& data,
                             const std::vector<std::size_t>& step_pairs, const RolloutConfig& config,
                             dist::Communicator& comm, RunningPartnerStats* running = nullptr);

}  // namespace evoq::train
