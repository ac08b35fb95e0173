// Reading a tokenizer from a Hugging Face model directory: tokenizer.json, or the older
// vocab.json + merges.txt pair; tokenizer_config.json adds added tokens and the eos/pad names.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "evoq/core/error.h"
#include "evoq/text/byte_level.h"
#include "tokenizer_impl.h"

namespace evoq::text {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Merges = std::vector<MergeRule>;

// GPT-2's pattern, used by a ByteLevel pre-tokenizer with use_regex = true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Ids above this are taken as corruption rather than allocated.
constexpr int64_t kMaxTokenId = 1 << 24;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EVOQ_CHECK(in, "tokenizer: cannot read ", path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  EVOQ_CHECK(!in.bad(), "tokenizer: cannot read ", path.string());
  return buffer.str();
}

json read_json(const fs::path& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("tokenizer: ", path.string(), " is not valid JSON (", e.what(), ")");
  }
}

// The big tables of a tokenizer file, taken out of the JSON tree while parsing (a tree of 150k
// std::map entries and 300k strings costs more than the rest of loading together).
struct Tables {
  std::vector<std::pair<std::string, json>> vocab;  // members of the vocab object, in file order
  std::vector<json> merges;                         // items of the merges array, in file order
};

// Parses `path`, moving the members of the object at key path `vocab_at` (empty: the root) and the
// items of the array at `merges_at` into `tables` instead of the returned tree.
json read_json_tables(const fs::path& path, const std::vector<std::string>& vocab_at,
                      const std::vector<std::string>& merges_at, Tables& tables) {
  std::vector<std::string> keys(8);  // keys[d]: the last key read at depth d
  auto inside = [&](const std::vector<std::string>& at, int depth) {
    if (depth != int(at.size()) + 1 || keys.size() <= at.size()) return false;
    for (size_t i = 0; i < at.size(); ++i)
      if (keys[i + 1] != at[i]) return false;
    return true;
  };
  const bool want_merges = !merges_at.empty();
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    switch (event) {
      case json::parse_event_t::key:
        if (int(keys.size()) <= depth) keys.resize(depth + 1);
        keys[depth] = parsed.get<std::string>();
        return !inside(vocab_at, depth);  // a vocab member's key is remembered here, not stored in the tree
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (int(keys.size()) <= depth + 1) keys.resize(depth + 2);
        keys[depth + 1].clear();
        return true;
      case json::parse_event_t::value:
        if (inside(vocab_at, depth)) {
          tables.vocab.emplace_back(keys[depth], std::move(parsed));
          return false;
        }
        [[fallthrough]];
      case json::parse_event_t::array_end:
      case json::parse_event_t::object_end:
        // A merge is a string (value event) or a [left, right] array (array_end at the item's depth).
        if (want_merges && inside(merges_at, depth)) {
          tables.merges.push_back(std::move(parsed));
          return false;
        }
        return true;
    }
    return true;
  };
  try {
    return json::parse(read_file(path), callback);
  } catch (const json::exception& e) {
    fail("tokenizer: ", path.string(), " is not valid JSON (", e.what(), ")");
  }
}

int32_t token_id_value(const json& value, const fs::path& file, std::string_view token) {
  EVOQ_CHECK(value.is_number_integer() && value.get<int64_t>() >= 0 && value.get<int64_t>() < kMaxTokenId,
             "tokenizer: ", file.string(), ": token '", token, "' has a bad id ", value.dump());
  return static_cast<int32_t>(value.get<int64_t>());
}

// Adds one byte-level vocabulary entry.
void add_vocab_entry(Tokenizer::Impl& impl, const std::string& text, int32_t id) {
  if (size_t(id) >= impl.id_bytes.size()) {
    impl.id_bytes.resize(id + 1);
    impl.id_known.resize(id + 1, false);
  }
  impl.id_known[id] = true;
  if (auto bytes = byte_level_to_bytes(text)) {
    impl.id_bytes[id] = *bytes;
    impl.bytes_to_id[*bytes] = id;
  } else {
    // Not byte-level text: no pre-tokenised piece can produce it, but it still decodes to itself.
    impl.id_bytes[id] = text;
  }
}

