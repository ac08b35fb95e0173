// `evoq eval`: score benchmark datasets with a scorer (handcrafted baseline or a VLM checkpoint) and
// report SRCC / KRCC / PLCC per dataset and their weighted average (Table 2 layout). The work is
// eval::run_eval (eval/eval_run.h).
#include <cstdlib>
#include <iostream>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/dist/communicator.h"
#include "evoq/eval/baselines.h"
#include "stage_options.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

// True when started by mpirun/srun with more than one task: only then is MPI initialised, so a plain
// `evoq eval` needs no MPI runtime.
bool launched_in_parallel() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS"})
    if (const char* v = std::getenv(var); v && std::atoi(v) > 1) return true;
  return false;
}

int run(const po::variables_map& vm) {
  eval::register_baseline_scorers();
  auto settings = apps::eval_settings(vm);
  if (settings.model.empty()) throw UsageError("the option '--model' is required");
  std::shared_ptr<dist::Communicator> comm;
  if (launched_in_parallel()) {
    comm = dist::mpi_world();
    settings.rank = comm->rank();
    settings.world = comm->size();
    settings.scorer.local_rank = comm->local_rank();
    settings.barrier = [comm] { comm->barrier(); };
    settings.agree_on_error = [comm](const std::string& error) { return dist::agree_on_error(*comm, error); };
    log::set_rank(settings.rank);
  }
  eval::run_eval(settings, std::cout);
  return 0;
}

void add_options(po::options_description& o, po::positional_options_description&) { apps::add_eval_options(o); }

EVOQ_COMMAND("eval", "score IQA benchmarks and report SRCC/KRCC/PLCC (Table 2 layout)", add_options, run,
             "evoq eval --model niqe --dataset CSIQ --root CSIQ=/data/CSIQ [--dataset csv:FILE ...] --out DIR");

}  // namespace
