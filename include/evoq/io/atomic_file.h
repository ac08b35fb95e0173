#pragma once
// Crash-safe file replacement: write to "<path>.tmp.<pid>", fsync the file, rename over <path>,
// fsync the directory. A reader sees either the old or the new content, never a partial file.
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace evoq::io {

// Writes `content` to path atomically.
void write_file_atomic(const std::string& path, std::string_view content);

// Calls write(tmp_path) to produce the file under a temporary name (e.g. an HDF5 file), then
// fsyncs and renames it to path. If write throws, the temporary file is removed.
void replace_file_atomic(const std::string& path, const std::function<void(const std::string& tmp_path)>& write);

// Appends `content` to path (created when missing) with one write loop; errors (a full disk...) name
// the file and the system's reason. For line logs such as metrics.jsonl, whose readers tolerate a torn
// last line.
void append_file(const std::string& path, std::string_view content);

// fsync a file or directory by path.
void fsync_path(const std::string& path);

std::string read_file(const std::string& path);  // throws evoq::Error naming the path

// Creates (truncates) a file and writes it piece by piece; errors name the file. Use inside
// replace_file_atomic's callback to stream large outputs without building them in memory.
class BinaryFileWriter {
 public:
  // display_name (default: path) is the name errors give, e.g. the final name of a temporary file.
  explicit BinaryFileWriter(const std::string& path, const std::string& display_name = "");
  ~BinaryFileWriter();
  BinaryFileWriter(const BinaryFileWriter&) = delete;
  BinaryFileWriter& operator=(const BinaryFileWriter&) = delete;
  void write(const void* data, std::size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void close();  // flushes and closes; throws on failure

 private:
  std::string path_, name_;
  int fd_ = -1;
};

}  // namespace evoq::io
