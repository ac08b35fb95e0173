#include "evoq/image/processor_config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "evoq/core/error.h"

namespace evoq::image {

namespace {

using nlohmann::json;

std::int64_t get_positive_int(const json& j, const char* key, const std::string& source) {
  if (!j.is_number_integer() && !(j.is_number_float() && j.get<double>() == double(j.get<std::int64_t>())))
    fail(source, ": '", key, "' must be an integer, got ", j.dump());
  const auto v = j.get<std::int64_t>();
  if (v <= 0) fail(source, ": '", key, "' must be positive, got ", v);
  return v;
}

std::array<double, 3> get_triple(const json& j, const char* key, const std::string& source) {
  if (j.is_number()) {
    const double v = j.get<double>();
    return {v, v, v};
  }
  if (!j.is_array() || j.size() != 3 || !j[0].is_number() || !j[1].is_number() || !j[2].is_number())
    fail(source, ": '", key, "' must be a number or a list of 3 numbers, got ", j.dump());
  return {j[0].get<double>(), j[1].get<double>(), j[2].get<double>()};
}

bool get_bool(const json& j, const char* key, const std::string& source) {
  if (!j.is_boolean()) fail(source, ": '", key, "' must be true or false, got ", j.dump());
  return j.get<bool>();
}

}  // namespace

ProcessorConfig parse_processor_config(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(source, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(source, ": expected a JSON object");
  ProcessorConfig c;
  if (j.contains("size") && !j["size"].is_null()) {
    const json& size = j["size"];
    if (!size.is_object()) fail(source, ": 'size' must be an object, got ", size.dump());
    for (const char* key : {"shortest_edge", "min_pixels"})
      if (size.contains(key)) c.min_pixels = get_positive_int(size[key], key, source);
    for (const char* key : {"longest_edge", "max_pixels"})
      if (size.contains(key)) c.max_pixels = get_positive_int(size[key], key, source);
  }
  if (j.contains("min_pixels") && !j["min_pixels"].is_null())
    c.min_pixels = get_positive_int(j["min_pixels"], "min_pixels", source);
  if (j.contains("max_pixels") && !j["max_pixels"].is_null())
    c.max_pixels = get_positive_int(j["max_pixels"], "max_pixels", source);
  if (j.contains("patch_size")) c.patch_size = int(get_positive_int(j["patch_size"], "patch_size", source));
  if (j.contains("temporal_patch_size"))
    c.temporal_patch_size = int(get_positive_int(j["temporal_patch_size"], "temporal_patch_size", source));
  if (j.contains("merge_size")) c.merge_size = int(get_positive_int(j["merge_size"], "merge_size", source));
  if (j.contains("do_resize")) c.do_resize = get_bool(j["do_resize"], "do_resize", source);
  if (j.contains("do_rescale")) c.do_rescale = get_bool(j["do_rescale"], "do_rescale", source);
  if (j.contains("do_normalize")) c.do_normalize = get_bool(j["do_normalize"], "do_normalize", source);
  if (j.contains("rescale_factor")) {
    if (!j["rescale_factor"].is_number()) fail(source, ": 'rescale_factor' must be a number");
    c.rescale_factor = j["rescale_factor"].get<double>();
  }
  if (j.contains("image_mean")) c.image_mean = get_triple(j["image_mean"], "image_mean", source);
  if (j.contains("image_std")) c.image_std = get_triple(j["image_std"], "image_std", source);
  for (double s : c.image_std)
    if (s == 0.0) fail(source, ": 'image_std' must not contain 0");
  if (c.min_pixels > c.max_pixels)
    fail(source, ": min_pixels ", c.min_pixels, " is larger than max_pixels ", c.max_pixels);
  return c;
}

ProcessorConfig load_processor_config(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "preprocessor_config.json";
  std::ifstream in(path);
  if (!in) fail("cannot open '", path.string(), "' (is --model a Qwen2-VL checkpoint directory?)");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_processor_config(text.str(), path.string());
}

void override_pixel_limits(ProcessorConfig& config, std::optional<std::int64_t> min_pixels,
                           std::optional<std::int64_t> max_pixels) {
  if (min_pixels) {
    if (*min_pixels <= 0) throw UsageError("--min-pixels must be positive, got " + std::to_string(*min_pixels));
    config.min_pixels = *min_pixels;
  }
  if (max_pixels) {
    if (*max_pixels <= 0) throw UsageError("--max-pixels must be positive, got " + std::to_string(*max_pixels));
    config.max_pixels = *max_pixels;
  }
  if (config.min_pixels > config.max_pixels)
    throw UsageError("min pixels " + std::to_string(config.min_pixels) + " is larger than max pixels " +
                     std::to_string(config.max_pixels));
}

}  // namespace evoq::image
