#include "evoq/model/packed_linear.h"

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/intrusive_ptr.h>

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "evoq/core/log.h"

namespace evoq::model {

namespace {
std::atomic<bool> g_enabled{true};
std::atomic<int64_t> g_packs{0};

using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

struct Packed {
  WeakImpl weight;         // expired: the weight died, the entry is dropped
  int64_t version = 0;     // the weight's version counter when packed
  const void* data = nullptr;
  torch::Tensor packed;
};

std::mutex g_mutex;
std::unordered_map<const c10::TensorImpl*, Packed> g_cache;

torch::Tensor call(const char* name, const char* overload, std::vector<c10::IValue> args) {
  static std::mutex lookup;
  const c10::OperatorHandle op = [&] {
    std::lock_guard<std::mutex> lock(lookup);
    return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
  }();
  torch::jit::Stack stack(std::move(args));
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

// Under g_mutex: forgets the copies of weights that died since.
void drop_dead_weights() {
  for (auto e = g_cache.begin(); e != g_cache.end();) e = e->second.weight.expired() ? g_cache.erase(e) : std::next(e);
}

const torch::Tensor& packed_weight(const torch::Tensor& weight) {
  const auto* impl = weight.unsafeGetTensorImpl();
  const int64_t version = static_cast<int64_t>(impl->version_counter().current_version());
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_cache.find(impl);
  if (it != g_cache.end() && !it->second.weight.expired() && it->second.version == version &&
      it->second.data == weight.data_ptr())
    return it->second.packed;
  drop_dead_weights();  // new or changed: packing is rare (once per weight and version)
  Packed p{WeakImpl(weight.getIntrusivePtr()), version, weight.data_ptr(),
           call("mkldnn::_reorder_linear_weight", "", {weight.contiguous(), c10::IValue()})};
  ++g_packs;
  return g_cache.insert_or_assign(impl, std::move(p)).first->second.packed;
}

bool usable(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
            const torch::Tensor& residual) {
  const auto bf16 = torch::kBFloat16;
  if (!g_enabled.load(std::memory_order_relaxed) || at::GradMode::is_enabled()) return false;
  if (!x.defined() || !x.device().is_cpu() || x.scalar_type() != bf16 || x.dim() < 2) return false;
  if (at::autocast::is_autocast_enabled(torch::kCPU)) return false;
  if (weight.dim() != 2 || !weight.device().is_cpu() || weight.scalar_type() != bf16 || weight.is_mkldnn())
    return false;
  if (bias.defined() && (bias.scalar_type() != bf16 || !bias.device().is_cpu())) return false;
  if (residual.defined() && (residual.scalar_type() != bf16 || !residual.device().is_cpu())) return false;
  const int64_t in = x.size(-1);
  return in == weight.size(1) && in > 0 && x.numel() / in >= 2;
}
}  // namespace

void set_packed_weights(bool on) {
  g_enabled.store(on, std::memory_order_relaxed);
  if (!on) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_cache.clear();
  }
}

bool packed_weights_enabled() { return g_enabled.load(std::memory_order_relaxed); }

std::optional<torch::Tensor> packed_linear(const torch::Tensor& x, const torch::Tensor& weight,
                                           const torch::Tensor& bias, const torch::Tensor& residual) {
  if (!usable(x, weight, bias, residual)) return std::nullopt;
  const int64_t in = x.size(-1), out = weight.size(0), rows = x.numel() / in;
  auto sizes = x.sizes().vec();
  sizes.back() = out;
  if (residual.defined() && residual.sizes().vec() != sizes) return std::nullopt;
  try {
    const torch::Tensor& w = packed_weight(weight);
    auto x2 = x.reshape({rows, in}).contiguous();
    c10::IValue b = bias.defined() ? c10::IValue(bias.contiguous()) : c10::IValue();
    torch::Tensor y;
    if (residual.defined())
      y = call("mkldnn::_linear_pointwise", "binary",
               {x2, residual.reshape({rows, out}).contiguous(), w, b, c10::IValue(std::string("add"))});
    else
      y = call("mkldnn::_linear_pointwise", "",
               {x2, w, b, c10::IValue(std::string("none")), c10::IValue(c10::List<std::optional<at::Scalar>>()),
                c10::IValue()});
    return y.view(sizes);
  } catch (const std::exception& e) {
    log::debug("packed bf16 weights turned off (", e.what(), ")");
    set_packed_weights(false);
    return std::nullopt;
  }
}

bool prepack_weight(const torch::Tensor& weight) {
  if (!g_enabled.load(std::memory_order_relaxed) || !weight.defined() || weight.dim() != 2 ||
      !weight.device().is_cpu() || weight.scalar_type() != torch::kBFloat16 || weight.is_mkldnn())
    return false;
  try {
    packed_weight(weight);
    return true;
  } catch (const std::exception& e) {
    log::debug("packed bf16 weights turned off (", e.what(), ")");
    set_packed_weights(false);
    return false;
  }
}

void drop_packed_weight(const torch::Tensor& weight) {
  if (!weight.defined()) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_cache.erase(weight.unsafeGetTensorImpl());
}

int64_t packed_weight_count() {
  std::lock_guard<std::mutex> lock(g_mutex);
  drop_dead_weights();
  return static_cast<int64_t>(g_cache.size());
}

int64_t packed_weight_packs() { return g_packs.load(); }

}  // namespace evoq::model
