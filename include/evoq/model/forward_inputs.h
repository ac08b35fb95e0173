#pragma once
// Building model Inputs for the inspection commands: from a safetensors file holding the processor's
// outputs, or from images + text through the chat template and the image processor.
#include <string>
#include <vector>

#include "evoq/model/config.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::model {

// input_ids ([L] or [B, L], int64/int32), optional attention_mask, pixel_values [N, patch_dim] and
// image_grid_thw [num_images, 3]; errors name the file and tensor.
Inputs read_forward_inputs(const std::string& path);

// Chat prompt: the model's chat template with the images first, then `prompt`, then the assistant
// generation prompt; images preprocessed with the model's preprocessor_config.json.
Inputs chat_forward_inputs(const std::string& model_dir, const ModelConfig& config,
                           const std::vector<std::string>& images, const std::string& prompt);

}  // namespace evoq::model
