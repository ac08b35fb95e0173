// The "vlm" scorer of `evoq eval`: a Qwen2-VL / Qwen2.5-VL checkpoint answering the paper's c_score
// prompt (greedy, or the mean of N sampled answers; reasoning suffix optional). Invalid answers make the
// image invalid with the parser's reasons; they are counted by `evoq eval`, never replaced.
#include <memory>
#include <string>

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/eval/scorer.h"
#include "evoq/gen/image_scoring.h"
#include "evoq/gen/prompts.h"
#include "evoq/gen/sampling_settings.h"
#include "evoq/gen/vlm_session.h"

namespace {

using namespace evoq;

class VlmScorer final : public eval::Scorer {
 public:
  explicit VlmScorer(const eval::ScorerSettings& o) : samples_(o.samples) {
    EVOQ_CHECK(!o.checkpoint.empty(), "the vlm scorer needs a checkpoint directory (--model DIR)");
    if (o.samples < 1) throw UsageError("--samples must be >= 1");
    if (o.max_new_tokens < 1) throw UsageError("--max-new-tokens must be >= 1");
    gen::RuntimeSettings runtime;
    runtime.dtype = o.dtype;
    runtime.device = o.device;
    runtime.threads = o.threads;
    const auto device = runtime.torch_device(o.local_rank);
    runtime.apply(device);
    log::info("eval: ", runtime.describe(device));
    session_ =
        std::make_unique<gen::VlmSession>(gen::VlmSession::load(o.checkpoint, runtime.torch_dtype(device), device));
    prompt_ = gen::with_reasoning_suffix(std::string(gen::kScorePrompt), o.reasoning);
    // Greedy for one answer; a mean of N answers samples as the offline stage does (temperature 1,
    // top_k 50), never with a chat model's near-greedy generation_config.
    options_.sampling = samples_ > 1 ? gen::vote_sampling_defaults(session_->defaults) : session_->defaults;
    options_.sampling.do_sample = samples_ > 1;
    options_.sampling.max_new_tokens = o.max_new_tokens;
    options_.stop_ids = session_->stop_ids;
    options_.seed = o.seed;
    name_ = "vlm " + o.checkpoint + (samples_ > 1 ? " mean of " + std::to_string(samples_) + " samples" : " greedy") +
            (o.reasoning ? " +reasoning" : "");
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

eval::ScorerRegistrar registrar("vlm", [](const eval::ScorerSettings& o) { return std::make_unique<VlmScorer>(o); });

}  // namespace
