#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "evoq/core/error.h"
#include "evoq/eval/csv.h"
#include "evoq/eval/datasets.h"

using namespace evoq::eval;
namespace fs = std::filesystem;

namespace {
const std::string kLabels = std::string(EVOQ_TEST_DATA) + "/../../data/iqa-labels";
const std::string kCsiq = std::string(EVOQ_TEST_DATA) + "/csiq-sample";

// Independent count: non-empty physical lines minus the header (no label file has quoted newlines).
std::size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line != "\r") ++n;
  return n - 1;
}
}  // namespace

TEST(Datasets, EveryLabelFileParsesWithItsDocumentedRowCount) {
  const std::map<std::string, std::size_t> documented = {
      {"CSIQ", 866},      {"LIVE", 779},      {"LIVE-Challenge", 1161}, {"TID2008", 1700},
      {"TID2013", 3000},  {"KADID-10k", 10125}, {"KonIQ-10k", 10073},   {"SPAQ", 11125},
      {"PIPAL", 23200},   {"AGIQA-3K", 2982}};
  ASSERT_EQ(known_datasets().size(), documented.size());
  for (const auto& info : known_datasets()) {
    const Dataset d = load_dataset(info.name, kLabels);
    EXPECT_EQ(d.images.size(), documented.at(info.name)) << info.name;
    EXPECT_EQ(d.images.size(), count_lines(kLabels + "/" + info.label_file)) << info.name;
    EXPECT_EQ(info.documented_rows, documented.at(info.name));
  }
}

TEST(Datasets, DirectionsAndValues) {
  const Dataset csiq = load_dataset("csiq", kLabels);
  EXPECT_EQ(csiq.direction, ScoreDirection::lower_is_better);
  EXPECT_EQ(csiq.images[0].id, "CSIQ/dst_imgs/AWGN/1600.AWGN.1.png");
  EXPECT_DOUBLE_EQ(csiq.images[0].score, 0.061989);
  EXPECT_DOUBLE_EQ(csiq.oriented_score(csiq.images[0]), -0.061989);
  EXPECT_EQ(csiq.images[0].distortion, "AWGN");
  EXPECT_EQ(load_dataset("LIVE", kLabels).direction, ScoreDirection::lower_is_better);
  EXPECT_EQ(load_dataset("kadid", kLabels).direction, ScoreDirection::higher_is_better);
  const Dataset agiqa = load_dataset("agiqa", kLabels);
  EXPECT_EQ(agiqa.images[0].id, "AttnGAN_normal_000.jpg");
  EXPECT_DOUBLE_EQ(agiqa.images[0].score, 0.965602553);
}

TEST(Datasets, KonIQOfficialSplit) {
  EXPECT_EQ(load_dataset("KonIQ-10k:test", kLabels).images.size(), 2015u);
  EXPECT_EQ(load_dataset("koniq:train", kLabels).images.size(), 7058u);
  EXPECT_EQ(load_dataset("koniq:val", kLabels).images.size(), 1000u);
  EXPECT_THROW(load_dataset("koniq:nope", kLabels), evoq::Error);
  EXPECT_THROW(load_dataset("SPAQ:test", kLabels), evoq::Error);
  EXPECT_THROW(load_dataset("nosuch", kLabels), evoq::Error);
}

TEST(Datasets, ResolvesRootsAndListsMissing) {
  Dataset csiq = load_dataset("CSIQ", kLabels);
  // The sample holds 10 of the 866 images, flat in one folder: almost all are missing under this root.
  auto missing = resolve_images(csiq, kCsiq);
  EXPECT_EQ(missing.size(), 866u);
  EXPECT_EQ(csiq.images[0].path, kCsiq + "/dst_imgs/AWGN/1600.AWGN.1.png");
  EXPECT_THROW(resolve_images(csiq, ""), evoq::Error);

  Dataset generic = load_dataset("csv:" + kCsiq + "/dmos.csv", kLabels);
  EXPECT_EQ(generic.name, "dmos");
  EXPECT_EQ(generic.direction, ScoreDirection::lower_is_better);
  EXPECT_EQ(generic.images.size(), 10u);
  EXPECT_TRUE(resolve_images(generic, "").empty());
  EXPECT_EQ(generic.images[9].path, kCsiq + "/1600.BLUR.5.png");
  remove_images(generic, {"1600.AWGN.1.png"});
  EXPECT_EQ(generic.images.size(), 9u);
}

TEST(Csv, QuotesCommasAndCrlf) {
  const auto t = parse_csv("a,b,c\r\n\"x, y\",\"he said \"\"hi\"\"\",3\r\n\r\nline\n", "t");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0][0], "x, y");
  EXPECT_EQ(t.rows[0][1], "he said \"hi\"");
  EXPECT_EQ(t.rows[0][2], "3");
  EXPECT_EQ(t.rows[1][0], "line");
  EXPECT_EQ(t.line_numbers[1], 4u);
  EXPECT_THROW(parse_csv("a\n\"open", "t"), evoq::Error);
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
}
