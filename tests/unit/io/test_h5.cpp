// The HDF5 wrapper: round trip, the integrity checks on read, and errors that name the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "evoq/core/error.h"
#include "evoq/io/h5.h"

namespace fs = std::filesystem;
namespace h5 = evoq::io::h5;

namespace {

fs::path temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("evoq_io_h5_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_sample(const std::string& path, const std::string& note) {
  h5::write_file_atomic(path, [&](H5::H5File& f) {
    h5::set_attr(f, "note", note);
    h5::set_attr(f, "count", std::int64_t(3));
    h5::write_vector(f, "values", std::vector<double>{1.5, -2.0, 3.25});
    h5::write_vector(f, "empty", std::vector<std::int32_t>{});
    h5::write_strings(f, "names", {"a", "", "ünï"});
  });
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const evoq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(H5, RoundTripWithChecksums) {
  const auto dir = temp_dir("roundtrip");
  const auto path = (dir / "f.h5").string();
  write_sample(path, "hello");
  auto f = h5::open_read(path);
  EXPECT_EQ(h5::get_attr_string(f, "note"), "hello");
  EXPECT_EQ(h5::get_attr_int(f, "count"), 3);
  EXPECT_EQ(h5::read_vector<double>(f, "values"), (std::vector<double>{1.5, -2.0, 3.25}));
  EXPECT_TRUE(h5::read_vector<std::int32_t>(f, "empty").empty());
  EXPECT_EQ(h5::read_strings(f, "names"), (std::vector<std::string>{"a", "", "ünï"}));
  EXPECT_TRUE(h5::has_attr(f, h5::kDigestAttribute));
  EXPECT_EQ(h5::get_attr_string(f, h5::kDigestAttribute), h5::content_digest(f));
  // Numeric data is chunked with Fletcher32.
  auto plist = f.openDataSet("values").getCreatePlist();
  EXPECT_EQ(plist.getLayout(), H5D_CHUNKED);
  EXPECT_GT(plist.getNfilters(), 0);
  fs::remove_all(dir);
}

TEST(H5, DigestCoversAttributesAndStrings) {
  const auto dir = temp_dir("digest");
  write_sample((dir / "a.h5").string(), "one");
  write_sample((dir / "b.h5").string(), "two");
  EXPECT_NE(h5::content_digest(h5::open_read((dir / "a.h5").string())),
            h5::content_digest(h5::open_read((dir / "b.h5").string())));
  fs::remove_all(dir);
}

TEST(H5, CorruptAndTruncatedFilesAreNamed) {
  const auto dir = temp_dir("corrupt");
  const auto path = (dir / "f.h5").string();
  write_sample(path, "a note that will be damaged");
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // One changed character of the string attribute: the digest no longer matches.
  const auto at = bytes.find("damaged");
  ASSERT_NE(at, std::string::npos);
  auto damaged = bytes;
  damaged[at] ^= 1;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << damaged;
  auto msg = error_of([&] { h5::open_read(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("corrupt"), std::string::npos) << msg;
  // Truncated: not a readable HDF5 file.
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
  msg = error_of([&] { h5::open_read(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  fs::remove_all(dir);
}

TEST(H5, WriteErrorsNameTheFileAndKeepTheOldOne) {
  const auto dir = temp_dir("errors");
  const auto missing = (dir / "no-such-folder" / "f.h5").string();
  auto msg = error_of([&] { write_sample(missing, "x"); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  // A writer that throws leaves the previous file untouched and no temporary behind.
  const auto path = (dir / "f.h5").string();
  write_sample(path, "old");
  EXPECT_THROW(h5::write_file_atomic(path, [](H5::H5File&) { evoq::fail("stop"); }), evoq::Error);
  EXPECT_EQ(h5::get_attr_string(h5::open_read(path), "note"), "old");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos);
  fs::remove_all(dir);
}
