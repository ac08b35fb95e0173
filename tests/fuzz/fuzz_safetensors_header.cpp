// libFuzzer target: SafetensorsFile::parse_header on arbitrary bytes (a whole "file"). Every input
// must either parse into views that lie inside the data section, or throw evoq::Error. Any other
// exception, a sanitizer report or a view outside the buffer is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "evoq/core/error.h"
#include "evoq/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Copy into an exact-size heap buffer so ASan flags any read past the end.
  auto* bytes = static_cast<std::uint8_t*>(std::malloc(size ? size : 1));
  if (size) std::memcpy(bytes, data, size);
  try {
    std::map<std::string, std::string> metadata;
    auto tensors = evoq::io::SafetensorsFile::parse_header(bytes, size, "fuzz.safetensors", &metadata);
    std::uint64_t header_len = 0;
    std::memcpy(&header_len, bytes, 8);
    const std::uint8_t* begin = bytes + 8 + header_len;
    const std::uint8_t* end = bytes + size;
    unsigned sum = 0;
    for (const auto& [name, view] : tensors) {
      if (view.data < begin || view.data > end || view.nbytes > std::size_t(end - view.data)) __builtin_trap();
      if (std::uint64_t(view.numel()) * evoq::io::dtype_size(view.dtype) != view.nbytes) __builtin_trap();
      for (std::size_t i = 0; i < view.nbytes; ++i) sum += view.data[i];  // ASan checks every byte
    }
    if (sum == 0xFFFFFFFFu) std::abort();  // keeps the loop from being optimised away
  } catch (const evoq::Error&) {
  }
  std::free(bytes);
  return 0;
}
