#include "evoq/gen/image_scoring.h"

#include "evoq/gen/answer_parser.h"
#include "evoq/gen/model_decoder.h"

namespace evoq::gen {
namespace {

ImageScore summarise(const std::string& image, const std::vector<GeneratedSample>& out, const VlmSession& session) {
  ImageScore s;
  s.image = image;
  std::vector<double> values;
  for (const auto& g : out) {
    std::string text = session.decode_text(g.tokens);
    auto a = parse_score(text);
    if (a.valid()) values.push_back(a.score);
    else s.invalid[to_string(a.status)]++;
    s.responses.push_back(std::move(text));
  }
  s.samples = int(out.size());
  s.valid = int(values.size());
  if (!values.empty()) {
    double sum = 0;
    for (double v : values) sum += v;
    s.mean = sum / double(values.size());
  }
  if (values.size() >= 2) {
    double ss = 0;
    for (double v : values) ss += (v - s.mean) * (v - s.mean);
    s.stddev = std::sqrt(ss / double(values.size() - 1));  // unbiased
  }
  return s;
}

}  // namespace

std::uint64_t image_stream_key(const std::string& image) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a, 64 bit
  for (unsigned char c : image) h = (h ^ c) * 1099511628211ULL;
  return h;
}

std::string ImageScore::invalid_summary() const {
  std::string out;
  for (const auto& [reason, n] : invalid) out += (out.empty() ? "" : ";") + reason + ":" + std::to_string(n);
  return out;
}

std::vector<ImageScore> score_images(const VlmSession& session, const std::vector<std::string>& images,
                                     int samples, const std::string& prompt, const EngineOptions& options) {
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < images.size(); ++i) {
    GenerationRequest r;
    r.request_id = image_stream_key(images[i]);
    r.prompt = session.build_prompt({images[i]}, prompt);
    r.samples = samples;
    requests.push_back(std::move(r));
  }
  torch::NoGradGuard no_grad;
  ModelDecoder decoder(session.model, options.sampling.max_new_tokens);
  auto out = Engine(decoder, options).generate(requests);
  std::vector<ImageScore> scores;
  for (size_t i = 0; i < images.size(); ++i) scores.push_back(summarise(images[i], out[i], session));
  return scores;
}

}  // namespace evoq::gen
