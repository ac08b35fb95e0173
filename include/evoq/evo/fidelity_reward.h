#pragma once
// Online stage, paper section 3.2: comparative probability (Eq. 2) and fidelity reward (Eq. 3).
//
// Policy for invalid answers and images with few valid samples (fixed here, documented in
// docs/FORMATS.md "Rewards"):
//  - a sample whose score could not be parsed gets the minimum reward 0 and is counted as invalid;
//  - score statistics use the valid samples only: mean and UNBIASED variance (divisor n - 1);
//    with one valid sample the variance is taken as 0; with none the statistics are unusable;
//  - a partner x_j is used in Eq. 3 only if it has at least `min_partner_valid` valid samples
//    (default 2, the smallest count with an unbiased variance); unusable partners are skipped and
//    counted, so |P_i| in Eq. 3 is the number of partners actually used;
//  - if no partner of x_i is usable, every sample of x_i gets reward 0 and has_signal is false
//    (the caller drops the group: its advantages are all 0 anyway).
#include <cstdint>
#include <span>
#include <vector>

namespace evoq::evo {

struct ScoreStats {
  int valid = 0;        // number of valid scores
  double mean = 0.0;    // mean of the valid scores (0 when valid == 0)
  double var = 0.0;     // unbiased variance of the valid scores (0 when valid < 2)
};

// Mean and unbiased variance of scores[k] over the k with valid[k] != 0.
ScoreStats score_stats(std::span<const double> scores, std::span<const std::uint8_t> valid);

// Eq. 2: p_k(x_i, x_j) = Phi((q_k(x_i) - mu(q(x_j))) / sqrt(var(q(x_i)) + var(q(x_j)) + gamma)).
double comparative_probability(double score_ik, const ScoreStats& stats_i, const ScoreStats& stats_j,
                               double gamma);

// The fidelity term of Eq. 3 for one partner: sqrt(p* p) + sqrt((1 - p*)(1 - p)).
double fidelity(double p_star, double p);

struct Partner {
  ScoreStats stats;  // statistics of q(x_j)
  double p_star;     // pseudo label p*(x_i, x_j) from Eq. 1, in {0, 0.5, 1}
};

struct RewardConfig {
  double gamma = 1e-6;
  int min_partner_valid = 2;
};

struct FidelityRewards {
  std::vector<double> rewards;  // r_k(x_i), k = 1..K
  int invalid = 0;              // samples of x_i with an invalid answer (reward 0)
  int partners_used = 0;        // |P_i| actually used
  int partners_skipped = 0;     // partners with too few valid samples
  bool has_signal = false;      // false when no partner was usable
};

// Eq. 3: r_k(x_i) = 1/|P_i| sum_j [sqrt(p* p_k) + sqrt((1 - p*)(1 - p_k))] for every sample k of x_i.
FidelityRewards fidelity_rewards(std::span<const double> scores_i, std::span<const std::uint8_t> valid_i,
                                 std::span<const Partner> partners, const RewardConfig& config = {});

// Rewards of every image of a step (Algorithm 1 lines 10-11). Each labelled pair (i, j, p*) makes
// x_j a partner of x_i with p*, and x_i a partner of x_j with 1 - p* (the positions swapped), so
// P_i is the set of x_i's partners among the pairs given. scores[n] / valid[n] are image n's K samples.
struct LabelledPair {
  std::size_t i, j;
  double p_star;
};
std::vector<FidelityRewards> step_rewards(const std::vector<std::vector<double>>& scores,
                                          const std::vector<std::vector<std::uint8_t>>& valid,
                                          std::span<const LabelledPair> pairs, const RewardConfig& config = {});

// Standard normal CDF Phi.
double normal_cdf(double x);

}  // namespace evoq::evo
