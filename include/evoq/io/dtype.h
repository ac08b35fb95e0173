#pragma once
// Element types shared by the file formats of the io layer (safetensors, .npy).
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace evoq::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);         // "F32", "BF16", ... as in the safetensors header
DType parse_dtype(const std::string& name);  // throws evoq::Error for unknown names

// The DType of a C++ element type (float -> F32, ...).
template <typename T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DType::I64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DType::I32;
  else if constexpr (std::is_same_v<T, std::int16_t>) return DType::I16;
  else if constexpr (std::is_same_v<T, std::int8_t>) return DType::I8;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return DType::U8;
  else if constexpr (std::is_same_v<T, bool>) return DType::BOOL;
  else static_assert(!sizeof(T), "no DType for this element type");
}

}  // namespace evoq::io
