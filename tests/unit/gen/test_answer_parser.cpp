// Adversarial table for the answer parser. Every expectation was derived by hand from the policy
// written in include/evoq/gen/answer_parser.h (not by running the parser).
#include <gtest/gtest.h>

#include <set>

#include "evoq/gen/answer_parser.h"

using evoq::gen::AnswerSource;
using evoq::gen::AnswerStatus;
using S = AnswerStatus;

namespace {

struct Case {
  const char* name;
  std::string text;
  S compare_status;
  int choice;  // expected compare choice when valid
  S score_status;
  double score;  // expected score when valid
};

const std::vector<Case>& cases() {
  static const std::vector<Case> table = {
      {"plain_boxed_one", "<think>sharper</think> \\boxed{1}", S::kValid, 1, S::kValid, 1.0},
      {"plain_boxed_zero", "<think>a</think>\\boxed{0}", S::kValid, 0, S::kOutOfRange, 0},
      {"score_two_decimals", "<think>noise</think> The answer is \\boxed{3.47}.", S::kNotBinary, -1, S::kValid, 3.47},
      {"missing_think", "\\boxed{1}", S::kValid, 1, S::kValid, 1.0},
      {"no_backslash", "<think>x</think> boxed{0}", S::kValid, 0, S::kOutOfRange, 0},
      {"spaces_inside", "boxed{ 3.5 }", S::kNotBinary, -1, S::kValid, 3.5},
      {"space_before_brace", "\\boxed {2}", S::kNotBinary, -1, S::kValid, 2.0},
      {"several_boxed_last_wins", "\\boxed{1} no wait \\boxed{0}", S::kValid, 0, S::kOutOfRange, 0},
      {"several_boxed_scores", "first \\boxed{2.5} then \\boxed{4.25}", S::kNotBinary, -1, S::kValid, 4.25},
      {"boxed_in_think_and_after", "<think>maybe \\boxed{1}</think>\\boxed{0}", S::kValid, 0, S::kOutOfRange, 0},
      {"boxed_only_in_think", "<think>I say \\boxed{1}</think> done", S::kValid, 1, S::kValid, 1.0},
      {"compare_half", "\\boxed{0.5}", S::kNotBinary, -1, S::kOutOfRange, 0},
      {"fraction", "\\boxed{4.25/5}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"nan", "\\boxed{NaN}", S::kNotFinite, -1, S::kNotFinite, 0},
      {"inf", "\\boxed{inf}", S::kNotFinite, -1, S::kNotFinite, 0},
      {"neg_infinity", "\\boxed{-Infinity}", S::kNotFinite, -1, S::kNotFinite, 0},
      {"huge_overflows", "\\boxed{1" + std::string(400, '0') + "}", S::kNotFinite, -1, S::kNotFinite, 0},
      {"fullwidth_digit", "\\boxed{\xEF\xBC\x93}", S::kNotANumber, -1, S::kNotANumber, 0},  // U+FF13
      {"arabic_indic_digit", "\\boxed{\xD9\xA1}", S::kNotANumber, -1, S::kNotANumber, 0},   // U+0661
      {"empty_response", "", S::kNoAnswer, -1, S::kNoAnswer, 0},
      {"empty_box", "\\boxed{}", S::kEmpty, -1, S::kEmpty, 0},
      {"whitespace_box", "\\boxed{   }", S::kEmpty, -1, S::kEmpty, 0},
      {"nested_braces_wrapping", "\\boxed{{3}}", S::kNotBinary, -1, S::kValid, 3.0},
      {"nested_text_macro", "\\boxed{\\text{1}}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"nested_braces_inner_group", "\\boxed{4{.}5}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"text_after_boxed", "\\boxed{1} because the second one is sharp.", S::kValid, 1, S::kValid, 1.0},
      {"unclosed_box", "<think>long</think> \\boxed{4.", S::kUnclosedBox, -1, S::kUnclosedBox, 0},
      {"unclosed_last_box_earlier_closed", "\\boxed{1} hmm \\boxed{0", S::kUnclosedBox, -1, S::kUnclosedBox, 0},
      {"one_with_dot", "\\boxed{1.}", S::kNotBinary, -1, S::kValid, 1.0},
      {"one_point_zero", "\\boxed{1.0}", S::kNotBinary, -1, S::kValid, 1.0},
      {"leading_zero_index", "\\boxed{01}", S::kNotBinary, -1, S::kValid, 1.0},
      {"plus_one", "\\boxed{+1}", S::kNotBinary, -1, S::kValid, 1.0},
      {"negative_score", "\\boxed{-3}", S::kNotBinary, -1, S::kOutOfRange, 0},
      {"index_two", "\\boxed{2}", S::kNotBinary, -1, S::kValid, 2.0},
      {"score_five", "\\boxed{5}", S::kNotBinary, -1, S::kValid, 5.0},
      {"score_above_five", "\\boxed{5.01}", S::kNotBinary, -1, S::kOutOfRange, 0},
      {"score_ten", "\\boxed{10}", S::kNotBinary, -1, S::kOutOfRange, 0},
      {"leading_dot", "\\boxed{.5}", S::kNotBinary, -1, S::kOutOfRange, 0},
      {"exponent_rejected", "\\boxed{3e0}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"dollar_math", "\\boxed{$1$}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"word_answer", "\\boxed{first}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"units", "\\boxed{3 points}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"comma_decimal", "\\boxed{3,5}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"two_numbers", "\\boxed{0 1}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"bare_number_only", "3.75", S::kNotBinary, -1, S::kValid, 3.75},
      {"bare_index_with_newlines", "\n 1 \n", S::kValid, 1, S::kValid, 1.0},
      {"bare_after_think", "<think>compare</think>\n0", S::kValid, 0, S::kOutOfRange, 0},
      {"bare_sentence", "The score is 3.5", S::kNoAnswer, -1, S::kNoAnswer, 0},
      {"bare_trailing_period", "1.", S::kNotBinary, -1, S::kValid, 1.0},
      {"think_only_unclosed", "<think>The first image is", S::kNoAnswer, -1, S::kNoAnswer, 0},
      {"think_unclosed_then_number", "<think>3", S::kNoAnswer, -1, S::kNoAnswer, 0},
      {"number_only_inside_think", "<think>2</think>", S::kNoAnswer, -1, S::kNoAnswer, 0},
      {"bare_nan", "nan", S::kNotFinite, -1, S::kNotFinite, 0},
      {"boxed_word_without_brace", "I boxed it: 1", S::kNoAnswer, -1, S::kNoAnswer, 0},
      {"boxed_tabs", "\\boxed\t{\t0\t}", S::kValid, 0, S::kOutOfRange, 0},
      {"brace_in_text_after", "\\boxed{3} and {not boxed}", S::kNotBinary, -1, S::kValid, 3.0},
      {"double_backslash", "\\\\boxed{1}", S::kValid, 1, S::kValid, 1.0},
      {"crlf_whitespace", "\\boxed{\r\n4.5\r\n}", S::kNotBinary, -1, S::kValid, 4.5},
      {"minus_zero", "\\boxed{-0}", S::kNotBinary, -1, S::kOutOfRange, 0},
      {"score_exact_one", "\\boxed{1.00}", S::kNotBinary, -1, S::kValid, 1.0},
      {"sign_only", "\\boxed{-}", S::kNotANumber, -1, S::kNotANumber, 0},
      {"dot_only", "\\boxed{.}", S::kNotANumber, -1, S::kNotANumber, 0},
  };
  return table;
}

}  // namespace

TEST(AnswerParser, TableHasAtLeastFortyCases) { EXPECT_GE(cases().size(), 40u); }

TEST(AnswerParser, CompareTable) {
  for (const Case& c : cases()) {
    auto a = evoq::gen::parse_compare(c.text);
    EXPECT_EQ(a.status, c.compare_status) << c.name << ": got " << to_string(a.status) << " want "
                                          << to_string(c.compare_status);
    if (c.compare_status == S::kValid) EXPECT_EQ(a.choice, c.choice) << c.name;
    else EXPECT_EQ(a.choice, -1) << c.name;
  }
}

TEST(AnswerParser, ScoreTable) {
  for (const Case& c : cases()) {
    auto a = evoq::gen::parse_score(c.text);
    EXPECT_EQ(a.status, c.score_status) << c.name << ": got " << to_string(a.status) << " want "
                                        << to_string(c.score_status);
    if (c.score_status == S::kValid) EXPECT_DOUBLE_EQ(a.score, c.score) << c.name;
  }
}

TEST(AnswerParser, ReasoningIsExtracted) {
  auto p = evoq::gen::split_response("<think>\n the left one is blurry \n</think>\n\\boxed{1}");
  EXPECT_TRUE(p.has_think);
  EXPECT_TRUE(p.think_closed);
  EXPECT_EQ(p.reasoning, "the left one is blurry");
  EXPECT_EQ(p.source, AnswerSource::kBoxed);
  EXPECT_EQ(p.answer, "1");

  auto q = evoq::gen::split_response("no tags at all 4");
  EXPECT_FALSE(q.has_think);
  EXPECT_EQ(q.source, AnswerSource::kNone);

  auto r = evoq::gen::split_response("<think>unfinished");
  EXPECT_TRUE(r.has_think);
  EXPECT_FALSE(r.think_closed);
  EXPECT_EQ(r.reasoning, "unfinished");

  auto s = evoq::gen::split_response("2.5");
  EXPECT_EQ(s.source, AnswerSource::kBare);
  EXPECT_EQ(s.answer, "2.5");
}

TEST(AnswerParser, StatusNamesAreDistinct) {
  std::set<std::string> names;
  for (S s : {S::kValid, S::kNoAnswer, S::kUnclosedBox, S::kEmpty, S::kNotANumber, S::kNotFinite, S::kNotBinary,
              S::kOutOfRange})
    names.insert(to_string(s));
  EXPECT_EQ(names.size(), 8u);
}
