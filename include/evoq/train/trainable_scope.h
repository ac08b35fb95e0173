#pragma once
// Which parameters the online stage trains: "all" (the paper: vision tower, merger and LM), "lm"
// (decoder + lm_head) or "lm+merger" (plus the vision merger). Parameters outside the scope get
// requires_grad(false), those inside requires_grad(true).
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace evoq::model {
class QwenVL;
}

namespace evoq::train {

// Throws evoq::UsageError for a scope other than all | lm | lm+merger.
std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters(model::QwenVL& model,
                                                                        const std::string& scope);

// True when the parameter name belongs to scope (same names as QwenVL::named_parameters()).
bool in_trainable_scope(const std::string& name, const std::string& scope);

}  // namespace evoq::train
