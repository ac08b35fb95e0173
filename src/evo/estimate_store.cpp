#include "evoq/evo/estimate_store.h"

#include <cmath>
#include <filesystem>

#include "evoq/core/error.h"
#include "evoq/io/h5.h"

namespace evoq::evo {

namespace h5 = io::h5;

namespace fs = std::filesystem;

void write_estimates_h5(const std::string& path, const Estimates& e) {
  const std::size_t n = e.image_path.size();
  EVOQ_CHECK(e.reference_id.size() == n && e.pseudo_score.size() == n && e.valid.size() == n &&
                 e.sample_score.size() == n * std::size_t(e.K) &&
                 (e.responses.empty() || e.responses.size() == n * std::size_t(e.K)),
             "write_estimates_h5: inconsistent sizes for ", path);
  h5::write_file_atomic(path, [&](H5::H5File& f) {
    h5::set_attr(f, "schema_version", kEstimatesSchemaVersion);
    h5::set_attr(f, "format", std::string("evoq-estimates"));
    h5::set_attr(f, "K", e.K);
    h5::set_attr_u64(f, "seed", e.seed);
    h5::set_attr(f, "root", e.root);
    h5::set_attr(f, "model_path", e.model_path);
    h5::set_attr(f, "model_checksum", e.model_checksum);
    h5::set_attr(f, "prompt", e.prompt);
    h5::set_attr(f, "sampling", e.sampling);
    h5::set_attr(f, "pairs_file", e.pairs_file);
    h5::set_attr(f, "num_images", std::int64_t(n));
    h5::set_attr(f, "creation_time", h5::utc_now());
    h5::write_strings(f, "image_path", e.image_path);
    h5::write_strings(f, "reference_id", e.reference_id);
    h5::write_vector(f, "pseudo_score", e.pseudo_score);
    h5::write_vector(f, "valid", e.valid);
    h5::write_vector(f, "sample_score", e.sample_score);
    if (!e.responses.empty()) h5::write_strings(f, "responses", e.responses);
  });
}

Estimates read_estimates_h5(const std::string& path) {
  Estimates e;
  try {
    auto f = h5::open_read(path);
    EVOQ_CHECK(h5::has_attr(f, "format") && h5::get_attr_string(f, "format") == "evoq-estimates", "'", path,
               "' is not an estimates file (format attribute is not evoq-estimates)");
    e.K = h5::get_attr_int(f, "K");
    e.seed = h5::get_attr_u64(f, "seed");
    e.root = h5::get_attr_string(f, "root");
    e.model_path = h5::get_attr_string(f, "model_path");
    e.model_checksum = h5::get_attr_string(f, "model_checksum");
    e.prompt = h5::get_attr_string(f, "prompt");
    e.sampling = h5::get_attr_string(f, "sampling");
    e.pairs_file = h5::get_attr_string(f, "pairs_file");
    e.image_path = h5::read_strings(f, "image_path");
    e.reference_id = h5::read_strings(f, "reference_id");
    e.pseudo_score = h5::read_vector<double>(f, "pseudo_score");
    e.valid = h5::read_vector<std::int32_t>(f, "valid");
    e.sample_score = h5::read_vector<double>(f, "sample_score");
    if (h5::has_dataset(f, "responses")) e.responses = h5::read_strings(f, "responses");
  } catch (const H5::Exception& ex) {
    throw Error("'" + path + "': " + ex.getDetailMsg());
  }
  const std::size_t n = e.image_path.size();
  EVOQ_CHECK(e.pseudo_score.size() == n && e.valid.size() == n && e.sample_score.size() == n * std::size_t(e.K),
             "'", path, "': datasets do not have one row per image");
  return e;
}


}  // namespace evoq::evo
