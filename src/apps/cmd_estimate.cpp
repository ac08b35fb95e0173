// `evoq estimate`: the offline stage of EvoEstimate, the paper's ablation (section 4.4, Table 5): the mean
// of K sampled c_score answers per image as its pseudo score (estimates.h5). The work is
// evo::run_estimate (evo/estimate_stage.h).
#include "evoq/cli/cli.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "stage_options.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

int run(const po::variables_map& vm) {
  const auto settings = apps::estimate_settings(vm);
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  return evo::run_estimate(settings, *comm);
}

void add_options(po::options_description& o, po::positional_options_description&) { apps::add_estimate_options(o); }

EVOQ_COMMAND("estimate", "EvoEstimate offline stage: mean of K sampled c_score answers per image (estimates.h5)",
             add_options, run,
             "mpirun -np R evoq estimate --model DIR --pairs pairs.h5 --out estimates.h5 [--samples 32] [--seed S]\n"
             "  Sampling defaults as `evoq vote`: temperature 1, top_p 1, top_k 50.");

}  // namespace
