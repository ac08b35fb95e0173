#include "evoq/train/rollout_store.h"

#include <nlohmann/json.hpp>

#include "evoq/dist/agreement.h"
#include "evoq/io/h5.h"

namespace evoq::train {

using namespace evoq::evo;  // the method's equations and stores this layer trains with

namespace h5 = io::h5;

namespace {

using nlohmann::json;

json to_json(const ImageRollout& r) {
  return {{"image", r.image},           {"responses", r.responses},   {"texts", r.texts},
          {"scores", r.scores},         {"valid", r.valid},           {"rewards", r.rewards},
          {"advantages", r.advantages}, {"logp_old", r.logp_old_sum}, {"logp_ref", r.logp_ref_sum},
          {"stat_valid", r.stats.valid}, {"stat_mean", r.stats.mean}, {"stat_var", r.stats.var},
          {"has_signal", r.has_signal}, {"zero_variance", r.zero_variance},
          {"partners_used", r.partners_used}, {"partners_skipped", r.partners_skipped}};
}

// NaN does not survive JSON; msgpack keeps doubles bit for bit.
std::vector<double> doubles(const json& j) {
  std::vector<double> out;
  for (const auto& v : j) out.push_back(v.is_null() ? NAN : v.get<double>());
  return out;
}

void write_rollout_file(const std::string& path, const std::vector<std::vector<std::uint8_t>>& blobs,
                        const TrainData& data, const std::vector<std::size_t>& step_pairs,
                        const RolloutFileInfo& info);

}  // namespace

void write_rollouts(const std::string& path, const std::vector<ImageRollout>& mine, const TrainData& data,
                    const std::vector<std::size_t>& step_pairs, const RolloutFileInfo& info,
                    dist::Communicator& comm) {
  json list = json::array();
  for (const auto& r : mine) list.push_back(to_json(r));
  const auto blobs = comm.all_gather_bytes(json::to_msgpack(list));
  // Rank 0 writes; every rank learns whether that worked (a full disk ends the run on every rank).
  dist::run_agreed(comm, "rollouts", true, [&] { write_rollout_file(path, blobs, data, step_pairs, info); });
}

namespace {

void write_rollout_file(const std::string& path, const std::vector<std::vector<std::uint8_t>>& blobs,
                        const TrainData& data, const std::vector<std::size_t>& step_pairs,
                        const RolloutFileInfo& info) {

  std::vector<std::int64_t> image_id, seq_image, offsets{0};
  std::vector<std::string> image_path, text;
  std::vector<std::int32_t> stat_valid, partners_used, partners_skipped, seq_sample, tokens, length;
  std::vector<double> stat_mean, stat_var, score, reward, advantage, logp_old, logp_ref;
  std::vector<std::uint8_t> has_signal, zero_variance, valid;
  for (const auto& blob : blobs) {
    for (const auto& r : json::from_msgpack(blob)) {
      const auto row = std::int64_t(image_id.size());
      const auto id = r.at("image").get<std::int64_t>();
      image_id.push_back(id);
      image_path.push_back(data.image_paths.at(std::size_t(id)));
      stat_valid.push_back(r.at("stat_valid").get<std::int32_t>());
      stat_mean.push_back(r.at("stat_mean").get<double>());
      stat_var.push_back(r.at("stat_var").get<double>());
      has_signal.push_back(r.at("has_signal").get<bool>() ? 1 : 0);
      zero_variance.push_back(r.at("zero_variance").get<bool>() ? 1 : 0);
      partners_used.push_back(r.at("partners_used").get<std::int32_t>());
      partners_skipped.push_back(r.at("partners_skipped").get<std::int32_t>());
      const auto& responses = r.at("responses");
      const auto sc = doubles(r.at("scores")), rw = doubles(r.at("rewards")), ad = doubles(r.at("advantages")),
                 lo = doubles(r.at("logp_old")), lr = doubles(r.at("logp_ref"));
      for (std::size_t k = 0; k < responses.size(); ++k) {
        seq_image.push_back(row);
        seq_sample.push_back(std::int32_t(k));
        for (const auto& t : responses[k]) tokens.push_back(t.get<std::int32_t>());
        offsets.push_back(std::int64_t(tokens.size()));
        length.push_back(std::int32_t(responses[k].size()));
        text.push_back(r.at("texts")[k].get<std::string>());
        score.push_back(sc[k]);
        valid.push_back(r.at("valid")[k].get<std::uint8_t>());
        reward.push_back(rw[k]);
        advantage.push_back(ad[k]);
        logp_old.push_back(lo.empty() ? NAN : lo[k]);
        logp_ref.push_back(lr.empty() ? NAN : lr[k]);
      }
    }
  }
  std::vector<std::int64_t> pair_index, pair_i, pair_j;
  std::vector<double> p_star;
  for (auto p : step_pairs) {
    const auto& pr = data.pairs.at(p);
    pair_index.push_back(pr.pair_index);
    pair_i.push_back(pr.i);
    pair_j.push_back(pr.j);
    p_star.push_back(pr.p_star);
  }
  h5::write_file_atomic(path, [&](H5::H5File& f) {
    h5::set_attr(f, "schema_version", kRolloutsSchemaVersion);
    h5::set_attr(f, "format", std::string("evoq-rollouts"));
    h5::set_attr(f, "step", info.step);
    h5::set_attr(f, "epoch", info.epoch);
    h5::set_attr(f, "position", info.position);
    h5::set_attr_u64(f, "seed", info.seed);
    h5::set_attr(f, "K", std::int64_t(info.samples));
    h5::set_attr(f, "prompt", info.prompt);
    h5::set_attr(f, "model_path", info.model_path);
    h5::set_attr(f, "labels_path", info.labels_path);
    if (!info.run_config.empty()) h5::set_attr(f, "run_config", info.run_config);
    h5::set_attr(f, "creation_time", h5::utc_now());
    h5::write_vector(f, "pair_index", pair_index);
    h5::write_vector(f, "pair_i", pair_i);
    h5::write_vector(f, "pair_j", pair_j);
    h5::write_vector(f, "p_star", p_star);
    h5::write_vector(f, "image_id", image_id);
    h5::write_strings(f, "image_path", image_path);
    h5::write_vector(f, "stat_valid", stat_valid);
    h5::write_vector(f, "stat_mean", stat_mean);
    h5::write_vector(f, "stat_var", stat_var);
    h5::write_vector(f, "has_signal", has_signal);
    h5::write_vector(f, "zero_variance", zero_variance);
    h5::write_vector(f, "partners_used", partners_used);
    h5::write_vector(f, "partners_skipped", partners_skipped);
    h5::write_vector(f, "seq_image", seq_image);
    h5::write_vector(f, "seq_sample", seq_sample);
    h5::write_vector(f, "response_offset", offsets);
    h5::write_vector(f, "response_tokens", tokens);
    h5::write_vector(f, "response_length", length);
    h5::write_strings(f, "text", text);
    h5::write_vector(f, "score", score);
    h5::write_vector(f, "valid", valid);
    h5::write_vector(f, "reward", reward);
    h5::write_vector(f, "advantage", advantage);
    h5::write_vector(f, "logp_old_sum", logp_old);
    h5::write_vector(f, "logp_ref_sum", logp_ref);
  });
}

}  // namespace

}  // namespace evoq::train
