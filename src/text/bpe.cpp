#include "evoq/text/bpe.h"

#include <algorithm>
#include <queue>


namespace evoq::text {

BpeMerger::BpeMerger(const std::unordered_map<std::string, int32_t>& vocab, const std::vector<MergeRule>& rules,
                     bool ignore_merges) {
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(std::string(1, static_cast<char>(b)));
    byte_ids_[b] = it == vocab.end() ? -1 : it->second;
  }
  merges_.reserve(rules.size() * 2);
  for (size_t rank = 0; rank < rules.size(); ++rank) {
    const MergeRule& rule = rules[rank];
    // A repeated pair keeps its last rank, as Hugging Face tokenizers does.
    merges_.insert_or_assign(key(rule.left, rule.right), Merge{int32_t(rank), rule.merged});
  }
  if (ignore_merges) whole_tokens_ = &vocab;
}

const BpeMerger::Merge* BpeMerger::find(int32_t left, int32_t right) const {
  auto it = merges_.find(key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeMerger::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (whole_tokens_) {
    auto it = whole_tokens_->find(std::string(piece));
    if (it != whole_tokens_->end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols form a doubly linked list over the piece; a merged-away symbol gets id -1.
  struct Symbol {
    int32_t id, prev, next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (char c : piece) {
    const int32_t id = byte_ids_[static_cast<unsigned char>(c)];
    if (id < 0) continue;
    const int32_t index = int32_t(symbols.size());
    symbols.push_back({id, index - 1, index + 1});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;
  if (symbols.size() == 1) {
    out.push_back(symbols[0].id);
    return;
  }

  struct Candidate {
    int32_t rank, pos, merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const Merge* m = find(symbols[pos].id, symbols[next].id)) queue.push({m->rank, pos, m->merged_id});
  };
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    // Stale if either side changed since this candidate was queued.
    const Merge* m = find(left.id, symbols[left.next].id);
    if (!m || m->merged_id != top.merged_id) continue;
    Symbol& right = symbols[left.next];
    left.id = top.merged_id;
    left.next = right.next;
    right.id = -1;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace evoq::text
