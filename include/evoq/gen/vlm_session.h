#pragma once
// Everything generation needs from a checkpoint directory: the model, its tokenizer, image
// processor settings, sampling defaults (generation_config.json) and stop ids; builds chat prompts
// with images.
#include <boost/program_options.hpp>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "evoq/gen/decoder.h"
#include "evoq/gen/sampler.h"
#include "evoq/image/processor_config.h"
#include "evoq/model/qwen_vl.h"
#include "evoq/text/tokenizer.h"

namespace evoq::gen {

struct VlmSession {
  std::string model_dir;
  std::shared_ptr<model::QwenVL> model;
  text::Tokenizer tokenizer;
  image::ProcessorConfig processor;
  SamplingParams defaults;    // generation_config.json (transformers' defaults for missing keys)
  std::set<int64_t> stop_ids; // <|im_end|>, <|endoftext|>, the tokenizer's eos and generation_config's eos ids

  static VlmSession load(const std::string& model_dir, torch::Dtype dtype, torch::Device device);

  // Chat prompt with `images` (in order) before `text`; each image preprocessed with `processor`.
  PromptInput build_prompt(const std::vector<std::string>& images, std::string_view text) const;

  // Generated text of `tokens` without special tokens (the stop id is dropped).
  std::string decode_text(const std::vector<int32_t>& tokens) const;
};

// Adds --dtype, --device, --threads; apply_runtime_options sets the torch thread count.
void add_runtime_options(boost::program_options::options_description& options);
void apply_runtime_options(const boost::program_options::variables_map& vm);
torch::Dtype runtime_dtype(const boost::program_options::variables_map& vm);
torch::Device runtime_device(const boost::program_options::variables_map& vm);

}  // namespace evoq::gen
