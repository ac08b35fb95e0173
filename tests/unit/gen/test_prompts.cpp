// Paper prompts (model card section 3, checked against the text here) and prompt files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "evoq/core/error.h"
#include "evoq/gen/prompts.h"

using namespace evoq::gen;

TEST(Prompts, PaperTextAndSuffix) {
  EXPECT_TRUE(kComparePrompt.starts_with("You are performing an image quality assessment task."));
  EXPECT_TRUE(kComparePrompt.ends_with("0 if the first image is better, or 1 if the second image is better."));
  EXPECT_TRUE(kScorePrompt.ends_with("with 1 representing very poor quality and 5 representing excellent quality."));
  EXPECT_TRUE(kReasoningSuffix.ends_with("The final answer MUST BE put in boxed{}."));
  EXPECT_EQ(with_reasoning_suffix("Q.", false), "Q.");
  EXPECT_EQ(with_reasoning_suffix("Q.", true), "Q. " + std::string(kReasoningSuffix));
}

TEST(Prompts, PromptFiles) {
  auto dir = std::filesystem::temp_directory_path() / "evoq_prompt_test";
  std::filesystem::create_directories(dir);
  auto file = dir / "p.txt";
  std::ofstream(file) << "<image><image> Which is better?\n";
  EXPECT_EQ(read_prompt_file(file, 2), "Which is better?");
  EXPECT_THROW(read_prompt_file(file, 1), evoq::Error);  // placeholder count differs from the images
  std::ofstream(file) << "  plain text  \n";
  EXPECT_EQ(read_prompt_file(file, 1), "plain text");
  std::ofstream(file) << " \n";
  EXPECT_THROW(read_prompt_file(file, 1), evoq::Error);
  std::ofstream(file) << "text <image> inside";
  EXPECT_THROW(read_prompt_file(file, 1), evoq::Error);
  EXPECT_THROW(read_prompt_file(dir / "missing.txt", 1), evoq::Error);
  std::filesystem::remove_all(dir);
}
