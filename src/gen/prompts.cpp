#include "evoq/gen/prompts.h"

#include <fstream>
#include <sstream>

#include "evoq/core/error.h"

namespace evoq::gen {
namespace {
std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}
}  // namespace

std::string with_reasoning_suffix(std::string_view prompt, bool reasoning) {
  std::string out(prompt);
  if (reasoning) {
    out += ' ';
    out += kReasoningSuffix;
  }
  return out;
}

std::string read_prompt_file(const std::filesystem::path& file, int images) {
  std::ifstream in(file, std::ios::binary);
  EVOQ_CHECK(in, "cannot open prompt file ", file.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  std::string_view rest = trim(text);
  int placeholders = 0;
  while (rest.starts_with("<image>")) {
    rest = trim(rest.substr(7));
    ++placeholders;
  }
  EVOQ_CHECK(!rest.empty(), "prompt file ", file.string(), " holds no prompt text");
  EVOQ_CHECK(placeholders == 0 || placeholders == images, "prompt file ", file.string(), " has ", placeholders,
             " <image> placeholders but the command passes ", images, " image(s)");
  EVOQ_CHECK(rest.find("<image>") == std::string_view::npos, "prompt file ", file.string(),
             ": <image> placeholders are only allowed at the start");
  return std::string(rest);
}

}  // namespace evoq::gen
