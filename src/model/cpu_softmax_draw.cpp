// The inverse-CDF draw from softmax(x) of every row on the CPU (include/evoq/model/cpu_kernels.h): the
// full-vocabulary draw of gen/sample_step.h in two passes over each row (its max, then its exps summed
// block by block), where torch's ops made a float32 copy of the bf16 logits and wrote and read the
// [K, V] weights several times (4 ms of a K = 32 decode step at a 152k vocabulary).
#include <ATen/Parallel.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu_simd.h"
#include "evoq/model/cpu_kernels.h"

namespace evoq::model {
namespace {

// Max of the row; NaN if the row holds one.
template <typename T>
float row_max_scalar(const T* row, int64_t n) {
  float top = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const float v = cpu::load_float(row, i);
    if (std::isnan(v)) return v;
    top = std::max(top, v);
  }
  return top;
}

// Sum of exp(x - top) over [begin, end): lane j of 16 takes elements begin + j, begin + j + 16, ...,
// then cpu::lanes_total (the AVX-512 path's order).
template <typename T>
float exp_sum_scalar(const T* row, int64_t begin, int64_t end, float top) {
  float lane[16] = {};
  for (int64_t i = begin; i < end; ++i) lane[(i - begin) % 16] += cpu::exp_scalar(cpu::load_float(row, i) - top);
  return cpu::lanes_total(lane);
}

#if defined(EVOQ_CPU_AVX512)
template <typename T>
EVOQ_AVX512_FN float row_max_avx512(const T* row, int64_t n) {
  const int64_t whole = n / 16 * 16;
  __m512 top = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __mmask16 nan = 0;
  for (int64_t i = 0; i < whole; i += 16) {
    const __m512 v = cpu::load_float16(row, i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    top = _mm512_max_ps(top, v);
  }
  if (nan) return std::numeric_limits<float>::quiet_NaN();
  const float head = _mm512_reduce_max_ps(top);
  const float tail = row_max_scalar(row + whole, n - whole);
  return std::isnan(tail) ? tail : std::max(head, tail);
}

template <typename T>
EVOQ_AVX512_FN float exp_sum_avx512(const T* row, int64_t begin, int64_t end, float top) {
  const int64_t whole = begin + (end - begin) / 16 * 16;
  const __m512 t = _mm512_set1_ps(top);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = begin; i < whole; i += 16)
    acc = _mm512_add_ps(acc, cpu::exp_avx512(_mm512_sub_ps(cpu::load_float16(row, i), t)));
  alignas(64) float lane[16];
  _mm512_store_ps(lane, acc);
  for (int64_t i = whole; i < end; ++i) lane[(i - begin) % 16] += cpu::exp_scalar(cpu::load_float(row, i) - top);
  return cpu::lanes_total(lane);
}
#endif

// One row: false if it has no positive mass (all -inf, a NaN or +inf).
template <typename T>
bool draw_row(const T* row, int64_t vocab, int64_t block, double u, bool simd, std::vector<double>& cumulative,
              int64_t& token, float& logprob) {
  const float top = EVOQ_SIMD_OR_SCALAR(simd, row_max_avx512(row, vocab), row_max_scalar(row, vocab));
  if (!std::isfinite(top)) return false;
  const int64_t blocks = (vocab + block - 1) / block;
  cumulative.resize(static_cast<size_t>(blocks));
  double running = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * block, end = std::min(vocab, begin + block);
    running += EVOQ_SIMD_OR_SCALAR(simd, exp_sum_avx512(row, begin, end, top), exp_sum_scalar(row, begin, end, top));
    cumulative[static_cast<size_t>(b)] = running;
  }
  const double total = running, target = u * total;
  // The first block whose cumulative sum passes the target (the last one if rounding leaves it beyond).
  int64_t chosen = blocks - 1;
  for (int64_t b = 0; b < blocks; ++b)
    if (cumulative[static_cast<size_t>(b)] > target) {
      chosen = b;
      break;
    }
  double sum = chosen > 0 ? cumulative[static_cast<size_t>(chosen - 1)] : 0.0;
  const int64_t end = std::min(vocab, (chosen + 1) * block);
  token = -1;
  for (int64_t i = chosen * block; i < end; ++i) {
    sum += cpu::exp_scalar(cpu::load_float(row, i) - top);
    if (sum > target) {
      token = i;
      break;
    }
  }
  // Rounding left the target beyond the block's refined sum: its last token of positive weight.
  for (int64_t i = end - 1; token < 0 && i >= 0; --i)
    if (cpu::exp_scalar(cpu::load_float(row, i) - top) > 0.0f) token = i;
  if (token < 0) return false;
  logprob = static_cast<float>(static_cast<double>(cpu::load_float(row, token) - top) - std::log(total));
  return true;
}

}  // namespace

std::optional<std::pair<torch::Tensor, torch::Tensor>> cpu_softmax_draw(const torch::Tensor& x,
                                                                        const std::vector<double>& uniforms,
                                                                        int64_t block) {
  if (!cpu_kernels_enabled() || !x.defined() || !x.device().is_cpu() || x.dim() != 2 || x.is_mkldnn())
    return std::nullopt;
  if (x.scalar_type() != torch::kFloat32 && x.scalar_type() != torch::kBFloat16) return std::nullopt;
  const int64_t rows = x.size(0), vocab = x.size(1);
  if (vocab == 0 || block < 1 || static_cast<int64_t>(uniforms.size()) != rows) return std::nullopt;
  auto xc = x.contiguous();
  auto tokens = torch::empty({rows}, torch::kInt64);
  auto logprobs = torch::empty({rows}, torch::kFloat32);
  int64_t* tp = tokens.data_ptr<int64_t>();
  float* lp = logprobs.data_ptr<float>();
  const bool simd = cpu::use_avx512();
  std::atomic<bool> ok{true};
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> cumulative;
    for (int64_t r = begin; r < end; ++r) {
      const double u = uniforms[static_cast<size_t>(r)];
      const bool row_ok =
          xc.scalar_type() == torch::kFloat32
              ? draw_row(xc.data_ptr<float>() + r * vocab, vocab, block, u, simd, cumulative, tp[r], lp[r])
              : draw_row(xc.data_ptr<at::BFloat16>() + r * vocab, vocab, block, u, simd, cumulative, tp[r], lp[r]);
      if (!row_ok) ok.store(false, std::memory_order_relaxed);
    }
  });
  if (!ok.load()) return std::nullopt;
  return std::make_pair(tokens, logprobs);
}

}  // namespace evoq::model
