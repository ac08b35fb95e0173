// libFuzzer target for the tokenizer (real Qwen2-VL files from tests/data). The first byte picks:
//   even: the rest is text -> encode must not crash, its ids must be valid, and (when the text spells
//         no added token, whose split-out would keep NFC from composing across it) decoding them
//         must give back the NFC form of the UTF-8-repaired text;
//   odd:  the rest is little-endian int32 ids (any value) -> decode, with and without special tokens,
//         must not crash and must return valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/text/tokenizer.h"
#include "evoq/text/unicode.h"

namespace {
std::optional<evoq::text::Tokenizer> tokenizer;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // EVOQ_TEST_DATA (set by CTest) first: __FILE__ may be a relative path (e.g. under ccache's base_dir).
  const char* data = std::getenv("EVOQ_TEST_DATA");
  const auto dir = (data && *data ? std::filesystem::path(data)
                                  : std::filesystem::path(__FILE__).parent_path().parent_path() / "data") /
                   "qwen2-vl-2b";
  tokenizer = evoq::text::Tokenizer::load(dir.string());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] % 2 == 0) {
    const std::vector<int32_t> ids = tokenizer->encode(rest);
    for (int32_t id : ids)
      if (id < 0 || id >= tokenizer->vocab_size()) __builtin_trap();
    const std::string text = evoq::text::utf8_lossy(rest);
    for (const auto& added : tokenizer->added_tokens())
      if (text.find(added.content) != std::string::npos) return 0;
    if (tokenizer->decode(ids) != evoq::text::nfc(text)) __builtin_trap();
  } else {
    std::vector<int32_t> ids(rest.size() / 4);
    if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
    for (bool skip : {false, true})
      if (!evoq::text::is_valid_utf8(tokenizer->decode(ids, skip))) __builtin_trap();
  }
  return 0;
}
