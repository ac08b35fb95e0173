#include "evoq/evo/vote_stage.h"

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/evo/stop_signal.h"
#include "evoq/io/atomic_file.h"

namespace evoq::evo {

namespace {

using nlohmann::json;

json stats_json(const VoteStats& s, int rank) {
  return {{"rank", rank},       {"assigned", s.assigned}, {"skipped", s.skipped},
          {"done", s.done},     {"failed", s.failed},     {"samples", s.samples},
          {"samples_saved", s.samples_saved}, {"invalid", s.invalid}, {"seconds", s.seconds},
          {"stopped", s.stopped}, {"flush_seconds", s.flush_seconds}};
}

// Votes this rank's pairs; returns its statistics, or throws (every rank) after the agreement.
json vote_on_every_rank(const PairSet& pairs, const LabelRunInfo& info, const VoteStageConfig& config,
                        const BatchVoteFn& vote, dist::Communicator& comm,
                        const std::function<json()>& rank_extras, std::vector<json>& all_ranks) {
  install_stop_handlers();
  std::string error;
  json mine;
  try {
    LabelStore store(config.shard_dir, comm.rank(), info);
    if (comm.is_root())
      log::info("vote: ", pairs.size(), " pairs, K = ", config.loop.K, ", ", comm.size(), " rank(s), ",
                store.finished_count(), " already finished in ", config.shard_dir);
    const auto progress = [&](const std::string& line) {
      if (comm.is_root()) log::info(line);
    };
    const auto stats = run_voting(pairs, comm.rank(), comm.size(), vote, store, config.loop, progress);
    mine = stats_json(stats, comm.rank());
    if (rank_extras) mine.update(rank_extras());
  } catch (const std::exception& e) {
    error = e.what();
    log::error("rank ", comm.rank(), ": ", error, " — stopping this rank's vote; flushed pairs are kept");
  }
  const auto agreed = dist::agree_on_error(comm, error);
  if (!agreed.empty()) fail("vote: ", agreed, "; rerun the same command to continue");
  for (const auto& blob : comm.all_gather_bytes(dist::to_bytes(mine.dump())))
    all_ranks.push_back(json::parse(dist::to_string(blob)));
  return mine;
}

void report(const std::vector<json>& ranks, const std::string& stats_path) {
  std::size_t done = 0, samples = 0, saved = 0, invalid = 0;
  double seconds = 0;
  for (const auto& r : ranks) {
    done += r["done"].get<std::size_t>();
    samples += r["samples"].get<std::size_t>();
    saved += r["samples_saved"].get<std::size_t>();
    invalid += r["invalid"].get<std::size_t>();
    seconds = std::max(seconds, r["seconds"].get<double>());
  }
  log::info("vote: ", done, " pairs voted in ", seconds, " s (", seconds > 0 ? double(done) / seconds : 0.0,
            " pairs/s), ", samples, " samples (", done ? double(samples) / double(done) : 0.0,
            " per pair; early stop saved ", saved, "), invalid answers ", invalid);
  if (!stats_path.empty()) io::write_file_atomic(stats_path, json{{"ranks", ranks}}.dump(2) + "\n");
}

}  // namespace

int run_vote_stage(const PairSet& pairs, const LabelRunInfo& info, const VoteStageConfig& config,
                   const BatchVoteFn& vote, dist::Communicator& comm, const std::function<json()>& rank_extras) {
  if (!config.merge_only) {
    std::vector<json> ranks;
    vote_on_every_rank(pairs, info, config, vote, comm, rank_extras, ranks);
    bool stopped = false;
    for (const auto& r : ranks) stopped = stopped || r.value("stopped", false);
    if (stopped) {
      log::info("vote: stopped on a signal; finished pairs are in ", config.shard_dir,
                " — rerun the same command to continue");
      return kExitStoppedBySignal;
    }
    dist::run_agreed(comm, "vote", true, [&] { report(ranks, config.stats_path); });
  }
  MergeSummary summary;
  dist::run_agreed(comm, "vote: merge", true, [&] {
    summary = merge_labels(config.shard_dir, pairs, info, config.out_path, config.allow_partial);
    log::info("merged ", summary.pairs, " pairs into ", config.out_path, ": ", summary.labelled, " labelled, ",
              summary.no_label, " without label (all answers invalid), ", summary.failed, " failed, ",
              summary.missing, " missing");
    if (summary.failed > 0)
      for (const auto& l : read_shards(config.shard_dir))
        if (l.failed) log::warn("pair ", l.pair_index, " failed: ", l.fail_reason);
  });
  // Every rank returns the same status: rank 0 knows whether pairs failed.
  auto flag = torch::tensor({summary.failed > 0 ? 1.0 : 0.0}, torch::kFloat64);
  comm.all_reduce(flag, dist::ReduceOp::max);
  return flag.item<double>() > 0 ? kExitSomePairsFailed : 0;
}

}  // namespace evoq::evo
