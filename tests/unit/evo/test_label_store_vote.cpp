// Label store (shards, resume, merge) and the model-agnostic vote loop with fake vote functions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "evoq/core/error.h"
#include "evoq/evo/label_store.h"
#include "evoq/evo/majority_vote.h"
#include "evoq/evo/vote_loop.h"

namespace fs = std::filesystem;
using namespace evoq::evo;

namespace {

fs::path temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("evoq_evo_ls_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

PairSet make_pairs(int n_images, std::uint64_t n_pairs) {
  Manifest m;
  m.source = "mem";
  m.root = "/root";
  for (int i = 0; i < n_images; ++i) m.images.push_back({"img" + std::to_string(i) + ".png", ""});
  return sample_random_pairs(m, n_pairs, 11);
}

LabelRunInfo run_info(int K, bool early_stop = true) {
  LabelRunInfo info;
  info.model_path = "fake";
  info.model_checksum = "abc";
  info.K = K;
  info.seed = 3;
  info.prompt = "compare";
  info.early_stop = early_stop;
  info.num_pairs = 0;
  return info;
}

// Deterministic answers from (pair, sample): x_i wins with a pair-dependent probability; 10% invalid.
SampleResult hash_answer(const PairTask& t, int k, bool swapped) {
  const auto h = counter_hash(99, std::uint64_t(t.pair_index), std::uint64_t(k));
  if (h % 10 == 0) return {ShownAnswer::invalid, "?"};
  const bool i_better = (h >> 8) % 100 < std::uint64_t(20 + 60 * (t.pair_index % 2));
  return {(i_better != swapped) ? ShownAnswer::first : ShownAnswer::second, "r"};
}

std::vector<PairLabel> merged(const fs::path& dir, const PairSet& pairs, const LabelRunInfo& info) {
  merge_labels((dir / "shards").string(), pairs, info, (dir / "labels.h5").string());
  return read_labels_h5((dir / "labels.h5").string());
}

void expect_same(const std::vector<PairLabel>& a, const std::vector<PairLabel>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t p = 0; p < a.size(); ++p) {
    EXPECT_EQ(a[p].pair_index, b[p].pair_index);
    EXPECT_EQ(a[p].votes_i, b[p].votes_i);
    EXPECT_EQ(a[p].votes_j, b[p].votes_j);
    EXPECT_EQ(a[p].invalid, b[p].invalid);
    EXPECT_EQ(a[p].samples_used, b[p].samples_used);
    EXPECT_EQ(a[p].answers, b[p].answers);
    EXPECT_TRUE(a[p].p_star == b[p].p_star || (std::isnan(a[p].p_star) && std::isnan(b[p].p_star)));
  }
}

}  // namespace

TEST(VoteLoop, OrderMappingAndSplits) {
  EXPECT_EQ(to_original_order(ShownAnswer::first, false), answer_first);
  EXPECT_EQ(to_original_order(ShownAnswer::first, true), answer_second);
  EXPECT_EQ(to_original_order(ShownAnswer::second, true), answer_first);
  EXPECT_EQ(to_original_order(ShownAnswer::invalid, true), answer_invalid);
  for (auto split : {RankSplit::block, RankSplit::strided}) {
    std::vector<int> seen(10, 0);
    for (int r = 0; r < 3; ++r)
      for (auto p : pairs_of_rank(10, r, 3, split)) ++seen[p];
    EXPECT_EQ(seen, std::vector<int>(10, 1));
  }
  // Block rule (core/rank_partition.h): the first 10 % 3 = 1 rank gets 4, the others 3.
  EXPECT_EQ(pairs_of_rank(10, 1, 3, RankSplit::block), (std::vector<std::int64_t>{4, 5, 6}));
  int swaps = 0;
  for (int k = 0; k < 1000; ++k) swaps += sample_swapped(5, 17, k);
  EXPECT_NEAR(swaps, 500, 80);
}

