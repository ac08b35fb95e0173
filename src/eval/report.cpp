#include "evoq/eval/report.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "evoq/core/error.h"

namespace evoq::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

double get_number(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return kNaN;
  return j[key].get<double>();
}

nlohmann::json corr_json(const Correlations& c) {
  return {{"n", c.n}, {"srcc", number(c.srcc)}, {"krcc", number(c.krcc)}, {"plcc", number(c.plcc)},
          {"plcc_fitted", number(c.plcc_fitted)}};
}

Correlations corr_from(const nlohmann::json& j) {
  Correlations c;
  c.n = j.value("n", std::size_t{0});
  c.srcc = get_number(j, "srcc");
  c.krcc = get_number(j, "krcc");
  c.plcc = get_number(j, "plcc");
  c.plcc_fitted = get_number(j, "plcc_fitted");
  return c;
}

std::string fmt(double v, int digits = 3) {
  if (!std::isfinite(v)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string with_delta(double v, double base) {
  if (!std::isfinite(v)) return "n/a";
  if (!std::isfinite(base) || base == 0) return fmt(v);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f(%+.1f%%)", v, 100 * (v - base) / std::abs(base));
  return buf;
}

std::string pad(const std::string& s, std::size_t w) {
  return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' ');
}

}  // namespace

DatasetResult evaluate_dataset(const Dataset& dataset, const ScoreStore& store, bool scorer_higher_is_better) {
  DatasetResult r;
  r.name = dataset.name;
  r.images = dataset.images.size();
  std::vector<double> predicted, human;
  for (const auto& im : dataset.images) {
    const ScoreRecord* rec = store.find(dataset.name, im.id);
    if (!rec || !rec->valid() || !std::isfinite(rec->score)) {
      ++r.invalid;
      continue;
    }
    predicted.push_back(scorer_higher_is_better ? rec->score : -rec->score);
    human.push_back(dataset.oriented_score(im));
  }
  r.corr = correlate(predicted, human);
  return r;
}

Correlations weighted_average(const std::vector<DatasetResult>& datasets) {
  Correlations w;
  double sums[4] = {0, 0, 0, 0}, weights[4] = {0, 0, 0, 0};
  for (const auto& d : datasets) {
    const double n = static_cast<double>(d.corr.n);
    const double v[4] = {d.corr.srcc, d.corr.krcc, d.corr.plcc, d.corr.plcc_fitted};
    for (int k = 0; k < 4; ++k)
      if (std::isfinite(v[k]) && n > 0) {
        sums[k] += n * v[k];
        weights[k] += n;
      }
    w.n += d.corr.n;
  }
  double* out[4] = {&w.srcc, &w.krcc, &w.plcc, &w.plcc_fitted};
  for (int k = 0; k < 4; ++k) *out[k] = weights[k] > 0 ? sums[k] / weights[k] : kNaN;
  return w;
}

nlohmann::json to_json(const EvalResult& result) {
  nlohmann::json j;
  j["model"] = result.model;
  j["orientation"] = "scores and labels turned so that higher = better quality";
  j["plcc_fitted_function"] =
      "f(x) = (b1-b2)/(1+exp(-(x-b3)/|b4|)) + b2, LM fit from b1=max(y), b2=min(y), b3=mean(x), b4=std(x)";
  j["datasets"] = nlohmann::json::array();
  for (const auto& d : result.datasets) {
    nlohmann::json e = corr_json(d.corr);
    e["name"] = d.name;
    e["images"] = d.images;
    e["invalid"] = d.invalid;
    e["missing"] = d.missing;
    j["datasets"].push_back(e);
  }
  j["wavg"] = corr_json(result.weighted);
  return j;
}

EvalResult from_json(const nlohmann::json& j, const std::string& source) {
  EVOQ_CHECK(j.is_object() && j.contains("datasets") && j["datasets"].is_array(), source,
             ": not an evoq eval result (no 'datasets' array)");
  EvalResult r;
  r.model = j.value("model", std::string());
  for (const auto& e : j["datasets"]) {
    DatasetResult d;
    d.name = e.value("name", std::string());
    d.images = e.value("images", std::size_t{0});
    d.invalid = e.value("invalid", std::size_t{0});
    d.missing = e.value("missing", std::size_t{0});
    d.corr = corr_from(e);
    r.datasets.push_back(d);
  }
  r.weighted = j.contains("wavg") ? corr_from(j["wavg"]) : weighted_average(r.datasets);
  return r;
}

std::string to_csv(const EvalResult& result) {
  std::ostringstream os;
  os << "dataset,images,valid,invalid,missing,srcc,krcc,plcc,plcc_fitted\n";
  auto row = [&](const std::string& name, std::size_t images, std::size_t invalid, std::size_t missing,
                 const Correlations& c) {
    os << name << ',' << images << ',' << c.n << ',' << invalid << ',' << missing << ',' << fmt(c.srcc, 6) << ','
       << fmt(c.krcc, 6) << ',' << fmt(c.plcc, 6) << ',' << fmt(c.plcc_fitted, 6) << '\n';
  };
  std::size_t images = 0, invalid = 0, missing = 0;
  for (const auto& d : result.datasets) {
    row(d.name, d.images, d.invalid, d.missing, d.corr);
    images += d.images;
    invalid += d.invalid;
    missing += d.missing;
  }
  row("WAVG", images, invalid, missing, result.weighted);
  return os.str();
}

std::string format_table(const EvalResult& result, const EvalResult* baseline) {
  std::ostringstream os;
  const std::size_t w0 = 16, w = 18;
  const DatasetResult* base_row = nullptr;
  auto find_base = [&](const std::string& name) -> const DatasetResult* {
    if (!baseline) return nullptr;
    for (const auto& d : baseline->datasets)
      if (d.name == name) return &d;
    return nullptr;
  };
  os << pad("Dataset", w0);
  if (baseline) os << pad(baseline->model.empty() ? "baseline" : baseline->model, 2 * w);
  os << pad(result.model, 2 * w) << "invalid\n" << pad("", w0);
  if (baseline) os << pad("PLCC", w) << pad("SRCC", w) << pad("PLCC (Δ%)", w + 1) << pad("SRCC (Δ%)", w + 1);
  else os << pad("PLCC", w) << pad("SRCC", w);
  os << "\n";
  auto line = [&](const std::string& name, const Correlations& c, const Correlations* b, std::size_t invalid) {
    os << pad(name, w0);
    if (baseline) {
      os << pad(b ? fmt(b->plcc) : "n/a", w) << pad(b ? fmt(b->srcc) : "n/a", w);
      os << pad(with_delta(c.plcc, b ? b->plcc : kNaN), w) << pad(with_delta(c.srcc, b ? b->srcc : kNaN), w);
    } else {
      os << pad(fmt(c.plcc), w) << pad(fmt(c.srcc), w);
    }
    os << invalid << "\n";
  };
  std::size_t invalid = 0;
  for (const auto& d : result.datasets) {
    base_row = find_base(d.name);
    line(d.name, d.corr, base_row ? &base_row->corr : nullptr, d.invalid);
    invalid += d.invalid;
  }
  line("WAVG.", result.weighted, baseline ? &baseline->weighted : nullptr, invalid);
  os << "PLCC is raw Pearson; logistic-fitted PLCC and KRCC are in the JSON/CSV outputs.\n";
  return os.str();
}

}  // namespace evoq::eval