void read_vocab_entries(Tokenizer::Impl& impl, const std::vector<std::pair<std::string, json>>& vocab,
                        const fs::path& file) {
  EVOQ_CHECK(!vocab.empty(), "tokenizer: ", file.string(), ": the vocab must be a non-empty object");
  impl.bytes_to_id.reserve(vocab.size() * 2);
  for (const auto& [text, id] : vocab) add_vocab_entry(impl, text, token_id_value(id, file, text));
}

// One merge as raw bytes; `text` holds the two byte-level halves separated by one space.
std::pair<std::string, std::string> merge_from_text(std::string_view text, const fs::path& file, size_t line) {
  const size_t space = text.find(' ');
  EVOQ_CHECK(space != std::string_view::npos && space > 0 && space + 1 < text.size() &&
                 text.find(' ', space + 1) == std::string_view::npos,
             "tokenizer: ", file.string(), ": merge ", line, " is not two tokens separated by a space");
  auto left = byte_level_to_bytes(text.substr(0, space)), right = byte_level_to_bytes(text.substr(space + 1));
  EVOQ_CHECK(left && right, "tokenizer: ", file.string(), ": merge ", line, " is not byte-level text");
  return {*left, *right};
}

// The merge of byte strings l and r as ids; `number` is its line in merges.txt, or its 1-based
// index in tokenizer.json.
MergeRule merge_rule(const Tokenizer::Impl& impl, const std::string& l, const std::string& r, const fs::path& file,
                     size_t number) {
  auto left = impl.bytes_to_id.find(l), right = impl.bytes_to_id.find(r), merged = impl.bytes_to_id.find(l + r);
  EVOQ_CHECK(left != impl.bytes_to_id.end() && right != impl.bytes_to_id.end() && merged != impl.bytes_to_id.end(),
             "tokenizer: ", file.string(), ": merge ", number, " ('", bytes_to_byte_level(l), " ",
             bytes_to_byte_level(r), "') uses a token missing from the vocabulary");
  return {left->second, right->second, merged->second};
}

AddedToken added_token_from(const json& entry, int32_t id, const fs::path& file) {
  EVOQ_CHECK(entry.is_object() && entry.contains("content") && entry["content"].is_string(), "tokenizer: ",
             file.string(), ": added token ", id, " has no string 'content'");
  AddedToken token;
  token.content = entry["content"].get<std::string>();
  token.id = id;
  token.special = entry.value("special", false);
  EVOQ_CHECK(!token.content.empty(), "tokenizer: ", file.string(), ": added token ", id, " is empty");
  return token;
}

void add_or_replace(std::vector<AddedToken>& added, AddedToken token) {
  for (AddedToken& existing : added) {
    if (existing.id == token.id) {
      existing = std::move(token);
      return;
    }
  }
  added.push_back(std::move(token));
}

std::string type_of(const json& node) { return node.is_object() ? node.value("type", std::string()) : ""; }

// NFC, nothing, or a Sequence of those; anything else would change the ids silently.
bool read_normalizer(const json& node, const fs::path& file) {
  if (node.is_null()) return false;
  const std::string type = type_of(node);
  if (type == "NFC") return true;
  if (type == "Sequence" && node.contains("normalizers") && node["normalizers"].is_array()) {
    bool nfc = false;
    for (const json& inner : node["normalizers"]) nfc = read_normalizer(inner, file) || nfc;
    return nfc;
  }
  fail("tokenizer: ", file.string(), ": unsupported normalizer '", type, "' (only NFC is implemented)");
}

// Collects the split pattern of a (Sequence of) Split + ByteLevel pre-tokenizer(s).
void read_pre_tokenizer(const json& node, const fs::path& file, std::string& pattern, bool& byte_level) {
  const std::string type = type_of(node);
  if (type == "Sequence" && node.contains("pretokenizers") && node["pretokenizers"].is_array()) {
    for (const json& inner : node["pretokenizers"]) read_pre_tokenizer(inner, file, pattern, byte_level);
  } else if (type == "Split") {
    const json& p = node.value("pattern", json());
    EVOQ_CHECK(p.is_object() && p.contains("Regex") && p["Regex"].is_string(), "tokenizer: ", file.string(),
               ": only Split pre-tokenizers with a Regex pattern are supported");
    EVOQ_CHECK(node.value("behavior", std::string("Isolated")) == "Isolated" && !node.value("invert", false),
               "tokenizer: ", file.string(), ": only Split behaviour 'Isolated' without invert is supported");
    EVOQ_CHECK(pattern.empty(), "tokenizer: ", file.string(), ": more than one Split pre-tokenizer");
    pattern = p["Regex"].get<std::string>();
  } else if (type == "ByteLevel") {
    EVOQ_CHECK(!node.value("add_prefix_space", false), "tokenizer: ", file.string(),
               ": ByteLevel add_prefix_space = true is not supported");
    byte_level = true;
    if (node.value("use_regex", true)) {
      EVOQ_CHECK(pattern.empty(), "tokenizer: ", file.string(), ": Split and ByteLevel(use_regex) together");
      pattern = kGpt2Pattern;
    }
  } else {
    fail("tokenizer: ", file.string(), ": unsupported pre-tokenizer '", type, "'");
  }
}

