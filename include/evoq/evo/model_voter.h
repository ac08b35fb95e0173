#pragma once
// The VLM behind `evoq vote`: answers the sample waves of several pairs with one generation call.
//
// Each pair has two prompts (c_compare with the images in the original and in the swapped order),
// built once per pair and kept while the pair is being voted; the decoder keeps their prefills (KV)
// across the pair's early-stop waves, so each shown order is prefilled once per pair. A wave's samples are split between
// the two prompts by their swap bits; request id = pair index, so sample k of pair p is drawn from
// the stream (seed, p, k) whatever else shares the batch (gen/engine.h).
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "evoq/evo/vote_loop.h"
#include "evoq/gen/engine.h"
#include "evoq/gen/model_decoder.h"
#include "evoq/gen/vlm_session.h"

namespace evoq::evo {

class ModelVoter {
 public:
  ModelVoter(const gen::VlmSession& session, std::string prompt, gen::EngineOptions options);

  std::vector<WaveResult> operator()(const std::vector<PairWave>& waves);

  // Generation time split (seconds) since construction.
  double prefill_seconds() const;
  double decode_seconds() const;
  // Prefills run, and prefills reused from an earlier wave of the same pair, since construction.
  int64_t prefills_run() const;
  int64_t prefills_reused() const;

 private:
  struct PairPrompts {
    std::array<gen::PromptInput, 2> shown;  // [0]: (x_i, x_j), [1]: (x_j, x_i)
    std::string error;                      // non-empty when an image could not be read
  };
  const PairPrompts& prompts_of(const PairTask& task);

  const gen::VlmSession& session_;
  std::string prompt_;
  gen::EngineOptions options_;
  std::unique_ptr<gen::ModelDecoder> decoder_;
  std::map<std::int64_t, PairPrompts> prompts_;  // pairs of the current batch
};

// Maps a generated text to the vote as shown (0 first, 1 second, invalid) with gen::parse_compare.
ShownAnswer shown_answer(const std::string& text);

}  // namespace evoq::evo
