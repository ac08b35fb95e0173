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
    ScoreStore s(path, "niqe", 2);
    s.add({"CSIQ", "a.png", 1.5, ""});
    EXPECT_FALSE(fs::exists(path));  // not flushed yet
    s.add({"CSIQ", "b.png", NAN, "cannot read"});
    EXPECT_TRUE(fs::exists(path));   // second add flushed
    s.add({"CSIQ", "c.png", 2.5, ""});  // lost on "crash": never flushed
  }
  ScoreStore r(path, "niqe", 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r.contains("CSIQ", "a.png"));
  EXPECT_FALSE(r.contains("CSIQ", "c.png"));
  EXPECT_DOUBLE_EQ(r.find("CSIQ", "a.png")->score, 1.5);
  EXPECT_FALSE(r.find("CSIQ", "b.png")->valid());
  EXPECT_EQ(r.find("CSIQ", "b.png")->invalid_reason, "cannot read");
  EXPECT_THROW(ScoreStore(path, "brisque", 2), evoq::Error);
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "scores.h5");  // no temp left
  fs::remove_all(dir);
}