TEST(VoteLoop, VotePairCountsInOriginalOrderAndFailures) {
  const auto pairs = make_pairs(5, 4);
  VoteConfig config;
  config.K = 6;
  config.early_stop = false;
  config.keep_responses = true;
  // The model always prefers the image shown first: votes follow the swaps.
  auto first_shown = per_sample([](const PairTask&, int, bool) { return SampleResult{ShownAnswer::first, "0"}; });
  auto label = vote_pair({2, pairs.first[2], pairs.second[2], &pairs}, first_shown, config);
  int swapped = 0;
  for (int k = 0; k < 6; ++k) swapped += sample_swapped(config.seed, 2, k);
  EXPECT_EQ(label.votes_j, swapped);
  EXPECT_EQ(label.votes_i, 6 - swapped);
  EXPECT_EQ(label.responses.size(), 6u);
  auto broken = per_sample([](const PairTask&, int k, bool) -> SampleResult {
    if (k == 2) evoq::fail("cannot read image 'x.png'");
    return {ShownAnswer::first, ""};
  });
  auto f = vote_pair({0, pairs.first[0], pairs.second[0], &pairs}, broken, config);
  EXPECT_TRUE(f.failed);
  EXPECT_EQ(f.fail_reason, "cannot read image 'x.png'");
  EXPECT_TRUE(std::isnan(f.p_star));
}

TEST(VoteLoop, EarlyStopGivesSameLabelsWithFewerSamples) {
  auto dir = temp_dir("early");
  const auto pairs = make_pairs(20, 60);
  VoteConfig config;
  config.K = 16;
  auto vote = per_sample(hash_answer);
  config.early_stop = false;
  LabelStore full((dir / "full" / "shards").string(), 0, run_info(16, false));
  auto s_full = run_voting(pairs, 0, 1, vote, full, config);
  config.early_stop = true;
  LabelStore early((dir / "early" / "shards").string(), 0, run_info(16, true));
  auto s_early = run_voting(pairs, 0, 1, vote, early, config);
  auto a = merged(dir / "full", pairs, run_info(16, false));
  auto b = merged(dir / "early", pairs, run_info(16, true));
  ASSERT_EQ(a.size(), 60u);
  for (std::size_t p = 0; p < a.size(); ++p) {
    EXPECT_TRUE(a[p].p_star == b[p].p_star || (std::isnan(a[p].p_star) && std::isnan(b[p].p_star)));
    EXPECT_LE(b[p].samples_used, a[p].samples_used);
    // The early-stopped answers are a prefix of the full run's answers.
    EXPECT_TRUE(std::equal(b[p].answers.begin(), b[p].answers.end(), a[p].answers.begin()));
    // Eq. 1 recomputed from the stored votes.
    const auto v = preference_value(majority_vote(a[p].votes_i, a[p].votes_j));
    EXPECT_EQ(v.has_value(), !std::isnan(a[p].p_star));
  }
  EXPECT_EQ(s_full.samples, 60u * 16u);
  EXPECT_LT(s_early.samples, s_full.samples);
  EXPECT_EQ(s_early.samples + s_early.samples_saved, s_full.samples);
  fs::remove_all(dir);
}

TEST(VoteLoop, TwoRankSplitEqualsOneRankAndResumeSkipsFinished) {
  auto dir = temp_dir("split");
  const auto pairs = make_pairs(12, 30);
  const auto info = run_info(8);
  VoteConfig config;
  config.K = 8;
  config.flush_every_pairs = 3;
  auto vote = per_sample(hash_answer);
  {
    LabelStore one((dir / "one" / "shards").string(), 0, info);
    run_voting(pairs, 0, 1, vote, one, config);
  }
  // Two "ranks" in sequence, the second interrupted after 4 pairs (the vote throws a non-evoq
  // error, like a crash) and resumed with a fresh store.
  {
    LabelStore r0((dir / "two" / "shards").string(), 0, info);
    run_voting(pairs, 0, 2, vote, r0, config);
  }
  int calls = 0;
  auto crashing = per_sample([&](const PairTask& t, int k, bool s) {
    if (k == 0 && ++calls > 4) throw std::runtime_error("simulated crash");
    return hash_answer(t, k, s);
  });
  {
    LabelStore r1((dir / "two" / "shards").string(), 1, info);
    EXPECT_THROW(run_voting(pairs, 1, 2, crashing, r1, config), std::runtime_error);
  }
  LabelStore resumed((dir / "two" / "shards").string(), 1, info);
  EXPECT_EQ(resumed.finished_count(), 15u + 3u);  // rank 0's 15 pairs + one flush of 3 from rank 1
  int resumed_calls = 0;
  auto counting = per_sample([&](const PairTask& t, int k, bool s) {
    resumed_calls += k == 0;
    return hash_answer(t, k, s);
  });
  auto stats = run_voting(pairs, 1, 2, counting, resumed, config);
  EXPECT_EQ(stats.skipped, 3u);
  EXPECT_EQ(stats.done, 12u);
  EXPECT_EQ(resumed_calls, 12);
  expect_same(merged(dir / "one", pairs, info), merged(dir / "two", pairs, info));
  // A third run has nothing to do.
  LabelStore again((dir / "two" / "shards").string(), 1, info);
  EXPECT_EQ(run_voting(pairs, 1, 2, counting, again, config).done, 0u);
  // A different rank count on resume works: everything is already finished.
  LabelStore three((dir / "two" / "shards").string(), 2, info);
  EXPECT_EQ(run_voting(pairs, 2, 3, counting, three, config).done, 0u);
  fs::remove_all(dir);
}

