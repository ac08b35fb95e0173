#pragma once
// Everything generation needs from a checkpoint directory: the model, its tokenizer, image
// processor settings, sampling defaults (generation_config.json) and stop ids; builds chat prompts
// with images.
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "evoq/gen/decoder.h"
#include "evoq/gen/sampler.h"
#include "evoq/image/processor_config.h"
#include "evoq/model/qwen_vl.h"
#include "evoq/text/tokenizer.h"

namespace evoq::gen {

struct VlmSession {
  std::string model_dir;
  std::shared_ptr<model::QwenVL> model;
  text::Tokenizer tokenizer;
  image::ProcessorConfig processor;
  SamplingParams defaults;    // generation_config.json (transformers' defaults for missing keys)
  std::set<int64_t> stop_ids; // <|im_end|>, <|endoftext|>, the tokenizer's eos and generation_config's eos ids

  static VlmSession load(const std::string& model_dir, torch::Dtype dtype, torch::Device device);

  // Chat prompt with `images` (in order) before `text`; each image preprocessed with `processor`.
  PromptInput build_prompt(const std::vector<std::string>& images, std::string_view text) const;

  // Generated text of `tokens` without special tokens (the stop id is dropped).
  std::string decode_text(const std::vector<int32_t>& tokens) const;
};

// Where and how a stage runs its model (--dtype, --device, --threads, --tf32). None of it is a setting
// that a run records: resuming on another thread count or device is allowed (dtype is recorded by the
// stages, since it changes results).
struct RuntimeSettings {
  // fp32 | bf16 | fp16 | auto (bf16 on CUDA and on CPUs with AVX512-BF16/AMX, else fp32). Inference stages
  // default to auto (bf16 votes agree with fp32 votes on 97.5 % of pairs, docs/BENCHMARKS.md); training keeps
  // fp32 master weights (TrainSettings) and gets its bf16 through --autocast.
  std::string dtype = "auto";
  std::string device = "cpu";   // cpu | cuda | cuda:N
  int threads = 0;              // torch intra-op threads, 0 = torch's default
  bool tf32 = true;             // CUDA: TF32 for fp32 matmuls and convolutions

  // The device of this process: "cuda" without an index binds the GPU of the node-local rank, so every
  // MPI-parallel stage (vote, estimate, train, eval, evolve) puts rank r of a node on GPU r.
  torch::Device torch_device(int local_rank = 0) const;
  // The dtype ("auto" resolved for `device`).
  torch::Dtype torch_dtype(const torch::Device& device) const;
  // Its name, "fp32" | "bf16" | "fp16": what stages record (a run with "auto" records what it ran in).
  // From the settings alone (no device is opened: a fingerprint must not need the GPU).
  std::string dtype_name() const;
  // --device names CUDA ("cuda", "cuda:N").
  bool on_cuda() const { return device.rfind("cuda", 0) == 0; }
  // Sets the thread count and, on CUDA, the TF32 switches; throws UsageError on bad values.
  void apply(const torch::Device& device) const;
  // "cpu fp32, 2 threads" (the line a stage prints at start).
  std::string describe(const torch::Device& device) const;
};

// True when this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX-BF16, from /proc/cpuinfo).
bool cpu_has_native_bf16();

}  // namespace evoq::gen
