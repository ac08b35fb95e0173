// `evoq vote`: the offline stage (paper section 3.1, Eq. 1, Algorithm 1 lines 2-5). MPI ranks split
// the pairs of pairs.h5; each pair gets up to K sampled answers to c_compare (+ reasoning suffix)
// with the image order swapped per sample; p* by majority vote with the lossless early stop. Every
// rank flushes finished pairs to its own crash-safe shard, a rerun skips them, and rank 0 merges the
// shards into labels.h5 (docs/FORMATS.md "labels.h5").
#include <iostream>
#include <nlohmann/json.hpp>

#include "evoq/core/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "evoq/evo/label_store.h"
#include "evoq/evo/model_voter.h"
#include "evoq/evo/pairs.h"
#include "evoq/evo/stop_signal.h"
#include "evoq/evo/vote_loop.h"
#include "evoq/evo/vote_stage.h"
#include "evoq/gen/prompts.h"
#include "evoq/gen/sampling_options.h"
#include "evoq/gen/vote_sampling.h"
#include "evoq/io/atomic_file.h"
#include "evoq/io/checkpoint_summary.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;
using nlohmann::json;

std::string rank0_string(dist::Communicator& comm, const std::function<std::string()>& compute) {
  const std::string mine = comm.is_root() ? compute() : "";
  return dist::to_string(comm.all_gather_bytes(dist::to_bytes(mine)).front());
}

