// `evoq estimate`: the offline stage of EvoEstimate, the paper's ablation (section 4.4, Table 5).
// Every image of pairs.h5 that appears in a pair gets K sampled c_score answers (+ reasoning suffix);
// the mean of the valid scores is its pseudo score (estimates.h5, docs/FORMATS.md). MPI ranks split
// the images; sample k of image n is drawn from the stream (seed, n, k), so the file does not depend on
// the rank count. The file is written once at the end (a crashed run is simply rerun).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "evoq/core/cli.h"
#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/communicator.h"
#include "evoq/evo/estimate_reward.h"
#include "evoq/evo/estimate_store.h"
#include "evoq/evo/pairs.h"
#include "evoq/evo/train_batches.h"
#include "evoq/gen/answer_parser.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/model_decoder.h"
#include "evoq/gen/prompts.h"
#include "evoq/gen/sampling_options.h"
#include "evoq/gen/vlm_session.h"
#include "evoq/gen/vote_sampling.h"
#include "evoq/io/checkpoint_summary.h"

namespace {

namespace po = boost::program_options;
using namespace evoq;
using nlohmann::json;

int run(const po::variables_map& vm) {
  auto comm = dist::mpi_world();
  log::set_rank(comm->rank());
  gen::apply_runtime_options(vm);
  const std::string model_dir = cli::require_string(vm, "model");
  const std::string pairs_path = cli::require_string(vm, "pairs");
  const std::string out = cli::require_string(vm, "out");
  const int K = vm["samples"].as<int>();
  if (K < 1) throw UsageError("--samples must be >= 1");
  const auto seed = vm["seed"].as<std::uint64_t>();
  const int batch_images = vm["batch-images"].as<int>();
  if (batch_images < 1) throw UsageError("--batch-images must be >= 1");

  evo::PairSet pairs = evo::read_pairs_h5(pairs_path);
  if (vm.count("root")) pairs.root = vm["root"].as<std::string>();
  std::vector<std::int64_t> images;  // the images used by some pair, ascending pairs.h5 index
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    images.push_back(pairs.first[p]);
    images.push_back(pairs.second[p]);
  }
  std::sort(images.begin(), images.end());
  images.erase(std::unique(images.begin(), images.end()), images.end());
  if (images.empty()) throw Error(pairs_path + ": no pairs, so no images to estimate");

  std::string prompt = vm.count("prompt-file") ? gen::read_prompt_file(vm["prompt-file"].as<std::string>(), 1)
                                               : std::string(gen::kScorePrompt);
  prompt = gen::with_reasoning_suffix(prompt, vm["reasoning"].as<bool>());
  auto session = gen::VlmSession::load(model_dir, gen::runtime_dtype(vm), gen::runtime_device(vm));
  gen::EngineOptions engine;
  engine.sampling = gen::vote_sampling_defaults(session.defaults);
  gen::apply_sampling_options(vm, engine.sampling);
  engine.seed = seed;
  engine.stop_ids = session.stop_ids;
  engine.max_batch_sequences = vm["max-batch-sequences"].as<int>();

