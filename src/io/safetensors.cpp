#include "evoq/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "evoq/core/error.h"
#include "evoq/io/atomic_file.h"

namespace evoq::io {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
// The reference implementation refuses headers above 100 MB; so do we (a corrupt length field
// must not make us parse gigabytes).
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

std::uint64_t read_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// One tensor entry of the header: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}.
TensorView parse_entry(const std::string& name, const json& entry, const std::string& where,
                       std::uint64_t data_size, std::uint64_t& begin, std::uint64_t& end) {
  auto bad = [&](const std::string& why) -> void { fail(where, ": tensor '", name, "': ", why); };
  if (!entry.is_object()) bad("header entry is not an object");
  auto dt = entry.find("dtype");
  auto sh = entry.find("shape");
  auto off = entry.find("data_offsets");
  if (dt == entry.end() || sh == entry.end() || off == entry.end()) bad("needs dtype, shape and data_offsets");
  if (!dt->is_string()) bad("dtype is not a string");

  TensorView view;
  view.name = name;
  const std::string dtype = dt->get<std::string>();
  try {
    view.dtype = parse_dtype(dtype);
  } catch (const Error&) {
    bad("unknown dtype '" + dtype + "'");
  }
  if (!sh->is_array()) bad("shape is not an array");
  std::uint64_t numel = 1;
  for (const json& d : *sh) {
    if (!d.is_number_unsigned() || d.get<std::uint64_t>() > std::uint64_t(INT64_MAX))
      bad("shape entries must be non-negative integers, got " + sh->dump());
    view.shape.push_back(static_cast<int64_t>(d.get<std::uint64_t>()));
    if (__builtin_mul_overflow(numel, d.get<std::uint64_t>(), &numel)) bad("shape " + sh->dump() + " overflows");
  }
  if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
    bad("data_offsets must be [begin, end], got " + off->dump());
  begin = (*off)[0].get<std::uint64_t>();
  end = (*off)[1].get<std::uint64_t>();
  if (end < begin) bad("data_offsets " + off->dump() + " end before begin");
  if (end > data_size)
    bad("data_offsets " + off->dump() + " run past the data section (" + std::to_string(data_size) + " bytes)");
  std::uint64_t expected = 0;
  if (__builtin_mul_overflow(numel, std::uint64_t(dtype_size(view.dtype)), &expected))
    bad("shape " + sh->dump() + " overflows");
  if (end - begin != expected)
    bad("byte range " + off->dump() + " holds " + std::to_string(end - begin) + " bytes but shape " +
        shape_text(view.shape) + " of " + dtype + " needs " + std::to_string(expected));
  view.nbytes = static_cast<std::size_t>(expected);
  return view;
}

struct Range {
  std::uint64_t begin, end;
  const std::string* name;
};

void check_no_overlaps(std::vector<Range>& ranges, const std::string& where) {
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  const Range* prev = nullptr;
  for (const Range& r : ranges) {
    if (r.begin == r.end) continue;  // empty tensors occupy no bytes
    if (prev && r.begin < prev->end)
      fail(where, ": tensor '", *r.name, "' bytes [", r.begin, ",", r.end, ") overlap tensor '", *prev->name,
           "' bytes [", prev->begin, ",", prev->end, ")");
    prev = &r;
  }
}

bool is_safe_shard_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name.find('\\') == std::string::npos &&
         name != "." && name != "..";
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- reading -------------------------------------------------------------------------------------

std::map<std::string, TensorView> SafetensorsFile::parse_header(const std::uint8_t* bytes, std::size_t size,
                                                                const std::string& where,
                                                                std::map<std::string, std::string>* metadata) {
  if (size < 8) fail(where, ": not a safetensors file (", size, " bytes, shorter than the 8-byte header length)");
  const std::uint64_t header_len = read_le64(bytes);
  if (header_len > size - 8)
    fail(where, ": header length ", header_len, " runs past the end of the file (", size, " bytes; truncated?)");
  if (header_len > kMaxHeaderBytes) fail(where, ": header length ", header_len, " exceeds the 100 MB limit");
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  if (header_len == 0 || text[0] != '{') fail(where, ": header does not start with '{' (not a safetensors file?)");

  // nlohmann keeps the last of duplicate keys silently; a duplicate tensor name could hide a bad
  // entry, so the parse callback refuses them.
  std::set<std::string> top_keys;
  std::string duplicate;
  auto refuse_duplicates = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !top_keys.insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + header_len, refuse_duplicates);
  } catch (const json::exception& e) {
    fail(where, ": header is not valid JSON (", e.what(), ")");
  }
  if (!duplicate.empty()) fail(where, ": tensor '", duplicate, "' appears twice in the header");
  if (!header.is_object()) fail(where, ": header is not a JSON object");

  const std::uint8_t* data = bytes + 8 + header_len;
  const std::uint64_t data_size = size - 8 - header_len;
  std::map<std::string, TensorView> tensors;
  std::vector<Range> ranges;
  ranges.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail(where, ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail(where, ": __metadata__ value of '", m.key(), "' is not a string");
        if (metadata) (*metadata)[m.key()] = m->get<std::string>();
      }
      continue;
    }
    std::uint64_t begin = 0, end = 0;
    TensorView view = parse_entry(it.key(), *it, where, data_size, begin, end);
    view.data = data + begin;
    auto [pos, inserted] = tensors.emplace(it.key(), std::move(view));
    ranges.push_back({begin, end, &pos->first});
  }
  check_no_overlaps(ranges, where);
  return tensors;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_size_ = static_cast<std::size_t>(st.st_size);
  if (file->map_size_ > 0) {
    void* map = ::mmap(nullptr, file->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int saved = errno;
      ::close(fd);
      fail("cannot mmap ", path, ": ", std::strerror(saved));
    }
    file->map_ = map;
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  file->tensors_ = parse_header(static_cast<const std::uint8_t*>(file->map_), file->map_size_, path, &file->metadata_);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint ckpt;
  ckpt.dir_ = dir;
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {
    ckpt.files_.push_back(SafetensorsFile::open(dir));
    for (const auto& [name, view] : ckpt.files_.back()->tensors()) ckpt.index_[name] = &view;
    return ckpt;
  }
  if (!fs::is_directory(dir, ec)) fail("checkpoint ", dir, " does not exist");
  const fs::path single = fs::path(dir) / kSingleFile;
  const fs::path index_path = fs::path(dir) / kIndexFile;
  if (fs::exists(single, ec)) {
    ckpt.files_.push_back(SafetensorsFile::open(single.string()));
    for (const auto& [name, view] : ckpt.files_.back()->tensors()) ckpt.index_[name] = &view;
    return ckpt;
  }
  if (!fs::exists(index_path, ec)) fail("checkpoint ", dir, " has neither ", kSingleFile, " nor ", kIndexFile);

  json index;
  try {
    index = json::parse(read_file(index_path.string()));
  } catch (const json::exception& e) {
    fail(index_path.string(), ": not valid JSON (", e.what(), ")");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail(index_path.string(), ": no \"weight_map\" object");
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it->is_string()) fail(index_path.string(), ": weight_map entry '", it.key(), "' is not a file name");
    const std::string shard = it->get<std::string>();
    if (!is_safe_shard_name(shard))
      fail(index_path.string(), ": weight_map entry '", it.key(), "' names '", shard, "', not a file in ", dir);
    auto found = shards.find(shard);
    if (found == shards.end()) {
      const fs::path shard_path = fs::path(dir) / shard;
      if (!fs::exists(shard_path, ec))
        fail(index_path.string(), ": shard ", shard, " (holding '", it.key(), "') is missing from ", dir);
      found = shards.emplace(shard, SafetensorsFile::open(shard_path.string())).first;
      ckpt.files_.push_back(found->second);
    }
    const auto& tensors = found->second->tensors();
    auto t = tensors.find(it.key());
    if (t == tensors.end())
      fail(found->second->path(), ": tensor '", it.key(), "' listed in ", kIndexFile, " is not in this shard");
    ckpt.index_[it.key()] = &t->second;
  }
  return ckpt;
}

