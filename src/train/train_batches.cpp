#include "evoq/train/train_batches.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "evoq/core/error.h"
#include "evoq/io/h5.h"
#include "evoq/evo/estimate_store.h"
#include "evoq/evo/label_store.h"
#include "evoq/evo/pairs.h"

namespace evoq::train {

using namespace evoq::evo;  // the method's equations and stores this layer trains with

namespace h5 = io::h5;

namespace fs = std::filesystem;

TrainData load_train_data(const std::string& labels_path) {
  TrainData data;
  data.labels_path = labels_path;
  const auto labels = read_labels_h5(labels_path);
  std::vector<std::int64_t> pi, pj;
  std::string root;
  try {
    auto file = h5::open_read(labels_path);
    data.image_paths = h5::read_strings(file, "image_path");
    pi = h5::read_vector<std::int64_t>(file, "pair_i");
    pj = h5::read_vector<std::int64_t>(file, "pair_j");
    if (h5::has_attr(file, "root")) root = h5::get_attr_string(file, "root");
  } catch (const H5::Exception& e) {
    throw Error("'" + labels_path + "': " + e.getDetailMsg());
  }
  EVOQ_CHECK(pi.size() == labels.size() && pj.size() == labels.size(), "'", labels_path,
             "': pair_i/pair_j do not have one row per pair");
  for (auto& p : data.image_paths) {
    const fs::path path(p);
    if (!path.is_absolute() && !root.empty()) p = (fs::path(root) / path).string();
  }
  const auto n_images = std::int64_t(data.image_paths.size());
  for (std::size_t r = 0; r < labels.size(); ++r) {
    const auto& l = labels[r];
    if (l.failed) {
      ++data.skipped_failed;
      continue;
    }
    if (std::isnan(l.p_star)) {
      ++data.skipped_unlabelled;
      continue;
    }
    EVOQ_CHECK(pi[r] >= 0 && pi[r] < n_images && pj[r] >= 0 && pj[r] < n_images && pi[r] != pj[r], "'",
               labels_path, "': pair ", l.pair_index, " has bad image indices ", pi[r], ", ", pj[r]);
    data.pairs.push_back({l.pair_index, pi[r], pj[r], l.p_star});
  }
  EVOQ_CHECK(!data.pairs.empty(), "'", labels_path, "' has no usable pair (", data.skipped_failed, " failed, ",
             data.skipped_unlabelled, " without a label)");
  return data;
}

TrainBatches::TrainBatches(const TrainData& data, std::int64_t pairs_per_step, std::uint64_t seed)
    : data_(data), B_(pairs_per_step), seed_(seed) {
  if (B_ < 1) throw UsageError("--pairs-per-step must be >= 1");
  steps_per_epoch_ = std::int64_t(data.pairs.size()) / B_;
  if (steps_per_epoch_ < 1)
    throw UsageError("--pairs-per-step " + std::to_string(B_) + " exceeds the " + std::to_string(data.pairs.size()) +
                     " usable pairs of '" + data.labels_path + "'");
}

StepLocation TrainBatches::locate(std::int64_t step) const {
  return {step / steps_per_epoch_, (step % steps_per_epoch_) * B_};
}

std::vector<std::size_t> TrainBatches::epoch_order(std::int64_t epoch) const {
  if (epoch == cached_epoch_) return cached_order_;
  std::vector<std::size_t> order(data_.pairs.size());
  for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
  // Fisher-Yates with draws from counter_hash(seed, epoch, k): a pure function of (seed, epoch),
  // the same on every platform and standard library.
  for (std::size_t k = order.size(); k > 1; --k) {
    const auto r = counter_hash(seed_ ^ 0x747261696e6261ULL, std::uint64_t(epoch), k) % k;
    std::swap(order[k - 1], order[r]);
  }
  cached_epoch_ = epoch;
  cached_order_ = order;
  return order;
}

std::vector<std::size_t> TrainBatches::step_pairs(std::int64_t step) const {
  const auto loc = locate(step);
  const auto order = epoch_order(loc.epoch);
  return {order.begin() + loc.position, order.begin() + loc.position + B_};
}

std::vector<std::int64_t> step_images(const TrainData& data, const std::vector<std::size_t>& pairs) {
  std::vector<std::int64_t> images;
  for (auto p : pairs) {
    images.push_back(data.pairs.at(p).i);
    images.push_back(data.pairs.at(p).j);
  }
  std::sort(images.begin(), images.end());
  images.erase(std::unique(images.begin(), images.end()), images.end());
  return images;
}


TrainData load_estimate_data(const std::string& path, std::vector<double>& pseudo_scores) {
  const auto e = evo::read_estimates_h5(path);
  TrainData data;
  data.labels_path = path;
  for (const auto& p : e.image_path) {
    const fs::path q(p);
    data.image_paths.push_back(!q.is_absolute() && !e.root.empty() ? (fs::path(e.root) / q).string() : p);
  }
  pseudo_scores = e.pseudo_score;
  for (std::size_t n = 0; n < e.image_path.size(); ++n) {
    if (std::isnan(e.pseudo_score[n])) {
      ++data.skipped_unlabelled;
      continue;
    }
    data.pairs.push_back({std::int64_t(n), std::int64_t(n), std::int64_t(n), e.pseudo_score[n]});
  }
  EVOQ_CHECK(!data.pairs.empty(), "'", path, "' has no image with a pseudo score (", data.skipped_unlabelled,
             " without a valid answer)");
  return data;
}

}  // namespace evoq::train
