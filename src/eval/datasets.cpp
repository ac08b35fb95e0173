#include "evoq/eval/datasets.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "evoq/core/error.h"
#include "evoq/eval/csv.h"

#ifndef EVOQ_DATA_DIR
#define EVOQ_DATA_DIR "data"
#endif

namespace evoq::eval {
namespace fs = std::filesystem;
namespace {


double parse_score(const std::string& text, const std::string& file, std::size_t line) {
  double v = 0;
  const char* b = text.data();
  const char* e = b + text.size();
  while (b < e && std::isspace(static_cast<unsigned char>(*b))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(e[-1]))) --e;
  const auto r = std::from_chars(b, e, v);
  EVOQ_CHECK(r.ec == std::errc() && r.ptr == e && std::isfinite(v), file, ":", line, ": bad score '", text, "'");
  return v;
}

const std::string& field(const CsvTable& t, std::size_t row, int col, const std::string& file) {
  const auto& r = t.rows[row];
  EVOQ_CHECK(col >= 0 && static_cast<std::size_t>(col) < r.size(), file, ":", t.line_numbers[row], ": expected ",
             t.header.size(), " columns, got ", r.size());
  return r[static_cast<std::size_t>(col)];
}

int need_column(const CsvTable& t, std::initializer_list<const char*> names, const std::string& file) {
  const int c = t.column(names);
  EVOQ_CHECK(c >= 0, file, ": no column named ", *names.begin(), " in the header");
  return c;
}

// Reads the common IQA-Dataset layout: dis_img_path, dis_type, [ref_img_path,] score.
std::vector<LabelledImage> read_standard(const std::string& file) {
  const CsvTable t = read_csv(file);
  const int path = need_column(t, {"dis_img_path"}, file), score = need_column(t, {"score"}, file);
  const int type = t.column({"dis_type"}), ref = t.column({"ref_img_path"});
  std::vector<LabelledImage> images;
  images.reserve(t.rows.size());
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    LabelledImage im;
    im.id = field(t, i, path, file);
    im.score = parse_score(field(t, i, score, file), file, t.line_numbers[i]);
    if (type >= 0) im.distortion = field(t, i, type, file);
    if (ref >= 0) im.reference = field(t, i, ref, file);
    images.push_back(std::move(im));
  }
  return images;
}

std::vector<LabelledImage> read_agiqa(const std::string& file) {
  const CsvTable t = read_csv(file);
  const int name = need_column(t, {"name"}, file), mos = need_column(t, {"mos_quality"}, file);
  std::vector<LabelledImage> images;
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    LabelledImage im;
    im.id = field(t, i, name, file);
    im.score = parse_score(field(t, i, mos, file), file, t.line_numbers[i]);
    const std::string model = im.id.substr(0, im.id.find('_'));
    im.distortion = model;  // the generating model (AttnGAN, DALLE2, ...)
    images.push_back(std::move(im));
  }
  return images;
}

Dataset read_generic(const std::string& file) {
  const CsvTable t = read_csv(file);
  const int path = t.column({"path", "image", "dis_img_path"});
  EVOQ_CHECK(path >= 0, file, ": generic CSV needs a 'path' (or 'image') column");
  Dataset d;
  int score = t.column({"score", "mos"});
  if (score < 0) {
    score = t.column({"dmos"});
    d.direction = ScoreDirection::lower_is_better;
  }
  EVOQ_CHECK(score >= 0, file, ": generic CSV needs a 'score', 'mos' or 'dmos' column");
  const int type = t.column({"dis_type", "type", "distortion"});
  for (std::size_t i = 0; i < t.rows.size(); ++i) {
    LabelledImage im;
    im.id = field(t, i, path, file);
    im.score = parse_score(field(t, i, score, file), file, t.line_numbers[i]);
    if (type >= 0) im.distortion = field(t, i, type, file);
    d.images.push_back(std::move(im));
  }
  d.name = fs::path(file).stem().string();
  d.label_file = file;
  d.layout = PathLayout::relative;
  return d;
}

// Keeps the KonIQ images of one official split (training / validation / test).
void filter_koniq_split(Dataset& d, const std::string& split, const std::string& labels_dir) {
  const std::string file = (fs::path(labels_dir) / "koniq10k_distributions_sets.csv").string();
  const CsvTable t = read_csv(file);
  const int name = need_column(t, {"image_name"}, file), set = need_column(t, {"set"}, file);
  std::unordered_set<std::string> keep;
  for (std::size_t i = 0; i < t.rows.size(); ++i)
    if (field(t, i, set, file) == split) keep.insert(field(t, i, name, file));
  std::erase_if(d.images, [&](const LabelledImage& im) {
    return !keep.contains(fs::path(im.id).filename().string());
  });
  EVOQ_CHECK(!d.images.empty(), file, ": no KonIQ image in split '", split, "'");
}

}  // namespace

