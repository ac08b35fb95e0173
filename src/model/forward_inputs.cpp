#include "evoq/model/forward_inputs.h"

#include "evoq/core/error.h"
#include "evoq/io/safetensors.h"
#include "evoq/model/weights.h"

namespace evoq::model {

Inputs read_forward_inputs(const std::string& path) {
  auto file = io::SafetensorsFile::open(path);
  const auto& tensors = file->tensors();
  auto get = [&](const char* name) -> torch::Tensor {
    auto it = tensors.find(name);
    if (it == tensors.end()) return {};
    return to_torch(it->second).clone();
  };
  Inputs in;
  in.input_ids = get("input_ids");
  EVOQ_CHECK(in.input_ids.defined(), path, ": missing tensor input_ids");
  EVOQ_CHECK(in.input_ids.dim() == 1 || in.input_ids.dim() == 2, path, ": input_ids must be [L] or [B, L]");
  if (in.input_ids.dim() == 1) in.input_ids = in.input_ids.unsqueeze(0);
  in.input_ids = in.input_ids.to(torch::kInt64);
  in.attention_mask = get("attention_mask");
  if (in.attention_mask.defined()) {
    if (in.attention_mask.dim() == 1) in.attention_mask = in.attention_mask.unsqueeze(0);
    EVOQ_CHECK(in.attention_mask.sizes() == in.input_ids.sizes(), path, ": attention_mask shape differs from input_ids");
  }
  in.pixel_values = get("pixel_values");
  in.image_grid_thw = get("image_grid_thw");
  if (in.pixel_values.defined()) {
    EVOQ_CHECK(in.image_grid_thw.defined(), path, ": pixel_values without image_grid_thw");
    in.pixel_values = in.pixel_values.to(torch::kFloat32);
    in.image_grid_thw = in.image_grid_thw.to(torch::kInt64);
  }
  return in;
}

Inputs chat_forward_inputs(const std::string& model_dir, const ModelConfig&, const std::vector<std::string>&,
                           const std::string&) {
  fail(model_dir, ": --image/--prompt needs the tokenizer and image processor (not built in yet); use --inputs");
}

}  // namespace evoq::model
