// Manifests and pair sampling: properties checked exhaustively on small sets.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "evoq/core/error.h"
#include "evoq/evo/manifest.h"
#include "evoq/evo/pairs.h"

namespace fs = std::filesystem;
using namespace evoq::evo;

namespace {

fs::path temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("evoq_evo_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << "x";
}

Manifest numbered(int n, int groups = 0) {
  Manifest m;
  m.source = "test";
  m.root = "/r";
  for (int i = 0; i < n; ++i)
    m.images.push_back({"img" + std::to_string(i) + ".png", groups ? "ref" + std::to_string(i % groups) : ""});
  return m;
}

}  // namespace

TEST(Manifest, DirectoryIsRecursiveSortedAndFiltersExtensions) {
  auto dir = temp_dir("dir");
  touch(dir / "b.PNG");
  touch(dir / "a.jpg");
  touch(dir / "sub" / "c.jpeg");
  touch(dir / "notes.txt");
  auto m = load_manifest(dir.string());
  ASSERT_EQ(m.images.size(), 3u);
  EXPECT_EQ(m.images[0].path, "a.jpg");
  EXPECT_EQ(m.images[1].path, "b.PNG");
  EXPECT_EQ(m.images[2].path, "sub/c.jpeg");
  EXPECT_EQ(m.resolve(2), (dir / "sub/c.jpeg").string());
  fs::remove_all(dir);
}

TEST(Manifest, ListFileWithHeaderCommentsQuotesAndRoot) {
  auto dir = temp_dir("list");
  std::ofstream(dir / "list.csv") << "path,reference_id\n# comment\n\na.png,r1\n\"b,1.png\",r1\n c.png \n";
  auto m = load_manifest((dir / "list.csv").string());
  ASSERT_EQ(m.images.size(), 3u);
  EXPECT_EQ(m.images[1].path, "b,1.png");
  EXPECT_EQ(m.images[1].reference_id, "r1");
  EXPECT_EQ(m.images[2].path, "c.png");
  EXPECT_EQ(m.images[2].reference_id, "");
  EXPECT_EQ(m.root, dir.string());
  EXPECT_EQ(load_manifest((dir / "list.csv").string(), "/data").resolve(0), "/data/a.png");
  fs::remove_all(dir);
}

