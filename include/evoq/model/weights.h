#pragma once
// Loading and saving QwenVL weights in the Hugging Face safetensors layout. Both key layouts load:
// hub checkpoints (`visual.*`, `model.*` for the text model) and transformers >= 4.52 saves
// (`model.visual.*`, `model.language_model.*`); `lm_head.weight` is ignored when embeddings are tied.
// Loading is strict: a missing, unexpected or wrongly shaped tensor is an error naming it.
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>

#include "evoq/io/safetensors.h"
#include "evoq/model/qwen_vl.h"

namespace evoq::model {

// Our parameter name for a checkpoint key of either layout.
std::string canonical_weight_name(const std::string& key);

// A checkpoint tensor as a CPU torch tensor sharing the mapped bytes (valid while the checkpoint lives).
torch::Tensor to_torch(const io::TensorView& view);

void load_weights(QwenVL& model, const io::Checkpoint& checkpoint);

// config.json + safetensors of DIR -> model with parameters of `dtype` on `device`.
std::shared_ptr<QwenVL> load_model(const std::string& dir, torch::Dtype dtype, torch::Device device);

// Writes model.safetensors (sharded above max_shard_bytes) and config.json into dir, in `dtype`
// (default: the model's), so that transformers loads the directory unchanged.
void save_model(QwenVL& model, const std::string& dir, std::optional<torch::Dtype> dtype = std::nullopt,
                std::size_t max_shard_bytes = std::size_t(5) << 30);

torch::Dtype parse_torch_dtype(const std::string& name);  // "fp32"/"float32", "bf16"/"bfloat16", "fp16"
torch::Device parse_torch_device(const std::string& name);  // "cpu", "cuda", "cuda:N"

}  // namespace evoq::model
