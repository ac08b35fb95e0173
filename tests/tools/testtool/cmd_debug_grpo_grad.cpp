// `evoq debug-grpo-grad --in IN.json --out DIR`: the gradient of the GRPO loss (Eq. 5-6) for FIXED
// sampled sequences, so tests can compare it with PyTorch autograd on the transformers model
// (tests/python/test_train_grpo.py). Hidden.
//
// IN.json: {"model": DIR, "ref_model": DIR (optional, needed when beta != 0), "prompt": TEXT,
//           "beta", "clip_low", "clip_high", "aggregation", "constant_divisor", "micro_batch",
//           "sequences": [{"image": PATH, "response": [ids], "advantage": A, "logp_old": [..] (optional)}]}
// DIR/model.safetensors receives d loss / d parameter (parameter names as in the checkpoint);
// DIR/result.json the loss, the normaliser and each sequence's prompt ids.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/train/grpo_step.h"
#include "evoq/gen/vlm_session.h"
#include "evoq/io/safetensors.h"
#include "evoq/model/activation_checkpoint.h"
#include "evoq/model/autocast.h"
#include "evoq/model/weights.h"
#include "stage_options.h"

namespace {

using namespace evoq;
using nlohmann::json;
namespace po = boost::program_options;

void add_options(po::options_description& o, po::positional_options_description&) {
  o.add_options()("in", po::value<std::string>(), "input JSON")("out", po::value<std::string>(), "output folder")(
      "activation-checkpointing", "recompute decoder layers and vision blocks in backward")(
      "autocast", po::value<std::string>()->default_value("off"), "off | bf16 (forwards under bf16 autocast)");
  evoq::apps::add_runtime_options(o, gen::RuntimeSettings{.dtype = "fp32"});  // the oracle is fp32
}

int run(const po::variables_map& vm) {
  const auto runtime = evoq::apps::runtime_settings(vm);
  const auto device = runtime.torch_device();
  runtime.apply(device);
  const auto in_path = cli::require_string(vm, "in");
  const auto out_dir = cli::require_string(vm, "out");
  std::ifstream f(in_path);
  EVOQ_CHECK(f.good(), "cannot read '", in_path, "'");
  const json in = json::parse(f);
  const auto dtype = runtime.torch_dtype(device);
  const auto autocast = model::parse_autocast(vm["autocast"].as<std::string>());
  model::set_activation_checkpointing(vm.count("activation-checkpointing") > 0);
  auto session = gen::VlmSession::load(in.at("model").get<std::string>(), dtype, device);
  std::shared_ptr<model::QwenVL> reference;
  if (in.contains("ref_model")) {
    reference = model::load_model(in.at("ref_model").get<std::string>(), dtype, device);
    for (auto& p : reference->parameters()) p.set_requires_grad(false);
  }

  evo::GrpoLossConfig config;
  config.beta = in.value("beta", config.beta);
  config.clip_low = in.value("clip_low", config.clip_low);
  config.clip_high = in.value("clip_high", config.clip_high);
  config.aggregation = evo::parse_loss_aggregation(in.value("aggregation", std::string("token-mean")));
  config.constant_divisor = in.value("constant_divisor", config.constant_divisor);
  config.temperature = in.value("temperature", config.temperature);
  const int micro_batch = in.value("micro_batch", 1000000);
  const auto prompt = in.at("prompt").get<std::string>();

  std::map<std::string, std::int64_t> image_ids;
  std::vector<std::unique_ptr<gen::PromptInput>> prompts;
  std::vector<train::PolicySequence> seqs;
  std::vector<double> adv;
  std::vector<torch::Tensor> old;
  for (const auto& s : in.at("sequences")) {
    const auto image = s.at("image").get<std::string>();
    auto [it, fresh] = image_ids.emplace(image, std::int64_t(prompts.size()));
    if (fresh) prompts.push_back(std::make_unique<gen::PromptInput>(session.build_prompt({image}, prompt)));
    seqs.push_back({it->second, prompts[std::size_t(it->second)].get(), s.at("response").get<std::vector<std::int32_t>>()});
    adv.push_back(s.at("advantage").get<double>());
    if (s.contains("logp_old")) old.push_back(torch::tensor(s.at("logp_old").get<std::vector<double>>(), torch::kFloat32).to(device));
  }
  EVOQ_CHECK(old.empty() || old.size() == seqs.size(), "'", in_path, "': logp_old on some sequences only");
  std::vector<torch::Tensor> ref;
  if (config.beta != 0.0) {
    EVOQ_CHECK(reference != nullptr, "'", in_path, "': beta != 0 needs ref_model");
    ref = train::sequence_logprobs(*reference, seqs, micro_batch, autocast, config.temperature);
  }
  const double normaliser = evo::loss_normaliser(config, evo::local_counts(train::response_mask(seqs)));
  session.model->zero_grad();
  const auto sums =
      train::accumulate_grpo_gradients(*session.model, seqs, adv, old, ref, config, normaliser, micro_batch, autocast);

  std::filesystem::create_directories(out_dir);
  std::vector<torch::Tensor> keep;
  std::vector<io::TensorToWrite> tensors;
  for (const auto& item : session.model->named_parameters(true)) {
    const auto& g = item.value().grad();
    auto t = (g.defined() ? g : torch::zeros_like(item.value())).detach().to(torch::kCPU, torch::kFloat32).contiguous();
    keep.push_back(t);
    io::TensorToWrite w;
    w.name = item.key();
    w.dtype = io::DType::F32;
    w.shape.assign(t.sizes().begin(), t.sizes().end());
    w.data = t.data_ptr();
    w.nbytes = std::size_t(t.numel()) * t.element_size();
    tensors.push_back(std::move(w));
  }
  io::write_checkpoint(out_dir, tensors);
  json result{{"loss", sums.loss}, {"normaliser", normaliser}, {"kl_sum", sums.kl_sum},
              {"clipped_tokens", sums.clipped_tokens}, {"tokens", sums.tokens}};
  json ids = json::array();
  for (const auto& s : seqs) ids.push_back(s.prompt->input_ids);
  result["prompt_ids"] = ids;
  std::ofstream(std::filesystem::path(out_dir) / "result.json") << result.dump() << "\n";
  return 0;
}

EVOQ_COMMAND("debug-grpo-grad", "internal: GRPO loss gradient for fixed sequences (tests)", add_options, run,
             "evoq-testtool debug-grpo-grad --in IN.json --out DIR", /*hidden=*/false);

}  // namespace
