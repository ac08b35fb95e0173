#pragma once
// A human- and script-readable listing of a checkpoint (`evoq inspect-checkpoint`): one line per
// tensor, "name<TAB>dtype<TAB>[d0,d1,...]<TAB>sha256 of the raw little-endian bytes", sorted by name.
#include <ostream>

#include "evoq/io/safetensors.h"

namespace evoq::io {

void print_checkpoint_summary(const Checkpoint& checkpoint, std::ostream& out, bool with_hash = true);

// Fingerprint of a checkpoint directory's weights: sha256 of the lines "<file name> <sha256 of the
// file>\n" over its *.safetensors files in name order (labels.h5 records it; a resume refuses other
// weights). Reads every byte once; throws evoq::Error when there is no safetensors file.
std::string weights_checksum(const std::string& model_dir);

}  // namespace evoq::io
