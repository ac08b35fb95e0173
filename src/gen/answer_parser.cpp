#include "evoq/gen/answer_parser.h"

#include <cctype>
#include <charconv>
#include <cmath>

namespace evoq::gen {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// True when s[0] is '{' and its matching '}' is the last character.
bool wrapped_in_braces(std::string_view s) {
  if (s.size() < 2 || s.front() != '{' || s.back() != '}') return false;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1 == s.size();
  }
  return false;
}

std::string normalise(std::string_view s) {
  s = trim(s);
  while (wrapped_in_braces(s)) s = trim(s.substr(1, s.size() - 2));
  return std::string(s);
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct BoxSearch {
  bool found = false;
  bool closed = false;
  std::string content;
};

// Finds the last `boxed` followed (after optional spaces) by `{`, and returns its brace-matched content.
BoxSearch find_last_box(std::string_view text) {
  BoxSearch result;
  size_t pos = text.rfind("boxed");
  while (pos != std::string_view::npos) {
    size_t open = pos + 5;
    while (open < text.size() && (text[open] == ' ' || text[open] == '\t')) ++open;
    if (open < text.size() && text[open] == '{') {
      result.found = true;
      int depth = 0;
      for (size_t i = open; i < text.size(); ++i) {
        if (text[i] == '{') ++depth;
        if (text[i] == '}' && --depth == 0) {
          result.closed = true;
          result.content = normalise(text.substr(open + 1, i - open - 1));
          return result;
        }
      }
      return result;  // unclosed
    }
    if (pos == 0) break;
    pos = text.rfind("boxed", pos - 1);
  }
  return result;
}

}  // namespace

const char* to_string(AnswerStatus status) {
  switch (status) {
    case AnswerStatus::kValid: return "valid";
    case AnswerStatus::kNoAnswer: return "no_answer";
    case AnswerStatus::kUnclosedBox: return "unclosed_box";
    case AnswerStatus::kEmpty: return "empty";
    case AnswerStatus::kNotANumber: return "not_a_number";
    case AnswerStatus::kNotFinite: return "not_finite";
    case AnswerStatus::kNotBinary: return "not_binary";
    case AnswerStatus::kOutOfRange: return "out_of_range";
  }
  return "unknown";
}

ResponseParts split_response(std::string_view text) {
  ResponseParts parts;
  std::string_view after_think = text;
  size_t open = text.find("<think>");
  if (open != std::string_view::npos) {
    parts.has_think = true;
    size_t body = open + 7;
    size_t close = text.find("</think>", body);
    if (close != std::string_view::npos) {
      parts.think_closed = true;
      parts.reasoning = std::string(trim(text.substr(body, close - body)));
      after_think = text.substr(close + 8);
    } else {
      parts.reasoning = std::string(trim(text.substr(body)));
      after_think = {};
    }
  } else if (size_t close = text.find("</think>"); close != std::string_view::npos) {
    // A closing tag without an opening one (the template may put <think> in the prompt).
    parts.think_closed = true;
    parts.reasoning = std::string(trim(text.substr(0, close)));
    after_think = text.substr(close + 8);
  }

  BoxSearch box = find_last_box(text);
  if (box.found) {
    parts.source = AnswerSource::kBoxed;
    parts.box_unclosed = !box.closed;
    parts.answer = box.content;
    return parts;
  }
  std::string bare = normalise(after_think);
  double ignored;
  if (!bare.empty() && parse_plain_number(bare, &ignored) != AnswerStatus::kNotANumber) {
    parts.source = AnswerSource::kBare;
    parts.answer = bare;
  }
  return parts;
}

AnswerStatus parse_plain_number(std::string_view text, double* value) {
  text = trim(text);
  if (text.empty()) return AnswerStatus::kEmpty;
  std::string_view body = text;
  if (body.front() == '+' || body.front() == '-') body.remove_prefix(1);
  std::string low = lower_ascii(body);
  if (low == "nan" || low == "inf" || low == "infinity") return AnswerStatus::kNotFinite;

  size_t i = 0, int_digits = 0, frac_digits = 0;
  while (i < body.size() && is_digit(body[i])) ++i, ++int_digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && is_digit(body[i])) ++i, ++frac_digits;
  }
  if (i != body.size() || int_digits + frac_digits == 0) return AnswerStatus::kNotANumber;

  // from_chars rejects a leading '+'; parse the unsigned body and apply the sign.
  double v = 0.0;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), v, std::chars_format::fixed);
  if (ec == std::errc::result_out_of_range || !std::isfinite(v)) return AnswerStatus::kNotFinite;
  if (ec != std::errc() || end != body.data() + body.size()) return AnswerStatus::kNotANumber;
  *value = text.front() == '-' ? -v : v;
  return AnswerStatus::kValid;
}

CompareAnswer parse_compare(std::string_view response) {
  ResponseParts parts = split_response(response);
  CompareAnswer out;
  if (parts.source == AnswerSource::kNone) return out;  // kNoAnswer
  if (parts.box_unclosed) return {AnswerStatus::kUnclosedBox, -1};
  if (parts.answer == "0" || parts.answer == "1") return {AnswerStatus::kValid, parts.answer == "1" ? 1 : 0};
  double v;
  AnswerStatus s = parse_plain_number(parts.answer, &v);
  out.status = s == AnswerStatus::kValid ? AnswerStatus::kNotBinary : s;
  return out;
}

ScoreAnswer parse_score(std::string_view response) {
  ResponseParts parts = split_response(response);
  ScoreAnswer out;
  if (parts.source == AnswerSource::kNone) return out;  // kNoAnswer
  if (parts.box_unclosed) return {AnswerStatus::kUnclosedBox, 0.0};
  double v = 0.0;
  out.status = parse_plain_number(parts.answer, &v);
  if (out.status != AnswerStatus::kValid) return out;
  if (!(v >= kMinScore && v <= kMaxScore)) return {AnswerStatus::kOutOfRange, 0.0};
  out.score = v;
  return out;
}

}  // namespace evoq::gen
