// .npy reading/writing. The byte layouts below are what numpy 1.x/2.x np.save produces (magic,
// version, little-endian header length, dict padded with spaces to a 64-byte boundary, '\n').
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "evoq/core/error.h"
#include "evoq/io/atomic_file.h"
#include "evoq/io/npy.h"

using namespace evoq::io;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  auto dir = fs::temp_directory_path() / ("evoq_npy_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

// A header exactly as numpy writes it for version 1.0.
std::string numpy_v1(const std::string& dict, const std::string& data) {
  std::string body = dict;
  std::size_t total = 10 + body.size() + 1;
  body.append((64 - total % 64) % 64, ' ');
  body += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\0';
  out += static_cast<char>(body.size() & 0xFF);
  out += static_cast<char>(body.size() >> 8);
  return out + body + data;
}

std::string expect_error(const std::string& content) {
  auto path = (temp_dir() / "bad.npy").string();
  write_file_atomic(path, content);
  try {
    read_npy(path);
  } catch (const evoq::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }
  ADD_FAILURE() << "no error for malformed .npy";
  return "";
}

}  // namespace

TEST(Npy, WritesTheBytesNumpyWrites) {
  auto path = (temp_dir() / "a.npy").string();
  const float v[6] = {0, 1, 2, 3, 4, 5};
  write_npy(path, v, {2, 3});
  std::string data(reinterpret_cast<const char*>(v), sizeof v);
  EXPECT_EQ(read_file(path), numpy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data));
  EXPECT_EQ(read_file(path).size() % 64, sizeof v % 64);  // data starts on a 64-byte boundary
}

TEST(Npy, OneDimensionalAndScalarShapes) {
  auto path = (temp_dir() / "b.npy").string();
  const std::uint8_t u[3] = {1, 2, 250};
  write_npy(path, u, {3});
  EXPECT_EQ(read_file(path), numpy_v1("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }",
                                      std::string("\x01\x02\xfa", 3)));
  const double d = 2.5;
  write_npy(path, &d, {});
  NpyArray a = read_npy(path);
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.numel(), 1);
  EXPECT_EQ(a.data<double>()[0], 2.5);
}

TEST(Npy, RoundTripsEveryDtype) {
  auto path = (temp_dir() / "c.npy").string();
  const int64_t i64[4] = {-1, 0, int64_t(1) << 40, 7};
  write_npy(path, i64, {4, 1});
  NpyArray a = read_npy(path);
  EXPECT_EQ(a.dtype, DType::I64);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 1}));
  EXPECT_EQ(a.data<int64_t>()[2], int64_t(1) << 40);
  EXPECT_THROW(a.data<float>(), evoq::Error);
  const int32_t i32[2] = {-5, 9};
  write_npy(path, i32, {1, 2});
  EXPECT_EQ(read_npy(path).data<int32_t>()[0], -5);
  write_npy(path, i32, {0, 2});  // empty arrays are legal
  EXPECT_EQ(read_npy(path).numel(), 0);
}

TEST(Npy, ReadsVersion2Headers) {
  std::string dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
  std::string body = dict;
  body.append((64 - (12 + body.size() + 1) % 64) % 64, ' ');
  body += '\n';
  std::string file = std::string("\x93NUMPY\x02\x00", 8);
  for (int i = 0; i < 4; ++i) file += static_cast<char>((body.size() >> (8 * i)) & 0xFF);
  file += body + std::string("\x03\x00\x00\x00\x04\x00\x00\x00", 8);
  NpyArray a = parse_npy(reinterpret_cast<const std::uint8_t*>(file.data()), file.size(), "mem");
  EXPECT_EQ(a.data<int32_t>()[1], 4);
}

TEST(Npy, RejectsMalformedFiles) {
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string eight(8, '\0');
  EXPECT_NE(expect_error("").find("bad magic"), std::string::npos);
  EXPECT_NE(expect_error("PK\x03\x04 not npy at all").find("bad magic"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1(ok_dict, eight).substr(0, 30)).find("runs past"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1(ok_dict, eight.substr(0, 5))).find("truncated"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1(ok_dict, eight + "x")).find("trailing"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", eight))
                .find("big-endian"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", eight))
                .find("unsupported .npy dtype"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", eight))
                .find("Fortran"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1("{'descr': '<f4', 'shape': (2,), }", eight)).find("lacks"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,-1), }", eight))
                .find("malformed"), std::string::npos);
  EXPECT_NE(expect_error(numpy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }",
                                  eight)).find("too many"), std::string::npos);
  std::string v9 = numpy_v1(ok_dict, eight);
  v9[6] = 9;
  EXPECT_NE(expect_error(v9).find("version 9"), std::string::npos);
}

TEST(Npy, MissingFileNamesThePath) {
  try {
    read_npy("/nonexistent/dir/x.npy");
    FAIL();
  } catch (const evoq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.npy"), std::string::npos);
  }
}

TEST(Npy, WriteDoesNotLeaveTemporaryFiles) {
  auto dir = temp_dir() / "clean";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const float v = 1;
  write_npy((dir / "x.npy").string(), &v, {1});
  EXPECT_THROW(write_npy((dir / "y.npy").string(), DType::BF16, &v, {1}), evoq::Error);
  int files = 0;
  for (auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename(), "x.npy");
    ++files;
  }
  EXPECT_EQ(files, 1);
}
