#include "evoq/io/npy.h"

#include <bit>
#include <cctype>
#include <cstring>
#include <string_view>

#include "evoq/core/error.h"
#include "evoq/io/atomic_file.h"

namespace evoq::io {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicSize = 6;
constexpr std::size_t kAlign = 64;  // numpy pads the header so the data starts 64-byte aligned

DType dtype_from_descr(const std::string& descr, const std::string& path) {
  if (descr == "<f4") return DType::F32;
  if (descr == "<f8") return DType::F64;
  if (descr == "<i8") return DType::I64;
  if (descr == "<i4") return DType::I32;
  if (descr == "|u1" || descr == "<u1" || descr == ">u1") return DType::U8;
  if (!descr.empty() && descr[0] == '>') fail(path, ": big-endian .npy arrays are not supported (descr '", descr, "')");
  fail(path, ": unsupported .npy dtype '", descr, "' (supported: <f4 <f8 <i8 <i4 |u1)");
}

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& path) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(path, ": negative dimension ", d, " in shape");
    if (__builtin_mul_overflow(n, d, &n)) fail(path, ": shape has too many elements");
  }
  return n;
}

// Parses the Python-literal dict numpy writes: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path) : s_(text), path_(path) {}

  void parse(std::string& descr, bool& fortran_order, std::vector<int64_t>& shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') { ++pos_; break; }
      std::string key = quoted();
      expect(':');
      if (key == "descr") { descr = quoted(); have_descr = true; }
      else if (key == "fortran_order") { fortran_order = boolean(); have_order = true; }
      else if (key == "shape") { shape = tuple(); have_shape = true; }
      else bad("unexpected key '" + key + "'");
      skip_space();
      if (peek() == ',') { ++pos_; continue; }
      expect('}');
      break;
    }
    skip_space();
    if (pos_ != s_.size()) bad("trailing characters after the header dict");
    if (!have_descr || !have_order || !have_shape) bad("header lacks descr, fortran_order or shape");
  }

 private:
  [[noreturn]] void bad(const std::string& why) { fail(path_, ": malformed .npy header: ", why); }
  void skip_space() { while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_; }
  char peek() { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    skip_space();
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string quoted() {
    skip_space();
    char q = peek();
    if (q != '\'' && q != '"') bad("expected a quoted string");
    auto end = s_.find(q, pos_ + 1);
    if (end == std::string_view::npos) bad("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_space();
    if (s_.substr(pos_, 4) == "True") { pos_ += 4; return true; }
    if (s_.substr(pos_, 5) == "False") { pos_ += 5; return false; }
    bad("fortran_order is neither True nor False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> out;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')') { ++pos_; return out; }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) bad("shape entries must be non-negative integers");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (__builtin_mul_overflow(v, int64_t(10), &v) || __builtin_add_overflow(v, int64_t(peek() - '0'), &v))
          bad("shape entry too large");
        ++pos_;
      }
      // Python 2 era files may carry an 'L' suffix.
      if (peek() == 'L') ++pos_;
      out.push_back(v);
      skip_space();
      if (peek() == ',') { ++pos_; continue; }
      expect(')');
      return out;
    }
  }

  std::string_view s_;
  const std::string& path_;
  std::size_t pos_ = 0;
};

