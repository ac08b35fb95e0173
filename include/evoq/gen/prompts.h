#pragma once
// The paper's prompts (model card section 3 / paper Table 1), verbatim, and prompt files (torch-free).
//
// The `<image>` placeholders of the model card are not part of the text: the chat template puts one
// vision block per image before the text. The model card writes the suffix's last words as
// "boxed{}" (the paper's Table 1 as "boxed{ }"); we use the model card's text.
#include <filesystem>
#include <string>
#include <string_view>

namespace evoq::gen {

// c_compare: two images; answer 0 (first better) or 1 (second better).
inline constexpr std::string_view kComparePrompt =
    "You are performing an image quality assessment task. Compare the two images and decide which one has "
    "better perceptual quality. Answer strictly with the index of the better image: 0 if the first image is "
    "better, or 1 if the second image is better.";

// c_score: one image; answer a float in [1, 5].
inline constexpr std::string_view kScorePrompt =
    "You are doing the image quality assessment task. Here is the question: What is your overall rating on "
    "the quality of this picture? The rating should be a float between 1 and 5, rounded to two decimal places, "
    "with 1 representing very poor quality and 5 representing excellent quality.";

// Reasoning suffix for self-consistency sampling, appended after one space.
inline constexpr std::string_view kReasoningSuffix =
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in boxed{}.";

// `prompt`, plus " " and the reasoning suffix when `reasoning` is set.
std::string with_reasoning_suffix(std::string_view prompt, bool reasoning);

// Reads a custom prompt file: UTF-8 text, surrounding whitespace trimmed. Leading `<image>`
// placeholders (as the model card writes them) are removed; when present their number must equal
// `images`. Throws evoq::Error naming the file when it is missing, empty or has the wrong count.
std::string read_prompt_file(const std::filesystem::path& file, int images);

}  // namespace evoq::gen
