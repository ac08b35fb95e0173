#include "evoq/text/chat_template.h"

#include "evoq/core/error.h"

namespace evoq::text {

namespace {
constexpr std::string_view kImagePad = "<|image_pad|>";
}

int64_t merged_patch_count(int64_t t, int64_t h, int64_t w, int64_t merge_size) {
  EVOQ_CHECK(t > 0 && h > 0 && w > 0 && merge_size > 0, "chat template: bad image grid (", t, ", ", h, ", ", w, ")");
  return t * h * w / (merge_size * merge_size);
}

std::string chat_prompt_text(size_t image_count, std::string_view text, std::string_view system_prompt) {
  std::string prompt;
  prompt.reserve(128 + text.size() + image_count * 48);
  prompt += "<|im_start|>system\n";
  prompt += system_prompt;
  prompt += "<|im_end|>\n<|im_start|>user\n";
  for (size_t i = 0; i < image_count; ++i) {
    prompt += "<|vision_start|>";
    prompt += kImagePad;
    prompt += "<|vision_end|>";
  }
  prompt += text;
  prompt += "<|im_end|>\n<|im_start|>assistant\n";
  return prompt;
}

std::vector<int32_t> chat_prompt_ids(const Tokenizer& tokenizer, std::span<const int64_t> image_tokens,
                                     std::string_view text, std::string_view system_prompt) {
  const int32_t image_pad = tokenizer.token_id(kImagePad);
  const std::vector<int32_t> compact = tokenizer.encode(chat_prompt_text(image_tokens.size(), text, system_prompt));
  size_t total = compact.size(), pads = 0;
  for (int32_t id : compact) pads += id == image_pad;
  EVOQ_CHECK(pads == image_tokens.size(), "chat template: the prompt holds ", pads, " ", kImagePad, " tokens for ",
             image_tokens.size(), " images (does the text contain ", kImagePad, "?)");
  for (int64_t n : image_tokens) {
    EVOQ_CHECK(n > 0, "chat template: an image must take at least one token, got ", n);
    total += size_t(n) - 1;
  }
  std::vector<int32_t> ids;
  ids.reserve(total);
  size_t image = 0;
  for (int32_t id : compact) {
    if (id == image_pad)
      ids.insert(ids.end(), size_t(image_tokens[image++]), image_pad);
    else
      ids.push_back(id);
  }
  return ids;
}

void append_assistant_response(const Tokenizer& tokenizer, std::vector<int32_t>& ids,
                               std::span<const int32_t> response_ids) {
  ids.insert(ids.end(), response_ids.begin(), response_ids.end());
  ids.push_back(tokenizer.token_id("<|im_end|>"));
}

void append_assistant_response(const Tokenizer& tokenizer, std::vector<int32_t>& ids, std::string_view response) {
  const std::vector<int32_t> response_ids = tokenizer.encode(response);
  append_assistant_response(tokenizer, ids, std::span<const int32_t>(response_ids));
}

}  // namespace evoq::text
