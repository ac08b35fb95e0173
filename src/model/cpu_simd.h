#pragma once
// Private to src/model/cpu_*.cpp: the bf16 <-> float32 conversions and the float32 exp shared by the
// hand-written CPU kernels (include/evoq/model/cpu_kernels.h), each as a scalar function and, on x86-64,
// as an AVX-512 function on 16 lanes that gives the same bits (same operations, explicit FMAs).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__)
// GCC 12 warns inside its own AVX-512 headers (their _mm512_undefined_* operands) once inlined here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define EVOQ_CPU_AVX512 1
#define EVOQ_AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#endif

// avx512_call where simd (cpu::use_avx512()) holds and the AVX-512 functions exist, else scalar_call.
#if defined(EVOQ_CPU_AVX512)
#define EVOQ_SIMD_OR_SCALAR(simd, avx512_call, scalar_call) ((simd) ? (avx512_call) : (scalar_call))
#else
#define EVOQ_SIMD_OR_SCALAR(simd, avx512_call, scalar_call) ((void)(simd), (scalar_call))
#endif

namespace evoq::model::cpu {

// Whether the AVX-512 paths run: the CPU has AVX-512 F/BW/VL/DQ and set_cpu_kernels_simd(false) was not called.
bool use_avx512();

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, NaN -> 0x7FC0: the rounding of c10::BFloat16, so results equal torch's casts.
inline uint16_t float_to_bf16(float f) {
  if (std::isnan(f)) return 0x7FC0;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// The 16 lane sums of a vector accumulation added in one fixed tree (the AVX-512 and scalar paths both end
// with it, so their totals have the same bits).
inline float lanes_total(const float* lane) {
  float half[8], quarter[4];
  for (int i = 0; i < 8; ++i) half[i] = lane[i] + lane[i + 8];
  for (int i = 0; i < 4; ++i) quarter[i] = half[i] + half[i + 4];
  return (quarter[0] + quarter[2]) + (quarter[1] + quarter[3]);
}

// Element i of a float32 row, or of a bf16 row (T = at::BFloat16 or any 16-bit type), as float32.
template <typename T>
float load_float(const T* row, int64_t i) {
  if constexpr (std::is_same_v<T, float>)
    return row[i];
  else
    return bf16_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
}

// exp(x) = 2^n p(r), n = round(x log2 e), r = x - n ln 2 (ln 2 in two parts, Cody-Waite), p the Taylor
// polynomial of degree 7 (truncation < 6e-9 relative for |r| <= ln2 / 2: within about one float ulp).
// x is clamped to [-150, 89], so the result is 0 below float's range and inf above it; NaN gives 0 (as
// AVX-512's max does), the callers' other operands carry a NaN on.
namespace exp_constants {
inline constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
inline constexpr float kLow = -150.0f, kHigh = 89.0f;
inline constexpr float kC[8] = {1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
}  // namespace exp_constants

inline float exp_scalar(float x) {
  using namespace exp_constants;
  x = !(x >= kLow) ? kLow : (x > kHigh ? kHigh : x);
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kC[7];
  for (int i = 6; i >= 0; --i) p = std::fma(p, r, kC[i]);
  return std::ldexp(p, static_cast<int>(n));
}

#if defined(EVOQ_CPU_AVX512)
EVOQ_AVX512_FN inline __m512 bf16x16_to_float(const uint16_t* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

// Elements i..i+15 of a float32 or bf16 row as float32 (load_float for 16 lanes).
template <typename T>
EVOQ_AVX512_FN __m512 load_float16(const T* row, int64_t i) {
  if constexpr (std::is_same_v<T, float>)
    return _mm512_loadu_ps(row + i);
  else
    return bf16x16_to_float(reinterpret_cast<const uint16_t*>(row) + i);
}

EVOQ_AVX512_FN inline void float_to_bf16x16(__m512 v, uint16_t* out) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  rounded = _mm512_mask_mov_epi32(rounded, nan, _mm512_set1_epi32(0x7FC0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi32_epi16(rounded));
}

EVOQ_AVX512_FN inline __m512 exp_avx512(__m512 x) {
  using namespace exp_constants;
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kLow)), _mm512_set1_ps(kHigh));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kC[7]);
  for (int i = 6; i >= 0; --i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC[i]));
  return _mm512_scalef_ps(p, n);
}
#endif

}  // namespace evoq::model::cpu
