#include "evoq/gen/vlm_session.h"

#include <sched.h>

#include <fstream>

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/image/processor.h"
#include "evoq/model/weights.h"
#include "evoq/text/chat_template.h"

namespace evoq::gen {


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
  s.model->pack_linear_weights();  // bf16 on the CPU: oneDNN's layout once, not in every product
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

torch::Device RuntimeSettings::torch_device(int local_rank) const {
  auto d = model::parse_torch_device(device);
  if (d.is_cuda() && !d.has_index()) d = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  return d;
}

bool cpu_has_native_bf16() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0)
      return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
  return false;
}

torch::Dtype RuntimeSettings::torch_dtype(const torch::Device& d) const {
  if (dtype == "auto") return d.is_cuda() || cpu_has_native_bf16() ? torch::kBFloat16 : torch::kFloat32;
  return model::parse_torch_dtype(dtype);
}

std::string RuntimeSettings::dtype_name() const {
  if (dtype == "auto") return on_cuda() || cpu_has_native_bf16() ? "bf16" : "fp32";
  return dtype;
}

namespace {
// The CPUs this process may run on (its affinity mask; mpirun and Slurm narrow it), 0 if unknown.
int cpus_allowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
}
}  // namespace

void RuntimeSettings::apply(const torch::Device& d) const {
  if (threads < 0) throw UsageError("--threads must be >= 0");
  if (threads > 0) torch::set_num_threads(threads);
  // Open MPI binds each rank of a small job to one core by default: T threads then share that core and
  // run about T times slower (docs/TRAINING.md), silently. Say so.
  const int allowed = cpus_allowed();
  if (!d.is_cuda() && threads > 1 && allowed > 0 && threads > allowed)
    log::warn("--threads ", threads, " but this process may run on only ", allowed,
              " CPU(s) (its affinity): the threads will share them; under mpirun add --bind-to none or "
              "--map-by slot:PE=", threads, ", under Slurm --cpus-per-task=", threads);
  if (d.is_cuda()) {
    at::globalContext().setAllowTF32CuBLAS(tf32);
    at::globalContext().setAllowTF32CuDNN(tf32);
  }
}

std::string RuntimeSettings::describe(const torch::Device& d) const {
  std::string text = d.str() + " " + dtype_name();
  if (dtype == "auto") text += " (--dtype auto)";
  text += ", " + std::to_string(threads > 0 ? threads : torch::get_num_threads()) + " threads";
  if (d.is_cuda()) text += tf32 ? ", TF32 on" : ", TF32 off";
  return text;
}

}  // namespace evoq::gen
