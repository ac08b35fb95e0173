// evoq_accept: loads a model and one prompt, runs the asked stages and writes OUT/result.json.
//
// usage: evoq_accept --model DIR --inputs FILE.safetensors --out DIR [--device cpu|cuda[:N]]
//          [--dtype fp32|bf16] [--tf32 0|1] [--stages parity,prefill,decode,grpo,nccl] [--k 8,32,64]
//          [--new-tokens 128] [--repeat 3] [--copies 3] [--autocast off|bf16] [--grpo-samples 4]
//          [--grpo-response-tokens 32] [--threads 0] [--nccl-timeout 120]
// FILE holds input_ids [1, L] and continuation [C] (int64), pixel_values [N, patch_dim] (float32) and
// image_grid_thw [images, 3] (int64), as tests/gpu/acceptance.py writes them.
#ifdef EVOQ_ACCEPT_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "accept.h"
#include "evoq/core/error.h"
#include "evoq/io/safetensors.h"
#include "evoq/model/weights.h"

namespace evoq::accept {

std::string Options::str(const std::string& key) const {
  auto it = values.find(key);
  EVOQ_CHECK(it != values.end(), "missing --", key);
  return it->second;
}

int Options::integer(const std::string& key) const {
  try {
    return std::stoi(str(key));
  } catch (const std::logic_error&) {
    throw UsageError("--" + key + ": '" + str(key) + "' is not an integer");
  }
}

double Options::number(const std::string& key) const {
  try {
    return std::stod(str(key));
  } catch (const std::logic_error&) {
    throw UsageError("--" + key + ": '" + str(key) + "' is not a number");
  }
}

std::vector<int> Options::integers(const std::string& key) const {
  std::vector<int> out;
  std::istringstream in(str(key));
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      out.push_back(std::stoi(item));
    } catch (const std::logic_error&) {
      throw UsageError("--" + key + ": '" + item + "' is not an integer");
    }
  }
  return out;
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double peak_gib(const torch::Device& device) {
#ifdef EVOQ_ACCEPT_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return double(stats.allocated_bytes[0].peak) / double(1ull << 30);  // [0]: all pools together
  }
#endif
  return 0.0;
}

double allocated_gib(const torch::Device& device) {
#ifdef EVOQ_ACCEPT_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return double(stats.allocated_bytes[0].current) / double(1ull << 30);
  }
#endif
  return 0.0;
}

void reset_peak(const torch::Device& device) {
#ifdef EVOQ_ACCEPT_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
}

namespace {

const std::map<std::string, std::string> kDefaults = {
    {"device", "cpu"},     {"dtype", "fp32"},   {"tf32", "0"},           {"stages", "parity"},
    {"k", "8,32,64"},      {"new-tokens", "128"}, {"repeat", "3"},       {"copies", "3"},
    {"autocast", "off"},   {"grpo-samples", "4"}, {"grpo-response-tokens", "32"},
    {"threads", "0"},      {"nccl-timeout", "120"}};
const std::set<std::string> kRequired = {"model", "inputs", "out"};
const std::set<std::string> kStages = {"parity", "prefill", "decode", "grpo", "nccl"};

Options parse(int argc, char** argv) {
  Options o;
  o.values = kDefaults;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || i + 1 >= argc) throw UsageError("expected --key value, got '" + arg + "'");
    const std::string key = arg.substr(2);
    if (!kDefaults.count(key) && !kRequired.count(key)) throw UsageError("unknown option --" + key);
    o.values[key] = argv[++i];
  }
  for (const auto& key : kRequired)
    if (!o.values.count(key)) throw UsageError("missing --" + key);
  return o;
}

torch::Tensor read_tensor(const io::Checkpoint& file, const std::string& name) {
  return model::to_torch(file.get(name)).clone();
}

