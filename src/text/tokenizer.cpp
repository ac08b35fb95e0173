#include "evoq/text/tokenizer.h"

#include <algorithm>
#include <cstring>

#include "evoq/core/error.h"
#include "evoq/text/byte_level.h"
#include "evoq/text/unicode.h"
#include "tokenizer_impl.h"

namespace evoq::text {

void Tokenizer::Impl::finish(const std::vector<MergeRule>& merges, bool ignore_merges, std::string_view pattern) {
  merger.emplace(bytes_to_id, merges, ignore_merges);
  pretokenizer.emplace(pattern);
  vocab_size = int32_t(id_bytes.size());
  added_decoded.clear();
  added_by_id.clear();
  for (auto& list : added_by_first) list.clear();
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& token = added[i];
    EVOQ_CHECK(!token.content.empty(), "tokenizer: added token ", token.id, " has empty content");
    EVOQ_CHECK(token.id >= 0, "tokenizer: added token '", token.content, "' has negative id ", token.id);
    added_by_id[token.id] = i;
    vocab_size = std::max(vocab_size, token.id + 1);
    // The byte-level decoder maps an added token's characters back to bytes when all of them are
    // in the byte map, and keeps its UTF-8 text otherwise.
    auto bytes = byte_level_to_bytes(token.content);
    added_decoded.push_back(bytes ? *bytes : token.content);
    added_by_first[static_cast<unsigned char>(token.content[0])].push_back(i);
  }
  for (auto& list : added_by_first)
    std::stable_sort(list.begin(), list.end(),
                     [&](size_t a, size_t b) { return added[a].content.size() > added[b].content.size(); });
}

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() > kCacheMaxPiece) {
    merger->encode(piece, out);
    return;
  }
  const std::string key(piece);
  {
    std::shared_lock lock(cache_mutex);
    auto it = cache.find(key);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t begin = out.size();
  merger->encode(piece, out);
  std::unique_lock lock(cache_mutex);
  if (cache.size() >= kCacheLimit) cache.clear();
  cache.emplace(key, std::vector<int32_t>(out.begin() + begin, out.end()));
}

void Tokenizer::Impl::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string normalized;
  if (nfc) {
    normalized = text::nfc(text);
    text = normalized;
  }
  std::vector<std::string_view> pieces;
  pretokenizer->split(text, pieces);
  for (std::string_view piece : pieces) encode_piece(piece, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::string repaired;
  if (!is_valid_utf8(text)) {
    repaired = utf8_lossy(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  size_t segment_start = 0;
  for (size_t pos = 0; pos < text.size(); ++pos) {
    const auto& candidates = impl_->added_by_first[static_cast<unsigned char>(text[pos])];
    for (size_t index : candidates) {
      const std::string& content = impl_->added[index].content;
      if (text.compare(pos, content.size(), content) != 0) continue;
      impl_->encode_segment(text.substr(segment_start, pos - segment_start), ids);
      ids.push_back(impl_->added[index].id);
      pos += content.size() - 1;
      segment_start = pos + 1;
      break;
    }
  }
  impl_->encode_segment(text.substr(segment_start), ids);
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    auto added = impl_->added_by_id.find(id);
    if (added != impl_->added_by_id.end()) {
      if (!(skip_special && impl_->added[added->second].special)) bytes += impl_->added_decoded[added->second];
    } else if (id >= 0 && size_t(id) < impl_->id_bytes.size() && impl_->id_known[id]) {
      bytes += impl_->id_bytes[id];
    }
  }
  return utf8_lossy(bytes);
}

std::optional<int32_t> Tokenizer::find_token_id(std::string_view token) const {
  for (const AddedToken& added : impl_->added)
    if (added.content == token) return added.id;
  auto it = impl_->bytes_to_id.find(std::string(token));
  if (it != impl_->bytes_to_id.end()) return it->second;
  // Also accept the byte-level spelling used in vocab.json (e.g. "ĠHello").
  if (auto bytes = byte_level_to_bytes(token)) {
    it = impl_->bytes_to_id.find(*bytes);
    if (it != impl_->bytes_to_id.end()) return it->second;
  }
  return std::nullopt;
}

int32_t Tokenizer::token_id(std::string_view token) const {
  auto id = find_token_id(token);
  if (!id) fail("tokenizer (", impl_->source, "): no token '", token, "'");
  return *id;
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

bool Tokenizer::is_special(int32_t id) const {
  auto added = impl_->added_by_id.find(id);
  return added != impl_->added_by_id.end() && impl_->added[added->second].special;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::pad_id() const { return impl_->pad; }
const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace evoq::text
