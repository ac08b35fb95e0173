// safetensors reading/validation/writing. Malformed files are built byte by byte here (8-byte
// little-endian header length, JSON header, data section), following the format specification.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "evoq/core/error.h"
#include "evoq/io/atomic_file.h"
#include "evoq/io/safetensors.h"

using namespace evoq::io;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("evoq_st_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file from a header text and data bytes; header_len overrides the length field.
std::string st_bytes(const std::string& header, const std::string& data, std::int64_t header_len = -1) {
  return le64(header_len < 0 ? header.size() : std::uint64_t(header_len)) + header + data;
}

std::string write_st(const fs::path& path, const std::string& bytes) {
  write_file_atomic(path.string(), bytes);
  return path.string();
}

// Opens a malformed file; returns the one-line error (which must name the file).
std::string open_error(const std::string& bytes) {
  auto path = write_st(fresh_dir("bad") / "bad.safetensors", bytes);
  try {
    SafetensorsFile::open(path);
  } catch (const evoq::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }
  ADD_FAILURE() << "no error";
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

const std::string kTwoTensors =
    R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
    R"("b":{"dtype":"I64","shape":[1,1],"data_offsets":[8,16]}})";

std::string two_tensor_data() {
  float a[2] = {1.5f, -2.0f};
  int64_t b = 42;
  std::string d(reinterpret_cast<char*>(a), 8);
  d.append(reinterpret_cast<char*>(&b), 8);
  return d;
}

}  // namespace

TEST(Safetensors, ReadsAHandBuiltFile) {
  auto path = write_st(fresh_dir("ok") / "m.safetensors", st_bytes(kTwoTensors, two_tensor_data()));
  auto file = SafetensorsFile::open(path);
  ASSERT_EQ(file->tensors().size(), 2u);
  const TensorView& a = file->tensors().at("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(a.nbytes, 8u);
  float av[2];
  std::memcpy(av, a.data, 8);
  EXPECT_EQ(av[0], 1.5f);
  EXPECT_EQ(av[1], -2.0f);
  const TensorView& b = file->tensors().at("b");
  EXPECT_EQ(b.numel(), 1);
  int64_t bv;
  std::memcpy(&bv, b.data, 8);
  EXPECT_EQ(bv, 42);
  EXPECT_EQ(file->metadata().at("format"), "pt");
}

TEST(Safetensors, ZeroSizedTensorsAndTrailingSpacesAreFine) {
  std::string h =
      R"({"e":{"dtype":"BF16","shape":[0,3],"data_offsets":[0,0]},"f":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})";
  h += "   ";
  auto file = SafetensorsFile::open(write_st(fresh_dir("zero") / "z.safetensors", st_bytes(h, "x")));
  EXPECT_EQ(file->tensors().at("e").nbytes, 0u);
  EXPECT_EQ(file->tensors().at("f").numel(), 1);
}

TEST(Safetensors, RejectsTruncatedFiles) {
  std::string full = st_bytes(kTwoTensors, two_tensor_data());
  EXPECT_TRUE(contains(open_error(full.substr(0, full.size() - 4)), "tensor 'b'"));
  EXPECT_TRUE(contains(open_error(full.substr(0, full.size() - 4)), "run past the data section"));
  EXPECT_TRUE(contains(open_error(full.substr(0, 5)), "shorter than the 8-byte header length"));
  EXPECT_TRUE(contains(open_error(""), "shorter than"));
  EXPECT_TRUE(contains(open_error(full.substr(0, 40)), "runs past the end of the file"));
}

TEST(Safetensors, RejectsHeaderLengthBeyondFile) {
  EXPECT_TRUE(
      contains(open_error(st_bytes(kTwoTensors, two_tensor_data(), 1 << 20)), "header length 1048576 runs past"));
  EXPECT_TRUE(contains(open_error(le64(~std::uint64_t(1)) + kTwoTensors + two_tensor_data()), "runs past"));  // 2^64-2
}

TEST(Safetensors, RejectsMalformedJson) {
  EXPECT_TRUE(contains(open_error(st_bytes(R"({"a":{"dtype":"F32",)", "")), "not valid JSON"));
  EXPECT_TRUE(contains(open_error(st_bytes(R"([1,2])", "")), "does not start with '{'"));
  EXPECT_TRUE(contains(open_error(st_bytes("", "")), "does not start with '{'"));
  EXPECT_TRUE(contains(open_error(st_bytes(R"({"a":3})", "")), "tensor 'a': header entry is not an object"));
  EXPECT_TRUE(contains(open_error(st_bytes(R"({"a":{"dtype":"F32","shape":[1]}})", "xxxx")),
                       "needs dtype, shape and data_offsets"));
  EXPECT_TRUE(contains(open_error(st_bytes(R"({"__metadata__":{"k":1}})", "")), "__metadata__ value of 'k'"));
}

TEST(Safetensors, RejectsOverlappingRanges) {
  std::string h =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  std::string msg = open_error(st_bytes(h, std::string(12, '\0')));
  EXPECT_TRUE(contains(msg, "overlap")) << msg;
  EXPECT_TRUE(contains(msg, "'a'") && contains(msg, "'b'")) << msg;
  // Same range twice.
  h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_TRUE(contains(open_error(st_bytes(h, std::string(8, '\0'))), "overlap"));
}

TEST(Safetensors, RejectsWrongShapeOrSize) {
  std::string h = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  std::string msg = open_error(st_bytes(h, std::string(8, '\0')));
  EXPECT_TRUE(contains(msg, "tensor 'w'") && contains(msg, "needs 12")) << msg;
  h = R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})";
  EXPECT_TRUE(contains(open_error(st_bytes(h, std::string(8, '\0'))), "non-negative"));
  h = R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})";
  EXPECT_TRUE(contains(open_error(st_bytes(h, std::string(8, '\0'))), "overflows"));
  h = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})";
  EXPECT_TRUE(contains(open_error(st_bytes(h, std::string(8, '\0'))), "end before begin"));
  h = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})";
  EXPECT_TRUE(contains(open_error(st_bytes(h, std::string(8, '\0'))), "must be [begin, end]"));
}

