#pragma once
// The chat prompt of the Qwen2-VL / Qwen2.5-VL Instruct models for one user turn: the default system
// message, the images (each as <|vision_start|><|image_pad|><|vision_end|>) followed by the text, and
// the assistant generation prompt; then, as transformers' Qwen2VLProcessor does, each image's single
// <|image_pad|> is repeated once per merged patch of that image.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "evoq/text/tokenizer.h"

namespace evoq::text {

inline constexpr std::string_view kDefaultSystemPrompt = "You are a helpful assistant.";

// Number of <|image_pad|> tokens an image with patch grid (t, h, w) takes: t*h*w / merge_size^2.
int64_t merged_patch_count(int64_t t, int64_t h, int64_t w, int64_t merge_size = 2);

// The templated prompt text with one <|image_pad|> per image (what apply_chat_template returns for a
// user message whose content is `image_count` images and then `text`, add_generation_prompt=True).
std::string chat_prompt_text(size_t image_count, std::string_view text,
                             std::string_view system_prompt = kDefaultSystemPrompt);

// Token ids of that prompt with image i's <|image_pad|> expanded to image_tokens[i] copies.
// Throws evoq::Error if the prompt's <|image_pad|> count differs from image_tokens.size()
// (e.g. the text itself spells <|image_pad|>), as the processor does.
std::vector<int32_t> chat_prompt_ids(const Tokenizer& tokenizer, std::span<const int64_t> image_tokens,
                                     std::string_view text, std::string_view system_prompt = kDefaultSystemPrompt);

// Training: appends the assistant's answer and the <|im_end|> that closes its turn.
void append_assistant_response(const Tokenizer& tokenizer, std::vector<int32_t>& ids,
                               std::span<const int32_t> response_ids);
void append_assistant_response(const Tokenizer& tokenizer, std::vector<int32_t>& ids, std::string_view response);

}  // namespace evoq::text
