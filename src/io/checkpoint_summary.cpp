#include "evoq/io/checkpoint_summary.h"

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

}  // namespace evoq::io
