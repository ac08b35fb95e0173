#pragma once
// Image manifests: the list of images a voting round works on.
//
// Sources:
//  - a directory: every file below it (recursively) whose extension is an image extension
//    (.png .jpg .jpeg .bmp .tif .tiff .webp, any case), sorted by path; paths are stored relative to
//    the directory, which becomes the root; no reference ids;
//  - a list file (.csv or .txt): one image per line, `path[,reference_id]`; blank lines and lines
//    starting with '#' are skipped; a first line `path[,reference_id]` is a header and skipped;
//    fields may be double-quoted. Paths are relative to `root` (default: the list file's folder).
// An empty manifest or one with fewer than 2 images, and a duplicated path, are errors.
#include <string>
#include <vector>

namespace evoq::evo {

struct ImageEntry {
  std::string path;          // relative to Manifest::root (or absolute as given)
  std::string reference_id;  // empty when none
};

struct Manifest {
  std::string source;  // the directory or list file it came from
  std::string root;    // folder the paths are relative to
  std::vector<ImageEntry> images;

  // root / path (the path itself when absolute).
  std::string resolve(std::size_t index) const;
};

// Loads a manifest from a directory or list file; root_override replaces the default root of a
// list file (ignored for a directory when empty). Throws evoq::Error naming the file.
Manifest load_manifest(const std::string& source, const std::string& root_override = "");

bool is_image_extension(const std::string& path);

}  // namespace evoq::evo
