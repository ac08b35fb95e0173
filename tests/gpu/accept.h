#pragma once
// The GPU acceptance tool `evoq_accept` (scripts/gpu_acceptance.sh drives it through acceptance.py):
// one process loads one model in one dtype and runs the stages asked for, each returning a JSON object
// of measurements. The Python driver holds the oracles (transformers' logits and timings) and the
// pass/fail rules; this side only measures and writes.
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "evoq/gen/decoder.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::accept {

// --key value options of the command line (accept_main.cpp), with their defaults.
struct Options {
  std::map<std::string, std::string> values;
  std::string str(const std::string& key) const;
  int integer(const std::string& key) const;
  double number(const std::string& key) const;
  std::vector<int> integers(const std::string& key) const;  // comma-separated
};

struct Context {
  Options options;
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;
  std::shared_ptr<model::QwenVL> model;
  model::Inputs prompt;            // batch of one, on the device
  gen::PromptInput prompt_input;   // the same prompt for the generation engine (CPU tensors)
  std::vector<int64_t> continuation;  // teacher-forced tokens after the prompt (parity of decode)
  std::string out_dir;
};

// Waits for the device's queued work (CUDA) so that a host clock measures it.
void synchronize(const torch::Device& device);
double seconds_since(std::chrono::steady_clock::time_point start);
// Peak bytes allocated on a CUDA device since the last reset (0 on the CPU), and the reset.
double peak_gib(const torch::Device& device);
void reset_peak(const torch::Device& device);
// Bytes allocated on a CUDA device now (0 on the CPU): the baseline a peak is measured above.
double allocated_gib(const torch::Device& device);

// Stages (one file each).
nlohmann::json run_parity(Context& ctx);   // logits of the full forward and of prefill + cached decode
nlohmann::json run_prefill(Context& ctx);  // prefill latency
nlohmann::json run_decode(Context& ctx);   // K samples of N new tokens through the engine
nlohmann::json run_grpo(Context& ctx);     // one GRPO micro-step with and without activation checkpointing
nlohmann::json run_nccl(Context& ctx);     // 1-rank NCCL collectives and their stream ordering

}  // namespace evoq::accept
