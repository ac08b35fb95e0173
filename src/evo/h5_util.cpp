#include "evoq/evo/h5_util.h"

#include <ctime>
#include <filesystem>

#include "evoq/core/error.h"
#include "evoq/io/atomic_file.h"

namespace evoq::evo::h5 {

template <> const H5::PredType& native_type<std::int8_t>() { return H5::PredType::NATIVE_INT8; }
template <> const H5::PredType& native_type<std::uint8_t>() { return H5::PredType::NATIVE_UINT8; }
template <> const H5::PredType& native_type<std::int32_t>() { return H5::PredType::NATIVE_INT32; }
template <> const H5::PredType& native_type<std::int64_t>() { return H5::PredType::NATIVE_INT64; }
template <> const H5::PredType& native_type<std::uint64_t>() { return H5::PredType::NATIVE_UINT64; }
template <> const H5::PredType& native_type<double>() { return H5::PredType::NATIVE_DOUBLE; }
template <> const H5::PredType& native_type<float>() { return H5::PredType::NATIVE_FLOAT; }

namespace {
H5::StrType utf8_vlen() {
  H5::StrType t(H5::PredType::C_S1, H5T_VARIABLE);
  t.setCset(H5T_CSET_UTF8);
  return t;
}
}  // namespace

template <typename T>
void write_vector(H5::Group& where, const std::string& name, const std::vector<T>& values) {
  const hsize_t n = values.size();
  H5::DataSpace space(1, &n);
  auto ds = where.createDataSet(name, native_type<T>(), space);
  if (n) ds.write(values.data(), native_type<T>());
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

template <typename T>
std::vector<T> read_vector(const H5::Group& where, const std::string& name) {
  EVOQ_CHECK(where.nameExists(name), "HDF5 dataset '", name, "' is missing");
  auto ds = where.openDataSet(name);
  auto space = ds.getSpace();
  EVOQ_CHECK(space.getSimpleExtentNdims() == 1, "HDF5 dataset '", name, "' is not 1-D");
  hsize_t n = 0;
  space.getSimpleExtentDims(&n);
  std::vector<T> out(n);
  if (n) ds.read(out.data(), native_type<T>());
  return out;
}

std::vector<std::string> read_strings(const H5::Group& where, const std::string& name) {
  EVOQ_CHECK(where.nameExists(name), "HDF5 dataset '", name, "' is missing");
  auto ds = where.openDataSet(name);
  auto space = ds.getSpace();
  hsize_t n = 0;
  space.getSimpleExtentDims(&n);
  std::vector<std::string> out;
  if (!n) return out;
  auto type = utf8_vlen();
  std::vector<char*> ptrs(n, nullptr);
  ds.read(ptrs.data(), type);
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

H5::H5File open_read(const std::string& path) {
  EVOQ_CHECK(std::filesystem::exists(path), "'", path, "' does not exist");
  H5::Exception::dontPrint();
  try {
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    fail("'", path, "' is not a readable HDF5 file (", e.getDetailMsg(), ")");
  }
}

void write_file_atomic(const std::string& path, const std::function<void(H5::H5File&)>& write) {
  H5::Exception::dontPrint();
  io::replace_file_atomic(path, [&](const std::string& tmp) {
    try {
      H5::H5File file(tmp, H5F_ACC_TRUNC);
      write(file);
      file.close();
    } catch (const H5::Exception& e) {
      fail("cannot write '", path, "': HDF5 error in ", e.getFuncName(), ": ", e.getDetailMsg());
    }
  });
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

template void write_vector(H5::Group&, const std::string&, const std::vector<std::int8_t>&);
template void write_vector(H5::Group&, const std::string&, const std::vector<std::uint8_t>&);
template void write_vector(H5::Group&, const std::string&, const std::vector<std::int32_t>&);
template void write_vector(H5::Group&, const std::string&, const std::vector<std::int64_t>&);
template void write_vector(H5::Group&, const std::string&, const std::vector<std::uint64_t>&);
template void write_vector(H5::Group&, const std::string&, const std::vector<double>&);
template void write_vector(H5::Group&, const std::string&, const std::vector<float>&);
template std::vector<std::int8_t> read_vector(const H5::Group&, const std::string&);
template std::vector<std::uint8_t> read_vector(const H5::Group&, const std::string&);
template std::vector<std::int32_t> read_vector(const H5::Group&, const std::string&);
template std::vector<std::int64_t> read_vector(const H5::Group&, const std::string&);
template std::vector<std::uint64_t> read_vector(const H5::Group&, const std::string&);
template std::vector<double> read_vector(const H5::Group&, const std::string&);
template std::vector<float> read_vector(const H5::Group&, const std::string&);

}  // namespace evoq::evo::h5
