// The decode attention's softmax over a row's prompt keys and own keys (model/kv_cache.cpp), rounded to
// bf16 for the product with V, in one pass per row: torch needs a cat of the two score blocks, the softmax
// and a cast, three [rows, keys] passes with a thread barrier each (issue 19, docs/BENCHMARKS.md).
#include <ATen/Parallel.h>

#include <limits>

#include "cpu_simd.h"
#include "evoq/model/cpu_kernels.h"

namespace evoq::model {
namespace {

// out = bf16(exp(x - max) * (1 / sum)) over the row made of a then b, as torch's softmax computes it
// (a float32 sum of the exps, then one multiplication by its reciprocal), then its cast.
void row_scalar(const float* a, int64_t na, const float* b, int64_t nb, uint16_t* out, float* work) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < na; ++i) top = std::max(top, a[i]);
  for (int64_t i = 0; i < nb; ++i) top = std::max(top, b[i]);
  float lane[16] = {};
  const int64_t n = na + nb;
  for (int64_t i = 0; i < n; ++i) {
    work[i] = cpu::exp_scalar((i < na ? a[i] : b[i - na]) - top);
    lane[i % 16] += work[i];
  }
  const float scale = 1.0f / cpu::lanes_total(lane);
  for (int64_t i = 0; i < n; ++i) out[i] = cpu::float_to_bf16(work[i] * scale);
}

#if defined(EVOQ_CPU_AVX512)
// The same sums as row_scalar: lane j of the accumulator takes elements j, j + 16, ... of the
// concatenated row, then cpu::lanes_total.
EVOQ_AVX512_FN void row_avx512(const float* a, int64_t na, const float* b, int64_t nb, uint16_t* out, float* work) {
  const int64_t n = na + nb;
  // The concatenated row first (so 16-element vectors run across the boundary between a and b).
  std::copy(a, a + na, work);
  std::copy(b, b + nb, work + na);
  const int64_t whole = n / 16 * 16;
  __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < whole; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(work + i));
  float top = _mm512_reduce_max_ps(vmax);
  for (int64_t i = whole; i < n; ++i) top = std::max(top, work[i]);
  const __m512 t = _mm512_set1_ps(top);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < whole; i += 16) {
    const __m512 e = cpu::exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(work + i), t));
    _mm512_storeu_ps(work + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  alignas(64) float lane[16];
  _mm512_store_ps(lane, acc);
  for (int64_t i = whole; i < n; ++i) {
    work[i] = cpu::exp_scalar(work[i] - top);
    lane[i % 16] += work[i];
  }
  const float scale = 1.0f / cpu::lanes_total(lane);
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < whole; i += 16) cpu::float_to_bf16x16(_mm512_mul_ps(_mm512_loadu_ps(work + i), s), out + i);
  for (int64_t i = whole; i < n; ++i) out[i] = cpu::float_to_bf16(work[i] * scale);
}
#endif

}  // namespace

std::optional<torch::Tensor> cpu_softmax_bf16(const torch::Tensor& a, const torch::Tensor& b) {
  if (!cpu_kernels_enabled() || !a.defined() || !b.defined()) return std::nullopt;
  if (!a.device().is_cpu() || !b.device().is_cpu() || a.scalar_type() != torch::kFloat32 ||
      b.scalar_type() != torch::kFloat32 || a.dim() < 1 || a.dim() != b.dim())
    return std::nullopt;
  if (at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad())) return std::nullopt;
  const int64_t na = a.size(-1), nb = b.size(-1), n = na + nb;
  if (n == 0) return std::nullopt;
  int64_t rows = 1;
  for (int64_t i = 0; i + 1 < a.dim(); ++i) {
    if (a.size(i) != b.size(i)) return std::nullopt;
    rows *= a.size(i);
  }
  auto ac = a.contiguous(), bc = b.contiguous();
  auto sizes = a.sizes().vec();
  sizes.back() = n;
  auto out = torch::empty(sizes, a.options().dtype(torch::kBFloat16));
  const float* ap = ac.data_ptr<float>();
  const float* bp = bc.data_ptr<float>();
  auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const bool simd = cpu::use_avx512();
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / n), [&](int64_t begin, int64_t end) {
    std::vector<float> work(static_cast<size_t>(n));
    for (int64_t r = begin; r < end; ++r)
      EVOQ_SIMD_OR_SCALAR(simd, row_avx512(ap + r * na, na, bp + r * nb, nb, op + r * n, work.data()),
                          row_scalar(ap + r * na, na, bp + r * nb, nb, op + r * n, work.data()));
  });
  return out;
}

}  // namespace evoq::model