void load_tokenizer_json(Tokenizer::Impl& impl, const fs::path& file, Merges& merges, bool& ignore_merges,
                         std::string& pattern) {
  Tables tables;
  const json root = read_json_tables(file, {"model", "vocab"}, {"model", "merges"}, tables);
  EVOQ_CHECK(root.is_object() && root.contains("model") && root["model"].is_object(), "tokenizer: ",
             file.string(), ": no 'model' object");
  const json& model = root["model"];
  EVOQ_CHECK(model.value("type", std::string("BPE")) == "BPE", "tokenizer: ", file.string(),
             ": model type '", type_of(model), "' is not BPE");
  EVOQ_CHECK(!model.value("byte_fallback", false), "tokenizer: ", file.string(), ": byte_fallback is not supported");
  auto empty_or_null = [&](const char* key) {
    return !model.contains(key) || model[key].is_null() || model[key] == "";
  };
  EVOQ_CHECK(empty_or_null("continuing_subword_prefix") && empty_or_null("end_of_word_suffix"), "tokenizer: ",
             file.string(), ": subword prefixes/suffixes are not supported");
  ignore_merges = model.value("ignore_merges", false);
  EVOQ_CHECK(model.contains("vocab") && model["vocab"].is_object(), "tokenizer: ", file.string(),
             ": model has no vocab object");
  read_vocab_entries(impl, tables.vocab, file);

  EVOQ_CHECK(!model.contains("merges") || model["merges"].is_array(), "tokenizer: ", file.string(),
             ": merges must be an array");
  const std::vector<json>& list = tables.merges;
  merges.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const json& m = list[i];
    if (m.is_string()) {
      const auto [l, r] = merge_from_text(m.get<std::string>(), file, i + 1);
      merges.push_back(merge_rule(impl, l, r, file, i + 1));
    } else {
      EVOQ_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), "tokenizer: ",
                 file.string(), ": merge ", i + 1, " is not a pair of strings");
      auto l = byte_level_to_bytes(m[0].get<std::string>()), r = byte_level_to_bytes(m[1].get<std::string>());
      EVOQ_CHECK(l && r, "tokenizer: ", file.string(), ": merge ", i + 1, " is not byte-level text");
      merges.push_back(merge_rule(impl, *l, *r, file, i + 1));
    }
  }

  impl.nfc = read_normalizer(root.value("normalizer", json()), file);
  bool byte_level = false;
  if (root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null())
    read_pre_tokenizer(root["pre_tokenizer"], file, pattern, byte_level);
  EVOQ_CHECK(byte_level, "tokenizer: ", file.string(), ": not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer)");
  EVOQ_CHECK(!pattern.empty(), "tokenizer: ", file.string(), ": no pre-tokenisation pattern");

  static const json no_added = json::array();
  const json& added = root.contains("added_tokens") ? root["added_tokens"] : no_added;
  EVOQ_CHECK(added.is_array(), "tokenizer: ", file.string(), ": added_tokens must be an array");
  for (const json& entry : added) {
    EVOQ_CHECK(entry.is_object() && entry.contains("id"), "tokenizer: ", file.string(), ": added token without id");
    add_or_replace(impl.added, added_token_from(entry, token_id_value(entry["id"], file, "added"), file));
  }
}