TEST(LabelStore, RefusesOtherSettingsAndIncompleteMerge) {
  auto dir = temp_dir("refuse");
  const auto pairs = make_pairs(6, 5);
  VoteConfig config;
  config.K = 4;
  {
    LabelStore store((dir / "shards").string(), 0, run_info(4));
    PairLabel l;
    l.pair_index = 0;
    l.votes_i = 1;
    l.samples_used = 1;
    l.answers = {answer_first};
    l.swapped = {0};
    l.p_star = 1.0;
    store.add(l);
    EXPECT_THROW(store.add(l), evoq::Error);
    store.flush();
  }
  try {
    LabelStore other((dir / "shards").string(), 0, run_info(8));
    FAIL() << "a shard with K=4 was accepted for K=8";
  } catch (const evoq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("K"), std::string::npos) << e.what();
  }
  EXPECT_THROW(merge_labels((dir / "shards").string(), pairs, run_info(4), (dir / "l.h5").string()), evoq::Error);
  auto summary = merge_labels((dir / "shards").string(), pairs, run_info(4), (dir / "l.h5").string(), true);
  EXPECT_EQ(summary.pairs, 1u);
  EXPECT_EQ(summary.missing, 4u);
  fs::remove_all(dir);
}

// The merge recomputes Eq. 1 from the stored answers: a record whose p* or vote counts contradict its
// answers (a bug, or damage that got past the checksums) is refused with a line naming the pair.
TEST(LabelStore, MergeRefusesLabelsThatContradictEq1) {
  const auto pairs = make_pairs(6, 5);
  auto label = [](std::int64_t pair, std::vector<std::int8_t> answers, double p_star) {
    PairLabel l;
    l.pair_index = pair;
    l.answers = answers;
    l.swapped.assign(answers.size(), 0);
    l.samples_used = std::int32_t(answers.size());
    for (auto a : answers) (a == answer_first ? l.votes_i : a == answer_second ? l.votes_j : l.invalid)++;
    l.p_star = p_star;
    return l;
  };
  // Consistent: 2:1 -> 1, 1:1 -> 0.5, 0:0 -> NaN.
  EXPECT_EQ(label_inconsistency(label(0, {0, 0, 1}, 1.0)), "");
  EXPECT_EQ(label_inconsistency(label(0, {0, 1, -1}, 0.5)), "");
  EXPECT_EQ(label_inconsistency(label(0, {-1, -1}, std::nan(""))), "");
  auto wrong_p = label(3, {0, 0, 1}, 0.0);
  auto wrong_count = label(3, {0, 1, 1}, 0.0);
  wrong_count.votes_i = 2;  // the answers say 1:2
  for (const auto& bad : {wrong_p, wrong_count}) {
    EXPECT_NE(label_inconsistency(bad), "");
    auto dir = temp_dir("eq1");
    {
      LabelStore store((dir / "shards").string(), 0, run_info(4));
      store.add(label(0, {0}, 1.0));
      store.add(bad);
      store.flush();
    }
    try {
      merge_labels((dir / "shards").string(), pairs, run_info(4), (dir / "l.h5").string(), true);
      FAIL() << "an inconsistent label was merged";
    } catch (const evoq::Error& e) {
      EXPECT_NE(std::string(e.what()).find("pair 3"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("labels-shard-r0-000000.h5"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "l.h5"));
    fs::remove_all(dir);
  }
}

// A flush writes only the new pairs, as the next numbered segment of the rank.
TEST(LabelStore, FlushesAppendSegments) {
  auto dir = temp_dir("segments");
  const auto info = run_info(4);
  PairLabel l;
  l.votes_i = 1;
  l.samples_used = 1;
  l.answers = {answer_first};
  l.swapped = {0};
  l.p_star = 1.0;
  {
    LabelStore store((dir / "shards").string(), 2, info);
    for (int p = 0; p < 5; ++p) {
      l.pair_index = p;
      store.add(l);
      if (p % 2 == 1) store.flush();
    }
    store.flush();
    store.flush();  // nothing pending: no file
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "shards")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"labels-shard-r2-000000.h5", "labels-shard-r2-000001.h5",
                                             "labels-shard-r2-000002.h5"}));
  // A new store of the same rank continues the numbering and sees every pair.
  LabelStore again((dir / "shards").string(), 2, info);
  EXPECT_EQ(again.finished_count(), 5u);
  l.pair_index = 7;
  again.add(l);
  again.flush();
  EXPECT_TRUE(fs::exists(dir / "shards" / "labels-shard-r2-000003.h5"));
  fs::remove_all(dir);
}

