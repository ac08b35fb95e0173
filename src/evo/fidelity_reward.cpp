#include "evoq/evo/fidelity_reward.h"

#include <cmath>

#include "evoq/core/error.h"

namespace evoq::evo {

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

ScoreStats score_stats(std::span<const double> scores, std::span<const std::uint8_t> valid) {
  EVOQ_CHECK(scores.size() == valid.size(), "score_stats: ", scores.size(), " scores but ", valid.size(),
             " validity flags");
  ScoreStats s;
  double sum = 0.0;
  for (std::size_t k = 0; k < scores.size(); ++k)
    if (valid[k]) {
      EVOQ_CHECK(std::isfinite(scores[k]), "score_stats: valid score ", k, " is not finite");
      sum += scores[k];
      ++s.valid;
    }
  if (s.valid == 0) return s;
  s.mean = sum / s.valid;
  if (s.valid < 2) return s;
  double ss = 0.0;  // two-pass for accuracy
  for (std::size_t k = 0; k < scores.size(); ++k)
    if (valid[k]) ss += (scores[k] - s.mean) * (scores[k] - s.mean);
  s.var = ss / (s.valid - 1);
  return s;
}

// Eq. 2 of the paper.
double comparative_probability(double score_ik, const ScoreStats& stats_i, const ScoreStats& stats_j,
                               double gamma) {
  EVOQ_CHECK(gamma > 0.0, "reward gamma must be > 0 (got ", gamma, ")");
  return normal_cdf((score_ik - stats_j.mean) / std::sqrt(stats_i.var + stats_j.var + gamma));
}

// The summand of Eq. 3.
double fidelity(double p_star, double p) {
  return std::sqrt(p_star * p) + std::sqrt((1.0 - p_star) * (1.0 - p));
}

// Eq. 3 of the paper (with the invalid-answer and few-valid-samples policy of the header).
FidelityRewards fidelity_rewards(std::span<const double> scores_i, std::span<const std::uint8_t> valid_i,
                                 std::span<const Partner> partners, const RewardConfig& config) {
  FidelityRewards out;
  const ScoreStats stats_i = score_stats(scores_i, valid_i);
  out.rewards.assign(scores_i.size(), 0.0);
  out.invalid = int(scores_i.size()) - stats_i.valid;
  std::vector<const Partner*> used;
  for (const auto& partner : partners) {
    EVOQ_CHECK(partner.p_star == 0.0 || partner.p_star == 0.5 || partner.p_star == 1.0,
               "fidelity reward: pseudo label p* must be 0, 0.5 or 1 (got ", partner.p_star, ")");
    if (partner.stats.valid >= config.min_partner_valid && partner.stats.valid > 0)
      used.push_back(&partner);
    else
      ++out.partners_skipped;
  }
  out.partners_used = int(used.size());
  out.has_signal = !used.empty();
  if (!out.has_signal) return out;
  for (std::size_t k = 0; k < scores_i.size(); ++k) {
    if (!valid_i[k]) continue;  // invalid answer: minimum reward 0
    double sum = 0.0;
    for (const Partner* partner : used)
      sum += fidelity(partner->p_star, comparative_probability(scores_i[k], stats_i, partner->stats, config.gamma));
    out.rewards[k] = sum / double(used.size());
  }
  return out;
}

std::vector<FidelityRewards> step_rewards(const std::vector<std::vector<double>>& scores,
                                          const std::vector<std::vector<std::uint8_t>>& valid,
                                          std::span<const LabelledPair> pairs, const RewardConfig& config) {
  EVOQ_CHECK(scores.size() == valid.size(), "step_rewards: ", scores.size(), " score lists but ", valid.size(),
             " validity lists");
  std::vector<ScoreStats> stats;
  for (std::size_t n = 0; n < scores.size(); ++n) stats.push_back(score_stats(scores[n], valid[n]));
  std::vector<std::vector<Partner>> partners(scores.size());
  for (const auto& pair : pairs) {
    EVOQ_CHECK(pair.i < scores.size() && pair.j < scores.size() && pair.i != pair.j, "step_rewards: bad pair (",
               pair.i, ", ", pair.j, ") for ", scores.size(), " images");
    partners[pair.i].push_back({stats[pair.j], pair.p_star});
    partners[pair.j].push_back({stats[pair.i], 1.0 - pair.p_star});  // Algorithm 1 line 11: swapped
  }
  std::vector<FidelityRewards> out;
  for (std::size_t n = 0; n < scores.size(); ++n)
    out.push_back(fidelity_rewards(scores[n], valid[n], partners[n], config));
  return out;
}

}  // namespace evoq::evo
