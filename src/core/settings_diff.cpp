#include "evoq/core/settings_diff.h"

namespace evoq {

namespace {

void compare(const nlohmann::json& a, const nlohmann::json& b, const std::string& prefix, std::string& out) {
  auto add = [&](const std::string& key, const std::string& was, const std::string& now) {
    out += (out.empty() ? "" : ", ") + key + " (was " + was + ", now " + now + ")";
  };
  if (a.is_object() && b.is_object()) {
    for (const auto& [k, v] : a.items()) {
      const std::string key = prefix.empty() ? k : prefix + "." + k;
      if (!b.contains(k)) add(key, v.dump(), "-");
      else compare(v, b[k], key, out);
    }
    for (const auto& [k, v] : b.items())
      if (!a.contains(k)) add(prefix.empty() ? k : prefix + "." + k, "-", v.dump());
    return;
  }
  if (a != b) add(prefix.empty() ? "(settings)" : prefix, a.dump(), b.dump());
}

}  // namespace

std::string describe_settings_differences(const nlohmann::json& recorded, const nlohmann::json& now) {
  std::string out;
  compare(recorded, now, "", out);
  return out;
}

}  // namespace evoq
