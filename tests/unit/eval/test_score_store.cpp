#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "evoq/core/error.h"
#include "evoq/eval/score_store.h"

using namespace evoq::eval;
namespace fs = std::filesystem;

TEST(ScoreStore, FlushesEveryNAndResumes) {
  const fs::path dir = fs::temp_directory_path() / ("evoq_store_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "scores.h5").string();
  {
    ScoreStore s(path, "niqe", R"({"samples":1})", 2);
    s.add({"CSIQ", "a.png", 1.5, ""});
    EXPECT_FALSE(fs::exists(path));  // not flushed yet
    s.add({"CSIQ", "b.png", NAN, "cannot read"});
    EXPECT_TRUE(fs::exists(path));   // second add flushed
    s.add({"CSIQ", "c.png", 2.5, ""});  // lost on "crash": never flushed
  }
  ScoreStore r(path, "niqe", R"({"samples":1})", 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r.contains("CSIQ", "a.png"));
  EXPECT_FALSE(r.contains("CSIQ", "c.png"));
  EXPECT_DOUBLE_EQ(r.find("CSIQ", "a.png")->score, 1.5);
  EXPECT_FALSE(r.find("CSIQ", "b.png")->valid());
  EXPECT_EQ(r.find("CSIQ", "b.png")->invalid_reason, "cannot read");
  EXPECT_THROW(ScoreStore(path, "brisque", R"({"samples":1})", 2), evoq::Error);
  // Same scorer, other settings: refused, naming the key and both values.
  try {
    ScoreStore other(path, "niqe", R"({"samples":8})", 2);
    FAIL() << "scores of other settings were accepted";
  } catch (const evoq::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("samples (was 1, now 8)"), std::string::npos) << e.what();
  }
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "scores.h5");  // no temp left
  fs::remove_all(dir);
}
