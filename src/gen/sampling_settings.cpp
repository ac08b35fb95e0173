#include "evoq/gen/sampling_settings.h"

#include <sstream>

namespace evoq::gen {

SamplingParams with_overrides(SamplingParams p, const SamplingOverrides& o, const std::string& what) {
  if (o.temperature) p.temperature = *o.temperature;
  if (o.top_p) p.top_p = *o.top_p;
  if (o.top_k) p.top_k = *o.top_k;
  if (o.repetition_penalty) p.repetition_penalty = *o.repetition_penalty;
  if (o.max_new_tokens) p.max_new_tokens = *o.max_new_tokens;
  validate(p, what);
  return p;
}

SamplingParams vote_sampling_defaults(const SamplingParams& model_defaults) {
  SamplingParams p = model_defaults;
  p.do_sample = true;
  p.temperature = 1.0;
  p.top_p = 1.0;
  p.top_k = 50;
  p.repetition_penalty = 1.0;
  return p;
}

SamplingParams rollout_sampling_defaults(const SamplingParams& model_defaults) {
  SamplingParams p = model_defaults;
  p.do_sample = true;
  p.temperature = 1.0;
  p.top_p = 1.0;
  p.top_k = 0;
  p.repetition_penalty = 1.0;
  return p;
}

std::string near_greedy_reason(const SamplingParams& p) {
  std::ostringstream why;
  if (!p.do_sample) return "greedy decoding";
  if (p.temperature < 0.3) why << "temperature " << p.temperature << " < 0.3";
  else if (p.top_k == 1) why << "top_k 1";
  else if (p.top_p < 0.05) why << "top_p " << p.top_p << " < 0.05";
  return why.str();
}

nlohmann::json to_json(const SamplingParams& p) {
  return {{"do_sample", p.do_sample},   {"temperature", p.temperature},
          {"top_p", p.top_p},           {"top_k", p.top_k},
          {"repetition_penalty", p.repetition_penalty}, {"max_new_tokens", p.max_new_tokens}};
}

nlohmann::json to_json(const SamplingOverrides& o) {
  nlohmann::json j = nlohmann::json::object();
  if (o.temperature) j["temperature"] = *o.temperature;
  if (o.top_p) j["top_p"] = *o.top_p;
  if (o.top_k) j["top_k"] = *o.top_k;
  if (o.repetition_penalty) j["repetition_penalty"] = *o.repetition_penalty;
  if (o.max_new_tokens) j["max_new_tokens"] = *o.max_new_tokens;
  return j;
}

}  // namespace evoq::gen
