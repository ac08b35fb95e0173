#include "evoq/evo/vote_loop.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "evoq/core/error.h"
#include "evoq/evo/majority_vote.h"

namespace evoq::evo {

VoteFn per_sample(std::function<SampleResult(const PairTask&, int, bool)> vote) {
  return [vote = std::move(vote)](const PairTask& task, const std::vector<SampleRequest>& requests) {
    std::vector<SampleResult> out;
    out.reserve(requests.size());
    for (const auto& r : requests) out.push_back(vote(task, r.sample_index, r.swapped));
    return out;
  };
}

bool sample_swapped(std::uint64_t seed, std::int64_t pair_index, int sample_index) {
  return (counter_hash(seed, std::uint64_t(pair_index), std::uint64_t(sample_index)) >> 63) != 0;
}

SampleAnswer to_original_order(ShownAnswer answer, bool swapped) {
  if (answer == ShownAnswer::invalid) return answer_invalid;
  const bool first_shown_better = answer == ShownAnswer::first;
  // The first shown image is x_i unless swapped.
  return (first_shown_better != swapped) ? answer_first : answer_second;
}

RankSplit parse_rank_split(const std::string& name) {
  if (name == "block") return RankSplit::block;
  if (name == "strided") return RankSplit::strided;
  throw UsageError("rank split '" + name + "' is not one of block, strided");
}

std::vector<std::int64_t> pairs_of_rank(std::size_t num_pairs, int rank, int size, RankSplit split) {
  EVOQ_CHECK(size > 0 && rank >= 0 && rank < size, "pairs_of_rank: rank ", rank, " of ", size);
  std::vector<std::int64_t> out;
  if (split == RankSplit::block) {
    const std::size_t begin = num_pairs * std::size_t(rank) / std::size_t(size);
    const std::size_t end = num_pairs * std::size_t(rank + 1) / std::size_t(size);
    for (std::size_t p = begin; p < end; ++p) out.push_back(std::int64_t(p));
  } else {
    for (std::size_t p = std::size_t(rank); p < num_pairs; p += std::size_t(size)) out.push_back(std::int64_t(p));
  }
  return out;
}

PairLabel vote_pair(const PairTask& task, const VoteFn& vote, const VoteConfig& config) {
  EVOQ_CHECK(config.K > 0, "K must be > 0 (got ", config.K, ")");
  const int chunk = std::max(1, config.samples_per_call);
  PairLabel label;
  label.pair_index = task.pair_index;
  try {
    int k = 0;
    while (k < config.K) {
      std::vector<SampleRequest> requests;
      for (int s = k; s < std::min(config.K, k + chunk); ++s)
        requests.push_back({s, sample_swapped(config.seed, task.pair_index, s)});
      const auto results = vote(task, requests);
      EVOQ_CHECK(results.size() == requests.size(), "vote function returned ", results.size(), " results for ",
                 requests.size(), " requests");
      for (std::size_t r = 0; r < results.size(); ++r) {
        const SampleAnswer a = to_original_order(results[r].answer, requests[r].swapped);
        label.answers.push_back(a);
        label.swapped.push_back(requests[r].swapped ? 1 : 0);
        if (config.keep_responses) label.responses.push_back(results[r].response);
        if (a == answer_first) ++label.votes_i;
        else if (a == answer_second) ++label.votes_j;
        else ++label.invalid;
      }
      k += int(results.size());
      if (config.early_stop && outcome_decided(label.votes_i, label.votes_j, config.K - k)) break;
    }
    label.samples_used = k;
    const auto p = preference_value(majority_vote(label.votes_i, label.votes_j));
    label.p_star = p ? *p : std::numeric_limits<double>::quiet_NaN();
  } catch (const Error& e) {
    PairLabel failed;
    failed.pair_index = task.pair_index;
    failed.failed = true;
    failed.fail_reason = e.what();
    failed.p_star = std::numeric_limits<double>::quiet_NaN();
    return failed;
  }
  return label;
}

std::string format_progress(const ProgressInfo& info) {
  const VoteStats& s = *info.stats;
  const std::size_t total = s.assigned;
  const std::size_t finished = s.skipped + s.done;
  const double rate = info.elapsed_seconds > 0 ? double(s.done) / info.elapsed_seconds : 0.0;
  const double budget = double(s.done - s.failed) * info.K;
  const double saved = budget > 0 ? 100.0 * double(s.samples_saved) / budget : 0.0;
  const double invalid = s.samples > 0 ? 100.0 * double(s.invalid) / double(s.samples) : 0.0;
  char eta[32] = "?";
  if (rate > 0) {
    const long secs = long(std::lround(double(info.remaining) / rate));
    if (secs >= 3600) std::snprintf(eta, sizeof eta, "%ldh%02ldm", secs / 3600, secs % 3600 / 60);
    else std::snprintf(eta, sizeof eta, "%ldm%02lds", secs / 60, secs % 60);
  }
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "vote: %zu/%zu pairs (%zu resumed), %.2f pairs/s, early stop saved %.1f%% of samples, "
                "invalid %.1f%%, failed %zu, ETA %s",
                finished, total, s.skipped, rate, saved, invalid, s.failed, eta);
  return buf;
}

VoteStats run_voting(const PairSet& pairs, int rank, int size, const VoteFn& vote, LabelStore& store,
                     const VoteConfig& config, const std::function<void(const std::string&)>& progress) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto last_flush = start, last_progress = start;
  auto seconds_since = [](clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); };
  VoteStats stats;
  const auto mine = pairs_of_rank(pairs.size(), rank, size, config.split);
  stats.assigned = mine.size();
  std::vector<std::int64_t> todo;
  for (auto p : mine)
    if (!store.finished(p)) todo.push_back(p);
  stats.skipped = mine.size() - todo.size();
  auto report = [&] {
    if (progress)
      progress(format_progress({&stats, todo.size() - stats.done, config.K, seconds_since(start)}));
  };
  for (const auto p : todo) {
    const PairTask task{p, pairs.first[p], pairs.second[p], &pairs};
    PairLabel label = vote_pair(task, vote, config);
    ++stats.done;
    stats.samples += std::size_t(label.samples_used);
    stats.invalid += std::size_t(label.invalid);
    if (label.failed) ++stats.failed;
    else stats.samples_saved += std::size_t(config.K - label.samples_used);
    store.add(std::move(label));
    if (store.pending() >= std::size_t(std::max(1, config.flush_every_pairs)) ||
        seconds_since(last_flush) >= config.flush_every_seconds) {
      store.flush();
      last_flush = clock::now();
    }
    if (seconds_since(last_progress) >= config.progress_every_seconds) {
      report();
      last_progress = clock::now();
    }
  }
  store.flush();
  stats.seconds = seconds_since(start);
  report();
  return stats;
}

}  // namespace evoq::evo
