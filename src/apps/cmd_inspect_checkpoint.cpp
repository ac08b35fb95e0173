// evoq inspect-checkpoint: lists the tensors of a safetensors checkpoint (a directory with
// model.safetensors or a sharded index, or one .safetensors file) after full validation, one line per
// tensor: name, dtype, shape and the sha256 of its bytes (compare with hashlib / sha256sum).
#include <iostream>

#include "evoq/cli/cli.h"
#include "evoq/io/checkpoint_summary.h"
#include "evoq/io/safetensors.h"

namespace {

namespace po = boost::program_options;

void add_options(po::options_description& o, po::positional_options_description& p) {
  o.add_options()("checkpoint", po::value<std::string>(), "checkpoint directory or .safetensors file")(
      "no-hash", po::bool_switch()->default_value(false), "skip the sha256 column (faster on large models)");
  p.add("checkpoint", 1);
}

int run(const po::variables_map& vm) {
  const auto checkpoint = evoq::io::Checkpoint::open(evoq::cli::require_string(vm, "checkpoint"));
  evoq::io::print_checkpoint_summary(checkpoint, std::cout, !vm["no-hash"].as<bool>());
  return 0;
}

EVOQ_COMMAND("inspect-checkpoint", "(inspection) validate a safetensors checkpoint and list name/dtype/shape/sha256",
             add_options, run, "evoq inspect-checkpoint DIR|FILE [--no-hash]");

}  // namespace
