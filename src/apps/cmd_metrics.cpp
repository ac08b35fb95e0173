// evoq metrics: correlations of a two-column CSV (x = prediction, y = human score) as JSON. An inspection
// tool, also what the scipy oracle tests drive.
#include <cmath>
#include <iostream>

#include <nlohmann/json.hpp>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/eval/csv.h"
#include "evoq/eval/metrics.h"

namespace {

namespace po = boost::program_options;

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()("csv", po::value<std::string>(), "CSV with a header and columns x,y");
}

int run(const po::variables_map& vm) {
  const std::string file = evoq::cli::require_string(vm, "csv");
  const auto table = evoq::eval::read_csv(file);
  const int xc = table.column({"x"}), yc = table.column({"y"});
  EVOQ_CHECK(xc >= 0 && yc >= 0, file, ": needs columns x and y");
  std::vector<double> x, y;
  for (std::size_t i = 0; i < table.rows.size(); ++i) {
    const auto& r = table.rows[i];
    EVOQ_CHECK(r.size() > static_cast<std::size_t>(std::max(xc, yc)), file, ":", table.line_numbers[i], ": short row");
    try {
      x.push_back(std::stod(r[xc]));
      y.push_back(std::stod(r[yc]));
    } catch (const std::exception&) {
      evoq::fail(file, ":", table.line_numbers[i], ": not a number");
    }
  }
  const auto c = evoq::eval::correlate(x, y);
  nlohmann::json j = {{"n", c.n}, {"srcc", number(c.srcc)}, {"krcc", number(c.krcc)}, {"plcc", number(c.plcc)},
                      {"plcc_fitted", number(c.plcc_fitted)}};
  if (x.size() >= 4 && std::isfinite(c.plcc_fitted)) {
    const auto fit = evoq::eval::fit_logistic4(x, y);
    j["beta"] = fit.beta;
    j["sse"] = fit.sse;
    j["converged"] = fit.converged;
  }
  std::cout << j.dump() << "\n";
  return 0;
}

EVOQ_COMMAND("metrics", "(inspection) SRCC/KRCC/PLCC of a CSV with columns x,y, as JSON", add_options, run,
             "evoq metrics --csv FILE");

}  // namespace
