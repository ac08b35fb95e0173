#pragma once
// Offline stage, paper section 3.1: pairwise majority voting (Eq. 1) and the lossless early stop.
//
// Answers that cannot be parsed are not votes: they are counted separately and change neither K_x
// nor K_y. A pair whose samples were all invalid has no label (it is not a tie).
#include <cstdint>
#include <optional>

namespace evoq::evo {

// Outcome of Eq. 1. `no_label` marks a pair without a single valid vote.
enum class Preference : std::int8_t { second_better = 0, tie = 1, first_better = 2, no_label = 3 };

// Eq. 1: p*(x, y) from the vote counts K_x (votes_first) and K_y (votes_second).
// Returns first_better (p* = 1), tie (0.5), second_better (0), or no_label when both counts are 0.
Preference majority_vote(int votes_first, int votes_second);

// p* as a number: 1, 0.5, 0; std::nullopt for no_label.
std::optional<double> preference_value(Preference p);

// Lossless early stop for Eq. 1: true when no continuation of the `remaining` samples (each one a
// vote for either image or an invalid answer) can change majority_vote(votes_first, votes_second).
// The final difference K_x - K_y can reach every integer in [d - remaining, d + remaining], so the
// outcome is fixed exactly when |d| > remaining (or nothing remains). Ties and the no-label state are
// reachable whenever |d| <= remaining, for K odd as for K even, because invalid answers can occur.
bool outcome_decided(int votes_first, int votes_second, int remaining);

// The fewest further samples that COULD decide the outcome: n such that n more votes for the
// current leader (either image when tied) make |d| + n > remaining - n, i.e.
// n = floor((remaining - |d|) / 2) + 1, capped at `remaining`; 0 when already decided. Drawing
// exactly this many before the next check wastes no sample and needs the fewest checks, so waves of
// this size keep the early stop lossless and batch-friendly (K = 32: a first wave of 17).
int samples_that_could_decide(int votes_first, int votes_second, int remaining);

}  // namespace evoq::evo
