#include "evoq/model/activation_checkpoint.h"

#include <ATen/autocast_mode.h>

#include <atomic>

namespace evoq::model {

namespace {

std::atomic<bool> g_checkpointing{false};

// Autocast settings of one device type, captured at forward time and restored for the recompute
// (the backward may run with other settings, e.g. after the autocast scope closed).
struct AutocastSetting {
  at::DeviceType type;
  bool enabled;
  at::ScalarType dtype;
  static AutocastSetting of(at::DeviceType t) {
    return {t, at::autocast::is_autocast_enabled(t), at::autocast::get_autocast_dtype(t)};
  }
  void apply() const {
    at::autocast::set_autocast_enabled(type, enabled);
    at::autocast::set_autocast_dtype(type, dtype);
  }
};

// What the backward needs besides the saved input: the block, its parameters, the forward's
// autocast state. Lives in the autograd context as a capsule (no custom-class registration needed).
struct Block : torch::CustomClassHolder {
  BlockFn fn;
  std::vector<torch::Tensor> params;
  bool input_requires_grad = false;
  AutocastSetting cpu = AutocastSetting::of(at::kCPU), cuda = AutocastSetting::of(at::kCUDA);
};

class RecomputeAutocast {
 public:
  explicit RecomputeAutocast(const Block& b)
      : cpu_(AutocastSetting::of(at::kCPU)), cuda_(AutocastSetting::of(at::kCUDA)) {
    b.cpu.apply();
    b.cuda.apply();
    at::autocast::increment_nesting();
  }
  ~RecomputeAutocast() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    cpu_.apply();
    cuda_.apply();
  }
  RecomputeAutocast(const RecomputeAutocast&) = delete;
  RecomputeAutocast& operator=(const RecomputeAutocast&) = delete;

 private:
  AutocastSetting cpu_, cuda_;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  // Runs with grad mode off (autograd's custom-function rule): nothing of the block is recorded.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               c10::intrusive_ptr<Block> block, at::TensorList /*params: grads flow to them*/) {
    ctx->save_for_backward({x});
    auto y = block->fn(x);
    ctx->saved_data["block"] = c10::IValue::make_capsule(block);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto block = c10::static_intrusive_pointer_cast<Block>(ctx->saved_data["block"].toCapsule());
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(block->input_requires_grad);
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      RecomputeAutocast autocast(*block);
      y = block->fn(x);
    }
    std::vector<torch::Tensor> inputs;
    if (block->input_requires_grad) inputs.push_back(x);
    for (const auto& p : block->params) inputs.push_back(p);
    auto grads = torch::autograd::grad({y}, inputs, {grad_out[0]}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    // One entry per forward input: x, the block capsule (no gradient), then each parameter.
    torch::autograd::variable_list out;
    std::size_t g = 0;
    out.push_back(block->input_requires_grad ? grads[g++] : torch::Tensor());
    out.push_back(torch::Tensor());
    for (std::size_t p = 0; p < block->params.size(); ++p) out.push_back(grads[g++]);
    return out;
  }
};

}  // namespace

void set_activation_checkpointing(bool on) { g_checkpointing = on; }
bool activation_checkpointing() { return g_checkpointing; }
bool checkpoint_now() { return g_checkpointing && torch::GradMode::is_enabled(); }

torch::Tensor checkpoint_block(BlockFn fn, const torch::Tensor& x, const std::vector<torch::Tensor>& params) {
  auto block = c10::make_intrusive<Block>();
  block->input_requires_grad = x.requires_grad();
  for (const auto& p : params)
    if (p.requires_grad()) block->params.push_back(p);
  if (!block->input_requires_grad && block->params.empty()) return fn(x);  // nothing to differentiate
  block->fn = std::move(fn);
  const std::vector<torch::Tensor> trainable = block->params;
  return CheckpointFunction::apply(x, block, at::TensorList(trainable));
}

}  // namespace evoq::model
