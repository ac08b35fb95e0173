#pragma once
// SHA-256 (FIPS 180-4) of a byte range, as lowercase hex: used to fingerprint checkpoint tensors so
// users and tests can compare them with `sha256sum` / hashlib without dumping the data.
#include <cstddef>
#include <cstdint>
#include <string>

namespace evoq::io {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  std::string hex_digest();  // finishes the hash; the object is spent afterwards

 private:
  void block(const std::uint8_t* p);
  std::uint32_t h_[8];
  std::uint8_t buf_[64];
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, std::size_t size);

}  // namespace evoq::io
