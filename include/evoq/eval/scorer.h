#pragma once
// What `evoq eval` scores images with. A Scorer maps an image file to a quality score or to the reason it
// gave none (an unparsable model answer, an unreadable image); invalid images are counted and excluded,
// never replaced. Handcrafted baselines (BRISQUE, NIQE) live in this layer; model-based scorers (the VLM,
// in a torch layer above) register a factory under their name so `evoq eval --model NAME` finds them.
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

// Options a factory may read (model directory, sampling settings...), as strings by long option name.
using ScorerOptions = std::map<std::string, std::string>;
using ScorerFactory = std::function<std::unique_ptr<Scorer>(const ScorerOptions&)>;

// Registers a factory under `name` (lower case); a later registration with the same name replaces it.
void register_scorer(const std::string& name, ScorerFactory factory);
// Builds the scorer registered as `name`; throws evoq::UsageError listing the known names otherwise.
std::unique_ptr<Scorer> make_scorer(const std::string& name, const ScorerOptions& options);
std::vector<std::string> scorer_names();

struct ScorerRegistrar {
  ScorerRegistrar(const std::string& name, ScorerFactory factory) { register_scorer(name, std::move(factory)); }
};

}  // namespace evoq::eval
