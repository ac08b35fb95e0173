// `evoq process-logits`: runs the sampler on logits read from raw files, so tests can compare it
// with transformers' LogitsProcessorList (tests/python/test_gen_sampler.py) without a model: the
// processed logits come from process_logits, the chosen tokens from the engine's sample_step.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/gen/sample_step.h"
#include "evoq/gen/sampler.h"
#include "stage_options.h"

namespace {

namespace po = boost::program_options;

template <typename T>
std::vector<T> read_raw(const std::string& file, size_t count) {
  std::ifstream in(file, std::ios::binary);
  EVOQ_CHECK(in, "cannot open ", file);
  std::vector<T> data(count);
  in.read(reinterpret_cast<char*>(data.data()), std::streamsize(count * sizeof(T)));
  EVOQ_CHECK(in.gcount() == std::streamsize(count * sizeof(T)), file, ": expected ", count * sizeof(T), " bytes");
  return data;
}

int run(const po::variables_map& vm) {
  const int64_t rows = vm["rows"].as<int64_t>(), vocab = vm["vocab"].as<int64_t>();
  EVOQ_CHECK(rows > 0 && vocab > 0, "--rows and --vocab must be positive");
  auto logits_data = read_raw<float>(evoq::cli::require_string(vm, "logits"), size_t(rows * vocab));
  auto logits = torch::from_blob(logits_data.data(), {rows, vocab}, torch::kFloat32).clone();

  auto present = torch::zeros({rows, vocab}, torch::kBool);
  if (vm.count("history")) {
    const int64_t len = vm["history-len"].as<int64_t>();
    auto hist = read_raw<int64_t>(vm["history"].as<std::string>(), size_t(rows * len));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < len; ++i) {
        int64_t id = hist[size_t(r * len + i)];
        EVOQ_CHECK(id < vocab, "--history: id ", id, " outside the vocabulary");
        if (id >= 0) present[r][id] = true;
      }
  }

  evoq::gen::SamplingParams p;
  p.do_sample = vm.count("sample") > 0;
  p = evoq::gen::with_overrides(p, evoq::apps::sampling_overrides(vm), "sampling options");
  std::vector<double> uniforms;
  if (p.do_sample) {
    uniforms = read_raw<double>(evoq::cli::require_string(vm, "uniforms"), size_t(rows));
  }

  auto processed = evoq::gen::process_logits(logits, present, p).contiguous();
  std::ofstream out(evoq::cli::require_string(vm, "out"), std::ios::binary);
  out.write(reinterpret_cast<const char*>(processed.data_ptr<float>()), std::streamsize(rows * vocab * sizeof(float)));
  EVOQ_CHECK(out.good(), "cannot write ", vm["out"].as<std::string>());

  // The token choice as the engine makes it (sample_step), not from the processed row above.
  auto choice = evoq::gen::sample_step(logits, present, p, uniforms, true);
  nlohmann::json j;
  for (int64_t r = 0; r < rows; ++r) {
    j["tokens"].push_back(choice.tokens[r].item<int64_t>());
    j["sample_logprobs"].push_back(choice.sample_logprobs[r].item<double>());
    j["model_logprobs"].push_back(choice.model_logprobs[r].item<double>());
  }
  std::cout << j.dump() << "\n";
  return 0;
}

EVOQ_COMMAND("process-logits", "(testing) apply the sampler to raw float32 logits",
             [](po::options_description& o, po::positional_options_description&) {
               o.add_options()("logits", po::value<std::string>(), "raw float32 logits [rows, vocab]")(
                   "rows", po::value<int64_t>()->default_value(1), "rows")(
                   "vocab", po::value<int64_t>()->default_value(1), "vocabulary size")(
                   "history", po::value<std::string>(), "raw int64 token history [rows, history-len], -1 = none")(
                   "history-len", po::value<int64_t>()->default_value(0), "history length per row")(
                   "uniforms", po::value<std::string>(), "raw float64 uniforms [rows] (with --sample)")(
                   "sample", "sample (default: greedy)")("out", po::value<std::string>(), "processed logits output");
               evoq::apps::add_sampling_options(o, 1, "the model's generation_config.json");
             },
             run, "evoq-testtool process-logits --logits F --rows R --vocab V --out F [--sample --uniforms F] [sampling options]",
             /*hidden=*/false);

}  // namespace
