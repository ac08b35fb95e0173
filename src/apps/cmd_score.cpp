// `evoq score`: quality score of each image with the paper's c_score prompt. Greedy (one answer) by
// default; --samples N samples N answers and reports their mean and spread. Invalid answers are
// counted, never replaced.
#include <algorithm>
#include <cmath>
#include <map>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/gen/answer_parser.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/image_scoring.h"
#include "evoq/gen/model_decoder.h"
#include "evoq/gen/prompts.h"
#include "stage_options.h"
#include "evoq/gen/vlm_session.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

int run(const po::variables_map& vm) {
  if (!vm.count("images")) throw UsageError("give at least one IMAGE");
  const auto images = vm["images"].as<std::vector<std::string>>();
  const int samples = vm["samples"].as<int>();
  if (samples < 1) throw UsageError("--samples must be >= 1");
  const bool reasoning = vm["reasoning"].as<bool>();
  std::string prompt = vm.count("prompt-file") ? gen::read_prompt_file(vm["prompt-file"].as<std::string>(), 1)
                                               : std::string(gen::kScorePrompt);
  prompt = gen::with_reasoning_suffix(prompt, reasoning);

  auto session = evoq::apps::open_session(vm, "score");
  gen::EngineOptions opts;
  // Greedy for one answer; for a spread, voting's sampling (a chat model's generation_config is near-greedy).
  opts.sampling = samples > 1 ? gen::vote_sampling_defaults(session.defaults) : session.defaults;
  opts.sampling.do_sample = samples > 1;
  opts.sampling = evoq::gen::with_overrides(opts.sampling, evoq::apps::sampling_overrides(vm), "sampling options");
  opts.stop_ids = session.stop_ids;
  opts.seed = vm["seed"].as<uint64_t>();
  opts.max_batch_sequences = std::max(vm["batch"].as<int>(), 1);

  auto scores = gen::score_images(session, images, samples, prompt, opts);

  for (const auto& s : scores) {
    std::cout << s.image << "\t";
    if (s.valid == 0) std::cout << "invalid";
    else std::cout << std::fixed << std::setprecision(4) << s.mean;
    if (samples > 1) std::cout << "\tstd " << s.stddev << "\tvalid " << s.valid << "/" << s.samples;
    if (!s.invalid.empty()) std::cout << "\t(" << s.invalid_summary() << ")";
    std::cout << "\n";
  }
  if (vm.count("out")) {
    const std::string path = vm["out"].as<std::string>();
    std::ofstream f(path);
    EVOQ_CHECK(f, "cannot write --out ", path);
    if (path.ends_with(".json")) {
      nlohmann::json j;
      j["prompt"] = prompt;
      j["samples"] = samples;
      j["do_sample"] = opts.sampling.do_sample;
      j["seed"] = opts.seed;
      for (const auto& s : scores) {
        nlohmann::json e;
        e["image"] = s.image;
        e["valid"] = s.valid;
        e["samples"] = s.samples;
        e["mean"] = s.valid ? nlohmann::json(s.mean) : nlohmann::json(nullptr);
        e["std"] = s.valid >= 2 ? nlohmann::json(s.stddev) : nlohmann::json(nullptr);
        e["invalid"] = s.invalid;
        e["responses"] = s.responses;
        j["images"].push_back(e);
      }
      f << j.dump(2) << "\n";
    } else if (path.ends_with(".csv")) {
      f << "image,mean,std,valid,samples,invalid\n";
      for (const auto& s : scores) {
        f << '"' << s.image << "\"," << (s.valid ? std::to_string(s.mean) : "") << ","
          << (s.valid >= 2 ? std::to_string(s.stddev) : "") << "," << s.valid << "," << s.samples << ","
          << s.invalid_summary() << "\n";
      }
    } else {
      throw UsageError("--out " + path + ": use a .csv or .json file name");
    }
  }
  return 0;
}

EVOQ_COMMAND("score", "quality score of each image (paper prompt c_score)",
             [](po::options_description& o, po::positional_options_description& p) {
               o.add_options()("model", po::value<std::string>(), "checkpoint directory")(
                   "images", po::value<std::vector<std::string>>(), "image files")(
                   "samples", po::value<int>()->default_value(1), "answers per image (1 = greedy)")(
                   "seed", po::value<uint64_t>()->default_value(0), "sampling seed")(
                   "reasoning", po::value<bool>()->default_value(false)->implicit_value(true),
                   "append the paper's reasoning suffix")(
                   "prompt-file", po::value<std::string>(), "custom prompt text instead of c_score")(
                   "out", po::value<std::string>(), "also write results to FILE.csv or FILE.json")(
                   "batch", po::value<int>()->default_value(64), "sequences decoded together");
               p.add("images", -1);
               evoq::apps::add_sampling_options(o, 256, "generation_config.json for one answer, `evoq vote`'s for --samples > 1");
               evoq::apps::add_runtime_options(o);
             },
             run, "evoq score --model DIR IMAGE... [--samples N] [--reasoning] [--out F.csv|F.json] [--prompt-file F]");

}  // namespace
