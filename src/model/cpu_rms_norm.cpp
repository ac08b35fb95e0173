// bf16 RMSNorm on the CPU in one pass per row (include/evoq/model/cpu_kernels.h): torch 2.15's
// at::rms_norm is a composite of ~10 kernels on the CPU, 28-29 us per [32, 896] call against 9 us
// for the fused layer_norm (docs/BENCHMARKS.md, issue 19 section 6).
#include <ATen/Parallel.h>

#include "cpu_simd.h"
#include "evoq/model/cpu_kernels.h"

namespace evoq::model {
namespace {

using cpu::bf16_to_float;
using cpu::float_to_bf16;

void row_scalar(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t d, float eps) {
  float lane[16] = {};
  const int64_t whole = d / 16 * 16;
  for (int64_t i = 0; i < whole; ++i) {
    const float v = bf16_to_float(x[i]);
    lane[i % 16] = std::fma(v, v, lane[i % 16]);
  }
  float total = cpu::lanes_total(lane);
  for (int64_t i = whole; i < d; ++i) total = std::fma(bf16_to_float(x[i]), bf16_to_float(x[i]), total);
  const float rstd = 1.0f / std::sqrt(total / static_cast<float>(d) + eps);
  for (int64_t i = 0; i < d; ++i) y[i] = float_to_bf16(bf16_to_float(x[i]) * rstd * bf16_to_float(w[i]));
}

#if defined(EVOQ_CPU_AVX512)
EVOQ_AVX512_FN void row_avx512(const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t d, float eps) {
  __m512 acc = _mm512_setzero_ps();
  const int64_t whole = d / 16 * 16;
  for (int64_t i = 0; i < whole; i += 16) {
    const __m512 v = cpu::bf16x16_to_float(x + i);
    acc = _mm512_fmadd_ps(v, v, acc);
  }
  alignas(64) float lane[16];
  _mm512_store_ps(lane, acc);
  float total = cpu::lanes_total(lane);
  for (int64_t i = whole; i < d; ++i) total = std::fma(bf16_to_float(x[i]), bf16_to_float(x[i]), total);
  const float rstd = 1.0f / std::sqrt(total / static_cast<float>(d) + eps);
  const __m512 r = _mm512_set1_ps(rstd);
  for (int64_t i = 0; i < whole; i += 16) {
    const __m512 v = _mm512_mul_ps(_mm512_mul_ps(cpu::bf16x16_to_float(x + i), r), cpu::bf16x16_to_float(w + i));
    cpu::float_to_bf16x16(v, y + i);
  }
  for (int64_t i = whole; i < d; ++i) y[i] = float_to_bf16(bf16_to_float(x[i]) * rstd * bf16_to_float(w[i]));
}
#endif

bool needs_grad(const torch::Tensor& t) { return at::GradMode::is_enabled() && t.requires_grad(); }

}  // namespace

std::optional<torch::Tensor> cpu_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto bf16 = torch::kBFloat16;
  if (!cpu_kernels_enabled()) return std::nullopt;
  if (!x.defined() || !weight.defined() || !x.device().is_cpu() || !weight.device().is_cpu()) return std::nullopt;
  if (x.scalar_type() != bf16 || weight.scalar_type() != bf16 || x.dim() < 1 || weight.dim() != 1) return std::nullopt;
  if (needs_grad(x) || needs_grad(weight) || x.size(-1) != weight.size(0) || x.is_mkldnn()) return std::nullopt;
  const int64_t d = weight.size(0);
  if (d == 0) return std::nullopt;
  auto xc = x.contiguous();
  auto wc = weight.contiguous();
  auto y = torch::empty_like(xc, at::MemoryFormat::Contiguous);
  const int64_t rows = xc.numel() / d;
  const auto* xp = reinterpret_cast<const uint16_t*>(xc.data_ptr<at::BFloat16>());
  const auto* wp = reinterpret_cast<const uint16_t*>(wc.data_ptr<at::BFloat16>());
  auto* yp = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
  const float e = static_cast<float>(eps);
  const bool simd = cpu::use_avx512();
  // Rows in blocks of ~32k elements per thread: a decode step's [32, 896] stays on one thread.
  const int64_t grain = std::max<int64_t>(1, 32768 / d);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      EVOQ_SIMD_OR_SCALAR(simd, row_avx512(xp + r * d, wp, yp + r * d, d, e),
                          row_scalar(xp + r * d, wp, yp + r * d, d, e));
  });
  return y;
}

}  // namespace evoq::model