const std::vector<DatasetInfo>& known_datasets() {
  using D = ScoreDirection;
  static const std::vector<DatasetInfo> list = {
      {"KonIQ-10k", {"koniq", "koniq10k"}, "KonIQ-10k.txt", D::higher_is_better, 10073},
      {"SPAQ", {}, "SPAQ.txt", D::higher_is_better, 11125},
      {"AGIQA-3K", {"agiqa", "agiqa3k"}, "AGIQA-3k.csv", D::higher_is_better, 2982},
      {"LIVE-Challenge",
       {"livec", "livew", "live_challenge", "clive"},
       "LIVE_Challenge.txt",
       D::higher_is_better,
       1161},
      {"KADID-10k", {"kadid", "kadid10k"}, "KADID-10k.txt", D::higher_is_better, 10125},
      {"PIPAL", {}, "PIPAL.txt", D::higher_is_better, 23200},
      {"TID2013", {"tid13"}, "TID2013.txt", D::higher_is_better, 3000},
      {"TID2008", {"tid08"}, "TID2008.txt", D::higher_is_better, 1700},
      {"CSIQ", {}, "CSIQ.txt", D::lower_is_better, 866},
      {"LIVE", {}, "LIVE.txt", D::lower_is_better, 779},
  };
  return list;
}

std::string default_data_dir() {
  if (const char* env = std::getenv("EVOQ_DATA_DIR"); env && *env) return env;
  return EVOQ_DATA_DIR;
}

std::string default_labels_dir() { return (fs::path(default_data_dir()) / "iqa-labels").string(); }

Dataset load_dataset(const std::string& name, const std::string& labels_dir) {
  if (name.rfind("csv:", 0) == 0) return read_generic(name.substr(4));

  std::string base = name, split;
  if (const auto colon = name.find(':'); colon != std::string::npos) {
    base = name.substr(0, colon);
    split = to_lower(name.substr(colon + 1));
  }
  const DatasetInfo* info = nullptr;
  for (const auto& d : known_datasets()) {
    if (to_lower(d.name) == to_lower(base) ||
        std::any_of(d.aliases.begin(), d.aliases.end(), [&](const std::string& a) { return a == to_lower(base); }))
      info = &d;
  }
  if (!info) {
    std::string names;
    for (const auto& d : known_datasets()) names += " " + d.name;
    throw Error("unknown dataset '" + name + "' (known:" + names + ", or csv:FILE)");
  }
  Dataset d;
  d.name = info->name;
  d.direction = info->direction;
  d.label_file = (fs::path(labels_dir) / info->label_file).string();
  const bool agiqa = info->name == "AGIQA-3K";
  d.images = agiqa ? read_agiqa(d.label_file) : read_standard(d.label_file);
  d.layout = agiqa ? PathLayout::bare_names : PathLayout::database_folder;
  if (!split.empty()) {
    EVOQ_CHECK(info->name == "KonIQ-10k", "dataset '", name, "': only KonIQ-10k has an official split");
    static const std::unordered_map<std::string, std::string> splits = {
        {"train", "training"}, {"training", "training"}, {"val", "validation"},
        {"validation", "validation"}, {"test", "test"}};
    const auto it = splits.find(split);
    EVOQ_CHECK(it != splits.end(), "dataset '", name, "': unknown split (train, val or test)");
    filter_koniq_split(d, it->second, labels_dir);
    d.name += ":" + (it->first == "training" ? std::string("train") : it->first == "validation" ? "val" : it->first);
  }
  return d;
}

std::vector<std::string> resolve_images(Dataset& dataset, const std::string& root) {
  const bool generic = dataset.layout == PathLayout::relative;
  std::string r = root;
  if (r.empty()) {
    EVOQ_CHECK(generic, "dataset ", dataset.name, " needs its image root: --root ", dataset.name, "=DIR");
    r = fs::path(dataset.label_file).parent_path().string();
    if (r.empty()) r = ".";
  }
  dataset.root = r;
  std::vector<std::string> missing;
  std::error_code ec;
  for (auto& im : dataset.images) {
    const fs::path id(im.id);
    fs::path candidate;
    if (id.is_absolute()) {
      candidate = id;
    } else if (dataset.layout != PathLayout::database_folder) {
      candidate = fs::path(r) / id;
    } else {
      // Strip the database folder the label file starts with; fall back to ROOT/<full id>.
      fs::path rest;
      auto it = id.begin();
      for (++it; it != id.end(); ++it) rest /= *it;
      candidate = fs::path(r) / rest;
      if (!fs::exists(candidate, ec) && fs::exists(fs::path(r) / id, ec)) candidate = fs::path(r) / id;
    }
    im.path = candidate.string();
    if (!fs::is_regular_file(candidate, ec)) missing.push_back(im.id);
  }
  return missing;
}

void remove_images(Dataset& dataset, const std::vector<std::string>& ids) {
  const std::unordered_set<std::string> drop(ids.begin(), ids.end());
  std::erase_if(dataset.images, [&](const LabelledImage& im) { return drop.contains(im.id); });
}

}  // namespace evoq::eval
