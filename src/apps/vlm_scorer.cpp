// The "vlm" scorer of `evoq eval`: a Qwen2-VL / Qwen2.5-VL checkpoint answering the paper's c_score
// prompt (greedy, or the mean of N sampled answers; reasoning suffix optional). Invalid answers make the
// image invalid with the parser's reasons; they are counted by `evoq eval`, never replaced.
#include <memory>
#include <string>

#include "evoq/core/error.h"
#include "evoq/eval/scorer.h"
#include "evoq/gen/image_scoring.h"
#include "evoq/gen/prompts.h"
#include "evoq/gen/vlm_session.h"

namespace {

using namespace evoq;

std::string option(const eval::ScorerOptions& o, const std::string& key, const std::string& fallback) {
  auto it = o.find(key);
  return it == o.end() || it->second.empty() ? fallback : it->second;
}

long parse_positive(const std::string& key, const std::string& text) {
  try {
    size_t used = 0;
    long v = std::stol(text, &used);
    if (used == text.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  throw UsageError("--" + key + ": expected a positive integer, got '" + text + "'");
}

class VlmScorer final : public eval::Scorer {
 public:
  explicit VlmScorer(const eval::ScorerOptions& o) {
    const std::string dir = option(o, "checkpoint", "");
    EVOQ_CHECK(!dir.empty(), "the vlm scorer needs a checkpoint directory (--model DIR)");
    samples_ = int(parse_positive("samples", option(o, "samples", "1")));
    const std::string reasoning = option(o, "reasoning", "off");
    if (reasoning != "on" && reasoning != "off") throw UsageError("--reasoning: expected on or off, got '" + reasoning + "'");
    const std::string dtype = option(o, "dtype", "fp32"), device = option(o, "device", "cpu");
    if (dtype != "fp32" && dtype != "bf16") throw UsageError("--dtype: expected fp32 or bf16, got '" + dtype + "'");
    session_ = std::make_unique<gen::VlmSession>(
        gen::VlmSession::load(dir, dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32, torch::Device(device)));
    prompt_ = gen::with_reasoning_suffix(std::string(gen::kScorePrompt), reasoning == "on");
    options_.sampling = session_->defaults;
    options_.sampling.do_sample = samples_ > 1;
    options_.sampling.max_new_tokens = parse_positive("max-new-tokens", option(o, "max-new-tokens", "256"));
    options_.stop_ids = session_->stop_ids;
    options_.seed = std::stoull(option(o, "seed", "0"));
    name_ = "vlm " + dir + (samples_ > 1 ? " mean of " + std::to_string(samples_) + " samples" : " greedy") +
            (reasoning == "on" ? " +reasoning" : "");
  }

  std::string name() const override { return name_; }
  bool higher_is_better() const override { return true; }
  std::size_t batch_size() const override { return 8; }

  eval::ScoreResult score(const std::string& image_path) override { return score_batch({image_path}).front(); }

  std::vector<eval::ScoreResult> score_batch(const std::vector<std::string>& paths) override {
    std::vector<eval::ScoreResult> out;
    for (const auto& s : gen::score_images(*session_, paths, samples_, prompt_, options_)) {
      eval::ScoreResult r;
      if (s.valid > 0) r.score = s.mean;
      else r.invalid_reason = "no valid answer (" + s.invalid_summary() + ")";
      out.push_back(std::move(r));
    }
    return out;
  }

 private:
  std::unique_ptr<gen::VlmSession> session_;
  gen::EngineOptions options_;
  std::string prompt_, name_;
  int samples_ = 1;
};

eval::ScorerRegistrar registrar("vlm", [](const eval::ScorerOptions& o) { return std::make_unique<VlmScorer>(o); });

}  // namespace
