#include "evoq/io/h5.h"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "evoq/core/error.h"
#include "evoq/io/atomic_file.h"
#include "evoq/io/sha256.h"

namespace evoq::io::h5 {

namespace {

// Chunks of at most 4 MiB: Fletcher32 is computed and checked per chunk.
constexpr std::uint64_t kChunkBytes = 4u << 20;
// The core driver grows its image by this much at a time (realloc; large blocks grow by mremap).
constexpr std::size_t kCoreIncrement = 1u << 20;

template <typename T>
const H5::PredType& native_type();
template <> const H5::PredType& native_type<std::int8_t>() { return H5::PredType::NATIVE_INT8; }
template <> const H5::PredType& native_type<std::uint8_t>() { return H5::PredType::NATIVE_UINT8; }
template <> const H5::PredType& native_type<std::int32_t>() { return H5::PredType::NATIVE_INT32; }
template <> const H5::PredType& native_type<std::int64_t>() { return H5::PredType::NATIVE_INT64; }
template <> const H5::PredType& native_type<std::uint64_t>() { return H5::PredType::NATIVE_UINT64; }
template <> const H5::PredType& native_type<double>() { return H5::PredType::NATIVE_DOUBLE; }
template <> const H5::PredType& native_type<float>() { return H5::PredType::NATIVE_FLOAT; }

H5::StrType utf8_vlen() {
  H5::StrType t(H5::PredType::C_S1, H5T_VARIABLE);
  t.setCset(H5T_CSET_UTF8);
  return t;
}

std::string file_of(const H5::H5Location& where) {
  try {
    return where.getFileName();
  } catch (const H5::Exception&) {
    return "(HDF5 file)";
  }
}

// What a failed HDF5 call says: the C++ API's message, plus the innermost reason when there is one.
std::string describe(const H5::Exception& e) {
  std::string text = e.getDetailMsg();
  const std::string inner = error_detail();
  if (!inner.empty() && inner != text) text += " (" + inner + ")";
  return text;
}

void create_numeric(H5::Group& where, const std::string& name, const H5::PredType& type, const void* data,
                    std::uint64_t count) {
  const hsize_t n = count;
  H5::DataSpace space(1, &n);
  H5::DSetCreatPropList plist;
  if (n > 0) {
    const hsize_t chunk = std::clamp<hsize_t>(kChunkBytes / std::max<std::size_t>(1, type.getSize()), 1, n);
    plist.setChunk(1, &chunk);
    plist.setFletcher32();
  }
  auto ds = where.createDataSet(name, type, space, plist);
  if (n) ds.write(data, type);
}

// The checksummed description of one attribute: name, then its value as text or raw bytes.
void hash_attribute(Sha256& h, const H5::Attribute& attr) {
  const std::string name = attr.getName();
  h.update(name.data(), name.size() + 1);
  const auto type_class = attr.getTypeClass();
  if (type_class == H5T_STRING) {
    std::string value;
    attr.read(attr.getStrType(), value);
    const std::uint64_t size = value.size();
    h.update(&size, sizeof size);
    h.update(value.data(), value.size());
    return;
  }
  const auto type = attr.getDataType();
  const std::size_t bytes = std::size_t(attr.getStorageSize());
  std::vector<char> raw(bytes);
  if (bytes) attr.read(type, raw.data());
  const std::uint64_t size = bytes;
  h.update(&size, sizeof size);
  h.update(raw.data(), raw.size());
}

}  // namespace

std::string error_detail() {
  // Walk from the outermost call inwards; the last description is the most specific (for a write
  // that failed in the sec2 driver it carries the errno text).
  std::string innermost;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* err, void* data) -> herr_t {
        auto* out = static_cast<std::string*>(data);
        if (err && err->desc && out->empty()) {
          std::string desc = err->desc;
          const auto at = desc.find("error message = '");
          if (at != std::string::npos) {
            const auto start = at + std::strlen("error message = '");
            desc = desc.substr(start, desc.find('\'', start) - start);
          }
          *out = desc;
        }
        return 0;
      },
      &innermost);
  return innermost;
}

template <typename T>
void write_vector(H5::Group& where, const std::string& name, const std::vector<T>& values) {
  create_numeric(where, name, native_type<T>(), values.data(), values.size());
}

void write_raw(H5::Group& where, const std::string& name, const H5::PredType& type, const void* data,
               std::uint64_t count) {
  create_numeric(where, name, type, data, count);
}

