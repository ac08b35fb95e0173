// evoq_bench_kernels: evoq's CPU kernels (model/cpu_kernels.h) against the torch ops they replace, on the
// shapes of the small config's K = 32 decode step (docs/BENCHMARKS.md, issue 19 section 7). Both sides run
// in one process, alternating, with the thread count given; prints one line per kernel with ms per call.
//
// usage: evoq_bench_kernels [--threads 2] [--rows 32] [--vocab 151936]
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "evoq/gen/sample_step.h"
#include "evoq/model/cpu_kernels.h"

using namespace evoq;

namespace {
template <class F>
double ms_per_call(F f, int calls) {
  for (int i = 0; i < 3; ++i) f();
  const auto t = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count() / calls;
}

void report(const char* what, double kernel, double torch_ops) {
  std::printf("%-44s evoq %8.4f ms   torch %8.4f ms   %5.2fx\n", what, kernel, torch_ops, torch_ops / kernel);
}

int64_t flag(int argc, char** argv, const char* name, int64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoll(argv[i + 1]);
  return fallback;
}
}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "-h") == 0 || std::strcmp(argv[i], "--help") == 0) {
      std::puts("usage: evoq_bench_kernels [--threads 2] [--rows 32] [--vocab 151936]");
      return 0;
    }
  mallopt(M_MMAP_THRESHOLD, 64 << 20);  // as the evoq binary (src/apps/main.cpp): no page faults per call
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  const int64_t threads = flag(argc, argv, "--threads", 2), rows = flag(argc, argv, "--rows", 32),
                vocab = flag(argc, argv, "--vocab", 151936);
  torch::set_num_threads(static_cast<int>(threads));
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  std::printf("threads %lld, rows %lld, vocab %lld\n", (long long)threads, (long long)rows, (long long)vocab);
  auto run = [](auto kernel, auto torch_ops, int calls) {
    const double k = ms_per_call(kernel, calls);
    model::set_cpu_kernels(false);
    const double t = ms_per_call(torch_ops, calls);
    model::set_cpu_kernels(true);
    return std::make_pair(k, t);
  };

  auto x = torch::randn({rows, 896}).to(torch::kBFloat16), w = torch::rand({896}).to(torch::kBFloat16);
  auto [rk, rt] = run([&] { model::cpu_rms_norm(x, w, 1e-6); }, [&] { at::rms_norm(x, {896}, w, 1e-6); }, 2000);
  report("RMSNorm [rows, 896]", rk, rt);

  // The decode attention's probabilities: kv heads 2 x rows sequences x 7 queries, 630 prompt + 40 own keys.
  auto prompt = torch::randn({2 * rows, 7, 630}), own = torch::randn({2 * rows, 7, 40});
  auto [sk, st] = run([&] { model::cpu_softmax_bf16(prompt, own); },
                      [&] {
                        torch::cat({prompt, own}, -1).softmax(-1).to(torch::kBFloat16);
                      },
                      1000);
  report("attention cat+softmax+cast [2 rows x 7, 670]", sk, st);

  auto logits = (torch::randn({rows, vocab}) * 3).to(torch::kBFloat16);
  auto [tk, tt] =
      run([&] { model::cpu_top_values(logits, 51); }, [&] { logits.to(torch::kFloat32).topk(51, -1, true, true); }, 50);
  report("top 51 of [rows, vocab] bf16 (+ float copy)", tk, tt);

  auto u = torch::full({rows}, 0.37, torch::kFloat64);
  auto [dk, dt] = run([&] { gen::draw_full_vocabulary(logits, u); },
                      [&] { gen::draw_full_vocabulary(logits.to(torch::kFloat32), u); }, 50);
  report("full-vocabulary draw [rows, vocab] bf16", dk, dt);
  return 0;
}