bool Checkpoint::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorView& Checkpoint::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail("checkpoint ", dir_, ": no tensor '", name, "'");
  return *it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, view] : index_) out.push_back(name);
  return out;
}

// ---- writing -------------------------------------------------------------------------------------

namespace {

// Header JSON as the reference writer lays it out: __metadata__ first, then the tensors in data
// order, padded with spaces so the data section starts 8-byte aligned.
std::string make_header(const std::vector<const TensorToWrite*>& order,
                        const std::map<std::string, std::string>& metadata) {
  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":" + json(metadata).dump();
    first = false;
  }
  std::uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    if (!first) h += ",";
    first = false;
    json entry = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + t->nbytes}}};
    // nlohmann sorts keys alphabetically (data_offsets, dtype, shape); the order is irrelevant to readers.
    h += json(t->name).dump() + ":" + entry.dump();
    offset += t->nbytes;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  return h;
}

void write_safetensors_file(const std::string& path, std::vector<const TensorToWrite*> order,
                            const std::map<std::string, std::string>& metadata) {
  // Larger elements first, then by name (as the reference writer does): every tensor then starts
  // at a multiple of its element size, so mmap readers get aligned data.
  std::stable_sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    std::size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  const std::string header = make_header(order, metadata);
  replace_file_atomic(path, [&](const std::string& tmp) {
    BinaryFileWriter out(tmp, path);
    std::uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>((std::uint64_t(header.size()) >> (8 * i)) & 0xFF);
    out.write(len, 8);
    out.write(header);
    for (const TensorToWrite* t : order)
      if (t->nbytes) out.write(t->data, t->nbytes);
    out.close();
  });
}

