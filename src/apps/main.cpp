// The `evoq` binary: every subcommand registers itself from its own file in this directory.
#include <malloc.h>

#include <cstdlib>
#include <string>

#include "evoq/cli/cli.h"
#include "evoq/model/cpu_kernels.h"
#include "evoq/model/layers.h"
#include "evoq/model/packed_linear.h"

namespace {
// Tensors of a decode step (logits [K, V], MLP activations) are freed and allocated again every step.
// With glibc's defaults the large ones are mmap'ed and unmapped, or trimmed off the heap, so every step
// faults their pages in again and the kernel zeroes them (~20 % of a bf16 K=32 generate call,
// docs/BENCHMARKS.md). Blocks up to 64 MiB stay in the heap, and up to 256 MiB of free heap is kept.
// EVOQ_MALLOC_DEFAULTS=1 keeps glibc's behaviour (benchmark A/B).
void keep_step_buffers_mapped() {
  const char* keep_defaults = std::getenv("EVOQ_MALLOC_DEFAULTS");
  if (keep_defaults && *keep_defaults && *keep_defaults != '0') return;
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

// EVOQ_SKINNY_ROWS=N: the row limit of the weight-left linear product (model/layers.h), a benchmark knob.
void apply_benchmark_knobs() {
  const char* rows = std::getenv("EVOQ_SKINNY_ROWS");
  if (rows && *rows) evoq::model::set_skinny_rows(std::strtoll(rows, nullptr, 10));
  // EVOQ_PACKED_WEIGHTS=0: bf16 CPU inference without packed weights (model/packed_linear.h), for A/B runs.
  const char* packed = std::getenv("EVOQ_PACKED_WEIGHTS");
  if (packed && std::string(packed) == "0") evoq::model::set_packed_weights(false);
  // EVOQ_CPU_KERNELS=0: torch's ops where evoq's own CPU kernels would run (model/cpu_kernels.h), for A/B runs.
  const char* kernels = std::getenv("EVOQ_CPU_KERNELS");
  if (kernels && std::string(kernels) == "0") evoq::model::set_cpu_kernels(false);
}
}  // namespace

int main(int argc, char** argv) {
  keep_step_buffers_mapped();
  apply_benchmark_knobs();
  return evoq::cli::main(argc, argv);
}
