// `evoq forward`: runs the model on one prompt and writes logits as .npy (float32): the last
// position [vocab], or every position [seq, vocab] with --all-positions. The prompt comes either from
// --inputs FILE.safetensors (input_ids, pixel_values, image_grid_thw: the processor's outputs) or from
// --image/--prompt (chat template, images first). --continue IDS additionally feeds those tokens through
// the cached decoder (--copies K sequences sharing the prompt's KV) and writes [1 + steps, vocab]:
// the prefill's last logits, then each decode step's logits of sequence 0.
#include <cstdio>
#include <sstream>

#include <sys/resource.h>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/io/npy.h"
#include "evoq/model/forward_run.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    try {
      ids.push_back(std::stoll(item));
    } catch (const std::exception&) {
      throw UsageError("--continue: '" + item + "' is not a token id");
    }
  }
  return ids;
}

void write_logits(const std::string& path, const torch::Tensor& logits) {
  auto t = logits.to(torch::kCPU, torch::kFloat32).contiguous();
  io::write_npy(path, t.data_ptr<float>(), std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
}

int run(const po::variables_map& vm) {
  model::ForwardSettings s;
  s.model_dir = cli::require_string(vm, "model");
  const std::string out = cli::require_string(vm, "out");
  if (vm.count("inputs")) s.inputs_path = vm["inputs"].as<std::string>();
  if (vm.count("image")) s.images = vm["image"].as<std::vector<std::string>>();
  if (vm.count("prompt")) s.prompt = vm["prompt"].as<std::string>();
  if (vm.count("continue")) s.continue_ids = parse_ids(vm["continue"].as<std::string>());
  s.all_positions = vm["all-positions"].as<bool>();
  s.copies = vm["copies"].as<int>();
  s.timed_prefills = vm["repeat"].as<int>();
  s.dtype = vm["dtype"].as<std::string>();
  s.device = vm["device"].as<std::string>();
  s.threads = vm["threads"].as<int>();
  const auto result = model::run_forward(s);
  if (s.timed_prefills > 0 && s.continue_ids.empty()) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("prefill_ms_median %.2f tokens %lld peak_rss_mib %.0f\n", result.prefill_ms_median,
                static_cast<long long>(result.prompt_tokens), usage.ru_maxrss / 1024.0);
  }
  write_logits(out, result.logits);
  return 0;
}

EVOQ_COMMAND(
    "forward", "run the model on one prompt and write its logits (.npy float32)",
    [](po::options_description& o, po::positional_options_description&) {
      o.add_options()("model", po::value<std::string>(), "model directory (config.json + safetensors)")(
          "image", po::value<std::vector<std::string>>()->composing(), "image file (repeat for several)")(
          "prompt", po::value<std::string>(), "user text after the images")(
          "inputs", po::value<std::string>(), "safetensors with input_ids, pixel_values, image_grid_thw")(
          "out", po::value<std::string>(), "output .npy")(
          "all-positions", po::bool_switch()->default_value(false), "write [seq, vocab] instead of [vocab]")(
          "continue", po::value<std::string>(), "comma-separated token ids fed through the KV-cached decoder")(
          "copies", po::value<int>()->default_value(1), "sequences sharing the prompt's KV with --continue")(
          "dtype", po::value<std::string>()->default_value("fp32"), "fp32 or bf16")(
          "device", po::value<std::string>()->default_value("cpu"), "cpu or cuda[:N]")(
          "threads", po::value<int>()->default_value(0), "torch intra-op threads (0 = default)")(
          "repeat", po::value<int>()->default_value(0), "time N prefills (after a warm-up) and print the median");
    },
    run, "evoq forward --model DIR (--inputs FILE | --image A --prompt TEXT) --out FILE.npy");

}  // namespace