void validate_tensors_to_write(const std::vector<TensorToWrite>& tensors, const std::string& dir) {
  std::set<std::string> seen;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty()) fail("write_checkpoint ", dir, ": a tensor has an empty name");
    if (t.name == "__metadata__") fail("write_checkpoint ", dir, ": '__metadata__' is not a valid tensor name");
    if (!seen.insert(t.name).second) fail("write_checkpoint ", dir, ": duplicate tensor '", t.name, "'");
    std::uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail("write_checkpoint ", dir, ": tensor '", t.name, "' has a negative dimension");
      numel *= static_cast<std::uint64_t>(d);
    }
    if (numel * dtype_size(t.dtype) != t.nbytes)
      fail("write_checkpoint ", dir, ": tensor '", t.name, "' has ", t.nbytes, " bytes but shape ", shape_text(t.shape),
           " of ", dtype_name(t.dtype), " needs ", numel * dtype_size(t.dtype));
    if (t.nbytes && !t.data) fail("write_checkpoint ", dir, ": tensor '", t.name, "' has no data");
  }
}

std::string shard_name(std::size_t k, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

// Files of an earlier checkpoint in dir that the new one does not use.
void remove_stale(const fs::path& dir, const std::set<std::string>& keep) {
  static const std::regex shard_re(R"(model-\d{5}-of-\d{5}\.safetensors)");
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    bool ours = name == kSingleFile || name == kIndexFile || std::regex_match(name, shard_re);
    if (ours && !keep.count(name)) fs::remove(entry.path(), ec);
  }
  fsync_path(dir.string());
}

}  // namespace

void write_checkpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors, std::size_t max_shard_bytes,
                      const std::map<std::string, std::string>& metadata) {
  validate_tensors_to_write(tensors, dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir)) fail("write_checkpoint: cannot create directory ", dir);

  // Greedy packing in the given order: a new shard starts when the next tensor would overflow.
  std::vector<std::vector<const TensorToWrite*>> shards(1);
  std::uint64_t total = 0, current = 0;
  for (const TensorToWrite& t : tensors) {
    if (current > 0 && current + t.nbytes > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(&t);
    current += t.nbytes;
    total += t.nbytes;
  }

  if (shards.size() == 1) {
    write_safetensors_file((fs::path(dir) / kSingleFile).string(), shards[0], metadata);
    remove_stale(dir, {kSingleFile});
    return;
  }
  json weight_map = json::object();
  std::set<std::string> keep = {kIndexFile};
  for (std::size_t k = 0; k < shards.size(); ++k) {
    const std::string name = shard_name(k + 1, shards.size());
    write_safetensors_file((fs::path(dir) / name).string(), shards[k], metadata);
    for (const TensorToWrite* t : shards[k]) weight_map[t->name] = name;
    keep.insert(name);
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic((fs::path(dir) / kIndexFile).string(), index.dump(2) + "\n");
  remove_stale(dir, keep);
}

}  // namespace evoq::io
