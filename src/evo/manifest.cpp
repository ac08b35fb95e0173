#include "evoq/evo/manifest.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <unordered_set>

#include "evoq/core/error.h"

namespace fs = std::filesystem;

namespace evoq::evo {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// Splits one CSV line; double-quoted fields may hold commas ("" is a literal quote).
std::vector<std::string> split_csv(const std::string& line, const std::string& where) {
  std::vector<std::string> fields;
  std::string cur;
  bool quoted = false, was_quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') { cur += '"'; ++i; }
      else if (c == '"') quoted = false;
      else cur += c;
    } else if (c == '"' && trim(cur).empty()) {
      quoted = was_quoted = true;
      cur.clear();
    } else if (c == ',') {
      fields.push_back(was_quoted ? cur : trim(cur));
      cur.clear();
      was_quoted = false;
    } else {
      cur += c;
    }
  }
  EVOQ_CHECK(!quoted, where, ": unterminated quoted field");
  fields.push_back(was_quoted ? cur : trim(cur));
  return fields;
}

Manifest scan_directory(const fs::path& dir) {
  Manifest m;
  m.source = dir.string();
  m.root = dir.string();
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  EVOQ_CHECK(!ec, "manifest directory '", dir.string(), "': ", ec.message());
  for (; it != end; it.increment(ec)) {
    EVOQ_CHECK(!ec, "manifest directory '", dir.string(), "': ", ec.message());
    if (it->is_regular_file() && is_image_extension(it->path().string()))
      m.images.push_back({fs::relative(it->path(), dir).generic_string(), ""});
  }
  std::sort(m.images.begin(), m.images.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  return m;
}

Manifest read_list(const fs::path& file, const std::string& root_override) {
  std::ifstream in(file);
  EVOQ_CHECK(in, "manifest '", file.string(), "': cannot open");
  Manifest m;
  m.source = file.string();
  m.root = !root_override.empty() ? root_override
           : file.has_parent_path() ? file.parent_path().string() : std::string(".");
  std::string line;
  int line_no = 0;
  std::unordered_set<std::string> seen;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    const std::string where = "manifest '" + file.string() + "' line " + std::to_string(line_no);
    auto fields = split_csv(t, where);
    EVOQ_CHECK(fields.size() <= 2, where, ": expected 'path[,reference_id]', got ", fields.size(), " fields");
    if (m.images.empty() && seen.empty() && fields[0] == "path") {  // header
      seen.insert("");  // marks the header as consumed
      continue;
    }
    EVOQ_CHECK(!fields[0].empty(), where, ": empty path");
    EVOQ_CHECK(seen.insert(fields[0]).second, where, ": duplicate path '", fields[0], "'");
    m.images.push_back({fields[0], fields.size() > 1 ? fields[1] : ""});
  }
  return m;
}

}  // namespace

bool is_image_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  static const std::unordered_set<std::string> known{".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"};
  return known.count(ext) > 0;
}

std::string Manifest::resolve(std::size_t index) const {
  const fs::path p(images.at(index).path);
  return p.is_absolute() ? p.string() : (fs::path(root) / p).string();
}

Manifest load_manifest(const std::string& source, const std::string& root_override) {
  const fs::path path(source);
  std::error_code ec;
  EVOQ_CHECK(fs::exists(path, ec), "manifest '", source, "' does not exist");
  Manifest m = fs::is_directory(path, ec) ? scan_directory(path) : read_list(path, root_override);
  if (fs::is_directory(path, ec) && !root_override.empty()) {
    // Keep the paths relative to the requested root when the directory lies below it.
    const fs::path rel = fs::relative(fs::absolute(path), fs::absolute(root_override), ec);
    if (!ec && !rel.empty() && rel.begin()->string() != "..") {
      for (auto& image : m.images) image.path = (rel / image.path).lexically_normal().generic_string();
      m.root = root_override;
    }
  }
  EVOQ_CHECK(!m.images.empty(), "manifest '", source, "' lists no images");
  EVOQ_CHECK(m.images.size() >= 2, "manifest '", source, "' lists only one image (pairs need at least 2)");
  return m;
}

}  // namespace evoq::evo
