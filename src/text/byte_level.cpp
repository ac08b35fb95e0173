#include "evoq/text/byte_level.h"

#include "evoq/text/unicode.h"

namespace evoq::text {

namespace {

struct ByteMap {
  std::array<char32_t, 256> to_unicode{};
  std::array<int16_t, 324> to_byte{};  // every mapped code point is below 256 + 68

  ByteMap() {
    to_byte.fill(-1);
    char32_t next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? char32_t(b) : next_extra++;
      to_unicode[b] = cp;
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

}  // namespace

char32_t byte_to_unicode(unsigned char b) { return byte_map().to_unicode[b]; }

std::optional<unsigned char> unicode_to_byte(char32_t cp) {
  if (cp >= byte_map().to_byte.size() || byte_map().to_byte[cp] < 0) return std::nullopt;
  return static_cast<unsigned char>(byte_map().to_byte[cp]);
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, byte_to_unicode(static_cast<unsigned char>(c)));
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    char32_t cp;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if (b0 >= 0xC2 && b0 <= 0xDF && i + 1 < text.size()) {
      // Every mapped code point is below U+0800, so two-byte sequences are all we decode.
      cp = char32_t(b0 & 0x1F) << 6 | (static_cast<unsigned char>(text[i + 1]) & 0x3F);
      if ((static_cast<unsigned char>(text[i + 1]) & 0xC0) != 0x80) return std::nullopt;
      i += 2;
    } else {
      return std::nullopt;
    }
    auto b = unicode_to_byte(cp);
    if (!b) return std::nullopt;
    out += static_cast<char>(*b);
  }
  return out;
}

}  // namespace evoq::text
