#include "evoq/model/forward_run.h"

#include <algorithm>
#include <chrono>

#include "evoq/core/error.h"
#include "evoq/model/forward_inputs.h"
#include "evoq/model/kv_cache.h"
#include "evoq/model/weights.h"

namespace evoq::model {

namespace {

// Every copy continues the same prompt with the same tokens, so every row of a step must agree;
// copies are dropped along the way to exercise the batch's compaction.
torch::Tensor continue_decoding(QwenVL& net, const Inputs& inputs, const std::vector<int64_t>& ids, int64_t copies) {
  auto prefill = net.prefill(inputs);
  std::vector<torch::Tensor> rows = {prefill.last_logits};
  DecodeBatch batch({{prefill.cache, copies}}, static_cast<int64_t>(ids.size()));
  for (size_t s = 0; s < ids.size(); ++s) {
    auto logits = net.decode_step(batch, torch::full({batch.size()}, ids[s], torch::kInt64));
    rows.push_back(logits[0]);
    EVOQ_CHECK(torch::allclose(logits, logits[0].expand_as(logits), 1e-4, 1e-4),
               "internal error: decode copies disagree");
    if (batch.size() > 1 && s % 2 == 1) {  // drop the first copy
      std::vector<int64_t> keep;
      for (int64_t r = 1; r < batch.size(); ++r) keep.push_back(r);
      batch.keep(keep);
    }
  }
  return torch::stack(rows);
}

double median_prefill_ms(QwenVL& net, const Inputs& inputs, int repeats, const torch::Device& device) {
  net.prefill(inputs);  // warm-up
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    if (device.is_cuda()) torch::cuda::synchronize();
    const auto start = std::chrono::steady_clock::now();
    net.prefill(inputs);
    if (device.is_cuda()) torch::cuda::synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

ForwardResult run_forward(const ForwardSettings& s) {
  if (s.copies < 1) throw UsageError("--copies must be at least 1");
  if (s.inputs_path.empty() && !s.prompt) throw UsageError("give --inputs FILE or --prompt TEXT (with --image)");
  if (s.threads > 0) torch::set_num_threads(s.threads);
  const auto device = parse_torch_device(s.device);
  auto net = load_model(s.model_dir, parse_torch_dtype(s.dtype), device);
  const Inputs inputs = s.inputs_path.empty() ? chat_forward_inputs(s.model_dir, net->config(), s.images, *s.prompt)
                                              : read_forward_inputs(s.inputs_path);
  torch::NoGradGuard no_grad;
  ForwardResult result;
  result.prompt_tokens = inputs.input_ids.size(-1);
  if (!s.continue_ids.empty()) {
    result.logits = continue_decoding(*net, inputs, s.continue_ids, s.copies);
    return result;
  }
  if (s.timed_prefills > 0) result.prefill_ms_median = median_prefill_ms(*net, inputs, s.timed_prefills, device);
  auto logits = net->forward(inputs, s.all_positions ? LogitsOf::All : LogitsOf::Last);
  result.logits = logits.size(0) == 1 ? logits[0] : logits;
  return result;
}

}  // namespace evoq::model
