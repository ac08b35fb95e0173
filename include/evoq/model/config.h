#pragma once
// Model configuration of Qwen2-VL / Qwen2.5-VL read from a Hugging Face config.json. Accepts the flat
// layout of hub checkpoints (text fields at the top level, `rope_scaling`) and the nested layout written
// by transformers 5 (`text_config`, `vision_config`, `rope_parameters`). Torch-free.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace evoq::model {

enum class Arch { Qwen2VL, Qwen25VL };

const char* arch_name(Arch arch);  // "qwen2_vl" / "qwen2_5_vl"

struct TextConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 1e6;
  std::vector<int64_t> mrope_section;  // contiguous (temporal, height, width) split of head_dim/2
  std::string hidden_act = "silu";
};

struct VisionConfig {
  int64_t depth = 0;
  int64_t width = 0;              // Qwen2-VL: embed_dim; Qwen2.5-VL: hidden_size
  int64_t num_heads = 0;
  int64_t head_dim = 0;           // width / num_heads
  int64_t intermediate_size = 0;  // Qwen2-VL: embed_dim * mlp_ratio
  int64_t out_hidden_size = 0;    // merger output = LM hidden (Qwen2-VL: hidden_size)
  int64_t in_channels = 3;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t spatial_merge_size = 2;
  int64_t window_size = 0;                    // pixels; Qwen2.5-VL only
  std::vector<int64_t> fullatt_block_indexes;  // Qwen2.5-VL only
  std::string hidden_act;
  double rope_theta = 10000.0;
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
};

struct ModelConfig {
  Arch arch = Arch::Qwen2VL;
  TextConfig text;
  VisionConfig vision;
  bool tie_word_embeddings = false;
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;
  nlohmann::json raw;  // the file as read (written back unchanged by save)
};

// Parses and validates; `source` names the file in error messages.
ModelConfig parse_config(const nlohmann::json& json, const std::string& source);
// Reads DIR/config.json (or a path to a .json file).
ModelConfig load_config(const std::string& dir_or_file);

}  // namespace evoq::model
