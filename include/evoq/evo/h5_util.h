#pragma once
// Small helpers over the HDF5 C++ API for the evo files (pairs.h5, label shards, labels.h5):
// 1-D datasets of numbers and variable-length UTF-8 strings, scalar attributes, and crash-safe
// replacement of a whole file (temporary name, fsync, rename, fsync of the folder).
#include <H5Cpp.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace evoq::evo::h5 {

template <typename T>
const H5::PredType& native_type();

template <typename T>
void write_vector(H5::Group& where, const std::string& name, const std::vector<T>& values);
void write_strings(H5::Group& where, const std::string& name, const std::vector<std::string>& values);

template <typename T>
std::vector<T> read_vector(const H5::Group& where, const std::string& name);
std::vector<std::string> read_strings(const H5::Group& where, const std::string& name);
bool has_dataset(const H5::Group& where, const std::string& name);

void set_attr(H5::H5Object& obj, const std::string& name, const std::string& value);
void set_attr(H5::H5Object& obj, const std::string& name, std::int64_t value);
void set_attr_u64(H5::H5Object& obj, const std::string& name, std::uint64_t value);
void set_attr(H5::H5Object& obj, const std::string& name, double value);
std::string get_attr_string(const H5::H5Object& obj, const std::string& name);
std::int64_t get_attr_int(const H5::H5Object& obj, const std::string& name);
std::uint64_t get_attr_u64(const H5::H5Object& obj, const std::string& name);
bool has_attr(const H5::H5Object& obj, const std::string& name);

// Opens an existing file read-only; throws evoq::Error naming the file when it is not a readable HDF5 file.
H5::H5File open_read(const std::string& path);

// Writes a new HDF5 file crash-safely through io::replace_file_atomic: write(file) fills
// "<path>.tmp.<pid>", which is closed, fsynced and renamed over path, then the folder is fsynced.
// A crash leaves the old file or the new one.
void write_file_atomic(const std::string& path, const std::function<void(H5::H5File&)>& write);

// Current UTC time as ISO 8601 ("2026-11-22T02:30:00Z").
std::string utc_now();

}  // namespace evoq::evo::h5
