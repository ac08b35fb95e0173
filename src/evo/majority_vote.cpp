#include "evoq/evo/majority_vote.h"

#include <algorithm>
#include <cstdlib>

#include "evoq/core/error.h"

namespace evoq::evo {

// Eq. 1 of the paper.
Preference majority_vote(int votes_first, int votes_second) {
  EVOQ_CHECK(votes_first >= 0 && votes_second >= 0, "majority_vote: negative vote count");
  if (votes_first == 0 && votes_second == 0) return Preference::no_label;
  if (votes_first > votes_second) return Preference::first_better;
  if (votes_first < votes_second) return Preference::second_better;
  return Preference::tie;
}

std::optional<double> preference_value(Preference p) {
  switch (p) {
    case Preference::first_better: return 1.0;
    case Preference::tie: return 0.5;
    case Preference::second_better: return 0.0;
    case Preference::no_label: return std::nullopt;
  }
  return std::nullopt;
}

bool outcome_decided(int votes_first, int votes_second, int remaining) {
  EVOQ_CHECK(remaining >= 0, "outcome_decided: negative remaining sample count");
  if (remaining == 0) return true;
  return std::abs(votes_first - votes_second) > remaining;
}

int samples_that_could_decide(int votes_first, int votes_second, int remaining) {
  if (outcome_decided(votes_first, votes_second, remaining)) return 0;
  const int lead = std::abs(votes_first - votes_second);
  return std::min(remaining, (remaining - lead) / 2 + 1);
}

}  // namespace evoq::evo
