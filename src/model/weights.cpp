#include "evoq/model/weights.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <sys/mman.h>
#include <unistd.h>

#include "evoq/core/error.h"
#include "evoq/io/atomic_file.h"

namespace evoq::model {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

torch::Dtype torch_dtype_of(io::DType d, const std::string& name) {
  switch (d) {
    case io::DType::F32: return torch::kFloat32;
    case io::DType::F16: return torch::kFloat16;
    case io::DType::BF16: return torch::kBFloat16;
    case io::DType::F64: return torch::kFloat64;
    case io::DType::I64: return torch::kInt64;
    case io::DType::I32: return torch::kInt32;
    case io::DType::I16: return torch::kInt16;
    case io::DType::I8: return torch::kInt8;
    case io::DType::U8: return torch::kUInt8;
    case io::DType::BOOL: return torch::kBool;
  }
  fail("tensor ", name, ": unsupported dtype");
}

io::DType io_dtype_of(torch::Dtype d) {
  switch (d) {
    case torch::kFloat32: return io::DType::F32;
    case torch::kBFloat16: return io::DType::BF16;
    case torch::kFloat16: return io::DType::F16;
    default: fail("cannot save parameters of dtype ", c10::toString(d));
  }
}

const char* hf_dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: return "float32";
  }
}

}  // namespace

std::string canonical_weight_name(const std::string& key) {
  if (starts_with(key, "model.visual.") || starts_with(key, "model.language_model.") || starts_with(key, "lm_head."))
    return key;
  if (starts_with(key, "visual.")) return "model." + key;
  if (starts_with(key, "model.")) return "model.language_model." + key.substr(6);
  return key;
}

torch::Tensor to_torch(const io::TensorView& view) {
  auto dtype = torch_dtype_of(view.dtype, view.name);
  return torch::from_blob(const_cast<std::uint8_t*>(view.data), view.shape, torch::TensorOptions().dtype(dtype));
}

// Drops the mapped file pages of a tensor already copied into its parameter: without this the whole
// checkpoint stays resident next to the parameters until the mapping closes, and the load's peak RSS
// is twice the model (3.7 GB for the 0.42B "small" config in fp32). The mapping is read-only and
// private, so the pages are only released, and re-read from the file if touched again.
void release_mapped_pages(const io::TensorView& view) {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(view.data);
  const std::uintptr_t first = (begin + page - 1) / page * page;  // whole pages inside the tensor only:
  const std::uintptr_t last = (begin + view.nbytes) / page * page;  // its neighbours may still be needed
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void load_weights(QwenVL& model, const io::Checkpoint& checkpoint) {
  torch::NoGradGuard no_grad;
  const bool tied = model.config().tie_word_embeddings;
  std::map<std::string, std::string> by_name;  // our name -> checkpoint key
  for (const auto& key : checkpoint.names()) {
    const std::string name = canonical_weight_name(key);
    if (tied && name == "lm_head.weight") continue;  // transformers ignores it too
    auto [it, inserted] = by_name.emplace(name, key);
    EVOQ_CHECK(inserted, checkpoint.dir(), ": tensors ", it->second, " and ", key, " are the same parameter");
  }
  std::set<std::string> used;
  for (auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    auto found = by_name.find(name);
    EVOQ_CHECK(found != by_name.end(), checkpoint.dir(), ": missing tensor ", name);
    const auto& view = checkpoint.get(found->second);
    auto& param = item.value();
    EVOQ_CHECK(std::vector<int64_t>(param.sizes().begin(), param.sizes().end()) == view.shape, checkpoint.dir(),
               ": tensor ", found->second, " has shape ", c10::IntArrayRef(view.shape), " but the config needs ",
               param.sizes());
    param.copy_(to_torch(view));
    release_mapped_pages(view);
    used.insert(name);
  }
  for (const auto& [name, key] : by_name)
    EVOQ_CHECK(used.count(name), checkpoint.dir(), ": unexpected tensor ", key, " (not part of a ",
               arch_name(model.config().arch), " model with this config)");
}

std::shared_ptr<QwenVL> load_model(const std::string& dir, torch::Dtype dtype, torch::Device device) {
  auto config = load_config(dir);
  auto checkpoint = io::Checkpoint::open(dir);
  auto model = std::make_shared<QwenVL>(config, torch::TensorOptions().dtype(dtype).device(device));
  load_weights(*model, checkpoint);
  model->eval();
  return model;
}

void save_model(QwenVL& model, const std::string& dir, std::optional<torch::Dtype> dtype, std::size_t max_shard_bytes) {
  torch::NoGradGuard no_grad;
  std::filesystem::create_directories(dir);
  const torch::Dtype out_dtype = dtype.value_or(model.options().dtype().toScalarType());
  std::vector<torch::Tensor> keep_alive;
  std::vector<io::TensorToWrite> tensors;
  for (auto& item : model.named_parameters(true)) {
    auto t = item.value().detach().to(torch::kCPU, out_dtype).contiguous();
    keep_alive.push_back(t);
    io::TensorToWrite w;
    w.name = item.key();
    w.dtype = io_dtype_of(out_dtype);
    w.shape.assign(t.sizes().begin(), t.sizes().end());
    w.data = t.data_ptr();
    w.nbytes = t.numel() * t.element_size();
    tensors.push_back(std::move(w));
  }
  io::write_checkpoint(dir, tensors, max_shard_bytes);
  nlohmann::json config = model.config().raw;
  config["dtype"] = hf_dtype_name(out_dtype);
  if (config.contains("torch_dtype")) config["torch_dtype"] = hf_dtype_name(out_dtype);
  io::write_file_atomic((std::filesystem::path(dir) / "config.json").string(), config.dump(2) + "\n");
}

torch::Dtype parse_torch_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  throw UsageError("unknown dtype '" + name + "' (expected fp32 or bf16)");
}

torch::Device parse_torch_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (starts_with(name, "cuda")) {
    if (!torch::cuda::is_available()) throw UsageError("--device " + name + ": CUDA is not available");
    return torch::Device(name);
  }
  throw UsageError("unknown device '" + name + "' (expected cpu or cuda)");
}

}  // namespace evoq::model