  // This rank's images, in batches; per image its K texts, scores and validity.
  const auto [begin, end] = evo::rank_slice(images.size(), comm->rank(), comm->size());
  json mine = json::array();
  torch::NoGradGuard no_grad;
  gen::ModelDecoder decoder(session.model, engine.sampling.max_new_tokens);
  for (std::size_t b = begin; b < end; b += std::size_t(batch_images)) {
    const std::size_t e = std::min(end, b + std::size_t(batch_images));
    std::vector<gen::GenerationRequest> requests;
    for (std::size_t n = b; n < e; ++n) {
      gen::GenerationRequest r;
      r.request_id = std::uint64_t(images[n]);
      r.prompt = session.build_prompt({pairs.resolve(images[n])}, prompt);
      r.samples = K;
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
    log::info("estimate: rank ", comm->rank(), ": ", e - begin, " of ", end - begin, " images");
  }
  const auto checksum = comm->is_root() ? io::weights_checksum(model_dir) : std::string();
  const auto all = comm->all_gather_bytes(json::to_msgpack(mine));
  if (!comm->is_root()) return 0;

  evo::Estimates est;
  est.K = K;
  est.seed = seed;
  est.root = pairs.root;
  est.model_path = model_dir;
  est.model_checksum = checksum;
  est.prompt = prompt;
  est.sampling = json{{"temperature", engine.sampling.temperature}, {"top_p", engine.sampling.top_p},
                      {"top_k", engine.sampling.top_k}, {"repetition_penalty", engine.sampling.repetition_penalty},
                      {"max_new_tokens", engine.sampling.max_new_tokens}}
                     .dump();
  est.pairs_file = pairs_path;
  const bool keep = vm["keep-responses"].as<bool>();
  std::size_t invalid = 0, none = 0;
  for (const auto& blob : all)  // ranks hold contiguous ascending slices: rank order = image order
    for (const auto& r : json::from_msgpack(blob)) {
      const auto id = r.at("image").get<std::int64_t>();
      est.image_path.push_back(pairs.image_paths.at(std::size_t(id)));
      est.reference_id.push_back(pairs.reference_ids.empty() ? "" : pairs.reference_ids.at(std::size_t(id)));
      const auto scores = r.at("scores").get<std::vector<double>>();
      const auto valid = r.at("valid").get<std::vector<std::uint8_t>>();
      est.pseudo_score.push_back(evo::pseudo_score(scores, valid));
      est.valid.push_back(std::int32_t(std::count(valid.begin(), valid.end(), std::uint8_t(1))));
      for (std::size_t k = 0; k < scores.size(); ++k) {
        est.sample_score.push_back(valid[k] ? scores[k] : NAN);
        if (keep) est.responses.push_back(r.at("texts")[k].get<std::string>());
      }
      invalid += std::size_t(K - est.valid.back());
      none += est.valid.back() == 0 ? 1 : 0;
    }
  evo::write_estimates_h5(out, est);
  log::info("estimate: ", est.image_path.size(), " images, K = ", K, ", ", invalid, " invalid answers, ", none,
            " images without a pseudo score; wrote ", out);
  return 0;
}

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()
      ("model", po::value<std::string>(), "checkpoint directory of the estimating model")
      ("pairs", po::value<std::string>(), "pairs.h5: the images of its pairs are estimated")
      ("out,o", po::value<std::string>(), "estimates.h5 to write")
      ("root", po::value<std::string>(), "folder the images are relative to (default: the root stored in pairs.h5)")
      ("samples,K", po::value<int>()->default_value(32), "sampled c_score answers per image")
      ("seed", po::value<std::uint64_t>()->default_value(0), "seed of the sampled answers")
      ("reasoning", po::value<bool>()->default_value(true)->implicit_value(true),
       "append the paper's reasoning suffix to c_score (--reasoning=0 to leave it out)")
      ("prompt-file", po::value<std::string>(), "custom score prompt instead of c_score")
      ("keep-responses", po::value<bool>()->default_value(true)->implicit_value(true), "store every raw answer")
      ("batch-images", po::value<int>()->default_value(8), "images generated together")
      ("max-batch-sequences", po::value<int>()->default_value(64), "live sequences decoded together");
  gen::add_sampling_options(o, 256);
  gen::add_runtime_options(o);
}

EVOQ_COMMAND("estimate", "EvoEstimate offline stage: mean of K sampled c_score answers per image (estimates.h5)",
             add_options, run,
             "mpirun -np R evoq estimate --model DIR --pairs pairs.h5 --out estimates.h5 [--samples 32] [--seed S]\n"
             "  Sampling defaults as `evoq vote`: temperature 1, top_p 1, top_k 50.");

}  // namespace
