#pragma once
// `evoq forward`'s work: one prompt through the model, its logits (the parity tests' view of the
// runtime), optionally continued through the KV-cached decoder, optionally with timed prefills.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace evoq::model {

struct ForwardSettings {
  std::string model_dir;
  std::string inputs_path;            // safetensors of the processor's outputs; empty: images + prompt
  std::vector<std::string> images;    // chat prompt: the images first, then `prompt`
  std::optional<std::string> prompt;
  bool all_positions = false;         // logits of every position instead of the last
  std::vector<int64_t> continue_ids;  // tokens fed through the cached decoder after the prefill
  int64_t copies = 1;                 // sequences sharing the prompt's KV while continuing
  int timed_prefills = 0;             // time this many prefills after one warm-up
  std::string dtype = "fp32";
  std::string device = "cpu";
  int threads = 0;                    // torch intra-op threads; 0 = torch's default
};

struct ForwardResult {
  // [vocab] (last position), [seq, vocab] (all positions), or with continue_ids [1 + steps, vocab]:
  // the prefill's last logits, then each decode step's logits of sequence 0.
  torch::Tensor logits;
  double prefill_ms_median = 0;  // with timed_prefills > 0
  int64_t prompt_tokens = 0;
};

ForwardResult run_forward(const ForwardSettings& settings);

}  // namespace evoq::model
