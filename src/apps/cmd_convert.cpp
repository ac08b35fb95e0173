// `evoq convert`: loads a checkpoint (either key layout) and saves it with our writer in the
// transformers >= 4.52 layout and the chosen dtype, copying the tokenizer/processor files along.
#include <filesystem>

#include "evoq/cli/cli.h"
#include "evoq/model/weights.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

int run(const po::variables_map& vm) {
  const std::string dir = cli::require_string(vm, "model");
  const std::string out = cli::require_string(vm, "out");
  const auto dtype = model::parse_torch_dtype(vm["dtype"].as<std::string>());
  auto net = model::load_model(dir, dtype, torch::kCPU);
  model::save_model(*net, out, dtype);
  namespace fs = std::filesystem;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                           "preprocessor_config.json", "generation_config.json", "chat_template.json",
                           "chat_template.jinja", "special_tokens_map.json"}) {
    const fs::path src = fs::path(dir) / name;
    if (fs::exists(src)) fs::copy_file(src, fs::path(out) / name, fs::copy_options::overwrite_existing);
  }
  return 0;
}

EVOQ_COMMAND(
    "convert", "re-save a Qwen2-VL / Qwen2.5-VL checkpoint (HF layout) in another dtype",
    [](po::options_description& o, po::positional_options_description&) {
      o.add_options()("model", po::value<std::string>(), "source model directory")(
          "out", po::value<std::string>(), "output directory")(
          "dtype", po::value<std::string>()->default_value("fp32"), "fp32, bf16 or fp16");
    },
    run, "evoq convert --model DIR --out DIR [--dtype bf16]");

}  // namespace
