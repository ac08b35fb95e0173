#include "evoq/gen/vote_sampling.h"

namespace evoq::gen {

SamplingParams vote_sampling_defaults(const SamplingParams& model_defaults) {
  SamplingParams p = model_defaults;
  p.do_sample = true;
  p.temperature = 1.0;
  p.top_p = 1.0;
  p.top_k = 50;
  p.repetition_penalty = 1.0;
  return p;
}

}  // namespace evoq::gen