TEST(VoteLoop, ProgressLine) {
  VoteStats s;
  s.assigned = 100;
  s.skipped = 10;
  s.done = 40;
  s.failed = 0;
  s.samples = 40 * 32 / 2;     // half of the budget used
  s.samples_saved = 40 * 32 / 2;
  s.invalid = 64;              // 10% of samples
  const auto line = format_progress({&s, 50, 32, 20.0});
  EXPECT_NE(line.find("50/100 pairs (10 resumed)"), std::string::npos) << line;
  EXPECT_NE(line.find("2.00 pairs/s"), std::string::npos) << line;
  EXPECT_NE(line.find("saved 50.0%"), std::string::npos) << line;
  EXPECT_NE(line.find("invalid 10.0%"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 0m25s"), std::string::npos) << line;
}

// Adaptive waves (the fewest samples that could decide) stop exactly where a check after every
// single sample stops, and voting pairs together gives the same labels as one by one.
TEST(VoteLoop, WavesAndPairBatchesGiveTheSameLabelsAsSampleBySample) {
  const auto pairs = make_pairs(15, 40);
  std::vector<PairTask> tasks;
  for (std::size_t p = 0; p < pairs.size(); ++p)
    tasks.push_back({std::int64_t(p), pairs.first[p], pairs.second[p], &pairs});
  VoteConfig one_by_one;
  one_by_one.K = 32;
  one_by_one.samples_per_call = 1;
  std::vector<PairLabel> reference;
  for (const auto& t : tasks) reference.push_back(vote_pair(t, per_sample(hash_answer), one_by_one));
  int calls = 0;
  std::size_t most_waves_in_a_call = 0;
  auto counting = [&](const std::vector<PairWave>& waves) {
    ++calls;
    most_waves_in_a_call = std::max(most_waves_in_a_call, waves.size());
    return batched(per_sample(hash_answer))(waves);
  };
  VoteConfig adaptive = one_by_one;
  adaptive.samples_per_call = 0;
  const auto together = vote_pairs(tasks, counting, adaptive);
  expect_same(reference, together);
  EXPECT_EQ(most_waves_in_a_call, tasks.size());
  int single_sample_calls = 0;
  for (const auto& l : reference) single_sample_calls += l.samples_used;
  EXPECT_LT(calls, single_sample_calls / 10);
  // Wave sizes: the first wave of every pair is 17 samples at K = 32.
  std::vector<PairWave> seen;
  vote_pairs({tasks[0]}, [&](const std::vector<PairWave>& waves) {
    seen.insert(seen.end(), waves.begin(), waves.end());
    return batched(per_sample(hash_answer))(waves);
  }, adaptive);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen[0].requests.size(), 17u);
}

// A pair that fails inside a batch is recorded as failed; the other pairs of the batch are voted.
TEST(VoteLoop, FailureOfOnePairInABatchKeepsTheOthers) {
  auto dir = temp_dir("batchfail");
  const auto pairs = make_pairs(10, 12);
  VoteConfig config;
  config.K = 8;
  config.pairs_per_batch = 5;
  auto vote = [&](const std::vector<PairWave>& waves) {
    auto out = batched(per_sample(hash_answer))(waves);
    for (std::size_t w = 0; w < waves.size(); ++w)
      if (waves[w].task->pair_index == 3) out[w] = WaveResult{{}, true, "cannot read image 'img3.png'"};
    return out;
  };
  LabelStore store((dir / "shards").string(), 0, run_info(8));
  const auto stats = run_voting(pairs, 0, 1, BatchVoteFn(vote), store, config);
  EXPECT_EQ(stats.done, 12u);
  EXPECT_EQ(stats.failed, 1u);
  const auto labels = merged(dir, pairs, run_info(8));
  ASSERT_EQ(labels.size(), 12u);
  for (const auto& l : labels) {
    EXPECT_EQ(l.failed, l.pair_index == 3);
    if (l.pair_index == 3) EXPECT_EQ(l.fail_reason, "cannot read image 'img3.png'");
    else EXPECT_GT(l.samples_used, 0);
  }
  fs::remove_all(dir);
}
