#pragma once
// Sampling defaults of the offline stage (`evoq vote`, `evoq estimate`): voting needs diverse samples,
// and a chat model's generation_config is often near-greedy (Qwen2-VL: temperature 0.1, top_k 1), which
// would make K samples one answer K times. Command-line sampling flags override these.
#include "evoq/gen/sampler.h"

namespace evoq::gen {

// model_defaults with do_sample on, temperature 1, top_p 1, top_k 50, no repetition penalty.
SamplingParams vote_sampling_defaults(const SamplingParams& model_defaults);

}  // namespace evoq::gen
