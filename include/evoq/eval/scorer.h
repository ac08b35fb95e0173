#pragma once
// What `evoq eval` scores images with. A Scorer maps an image file to a quality score or to the reason it
// gave none (an unparsable model answer, an unreadable image); invalid images are counted and excluded,
// never replaced. Handcrafted baselines (BRISQUE, NIQE) live in this layer; model-based scorers (the VLM,
// in a torch layer above) register a factory under their name so `evoq eval --model NAME` finds them.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace evoq::eval {

struct ScoreResult {
  std::optional<double> score;   // empty: invalid
  std::string invalid_reason;    // why score is empty (one line)
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  // Identifies the scorer and its settings in result files (e.g. "niqe", "qwen2.5-vl greedy").
  virtual std::string name() const = 0;
  // Direction of the raw scores: false for BRISQUE and NIQE (lower = better). Correlations are computed on
  // scores turned so that higher is better.
  virtual bool higher_is_better() const = 0;
  virtual ScoreResult score(const std::string& image_path) = 0;
  // Batched scoring (a VLM batches prompts); the default scores one by one.
  virtual std::vector<ScoreResult> score_batch(const std::vector<std::string>& image_paths);
  // Preferred batch size for score_batch.
  virtual std::size_t batch_size() const { return 1; }
};

// What a factory may read: the settings of every scorer, typed (each reads its own).
struct ScorerSettings {
  // Model scorers ("vlm"): a checkpoint answering c_score.
  std::string checkpoint;
  int samples = 1;                   // answers per image: 1 = greedy, N = mean of N sampled answers
  bool reasoning = false;            // the paper's reasoning suffix after c_score
  std::int64_t max_new_tokens = 256;
  std::uint64_t seed = 0;
  std::string dtype = "auto", device = "cpu";
  int threads = 0;
  int local_rank = 0;                // binds "cuda" to the GPU of the node-local rank
  // Baselines ("" = the files shipped in data/).
  std::string brisque_model, brisque_range, niqe_params;

  // The settings of scorer `name` that change its scores (recorded in score files, compared on resume).
  nlohmann::json fingerprint(const std::string& name) const;
};
using ScorerFactory = std::function<std::unique_ptr<Scorer>(const ScorerSettings&)>;

// Registers a factory under `name` (lower case); a later registration with the same name replaces it.
void register_scorer(const std::string& name, ScorerFactory factory);
// Builds the scorer registered as `name`; throws evoq::UsageError listing the known names otherwise.
std::unique_ptr<Scorer> make_scorer(const std::string& name, const ScorerSettings& settings);
std::vector<std::string> scorer_names();

struct ScorerRegistrar {
  ScorerRegistrar(const std::string& name, ScorerFactory factory) { register_scorer(name, std::move(factory)); }
};

}  // namespace evoq::eval
