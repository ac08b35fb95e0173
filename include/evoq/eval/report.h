#pragma once
// Turns per-image scores into per-dataset correlations, the weighted average, and the outputs of
// `evoq eval`: a table in the layout of the paper's Table 2, JSON and CSV.
//
// Orientation: correlations are computed between the model's score and the human score, both turned so
// that higher means better (DMOS labels and lower-is-better scorers such as NIQE are negated). A useful
// model therefore has positive SRCC / KRCC / PLCC on every dataset. The fitted PLCC is always >= 0 (see
// metrics.h). WAVG: each metric averaged over datasets weighted by the number of images scored validly.
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "evoq/eval/datasets.h"
#include "evoq/eval/metrics.h"
#include "evoq/eval/score_store.h"

namespace evoq::eval {

struct DatasetResult {
  std::string name;
  std::size_t images = 0;   // in the manifest (after --skip-missing)
  std::size_t missing = 0;  // image files skipped with --skip-missing
  std::size_t invalid = 0;  // scorer gave no score (excluded)
  Correlations corr;        // corr.n = images scored validly
};

struct EvalResult {
  std::string model;
  std::vector<DatasetResult> datasets;
  Correlations weighted;    // WAVG; weighted.n = total valid images
};

// Correlations of one dataset from the store's records (images without a record count as invalid).
DatasetResult evaluate_dataset(const Dataset& dataset, const ScoreStore& store, bool scorer_higher_is_better);

// Weighted average of the datasets' metrics (NaN metrics are left out of that metric's average).
Correlations weighted_average(const std::vector<DatasetResult>& datasets);

nlohmann::json to_json(const EvalResult& result);
EvalResult from_json(const nlohmann::json& j, const std::string& source);

// One CSV row per dataset plus a WAVG row: dataset,images,valid,invalid,missing,srcc,krcc,plcc,plcc_fitted.
std::string to_csv(const EvalResult& result);

// Table 2 layout: one row per dataset + WAVG; columns PLCC, SRCC (raw PLCC, as the paper and pyiqa report),
// invalid count; with a baseline, its PLCC/SRCC first and the model's as "value(+x.x%)".
std::string format_table(const EvalResult& result, const EvalResult* baseline);

}  // namespace evoq::eval
