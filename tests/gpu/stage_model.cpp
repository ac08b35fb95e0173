// Stages that run the model forward: parity (logits written for the driver to compare with
// transformers), prefill latency, and generation throughput through the engine.
#include <algorithm>
#include <chrono>
#include <filesystem>

#include "accept.h"
#include "evoq/core/error.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/model_decoder.h"
#include "evoq/io/safetensors.h"

namespace evoq::accept {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

nlohmann::json run_parity(Context& ctx) {
  torch::NoGradGuard no_grad;
  auto& net = *ctx.model;
  nlohmann::json out;
  // Every position of the prompt in one full forward.
  auto forward = net.forward(ctx.prompt, model::LogitsOf::All)[0].to(torch::kCPU, torch::kFloat32).contiguous();

  // The same prompt through the KV-cache path: prefill, then the continuation fed one token per step
  // to `copies` sequences sharing the prompt's cache (row 0 kept; all rows must agree).
  const int64_t copies = std::max(1, ctx.options.integer("copies"));
  auto prefill = net.prefill(ctx.prompt);
  std::vector<torch::Tensor> rows = {prefill.last_logits.to(torch::kCPU, torch::kFloat32)};
  model::DecodeBatch batch({{prefill.cache, copies}}, int64_t(std::max<std::size_t>(ctx.continuation.size(), 1)));
  double copies_max_diff = 0.0;
  for (const auto token : ctx.continuation) {
    auto tokens = torch::full({batch.size()}, token, torch::TensorOptions().dtype(torch::kInt64).device(ctx.device));
    auto logits = net.decode_step(batch, tokens).to(torch::kCPU, torch::kFloat32);
    copies_max_diff = std::max(copies_max_diff, (logits - logits[0].expand_as(logits)).abs().max().item<double>());
    rows.push_back(logits[0]);
  }
  auto decode = torch::stack(rows).contiguous();

  const auto dir = std::filesystem::path(ctx.out_dir) / ("parity-" + ctx.options.str("dtype"));
  auto view = [](const std::string& name, const torch::Tensor& t) {
    return io::TensorToWrite{name, io::DType::F32, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()),
                             t.data_ptr(), std::size_t(t.numel()) * sizeof(float)};
  };
  io::write_checkpoint(dir.string(), {view("forward", forward), view("decode", decode)});
  out["logits_file"] = (dir / "model.safetensors").string();
  out["positions"] = forward.size(0);
  out["decode_steps"] = int64_t(ctx.continuation.size());
  out["copies"] = copies;
  out["copies_max_diff"] = copies_max_diff;
  return out;
}

nlohmann::json run_prefill(Context& ctx) {
  torch::NoGradGuard no_grad;
  const int repeat = std::max(1, ctx.options.integer("repeat"));
  ctx.model->prefill(ctx.prompt);  // warm-up: kernel selection, allocator
  synchronize(ctx.device);
  reset_peak(ctx.device);
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    const auto start = Clock::now();
    ctx.model->prefill(ctx.prompt);
    synchronize(ctx.device);
    ms.push_back(1e3 * seconds_since(start));
  }
  std::sort(ms.begin(), ms.end());
  return {{"median_ms", ms[ms.size() / 2]}, {"all_ms", ms}, {"tokens", ctx.prompt.input_ids.size(1)},
          {"peak_gib", peak_gib(ctx.device)}};
}

namespace {

// K samples of exactly n new tokens (no stop ids) from one shared prefill; returns measurements.
nlohmann::json generate_once(Context& ctx, int k, int n) {
  gen::ModelDecoder decoder(ctx.model, n);
  gen::EngineOptions options;
  options.sampling.do_sample = true;
  options.sampling.temperature = 1.0;
  options.sampling.top_k = 0;
  options.sampling.top_p = 1.0;
  options.sampling.max_new_tokens = n;
  options.seed = 1;
  options.max_batch_sequences = std::max(k, 1);
  gen::Engine engine(decoder, options);
  gen::GenerationRequest request;
  request.prompt = ctx.prompt_input;
  request.samples = k;
  synchronize(ctx.device);
  reset_peak(ctx.device);
  const auto start = Clock::now();
  const auto samples = engine.generate({request});
  synchronize(ctx.device);
  const double seconds = seconds_since(start);
  int64_t tokens = 0;
  for (const auto& s : samples.at(0)) tokens += int64_t(s.tokens.size());
  EVOQ_CHECK(tokens == int64_t(k) * n, "decode: expected ", int64_t(k) * n, " tokens, got ", tokens);
  return {{"k", k},
          {"new_tokens", n},
          {"tokens", tokens},
          {"seconds", seconds},
          {"tokens_per_second", double(tokens) / seconds},
          {"prefill_seconds", decoder.prefill_seconds()},
          {"decode_seconds", decoder.decode_seconds()},
          {"peak_gib", peak_gib(ctx.device)}};
}

}  // namespace

nlohmann::json run_decode(Context& ctx) {
  const int n = ctx.options.integer("new-tokens");
  EVOQ_CHECK(n >= 1, "--new-tokens must be >= 1");
  generate_once(ctx, 2, std::min(n, 4));  // warm-up
  nlohmann::json runs = nlohmann::json::array();
  for (const int k : ctx.options.integers("k")) {
    EVOQ_CHECK(k >= 1, "--k values must be >= 1");
    runs.push_back(generate_once(ctx, k, n));
  }
  return {{"runs", runs}};
}

}  // namespace evoq::accept
