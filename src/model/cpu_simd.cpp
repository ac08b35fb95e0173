#include "cpu_simd.h"

#include <atomic>

#include "evoq/model/cpu_kernels.h"

namespace evoq::model {
namespace {
std::atomic<bool> g_on{true}, g_simd{true};

bool cpu_has_avx512() {
#if defined(EVOQ_CPU_AVX512)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
#else
  return false;
#endif
}
}  // namespace

void set_cpu_kernels(bool on) { g_on.store(on, std::memory_order_relaxed); }
bool cpu_kernels_enabled() { return g_on.load(std::memory_order_relaxed); }
void set_cpu_kernels_simd(bool on) { g_simd.store(on, std::memory_order_relaxed); }

bool cpu::use_avx512() { return g_simd.load(std::memory_order_relaxed) && cpu_has_avx512(); }

}  // namespace evoq::model
