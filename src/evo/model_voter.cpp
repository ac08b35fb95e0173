#include "evoq/evo/model_voter.h"

#include <set>

#include "evoq/core/error.h"
#include "evoq/gen/answer_parser.h"

namespace evoq::evo {

ShownAnswer shown_answer(const std::string& text) {
  const auto a = gen::parse_compare(text);
  if (!a.valid()) return ShownAnswer::invalid;
  return a.choice == 0 ? ShownAnswer::first : ShownAnswer::second;
}

ModelVoter::ModelVoter(const gen::VlmSession& session, std::string prompt, gen::EngineOptions options)
    : session_(session), prompt_(std::move(prompt)), options_(std::move(options)),
      decoder_(std::make_unique<gen::ModelDecoder>(session.model, options_.sampling.max_new_tokens)) {}

double ModelVoter::prefill_seconds() const { return decoder_->prefill_seconds(); }
double ModelVoter::decode_seconds() const { return decoder_->decode_seconds(); }
int64_t ModelVoter::prefills_run() const { return decoder_->prefills_run(); }
int64_t ModelVoter::prefills_reused() const { return decoder_->prefills_reused(); }

const ModelVoter::PairPrompts& ModelVoter::prompts_of(const PairTask& task) {
  auto it = prompts_.find(task.pair_index);
  if (it != prompts_.end()) return it->second;
  PairPrompts p;
  try {
    const std::string a = task.pairs->resolve(task.image_i), b = task.pairs->resolve(task.image_j);
    p.shown[0] = session_.build_prompt({a, b}, prompt_);
    p.shown[1] = session_.build_prompt({b, a}, prompt_);
    // The decoder keeps each shown order's prefill across the pair's waves under this key.
    for (int shown = 0; shown < 2; ++shown) p.shown[std::size_t(shown)].cache_key = 2 * task.pair_index + shown;
  } catch (const Error& e) {
    p.error = e.what();
  }
  return prompts_.emplace(task.pair_index, std::move(p)).first->second;
}

std::vector<WaveResult> ModelVoter::operator()(const std::vector<PairWave>& waves) {
  // Keep only the prompts of pairs still being voted.
  std::set<std::int64_t> live;
  for (const auto& w : waves) live.insert(w.task->pair_index);
  std::erase_if(prompts_, [&](const auto& kv) {
    if (live.count(kv.first)) return false;
    for (const auto& shown : kv.second.shown) decoder_->forget_prompt(shown.cache_key);
    return true;
  });

  std::vector<WaveResult> out(waves.size());
  std::vector<gen::GenerationRequest> requests;
  struct Slot {
    std::size_t wave;
    int shown;
  };
  std::vector<Slot> slots;
  for (std::size_t w = 0; w < waves.size(); ++w) {
    const PairPrompts& prompts = prompts_of(*waves[w].task);
    if (!prompts.error.empty()) {
      out[w].failed = true;
      out[w].fail_reason = prompts.error;
      continue;
    }
    out[w].results.resize(waves[w].requests.size());
    for (int shown = 0; shown < 2; ++shown) {
      gen::GenerationRequest r;
      r.request_id = std::uint64_t(waves[w].task->pair_index);
      for (const auto& s : waves[w].requests)
        if (int(s.swapped) == shown) r.sample_indices.push_back(s.sample_index);
      if (r.sample_indices.empty()) continue;
      r.prompt = prompts.shown[std::size_t(shown)];
      requests.push_back(std::move(r));
      slots.push_back({w, shown});
    }
  }
  if (requests.empty()) return out;
  torch::NoGradGuard no_grad;
  const auto generated = gen::Engine(*decoder_, options_).generate(requests);
  for (std::size_t r = 0; r < generated.size(); ++r) {
    const PairWave& wave = waves[slots[r].wave];
    for (const auto& sample : generated[r]) {
      std::size_t at = 0;
      while (at < wave.requests.size() && wave.requests[at].sample_index != sample.sample_index) ++at;
      EVOQ_CHECK(at < wave.requests.size(), "vote: generated sample ", sample.sample_index, " was not requested");
      std::string text = session_.decode_text(sample.tokens);
      auto& result = out[slots[r].wave].results[at];
      result.answer = shown_answer(text);
      result.response = std::move(text);
    }
  }
  return out;
}

}  // namespace evoq::evo
