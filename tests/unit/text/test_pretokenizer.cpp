// Splits of the Qwen2 pre-tokenisation pattern, derived by hand from its alternatives.
#include <gtest/gtest.h>

#include "evoq/core/error.h"
#include "evoq/text/pretokenizer.h"

using evoq::text::PreTokenizer;
using Pieces = std::vector<std::string>;

namespace {
Pieces split(std::string_view text) {
  static const PreTokenizer pretokenizer;
  Pieces out;
  for (auto piece : pretokenizer.split(text)) out.emplace_back(piece);
  return out;
}
}  // namespace

TEST(PreTokenizer, WordsTakeOneLeadingSpace) {
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
}

TEST(PreTokenizer, LookaheadLeavesLastSpaceToTheWord) {
  // \s+(?!\S) backs off one space so that " Hello" stays one piece.
  EXPECT_EQ(split("  Hello"), (Pieces{" ", " Hello"}));
  EXPECT_EQ(split("a    b"), (Pieces{"a", "   ", " b"}));
  EXPECT_EQ(split("end   "), (Pieces{"end", "   "}));
}

TEST(PreTokenizer, ContractionsAreCaseInsensitive) {
  EXPECT_EQ(split("I'm"), (Pieces{"I", "'m"}));
  EXPECT_EQ(split("HE'LL"), (Pieces{"HE", "'LL"}));
  EXPECT_EQ(split("it'S"), (Pieces{"it", "'S"}));
  EXPECT_EQ(split("we'Re"), (Pieces{"we", "'Re"}));
  EXPECT_EQ(split("'x"), (Pieces{"'x"}));  // not a contraction: punctuation prefix + letters
}

TEST(PreTokenizer, DigitsAreSingle) {
  EXPECT_EQ(split("abc123"), (Pieces{"abc", "1", "2", "3"}));
  EXPECT_EQ(split("4.50"), (Pieces{"4", ".", "5", "0"}));
}

TEST(PreTokenizer, NewlinesAndPunctuation) {
  EXPECT_EQ(split("a\n\nb"), (Pieces{"a", "\n\n", "b"}));
  EXPECT_EQ(split("x  \n y"), (Pieces{"x", "  \n", " y"}));
  EXPECT_EQ(split("hi!!!\n\nok"), (Pieces{"hi", "!!!\n\n", "ok"}));
  EXPECT_EQ(split("a\t\tb"), (Pieces{"a", "\t", "\tb"}));
  EXPECT_EQ(split("(x)"), (Pieces{"(x", ")"}));
}

TEST(PreTokenizer, UnicodeLettersAndSpaces) {
  EXPECT_EQ(split("\xE4\xBD\xA0\xE5\xA5\xBD, world"), (Pieces{"\xE4\xBD\xA0\xE5\xA5\xBD", ",", " world"}));
  // U+3000 IDEOGRAPHIC SPACE is white space, and a non-letter prefix of the next word.
  EXPECT_EQ(split("a\xE3\x80\x80" "b"), (Pieces{"a", "\xE3\x80\x80" "b"}));
  EXPECT_EQ(split("a\xE3\x80\x80\xE3\x80\x80"), (Pieces{"a", "\xE3\x80\x80\xE3\x80\x80"}));
  EXPECT_EQ(split("\xF0\x9F\x98\x80!"), (Pieces{"\xF0\x9F\x98\x80!"}));
}

TEST(PreTokenizer, PiecesCoverTheText) {
  const std::string text = "  mixed\r\n\tText 42 \xC3\xA9t\xC3\xA9 ...  \n";
  std::string joined;
  for (auto& piece : split(text)) joined += piece;
  EXPECT_EQ(joined, text);
  EXPECT_TRUE(split("").empty());
}

TEST(PreTokenizer, OnigurumaSpaceClassesAreRewritten) {
  const std::string out = evoq::text::oniguruma_to_pcre2(R"(\s+(?!\S)|[^\s\p{L}]|\\s)");
  EXPECT_EQ(out.find("\\s"), out.find("\\\\s") + 1);  // only the escaped backslash + 's' remains
  EXPECT_NE(out.find("[^\\x{09}-\\x{0D}"), std::string::npos);
  EXPECT_THROW(evoq::text::oniguruma_to_pcre2(R"([\S])"), evoq::Error);
  EXPECT_THROW(PreTokenizer("(unclosed"), evoq::Error);
}
