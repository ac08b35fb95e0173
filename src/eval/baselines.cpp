#include "evoq/eval/baselines.h"

#include <cstdlib>
#include <filesystem>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/quality/qualitybrisque.hpp>

#include "evoq/core/error.h"
#include "evoq/eval/datasets.h"
#include "evoq/eval/niqe.h"

namespace evoq::eval {
namespace fs = std::filesystem;
namespace {

cv::Mat load(const std::string& path, ScoreResult& result) {
  cv::Mat img;
  try {
    img = cv::imread(path, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    result.invalid_reason = "cannot decode image: " + std::string(e.what());
    return {};
  }
  if (img.empty()) result.invalid_reason = "cannot read image " + path;
  return img;
}

// Reads `path` and runs `compute` on it; a decode failure or an exception of type `Failure` makes the
// result invalid with a reason instead of aborting the whole evaluation.
template <typename Failure, typename Compute>
ScoreResult score_loaded(const std::string& path, const std::string& failure_prefix, Compute compute) {
  ScoreResult r;
  const cv::Mat img = load(path, r);
  if (img.empty()) return r;
  try {
    r.score = compute(img);
  } catch (const Failure& e) {
    r.invalid_reason = failure_prefix + e.what();
  }
  return r;
}

class BrisqueScorer : public Scorer {
 public:
  BrisqueScorer(const std::string& model, const std::string& range) {
    EVOQ_CHECK(fs::is_regular_file(model), "BRISQUE model file not found: ", model);
    EVOQ_CHECK(fs::is_regular_file(range), "BRISQUE range file not found: ", range);
    brisque_ = cv::quality::QualityBRISQUE::create(model, range);
  }
  std::string name() const override { return "brisque"; }
  bool higher_is_better() const override { return false; }
  ScoreResult score(const std::string& path) override {
    return score_loaded<cv::Exception>(path, "BRISQUE failed: ",
                                       [&](const cv::Mat& img) { return brisque_->compute(img)[0]; });
  }

 private:
  cv::Ptr<cv::quality::QualityBRISQUE> brisque_;
};

class NiqeScorer : public Scorer {
 public:
  explicit NiqeScorer(const std::string& params) : model_(NiqeModel::load(params)) {}
  std::string name() const override { return "niqe"; }
  bool higher_is_better() const override { return false; }
  ScoreResult score(const std::string& path) override {
    return score_loaded<Error>(path, "", [&](const cv::Mat& img) { return niqe(img, model_); });
  }

 private:
  NiqeModel model_;
};

std::string or_default(const std::string& value, const std::string& fallback) {
  return value.empty() ? fallback : value;
}

}  // namespace

std::unique_ptr<Scorer> make_brisque_scorer(const std::string& model_file, const std::string& range_file) {
  return std::make_unique<BrisqueScorer>(model_file, range_file);
}

std::unique_ptr<Scorer> make_niqe_scorer(const std::string& params_npz) {
  return std::make_unique<NiqeScorer>(params_npz);
}

void register_baseline_scorers() {
  register_scorer("brisque", [](const ScorerSettings& o) {
    const fs::path d = fs::path(default_data_dir()) / "brisque";
    return make_brisque_scorer(or_default(o.brisque_model, (d / "brisque_model_live.yml").string()),
                               or_default(o.brisque_range, (d / "brisque_range_live.yml").string()));
  });
  register_scorer("niqe", [](const ScorerSettings& o) {
    return make_niqe_scorer(
        or_default(o.niqe_params, (fs::path(default_data_dir()) / "niqe" / "niqe_pris_params.npz").string()));
  });
}

}  // namespace evoq::eval
