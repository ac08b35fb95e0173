#include "evoq/evo/vote_loop.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "evoq/core/error.h"
#include "evoq/core/rank_partition.h"
#include "evoq/evo/majority_vote.h"
#include "evoq/dist/stop_signal.h"
#include "evoq/gen/compare_order.h"

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
  return gen::compare_sample_swapped(seed, std::uint64_t(pair_index), sample_index);
}

SampleAnswer to_original_order(ShownAnswer answer, bool swapped) {
  if (answer == ShownAnswer::invalid) return answer_invalid;
  const bool first_shown_better = answer == ShownAnswer::first;
  // The first shown image is x_i unless swapped.
  return (first_shown_better != swapped) ? answer_first : answer_second;
}

BatchVoteFn batched(VoteFn vote) {
  return [vote = std::move(vote)](const std::vector<PairWave>& waves) {
    std::vector<WaveResult> out(waves.size());
    for (std::size_t w = 0; w < waves.size(); ++w) {
      try {
        out[w].results = vote(*waves[w].task, waves[w].requests);
      } catch (const Error& e) {
        out[w].failed = true;
        out[w].fail_reason = e.what();
      }
    }
    return out;
  };
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
    const auto [begin, end] = core::block_range(num_pairs, rank, size);
    for (std::size_t p = begin; p < end; ++p) out.push_back(std::int64_t(p));
  } else {
    for (auto p : core::strided_indices(num_pairs, rank, size)) out.push_back(std::int64_t(p));
  }
  return out;
}

namespace {

// One pair's vote in progress: which samples to draw next, and the tally so far.
class PairVote {
 public:
  PairVote(const PairTask& task, const VoteConfig& config) : task_(task), config_(config) {
    label_.pair_index = task.pair_index;
  }

  bool done() const { return done_; }
  const PairTask& task() const { return task_; }

  std::vector<SampleRequest> next_wave() const {
    const int remaining = config_.K - drawn_;
    int n = config_.samples_per_call > 0 ? config_.samples_per_call
            : config_.early_stop ? samples_that_could_decide(label_.votes_i, label_.votes_j, remaining)
                                 : remaining;
    n = std::clamp(n, 1, remaining);
    std::vector<SampleRequest> wave;
    for (int s = drawn_; s < drawn_ + n; ++s) wave.push_back({s, sample_swapped(config_.seed, task_.pair_index, s)});
    return wave;
  }

  void absorb(const std::vector<SampleRequest>& wave, const WaveResult& result) {
    if (result.failed) return fail(result.fail_reason);
    EVOQ_CHECK(result.results.size() == wave.size(), "vote function returned ", result.results.size(),
               " results for ", wave.size(), " requests");
    for (std::size_t r = 0; r < wave.size(); ++r) {
      const SampleAnswer a = to_original_order(result.results[r].answer, wave[r].swapped);
      label_.answers.push_back(a);
      label_.swapped.push_back(wave[r].swapped ? 1 : 0);
      if (config_.keep_responses) label_.responses.push_back(result.results[r].response);
      if (a == answer_first) ++label_.votes_i;
      else if (a == answer_second) ++label_.votes_j;
      else ++label_.invalid;
    }
    drawn_ += int(wave.size());
    const bool decided = config_.early_stop && outcome_decided(label_.votes_i, label_.votes_j, config_.K - drawn_);
    if (drawn_ >= config_.K || decided) finish();
  }

  PairLabel take() { return std::move(label_); }

 private:
  void finish() {
    label_.samples_used = drawn_;
    const auto p = preference_value(majority_vote(label_.votes_i, label_.votes_j));  // Eq. 1
    label_.p_star = p ? *p : std::numeric_limits<double>::quiet_NaN();
    done_ = true;
  }
  void fail(const std::string& reason) {
    label_ = PairLabel{};
    label_.pair_index = task_.pair_index;
    label_.failed = true;
    label_.fail_reason = reason;
    label_.p_star = std::numeric_limits<double>::quiet_NaN();
    done_ = true;
  }

  PairTask task_;
  const VoteConfig& config_;
  PairLabel label_;
  int drawn_ = 0;
  bool done_ = false;
};

}  // namespace

std::vector<PairLabel> vote_pairs(const std::vector<PairTask>& tasks, const BatchVoteFn& vote,
                                  const VoteConfig& config) {
  EVOQ_CHECK(config.K > 0, "K must be > 0 (got ", config.K, ")");
  std::vector<PairVote> votes;
  votes.reserve(tasks.size());
  for (const auto& t : tasks) votes.emplace_back(t, config);
  for (;;) {
    std::vector<std::size_t> live;
    std::vector<PairWave> waves;
    for (std::size_t i = 0; i < votes.size(); ++i) {
      if (votes[i].done()) continue;
      live.push_back(i);
      waves.push_back({&votes[i].task(), votes[i].next_wave()});
    }
    if (waves.empty()) break;
    const auto results = vote(waves);
    EVOQ_CHECK(results.size() == waves.size(), "vote function returned ", results.size(), " wave results for ",
               waves.size(), " waves");
    for (std::size_t w = 0; w < waves.size(); ++w) votes[live[w]].absorb(waves[w].requests, results[w]);
  }
  std::vector<PairLabel> labels;
  for (auto& v : votes) labels.push_back(v.take());
  return labels;
}

PairLabel vote_pair(const PairTask& task, const VoteFn& vote, const VoteConfig& config) {
  return vote_pairs({task}, batched(vote), config).front();
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

VoteStats run_voting(const PairSet& pairs, int rank, int size, const BatchVoteFn& vote, LabelStore& store,
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
  const std::size_t group = std::size_t(std::max(1, config.pairs_per_batch));
  for (std::size_t begin = 0; begin < todo.size(); begin += group) {
    std::vector<PairTask> tasks;
    for (std::size_t t = begin; t < std::min(todo.size(), begin + group); ++t) {
      const auto p = todo[t];
      tasks.push_back({p, pairs.first[p], pairs.second[p], &pairs});
    }
    for (PairLabel& label : vote_pairs(tasks, vote, config)) {
      ++stats.done;
      stats.samples += std::size_t(label.samples_used);
      stats.invalid += std::size_t(label.invalid);
      if (label.failed) ++stats.failed;
      else stats.samples_saved += std::size_t(config.K - label.samples_used);
      store.add(std::move(label));
    }
    if (store.pending() >= std::size_t(std::max(1, config.flush_every_pairs)) ||
        seconds_since(last_flush) >= config.flush_every_seconds) {
      const auto t0 = clock::now();
      store.flush();
      stats.flush_seconds.push_back(seconds_since(t0));
      last_flush = clock::now();
    }
    if (seconds_since(last_progress) >= config.progress_every_seconds) {
      report();
      last_progress = clock::now();
    }
    if (dist::stop_requested()) {
      stats.stopped = true;
      break;
    }
  }
  if (store.pending() > 0) {
    const auto t0 = clock::now();
    store.flush();
    stats.flush_seconds.push_back(seconds_since(t0));
  }
  stats.seconds = seconds_since(start);
  report();
  return stats;
}

}  // namespace evoq::evo
