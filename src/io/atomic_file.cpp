#include "evoq/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "evoq/core/error.h"

namespace evoq::io {
namespace {

std::string errno_text() { return std::strerror(errno); }

std::string temp_name_for(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

std::string parent_dir(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

void append_file(const std::string& path, std::string_view content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot open '", path, "' for appending: ", errno_text());
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = n < 0 ? errno_text() : std::string("no space written");
      ::close(fd);
      fail("cannot write '", path, "': ", reason);
    }
    p += n;
    left -= std::size_t(n);
  }
  if (::close(fd) != 0) fail("cannot write '", path, "': ", errno_text());
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open ", path, " to fsync: ", errno_text());
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  // Some file systems refuse fsync on directories (EINVAL); the rename is still atomic there.
  if (rc != 0 && saved != EINVAL) fail("cannot write '", path, "' (fsync): ", std::strerror(saved));
}

void replace_file_atomic(const std::string& path,
                         const std::function<void(const std::string& tmp_path)>& write) {
  const std::string tmp = temp_name_for(path);
  try {
    write(tmp);
    fsync_path(tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail("cannot write '", path, "' (rename from ", tmp, "): ", errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_path(parent_dir(path));
}

BinaryFileWriter::BinaryFileWriter(const std::string& path, const std::string& display_name)
    : path_(path), name_(display_name.empty() ? path : display_name) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create '", name_, "': ", errno_text());
}

BinaryFileWriter::~BinaryFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void BinaryFileWriter::write(const void* data, std::size_t size) {
  if (fd_ < 0) fail("write to closed file '", name_, "'");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write '", name_, "': ", n < 0 ? errno_text() : std::string("no space written"));
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void BinaryFileWriter::close() {
  if (fd_ < 0) return;
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("cannot write '", name_, "': ", errno_text());
}

void write_file_atomic(const std::string& path, std::string_view content) {
  replace_file_atomic(path, [&](const std::string& tmp) {
    BinaryFileWriter out(tmp, path);
    out.write(content);
    out.close();
  });
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("cannot read ", path, ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open ", path, ": ", errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("cannot read ", path);
  return ss.str();
}

}  // namespace evoq::io
