#pragma once
// GPT-2's byte-to-unicode map used by byte-level BPE vocabularies: every byte value is shown as one
// printable code point (printable Latin-1 bytes as themselves, the other 68 as U+0100 onwards), so
// vocab.json / merges.txt can store arbitrary byte strings as text.
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace evoq::text {

// The code point that stands for byte b.
char32_t byte_to_unicode(unsigned char b);

// The byte that code point cp stands for, if any.
std::optional<unsigned char> unicode_to_byte(char32_t cp);

// Raw bytes -> their byte-level text (UTF-8).
std::string bytes_to_byte_level(std::string_view bytes);

// Byte-level text (UTF-8) -> raw bytes; nullopt if it contains a code point outside the map
// or is not valid UTF-8.
std::optional<std::string> byte_level_to_bytes(std::string_view text);

}  // namespace evoq::text
