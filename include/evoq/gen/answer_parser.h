#pragma once
// Answer parsing for the paper's prompts (torch-free).
//
// A response is split into its `<think>...</think>` reasoning and its answer, and the answer is
// classified as a compare vote (0 or 1) or a quality score. Anything that is not a clean answer is
// *invalid* with a reason; nothing is ever replaced by a default or random value.
//
// Policy (decided here, tested in tests/unit/gen/test_answer_parser.cpp):
// - Boxed answer: the content of the LAST `boxed{...}` in the whole response (with or without the
//   leading backslash, optional spaces between `boxed` and `{`), braces matched by depth so nested
//   braces are kept inside the content. If that last box is never closed (truncated output) the
//   answer is invalid (kUnclosedBox): an earlier box is not used instead.
// - Content normalisation: ASCII whitespace trimmed; brace pairs wrapping the whole content are
//   removed (`boxed{{3}}` -> "3"). Nothing else is stripped: `$3$`, `\text{3}`, `3/5`, `3 points`,
//   `three` are not numbers.
// - Bare fallback (no `boxed` anywhere, e.g. prompts without the reasoning suffix): the text after
//   `</think>` (or the whole response when there is no think block) is used only when, trimmed, it
//   is nothing but the number itself. "3.5" is a score; "The score is 3.5" is kNoAnswer.
// - Numbers: ASCII only, `[+-]?(digits[.digits*] | .digits)`; no exponent, no thousands
//   separators, no fractions, no unicode digits (fullwidth/Arabic-Indic digits are kNotANumber).
//   "nan"/"inf"/"infinity" (any case, signed) are kNotFinite; values too large for a double also.
// - Compare: valid only when the trimmed content is exactly "0" or "1" (the prompt asks strictly
//   for the index). " 1 " is valid; "1.", "1.0", "01", "+1" are kNotBinary (numbers, not an index);
//   "0.5" is kNotBinary.
// - Score: any finite number in the closed range [1, 5] ("5", "4.25", "3.", ".5" is out of range).
//   Values outside [1, 5] are INVALID (kOutOfRange), not clamped: a 0 or a 10 means the model did
//   not follow the rating scale, and the trainer gives invalid answers the minimum reward.
#include <optional>
#include <string>
#include <string_view>

namespace evoq::gen {

enum class AnswerStatus {
  kValid,
  kNoAnswer,     // no boxed{} and the bare text is not just a number
  kUnclosedBox,  // the last boxed{ has no matching closing brace
  kEmpty,        // boxed{} with nothing but whitespace
  kNotANumber,   // content is not a plain ASCII decimal number
  kNotFinite,    // nan / inf
  kNotBinary,    // compare: a number other than exactly "0" or "1"
  kOutOfRange,   // score: finite number outside [1, 5]
};

const char* to_string(AnswerStatus status);

enum class AnswerSource { kNone, kBoxed, kBare };

// The structural split of one response.
struct ResponseParts {
  bool has_think = false;     // a `<think>` tag is present
  bool think_closed = false;  // ... and followed by `</think>`
  std::string reasoning;      // text between <think> and </think> (or to the end when unclosed)
  AnswerSource source = AnswerSource::kNone;
  bool box_unclosed = false;  // the last boxed{ was never closed
  std::string answer;         // normalised answer text (boxed content or bare text); empty if none
};

ResponseParts split_response(std::string_view text);

struct CompareAnswer {
  AnswerStatus status = AnswerStatus::kNoAnswer;
  int choice = -1;  // 0 = first image better, 1 = second; -1 when invalid
  bool valid() const { return status == AnswerStatus::kValid; }
};

struct ScoreAnswer {
  AnswerStatus status = AnswerStatus::kNoAnswer;
  double score = 0.0;  // meaningful only when valid
  bool valid() const { return status == AnswerStatus::kValid; }
};

CompareAnswer parse_compare(std::string_view response);
ScoreAnswer parse_score(std::string_view response);

inline constexpr double kMinScore = 1.0;
inline constexpr double kMaxScore = 5.0;

// Classifies a normalised answer string as a number: kValid with *value set, kEmpty, kNotANumber
// or kNotFinite. Exposed for tests.
AnswerStatus parse_plain_number(std::string_view text, double* value);

}  // namespace evoq::gen
