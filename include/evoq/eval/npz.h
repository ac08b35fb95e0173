#pragma once
// Reads float64 arrays from a NumPy .npz archive (a zip of .npy files). Only what the NIQE parameters
// need: stored (uncompressed) zip entries, which is what np.savez writes, and little-endian '<f8' data in
// C or (2-D) Fortran order. Anything else is refused with an error naming the file and entry.
#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace evoq::eval {

struct NpyArray {
  std::vector<std::size_t> shape;
  std::vector<double> data;  // row-major
};

std::map<std::string, NpyArray> read_npz(const std::string& path);

// Parses one .npy file image (bytes); `source` names it in errors.
NpyArray parse_npy(const std::string& bytes, const std::string& source);

}  // namespace evoq::eval
