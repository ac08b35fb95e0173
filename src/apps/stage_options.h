#pragma once
// The command-line and config-file side of the stages: each stage's options are declared once here and
// parsed into its typed settings (evo::VoteSettings, evo::EstimateSettings, train::TrainSettings,
// eval::EvalSettings). The stage commands and `evoq evolve` (for its per-stage config sections) both go
// through these functions; no library below src/apps sees an option map.
#include <boost/program_options.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "evoq/eval/eval_run.h"
#include "evoq/evo/estimate_stage.h"
#include "evoq/train/train_run.h"
#include "evoq/evo/vote_stage.h"
#include "evoq/gen/sampling_settings.h"
#include "evoq/gen/vlm_session.h"

namespace evoq::apps {

namespace po = boost::program_options;

// --dtype --device --threads --tf32
// --dtype/--device/--threads/--tf32 with the defaults of `d` (inference: --dtype auto; training: fp32).
void add_runtime_options(po::options_description& o, const gen::RuntimeSettings& d = {});
gen::RuntimeSettings runtime_settings(const po::variables_map& vm);
// The --model of a one-shot command (score, compare, generate) loaded on its runtime options, after
// logging "COMMAND: cpu bf16 (--dtype auto), 2 threads".
gen::VlmSession open_session(const po::variables_map& vm, const std::string& command);

// --temperature --top-p --top-k --repetition-penalty --max-new-tokens; `defaults` says where unset
// values come from (e.g. "training's rollout defaults: temperature 1, top_p 1, top_k 0").
void add_sampling_options(po::options_description& o, std::int64_t default_max_new_tokens, const std::string& defaults);
gen::SamplingOverrides sampling_overrides(const po::variables_map& vm);

void add_vote_options(po::options_description& o);
evo::VoteSettings vote_settings(const po::variables_map& vm);

void add_estimate_options(po::options_description& o);
evo::EstimateSettings estimate_settings(const po::variables_map& vm);

void add_train_options(po::options_description& o);
train::TrainSettings train_settings(const po::variables_map& vm);

void add_eval_options(po::options_description& o);
eval::EvalSettings eval_settings(const po::variables_map& vm);

// The options of stage `command` (vote, estimate, train, eval) as a config file sets them: its
// `[command]` section and shared keys of `config_file` ("" = none), on top of the defaults. For
// `evoq evolve`, which builds each round's stage settings from them.
po::variables_map stage_config(const std::string& command, const std::string& config_file);

}  // namespace evoq::apps
