#include "evoq/eval/scorer.h"

#include <algorithm>
#include <cctype>

#include "evoq/core/error.h"

namespace evoq::eval {
namespace {

std::map<std::string, ScorerFactory>& factories() {
  static std::map<std::string, ScorerFactory> map;
  return map;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::vector<ScoreResult> Scorer::score_batch(const std::vector<std::string>& image_paths) {
  std::vector<ScoreResult> out;
  out.reserve(image_paths.size());
  for (const auto& p : image_paths) out.push_back(score(p));
  return out;
}

void register_scorer(const std::string& name, ScorerFactory factory) { factories()[lower(name)] = std::move(factory); }

nlohmann::json ScorerSettings::fingerprint(const std::string& name) const {
  const auto n = lower(name);
  if (n == "brisque") return {{"scorer", n}, {"brisque_model", brisque_model}, {"brisque_range", brisque_range}};
  if (n == "niqe") return {{"scorer", n}, {"niqe_params", niqe_params}};
  return {{"scorer", n},       {"checkpoint", checkpoint}, {"samples", samples},
          {"reasoning", reasoning}, {"max_new_tokens", max_new_tokens}, {"seed", seed}, {"dtype", dtype}};
}

std::unique_ptr<Scorer> make_scorer(const std::string& name, const ScorerSettings& options) {
  const auto it = factories().find(lower(name));
  if (it == factories().end()) {
    std::string known;
    for (const auto& n : scorer_names()) known += " " + n;
    throw UsageError("--model: unknown scorer '" + name + "' (known:" + known + ")");
  }
  return it->second(options);
}

std::vector<std::string> scorer_names() {
  std::vector<std::string> names;
  for (const auto& [n, f] : factories()) names.push_back(n);
  return names;
}

}  // namespace evoq::eval
