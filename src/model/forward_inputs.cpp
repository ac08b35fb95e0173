#include "evoq/model/forward_inputs.h"

#include "evoq/core/error.h"
#include "evoq/image/processor.h"
#include "evoq/io/safetensors.h"
#include "evoq/text/chat_template.h"
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
    EVOQ_CHECK(in.attention_mask.sizes() == in.input_ids.sizes(), path,
               ": attention_mask shape differs from input_ids");
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

Inputs chat_forward_inputs(const std::string& model_dir, const ModelConfig& config,
                           const std::vector<std::string>& images, const std::string& prompt) {
  auto tokenizer = text::Tokenizer::load(model_dir);
  Inputs in;
  std::vector<int64_t> image_tokens;
  if (!images.empty()) {
    auto processor = image::load_processor_config(model_dir);
    std::vector<torch::Tensor> pixels;
    std::vector<int64_t> grids;
    for (const auto& path : images) {
      auto processed = image::preprocess_file(path, processor);
      pixels.push_back(torch::from_blob(processed.pixel_values.data(), {processed.rows, processed.cols},
                                        torch::kFloat32).clone());
      grids.insert(grids.end(), processed.grid_thw.begin(), processed.grid_thw.end());
      image_tokens.push_back(processed.num_image_tokens);
    }
    in.pixel_values = torch::cat(pixels, 0);
    in.image_grid_thw = torch::tensor(grids, torch::kInt64).view({-1, 3});
    EVOQ_CHECK(in.pixel_values.size(1) == config.vision.patch_dim(), model_dir,
               ": preprocessor_config.json gives patches of ", in.pixel_values.size(1), " values but the model needs ",
               config.vision.patch_dim());
  }
  auto ids = text::chat_prompt_ids(tokenizer, image_tokens, prompt);
  in.input_ids = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kInt64).view({1, -1});
  return in;
}

}  // namespace evoq::model
