// BPE merging on toy tables (hand-derived) and the real Qwen2-VL tokenizer files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "evoq/core/error.h"
#include "evoq/text/chat_template.h"
#include "evoq/text/tokenizer.h"

using evoq::text::AddedToken;
using evoq::text::Tokenizer;
using Ids = std::vector<int32_t>;
namespace fs = std::filesystem;

namespace {

const std::string kQwenDir = std::string(EVOQ_TEST_DATA) + "/qwen2-vl-2b";

Tokenizer toy(const std::vector<std::pair<std::string, std::string>>& merges) {
  std::vector<std::pair<std::string, int32_t>> vocab = {{"a", 0}, {"b", 1}, {"c", 2},  {"ab", 3},
                                                        {"bc", 4}, {"abc", 5}, {"aa", 6}, {"aaaa", 7},
                                                        {"\xC4\xA0", 8} /* "Ġ" = space */};
  return Tokenizer::from_tables(vocab, merges, {{"<x>", 20, true}, {"<xy>", 21, false}}, R"(\p{L}+|\s+)");
}

const Tokenizer& qwen() {
  static const Tokenizer tokenizer = Tokenizer::load(kQwenDir);
  return tokenizer;
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("evoq_text_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const evoq::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Bpe, LowestRankMergesFirst) {
  EXPECT_EQ(toy({{"b", "c"}, {"a", "b"}, {"a", "bc"}}).encode("abc"), (Ids{5}));  // a|bc -> abc
  EXPECT_EQ(toy({{"a", "b"}, {"b", "c"}}).encode("abc"), (Ids{3, 2}));            // ab|c, no "ab c"
  EXPECT_EQ(toy({{"b", "c"}, {"a", "b"}}).encode("abc"), (Ids{0, 4}));            // a|bc
}

TEST(Bpe, TiesMergeLeftmostFirst) {
  const Tokenizer t = toy({{"a", "a"}, {"aa", "aa"}});
  EXPECT_EQ(t.encode("aaa"), (Ids{6, 0}));
  EXPECT_EQ(t.encode("aaaa"), (Ids{7}));
  EXPECT_EQ(t.encode("aaaaa"), (Ids{7, 0}));
}

TEST(Bpe, AddedTokensSplitFirstLongestMatch) {
  const Tokenizer t = toy({{"a", "b"}});
  EXPECT_EQ(t.encode("ab<x>ab"), (Ids{3, 20, 3}));
  EXPECT_EQ(t.encode("<xy>a b"), (Ids{21, 0, 8, 1}));
  EXPECT_EQ(t.decode(Ids{3, 20, 21, 99, -1}), "ab<x><xy>");
  EXPECT_EQ(t.decode(Ids{3, 20, 21}, true), "ab<xy>");  // only special added tokens are skipped
}

TEST(QwenTokenizer, LoadsFromVocabAndMerges) {
  const Tokenizer& t = qwen();
  EXPECT_EQ(t.vocab_size(), 151657);
  EXPECT_EQ(t.eos_id(), 151645);
  EXPECT_EQ(t.pad_id(), 151643);
  EXPECT_EQ(t.token_id("<|im_start|>"), 151644);
  EXPECT_EQ(t.token_id("<|image_pad|>"), 151655);
  EXPECT_TRUE(t.is_special(151652));
  EXPECT_FALSE(t.is_special(220));
  EXPECT_EQ(t.token_id(" "), 220);
  // Plain text first ("Ġ" is itself a token), then the byte-level spelling ("ĠHello" = " Hello").
  EXPECT_EQ(t.token_id("\xC4\xA0Hello"), t.token_id(" Hello"));
  EXPECT_EQ(t.token_id(" Hello"), 21927);
  EXPECT_THROW(t.token_id("<|no such token|>"), evoq::Error);
}

TEST(QwenTokenizer, KnownIds) {
  // From the reference notes: the look-ahead keeps " Hello" whole.
  EXPECT_EQ(qwen().encode("  Hello"), (Ids{220, 21927}));
  EXPECT_EQ(qwen().encode("<|im_end|>"), (Ids{151645}));
  EXPECT_EQ(qwen().encode(""), (Ids{}));
}

TEST(QwenTokenizer, DecodeRepairsSplitCharacters) {
  const Tokenizer& t = qwen();
  const Ids ids = t.encode("\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80");
  EXPECT_EQ(t.decode(ids), "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80");
  // Byte tokens 0xF0 0x9F alone: one U+FFFD for the incomplete sequence.
  const Ids partial = {t.token_id("\xF0"), t.token_id("\x9F")};
  EXPECT_EQ(t.decode(partial), "\xEF\xBF\xBD");
  EXPECT_EQ(t.decode(Ids{151644, 9707, 151645}, true), t.decode(Ids{9707}));
}

TEST(QwenTokenizer, InvalidUtf8InputReadsAsReplacement) {
  EXPECT_EQ(qwen().encode("a\xFF"), qwen().encode("a\xEF\xBF\xBD"));
}

TEST(ChatTemplate, PromptTextMatchesTheInstructTemplate) {
  EXPECT_EQ(evoq::text::chat_prompt_text(2, "Compare."),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>"
            "Compare.<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, ExpandsEachImagePad) {
  const Tokenizer& t = qwen();
  const std::vector<int64_t> counts = {3, 5};
  const Ids ids = evoq::text::chat_prompt_ids(t, counts, "Which is better?");
  const Ids compact = t.encode(evoq::text::chat_prompt_text(2, "Which is better?"));
  EXPECT_EQ(ids.size(), compact.size() + 2 + 4);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151655), 8);
  // vision_start, 3 pads, vision_end, vision_start, 5 pads, vision_end
  auto first = std::find(ids.begin(), ids.end(), 151652);
  ASSERT_NE(first, ids.end());
  EXPECT_EQ(Ids(first, first + 12), (Ids{151652, 151655, 151655, 151655, 151653, 151652, 151655, 151655, 151655,
                                         151655, 151655, 151653}));
  EXPECT_EQ(evoq::text::merged_patch_count(1, 16, 22), 88);
  const std::vector<int64_t> one = {4};
  EXPECT_THROW(evoq::text::chat_prompt_ids(t, one, "sneaky <|image_pad|>"), evoq::Error);
}

TEST(ChatTemplate, AppendsResponseAndTurnEnd) {
  Ids ids = {1, 2};
  evoq::text::append_assistant_response(qwen(), ids, "0");
  EXPECT_EQ(ids, (Ids{1, 2, qwen().token_id("0"), 151645}));
}

TEST(TokenizerFiles, ErrorsNameTheFile) {
  EXPECT_NE(error_of([] { Tokenizer::load("/nonexistent/model"); }).find("/nonexistent/model"), std::string::npos);

  const fs::path empty = temp_dir("empty");
  EXPECT_NE(error_of([&] { Tokenizer::load(empty.string()); }).find("neither tokenizer.json nor vocab.json"),
            std::string::npos);

  const fs::path bad_json = temp_dir("badjson");
  std::ofstream(bad_json / "vocab.json") << "{\"a\": 0, ";
  std::ofstream(bad_json / "merges.txt") << "";
  EXPECT_NE(error_of([&] { Tokenizer::load(bad_json.string()); }).find("vocab.json is not valid JSON"),
            std::string::npos);

  const fs::path no_merges = temp_dir("nomerges");
  std::ofstream(no_merges / "vocab.json") << "{\"a\": 0}";
  EXPECT_NE(error_of([&] { Tokenizer::load(no_merges.string()); }).find("merges.txt"), std::string::npos);

  const fs::path bad_merge = temp_dir("badmerge");
  std::ofstream(bad_merge / "vocab.json") << "{\"a\": 0, \"b\": 1}";
  std::ofstream(bad_merge / "merges.txt") << "#version: 0.2\na b\n";
  EXPECT_NE(error_of([&] { Tokenizer::load(bad_merge.string()); }).find("merges.txt: merge 2"), std::string::npos)
      << error_of([&] { Tokenizer::load(bad_merge.string()); });

  const fs::path bad_id = temp_dir("badid");
  std::ofstream(bad_id / "vocab.json") << "{\"a\": -4}";
  std::ofstream(bad_id / "merges.txt") << "";
  EXPECT_NE(error_of([&] { Tokenizer::load(bad_id.string()); }).find("bad id"), std::string::npos);

  const fs::path bad_model = temp_dir("badmodel");
  std::ofstream(bad_model / "tokenizer.json") << R"({"model": {"type": "WordPiece", "vocab": {}}})";
  EXPECT_NE(error_of([&] { Tokenizer::load(bad_model.string()); }).find("not BPE"), std::string::npos);

  for (auto& dir : {empty, bad_json, no_merges, bad_merge, bad_id, bad_model}) fs::remove_all(dir);
}
