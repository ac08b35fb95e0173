#pragma once
// Mixed precision for the training forwards (`evoq train --autocast bf16`): the policy and reference
// forwards run under at::autocast with bf16 compute while the parameters stay fp32 (the optimizer's
// master weights). CUDA is the target; CPU autocast (bf16) also works in LibTorch and is what the
// tests exercise. The backward pass runs outside the scope (autograd replays the forward's casts).
#include <torch/torch.h>

#include <string>

namespace evoq::model {

enum class Autocast { off, bf16 };

// "off" | "bf16"; UsageError naming `option` otherwise.
Autocast parse_autocast(const std::string& value, const std::string& option = "--autocast");
const char* autocast_name(Autocast mode);

// Enables autocast for `device`'s type for its lifetime (no-op when mode is off) and restores the
// previous state; the cast cache is cleared when the outermost scope closes.
class AutocastScope {
 public:
  AutocastScope(Autocast mode, torch::Device device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  at::DeviceType type_ = at::kCPU;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace evoq::model
