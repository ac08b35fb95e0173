// `evoq generate`: samples continuations of one chat prompt with images and prints each sample's token
// ids and text (--json for machine-readable output). The inspection tool for prompts, and what the
// generation parity tests and benchmarks drive. `--requests FILE` (or `-` for stdin) keeps the model
// loaded for many prompts: one JSON request per line in, one JSON result per line out, in order.
#include <chrono>
#include <fstream>
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

// One prompt to sample: from the command line, or one line of --requests (missing keys take the
// command line's values).
struct Call {
  std::vector<std::string> images;
  std::string prompt;
  int samples = 1;
  uint64_t seed = 0;
  uint64_t request_id = 0;
  int first_sample = 0;
  int64_t max_new_tokens = 0;  // at most the command line's (the decoder's reserve)
  bool asks_sampling = false;  // --samples/--seed given, or the request names "samples"/"seed"
};

// Samples `call` and returns the --json object (timings are this call's own).
nlohmann::json sample(const gen::VlmSession& session, gen::ModelDecoder& decoder, gen::EngineOptions opts,
                      const Call& call) {
  opts.seed = call.seed;
  opts.sampling.max_new_tokens = call.max_new_tokens;
  if (call.asks_sampling && !opts.sampling.do_sample) {
    opts.sampling.do_sample = true;
    gen::validate(opts.sampling, "sampling options");
  }
  gen::GenerationRequest req;
  req.request_id = call.request_id;
  req.prompt = session.build_prompt(call.images, call.prompt);
  req.samples = call.samples;
  req.first_sample = call.first_sample;

  const double prefill_before = decoder.prefill_seconds(), decode_before = decoder.decode_seconds();
  gen::Engine engine(decoder, opts);
  auto start = std::chrono::steady_clock::now();
  auto out = engine.generate({req})[0];
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::json j;
  j["prompt_tokens"] = req.prompt.input_ids.size();
  j["do_sample"] = opts.sampling.do_sample;
  j["seed"] = opts.seed;
  j["seconds"] = seconds;
  j["prefill_seconds"] = decoder.prefill_seconds() - prefill_before;
  j["decode_seconds"] = decoder.decode_seconds() - decode_before;
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
  return j;
}

void print_text(const gen::VlmSession& session, const nlohmann::json& j) {
  for (const auto& s : j["samples"]) {
    const auto tokens = s["tokens"].get<std::vector<int32_t>>();
    std::cout << "sample " << s["index"].get<int>() << " (" << tokens.size() << " tokens, "
              << s["finish"].get<std::string>() << "):";
    for (int32_t t : tokens) std::cout << ' ' << t;
    std::cout << "\n" << s["text"].get<std::string>() << "\n\n";
  }
}


// One line of --requests: {"images": [...], "prompt": "...", "samples": K, "seed": S, "request_id": R,
// "first_sample": F, "max_new_tokens": N}, every key optional. Unknown keys are refused (a typo would silently sample the default).
Call parse_request(const std::string& line, const Call& defaults, bool greedy, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(where + "not JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw UsageError(where + "a request is a JSON object");
  Call c = defaults;
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "images") c.images = value.get<std::vector<std::string>>();
      else if (key == "prompt") c.prompt = value.get<std::string>();
      else if (key == "samples") c.samples = value.get<int>();
      else if (key == "seed") c.seed = value.get<uint64_t>();
      else if (key == "request_id") c.request_id = value.get<uint64_t>();
      else if (key == "first_sample") c.first_sample = value.get<int>();
      else if (key == "max_new_tokens") c.max_new_tokens = value.get<int64_t>();
      else throw UsageError(where + "unknown key \"" + key +
                            "\" (known: images, prompt, samples, seed, request_id, first_sample, max_new_tokens)");
      if (key == "samples" || key == "seed") {
        if (greedy) throw UsageError(where + "\"" + key + "\" with --greedy (greedy decoding draws no samples)");
        c.asks_sampling = true;
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(where + "bad value (" + e.what() + ")");
  }
  if (c.samples < 1) throw UsageError(where + "samples must be >= 1");
  if (c.first_sample < 0) throw UsageError(where + "first sample must be >= 0");
  if (c.prompt.empty()) throw UsageError(where + "no prompt (--prompt or the request's \"prompt\")");
  if (c.max_new_tokens < 1 || c.max_new_tokens > defaults.max_new_tokens)
    throw UsageError(where + "max_new_tokens must be in 1.." + std::to_string(defaults.max_new_tokens) +
                     " (--max-new-tokens)");
  return c;
}

