#include <gtest/gtest.h>

#include <cmath>

#include "evoq/eval/report.h"

using namespace evoq::eval;

TEST(Report, WeightedAverageByValidImagesSkipsNaN) {
  DatasetResult a, b;
  a.name = "A";
  a.corr = {100, 0.5, 0.4, 0.6, 0.7};
  b.name = "B";
  b.corr = {300, 0.9, 0.8, NAN, 0.9};
  const Correlations w = weighted_average({a, b});
  EXPECT_EQ(w.n, 400u);
  EXPECT_NEAR(w.srcc, (100 * 0.5 + 300 * 0.9) / 400, 1e-12);
  EXPECT_NEAR(w.plcc, 0.6, 1e-12);  // B's NaN PLCC is left out of the PLCC average
}

TEST(Report, JsonRoundTripAndBaselineTable) {
  EvalResult r;
  r.model = "m";
  DatasetResult d;
  d.name = "CSIQ";
  d.images = 10;
  d.invalid = 1;
  d.corr = {9, 0.8, 0.6, 0.75, NAN};
  r.datasets = {d};
  r.weighted = weighted_average(r.datasets);
  const EvalResult back = from_json(to_json(r), "test");
  ASSERT_EQ(back.datasets.size(), 1u);
  EXPECT_EQ(back.datasets[0].invalid, 1u);
  EXPECT_DOUBLE_EQ(back.datasets[0].corr.srcc, 0.8);
  EXPECT_TRUE(std::isnan(back.datasets[0].corr.plcc_fitted));
  EvalResult base = r;
  base.model = "base";
  base.datasets[0].corr.plcc = 0.5;
  base.weighted = weighted_average(base.datasets);
  const std::string table = format_table(r, &base);
  EXPECT_NE(table.find("0.750(+50.0%)"), std::string::npos) << table;
  EXPECT_NE(table.find("WAVG."), std::string::npos);
  EXPECT_NE(to_csv(r).find("CSIQ,10,9,1,0,0.800000,0.600000,0.750000,n/a"), std::string::npos) << to_csv(r);
}
