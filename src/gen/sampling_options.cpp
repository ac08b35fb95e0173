#include "evoq/gen/sampling_options.h"

namespace evoq::gen {

namespace po = boost::program_options;

void add_sampling_options(po::options_description& options, int64_t default_max_new_tokens) {
  options.add_options()
      ("temperature", po::value<double>(), "sampling temperature (default: the model's generation_config.json)")
      ("top-p", po::value<double>(), "nucleus sampling mass in (0, 1] (default: generation_config.json)")
      ("top-k", po::value<int64_t>(), "keep the k most likely tokens, 0 = off (default: generation_config.json)")
      ("repetition-penalty", po::value<double>(), "HF repetition penalty, 1 = off (default: generation_config.json)")
      ("max-new-tokens", po::value<int64_t>()->default_value(default_max_new_tokens), "generated tokens at most");
}

void apply_sampling_options(const po::variables_map& vm, SamplingParams& p) {
  if (vm.count("temperature")) p.temperature = vm["temperature"].as<double>();
  if (vm.count("top-p")) p.top_p = vm["top-p"].as<double>();
  if (vm.count("top-k")) p.top_k = vm["top-k"].as<int64_t>();
  if (vm.count("repetition-penalty")) p.repetition_penalty = vm["repetition-penalty"].as<double>();
  if (vm.count("max-new-tokens")) p.max_new_tokens = vm["max-new-tokens"].as<int64_t>();
  validate(p, "sampling options");
}

}  // namespace evoq::gen
