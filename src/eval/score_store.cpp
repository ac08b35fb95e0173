#include "evoq/eval/score_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include <hdf5.h>

#include "evoq/core/error.h"

namespace evoq::eval {
namespace {

constexpr int kSchemaVersion = 1;

// fsync a path (a directory may refuse with EINVAL; the rename is still atomic there).
// Same contract as io::fsync_path / io::replace_file_atomic; kept local until the io layer lands in main.
void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open ", path, " to fsync: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0 && saved != EINVAL) fail("fsync failed for ", path, ": ", std::strerror(saved));
}

void replace_atomic(const std::string& path, const std::function<void(const std::string&)>& write) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    write(tmp);
    fsync_path(tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename ", tmp, " to ", path, ": ", std::strerror(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  const auto parent = std::filesystem::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string());
}

// RAII for HDF5 ids.
struct Id {
  hid_t id;
  herr_t (*close)(hid_t);
  Id(hid_t i, herr_t (*c)(hid_t), const std::string& what) : id(i), close(c) {
    EVOQ_CHECK(i >= 0, "HDF5: ", what);
  }
  ~Id() { close(id); }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  operator hid_t() const { return id; }
};

Id string_type() {
  Id t(H5Tcopy(H5T_C_S1), H5Tclose, "string type");
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return Id(H5Tcopy(t), H5Tclose, "string type");
}

void write_strings(hid_t file, const char* name, const std::vector<std::string>& values, const std::string& path) {
  const hsize_t n = values.size();
  Id space(H5Screate_simple(1, &n, nullptr), H5Sclose, "dataspace");
  Id type = string_type();
  Id ds(H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose, path + ": create " + name);
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n) EVOQ_CHECK(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) >= 0, "HDF5: ", path, ": write ", name);
}

std::vector<std::string> read_strings(hid_t file, const char* name, const std::string& path) {
  Id ds(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose, path + ": no dataset " + name);
  Id space(H5Dget_space(ds), H5Sclose, "dataspace");
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  std::vector<char*> ptrs(static_cast<std::size_t>(n), nullptr);
  Id type = string_type();
  std::vector<std::string> out;
  if (n > 0) {
    EVOQ_CHECK(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) >= 0, "HDF5: ", path, ": read ", name);
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    H5Dvlen_reclaim(type, space, H5P_DEFAULT, ptrs.data());
  }
  return out;
}

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  Id space(H5Screate(H5S_SCALAR), H5Sclose, "dataspace");
  Id type = string_type();
  Id attr(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, std::string("attribute ") + name);
  const char* p = value.c_str();
  H5Awrite(attr, type, &p);
}

std::string read_string_attr(hid_t obj, const char* name, const std::string& path) {
  Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose, path + ": no attribute " + name);
  Id type = string_type();
  char* p = nullptr;
  EVOQ_CHECK(H5Aread(attr, type, &p) >= 0, "HDF5: ", path, ": read attribute ", name);
  std::string out = p ? p : "";
  H5free_memory(p);
  return out;
}

}  // namespace

void ScoreStore::write_file(const std::string& path, const std::string& model, const std::vector<ScoreRecord>& records) {
  Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "cannot create " + path);
  {
    Id space(H5Screate(H5S_SCALAR), H5Sclose, "dataspace");
    Id attr(H5Acreate2(file, "schema_version", H5T_NATIVE_INT, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, "attribute");
    H5Awrite(attr, H5T_NATIVE_INT, &kSchemaVersion);
  }
  write_string_attr(file, "model", model);
  write_string_attr(file, "created_by", "evoq eval");
  std::vector<std::string> datasets, images, reasons;
  std::vector<double> scores;
  for (const auto& r : records) {
    datasets.push_back(r.dataset);
    images.push_back(r.image);
    reasons.push_back(r.invalid_reason);
    scores.push_back(r.valid() ? r.score : std::nan(""));
  }
  write_strings(file, "dataset", datasets, path);
  write_strings(file, "image", images, path);
  write_strings(file, "invalid_reason", reasons, path);
  const hsize_t n = scores.size();
  Id space(H5Screate_simple(1, &n, nullptr), H5Sclose, "dataspace");
  Id ds(H5Dcreate2(file, "score", H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
        path + ": create score");
  if (n) EVOQ_CHECK(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, scores.data()) >= 0, "HDF5: write score");
}

std::vector<ScoreRecord> ScoreStore::read_file(const std::string& path, std::string* model) {
  Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, "cannot open score file " + path);
  int version = 0;
  {
    Id attr(H5Aopen(file, "schema_version", H5P_DEFAULT), H5Aclose, path + ": no schema_version (not a score file)");
    H5Aread(attr, H5T_NATIVE_INT, &version);
  }
  EVOQ_CHECK(version == kSchemaVersion, path, ": score file schema_version ", version, ", expected ", kSchemaVersion);
  if (model) *model = read_string_attr(file, "model", path);
  const auto datasets = read_strings(file, "dataset", path), images = read_strings(file, "image", path),
             reasons = read_strings(file, "invalid_reason", path);
  Id ds(H5Dopen2(file, "score", H5P_DEFAULT), H5Dclose, path + ": no dataset score");
  std::vector<double> scores(datasets.size());
  if (!scores.empty())
    EVOQ_CHECK(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, scores.data()) >= 0, "HDF5: read score");
  EVOQ_CHECK(images.size() == datasets.size() && reasons.size() == datasets.size(), path, ": datasets of unequal length");
  std::vector<ScoreRecord> out(datasets.size());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = {datasets[i], images[i], scores[i], reasons[i]};
  return out;
}

ScoreStore::ScoreStore(std::string path, std::string model, std::size_t flush_every)
    : path_(std::move(path)), model_(std::move(model)), flush_every_(flush_every ? flush_every : 1) {
  if (!std::filesystem::exists(path_)) return;
  std::string stored_model;
  for (auto& r : read_file(path_, &stored_model)) {
    index_[{r.dataset, r.image}] = records_.size();
    records_.push_back(std::move(r));
  }
  EVOQ_CHECK(stored_model == model_, path_, ": holds scores of model '", stored_model, "', not '", model_,
             "'; use another --out directory");
}

bool ScoreStore::contains(const std::string& dataset, const std::string& image) const {
  return index_.contains({dataset, image});
}

const ScoreRecord* ScoreStore::find(const std::string& dataset, const std::string& image) const {
  const auto it = index_.find({dataset, image});
  return it == index_.end() ? nullptr : &records_[it->second];
}

void ScoreStore::add(ScoreRecord record) {
  const auto key = std::make_pair(record.dataset, record.image);
  if (const auto it = index_.find(key); it != index_.end()) {
    records_[it->second] = std::move(record);
  } else {
    index_[key] = records_.size();
    records_.push_back(std::move(record));
  }
  if (++pending_ >= flush_every_) flush();
}

void ScoreStore::flush() {
  if (pending_ == 0 && std::filesystem::exists(path_)) return;
  replace_atomic(path_, [&](const std::string& tmp) { write_file(tmp, model_, records_); });
  pending_ = 0;
}

}  // namespace evoq::eval