int run(const po::variables_map& vm) {
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  gen::apply_runtime_options(vm);
  const std::string model_dir = cli::require_string(vm, "model");
  const std::string pairs_path = cli::require_string(vm, "pairs");
  const std::string out = cli::require_string(vm, "out");
  const std::string shard_dir = vm.count("shards") ? vm["shards"].as<std::string>() : out + ".shards";

  evo::PairSet pairs = evo::read_pairs_h5(pairs_path);
  if (vm.count("root")) pairs.root = vm["root"].as<std::string>();
  if (pairs.size() == 0) throw Error(pairs_path + ": no pairs to vote");

  evo::VoteConfig config;
  config.K = vm["samples"].as<int>();
  if (config.K < 1) throw UsageError("--samples must be >= 1");
  config.seed = vm["seed"].as<std::uint64_t>();
  config.early_stop = vm["early-stop"].as<bool>();
  config.pairs_per_batch = vm["pairs-per-batch"].as<int>();
  if (config.pairs_per_batch < 1) throw UsageError("--pairs-per-batch must be >= 1");
  config.flush_every_pairs = vm["flush-every"].as<int>();
  config.flush_every_seconds = vm["flush-seconds"].as<double>();
  config.progress_every_seconds = vm["progress-every"].as<double>();
  config.keep_responses = vm["keep-responses"].as<bool>();
  config.split = evo::parse_rank_split(vm["split"].as<std::string>());

  std::string prompt = vm.count("prompt-file") ? gen::read_prompt_file(vm["prompt-file"].as<std::string>(), 2)
                                               : std::string(gen::kComparePrompt);
  prompt = gen::with_reasoning_suffix(prompt, vm["reasoning"].as<bool>());

  // The session is loaded before the fingerprint so that a bad model folder fails fast everywhere.
  const bool merge_only = vm.count("merge") > 0;
  std::unique_ptr<gen::VlmSession> session;
  if (!merge_only)
    session = std::make_unique<gen::VlmSession>(
        gen::VlmSession::load(model_dir, gen::runtime_dtype(vm), gen::runtime_device(vm)));
  gen::EngineOptions engine;
  engine.sampling = gen::vote_sampling_defaults(session ? session->defaults : gen::model_sampling_defaults(model_dir));
  gen::apply_sampling_options(vm, engine.sampling);
  engine.seed = config.seed;
  engine.max_batch_sequences = vm["max-batch-sequences"].as<int>();
  if (session) engine.stop_ids = session->stop_ids;

  evo::LabelRunInfo info;
  info.model_path = model_dir;
  info.model_checksum = rank0_string(*comm, [&] { return io::weights_checksum(model_dir); });
  info.K = config.K;
  info.sampling = {{"temperature", engine.sampling.temperature}, {"top_p", engine.sampling.top_p},
                   {"top_k", engine.sampling.top_k}, {"repetition_penalty", engine.sampling.repetition_penalty},
                   {"max_new_tokens", engine.sampling.max_new_tokens}, {"dtype", vm["dtype"].as<std::string>()}};
  info.seed = config.seed;
  info.prompt = prompt;
  info.early_stop = config.early_stop;
  info.pairs_file = pairs_path;
  info.num_pairs = pairs.size();
  info.keep_responses = config.keep_responses;

  evo::VoteStageConfig stage;
  stage.loop = config;
  stage.shard_dir = shard_dir;
  stage.out_path = out;
  stage.stats_path = vm.count("stats") ? vm["stats"].as<std::string>() : "";
  stage.merge_only = merge_only;
  stage.allow_partial = vm["allow-partial"].as<bool>();
  std::unique_ptr<evo::ModelVoter> voter;
  evo::BatchVoteFn vote;
  if (session) {
    voter = std::make_unique<evo::ModelVoter>(*session, prompt, engine);
    vote = [&voter](const std::vector<evo::PairWave>& waves) { return (*voter)(waves); };
  }
  return evo::run_vote_stage(pairs, info, stage, vote, *comm, [&] {
    return json{{"prefill_seconds", voter->prefill_seconds()}, {"decode_seconds", voter->decode_seconds()}};
  });
}

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("model", po::value<std::string>(), "checkpoint directory of the voting model (round t votes with round t-1's model)")
      ("pairs", po::value<std::string>(), "pairs.h5 from `evoq pairs`")
      ("out,o", po::value<std::string>(), "labels.h5 to write (merged from the shards at the end)")
      ("shards", po::value<std::string>(), "folder of the per-rank crash-safe shards (default: OUT.shards); a rerun resumes from it")
      ("root", po::value<std::string>(), "folder the pair images are relative to (default: the root stored in pairs.h5)")
      ("samples,K", po::value<int>()->default_value(32), "samples per pair (K of Eq. 1)")
      ("seed", po::value<std::uint64_t>()->default_value(0), "seed of the sampled answers and of the per-sample order swaps")
      ("early-stop", po::value<bool>()->default_value(true)->implicit_value(true),
       "stop a pair once the remaining samples cannot change p* (lossless; --early-stop=0 draws all K)")
      ("reasoning", po::value<bool>()->default_value(true)->implicit_value(true),
       "append the paper's reasoning suffix to c_compare (--reasoning=0 to leave it out)")
      ("prompt-file", po::value<std::string>(), "custom compare prompt instead of c_compare")
      ("keep-responses", po::value<bool>()->default_value(false)->implicit_value(true), "store every raw response in labels.h5")
      ("pairs-per-batch", po::value<int>()->default_value(4), "pairs voted together (their samples share one decode batch)")
      ("max-batch-sequences", po::value<int>()->default_value(64), "live sequences decoded together")
      ("split", po::value<std::string>()->default_value("block"), "how ranks split the pairs: block | strided")
      ("flush-every", po::value<int>()->default_value(16), "flush the shard after this many finished pairs...")
      ("flush-seconds", po::value<double>()->default_value(60.0), "...or this many seconds, whichever comes first")
      ("progress-every", po::value<double>()->default_value(10.0), "seconds between progress lines (rank 0)")
      ("merge", "only merge the existing shards into OUT (no voting)")
      ("allow-partial", po::value<bool>()->default_value(false)->implicit_value(true), "merge even when pairs are missing")
      ("stats", po::value<std::string>(), "write per-rank statistics (pairs, samples, seconds) to this JSON file");
  gen::add_sampling_options(o, 256);
  gen::add_runtime_options(o);
}

EVOQ_COMMAND("vote", "offline stage: K sampled c_compare votes per pair -> pseudo-labels p* (labels.h5), MPI-parallel, resumable",
             add_options, run,
             "mpirun -np R evoq vote --model DIR --pairs pairs.h5 --out labels.h5 [--samples 32] [--seed S]\n"
             "  Sampling defaults for voting: temperature 1, top_p 1, top_k 50, no repetition penalty (not the model's\n"
             "  generation_config). Exit status 3: finished, but some pairs failed (reasons in labels.h5 and the log).\n"
             "  SIGUSR1/SIGTERM: every rank flushes its finished pairs and exits with status 75; rerun to continue.");

}  // namespace
