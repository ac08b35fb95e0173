#pragma once
// The sampling options of the commands that generate (the CLI side of sampler.h's SamplingParams),
// apart from sampler.h so that the generation engine compiles without Boost (tests/gpu).
#include <boost/program_options.hpp>
#include <cstdint>

#include "evoq/gen/sampler.h"

namespace evoq::gen {

// Per-stage overrides: --temperature --top-p --top-k --repetition-penalty --max-new-tokens
// (--greedy / --sample are added by the commands that need them). Values left unset keep the
// model's generation_config.json.
void add_sampling_options(boost::program_options::options_description& options, int64_t default_max_new_tokens);
void apply_sampling_options(const boost::program_options::variables_map& vm, SamplingParams& p);

}  // namespace evoq::gen
