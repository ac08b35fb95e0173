// ModelDecoder over a tiny random Qwen2.5-VL (fp64): every sequence lives in one running batch
// (requests admitted mid-flight join it), and prompts with a cache key are prefilled once across
// generate calls (the voting waves of a pair). Oracle: the same requests run alone on a fresh decoder.
#include <gtest/gtest.h>

#include "evoq/gen/engine.h"
#include "evoq/gen/model_decoder.h"
#include "evoq/model/config.h"
#include "tiny_model_config.h"

using namespace evoq;
using namespace evoq::gen;

namespace {

std::shared_ptr<model::QwenVL> tiny_model() {
  auto config = evoq::testing::tiny_model_config("qwen2_5_vl");
  auto net = std::make_shared<model::QwenVL>(config, torch::TensorOptions().dtype(torch::kFloat64));
  torch::manual_seed(3);
  torch::NoGradGuard g;
  for (auto& p : net->parameters()) p.normal_(0, 0.3);
  net->eval();
  return net;
}

PromptInput image_prompt(const model::QwenVL& net, std::vector<int32_t> ids, std::vector<int64_t> grid, int64_t key) {
  PromptInput p;
  p.input_ids = std::move(ids);
  p.image_grid_thw = torch::tensor(grid).view({1, 3});
  p.pixel_values = torch::randn({grid[0] * grid[1] * grid[2], net.config().vision.patch_dim()}, torch::kFloat64);
  p.cache_key = key;
  return p;
}

EngineOptions options(int max_batch) {
  EngineOptions o;
  o.sampling.do_sample = true;
  o.sampling.temperature = 1.0;
  o.sampling.top_k = 0;
  o.sampling.max_new_tokens = 7;
  o.stop_ids = {3, 4, 5, 6};  // sequences end at different steps
  o.seed = 11;
  o.max_batch_sequences = max_batch;
  return o;
}

std::vector<GenerationRequest> requests(const std::vector<PromptInput>& prompts, std::vector<int> samples) {
  std::vector<GenerationRequest> out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerationRequest r;
    r.request_id = 100 + i;
    r.prompt = prompts[i];
    r.sample_indices = samples;
    out.push_back(r);
  }
  return out;
}

void expect_same(const std::vector<std::vector<GeneratedSample>>& a,
                 const std::vector<std::vector<GeneratedSample>>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t r = 0; r < a.size(); ++r) {
    ASSERT_EQ(a[r].size(), b[r].size());
    for (size_t k = 0; k < a[r].size(); ++k) {
      EXPECT_EQ(a[r][k].tokens, b[r][k].tokens) << "request " << r << " sample " << k;
      EXPECT_EQ(a[r][k].sample_index, b[r][k].sample_index);
    }
  }
}

}  // namespace

TEST(ModelDecoder, RequestsAdmittedMidFlightEqualRunsAlone) {
  auto net = tiny_model();
  torch::manual_seed(5);
  std::vector<PromptInput> prompts = {image_prompt(*net, {1, 2, 95, 95, 95, 95, 7}, {1, 4, 4}, -1),
                                      image_prompt(*net, {8, 95, 95, 95, 95, 95, 95, 9, 10}, {1, 2, 12}, -1),
                                      image_prompt(*net, {11, 95, 95, 95, 95, 12}, {1, 4, 4}, -1)};
  auto reqs = requests(prompts, {0, 1, 2, 3});
  // Batch of 6 sequences: requests 1 and 2 join while earlier ones are still decoding.
  ModelDecoder shared(net, 7);
  auto together = Engine(shared, options(6)).generate(reqs);
  for (size_t r = 0; r < reqs.size(); ++r) {
    ModelDecoder alone(net, 7);
    auto one = Engine(alone, options(64)).generate({reqs[r]});
    expect_same({together[r]}, one);
  }
  EXPECT_EQ(shared.prefills_run(), 3);
}

TEST(ModelDecoder, CachedPromptsArePrefilledOnceAcrossWaves) {
  auto net = tiny_model();
  torch::manual_seed(6);
  std::vector<PromptInput> keyed = {image_prompt(*net, {1, 2, 95, 95, 95, 95, 7}, {1, 4, 4}, 0),
                                    image_prompt(*net, {8, 95, 95, 95, 95, 95, 95, 9, 10}, {1, 2, 12}, 1)};
  std::vector<PromptInput> plain = keyed;
  for (auto& p : plain) p.cache_key = -1;

  ModelDecoder cached(net, 7);
  auto wave1 = Engine(cached, options(64)).generate(requests(keyed, {0, 1, 2}));
  auto wave2 = Engine(cached, options(64)).generate(requests(keyed, {3, 4}));
  EXPECT_EQ(cached.prefills_run(), 2);
  EXPECT_EQ(cached.prefills_reused(), 2);
  EXPECT_EQ(cached.kept_prompts(), 2u);

  ModelDecoder fresh1(net, 7), fresh2(net, 7);
  expect_same(wave1, Engine(fresh1, options(64)).generate(requests(plain, {0, 1, 2})));
  expect_same(wave2, Engine(fresh2, options(64)).generate(requests(plain, {3, 4})));
  EXPECT_EQ(fresh1.kept_prompts(), 0u);

  cached.forget_prompt(0);
  EXPECT_EQ(cached.kept_prompts(), 1u);
  Engine(cached, options(64)).generate(requests(keyed, {5}));
  EXPECT_EQ(cached.prefills_run(), 3);  // prompt 0 again, prompt 1 still kept
  EXPECT_EQ(cached.prefills_reused(), 3);
}