void load_inputs(Context& ctx) {
  const auto path = ctx.options.str("inputs");
  const auto file = io::Checkpoint::open(path);
  auto ids = read_tensor(file, "input_ids").to(torch::kInt64);
  EVOQ_CHECK(ids.dim() == 2 && ids.size(0) == 1, path, ": input_ids must be [1, L]");
  ctx.prompt.input_ids = ids.to(ctx.device);
  if (file.contains("pixel_values")) {
    auto pixels = read_tensor(file, "pixel_values").to(torch::kFloat32);
    auto grid = read_tensor(file, "image_grid_thw").to(torch::kInt64);
    ctx.prompt.pixel_values = pixels.to(ctx.device);
    ctx.prompt.image_grid_thw = grid.to(ctx.device);
    ctx.prompt_input.pixel_values = pixels;
    ctx.prompt_input.image_grid_thw = grid;
  }
  auto flat = ids.view({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) ctx.prompt_input.input_ids.push_back(int32_t(flat[i].item<int64_t>()));
  if (file.contains("continuation")) {
    auto cont = read_tensor(file, "continuation").to(torch::kInt64).view({-1});
    for (int64_t i = 0; i < cont.numel(); ++i) ctx.continuation.push_back(cont[i].item<int64_t>());
  }
}

int run(int argc, char** argv) {
  Context ctx;
  ctx.options = parse(argc, argv);
  const auto& o = ctx.options;
  std::vector<std::string> stages;
  {
    std::istringstream in(o.str("stages"));
    std::string s;
    while (std::getline(in, s, ','))
      if (!s.empty()) {
        if (!kStages.count(s)) throw UsageError("--stages: unknown stage '" + s + "'");
        stages.push_back(s);
      }
  }
  if (o.integer("threads") > 0) torch::set_num_threads(o.integer("threads"));
  ctx.device = model::parse_torch_device(o.str("device"));
  // "cuda" means the first visible GPU: the allocator's statistics (peak_gib) need an index, and
  // c10::DeviceIndex -1 would print as a raw 0xFF byte in its error message.
  if (ctx.device.is_cuda() && !ctx.device.has_index()) ctx.device = torch::Device(torch::kCUDA, 0);
  ctx.dtype = model::parse_torch_dtype(o.str("dtype"));
  const bool tf32 = o.integer("tf32") != 0;
  // fp32 parity needs true fp32 matmuls: TF32 off unless asked (LibTorch's default is off as well).
  at::globalContext().setAllowTF32CuBLAS(tf32);
  at::globalContext().setAllowTF32CuDNN(tf32);
  ctx.out_dir = o.str("out");
  std::filesystem::create_directories(ctx.out_dir);

  nlohmann::json result;
  result["device"] = ctx.device.str();
  result["dtype"] = o.str("dtype");
  result["tf32"] = tf32;
  result["torch_threads"] = torch::get_num_threads();
  auto t0 = std::chrono::steady_clock::now();
  ctx.model = model::load_model(o.str("model"), ctx.dtype, ctx.device);
  ctx.model->eval();
  synchronize(ctx.device);
  result["load_seconds"] = seconds_since(t0);
  load_inputs(ctx);
  result["prompt_tokens"] = ctx.prompt.input_ids.size(1);
  int64_t params = 0;
  for (const auto& p : ctx.model->parameters()) params += p.numel();
  result["parameters"] = params;

  // A stage that throws is recorded as {"error": ...} and the next one still runs; result.json is
  // rewritten after every stage, so a crash keeps what the stages before it measured (a GPU run is
  // rare and short: one failure must not cost the other figures).
  const auto result_path = std::filesystem::path(ctx.out_dir) / "result.json";
  // replace: an exception message with bytes that are not UTF-8 must not make the dump itself throw
  const auto save = [&] {
    std::ofstream(result_path) << result.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  };
  save();
  bool failed = false;
  for (const auto& stage : stages) {
    std::fprintf(stderr, "evoq_accept: %s (%s, %s)\n", stage.c_str(), ctx.device.str().c_str(), o.str("dtype").c_str());
    t0 = std::chrono::steady_clock::now();
    try {
      if (stage == "parity") result[stage] = run_parity(ctx);
      if (stage == "prefill") result[stage] = run_prefill(ctx);
      if (stage == "decode") result[stage] = run_decode(ctx);
      if (stage == "grpo") result[stage] = run_grpo(ctx);
      if (stage == "nccl") result[stage] = run_nccl(ctx);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "evoq_accept: stage %s failed: %s\n", stage.c_str(), e.what());
      result[stage] = nlohmann::json{{"error", std::string(e.what()).substr(0, 2000)}};
      failed = true;
    }
    result[stage]["stage_seconds"] = seconds_since(t0);
    save();
  }
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace evoq::accept

int main(int argc, char** argv) {
  try {
    return evoq::accept::run(argc, argv);
  } catch (const evoq::UsageError& e) {
    std::fprintf(stderr, "evoq_accept: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "evoq_accept: %s\n", e.what());
    return 1;
  }
}
