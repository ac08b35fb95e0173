#include "evoq/image/decode.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "evoq/core/error.h"
#include "evoq/image/to_rgb.h"

namespace evoq::image {

namespace {

std::vector<std::uint8_t> read_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail("image file '", path.string(), "' does not exist");
  if (std::filesystem::is_directory(path, ec)) fail("image file '", path.string(), "' is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open image file '", path.string(), "'");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("cannot read image file '", path.string(), "'");
  return bytes;
}

// One 8-bit sample from a decoded sample of either depth; `lone_grey` selects Pillow's "I;16" rule.
template <typename T>
std::uint8_t to8(T v, bool lone_grey) {
  if constexpr (sizeof(T) == 1) {
    return v;
  } else {
    return lone_grey ? clip_to_255(v) : high_byte(v);
  }
}

// OpenCV's interleaved BGR / BGRA / grey / grey+alpha rows -> RGB, compositing alpha onto white.
template <typename T>
Image8 convert_rows(const cv::Mat& m, bool premultiplied) {
  const int channels = m.channels();
  Image8 out(m.cols, m.rows, 3);
  for (int y = 0; y < m.rows; ++y) {
    const T* src = m.ptr<T>(y);
    std::uint8_t* dst = out.row(y);
    for (int x = 0; x < m.cols; ++x, src += channels, dst += 3) {
      switch (channels) {
        case 1: {
          dst[0] = dst[1] = dst[2] = to8(src[0], true);
          break;
        }
        case 2: {
          const std::uint8_t g = composite_over_white(to8(src[0], false), to8(src[1], false));
          dst[0] = dst[1] = dst[2] = g;
          break;
        }
        case 3: {
          dst[0] = to8(src[2], false);
          dst[1] = to8(src[1], false);
          dst[2] = to8(src[0], false);
          break;
        }
        default: {
          const std::uint8_t a = to8(src[3], false);
          const auto blend = premultiplied ? composite_premultiplied_over_white : composite_over_white;
          dst[0] = blend(to8(src[2], false), a);
          dst[1] = blend(to8(src[1], false), a);
          dst[2] = blend(to8(src[0], false), a);
          break;
        }
      }
    }
  }
  return out;
}

// OpenCV and the codec libraries print their own complaints to stderr (libpng errors, OpenCV's
// "imdecode_: can't read data" lines). Capture them during a decode so a failure is reported as
// one line that carries the codec's reason; after a success anything captured is passed on.
class StderrCapture {
 public:
  StderrCapture() : lock_(mutex()) {
    std::fflush(stderr);
    std::cerr.flush();
    file_ = std::tmpfile();
    saved_ = file_ ? ::dup(2) : -1;
    if (saved_ >= 0 && ::dup2(::fileno(file_), 2) < 0) {
      ::close(saved_);
      saved_ = -1;
    }
  }
  ~StderrCapture() { release(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  // Restores stderr and returns what was written meanwhile.
  std::string release() {
    std::string text;
    if (saved_ < 0) return text;
    std::fflush(stderr);
    std::cerr.flush();
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
    std::rewind(file_);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) text.append(buf, n);
    std::fclose(file_);
    file_ = nullptr;
    return text;
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  std::lock_guard<std::mutex> lock_;
  std::FILE* file_ = nullptr;
  int saved_ = -1;
};

// The most telling line of a codec's complaint, without OpenCV's source locations.
std::string codec_reason(const std::string& captured) {
  std::string best;
  std::size_t start = 0;
  while (start < captured.size()) {
    std::size_t end = captured.find('\n', start);
    if (end == std::string::npos) end = captured.size();
    std::string line = captured.substr(start, end - start);
    start = end + 1;
    if (auto p = line.find("error: (-2:Unspecified error) "); p != std::string::npos) line = line.substr(p + 30);
    if (auto p = line.find(" in function "); p != std::string::npos) line = line.substr(0, p);
    // "[ WARN:0@0.1] global <source> (<line>) <function> <message>" -> "<message>"
    if (auto p = line.find("] global "); p != std::string::npos) {
      const std::size_t paren = line.find(") ", p);
      const std::size_t space = paren == std::string::npos ? paren : line.find(' ', paren + 2);
      if (space != std::string::npos) line = line.substr(space + 1);
    }
    if (!line.empty() && best.empty()) best = line;
  }
  return best;
}

// libjpeg decodes a JPEG cut short without complaint (filling the rest with grey) where PIL
// refuses it as truncated; require an end-of-image marker after the last start-of-scan.
bool jpeg_is_truncated(std::span<const std::uint8_t> b) {
  if (b.size() < 3 || b[0] != 0xFF || b[1] != 0xD8 || b[2] != 0xFF) return false;  // not a JPEG
  std::size_t last_sos = 0;
  for (std::size_t i = 0; i + 1 < b.size(); ++i)
    if (b[i] == 0xFF && b[i + 1] == 0xDA) last_sos = i;
  for (std::size_t i = last_sos; i + 1 < b.size(); ++i)
    if (b[i] == 0xFF && b[i + 1] == 0xD9) return false;
  return true;
}

bool is_tiff(std::span<const std::uint8_t> b) {
  return b.size() >= 4 && ((b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) ||
                           (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42));
}

}  // namespace

Image8 decode_rgb(std::span<const std::uint8_t> encoded, const std::string& name) {
  if (encoded.empty()) fail("image file '", name, "' is empty (0 bytes)");
  if (jpeg_is_truncated(encoded))
    fail("cannot decode image file '", name, "': truncated JPEG (no end-of-image marker)");
  cv::Mat m;
  std::string complaint;
  {
    StderrCapture capture;
    try {
      const cv::Mat buffer(1, static_cast<int>(encoded.size()), CV_8UC1, const_cast<std::uint8_t*>(encoded.data()));
      // IMREAD_UNCHANGED keeps alpha and 16-bit depth and ignores EXIF orientation, like PIL.Image.open.
      m = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
    } catch (const cv::Exception& e) {
      complaint = e.err;
    }
    const std::string captured = capture.release();
    if (complaint.empty()) complaint = codec_reason(captured);
    if (!m.empty() && !captured.empty()) std::cerr << captured << std::flush;  // not ours to swallow
  }
  if (m.empty())
    fail("cannot decode image file '", name, "': ",
         complaint.empty() ? "not a readable JPEG, PNG, BMP, TIFF or WebP image"
                           : "corrupt or unsupported (" + complaint + ")");
  const int channels = m.channels();
  if (channels < 1 || channels > 4) fail("image file '", name, "' has ", channels, " channels; expected 1 to 4");
  switch (m.depth()) {
    // OpenCV reads 8-bit TIFFs through libtiff's RGBA interface, which multiplies colour by alpha.
    case CV_8U: return convert_rows<std::uint8_t>(m, is_tiff(encoded));
    case CV_16U: return convert_rows<std::uint16_t>(m, false);
    default: fail("image file '", name, "' has an unsupported sample type (only 8- and 16-bit integer images)");
  }
}

Image8 load_rgb(const std::filesystem::path& path) {
  const std::vector<std::uint8_t> bytes = read_file(path);
  return decode_rgb(bytes, path.string());
}

}  // namespace evoq::image
