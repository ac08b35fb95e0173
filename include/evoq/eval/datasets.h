#pragma once
// Benchmark manifests: the standard IQA label files in data/iqa-labels/ (REFERENCE-NOTES G) and a generic
// CSV. A Dataset knows its score direction and resolves image paths against the image root the user gives
// (`--root NAME=DIR`).
//
// Known datasets (names are case-insensitive; aliases in brackets):
//   KonIQ-10k [koniq]           KonIQ-10k.txt        MOS, higher is better   10073 images
//     KonIQ-10k:train|val|test  + koniq10k_distributions_sets.csv (official split: 7058/1000/2015)
//   SPAQ                        SPAQ.txt             MOS, higher is better   11125
//   AGIQA-3K [agiqa]            AGIQA-3k.csv         mos_quality, higher     2982
//   LIVE-Challenge [livec,livew] LIVE_Challenge.txt  MOS, higher is better   1161 (the file's rows)
//   KADID-10k [kadid]           KADID-10k.txt        DMOS column, but a 1..5 rating: higher is better 10125
//   PIPAL                       PIPAL.txt            Elo score, higher is better 23200 (training part)
//   TID2013, TID2008            TID20xx.txt          MOS, higher is better   3000 / 1700
//   CSIQ                        CSIQ.txt             DMOS, LOWER is better   866
//   LIVE                        LIVE.txt             DMOS, LOWER is better   779
//   csv:FILE                    generic CSV: a path column (`path` or `image`) and a score column: `score`
//                               or `mos` (higher is better) or `dmos` (lower is better). Its name is the file
//                               stem; its default root is the CSV's directory.
//
// Image paths: the standard label files list paths that start with the database folder
// ("CSIQ/dst_imgs/AWGN/1600.AWGN.1.png"). The root names that folder, so the image is ROOT/dst_imgs/...;
// if that file does not exist but ROOT/CSIQ/dst_imgs/... does (ROOT is the parent), that one is used.
// AGIQA-3K lists bare file names: ROOT/<name>.
#include <cstddef>
#include <string>
#include <vector>

namespace evoq::eval {

enum class ScoreDirection { higher_is_better, lower_is_better };

// How label-file paths map to files under the image root (see above).
enum class PathLayout {
  database_folder,  // "CSIQ/dst_imgs/x.png": first component is the database folder the root names
  bare_names,       // AGIQA-3K: ROOT/<name>
  relative          // generic CSV: ROOT/<path> (ROOT defaults to the CSV's directory); absolute paths kept
};

struct LabelledImage {
  std::string id;          // the path as written in the label file (unique key in score files)
  std::string path;        // resolved image path (after resolve_images)
  double score = 0;        // human score exactly as in the label file
  std::string distortion;  // distortion type where the file gives one ("" otherwise)
  std::string reference;   // reference image where the file gives one ("" otherwise)
};

struct Dataset {
  std::string name;        // canonical name, e.g. "CSIQ", "KonIQ-10k:test"
  std::string label_file;
  std::string root;        // image root ("" until given)
  ScoreDirection direction = ScoreDirection::higher_is_better;
  PathLayout layout = PathLayout::database_folder;
  std::vector<LabelledImage> images;

  // The human score turned so that higher always means better quality (DMOS is negated).
  double oriented_score(const LabelledImage& image) const {
    return direction == ScoreDirection::lower_is_better ? -image.score : image.score;
  }
};

struct DatasetInfo {
  std::string name;
  std::vector<std::string> aliases;
  std::string label_file;  // relative to the labels directory
  ScoreDirection direction;
  std::size_t documented_rows;
};
const std::vector<DatasetInfo>& known_datasets();

// Data folder (label files, baseline models): $EVOQ_DATA_DIR if set, else the source tree's data/.
std::string default_data_dir();

// Directory holding the label files: $EVOQ_DATA_DIR/iqa-labels, else the source tree's data/iqa-labels.
std::string default_labels_dir();

// Loads a dataset by name (see the list above) from labels_dir. Throws evoq::Error for an unknown name or a
// malformed label file (naming the file and line). Image paths are not resolved yet.
Dataset load_dataset(const std::string& name, const std::string& labels_dir);

// Sets dataset.root (empty root: the generic CSV's own directory; required for the standard datasets) and
// resolves every image path. Returns the ids of images whose file does not exist.
std::vector<std::string> resolve_images(Dataset& dataset, const std::string& root);

// Drops the listed ids from dataset.images (used with --skip-missing).
void remove_images(Dataset& dataset, const std::vector<std::string>& ids);

}  // namespace evoq::eval
