#include "evoq/evo/estimate_stage.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "evoq/core/error.h"
#include "evoq/core/rank_partition.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/evo/estimate_reward.h"
#include "evoq/evo/estimate_store.h"
#include "evoq/evo/pairs.h"
#include "evoq/gen/answer_parser.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/model_decoder.h"
#include "evoq/gen/prompts.h"
#include "evoq/io/checkpoint_summary.h"

namespace evoq::evo {

using nlohmann::json;

namespace {
void write_estimates(const EstimateSettings& s, const PairSet& pairs, const std::string& prompt,
                     const gen::EngineOptions& engine, const std::vector<std::vector<std::uint8_t>>& all);
}  // namespace

void EstimateSettings::validate() const {
  if (model_dir.empty()) throw UsageError("the option '--model' is required");
  if (pairs_path.empty()) throw UsageError("the option '--pairs' is required");
  if (out_path.empty()) throw UsageError("the option '--out' is required");
  if (K < 1) throw UsageError("--samples must be >= 1");
  if (batch_images < 1) throw UsageError("--batch-images must be >= 1");
  if (max_batch_sequences < 1) throw UsageError("--max-batch-sequences must be >= 1");
}

int run_estimate(const EstimateSettings& s, dist::Communicator& comm) {
  s.validate();
  const std::size_t batch_images = std::size_t(s.batch_images);
  PairSet pairs = read_pairs_h5(s.pairs_path);
  if (!s.root.empty()) pairs.root = s.root;
  std::vector<std::int64_t> images;  // the images used by some pair, ascending pairs.h5 index
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    images.push_back(pairs.first[p]);
    images.push_back(pairs.second[p]);
  }
  std::sort(images.begin(), images.end());
  images.erase(std::unique(images.begin(), images.end()), images.end());
  if (images.empty()) throw Error(s.pairs_path + ": no pairs, so no images to estimate");

  const std::string prompt = gen::with_reasoning_suffix(
      s.prompt_file.empty() ? std::string(gen::kScorePrompt) : gen::read_prompt_file(s.prompt_file, 1), s.reasoning);
  const auto device = s.runtime.torch_device(comm.local_rank());
  s.runtime.apply(device);
  if (comm.is_root()) log::info("estimate: ", s.runtime.describe(device));
  auto session = gen::VlmSession::load(s.model_dir, s.runtime.torch_dtype(device), device);
  gen::EngineOptions engine;
  engine.sampling = gen::with_overrides(gen::vote_sampling_defaults(session.defaults), s.sampling, "sampling options");
  engine.seed = s.seed;
  engine.stop_ids = session.stop_ids;
  engine.max_batch_sequences = s.max_batch_sequences;

  // This rank's images, in batches; per image its K texts, scores and validity.
  const auto [begin, end] = core::block_range(images.size(), comm.rank(), comm.size());
  json mine = json::array();
  torch::NoGradGuard no_grad;
  gen::ModelDecoder decoder(session.model, engine.sampling.max_new_tokens);
  for (std::size_t b = begin; b < end; b += batch_images) {
    const std::size_t e = std::min(end, b + batch_images);
    std::vector<gen::GenerationRequest> requests;
    for (std::size_t n = b; n < e; ++n) {
      gen::GenerationRequest r;
      r.request_id = std::uint64_t(images[n]);
      r.prompt = session.build_prompt({pairs.resolve(images[n])}, prompt);
      r.samples = s.K;
      requests.push_back(std::move(r));
    }
    const auto generated = gen::Engine(decoder, engine).generate(requests);
    for (std::size_t n = b; n < e; ++n) {
      json texts = json::array(), scores = json::array(), valid = json::array();
      for (const auto& g : generated[n - b]) {
        const auto text = session.decode_text(g.tokens);
        const auto a = gen::parse_score(text);
        texts.push_back(text);
        scores.push_back(a.valid() ? a.score : 0.0);
        valid.push_back(a.valid() ? 1 : 0);
      }
      mine.push_back({{"image", images[n]}, {"texts", texts}, {"scores", scores}, {"valid", valid}});
    }
    log::info("estimate: rank ", comm.rank(), ": ", e - begin, " of ", end - begin, " images");
  }
  const auto all = comm.all_gather_bytes(json::to_msgpack(mine));
  // Rank 0 writes; every rank learns whether that worked.
  dist::run_agreed(comm, "estimate", true, [&] { write_estimates(s, pairs, prompt, engine, all); });
  return 0;
}

namespace {

void write_estimates(const EstimateSettings& s, const PairSet& pairs, const std::string& prompt,
                     const gen::EngineOptions& engine, const std::vector<std::vector<std::uint8_t>>& all) {
  Estimates est;
  est.K = s.K;
  est.seed = s.seed;
  est.root = pairs.root;
  est.model_path = s.model_dir;
  est.model_checksum = io::weights_checksum(s.model_dir);
  est.prompt = prompt;
  auto sampling = gen::to_json(engine.sampling);
  sampling.erase("do_sample");
  est.sampling = sampling.dump();
  est.pairs_file = s.pairs_path;
  const bool keep = s.keep_responses;
  std::size_t invalid = 0, none = 0;
  for (const auto& blob : all)  // ranks hold contiguous ascending slices: rank order = image order
    for (const auto& r : json::from_msgpack(blob)) {
      const auto id = r.at("image").get<std::int64_t>();
      est.image_path.push_back(pairs.image_paths.at(std::size_t(id)));
      est.reference_id.push_back(pairs.reference_ids.empty() ? "" : pairs.reference_ids.at(std::size_t(id)));
      const auto scores = r.at("scores").get<std::vector<double>>();
      const auto valid = r.at("valid").get<std::vector<std::uint8_t>>();
      est.pseudo_score.push_back(pseudo_score(scores, valid));
      est.valid.push_back(std::int32_t(std::count(valid.begin(), valid.end(), std::uint8_t(1))));
      for (std::size_t k = 0; k < scores.size(); ++k) {
        est.sample_score.push_back(valid[k] ? scores[k] : NAN);
        if (keep) est.responses.push_back(r.at("texts")[k].get<std::string>());
      }
      invalid += std::size_t(s.K - est.valid.back());
      none += est.valid.back() == 0 ? 1 : 0;
    }
  write_estimates_h5(s.out_path, est);
  log::info("estimate: ", est.image_path.size(), " images, K = ", s.K, ", ", invalid, " invalid answers, ", none,
            " images without a pseudo score; wrote ", s.out_path);
}

}  // namespace


}  // namespace evoq::evo
