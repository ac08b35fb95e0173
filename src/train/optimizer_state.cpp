// DistributedAdamW::save_state / load_state: this rank's optimizer state in one HDF5 file.
#include <H5Cpp.h>

#include "evoq/core/error.h"
#include "evoq/io/h5.h"
#include "evoq/train/optimizer.h"
#include "optimizer_impl.h"

namespace evoq::train {

namespace h5 = io::h5;
namespace {

constexpr const char* kStateFormat = "evoq-optimizer-state";
constexpr int64_t kStateVersion = 1;

void write_float_tensor(H5::Group& where, const std::string& name, const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  h5::write_raw(where, name, H5::PredType::NATIVE_FLOAT, c.data_ptr<float>(), std::uint64_t(c.numel()));
}

torch::Tensor read_float_tensor(const H5::Group& where, const std::string& name, int64_t expected,
                                const std::string& path) {
  EVOQ_CHECK(where.nameExists(name), path, ": optimizer state has no dataset '", name, "'");
  const auto n = h5::dataset_length(where, name);
  EVOQ_CHECK(int64_t(n) == expected, path, ": dataset '", name, "' has ", n, " elements, this run needs ", expected);
  auto t = torch::empty({expected}, torch::kFloat32);
  h5::read_raw(where, name, H5::PredType::NATIVE_FLOAT, t.data_ptr<float>(), n);
  return t;
}

}  // namespace

void DistributedAdamW::save_state(const std::string& h5_path) const {
  const auto& m = *impl_;
  std::vector<std::string> names;
  std::vector<int64_t> sizes;
  for (const auto& p : m.params) {
    names.push_back(p.name);
    sizes.push_back(p.numel);
  }
  h5::write_file_atomic(h5_path, [&](H5::H5File& f) {
    h5::set_attr(f, "format", std::string(kStateFormat));
    h5::set_attr(f, "version", kStateVersion);
    h5::set_attr(f, "rank", int64_t(m.rank));
    h5::set_attr(f, "world_size", int64_t(m.world));
    h5::set_attr(f, "sharded", int64_t(m.config.shard_state && m.world > 1));
    h5::set_attr(f, "bucket_elements", m.bucket_elements);
    h5::set_attr(f, "numel", m.numel);
    h5::set_attr(f, "owned_numel", m.owned);
    h5::set_attr(f, "master_numel", m.master_numel);
    h5::set_attr(f, "steps_taken", m.steps);
    h5::set_attr(f, "adam_steps", m.adam_t);
    h5::set_attr(f, "written", h5::utc_now());
    h5::write_strings(f, "param_names", names);
    h5::write_vector(f, "param_numel", sizes);
    write_float_tensor(f, "exp_avg", m.exp_avg);
    write_float_tensor(f, "exp_avg_sq", m.exp_avg_sq);
    write_float_tensor(f, "master", m.master);
  });
}

void DistributedAdamW::load_state(const std::string& h5_path) {
  auto& m = *impl_;
  auto f = h5::open_read(h5_path);
  try {
    EVOQ_CHECK(h5::has_attr(f, "format") && h5::get_attr_string(f, "format") == kStateFormat, h5_path,
               ": not an evoq optimizer state file");
    EVOQ_CHECK(h5::get_attr_int(f, "version") == kStateVersion, h5_path, ": unsupported optimizer state version ",
               h5::get_attr_int(f, "version"));
    auto expect = [&](const char* key, int64_t want, const char* what) {
      const int64_t got = h5::get_attr_int(f, key);
      EVOQ_CHECK(got == want, h5_path, ": ", what, " is ", got, " in the file but ", want, " in this run");
    };
    expect("world_size", m.world, "the rank count");
    expect("rank", m.rank, "the rank");
    expect("sharded", int64_t(m.config.shard_state && m.world > 1), "optimizer-state sharding");
    expect("numel", m.numel, "the trainable element count");
    if (m.config.shard_state && m.world > 1) expect("bucket_elements", m.bucket_elements, "the bucket size (elements)");
    expect("owned_numel", m.owned, "this rank's owned element count");
    expect("master_numel", m.master_numel, "the fp32 master element count");
    const auto names = h5::read_strings(f, "param_names");
    const auto sizes = h5::read_vector<int64_t>(f, "param_numel");
    EVOQ_CHECK(names.size() == m.params.size() && sizes.size() == m.params.size(), h5_path, ": the file has ",
               names.size(), " parameters, this run trains ", m.params.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      EVOQ_CHECK(names[i] == m.params[i].name, h5_path, ": parameter ", i, " is ", names[i], " in the file but ",
                 m.params[i].name, " in this run");
      EVOQ_CHECK(sizes[i] == m.params[i].numel, h5_path, ": parameter ", names[i], " has ", sizes[i],
                 " elements in the file but ", m.params[i].numel, " in this run");
    }
    auto exp_avg = read_float_tensor(f, "exp_avg", m.owned, h5_path);
    auto exp_avg_sq = read_float_tensor(f, "exp_avg_sq", m.owned, h5_path);
    auto master = read_float_tensor(f, "master", m.master_numel, h5_path);
    m.exp_avg.copy_(exp_avg);
    m.exp_avg_sq.copy_(exp_avg_sq);
    m.master.copy_(master);
    m.steps = h5::get_attr_int(f, "steps_taken");
    m.adam_t = h5::get_attr_int(f, "adam_steps");
  } catch (const H5::Exception& e) {
    fail(h5_path, ": cannot read optimizer state (", e.getDetailMsg(), ")");
  }
  // Parameters of the non-fp32 kind are the rounded masters; make them agree exactly.
  torch::NoGradGuard no_grad;
  for (const auto& b : m.buckets)
    for (const auto& s : b.segments)
      if (s.master_off >= 0 && !(m.config.shard_state && m.world > 1))
        m.flat_param(s.param).narrow(0, s.param_off, s.len).copy_(m.master.narrow(0, s.master_off, s.len));
}

}  // namespace evoq::train
