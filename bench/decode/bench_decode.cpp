// `evoq_bench_decode` (a benchmark executable, not part of `evoq`): the model's decode step on G prompts
// x K sequences that share each prompt's KV. Prints one JSON line: decode tokens/s over --steps steps (after a
// warm-up; also per second of process CPU time, which other jobs on a shared machine disturb less)
// and, with --profile-ops, the ops one decode step runs per decoder layer, counted with the
// LibTorch (Kineto) profiler as (ops of a step with all layers - ops with none) / layers.
// Uses only the model API that predates the batched decode, so the same file builds against older
// trees for before/after comparisons (bench/decode_ops.sh).
#include <malloc.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/model/cpu_kernels.h"
#include "evoq/model/config.h"
#include "evoq/model/layers.h"
#include "evoq/model/packed_linear.h"
#include "evoq/model/weights.h"

namespace {

namespace po = boost::program_options;
namespace prof = torch::autograd::profiler;
using namespace evoq;

// Ops that only describe memory (views, allocation, dtype queries): no kernel would run for them.
const std::set<std::string> kMetadataOps = {
    "aten::view", "aten::reshape", "aten::_reshape_alias", "aten::as_strided", "aten::transpose", "aten::t",
    "aten::permute", "aten::narrow", "aten::slice", "aten::select", "aten::expand", "aten::unsqueeze",
    "aten::squeeze", "aten::alias", "aten::detach", "aten::_unsafe_view", "aten::unflatten", "aten::split",
    "aten::chunk", "aten::expand_as", "aten::view_as", "aten::lift_fresh", "aten::empty", "aten::empty_strided",
    "aten::empty_like", "aten::resize_", "aten::result_type", "aten::to", "aten::contiguous", "aten::type_as",
    "aten::detach_", "aten::_has_compatible_shallow_copy_type", "aten::set_", "aten::is_nonzero",
    "aten::resolve_conj", "aten::resolve_neg", "aten::conj", "aten::_neg_view", "aten::flatten", "aten::unbind"};

// Ops whose work is all in the ops they call (counted there): wrappers, not kernels of their own.
const std::set<std::string> kWrapperOps = {
    "aten::linear", "aten::matmul", "aten::rms_norm", "aten::_fused_rms_norm", "aten::softmax", "aten::_to_copy",
    "aten::clone", "aten::embedding", "aten::mean", "aten::scaled_dot_product_attention", "aten::repeat_interleave",
    "aten::layer_norm", "aten::index_put", "aten::masked_fill", "aten::where", "aten::pow", "aten::zeros",
    "aten::zeros_like", "aten::full", "aten::tensor"};

struct OpCounts {
  int64_t top = 0;     // outermost aten ops that launch work (their subtree has a kernel op)
  int64_t kernel = 0;  // innermost ops that are not metadata (one kernel each on a GPU, roughly)
  std::map<std::string, int64_t> kernels_by_name;
  std::map<std::string, int64_t> kernels_by_top;  // "outermost op > kernel"
  std::map<std::string, double> top_ms;           // time in outermost ops, by name
};

// Nesting from the events' time intervals, per thread: an op is inside the innermost op whose
// interval contains it. Counted: ops that are neither metadata nor wrappers of other ops ("kernels":
// about one kernel launch each on a GPU), and outermost ops with such a kernel inside ("top-level").
OpCounts count_ops(const std::vector<prof::KinetoEvent>& events) {
  std::map<uint64_t, std::vector<const prof::KinetoEvent*>> by_thread;
  for (const auto& e : events)
    if (e.name().rfind("aten::", 0) == 0 && e.deviceType() == c10::DeviceType::CPU)
      by_thread[e.startThreadId()].push_back(&e);
  OpCounts c;
  for (auto& [thread, ev] : by_thread) {
    std::sort(ev.begin(), ev.end(), [](auto* a, auto* b) {
      return a->startNs() != b->startNs() ? a->startNs() < b->startNs() : a->durationNs() > b->durationNs();
    });
    const size_t n = ev.size();
    std::vector<int64_t> parent(n, -1);
    std::vector<bool> has_kernel(n, false);
    std::vector<size_t> open;
    for (size_t i = 0; i < n; ++i) {
      while (!open.empty() && ev[open.back()]->endNs() < ev[i]->endNs()) open.pop_back();
      if (!open.empty()) parent[i] = int64_t(open.back());
      open.push_back(i);
    }
    // Bottom-up (children come after their parent): does any non-metadata op run below each op?
    std::vector<bool> work_below(n, false);
    for (size_t i = n; i-- > 0;)
      if (parent[i] >= 0 && (work_below[i] || !kMetadataOps.count(ev[i]->name()))) work_below[size_t(parent[i])] = true;
    for (size_t i = 0; i < n; ++i) {
      const auto& name = ev[i]->name();
      if (kMetadataOps.count(name) || (work_below[i] && kWrapperOps.count(name))) continue;
      ++c.kernel;
      ++c.kernels_by_name[name];
      int64_t top = int64_t(i);
      while (parent[size_t(top)] >= 0) top = parent[size_t(top)];
      ++c.kernels_by_top[ev[size_t(top)]->name() + " > " + name];
      for (int64_t p = int64_t(i); p >= 0 && !has_kernel[size_t(p)]; p = parent[size_t(p)])
        has_kernel[size_t(p)] = true;
    }
    for (size_t i = 0; i < n; ++i) {
      if (parent[i] < 0 && has_kernel[i]) ++c.top;
      if (parent[i] < 0) c.top_ms[ev[i]->name()] += double(ev[i]->durationNs()) * 1e-6;
    }
  }
  return c;
}

OpCounts profile_step(model::QwenVL& net, model::DecodeBatch& batch, const torch::Tensor& tokens) {
  torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  prof::prepareProfiler(config, {torch::profiler::impl::ActivityType::CPU});
  prof::enableProfiler(config, {torch::profiler::impl::ActivityType::CPU});
  net.decode_step(batch, tokens);
  auto result = prof::disableProfiler();
  return count_ops(result->events());
}

int run(const po::variables_map& vm) {
  if (vm["threads"].as<int>() > 0) torch::set_num_threads(vm["threads"].as<int>());
#ifdef EVOQ_HAS_SKINNY_ROWS_SETTING
  if (vm.count("skinny-rows")) model::set_skinny_rows(vm["skinny-rows"].as<int64_t>());
#else
  if (vm.count("skinny-rows")) throw UsageError("--skinny-rows: not supported by this build");
#endif
  const auto dtype = model::parse_torch_dtype(vm["dtype"].as<std::string>());
  const auto device = model::parse_torch_device(vm["device"].as<std::string>());
  const std::string dir = cli::require_string(vm, "model");
  const int groups = vm["groups"].as<int>(), copies = vm["copies"].as<int>(), steps = vm["steps"].as<int>();
  const int warmup = vm["warmup"].as<int>(), prompt_tokens = vm["prompt-tokens"].as<int>();
  if (groups < 1 || copies < 1 || steps < 1 || warmup < 1 || prompt_tokens < 2)
    throw UsageError("--groups, --copies, --steps, --warmup must be >= 1 and --prompt-tokens >= 2");

  torch::manual_seed(0);
  std::shared_ptr<model::QwenVL> net;
  const bool random = vm["random-weights"].as<bool>() ||
                      !std::filesystem::exists(std::filesystem::path(dir) / "model.safetensors");
  if (random) {
    net = std::make_shared<model::QwenVL>(model::load_config(dir), torch::TensorOptions().dtype(dtype).device(device));
    torch::NoGradGuard no_grad;
    for (auto& item : net->named_parameters(true)) {
      const bool norm = item.key().find("norm") != std::string::npos && item.value().dim() == 1;
      if (norm) item.value().fill_(1.0);
      else item.value().normal_(0.0, 0.05);
    }
    net->eval();
  } else {
    net = model::load_model(dir, dtype, device);
  }
  torch::NoGradGuard no_grad;
  // As VlmSession::load does (bf16 on the CPU: packed weights); EVOQ_PACKED_WEIGHTS=0 measures without.
  const char* packed_env = std::getenv("EVOQ_PACKED_WEIGHTS");
  model::set_packed_weights(!(packed_env && std::string(packed_env) == "0"));
  const char* kernels_env = std::getenv("EVOQ_CPU_KERNELS");  // 0: torch's ops instead of model/cpu_kernels.h
  model::set_cpu_kernels(!(kernels_env && std::string(kernels_env) == "0"));
  const int64_t packed = net->pack_linear_weights();
  const int64_t vocab = std::min<int64_t>(net->config().text.vocab_size, 150000);

  // G text prompts of slightly different lengths (the batched attention pads to the longest).
  std::vector<model::PrefixGroup> prefixes;
  double prefill_s = 0;
  for (int g = 0; g < groups; ++g) {
    model::Inputs in;
    in.input_ids = torch::randint(vocab, {1, prompt_tokens - (g % 3)}, torch::kInt64).to(device);
    auto start = std::chrono::steady_clock::now();
    prefixes.push_back({net->prefill(in).cache, copies});
    prefill_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  auto fresh_batch = [&] { return model::DecodeBatch(prefixes, warmup + steps + 4); };
  auto tokens_for = [&](int64_t b) { return torch::randint(vocab, {b}, torch::kInt64).to(device); };
  const int64_t rows = int64_t(groups) * copies;

  auto batch = fresh_batch();
  for (int i = 0; i < warmup; ++i) net->decode_step(batch, tokens_for(rows));
  if (device.is_cuda()) torch::cuda::synchronize();
  auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  for (int i = 0; i < steps; ++i) net->decode_step(batch, tokens_for(rows));
  const double decode_cpu_s = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  if (device.is_cuda()) torch::cuda::synchronize();
  const double decode_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::json j = {{"groups", groups},       {"copies", copies},   {"rows", rows},
                      {"prompt_tokens", prompt_tokens}, {"dtype", vm["dtype"].as<std::string>()},
                      {"layers", net->config().text.num_hidden_layers}, {"steps", steps},
                      {"decode_seconds", decode_s}, {"tokens_per_second", double(rows) * steps / decode_s},
                      {"tokens_per_cpu_second", double(rows) * steps / decode_cpu_s},
                      {"prefill_seconds", prefill_s}, {"threads", torch::get_num_threads()},
                      {"packed_weights", packed}};
  if (vm["profile-ops"].as<bool>()) {
    const auto all_layers = profile_step(*net, batch, tokens_for(rows));
    auto& layers = net->language_model->layers;
    const auto saved = layers;
    layers.clear();  // the same step without decoder layers: embedding, positions, final norm, lm_head
    auto bare = fresh_batch();
    for (int i = 0; i < warmup; ++i) net->decode_step(bare, tokens_for(rows));
    const auto no_layers = profile_step(*net, bare, tokens_for(rows));
    layers = saved;
    const double n = double(saved.size());
    j["ops_per_layer"] = {{"top_level", double(all_layers.top - no_layers.top) / n},
                          {"kernels", double(all_layers.kernel - no_layers.kernel) / n}};
    j["ops_per_step"] = {{"top_level", all_layers.top}, {"kernels", all_layers.kernel}};
    nlohmann::json names;
    for (const auto& [name, count] : all_layers.kernels_by_name) {
      auto it = no_layers.kernels_by_name.find(name);
      const double per_layer = double(count - (it == no_layers.kernels_by_name.end() ? 0 : it->second)) / n;
      if (per_layer != 0) names[name] = per_layer;
    }
    j["kernels_per_layer_by_op"] = names;
    nlohmann::json tops;
    for (const auto& [name, count] : all_layers.kernels_by_top) {
      auto it = no_layers.kernels_by_top.find(name);
      const double per_layer = double(count - (it == no_layers.kernels_by_top.end() ? 0 : it->second)) / n;
      if (per_layer != 0) tops[name] = per_layer;
    }
    j["kernels_per_layer_by_outer_op"] = tops;
    j["step_ms_by_outer_op"] = all_layers.top_ms;
  }
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

cli::Command bench_command() {
  return cli::Command{
      "evoq_bench_decode", "decode tokens/s and ops per layer of the KV-cached decode step",
      [](po::options_description& o, po::positional_options_description&) {
        o.add_options()("model", po::value<std::string>(), "model directory (config.json; safetensors optional)")(
            "random-weights", po::bool_switch()->default_value(false), "ignore the checkpoint, use random weights")(
            "groups", po::value<int>()->default_value(1), "prompts (prefix groups)")(
            "copies", po::value<int>()->default_value(8), "sequences per prompt")(
            "prompt-tokens", po::value<int>()->default_value(256), "prompt length (text tokens)")(
            "steps", po::value<int>()->default_value(32), "timed decode steps")(
            "warmup", po::value<int>()->default_value(4), "untimed decode steps first")(
            "profile-ops", po::bool_switch()->default_value(false), "count ops per layer with the profiler")(
            "skinny-rows", po::value<int64_t>(), "most rows of the CPU weight-left product (0 = off)")(
            "dtype", po::value<std::string>()->default_value("fp32"), "fp32 or bf16")(
            "device", po::value<std::string>()->default_value("cpu"), "cpu or cuda[:N]")(
            "threads", po::value<int>()->default_value(0), "torch intra-op threads (0 = default)");
      },
      run, "evoq_bench_decode --model DIR [--groups G --copies K --profile-ops]"};
}

}  // namespace

int main(int argc, char** argv) {
  // The allocator setting `evoq` makes in src/apps/main.cpp, so the decode step is timed as `evoq` runs it.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  const auto command = bench_command();
  try {
    po::variables_map vm;
    if (!cli::parse(command, argc, argv, vm, std::cout)) return 0;
    return command.run(vm);
  } catch (const UsageError& e) {
    std::cerr << "evoq_bench_decode: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "evoq_bench_decode: error: " << e.what() << "\n";
    return 1;
  }
}
