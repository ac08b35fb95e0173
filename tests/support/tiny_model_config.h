// The tiny Qwen-VL configuration the C++ unit tests build models from (2 text layers of width 32,
// 4 heads / 2 KV heads, vocabulary 100, image token 95, a 2-block vision tower): one definition for
// every test layer. The Python tests build their tiny checkpoints with data_prep/tiny_qwen_vl.py.
#pragma once

#include <optional>
#include <string>

#include "evoq/model/config.h"

namespace evoq::testing {

// type: "qwen2_vl" or "qwen2_5_vl"; tied: tie_word_embeddings (unset: the parser's default).
inline model::ModelConfig tiny_model_config(const std::string& type = "qwen2_5_vl",
                                            std::optional<bool> tied = std::nullopt) {
  nlohmann::json j = {
      {"model_type", type},
      {"image_token_id", 95},
      {"text_config",
       {{"hidden_size", 32}, {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
        {"intermediate_size", 48}, {"vocab_size", 100}, {"rms_norm_eps", 1e-6},
        {"rope_parameters", {{"mrope_section", {1, 1, 2}}, {"rope_theta", 10000.0}}}}},
      {"vision_config",
       {{"depth", 2}, {"hidden_size", type == "qwen2_vl" ? 32 : 16}, {"embed_dim", 16}, {"num_heads", 2},
        {"mlp_ratio", 2}, {"intermediate_size", 24}, {"out_hidden_size", 32}, {"fullatt_block_indexes", {1}}}}};
  if (tied) j["tie_word_embeddings"] = *tied;
  return model::parse_config(j, "tiny");
}

}  // namespace evoq::testing
