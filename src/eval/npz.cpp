#include "evoq/eval/npz.h"

#include <cstdint>
#include <cstring>
#include <regex>

#include "evoq/core/error.h"

namespace evoq::eval {
namespace {

std::uint32_t u32(const std::string& b, std::size_t at) {
  EVOQ_CHECK(at + 4 <= b.size(), "truncated zip structure");
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}
std::uint16_t u16(const std::string& b, std::size_t at) {
  EVOQ_CHECK(at + 2 <= b.size(), "truncated zip structure");
  return static_cast<std::uint16_t>(static_cast<unsigned char>(b[at]) | static_cast<unsigned char>(b[at + 1]) << 8);
}

std::string slurp(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  EVOQ_CHECK(f, "cannot open ", path);
  std::string out;
  char buf[1 << 16];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

}  // namespace

NpyArray parse_npy(const std::string& b, const std::string& source) {
  EVOQ_CHECK(b.size() >= 10 && b.compare(0, 6, "\x93NUMPY") == 0, source, ": not a .npy file");
  const int major = static_cast<unsigned char>(b[6]);
  std::size_t header_len, start;
  if (major == 1) {
    header_len = u16(b, 8);
    start = 10;
  } else {
    header_len = u32(b, 8);
    start = 12;
  }
  EVOQ_CHECK(start + header_len <= b.size(), source, ": truncated .npy header");
  const std::string header = b.substr(start, header_len);
  std::smatch m;
  EVOQ_CHECK(std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'")) && m[1] == "<f8", source,
             ": only little-endian float64 ('<f8') arrays are supported");
  EVOQ_CHECK(std::regex_search(header, m, std::regex("'fortran_order':\\s*(True|False)")), source,
             ": no fortran_order in the .npy header");
  const bool fortran = m[1] == "True";
  EVOQ_CHECK(std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")), source, ": no shape");
  NpyArray a;
  std::size_t count = 1;
  const std::string dims = m[1];
  const std::regex number("\\d+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
    a.shape.push_back(std::stoul(it->str()));
    count *= a.shape.back();
  }
  const std::size_t data_at = start + header_len;
  EVOQ_CHECK(b.size() - data_at >= count * 8, source, ": data shorter than its shape");
  a.data.resize(count);
  std::memcpy(a.data.data(), b.data() + data_at, count * 8);  // little-endian host (x86-64, aarch64)
  if (fortran && a.shape.size() == 2) {  // column-major -> row-major
    const std::size_t rows = a.shape[0], cols = a.shape[1];
    std::vector<double> c(count);
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t j = 0; j < cols; ++j) c[i * cols + j] = a.data[j * rows + i];
    a.data.swap(c);
  } else {
    EVOQ_CHECK(!fortran || a.shape.size() <= 1, source, ": Fortran-order arrays of more than 2 dimensions");
  }
  return a;
}

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  const std::string b = slurp(path);
  // End of central directory record: the last "PK\5\6" signature.
  std::size_t eocd = std::string::npos;
  for (std::size_t i = b.size() >= 22 ? b.size() - 22 : 0;; --i) {
    if (u32(b, i) == 0x06054b50) {
      eocd = i;
      break;
    }
    if (i == 0) break;
  }
  EVOQ_CHECK(eocd != std::string::npos, path, ": not a zip (.npz) file");
  const std::size_t entries = u16(b, eocd + 10);
  std::size_t at = u32(b, eocd + 16);
  std::map<std::string, NpyArray> out;
  for (std::size_t e = 0; e < entries; ++e) {
    EVOQ_CHECK(u32(b, at) == 0x02014b50, path, ": bad zip central directory");
    const int method = u16(b, at + 10);
    const std::size_t size = u32(b, at + 20);
    const std::size_t name_len = u16(b, at + 28), extra_len = u16(b, at + 30), comment_len = u16(b, at + 32);
    const std::size_t local = u32(b, at + 42);
    std::string name = b.substr(at + 46, name_len);
    EVOQ_CHECK(method == 0, path, ": entry ", name, " is compressed; save it with np.savez (not savez_compressed)");
    EVOQ_CHECK(u32(b, local) == 0x04034b50, path, ": bad zip local header for ", name);
    const std::size_t data = local + 30 + u16(b, local + 26) + u16(b, local + 28);
    EVOQ_CHECK(data + size <= b.size(), path, ": truncated entry ", name);
    if (name.size() > 4 && name.substr(name.size() - 4) == ".npy") name.resize(name.size() - 4);
    out[name] = parse_npy(b.substr(data, size), path + ":" + name);
    at += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

}  // namespace evoq::eval
