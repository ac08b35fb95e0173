#pragma once
// Regex pre-tokenisation of byte-level BPE tokenizers (the `Split` pre-tokenizer with "isolated"
// behaviour): text is cut into the pieces the pattern matches, plus any unmatched gaps, and BPE then
// runs on each piece separately. Matching uses PCRE2 (UTF + UCP, JIT when available), which unlike RE2
// supports the `\s+(?!\S)` look-ahead the Qwen2 pattern relies on.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace evoq::text {

// Qwen2's pattern (also Qwen2.5 / Qwen3): contractions, letters with one optional leading
// non-letter, single digits, punctuation runs, newlines, and whitespace where a run of spaces
// before a word leaves its last space to that word.
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Rewrites an Oniguruma pattern (what Hugging Face tokenizers compiles) for PCRE2: `\s` / `\S`
// become explicit classes of the Unicode White_Space characters, which is Oniguruma's definition,
// so the split does not depend on PCRE2's own notion of space. Throws evoq::Error on `\S` inside
// a character class (no PCRE2 equivalent without class subtraction).
std::string oniguruma_to_pcre2(std::string_view pattern);

class PreTokenizer {
 public:
  // pattern: Oniguruma syntax as stored in tokenizer.json; throws evoq::Error if it does not compile.
  explicit PreTokenizer(std::string_view pattern = kQwen2Pattern);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Appends to `pieces` the consecutive pieces of `text` (valid UTF-8); they cover it exactly.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;
  std::vector<std::string_view> split(std::string_view text) const;

  const std::string& pattern() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace evoq::text
