// `evoq pairs`: draws the image pairs of a voting round and writes pairs.h5 (docs/FORMATS.md).
#include <iostream>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/evo/manifest.h"
#include "evoq/evo/pairs.h"

namespace {

using namespace evoq;
namespace po = boost::program_options;

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("manifest", po::value<std::string>(), "image folder (searched recursively) or list file: path[,reference_id] per line")
      ("root", po::value<std::string>()->default_value(""), "folder the list file's paths are relative to (default: the list file's folder)")
      ("out,o", po::value<std::string>()->default_value("pairs.h5"), "output pairs file")
      ("num-pairs,n", po::value<long long>()->default_value(20000), "number of pairs to draw")
      ("mode", po::value<std::string>()->default_value("random"), "random (round 1: any two distinct images) | same-reference (round 2: images sharing a reference id)")
      ("seed", po::value<unsigned long long>()->default_value(0), "random seed")
      ("pair-list", po::value<std::string>(), "take the pairs from this file (image_a,image_b per line: manifest paths or 0-based indices) instead of drawing them");
}

int run(const po::variables_map& vm) {
  const auto manifest = evo::load_manifest(cli::require_string(vm, "manifest"), vm["root"].as<std::string>());
  const std::string out = cli::require_string(vm, "out");
  const auto seed = vm["seed"].as<unsigned long long>();
  evo::PairSet pairs;
  if (vm.count("pair-list")) {
    pairs = evo::read_pair_list(manifest, vm["pair-list"].as<std::string>());
  } else {
    const long long n = vm["num-pairs"].as<long long>();
    if (n <= 0) throw UsageError("--num-pairs must be > 0 (got " + std::to_string(n) + ")");
    const std::string mode = vm["mode"].as<std::string>();
    if (mode == "random") pairs = evo::sample_random_pairs(manifest, std::uint64_t(n), seed);
    else if (mode == "same-reference") pairs = evo::sample_same_reference_pairs(manifest, std::uint64_t(n), seed);
    else throw UsageError("--mode '" + mode + "' is not one of random, same-reference");
  }
  evo::write_pairs_h5(out, pairs);
  log::info("pairs: wrote ", pairs.size(), " ", pairs.mode, " pairs of ", pairs.image_paths.size(), " images to ", out);
  return 0;
}

EVOQ_COMMAND("pairs", "draw the image pairs of a voting round (pairs.h5)", add_options, run,
             "evoq pairs --manifest DIR|LIST [--root DIR] [-n N] [--mode random|same-reference] [--seed S] [--pair-list FILE] -o pairs.h5");

}  // namespace
