// `evoq train`: the online stage of EvoQuality (paper section 3.2, Algorithm 1 lines 6-15): GRPO with
// fidelity rewards on the pseudo-labels of labels.h5, synchronous data parallel over the MPI ranks,
// resumable (docs/TRAINING.md). The work is train::run_training (evo/train_run.h).
#include "evoq/cli/cli.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "stage_options.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

int run(const po::variables_map& vm) {
  const auto settings = apps::train_settings(vm);
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  return train::run_training(settings, comm);
}

void add_options(po::options_description& o, po::positional_options_description&) { apps::add_train_options(o); }

EVOQ_COMMAND("train", "online stage: GRPO with fidelity rewards on labels.h5 (paper section 3.2)", add_options, run,
             "evoq train --model DIR --labels labels.h5 --out RUN_DIR [--steps N | --epochs E] [--resume] [--dry-run]\n"
             "evoq train --model DIR --reward estimate --estimates estimates.h5 --out RUN_DIR ...  (EvoEstimate;\n"
             "  --pairs-per-step is then images per step)\n"
             "  Defaults follow the paper: K = 32 rollouts per image, 16 pairs per step, lr 3e-7, beta 0.05, loss\n"
             "  1/(BK) over sequences. Rollouts are sampled with training's own settings (temperature 1, top_p 1,\n"
             "  top_k 0), never the model's generation_config; near-greedy sampling is refused. Every setting that\n"
             "  changes results is recorded in RUN_DIR/run_config.json, and --resume refuses a change to any of them.");

}  // namespace
