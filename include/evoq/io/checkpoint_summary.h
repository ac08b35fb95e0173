#pragma once
// A human- and script-readable listing of a checkpoint (`evoq inspect-checkpoint`): one line per
// tensor, "name<TAB>dtype<TAB>[d0,d1,...]<TAB>sha256 of the raw little-endian bytes", sorted by name.
#include <ostream>

#include "evoq/io/safetensors.h"

namespace evoq::io {

void print_checkpoint_summary(const Checkpoint& checkpoint, std::ostream& out, bool with_hash = true);

}  // namespace evoq::io
