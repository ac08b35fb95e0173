#include "evoq/model/config.h"

#include <fstream>
#include <filesystem>

#include "evoq/core/error.h"

namespace evoq::model {
namespace {

using nlohmann::json;

// Looks a key up in the preferred object first, then in the fallback (flat hub layout).
const json* find(const json& preferred, const json& fallback, const char* key) {
  if (preferred.is_object() && preferred.contains(key) && !preferred.at(key).is_null()) return &preferred.at(key);
  if (fallback.is_object() && fallback.contains(key) && !fallback.at(key).is_null()) return &fallback.at(key);
  return nullptr;
}

template <typename T>
T get_or(const json& preferred, const json& fallback, const char* key, T fallback_value, const std::string& source) {
  const json* v = find(preferred, fallback, key);
  if (!v) return fallback_value;
  try {
    return v->get<T>();
  } catch (const std::exception&) {
    fail(source, ": config field '", key, "' has the wrong type (", v->dump(), ")");
  }
}

void require_positive(int64_t value, const char* name, const std::string& source) {
  EVOQ_CHECK(value > 0, source, ": config field '", name, "' must be positive (got ", value, ")");
}

}  // namespace

const char* arch_name(Arch arch) { return arch == Arch::Qwen2VL ? "qwen2_vl" : "qwen2_5_vl"; }

ModelConfig parse_config(const json& root, const std::string& source) {
  EVOQ_CHECK(root.is_object(), source, ": config is not a JSON object");
  ModelConfig c;
  c.raw = root;
  const std::string type = root.value("model_type", std::string());
  if (type == "qwen2_vl") {
    c.arch = Arch::Qwen2VL;
  } else if (type == "qwen2_5_vl") {
    c.arch = Arch::Qwen25VL;
  } else {
    fail(source, ": unsupported model_type '", type, "' (expected qwen2_vl or qwen2_5_vl)");
  }
  const json empty = json::object();
  const json& tj = root.contains("text_config") && root["text_config"].is_object() ? root["text_config"] : empty;
  const json& vj = root.contains("vision_config") && root["vision_config"].is_object() ? root["vision_config"] : empty;

  // Text decoder: nested text_config wins, flat top-level fields otherwise.
  TextConfig& t = c.text;
  t.vocab_size = get_or<int64_t>(tj, root, "vocab_size", c.arch == Arch::Qwen2VL ? 152064 : 152064, source);
  t.hidden_size = get_or<int64_t>(tj, root, "hidden_size", 8192, source);
  t.intermediate_size = get_or<int64_t>(tj, root, "intermediate_size", 29568, source);
  t.num_hidden_layers = get_or<int64_t>(tj, root, "num_hidden_layers", 80, source);
  t.num_attention_heads = get_or<int64_t>(tj, root, "num_attention_heads", 64, source);
  t.num_key_value_heads = get_or<int64_t>(tj, root, "num_key_value_heads", t.num_attention_heads, source);
  t.rms_norm_eps = get_or<double>(tj, root, "rms_norm_eps", 1e-5, source);
  t.hidden_act = get_or<std::string>(tj, root, "hidden_act", "silu", source);
  require_positive(t.hidden_size, "hidden_size", source);
  require_positive(t.num_attention_heads, "num_attention_heads", source);
  require_positive(t.num_key_value_heads, "num_key_value_heads", source);
  require_positive(t.vocab_size, "vocab_size", source);
  require_positive(t.num_hidden_layers, "num_hidden_layers", source);
  require_positive(t.intermediate_size, "intermediate_size", source);
  EVOQ_CHECK(t.hidden_size % t.num_attention_heads == 0, source, ": hidden_size ", t.hidden_size,
             " is not divisible by num_attention_heads ", t.num_attention_heads);
  EVOQ_CHECK(t.num_attention_heads % t.num_key_value_heads == 0, source, ": num_attention_heads ",
             t.num_attention_heads, " is not divisible by num_key_value_heads ", t.num_key_value_heads);
  t.head_dim = t.hidden_size / t.num_attention_heads;
  EVOQ_CHECK(t.head_dim % 2 == 0, source, ": attention head_dim ", t.head_dim, " must be even");
  EVOQ_CHECK(t.hidden_act == "silu", source, ": unsupported text hidden_act '", t.hidden_act, "'");

  // RoPE: rope_parameters (transformers 5) or rope_scaling (hub), theta inside or at the top level.
  const json* rope = find(tj, root, "rope_parameters");
  if (!rope) rope = find(tj, root, "rope_scaling");
  const json rope_obj = rope && rope->is_object() ? *rope : json::object();
  t.rope_theta =
      get_or<double>(rope_obj, empty, "rope_theta", get_or<double>(tj, root, "rope_theta", 1e6, source), source);
  const std::string rope_type = rope_obj.value("rope_type", rope_obj.value("type", std::string("default")));
  EVOQ_CHECK(rope_type == "default" || rope_type == "mrope", source, ": unsupported rope type '", rope_type,
             "' (only M-RoPE without scaling)");
  t.mrope_section = get_or<std::vector<int64_t>>(rope_obj, empty, "mrope_section", {16, 24, 24}, source);
  EVOQ_CHECK(t.mrope_section.size() == 3, source, ": mrope_section must have 3 entries");
  int64_t section_sum = 0;
  for (int64_t s : t.mrope_section) section_sum += s;
  EVOQ_CHECK(section_sum * 2 == t.head_dim, source, ": mrope_section sums to ", section_sum,
             " but head_dim/2 is ", t.head_dim / 2);

  // Vision tower: the two architectures name the widths differently.
  VisionConfig& v = c.vision;
  auto vget = [&](const char* key, int64_t def) { return get_or<int64_t>(vj, empty, key, def, source); };
  v.depth = vget("depth", 32);
  v.num_heads = vget("num_heads", 16);
  v.in_channels = vj.contains("in_channels") ? vget("in_channels", 3) : vget("in_chans", 3);
  v.patch_size = vget("patch_size", 14);
  v.temporal_patch_size = vget("temporal_patch_size", 2);
  v.spatial_merge_size = vget("spatial_merge_size", 2);
  if (c.arch == Arch::Qwen2VL) {
    v.width = vget("embed_dim", 1280);
    v.out_hidden_size = vget("hidden_size", 3584);
    v.intermediate_size = v.width * vget("mlp_ratio", 4);
    v.hidden_act = get_or<std::string>(vj, empty, "hidden_act", "quick_gelu", source);
  } else {
    v.width = vget("hidden_size", 3584);
    v.out_hidden_size = vget("out_hidden_size", 3584);
    v.intermediate_size = vget("intermediate_size", 3420);
    v.hidden_act = get_or<std::string>(vj, empty, "hidden_act", "silu", source);
    v.window_size = vget("window_size", 112);
    v.fullatt_block_indexes = get_or<std::vector<int64_t>>(vj, empty, "fullatt_block_indexes", {7, 15, 23, 31}, source);
    require_positive(v.window_size, "vision_config.window_size", source);
    const int64_t unit = v.spatial_merge_size * v.patch_size;
    EVOQ_CHECK(v.window_size % unit == 0, source, ": vision_config.window_size ", v.window_size,
               " is not a multiple of spatial_merge_size*patch_size ", unit);
  }
  const json* vrope = find(vj, empty, "rope_parameters");
  if (vrope && vrope->is_object()) v.rope_theta = vrope->value("rope_theta", 10000.0);
  require_positive(v.depth, "vision_config.depth", source);
  require_positive(v.width, "vision_config width", source);
  require_positive(v.num_heads, "vision_config.num_heads", source);
  require_positive(v.patch_size, "vision_config.patch_size", source);
  require_positive(v.temporal_patch_size, "vision_config.temporal_patch_size", source);
  require_positive(v.spatial_merge_size, "vision_config.spatial_merge_size", source);
  EVOQ_CHECK(v.width % v.num_heads == 0, source, ": vision width ", v.width, " is not divisible by num_heads ",
             v.num_heads);
  v.head_dim = v.width / v.num_heads;
  EVOQ_CHECK(v.head_dim % 4 == 0, source, ": vision head_dim ", v.head_dim, " must be a multiple of 4");
  EVOQ_CHECK(v.out_hidden_size == t.hidden_size, source, ": vision output size ", v.out_hidden_size,
             " differs from the text hidden_size ", t.hidden_size);
  EVOQ_CHECK(v.hidden_act == "silu" || v.hidden_act == "quick_gelu" || v.hidden_act == "gelu" ||
                 v.hidden_act == "gelu_pytorch_tanh",
             source, ": unsupported vision hidden_act '", v.hidden_act, "'");
  for (int64_t idx : v.fullatt_block_indexes)
    EVOQ_CHECK(idx >= 0 && idx < v.depth, source, ": fullatt_block_indexes entry ", idx, " outside depth ", v.depth);

  // Tied embeddings: top level (v5) or, for old saves, inside text_config.
  c.tie_word_embeddings = root.value("tie_word_embeddings", false) || tj.value("tie_word_embeddings", false);
  auto id = [&](const char* key, int64_t def) { return get_or<int64_t>(root, tj, key, def, source); };
  c.image_token_id = id("image_token_id", 151655);
  c.video_token_id = id("video_token_id", 151656);
  c.vision_start_token_id = id("vision_start_token_id", 151652);
  c.vision_end_token_id = id("vision_end_token_id", 151653);
  return c;
}

ModelConfig load_config(const std::string& dir_or_file) {
  namespace fs = std::filesystem;
  fs::path path = dir_or_file;
  if (fs::is_directory(path)) path /= "config.json";
  std::ifstream in(path);
  EVOQ_CHECK(in.good(), path.string(), ": cannot open model config");
  json root;
  try {
    root = json::parse(in);
  } catch (const std::exception& e) {
    fail(path.string(), ": malformed JSON in model config");
  }
  return parse_config(root, path.string());
}

}  // namespace evoq::model
