// `evoq generate`: samples continuations of one chat prompt with images and prints each sample's token
// ids and text (--json for machine-readable output). The inspection tool for prompts, and what the
// generation parity tests and benchmarks drive.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/model_decoder.h"
#include "stage_options.h"
#include "evoq/gen/vlm_session.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

int run(const po::variables_map& vm) {
  const bool greedy = vm.count("greedy") > 0;
  const bool sampled = !vm["samples"].defaulted() || !vm["seed"].defaulted();
  if (greedy && sampled) throw UsageError("--greedy excludes --samples/--seed");
  const int samples = vm["samples"].as<int>();
  if (samples < 1) throw UsageError("--samples must be >= 1");

  auto session = evoq::apps::open_session(vm, "generate");
  gen::EngineOptions opts;
  opts.sampling = session.defaults;
  if (greedy) opts.sampling.do_sample = false;
  if (sampled) opts.sampling.do_sample = true;
  opts.sampling = evoq::gen::with_overrides(opts.sampling, evoq::apps::sampling_overrides(vm), "sampling options");
  opts.stop_ids = session.stop_ids;
  if (vm.count("ignore-stop")) opts.stop_ids.clear();  // benchmarks: every sample runs to the length
  opts.seed = vm["seed"].as<uint64_t>();
  opts.model_logprobs = vm.count("model-logprobs") > 0;

  std::vector<std::string> images;
  if (vm.count("image")) images = vm["image"].as<std::vector<std::string>>();
  gen::GenerationRequest req;
  req.request_id = vm["request-id"].as<uint64_t>();
  req.prompt = session.build_prompt(images, cli::require_string(vm, "prompt"));
  req.samples = samples;
  req.first_sample = vm["first-sample"].as<int>();
  if (req.first_sample < 0) throw UsageError("--first-sample must be >= 0");

  torch::NoGradGuard no_grad;
  gen::ModelDecoder decoder(session.model, opts.sampling.max_new_tokens);
  gen::Engine engine(decoder, opts);
  auto start = std::chrono::steady_clock::now();
  auto out = engine.generate({req})[0];
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (vm.count("json")) {
    nlohmann::json j;
    j["prompt_tokens"] = req.prompt.input_ids.size();
    j["do_sample"] = opts.sampling.do_sample;
    j["seed"] = opts.seed;
    j["seconds"] = seconds;
    j["prefill_seconds"] = decoder.prefill_seconds();
    j["decode_seconds"] = decoder.decode_seconds();
    for (const auto& s : out) {
      nlohmann::json js;
      js["index"] = s.sample_index;
      js["tokens"] = s.tokens;
      js["text"] = session.decode_text(s.tokens);
      js["finish"] = gen::to_string(s.finish);
      js["sample_logprobs"] = s.sample_logprobs;
      if (opts.model_logprobs) js["model_logprobs"] = s.model_logprobs;
      j["samples"].push_back(js);
    }
    std::cout << j.dump() << "\n";
    return 0;
  }
  for (const auto& s : out) {
    std::cout << "sample " << s.sample_index << " (" << s.tokens.size() << " tokens, " << gen::to_string(s.finish)
              << "):";
    for (int32_t t : s.tokens) std::cout << ' ' << t;
    std::cout << "\n" << session.decode_text(s.tokens) << "\n\n";
  }
  return 0;
}

EVOQ_COMMAND("generate", "sample continuations of a chat prompt with images; print token ids and text",
             [](po::options_description& o, po::positional_options_description&) {
               o.add_options()("model", po::value<std::string>(), "checkpoint directory")(
                   "image", po::value<std::vector<std::string>>()->composing(), "image file (repeat for several)")(
                   "prompt", po::value<std::string>(), "user text after the images")(
                   "greedy", "greedy decoding (overrides generation_config.json's do_sample)")(
                   "samples", po::value<int>()->default_value(1), "samples sharing one prefill (implies sampling)")(
                   "seed", po::value<uint64_t>()->default_value(0), "seed of the samples (implies sampling)")(
                   "request-id", po::value<uint64_t>()->default_value(0), "request id of the random streams")(
                   "first-sample", po::value<int>()->default_value(0), "index of the first sample (its random stream)")(
                   "model-logprobs", "also print raw model log-probs of each token")(
                   "ignore-stop", "do not stop at stop ids (benchmarks)")("json", "print JSON");
               evoq::apps::add_sampling_options(o, 128, "the model's generation_config.json");
               evoq::apps::add_runtime_options(o);
             },
             run,
             "evoq generate --model DIR [--image A ...] --prompt TEXT [--greedy | --samples K --seed S] "
             "--max-new-tokens N [--json]");

}  // namespace
