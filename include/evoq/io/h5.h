#pragma once
// The one HDF5 wrapper of evoq (pairs.h5, label shards, labels.h5, estimates, rollouts, trainer and
// optimizer state, eval score files): 1-D datasets of numbers and UTF-8 strings, scalar attributes,
// crash-safe whole-file writes, and integrity checks on read.
//
// Writing: write_file_atomic() builds the file in memory (HDF5's core driver, no backing store) and
// writes the finished image itself (temporary name, fsync, rename, fsync of the folder). HDF5 never
// touches the disk while writing, so a full disk or any other I/O error is a plain errno failure of
// ours ("cannot write 'F': No space left on device") instead of an HDF5 library state that crashes
// in H5Fclose (seen with HDF5 1.10.8 after a failed H5Dwrite). Cost: the file's size in host memory
// while it is written.
//
// Integrity: numeric datasets are chunked with HDF5's Fletcher32 filter (HDF5 verifies it on every
// read); the attributes, the string datasets and every dataset's name/type/shape are covered by a
// SHA-256 stored in the root attribute "evoq_sha256" (docs/FORMATS.md "Integrity"). open_read()
// verifies it when present (files made by other tools, e.g. h5py, may omit it) and every read names
// the file on a mismatch.
#include <H5Cpp.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace evoq::io::h5 {

inline constexpr const char* kDigestAttribute = "evoq_sha256";

template <typename T>
void write_vector(H5::Group& where, const std::string& name, const std::vector<T>& values);
// Raw values of a numeric type (for tensors: element type by `type`, `count` elements).
void write_raw(H5::Group& where, const std::string& name, const H5::PredType& type, const void* data,
               std::uint64_t count);
void write_strings(H5::Group& where, const std::string& name, const std::vector<std::string>& values);

template <typename T>
std::vector<T> read_vector(const H5::Group& where, const std::string& name);
void read_raw(const H5::Group& where, const std::string& name, const H5::PredType& type, void* data,
              std::uint64_t count);
std::uint64_t dataset_length(const H5::Group& where, const std::string& name);
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

// Opens an existing file read-only and verifies its evoq_sha256 when it has one. Throws evoq::Error
// naming the file when it is missing, not HDF5 (e.g. truncated) or corrupt.
H5::H5File open_read(const std::string& path);

// Writes a new HDF5 file crash-safely: write(file) fills an in-memory file, the digest is added, and
// the image is written to "<path>.tmp.<pid>", fsynced and renamed over path (then the folder is
// fsynced). A crash leaves the old file or the new one; an error (disk full...) leaves the old one
// and throws evoq::Error naming path and the system's reason.
void write_file_atomic(const std::string& path, const std::function<void(H5::H5File&)>& write);

// The SHA-256 that write_file_atomic stores: attributes (but evoq_sha256), string datasets and the
// name/type/shape of every dataset, in name order.
std::string content_digest(const H5::Group& root);

// The innermost message of the current HDF5 error stack (often the system's errno text), or "".
std::string error_detail();

// Current UTC time as ISO 8601 ("2026-11-22T02:30:00Z").
std::string utc_now();

}  // namespace evoq::io::h5
