// `evoq forward`: runs the model on one prompt and writes logits as .npy (float32): the last
// position [vocab], or every position [seq, vocab] with --all-positions. The prompt comes either from
// --inputs FILE.safetensors (input_ids, pixel_values, image_grid_thw: the processor's outputs) or from
// --image/--prompt (chat template, images first). --continue IDS additionally feeds those tokens through
// the cached decoder (--copies K sequences sharing the prompt's KV) and writes [1 + steps, vocab]:
// the prefill's last logits, then each decode step's logits of sequence 0.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include <sys/resource.h>
#include <thread>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/io/npy.h"
#include "evoq/io/safetensors.h"
#include "evoq/model/forward_inputs.h"
#include "evoq/model/weights.h"

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
  if (vm["threads"].as<int>() > 0) torch::set_num_threads(vm["threads"].as<int>());
  const auto dtype = model::parse_torch_dtype(vm["dtype"].as<std::string>());
  const auto device = model::parse_torch_device(vm["device"].as<std::string>());
  const std::string dir = cli::require_string(vm, "model");
  const std::string out = cli::require_string(vm, "out");
  auto net = model::load_model(dir, dtype, device);

  model::Inputs inputs;
  if (vm.count("inputs")) {
    inputs = model::read_forward_inputs(vm["inputs"].as<std::string>());
  } else {
    std::vector<std::string> images;
    if (vm.count("image")) images = vm["image"].as<std::vector<std::string>>();
    if (!vm.count("prompt")) throw UsageError("give --inputs FILE or --prompt TEXT (with --image)");
    inputs = model::chat_forward_inputs(dir, net->config(), images, vm["prompt"].as<std::string>());
  }

  torch::NoGradGuard no_grad;
  if (vm.count("continue")) {
    const auto ids = parse_ids(vm["continue"].as<std::string>());
    const int64_t copies = vm["copies"].as<int>();
    if (copies < 1) throw UsageError("--copies must be at least 1");
    auto prefill = net->prefill(inputs);
    std::vector<torch::Tensor> rows = {prefill.last_logits};
    model::DecodeBatch batch({{prefill.cache, copies}}, static_cast<int64_t>(ids.size()));
    for (size_t s = 0; s < ids.size(); ++s) {
      auto tokens = torch::full({batch.size()}, ids[s], torch::kInt64);
      auto logits = net->decode_step(batch, tokens);
      rows.push_back(logits[0]);
      // Every copy continues the same prompt with the same tokens, so each row must agree.
      EVOQ_CHECK(torch::allclose(logits, logits[0].expand_as(logits), 1e-4, 1e-4),
                 "internal error: decode copies disagree");
      if (batch.size() > 1 && s % 2 == 1) {  // exercise compaction: drop the first copy
        std::vector<int64_t> keep;
        for (int64_t r = 1; r < batch.size(); ++r) keep.push_back(r);
        batch.keep(keep);
      }
    }
    write_logits(out, torch::stack(rows));
    return 0;
  }
  const bool all = vm["all-positions"].as<bool>();
  const int repeat = vm["repeat"].as<int>();
  if (repeat > 0) {  // benchmark: time the prefill (vision + decoder + last logits) after one warm-up
    net->prefill(inputs);
    std::vector<double> ms;
    for (int i = 0; i < repeat; ++i) {
      if (device.is_cuda()) torch::cuda::synchronize();
      auto start = std::chrono::steady_clock::now();
      net->prefill(inputs);
      if (device.is_cuda()) torch::cuda::synchronize();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(ms.begin(), ms.end());
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("prefill_ms_median %.2f tokens %lld peak_rss_mib %.0f\n", ms[ms.size() / 2],
                (long long)inputs.input_ids.size(1), usage.ru_maxrss / 1024.0);
  }
  auto logits = net->forward(inputs, all ? model::LogitsOf::All : model::LogitsOf::Last);
  write_logits(out, logits.size(0) == 1 ? logits[0] : logits);
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
