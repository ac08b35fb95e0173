#pragma once
// Sampling settings of a stage as typed data: the stage's defaults (which never come from a chat
// model's near-greedy generation_config.json for voting or training), the user's overrides, and the
// JSON form recorded in a run's settings.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "evoq/gen/sampler.h"

namespace evoq::gen {

// What the user set (command line or config file); unset values keep the stage's defaults.
struct SamplingOverrides {
  std::optional<double> temperature, top_p, repetition_penalty;
  std::optional<std::int64_t> top_k, max_new_tokens;
};

// `defaults` with the overrides applied, validated (UsageError naming `what` on a value out of domain).
SamplingParams with_overrides(SamplingParams defaults, const SamplingOverrides& overrides, const std::string& what);

// Offline stage (`evoq vote`, `evoq estimate`): do_sample, temperature 1, top_p 1, top_k 50, no
// repetition penalty: K diverse answers, whatever the model's generation_config says (Qwen2-VL-2B's:
// temperature 0.1, top_p 0.001, top_k 1, penalty 1.05 would give one answer K times).
SamplingParams vote_sampling_defaults(const SamplingParams& model_defaults);

// GRPO rollouts (`evoq train`): do_sample, temperature 1, top_p 1, top_k 0 (off), no repetition penalty.
// With these the rollouts are drawn from exactly softmax(logits / temperature), the distribution the
// log-probs of Eq. 5-6 are computed under (docs/TRAINING.md "Rollout sampling").
SamplingParams rollout_sampling_defaults(const SamplingParams& model_defaults);

// Why a sampling setting is near-deterministic ("temperature 0.1 < 0.3", "top_k 1", "top_p 0.001 < 0.05"),
// or "" when it is not. GRPO needs a spread of answers per image; training refuses such settings unless
// the user insists.
std::string near_greedy_reason(const SamplingParams& p);

// {"do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens"}.
nlohmann::json to_json(const SamplingParams& p);
// The values the user set (unset ones absent).
nlohmann::json to_json(const SamplingOverrides& o);

}  // namespace evoq::gen
