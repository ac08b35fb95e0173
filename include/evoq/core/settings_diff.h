#pragma once
// Comparing the settings a run recorded with the settings it is resumed with (JSON objects): the keys
// that differ, each with both values, for one-line refusals such as
//   --resume: settings differ from the run in 'runs/r1': beta (was 0.05, now 0.1), sampling.temperature (was 1, now
//   0.7)
#include <nlohmann/json.hpp>

#include <string>

namespace evoq {

// "" when equal; else "key (was A, now B), ..." with nested objects as dotted keys; a key present on
// one side only reads "(was -, now B)" / "(was A, now -)".
std::string describe_settings_differences(const nlohmann::json& recorded, const nlohmann::json& now);

}  // namespace evoq
