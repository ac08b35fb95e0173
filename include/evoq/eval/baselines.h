#pragma once
// Handcrafted no-reference baselines as Scorers (both: lower score = better quality).
//   brisque: OpenCV contrib cv::quality::QualityBRISQUE with the LIVE-trained SVR model and feature range
//            files in data/brisque/ (options "brisque-model", "brisque-range" override them);
//   niqe:    evoq::eval::niqe with data/niqe/niqe_pris_params.npz (option "niqe-params").
// Both are registered with the scorer registry under these names.
#include <memory>
#include <string>

#include "evoq/eval/scorer.h"

namespace evoq::eval {

std::unique_ptr<Scorer> make_brisque_scorer(const std::string& model_file, const std::string& range_file);
std::unique_ptr<Scorer> make_niqe_scorer(const std::string& params_npz);

// Makes sure the baselines are registered (static registration can be dropped by the linker when nothing
// else references this object file from the static library).
void register_baseline_scorers();

}  // namespace evoq::eval