void write_strings(H5::Group& where, const std::string& name, const std::vector<std::string>& values) {
  const hsize_t n = values.size();
  H5::DataSpace space(1, &n);
  auto type = utf8_vlen();
  auto ds = where.createDataSet(name, type, space);
  std::vector<const char*> ptrs;
  ptrs.reserve(values.size());
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (n) ds.write(ptrs.data(), type);
}

bool has_dataset(const H5::Group& where, const std::string& name) { return where.nameExists(name); }

std::uint64_t dataset_length(const H5::Group& where, const std::string& name) {
  EVOQ_CHECK(where.nameExists(name), "'", file_of(where), "': HDF5 dataset '", name, "' is missing");
  auto space = where.openDataSet(name).getSpace();
  EVOQ_CHECK(space.getSimpleExtentNdims() == 1, "'", file_of(where), "': HDF5 dataset '", name, "' is not 1-D");
  hsize_t n = 0;
  space.getSimpleExtentDims(&n);
  return n;
}

void read_raw(const H5::Group& where, const std::string& name, const H5::PredType& type, void* data,
              std::uint64_t count) {
  const auto n = dataset_length(where, name);
  EVOQ_CHECK(n == count, "'", file_of(where), "': HDF5 dataset '", name, "' has ", n, " values, expected ", count);
  if (!n) return;
  try {
    where.openDataSet(name).read(data, type);
  } catch (const H5::Exception& e) {
    fail("'", file_of(where), "': cannot read dataset '", name, "': ", describe(e),
         " — the file is corrupt (checksum) or unreadable");
  }
}

template <typename T>
std::vector<T> read_vector(const H5::Group& where, const std::string& name) {
  std::vector<T> out(dataset_length(where, name));
  read_raw(where, name, native_type<T>(), out.data(), out.size());
  return out;
}

std::vector<std::string> read_strings(const H5::Group& where, const std::string& name) {
  const auto n = dataset_length(where, name);
  std::vector<std::string> out;
  if (!n) return out;
  auto ds = where.openDataSet(name);
  auto space = ds.getSpace();
  auto type = utf8_vlen();
  std::vector<char*> ptrs(n, nullptr);
  try {
    ds.read(ptrs.data(), type);
  } catch (const H5::Exception& e) {
    fail("'", file_of(where), "': cannot read dataset '", name, "': ", describe(e));
  }
  out.reserve(n);
  for (char* p : ptrs) out.emplace_back(p ? p : "");
  H5::DataSet::vlenReclaim(ptrs.data(), type, space);
  return out;
}

void set_attr(H5::H5Object& obj, const std::string& name, const std::string& value) {
  auto type = utf8_vlen();
  auto attr = obj.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  const char* p = value.c_str();
  attr.write(type, &p);
}
void set_attr(H5::H5Object& obj, const std::string& name, std::int64_t value) {
  obj.createAttribute(name, H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_INT64, &value);
}
void set_attr_u64(H5::H5Object& obj, const std::string& name, std::uint64_t value) {
  obj.createAttribute(name, H5::PredType::NATIVE_UINT64, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_UINT64, &value);
}
void set_attr(H5::H5Object& obj, const std::string& name, double value) {
  obj.createAttribute(name, H5::PredType::NATIVE_DOUBLE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_DOUBLE, &value);
}
bool has_attr(const H5::H5Object& obj, const std::string& name) { return obj.attrExists(name); }

std::string get_attr_string(const H5::H5Object& obj, const std::string& name) {
  EVOQ_CHECK(obj.attrExists(name), "HDF5 attribute '", name, "' is missing");
  auto attr = obj.openAttribute(name);
  std::string out;
  attr.read(attr.getStrType(), out);
  return out;
}
std::int64_t get_attr_int(const H5::H5Object& obj, const std::string& name) {
  EVOQ_CHECK(obj.attrExists(name), "HDF5 attribute '", name, "' is missing");
  std::int64_t v = 0;
  obj.openAttribute(name).read(H5::PredType::NATIVE_INT64, &v);
  return v;
}
std::uint64_t get_attr_u64(const H5::H5Object& obj, const std::string& name) {
  EVOQ_CHECK(obj.attrExists(name), "HDF5 attribute '", name, "' is missing");
  std::uint64_t v = 0;
  obj.openAttribute(name).read(H5::PredType::NATIVE_UINT64, &v);
  return v;
}

