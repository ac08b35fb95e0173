#pragma once
// UTF-8 helpers the tokenizer needs: validation, lossy repair and NFC normalisation (ICU).
#include <string>
#include <string_view>

namespace evoq::text {

// True when s is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Replaces every maximal invalid subsequence with U+FFFD, the same policy as Rust's
// String::from_utf8_lossy (which Hugging Face tokenizers uses when decoding), so decoding
// byte-level tokens that split a character gives the same text.
std::string utf8_lossy(std::string_view s);

// Unicode Normalization Form C of well-formed UTF-8 text.
std::string nfc(std::string_view s);

// Appends the UTF-8 encoding of code point cp (must be a valid scalar value).
void append_utf8(std::string& out, char32_t cp);

}  // namespace evoq::text
