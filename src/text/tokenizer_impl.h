#pragma once
// Private state of evoq::text::Tokenizer, shared by its loading and encoding translation units.
#include <array>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "evoq/text/bpe.h"
#include "evoq/text/pretokenizer.h"
#include "evoq/text/tokenizer.h"

namespace evoq::text {

struct Tokenizer::Impl {
  std::string source;
  std::vector<std::string> id_bytes;  // raw bytes per vocabulary id ("" where the id is unused)
  std::vector<bool> id_known;
  std::unordered_map<std::string, int32_t> bytes_to_id;  // raw bytes -> vocabulary id
  std::optional<BpeMerger> merger;
  std::optional<PreTokenizer> pretokenizer;
  bool nfc = true;

  std::vector<AddedToken> added;
  std::vector<std::string> added_decoded;                // bytes each added token decodes to
  std::unordered_map<int32_t, size_t> added_by_id;        // id -> index in `added`
  std::array<std::vector<size_t>, 256> added_by_first;  // first byte -> indices, longest first
  std::optional<int32_t> eos, pad;
  int32_t vocab_size = 0;

  // Pieces seen before: most text repeats a small set of words.
  static constexpr size_t kCacheLimit = 1 << 18;
  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  // Fills the derived lookup tables once vocab/merges/added tokens are in place.
  void finish(const std::vector<MergeRule>& merges, bool ignore_merges, std::string_view pattern);
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
};

}  // namespace evoq::text
