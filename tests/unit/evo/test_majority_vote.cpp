// Eq. 1 and the lossless early stop, including a brute-force proof over every answer sequence.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/evo/majority_vote.h"

using namespace evoq::evo;

TEST(MajorityVote, Eq1Values) {
  EXPECT_EQ(majority_vote(5, 3), Preference::first_better);
  EXPECT_EQ(majority_vote(3, 5), Preference::second_better);
  EXPECT_EQ(majority_vote(4, 4), Preference::tie);
  EXPECT_EQ(majority_vote(1, 0), Preference::first_better);
  EXPECT_EQ(majority_vote(0, 1), Preference::second_better);
  EXPECT_EQ(*preference_value(Preference::first_better), 1.0);
  EXPECT_EQ(*preference_value(Preference::tie), 0.5);
  EXPECT_EQ(*preference_value(Preference::second_better), 0.0);
}

TEST(MajorityVote, AllInvalidHasNoLabelNotATie) {
  EXPECT_EQ(majority_vote(0, 0), Preference::no_label);
  EXPECT_FALSE(preference_value(Preference::no_label).has_value());
  EXPECT_THROW(majority_vote(-1, 0), evoq::Error);
}

TEST(EarlyStop, HandCases) {
  // K = 32 after 17 samples all for x_i: 15 remain, 17 > 15 -> decided.
  EXPECT_TRUE(outcome_decided(17, 0, 15));
  // 16-0 with 16 remaining: 16 votes for x_j could still tie.
  EXPECT_FALSE(outcome_decided(16, 0, 16));
  // K odd = 5: 3-0 with 2 remaining is decided; 2-0 with 3 remaining is not.
  EXPECT_TRUE(outcome_decided(3, 0, 2));
  EXPECT_FALSE(outcome_decided(2, 0, 3));
  // K odd still allows ties through invalid answers: 1-1 after 2, 1 left -> not decided.
  EXPECT_FALSE(outcome_decided(1, 1, 1));
  EXPECT_TRUE(outcome_decided(0, 0, 0));  // all invalid, nothing left: no label is final
  EXPECT_FALSE(outcome_decided(0, 0, 1));
  EXPECT_THROW(outcome_decided(0, 0, -1), evoq::Error);
}

namespace {

// Enumerates every sequence of K answers (0 = vote x_i, 1 = vote x_j, 2 = invalid).
void for_each_sequence(int K, const std::function<void(const std::vector<int>&)>& f) {
  std::vector<int> seq(K, 0);
  while (true) {
    f(seq);
    int i = 0;
    while (i < K && seq[i] == 2) seq[i++] = 0;
    if (i == K) return;
    ++seq[i];
  }
}

Preference full_vote(const std::vector<int>& seq, int upto) {
  int a = 0, b = 0;
  for (int k = 0; k < upto; ++k) a += seq[k] == 0, b += seq[k] == 1;
  return majority_vote(a, b);
}

}  // namespace

// For K = 1..8, every answer sequence: stopping at the first k where outcome_decided holds gives
// the same p* as all K samples (lossless), and the rule is tight: whenever it says "not decided"
// there is a continuation that changes the outcome (no wasted samples).
TEST(EarlyStop, BruteForceLosslessAndTight) {
  for (int K = 1; K <= 8; ++K) {
    long long saved = 0, sequences = 0;
    for_each_sequence(K, [&](const std::vector<int>& seq) {
      int a = 0, b = 0, k = 0;
      while (k < K) {
        a += seq[k] == 0;
        b += seq[k] == 1;
        ++k;
        if (outcome_decided(a, b, K - k)) break;
      }
      ASSERT_EQ(majority_vote(a, b), full_vote(seq, K)) << "K=" << K;
      saved += K - k;
      ++sequences;
    });
    // Tightness: at every prefix where the rule says "not decided", two continuations differ.
    for_each_sequence(K, [&](const std::vector<int>& seq) {
      int a = 0, b = 0;
      for (int k = 0; k < K; ++k) {
        if (!outcome_decided(a, b, K - k)) {
          std::vector<int> up = seq, down = seq;
          for (int m = k; m < K; ++m) up[m] = 0, down[m] = 1;
          if (a == 0 && b == 0) {  // could also end with no label
            std::vector<int> none = seq;
            for (int m = k; m < K; ++m) none[m] = 2;
            ASSERT_NE(full_vote(none, K), full_vote(up, K));
          }
          ASSERT_NE(full_vote(up, K), full_vote(down, K)) << "K=" << K << " k=" << k;
        }
        a += seq[k] == 0;
        b += seq[k] == 1;
      }
    });
    if (K >= 3) EXPECT_GT(saved, 0) << "K=" << K;
  }
}

// samples_that_could_decide: n more votes for the leader decide the outcome, n - 1 do not, for
// every reachable state (checked against outcome_decided, the definition of "decided").
TEST(MajorityVote, SamplesThatCouldDecideIsTheSmallestDecidingWave) {
  for (int K : {1, 2, 3, 8, 9, 32}) {
    for (int a = 0; a <= K; ++a) {
      for (int b = 0; a + b <= K; ++b) {
        for (int invalid = 0; a + b + invalid <= K; ++invalid) {
          const int remaining = K - a - b - invalid;
          const int n = evoq::evo::samples_that_could_decide(a, b, remaining);
          if (evoq::evo::outcome_decided(a, b, remaining)) {
            EXPECT_EQ(n, 0);
            continue;
          }
          ASSERT_GE(n, 1);
          ASSERT_LE(n, remaining);
          const bool a_leads = a >= b;
          auto after = [&](int m) {
            return a_leads ? evoq::evo::outcome_decided(a + m, b, remaining - m)
                           : evoq::evo::outcome_decided(a, b + m, remaining - m);
          };
          EXPECT_TRUE(after(n)) << K << " " << a << " " << b << " " << invalid;
          EXPECT_FALSE(after(n - 1)) << K << " " << a << " " << b << " " << invalid;
        }
      }
    }
  }
  EXPECT_EQ(evoq::evo::samples_that_could_decide(0, 0, 32), 17);
}