int run(const po::variables_map& vm) {
  const bool greedy = vm.count("greedy") > 0;
  const bool sampled = !vm["samples"].defaulted() || !vm["seed"].defaulted();
  if (greedy && sampled) throw UsageError("--greedy excludes --samples/--seed");
  const bool batch = vm.count("requests") > 0;
  Call defaults;
  if (vm.count("image")) defaults.images = vm["image"].as<std::vector<std::string>>();
  // One prompt needs --prompt; a batch may name its prompt per request instead.
  if (!batch) defaults.prompt = cli::require_string(vm, "prompt");
  else if (vm.count("prompt")) defaults.prompt = vm["prompt"].as<std::string>();
  defaults.samples = vm["samples"].as<int>();
  defaults.seed = vm["seed"].as<uint64_t>();
  defaults.request_id = vm["request-id"].as<uint64_t>();
  defaults.first_sample = vm["first-sample"].as<int>();
  defaults.asks_sampling = sampled;
  if (defaults.samples < 1) throw UsageError("--samples must be >= 1");
  if (defaults.first_sample < 0) throw UsageError("--first-sample must be >= 0");

  std::ifstream file;
  if (batch && vm["requests"].as<std::string>() != "-") {
    file.open(vm["requests"].as<std::string>());
    if (!file) throw UsageError("cannot read --requests file '" + vm["requests"].as<std::string>() + "'");
  }
  std::istream& requests = file.is_open() ? static_cast<std::istream&>(file) : std::cin;

  auto session = evoq::apps::open_session(vm, "generate");
  gen::EngineOptions opts;
  opts.sampling = session.defaults;
  if (greedy) opts.sampling.do_sample = false;  // sampling is asked per call (Call::asks_sampling)
  opts.sampling = evoq::gen::with_overrides(opts.sampling, evoq::apps::sampling_overrides(vm), "sampling options");
  opts.stop_ids = session.stop_ids;
  if (vm.count("ignore-stop")) opts.stop_ids.clear();  // benchmarks: every sample runs to the length
  opts.model_logprobs = vm.count("model-logprobs") > 0;
  defaults.max_new_tokens = opts.sampling.max_new_tokens;

  torch::NoGradGuard no_grad;
  gen::ModelDecoder decoder(session.model, opts.sampling.max_new_tokens);
  if (!batch) {
    auto j = sample(session, decoder, opts, defaults);
    if (vm.count("json")) std::cout << j.dump() << "\n";
    else print_text(session, j);
    return 0;
  }
  // Held process: answer each line as it comes (a driver may wait for one answer before it writes the
  // next request); a blank line or end of input ends the run.
  std::string line;
  for (int64_t n = 1; std::getline(requests, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) break;
    const std::string where = "--requests line " + std::to_string(n) + ": ";
    auto j = sample(session, decoder, opts, parse_request(line, defaults, greedy, where));
    j["request"] = n - 1;
    std::cout << j.dump() << std::endl;
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
                   "requests", po::value<std::string>(),
                   "FILE or - (stdin): many prompts with the model loaded once; one JSON object per line "
                   "({\"images\": [...], \"prompt\": ..., \"samples\": K, \"seed\": S, \"request_id\": R, "
                   "\"max_new_tokens\": N}, missing keys from the options above; N at most --max-new-tokens), one JSON result per line, in order; a blank line ends")(
                   "model-logprobs", "also print raw model log-probs of each token")(
                   "ignore-stop", "do not stop at stop ids (benchmarks)")("json", "print JSON");
               evoq::apps::add_sampling_options(o, 128, "the model's generation_config.json");
               evoq::apps::add_runtime_options(o);
             },
             run,
             "evoq generate --model DIR [--image A ...] --prompt TEXT [--greedy | --samples K --seed S] "
             "--max-new-tokens N [--json]\n"
             "  evoq generate --model DIR --requests FILE|- --samples K --max-new-tokens N   (one JSON line per prompt)");

}  // namespace