std::string shape_literal(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// The full preamble (magic, version, length, padded dict) for version 1.0, or 2.0 if it must be.
std::string make_preamble(DType dtype, const std::vector<int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + npy_descr(dtype) + "', 'fortran_order': False, 'shape': " +
                     shape_literal(shape) + ", }";
  for (int major : {1, 2}) {
    std::size_t len_bytes = major == 1 ? 2 : 4;
    std::size_t fixed = kMagicSize + 2 + len_bytes;
    std::size_t total = fixed + dict.size() + 1;  // + '\n'
    std::size_t padded = (total + kAlign - 1) / kAlign * kAlign;
    std::size_t header_len = padded - fixed;
    if (major == 1 && header_len > 0xFFFF) continue;
    std::string out(kMagic, kMagicSize);
    out += static_cast<char>(major);
    out += '\0';
    for (std::size_t i = 0; i < len_bytes; ++i) out += static_cast<char>((header_len >> (8 * i)) & 0xFF);
    out += dict;
    out.append(padded - total, ' ');
    out += '\n';
    return out;
  }
  fail(".npy header too long");
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void check_npy_dtype(DType actual, DType requested) {
  EVOQ_CHECK(actual == requested, "NpyArray holds ", dtype_name(actual), ", requested ", dtype_name(requested));
}

const char* npy_descr(DType dtype) {
  switch (dtype) {
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
    case DType::U8: return "|u1";
    default: fail("dtype ", dtype_name(dtype), " cannot be written to .npy (supported: F32 F64 I64 I32 U8)");
  }
}

void write_npy(const std::string& path, DType dtype, const void* data, const std::vector<int64_t>& shape) {
  static_assert(std::endian::native == std::endian::little, "evoq writes little-endian data as-is");
  const std::string preamble = make_preamble(dtype, shape);
  const std::size_t nbytes = static_cast<std::size_t>(checked_numel(shape, path)) * dtype_size(dtype);
  replace_file_atomic(path, [&](const std::string& tmp) {
    BinaryFileWriter out(tmp, path);
    out.write(preamble);
    if (nbytes) out.write(data, nbytes);
    out.close();
  });
}

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_npy(path, DType::F32, data, shape);
}
void write_npy(const std::string& path, const double* data, const std::vector<int64_t>& shape) {
  write_npy(path, DType::F64, data, shape);
}
void write_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape) {
  write_npy(path, DType::I64, data, shape);
}
void write_npy(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
  write_npy(path, DType::I32, data, shape);
}
void write_npy(const std::string& path, const std::uint8_t* data, const std::vector<int64_t>& shape) {
  write_npy(path, DType::U8, data, shape);
}

NpyArray parse_npy(const std::uint8_t* bytes, std::size_t size, const std::string& path) {
  if (size < kMagicSize + 4 || std::memcmp(bytes, kMagic, kMagicSize) != 0) fail(path, ": not a .npy file (bad magic)");
  const int major = bytes[6];
  std::size_t len_bytes = 0;
  if (major == 1) len_bytes = 2;
  else if (major == 2 || major == 3) len_bytes = 4;
  else fail(path, ": unsupported .npy format version ", major, ".", int(bytes[7]));
  const std::size_t fixed = kMagicSize + 2 + len_bytes;
  if (size < fixed) fail(path, ": truncated .npy header");
  std::size_t header_len = 0;
  for (std::size_t i = 0; i < len_bytes; ++i) header_len |= std::size_t(bytes[8 + i]) << (8 * i);
  if (header_len > size - fixed) fail(path, ": .npy header length ", header_len, " runs past the end of the file");

  std::string descr;
  bool fortran_order = false;
  NpyArray array;
  HeaderParser(std::string_view(reinterpret_cast<const char*>(bytes + fixed), header_len), path)
      .parse(descr, fortran_order, array.shape);
  if (fortran_order) fail(path, ": Fortran-order .npy arrays are not supported");
  array.dtype = dtype_from_descr(descr, path);

  const std::size_t data_offset = fixed + header_len;
  const int64_t numel = checked_numel(array.shape, path);
  std::size_t nbytes = 0;
  if (__builtin_mul_overflow(static_cast<std::size_t>(numel), dtype_size(array.dtype), &nbytes))
    fail(path, ": shape has too many elements");
  const std::size_t available = size - data_offset;
  if (available != nbytes)
    fail(path, ": .npy data holds ", available, " bytes but shape ", shape_literal(array.shape), " of ", descr,
         " needs ", nbytes, available < nbytes ? " (truncated file)" : " (trailing bytes)");
  array.bytes.assign(bytes + data_offset, bytes + size);
  return array;
}

NpyArray read_npy(const std::string& path) {
  const std::string content = read_file(path);
  return parse_npy(reinterpret_cast<const std::uint8_t*>(content.data()), content.size(), path);
}

}  // namespace evoq::io