void load_vocab_and_merges(Tokenizer::Impl& impl, const fs::path& dir, Merges& merges) {
  const fs::path vocab_file = dir / "vocab.json", merges_file = dir / "merges.txt";
  Tables tables;
  const json root = read_json_tables(vocab_file, {}, {}, tables);
  EVOQ_CHECK(root.is_object(), "tokenizer: ", vocab_file.string(), " is not a JSON object");
  read_vocab_entries(impl, tables.vocab, vocab_file);
  EVOQ_CHECK(fs::exists(merges_file), "tokenizer: missing ", merges_file.string(), " (next to vocab.json)");
  std::istringstream lines(read_file(merges_file));
  std::string line;
  size_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (number == 1 && line.rfind("#version", 0) == 0)) continue;
    const auto [l, r] = merge_from_text(line, merges_file, number);
    merges.push_back(merge_rule(impl, l, r, merges_file, number));
  }
  impl.nfc = true;
}

std::optional<int32_t> configured_token(const json& config, const char* key, const Tokenizer& tokenizer) {
  if (!config.contains(key)) return std::nullopt;
  const json& value = config[key];
  std::string content;
  if (value.is_string()) {
    content = value.get<std::string>();
  } else if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    content = value["content"].get<std::string>();
  } else {
    return std::nullopt;
  }
  return tokenizer.find_token_id(content);
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir_name) {
  const fs::path dir(dir_name);
  EVOQ_CHECK(fs::is_directory(dir), "tokenizer: model directory not found: ", dir_name);
  auto impl = std::make_shared<Impl>();
  Merges merges;
  bool ignore_merges = false;
  std::string pattern(kQwen2Pattern);
  if (fs::exists(dir / "tokenizer.json")) {
    pattern.clear();
    load_tokenizer_json(*impl, dir / "tokenizer.json", merges, ignore_merges, pattern);
    impl->source = (dir / "tokenizer.json").string();
  } else if (fs::exists(dir / "vocab.json")) {
    load_vocab_and_merges(*impl, dir, merges);
    impl->source = (dir / "vocab.json").string();
  } else {
    fail("tokenizer: neither tokenizer.json nor vocab.json in ", dir_name);
  }

  json config;
  const fs::path config_file = dir / "tokenizer_config.json";
  if (fs::exists(config_file)) {
    config = read_json(config_file);
    EVOQ_CHECK(config.is_object(), "tokenizer: ", config_file.string(), " is not a JSON object");
    const json& decoder = config.value("added_tokens_decoder", json::object());
    EVOQ_CHECK(decoder.is_object(), "tokenizer: ", config_file.string(), ": added_tokens_decoder must be an object");
    for (const auto& [key, entry] : decoder.items()) {
      int64_t id = -1;
      try {
        size_t used = 0;
        id = std::stoll(key, &used);
        if (used != key.size()) id = -1;
      } catch (const std::exception&) {
      }
      EVOQ_CHECK(id >= 0 && id < kMaxTokenId, "tokenizer: ", config_file.string(), ": added token id '", key,
                 "' is not a valid id");
      add_or_replace(impl->added, added_token_from(entry, int32_t(id), config_file));
    }
  }
  impl->finish(merges, ignore_merges, pattern);
  Tokenizer tokenizer(impl);
  impl->eos = configured_token(config, "eos_token", tokenizer);
  impl->pad = configured_token(config, "pad_token", tokenizer);
  return tokenizer;
}

Tokenizer Tokenizer::from_tables(const std::vector<std::pair<std::string, int32_t>>& vocab,
                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                 const std::vector<AddedToken>& added, std::string_view pattern) {
  auto impl = std::make_shared<Impl>();
  impl->source = "in-memory tables";
  for (const auto& [text, id] : vocab) {
    EVOQ_CHECK(id >= 0 && id < kMaxTokenId, "tokenizer: token '", text, "' has a bad id ", id);
    add_vocab_entry(*impl, text, id);
  }
  Merges rules;
  for (size_t i = 0; i < merges.size(); ++i) {
    auto l = byte_level_to_bytes(merges[i].first), r = byte_level_to_bytes(merges[i].second);
    EVOQ_CHECK(l && r, "tokenizer: merge '", merges[i].first, " ", merges[i].second, "' is not byte-level text");
    rules.push_back(merge_rule(*impl, *l, *r, "in-memory tables", i + 1));
  }
  for (const AddedToken& token : added) add_or_replace(impl->added, token);
  impl->finish(rules, false, pattern);
  return Tokenizer(impl);
}

}  // namespace evoq::text
