// `evoq vote`: the offline stage (paper section 3.1, Eq. 1, Algorithm 1 lines 2-5). MPI ranks split
// the pairs of pairs.h5; each pair gets up to K sampled answers to c_compare (+ reasoning suffix)
// with the image order swapped per sample; p* by majority vote with the lossless early stop. Every
// rank flushes finished pairs to its own crash-safe shard, a rerun skips them, and rank 0 merges the
// shards into labels.h5 (docs/FORMATS.md "labels.h5"). The work is evo::run_vote (evo/vote_stage.h).
#include "evoq/cli/cli.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "stage_options.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

int run(const po::variables_map& vm) {
  const auto settings = apps::vote_settings(vm);
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  return evo::run_vote(settings, *comm);
}

void add_options(po::options_description& o, po::positional_options_description&) { apps::add_vote_options(o); }

EVOQ_COMMAND("vote", "offline stage: K sampled c_compare votes per pair -> pseudo-labels p* (labels.h5), MPI-parallel, resumable",
             add_options, run,
             "mpirun -np R evoq vote --model DIR --pairs pairs.h5 --out labels.h5 [--samples 32] [--seed S]\n"
             "  Sampling defaults for voting: temperature 1, top_p 1, top_k 50, no repetition penalty (not the model's\n"
             "  generation_config). Exit status 3: finished, but some pairs failed (reasons in labels.h5 and the log).\n"
             "  SIGUSR1/SIGTERM: every rank flushes its finished pairs and exits with status 75; rerun to continue.\n"
             "  A rerun with another K, seed, sampling, prompt or model is refused, naming the settings that differ.");

}  // namespace
