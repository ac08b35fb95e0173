// libFuzzer target: parse_npy on arbitrary bytes must return a consistent array or throw evoq::Error.
#include <cstddef>
#include <cstdint>

#include "evoq/core/error.h"
#include "evoq/io/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    evoq::io::NpyArray a = evoq::io::parse_npy(data, size, "fuzz.npy");
    if (std::uint64_t(a.numel()) * evoq::io::dtype_size(a.dtype) != a.bytes.size()) __builtin_trap();
  } catch (const evoq::Error&) {
  }
  return 0;
}
