#pragma once
// safetensors checkpoints (Hugging Face format): memory-mapped reading of single files and sharded
// directories (model.safetensors.index.json), strict header validation, and writing (sharded with an
// index above a size threshold) so that saved models load in transformers unchanged. Torch-free: the
// model layer turns TensorView into torch tensors.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "evoq/io/dtype.h"

namespace evoq::io {

// A tensor inside a mapped file: valid while the owning SafetensorsFile / Checkpoint lives. data is
// only as aligned as the file makes it (our writer and the reference one align each tensor to its
// element size; other writers may not), so copy or use unaligned loads when in doubt.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::uint8_t* data = nullptr;
  std::size_t nbytes = 0;
  int64_t numel() const;
};

// One .safetensors file, memory-mapped read-only. open() validates: header length inside the file,
// well-formed JSON, known dtypes, every byte range inside the data section and equal to
// shape x dtype size, no overlapping ranges. Errors name the file and the tensor.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // Parses and validates a header from memory (the fuzz target's entry point); file_size is the
  // total size of the file the header came from.
  // `bytes` is the whole file (from the 8-byte header length on) and `size` its length; the views
  // point into `bytes`. metadata, when given, receives the "__metadata__" strings.
  static std::map<std::string, TensorView> parse_header(const std::uint8_t* bytes, std::size_t size,
                                                        const std::string& path_for_errors,
                                                        std::map<std::string, std::string>* metadata = nullptr);
  ~SafetensorsFile();
  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: model.safetensors, or else the shards listed in
// model.safetensors.index.json (every listed shard must exist and contain what the index says),
// the same precedence as transformers. open() also accepts the path of a single .safetensors file.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);
  bool contains(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws evoq::Error naming the key and dir
  std::vector<std::string> names() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// A tensor to write: bytes are copied from `data` (little-endian, contiguous).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::size_t nbytes = 0;
};

// Writes tensors into dir (created if missing) as model.safetensors, or as
// model-0000k-of-0000n.safetensors shards plus model.safetensors.index.json when the total exceeds
// max_shard_bytes (tensors are packed in the given order; one larger than the limit gets its own
// shard). Each file is written to a temporary name, fsynced and renamed, so a crash never leaves a
// half-written file under the real name; the index is written after its shards, and files of a
// previous checkpoint in the other layout are removed last. Throws evoq::Error for duplicate names or
// nbytes != numel x dtype size.
void write_checkpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                      std::size_t max_shard_bytes = std::size_t(5) << 30,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace evoq::io
