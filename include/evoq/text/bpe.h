#pragma once
// The BPE merge step of a byte-level tokenizer: one pre-tokenised piece (raw bytes) becomes token
// ids by starting from one symbol per byte and repeatedly merging the adjacent pair with the lowest
// merge rank (leftmost first on ties), as Hugging Face tokenizers' BPE model does.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace evoq::text {

// One merge: the adjacent tokens `left`, `right` become `merged`.
struct MergeRule {
  int32_t left, right, merged;
};

class BpeMerger {
 public:
  // `vocab`: raw byte string of each token -> id (must outlive the merger when ignore_merges).
  // `rules`: merges in rank order (rank = index).
  BpeMerger(const std::unordered_map<std::string, int32_t>& vocab, const std::vector<MergeRule>& rules,
            bool ignore_merges = false);

  // Appends the ids of `piece` to `out`. Bytes without a single-byte token are dropped (no unk).
  void encode(std::string_view piece, std::vector<int32_t>& out) const;


 private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  const Merge* find(int32_t left, int32_t right) const;

  std::array<int32_t, 256> byte_ids_{};
  std::unordered_map<uint64_t, Merge> merges_;
  // Only with ignore_merges: a piece that is itself a token is emitted whole.
  const std::unordered_map<std::string, int32_t>* whole_tokens_ = nullptr;
};

}  // namespace evoq::text
