#pragma once
// NumPy .npy files (the format np.save writes): little-endian, C-order arrays of float32, float64,
// int64, int32 and uint8. Reading accepts format versions 1.0, 2.0 and 3.0; writing produces 1.0
// (2.0 only when a header would not fit 1.0's 16-bit length). Used by the inspection commands
// (`evoq preprocess`, `evoq forward`) so tests can compare our arrays with numpy directly.
#include <cstdint>
#include <string>
#include <vector>

#include "evoq/io/dtype.h"

namespace evoq::io {

void check_npy_dtype(DType actual, DType requested);  // throws evoq::Error when they differ

struct NpyArray {
  DType dtype = DType::F32;            // one of F32, F64, I64, I32, U8
  std::vector<int64_t> shape;          // empty for a 0-d array
  std::vector<std::uint8_t> bytes;     // numel() * dtype_size(dtype), little-endian, C order
  int64_t numel() const;
  // Typed view of the data; throws evoq::Error when T does not match dtype.
  template <typename T>
  const T* data() const;
};

// Writes a C-order array. data holds product(shape) elements. The file is replaced atomically.
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const double* data, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);
void write_npy(const std::string& path, const std::uint8_t* data, const std::vector<int64_t>& shape);
// Untyped form: dtype must be one of the five supported types.
void write_npy(const std::string& path, DType dtype, const void* data, const std::vector<int64_t>& shape);

// Reads a .npy file; throws evoq::Error naming the file for anything malformed or unsupported
// (big-endian, Fortran order, object arrays, truncated data).
NpyArray read_npy(const std::string& path);
// Same, from bytes in memory (path only names the source in errors).
NpyArray parse_npy(const std::uint8_t* bytes, std::size_t size, const std::string& path_for_errors);

// The numpy descr string ("<f4", "|u1", ...) of a supported dtype.
const char* npy_descr(DType dtype);

template <typename T>
const T* NpyArray::data() const {
  check_npy_dtype(dtype, dtype_of<T>());
  return reinterpret_cast<const T*>(bytes.data());
}

}  // namespace evoq::io