TEST(Safetensors, RejectsUnknownDtypeAndDuplicates) {
  std::string h = R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})";
  std::string msg = open_error(st_bytes(h, "ab"));
  EXPECT_TRUE(contains(msg, "tensor 'w': unknown dtype 'F8_E4M3'")) << msg;
  h = R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  EXPECT_TRUE(contains(open_error(st_bytes(h, "ab")), "tensor 'w' appears twice"));
}

TEST(Safetensors, DtypeHelpers) {
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(parse_dtype("I16"), DType::I16);
  EXPECT_THROW(parse_dtype("f32"), evoq::Error);
}

// ---- Checkpoint ---------------------------------------------------------------------------------

namespace {
void write_index(const fs::path& dir, const nlohmann::json& weight_map) {
  nlohmann::json index = {{"metadata", {{"total_size", 16}}}, {"weight_map", weight_map}};
  write_file_atomic((dir / "model.safetensors.index.json").string(), index.dump());
}

std::string checkpoint_error(const fs::path& dir) {
  try {
    Checkpoint::open(dir.string());
  } catch (const evoq::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}
}  // namespace

TEST(Checkpoint, SingleFileAndMissingKey) {
  auto dir = fresh_dir("single");
  write_st(dir / "model.safetensors", st_bytes(kTwoTensors, two_tensor_data()));
  Checkpoint ckpt = Checkpoint::open(dir.string());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(ckpt.contains("a"));
  EXPECT_FALSE(ckpt.contains("lm_head.weight"));
  try {
    ckpt.get("lm_head.weight");
    FAIL();
  } catch (const evoq::Error& e) {
    EXPECT_TRUE(contains(e.what(), "lm_head.weight") && contains(e.what(), dir.string())) << e.what();
  }
  // A file path works too.
  EXPECT_EQ(Checkpoint::open((dir / "model.safetensors").string()).names().size(), 2u);
}

TEST(Checkpoint, ShardedDirectory) {
  auto dir = fresh_dir("sharded");
  write_st(dir / "s1.safetensors",
           st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", two_tensor_data().substr(0, 8)));
  write_st(dir / "s2.safetensors",
           st_bytes(R"({"b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", two_tensor_data().substr(8)));
  write_index(dir, {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  Checkpoint moved = Checkpoint::open(dir.string());
  Checkpoint ckpt = std::move(moved);  // views stay valid across moves
  int64_t b;
  std::memcpy(&b, ckpt.get("b").data, 8);
  EXPECT_EQ(b, 42);
  EXPECT_EQ(ckpt.get("a").shape, (std::vector<int64_t>{2}));
}

TEST(Checkpoint, ShardErrors) {
  auto dir = fresh_dir("shard_errors");
  write_st(dir / "s1.safetensors",
           st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  write_index(dir, {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  std::string msg = checkpoint_error(dir);
  EXPECT_TRUE(contains(msg, "shard s2.safetensors") && contains(msg, "missing")) << msg;
  write_index(dir, {{"a", "s1.safetensors"}, {"b", "s1.safetensors"}});
  msg = checkpoint_error(dir);
  EXPECT_TRUE(contains(msg, "tensor 'b'") && contains(msg, "s1.safetensors")) << msg;
  write_index(dir, {{"a", "../s1.safetensors"}});
  EXPECT_TRUE(contains(checkpoint_error(dir), "not a file in"));
  write_file_atomic((dir / "model.safetensors.index.json").string(), "{\"weight_map\": [");
  EXPECT_TRUE(contains(checkpoint_error(dir), "not valid JSON"));
  auto empty = fresh_dir("empty_ckpt");
  EXPECT_TRUE(contains(checkpoint_error(empty), "has neither model.safetensors nor"));
  EXPECT_TRUE(contains(checkpoint_error(empty / "nope"), "does not exist"));
}

// ---- writer --------------------------------------------------------------------------------------

TEST(WriteCheckpoint, SingleFileRoundTripAndLayout) {
  auto dir = fresh_dir("write_single");
  std::vector<std::uint16_t> half = {1, 2, 3};
  std::vector<double> dbl = {0.25, -8};
  std::vector<std::uint8_t> u8 = {9};
  write_checkpoint(dir.string(), {{"h", DType::BF16, {3}, half.data(), 6},
                                  {"d", DType::F64, {2, 1}, dbl.data(), 16},
                                  {"u", DType::U8, {}, u8.data(), 1}});
  std::string bytes = read_file((dir / "model.safetensors").string());
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);  // data section 8-byte aligned, as the reference writer does
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  // Larger dtypes first: d (F64) at 0, then h (BF16), then u (U8).
  EXPECT_EQ(header["d"]["data_offsets"], nlohmann::json({0, 16}));
  EXPECT_EQ(header["h"]["data_offsets"], nlohmann::json({16, 22}));
  EXPECT_EQ(header["u"]["data_offsets"], nlohmann::json({22, 23}));
  Checkpoint ckpt = Checkpoint::open(dir.string());
  EXPECT_EQ(std::memcmp(ckpt.get("h").data, half.data(), 6), 0);
  EXPECT_EQ(std::memcmp(ckpt.get("d").data, dbl.data(), 16), 0);
  EXPECT_EQ(ckpt.get("u").shape.size(), 0u);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
}

TEST(WriteCheckpoint, ShardsAboveThresholdAndReplacesOldLayout) {
  auto dir = fresh_dir("write_sharded");
  std::vector<float> big(10, 1.0f), mid(6, 2.0f), small(2, 3.0f);
  std::vector<TensorToWrite> ts = {{"x.big", DType::F32, {10}, big.data(), 40},
                                   {"x.mid", DType::F32, {2, 3}, mid.data(), 24},
                                   {"x.small", DType::F32, {2}, small.data(), 8}};
  write_checkpoint(dir.string(), ts);  // small: one file
  ASSERT_TRUE(fs::exists(dir / "model.safetensors"));
  write_checkpoint(dir.string(), ts, 32);  // big alone (over the limit), mid+small together
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));  // would shadow the index in transformers
  ASSERT_TRUE(fs::exists(dir / "model-00001-of-00002.safetensors"));
  ASSERT_TRUE(fs::exists(dir / "model-00002-of-00002.safetensors"));
  auto index = nlohmann::json::parse(read_file((dir / "model.safetensors.index.json").string()));
  EXPECT_EQ(index["metadata"]["total_size"], 72);
  EXPECT_EQ(index["weight_map"]["x.big"], "model-00001-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["x.small"], "model-00002-of-00002.safetensors");
  Checkpoint ckpt = Checkpoint::open(dir.string());
  EXPECT_EQ(ckpt.names().size(), 3u);
  EXPECT_EQ(std::memcmp(ckpt.get("x.mid").data, mid.data(), 24), 0);
  // Back to one file: the shards and the index go away.
  write_checkpoint(dir.string(), ts);
  int files = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);
}

TEST(WriteCheckpoint, RejectsInconsistentInput) {
  auto dir = fresh_dir("write_bad");
  float v[2] = {0, 0};
  EXPECT_THROW(write_checkpoint(dir.string(), {{"a", DType::F32, {3}, v, 8}}), evoq::Error);
  EXPECT_THROW(write_checkpoint(dir.string(), {{"a", DType::F32, {2}, v, 8}, {"a", DType::F32, {2}, v, 8}}),
               evoq::Error);
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(AtomicFile, ReplacesContentAndCleansUpOnFailure) {
  auto dir = fresh_dir("atomic");
  auto path = (dir / "f.txt").string();
  write_file_atomic(path, "one");
  write_file_atomic(path, "two");
  EXPECT_EQ(read_file(path), "two");
  EXPECT_THROW(replace_file_atomic(path, [](const std::string& tmp) {
                 BinaryFileWriter w(tmp);
                 w.write("partial");
                 throw evoq::Error("writer failed");
               }),
               evoq::Error);
  EXPECT_EQ(read_file(path), "two");
  int files = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);
  EXPECT_THROW(read_file((dir / "missing").string()), evoq::Error);
  EXPECT_THROW(read_file(dir.string()), evoq::Error);
}

TEST(WriteCheckpoint, OverwritesTheCheckpointItIsReadingFrom) {
  // Saving tensors that still point into the mapped files of the same directory must work: every
  // file is replaced by rename, so the old mappings keep their (unlinked) contents.
  auto dir = fresh_dir("in_place");
  std::vector<float> a(64), b(64);
  for (int i = 0; i < 64; ++i) a[i] = float(i), b[i] = float(-i);
  write_checkpoint(dir.string(), {{"a", DType::F32, {64}, a.data(), 256}, {"b", DType::F32, {64}, b.data(), 256}}, 300);
  Checkpoint ckpt = Checkpoint::open(dir.string());
  std::vector<TensorToWrite> again;
  for (const auto& name : ckpt.names()) {
    const TensorView& t = ckpt.get(name);
    again.push_back({name, t.dtype, t.shape, t.data, t.nbytes});
  }
  write_checkpoint(dir.string(), again);  // now a single file; the shards it reads from are removed
  Checkpoint reread = Checkpoint::open(dir.string());
  EXPECT_EQ(std::memcmp(reread.get("a").data, a.data(), 256), 0);
  EXPECT_EQ(std::memcmp(reread.get("b").data, b.data(), 256), 0);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
}
