#include "evoq/io/checkpoint_summary.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "evoq/core/error.h"
#include "evoq/io/sha256.h"

namespace evoq::io {

void print_checkpoint_summary(const Checkpoint& checkpoint, std::ostream& out, bool with_hash) {
  for (const std::string& name : checkpoint.names()) {
    const TensorView& t = checkpoint.get(name);
    out << name << '\t' << dtype_name(t.dtype) << "\t[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) out << (i ? "," : "") << t.shape[i];
    out << ']';
    if (with_hash) out << '\t' << sha256_hex(t.data, t.nbytes);
    out << '\n';
  }
}

std::string weights_checksum(const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(model_dir, ec))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") files.push_back(entry.path());
  EVOQ_CHECK(!ec, "cannot list the model folder '", model_dir, "': ", ec.message());
  EVOQ_CHECK(!files.empty(), "no .safetensors file in '", model_dir, "'");
  std::sort(files.begin(), files.end());
  std::string lines;
  std::vector<char> buf(std::size_t(1) << 22);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    EVOQ_CHECK(in, "cannot read '", f.string(), "'");
    Sha256 h;
    while (in) {
      in.read(buf.data(), std::streamsize(buf.size()));
      h.update(buf.data(), std::size_t(in.gcount()));
    }
    lines += f.filename().string() + " " + h.hex_digest() + "\n";
  }
  return sha256_hex(lines.data(), lines.size());
}

}  // namespace evoq::io
