#include "evoq/train/trainable_scope.h"

#include "evoq/core/error.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::train {
namespace {
bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }
}  // namespace

bool in_trainable_scope(const std::string& name, const std::string& scope) {
  const bool lm = starts_with(name, "model.language_model.") || starts_with(name, "lm_head.");
  if (scope == "all") return true;
  if (scope == "lm") return lm;
  if (scope == "lm+merger") return lm || starts_with(name, "model.visual.merger.");
  throw UsageError("unknown trainable scope '" + scope + "' (expected all, lm or lm+merger)");
}

std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters(model::QwenVL& model,
                                                                        const std::string& scope) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const bool trainable = in_trainable_scope(item.key(), scope);
    item.value().set_requires_grad(trainable);
    if (trainable) out.emplace_back(item.key(), item.value());
  }
  return out;
}

}  // namespace evoq::train
