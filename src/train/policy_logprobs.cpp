#include "evoq/train/policy_logprobs.h"

#include <algorithm>
#include <map>

#include "evoq/core/error.h"

namespace evoq::train {

namespace {

std::int64_t longest_response(const std::vector<PolicySequence>& sequences) {
  std::int64_t t = 0;
  for (const auto& s : sequences) t = std::max<std::int64_t>(t, std::int64_t(s.response.size()));
  return t;
}

}  // namespace

torch::Tensor response_mask(const std::vector<PolicySequence>& sequences) {
  const auto S = std::int64_t(sequences.size()), T = longest_response(sequences);
  auto mask = torch::zeros({S, T}, torch::kFloat32);
  for (std::int64_t s = 0; s < S; ++s)
    if (!sequences[s].response.empty()) mask[s].narrow(0, 0, std::int64_t(sequences[s].response.size())).fill_(1.0);
  return mask;
}

TokenLogprobs response_logprobs(model::QwenVL& model, const std::vector<PolicySequence>& sequences,
                                double temperature) {
  EVOQ_CHECK(temperature > 0.0, "response_logprobs: temperature must be > 0");
  const auto S = std::int64_t(sequences.size()), T = longest_response(sequences);
  const auto device = model.options().device();
  TokenLogprobs out;
  out.mask = response_mask(sequences).to(device);
  if (S == 0 || T == 0) {
    out.logp = torch::zeros({S, T}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
    out.entropy = out.logp.clone();
    return out;
  }

  // Padded ids (right padding) and the response positions to score.
  std::int64_t L = 0;
  for (const auto& s : sequences) {
    EVOQ_CHECK(s.prompt != nullptr && !s.prompt->input_ids.empty(), "response_logprobs: sequence without a prompt");
    L = std::max<std::int64_t>(L, std::int64_t(s.prompt->input_ids.size() + s.response.size()));
  }
  std::vector<std::int64_t> ids(std::size_t(S * L), 0), attn(std::size_t(S * L), 0);
  std::vector<std::int64_t> row, pos, target, out_s, out_t;
  for (std::int64_t s = 0; s < S; ++s) {
    const auto& q = sequences[s];
    const auto P = std::int64_t(q.prompt->input_ids.size());
    for (std::int64_t k = 0; k < P; ++k) ids[s * L + k] = q.prompt->input_ids[k];
    for (std::size_t t = 0; t < q.response.size(); ++t) {
      ids[s * L + P + std::int64_t(t)] = q.response[t];
      row.push_back(s);
      pos.push_back(P + std::int64_t(t) - 1);  // the logits at position p predict token p + 1
      target.push_back(q.response[t]);
      out_s.push_back(s);
      out_t.push_back(std::int64_t(t));
    }
    for (std::int64_t k = 0; k < P + std::int64_t(q.response.size()); ++k) attn[s * L + k] = 1;
  }
  auto i64 = [&](std::vector<std::int64_t>& v, std::vector<std::int64_t> shape) {
    return torch::from_blob(v.data(), shape, torch::kInt64).clone().to(device);
  };
  model::Inputs inputs;
  inputs.input_ids = i64(ids, {S, L});
  inputs.attention_mask = i64(attn, {S, L});

  // One vision pass per distinct image; the sequences' image embeddings are slices of it.
  std::map<std::int64_t, std::size_t> slot;
  std::vector<const gen::PromptInput*> unique;
  for (const auto& s : sequences)
    if (s.prompt->pixel_values.defined() && slot.emplace(s.image, unique.size()).second) unique.push_back(s.prompt);
  if (!unique.empty()) {
    std::vector<torch::Tensor> pix, grids;
    for (const auto* p : unique) {
      pix.push_back(p->pixel_values);
      grids.push_back(p->image_grid_thw);
    }
    auto embeds = model.encode_images(torch::cat(pix).to(device), torch::cat(grids).to(device));
    const auto merge = model.config().vision.spatial_merge_size;
    std::vector<torch::Tensor> per_image;
    std::int64_t offset = 0;
    for (const auto* p : unique) {
      const auto n = p->image_grid_thw.prod(-1).sum().item<std::int64_t>() / (merge * merge);
      per_image.push_back(embeds.narrow(0, offset, n));
      offset += n;
    }
    EVOQ_CHECK(offset == embeds.size(0), "response_logprobs: image token count mismatch");
    std::vector<torch::Tensor> seq_embeds, seq_grids;
    for (const auto& s : sequences) {
      if (!s.prompt->pixel_values.defined()) continue;
      seq_embeds.push_back(per_image[slot.at(s.image)]);
      seq_grids.push_back(s.prompt->image_grid_thw);
    }
    inputs.image_embeds = torch::cat(seq_embeds);
    inputs.image_grid_thw = torch::cat(seq_grids).to(device);
  }

  auto hidden = model.hidden_states(inputs);  // [S, L, H]
  auto rows = i64(row, {std::int64_t(row.size())});
  auto cols = i64(pos, {std::int64_t(pos.size())});
  auto h = hidden.index({rows, cols});  // [N, H]
  auto logits = model.logits(h).to(torch::kFloat32);
  if (temperature != 1.0) logits = logits / temperature;
  auto tgt = i64(target, {std::int64_t(target.size()), 1});
  auto logp = torch::zeros({S, T}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  const auto si = i64(out_s, {std::int64_t(out_s.size())}), ti = i64(out_t, {std::int64_t(out_t.size())});
  if (!torch::GradMode::is_enabled()) {
    // Reference / old policy: log p = logit - logsumexp, one read of the [N, vocab] logits instead of a
    // materialised log-softmax (and no entropy: a metric of the policy's pass).
    auto lp = logits.gather(1, tgt).squeeze(1) - torch::logsumexp(logits, -1);
    out.logp = logp.index_put({si, ti}, lp);
    return out;
  }
  auto all = torch::log_softmax(logits, -1);
  auto lp = all.gather(1, tgt).squeeze(1);  // [N]
  out.logp = logp.index_put({si, ti}, lp);
  {
    torch::NoGradGuard no_grad;  // a metric only
    auto a = all.detach();
    out.entropy = torch::zeros_like(logp).index_put({si, ti}, -(a.exp() * a).sum(-1));
  }
  return out;
}

}  // namespace evoq::train
