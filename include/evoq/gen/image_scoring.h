#pragma once
// Quality scores of images by a VLM with the c_score prompt: one answer per sample, parsed with
// parse_score; the image's score is the mean of its valid answers (invalid answers are counted per
// reason, never replaced). Shared by `evoq score` and the "vlm" scorer of `evoq eval`.
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "evoq/gen/engine.h"
#include "evoq/gen/vlm_session.h"

namespace evoq::gen {

struct ImageScore {
  std::string image;
  int samples = 0, valid = 0;
  double mean = NAN, stddev = NAN;     // NaN when no valid answer (stddev also when fewer than 2)
  std::map<std::string, int> invalid;  // reason -> count
  std::vector<std::string> responses;
  std::string invalid_summary() const;  // "reason:count;..."
};

// The sampling stream of an image: sample k of image x is drawn from (seed, image_stream_key(x), k), a
// hash of the path as given, so an image's answers do not depend on the other images of the call, the
// batch size, the rank count of `evoq eval` or a resume.
std::uint64_t image_stream_key(const std::string& image);

// Scores `images` with `samples` answers each (greedy when options.sampling.do_sample is false).
std::vector<ImageScore> score_images(const VlmSession& session, const std::vector<std::string>& images,
                                     int samples, const std::string& prompt, const EngineOptions& options);

}  // namespace evoq::gen
