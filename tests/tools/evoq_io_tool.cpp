// Torch-free driver for the Python oracle tests of the io layer (tests/python/test_npy.py,
// test_safetensors_io.py): each subcommand exercises one reader/writer so numpy / safetensors can
// check the result independently.
#include <cmath>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/io/checkpoint_summary.h"
#include "evoq/io/npy.h"
#include "evoq/io/safetensors.h"

using namespace evoq::io;

namespace {

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  if (text.empty() || text == "scalar") return shape;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) shape.push_back(std::stoll(item));
  return shape;
}

// Element i of the test pattern; test_npy.py computes the same values with numpy.
template <typename T>
std::vector<T> pattern(int64_t n) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_floating_point_v<T>) v[i] = static_cast<T>(i) * T(0.375) - T(5);
    else if constexpr (std::is_same_v<T, std::uint8_t>) v[i] = static_cast<std::uint8_t>((i * 7) % 256);
    else v[i] = static_cast<T>(i * 7 - 11);
  }
  return v;
}

template <typename T>
void write_pattern(const std::string& out, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  auto v = pattern<T>(n);
  write_npy(out, v.data(), shape);
}

int npy_write(const std::string& dtype, const std::string& shape_text, const std::string& out) {
  auto shape = parse_shape(shape_text);
  DType d = parse_dtype(dtype);
  switch (d) {
    case DType::F32: write_pattern<float>(out, shape); break;
    case DType::F64: write_pattern<double>(out, shape); break;
    case DType::I64: write_pattern<int64_t>(out, shape); break;
    case DType::I32: write_pattern<int32_t>(out, shape); break;
    case DType::U8: write_pattern<std::uint8_t>(out, shape); break;
    default: evoq::fail("npy-write: unsupported dtype ", dtype);
  }
  return 0;
}

int npy_info(const std::string& in) {
  NpyArray a = read_npy(in);
  std::cout << dtype_name(a.dtype);
  for (std::size_t i = 0; i < a.shape.size(); ++i) std::cout << (i ? "," : " ") << a.shape[i];
  std::cout << "\n";
  return 0;
}

int npy_copy(const std::string& in, const std::string& out) {
  NpyArray a = read_npy(in);
  write_npy(out, a.dtype, a.bytes.data(), a.shape);
  return 0;
}

int inspect(const std::string& dir) {
  print_checkpoint_summary(Checkpoint::open(dir), std::cout);
  return 0;
}

// Reads every tensor of IN and writes them with our writer (names in sorted order).
int copy_checkpoint(const std::string& in, const std::string& out, const std::string& max_shard_bytes) {
  Checkpoint ckpt = Checkpoint::open(in);
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : ckpt.names()) {
    const TensorView& t = ckpt.get(name);
    tensors.push_back({name, t.dtype, t.shape, t.data, t.nbytes});
  }
  write_checkpoint(out, tensors, std::stoull(max_shard_bytes));
  return 0;
}

int usage() {
  std::cerr << "usage: evoq_io_tool npy-write DTYPE SHAPE OUT | npy-info IN | npy-copy IN OUT |\n"
               "       inspect DIR | copy-checkpoint IN OUT MAX_SHARD_BYTES\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  try {
    if (a.size() == 4 && a[0] == "npy-write") return npy_write(a[1], a[2], a[3]);
    if (a.size() == 2 && a[0] == "npy-info") return npy_info(a[1]);
    if (a.size() == 3 && a[0] == "npy-copy") return npy_copy(a[1], a[2]);
    if (a.size() == 2 && a[0] == "inspect") return inspect(a[1]);
    if (a.size() == 4 && a[0] == "copy-checkpoint") return copy_checkpoint(a[1], a[2], a[3]);
    return usage();
  } catch (const evoq::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
