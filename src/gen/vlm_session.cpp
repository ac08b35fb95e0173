#include "evoq/gen/vlm_session.h"

#include "evoq/core/error.h"
#include "evoq/image/processor.h"
#include "evoq/model/weights.h"
#include "evoq/text/chat_template.h"

namespace evoq::gen {

namespace po = boost::program_options;

VlmSession VlmSession::load(const std::string& model_dir, torch::Dtype dtype, torch::Device device) {
  auto tokenizer = text::Tokenizer::load(model_dir);
  VlmSession s{model_dir, model::load_model(model_dir, dtype, device), tokenizer,
               image::load_processor_config(model_dir), model_sampling_defaults(model_dir), {}};
  for (const char* name : {"<|im_end|>", "<|endoftext|>"})
    if (auto id = s.tokenizer.find_token_id(name)) s.stop_ids.insert(*id);
  if (auto eos = s.tokenizer.eos_id()) s.stop_ids.insert(*eos);
  for (int64_t id : s.defaults.eos_token_ids) s.stop_ids.insert(id);
  EVOQ_CHECK(!s.stop_ids.empty(), model_dir, ": the tokenizer has neither <|im_end|> nor <|endoftext|>");
  s.model->eval();
  return s;
}

PromptInput VlmSession::build_prompt(const std::vector<std::string>& images, std::string_view text) const {
  PromptInput p;
  std::vector<int64_t> image_tokens;
  std::vector<torch::Tensor> pixels, grids;
  for (const auto& path : images) {
    image::ProcessedImage im = image::preprocess_file(path, processor);
    pixels.push_back(torch::from_blob(im.pixel_values.data(), {im.rows, im.cols}, torch::kFloat32).clone());
    grids.push_back(torch::tensor({im.grid_thw[0], im.grid_thw[1], im.grid_thw[2]}, torch::kInt64));
    image_tokens.push_back(im.num_image_tokens);
  }
  p.input_ids = text::chat_prompt_ids(tokenizer, image_tokens, text);
  if (!images.empty()) {
    p.pixel_values = torch::cat(pixels).to(model->options().dtype().toScalarType());
    p.image_grid_thw = torch::stack(grids);
  }
  return p;
}

std::string VlmSession::decode_text(const std::vector<int32_t>& tokens) const {
  return tokenizer.decode(tokens, /*skip_special=*/true);
}

void add_runtime_options(po::options_description& options) {
  options.add_options()("dtype", po::value<std::string>()->default_value("fp32"), "model dtype: fp32, bf16, fp16")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu, cuda or cuda:N")(
      "threads", po::value<int>()->default_value(0), "torch intra-op threads (0 = torch's default)");
}

void apply_runtime_options(const po::variables_map& vm) {
  const int threads = vm["threads"].as<int>();
  if (threads < 0) throw UsageError("--threads must be >= 0");
  if (threads > 0) torch::set_num_threads(threads);
}

torch::Dtype runtime_dtype(const po::variables_map& vm) { return model::parse_torch_dtype(vm["dtype"].as<std::string>()); }
torch::Device runtime_device(const po::variables_map& vm) {
  return model::parse_torch_device(vm["device"].as<std::string>());
}

}  // namespace evoq::gen