TEST(Manifest, ClearErrors) {
  auto dir = temp_dir("errors");
  std::ofstream(dir / "empty.txt") << "# nothing\n";
  std::ofstream(dir / "one.txt") << "a.png\n";
  std::ofstream(dir / "dup.txt") << "a.png\nb.png\na.png\n";
  std::ofstream(dir / "three.csv") << "a.png,r,extra\n";
  auto message = [](const std::string& path) {
    try {
      load_manifest(path);
    } catch (const evoq::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message((dir / "empty.txt").string()).find("lists no images"), std::string::npos);
  EXPECT_NE(message((dir / "one.txt").string()).find("only one image"), std::string::npos);
  EXPECT_NE(message((dir / "dup.txt").string()).find("line 3: duplicate path 'a.png'"), std::string::npos);
  EXPECT_NE(message((dir / "three.csv").string()).find("line 1"), std::string::npos);
  EXPECT_NE(message((dir / "missing.csv").string()).find("does not exist"), std::string::npos);
  fs::create_directories(dir / "emptydir");
  EXPECT_NE(message((dir / "emptydir").string()).find("lists no images"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Pairs, RandomPairsAreDistinctUnorderedAndSeeded) {
  const auto m = numbered(7);  // 21 possible pairs
  for (std::uint64_t n : {1, 5, 20, 21}) {
    auto s = sample_random_pairs(m, n, 42);
    ASSERT_EQ(s.size(), n);
    std::set<std::pair<std::int64_t, std::int64_t>> seen;
    for (std::size_t p = 0; p < s.size(); ++p) {
      EXPECT_LT(s.first[p], s.second[p]);
      EXPECT_GE(s.first[p], 0);
      EXPECT_LT(s.second[p], 7);
      EXPECT_TRUE(seen.insert({s.first[p], s.second[p]}).second);
    }
  }
  EXPECT_EQ(sample_random_pairs(m, 10, 1).first, sample_random_pairs(m, 10, 1).first);
  EXPECT_NE(sample_random_pairs(m, 10, 1).second, sample_random_pairs(m, 10, 2).second);
  EXPECT_THROW(sample_random_pairs(m, 22, 1), evoq::Error);
}

TEST(Pairs, RandomPairsAreUniform) {
  // 6 images -> 15 pairs; draw 3 pairs 3000 times: each pair is picked with probability 1/5.
  const auto m = numbered(6);
  std::map<std::pair<std::int64_t, std::int64_t>, int> counts;
  for (std::uint64_t seed = 0; seed < 3000; ++seed) {
    auto s = sample_random_pairs(m, 3, seed);
    for (std::size_t p = 0; p < 3; ++p) ++counts[{s.first[p], s.second[p]}];
  }
  ASSERT_EQ(counts.size(), 15u);
  for (const auto& [pair, c] : counts) EXPECT_NEAR(c, 600, 110) << pair.first << "," << pair.second;  // ~5 sigma
}

TEST(Pairs, SameReferencePairsStayInsideGroups) {
  auto m = numbered(10, 3);  // groups of 4, 3, 3 -> 6 + 3 + 3 = 12 pairs
  m.images.push_back({"lonely.png", ""});
  EXPECT_EQ(count_same_reference_pairs(sample_random_pairs(m, 1, 0).reference_ids), 12u);
  auto s = sample_same_reference_pairs(m, 12, 3);
  std::set<std::pair<std::int64_t, std::int64_t>> seen;
  for (std::size_t p = 0; p < s.size(); ++p) {
    EXPECT_EQ(m.images[s.first[p]].reference_id, m.images[s.second[p]].reference_id);
    EXPECT_FALSE(m.images[s.first[p]].reference_id.empty());
    EXPECT_TRUE(seen.insert({s.first[p], s.second[p]}).second);
  }
  EXPECT_EQ(seen.size(), 12u);
  EXPECT_THROW(sample_same_reference_pairs(m, 13, 3), evoq::Error);
}

TEST(Pairs, PairListAndH5RoundTrip) {
  auto dir = temp_dir("pairlist");
  const auto m = numbered(4);
  std::ofstream(dir / "pairs.txt") << "# a list\nimg0.png,img3.png\n2, 1\n";
  auto s = read_pair_list(m, (dir / "pairs.txt").string());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s.first[0], 0);
  EXPECT_EQ(s.second[0], 3);
  EXPECT_EQ(s.first[1], 2);
  EXPECT_EQ(s.second[1], 1);
  std::ofstream(dir / "dup.txt") << "img0.png,img3.png\nimg3.png,img0.png\n";
  std::ofstream(dir / "self.txt") << "img1.png,1\n";
  std::ofstream(dir / "unknown.txt") << "img1.png,nope.png\n";
  EXPECT_THROW(read_pair_list(m, (dir / "dup.txt").string()), evoq::Error);
  EXPECT_THROW(read_pair_list(m, (dir / "self.txt").string()), evoq::Error);
  EXPECT_THROW(read_pair_list(m, (dir / "unknown.txt").string()), evoq::Error);

  auto r = sample_random_pairs(numbered(9, 2), 11, 5);
  write_pairs_h5((dir / "pairs.h5").string(), r);
  auto back = read_pairs_h5((dir / "pairs.h5").string());
  EXPECT_EQ(back.first, r.first);
  EXPECT_EQ(back.second, r.second);
  EXPECT_EQ(back.image_paths, r.image_paths);
  EXPECT_EQ(back.reference_ids, r.reference_ids);
  EXPECT_EQ(back.seed, 5u);
  EXPECT_EQ(back.mode, "random");
  std::ofstream(dir / "bad.h5") << "not hdf5";
  EXPECT_THROW(read_pairs_h5((dir / "bad.h5").string()), evoq::Error);
  fs::remove_all(dir);
}

TEST(Pairs, CounterHashIsAPureFunction) {
  EXPECT_EQ(counter_hash(1, 2, 3), counter_hash(1, 2, 3));
  EXPECT_NE(counter_hash(1, 2, 3), counter_hash(1, 3, 2));
  EXPECT_NE(counter_hash(0, 0, 0), counter_hash(1, 0, 0));
}
