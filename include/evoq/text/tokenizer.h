#pragma once
// Byte-level BPE tokenizer of the Qwen2 family, equivalent to Hugging Face's Qwen2 tokenizer:
//   added/special tokens are split out of the raw text first (leftmost, longest match), then each
//   remaining segment is NFC-normalised, cut by the pre-tokenisation regex, mapped to GPT-2 byte-level
//   symbols and merged by rank. No BOS/EOS is added. Decoding joins the tokens' bytes and repairs
//   invalid UTF-8 with U+FFFD.
// Loaded from a model directory: tokenizer.json when present, else vocab.json + merges.txt with the
// added tokens of tokenizer_config.json. Copies share the loaded tables; all methods are thread-safe.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace evoq::text {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;  // skipped by decode(..., skip_special = true)
};

class Tokenizer {
 public:
  // Throws evoq::Error naming the file when a tokenizer file is missing, malformed or inconsistent.
  static Tokenizer load(const std::string& dir);

  // Builds a tokenizer from in-memory tables: `vocab` maps byte-level token text to ids, `merges`
  // holds pairs of byte-level token texts in rank order, `pattern` is the pre-tokenisation regex.
  static Tokenizer from_tables(const std::vector<std::pair<std::string, int32_t>>& vocab,
                               const std::vector<std::pair<std::string, std::string>>& merges,
                               const std::vector<AddedToken>& added, std::string_view pattern);

  // Token ids of `text` (UTF-8; invalid bytes are read as U+FFFD). Added tokens written in the
  // text are recognised; nothing else is added.
  std::vector<int32_t> encode(std::string_view text) const;

  // Text of `ids`; ids that name no token are ignored (as transformers does).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return decode(std::span<const int32_t>(ids), skip_special);
  }

  // Id of a token given by its text: an added token's content or a vocabulary entry written as
  // plain UTF-8 (e.g. " Hello" or "<|im_end|>"). token_id throws evoq::Error if there is none.
  int32_t token_id(std::string_view token) const;
  std::optional<int32_t> find_token_id(std::string_view token) const;

  // One past the largest id of the vocabulary and added tokens (transformers' len(tokenizer)).
  int32_t vocab_size() const;
  bool is_special(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

  // From tokenizer_config.json (eos_token, pad_token); nullopt when not configured.
  std::optional<int32_t> eos_id() const;
  std::optional<int32_t> pad_id() const;

  // Where the tables came from ("tokenizer.json" or "vocab.json+merges.txt").
  const std::string& source() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace evoq::text