std::string content_digest(const H5::Group& root) {
  Sha256 h;
  std::vector<std::string> attributes;
  for (int a = 0, n = root.getNumAttrs(); a < n; ++a) attributes.push_back(root.openAttribute(unsigned(a)).getName());
  std::sort(attributes.begin(), attributes.end());
  for (const auto& name : attributes)
    if (name != kDigestAttribute) hash_attribute(h, root.openAttribute(name));
  std::vector<std::string> datasets;
  for (hsize_t i = 0, n = root.getNumObjs(); i < n; ++i)
    if (root.getObjTypeByIdx(i) == H5G_DATASET) datasets.push_back(root.getObjnameByIdx(i));
  std::sort(datasets.begin(), datasets.end());
  for (const auto& name : datasets) {
    auto ds = root.openDataSet(name);
    h.update(name.data(), name.size() + 1);
    const std::int32_t type_class = ds.getTypeClass();
    const std::uint64_t element = ds.getDataType().getSize();
    h.update(&type_class, sizeof type_class);
    h.update(&element, sizeof element);
    auto space = ds.getSpace();
    const int rank = space.getSimpleExtentNdims();
    std::vector<hsize_t> dims(std::size_t(std::max(rank, 0)));
    if (rank > 0) space.getSimpleExtentDims(dims.data());
    for (auto d : dims) {
      const std::uint64_t v = d;
      h.update(&v, sizeof v);
    }
    if (type_class == H5T_STRING) {
      for (const auto& s : read_strings(root, name)) {
        const std::uint64_t size = s.size();
        h.update(&size, sizeof size);
        h.update(s.data(), s.size());
      }
    }
  }
  return h.hex_digest();
}

namespace {
H5::H5File open_existing(const std::string& path) {
  try {
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    fail("'", path, "' is not a readable HDF5 file (", describe(e), "; truncated or not HDF5)");
  }
}
}  // namespace

H5::H5File open_read(const std::string& path) {
  EVOQ_CHECK(std::filesystem::exists(path), "'", path, "' does not exist");
  H5::Exception::dontPrint();
  H5::H5File file = open_existing(path);
  if (file.attrExists(kDigestAttribute)) {
    std::string want, have;
    try {
      want = get_attr_string(file, kDigestAttribute);
      have = content_digest(file);
    } catch (const H5::Exception& e) {
      fail("'", path, "' is corrupt: ", describe(e));
    }
    EVOQ_CHECK(want == have, "'", path, "' is corrupt: its content does not match its checksum (", kDigestAttribute,
               ")");
  }
  return file;
}

void write_file_atomic(const std::string& path, const std::function<void(H5::H5File&)>& write) {
  H5::Exception::dontPrint();
  // Build the whole file in memory; HDF5 does no I/O of its own.
  H5::FileAccPropList fapl;
  if (H5Pset_fapl_core(fapl.getId(), kCoreIncrement, /*backing_store=*/0) < 0)
    fail("cannot write '", path, "': HDF5 core driver unavailable");
  std::unique_ptr<H5::H5File> file;
  try {
    file = std::make_unique<H5::H5File>(path + ".inmemory", H5F_ACC_TRUNC, H5::FileCreatPropList::DEFAULT, fapl);
    write(*file);
    set_attr(*file, kDigestAttribute, content_digest(*file));
    file->flush(H5F_SCOPE_GLOBAL);
  } catch (const H5::Exception& e) {
    fail("cannot write '", path, "': HDF5 error in ", e.getFuncName(), ": ", describe(e));
  }
  // The finished image: its size, and the core driver's buffer holding it (no copy).
  const ssize_t size = H5Fget_file_image(file->getId(), nullptr, 0);
  void* handle = nullptr;
  if (size < 0 || H5Fget_vfd_handle(file->getId(), fapl.getId(), &handle) < 0 || handle == nullptr)
    fail("cannot write '", path, "': cannot get the HDF5 file image");
  const void* image = *static_cast<void**>(handle);
  replace_file_atomic(path, [&](const std::string& tmp) {
    BinaryFileWriter out(tmp, path);
    out.write(image, std::size_t(size));
    out.close();
  });
  file->close();
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

#define EVOQ_H5_INSTANTIATE(T)                                                                    \
  template void write_vector(H5::Group&, const std::string&, const std::vector<T>&);               \
  template std::vector<T> read_vector(const H5::Group&, const std::string&);
EVOQ_H5_INSTANTIATE(std::int8_t)
EVOQ_H5_INSTANTIATE(std::uint8_t)
EVOQ_H5_INSTANTIATE(std::int32_t)
EVOQ_H5_INSTANTIATE(std::int64_t)
EVOQ_H5_INSTANTIATE(std::uint64_t)
EVOQ_H5_INSTANTIATE(double)
EVOQ_H5_INSTANTIATE(float)
#undef EVOQ_H5_INSTANTIATE

}  // namespace evoq::io::h5
