// `evoq compare`: which of two images has better quality, by K sampled answers to the paper's
// c_compare prompt. Each sample shows the images in the original or swapped order by its own random
// bit (compare_order.h); votes are mapped back to the original order; invalid answers are counted.
#include <iostream>
#include <nlohmann/json.hpp>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/gen/answer_parser.h"
#include "evoq/gen/compare_order.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/model_decoder.h"
#include "evoq/gen/prompts.h"
#include "stage_options.h"
#include "evoq/gen/vlm_session.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

int run(const po::variables_map& vm) {
  if (!vm.count("images") || vm["images"].as<std::vector<std::string>>().size() != 2)
    throw UsageError("give exactly two images A B");
  const auto images = vm["images"].as<std::vector<std::string>>();
  const int samples = vm["samples"].as<int>();
  if (samples < 1) throw UsageError("--samples must be >= 1");
  const uint64_t seed = vm["seed"].as<uint64_t>();
  std::string prompt = vm.count("prompt-file") ? gen::read_prompt_file(vm["prompt-file"].as<std::string>(), 2)
                                               : std::string(gen::kComparePrompt);
  prompt = gen::with_reasoning_suffix(prompt, vm["reasoning"].as<bool>());

  auto session = evoq::apps::open_session(vm, "compare");
  gen::EngineOptions opts;
  opts.sampling = vm.count("greedy") ? session.defaults : gen::vote_sampling_defaults(session.defaults);
  opts.sampling.do_sample = !vm.count("greedy");
  opts.sampling = evoq::gen::with_overrides(opts.sampling, evoq::apps::sampling_overrides(vm), "sampling options");
  opts.stop_ids = session.stop_ids;
  opts.seed = seed;

  // One prompt per shown order; the pair's samples are split between them by their swap bits.
  gen::GenerationRequest shown[2];
  for (int k = 0; k < samples; ++k) shown[gen::compare_sample_swapped(seed, 0, k) ? 1 : 0].sample_indices.push_back(k);
  std::vector<gen::GenerationRequest> reqs;
  for (int swapped = 0; swapped < 2; ++swapped) {
    if (shown[swapped].sample_indices.empty()) continue;
    shown[swapped].request_id = 0;
    shown[swapped].prompt =
        session.build_prompt(swapped ? std::vector{images[1], images[0]} : std::vector{images[0], images[1]}, prompt);
    reqs.push_back(shown[swapped]);
  }
  torch::NoGradGuard no_grad;
  gen::ModelDecoder decoder(session.model, opts.sampling.max_new_tokens);
  auto out = gen::Engine(decoder, opts).generate(reqs);

  int votes[2] = {0, 0}, invalid = 0;
  std::map<std::string, int> reasons;
  nlohmann::json per_sample = nlohmann::json::array();
  for (const auto& group : out) {
    for (const auto& s : group) {
      const bool swapped = gen::compare_sample_swapped(seed, 0, s.sample_index);
      std::string text = session.decode_text(s.tokens);
      auto a = gen::parse_compare(text);
      int vote = gen::original_order_vote(a, swapped);
      if (vote < 0) {
        ++invalid;
        reasons[gen::to_string(a.status)]++;
      } else {
        ++votes[vote];
      }
      per_sample.push_back({{"index", s.sample_index}, {"swapped", swapped}, {"vote", vote},
                            {"status", gen::to_string(a.status)}, {"text", text}});
    }
  }
  const char* preference = votes[0] > votes[1] ? "A" : votes[1] > votes[0] ? "B" : "tie";
  if (vm.count("json")) {
    nlohmann::json j = {{"a", images[0]}, {"b", images[1]}, {"votes_a", votes[0]}, {"votes_b", votes[1]},
                        {"invalid", invalid}, {"invalid_reasons", reasons}, {"samples", samples},
                        {"preference", preference}, {"seed", seed}, {"prompt", prompt}, {"responses", per_sample}};
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::cout << "A " << images[0] << ": " << votes[0] << " votes\n"
            << "B " << images[1] << ": " << votes[1] << " votes\n"
            << "invalid: " << invalid << " of " << samples;
  for (const auto& [r, n] : reasons) std::cout << " " << r << "=" << n;
  std::cout << "\npreference: " << preference << "\n";
  return 0;
}

EVOQ_COMMAND("compare", "which of two images has better quality, by K votes (paper prompt c_compare)",
             [](po::options_description& o, po::positional_options_description& p) {
               o.add_options()("model", po::value<std::string>(), "checkpoint directory")(
                   "images", po::value<std::vector<std::string>>(), "the two images A B")(
                   "samples", po::value<int>()->default_value(32), "votes (K)")(
                   "seed", po::value<uint64_t>()->default_value(0), "seed of the samples and of the order swaps")(
                   "greedy", "greedy answers instead of sampling")(
                   "reasoning", po::value<bool>()->default_value(true)->implicit_value(true),
                   "append the paper's reasoning suffix (--reasoning=0 to leave it out)")(
                   "prompt-file", po::value<std::string>(), "custom prompt text instead of c_compare")(
                   "json", "print JSON with every response");
               p.add("images", -1);
               evoq::apps::add_sampling_options(o, 256, "`evoq vote`'s: temperature 1, top_p 1, top_k 50; generation_config.json with --greedy");
               evoq::apps::add_runtime_options(o);
             },
             run, "evoq compare --model DIR A B [--samples K] [--seed S] [--reasoning=0|1] [--json]");

}  // namespace
