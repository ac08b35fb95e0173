#include "evoq/train/train_checkpoint.h"

#include <H5Cpp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "evoq/core/error.h"
#include "evoq/core/log.h"
#include "evoq/dist/agreement.h"
#include "evoq/io/h5.h"
#include "evoq/train/optimizer.h"
#include "evoq/io/atomic_file.h"
#include "evoq/io/checkpoint_summary.h"
#include "evoq/io/safetensors.h"
#include "evoq/model/weights.h"

namespace evoq::train {

namespace h5 = io::h5;
namespace {

namespace fs = std::filesystem;

constexpr const char* kTrainerFormat = "evoq-trainer-state";
constexpr int64_t kTrainerVersion = 1;
constexpr const char* kTrainerStateFile = "trainer_state.h5";

// Files next to the weights that make the checkpoint folder a usable model folder.
const char* const kModelSideFiles[] = {
    "tokenizer.json",          "tokenizer_config.json",   "vocab.json",         "merges.txt",
    "special_tokens_map.json", "added_tokens.json",       "chat_template.json", "chat_template.jinja",
    "preprocessor_config.json", "video_preprocessor_config.json", "generation_config.json",
};

std::string optimizer_file(int rank) { return "optimizer-r" + std::to_string(rank) + ".h5"; }

// step-<8 digits> -> step, or -1.
int64_t step_of(const std::string& name) {
  static const std::regex pattern("step-([0-9]{8,})");
  std::smatch m;
  if (!std::regex_match(name, m, pattern)) return -1;
  return std::stoll(m[1].str());
}

bool is_complete(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(dir / kTrainerStateFile, ec);
}

void fsync_tree(const fs::path& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file() || entry.is_directory()) io::fsync_path(entry.path().string());
  io::fsync_path(dir.string());
}

void write_trainer_state(const fs::path& path, const TrainProgress& p, const DistributedAdamW& opt, int world,
                         const std::string& model_checksum) {
  h5::write_file_atomic(path.string(), [&](H5::H5File& f) {
    h5::set_attr(f, "model_sha256", model_checksum);
    h5::set_attr(f, "format", std::string(kTrainerFormat));
    h5::set_attr(f, "version", kTrainerVersion);
    h5::set_attr(f, "step", p.step);
    h5::set_attr(f, "epoch", p.epoch);
    h5::set_attr(f, "position", p.position);
    h5::set_attr_u64(f, "seed", p.seed);
    h5::set_attr(f, "extra", p.extra.dump());
    h5::set_attr(f, "world_size", int64_t(world));
    h5::set_attr(f, "optimizer_steps", opt.steps_taken());
    h5::set_attr(f, "trainable_numel", opt.numel());
    h5::set_attr(f, "written", h5::utc_now());
  });
}

void prune(const fs::path& ckdir, const std::string& keep_name, int keep_last) {
  if (keep_last <= 0) return;
  std::vector<std::pair<int64_t, fs::path>> found;
  for (const auto& entry : fs::directory_iterator(ckdir)) {
    const auto name = entry.path().filename().string();
    const int64_t step = step_of(name);
    if (step >= 0 && entry.is_directory()) found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t i = std::size_t(keep_last); i < found.size(); ++i)
    if (found[i].second.filename() != keep_name) fs::remove_all(found[i].second);
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

void save_checkpoint(const std::string& run_dir, model::QwenVL& model, const std::string& source_model_dir,
                     const DistributedAdamW& opt, const TrainProgress& progress, dist::Communicator& comm,
                     int keep_last) {
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  const std::string name = checkpoint_dir_name(progress.step);
  const fs::path tmp = ckdir / (".tmp-" + name);
  const fs::path final_dir = ckdir / name;
  const std::string what = "checkpoint " + final_dir.string();

  // Leftovers of an interrupted save are never referenced: remove them.
  dist::run_agreed(comm, what, true, [&] {
    fs::create_directories(ckdir);
    for (const auto& entry : fs::directory_iterator(ckdir)) {
      const auto n = entry.path().filename().string();
      if (n.rfind(".tmp-", 0) == 0 || n.rfind(".trash-", 0) == 0) fs::remove_all(entry.path());
    }
    fs::create_directories(tmp / "model");
  });
  dist::run_agreed(comm, what, true, [&] {
    model::save_model(model, (tmp / "model").string());
    if (source_model_dir.empty()) return;
    for (const char* file : kModelSideFiles) {
      const fs::path src = fs::path(source_model_dir) / file;
      if (fs::is_regular_file(src)) fs::copy_file(src, tmp / "model" / file, fs::copy_options::overwrite_existing);
    }
  });
  // Each rank writes and fsyncs its own optimizer shard (shared file system for multi-node runs).
  dist::run_agreed(comm, what, false, [&] { opt.save_state((tmp / optimizer_file(comm.rank())).string()); });
  dist::run_agreed(comm, what, true, [&] {
    for (int r = 0; r < comm.size(); ++r)
      EVOQ_CHECK(fs::is_regular_file(tmp / optimizer_file(r)), "optimizer state of rank ", r, " is missing in ",
                 tmp.string(), " (is the run folder on a file system shared by all nodes?)");
    // The weights' checksum (safetensors has none): verified when the checkpoint is loaded.
    write_trainer_state(tmp / kTrainerStateFile, progress, opt, comm.size(),
                        io::weights_checksum((tmp / "model").string()));
    fsync_tree(tmp);
    if (fs::exists(final_dir)) {  // the same step saved again (e.g. after a resume): replace it
      const fs::path trash = ckdir / (".trash-" + name);
      fs::rename(final_dir, trash);
      fs::remove_all(trash);
    }
    fs::rename(tmp, final_dir);
    io::fsync_path(ckdir.string());
    io::write_file_atomic((ckdir / "latest").string(), name + "\n");
    prune(ckdir, name, keep_last);
  });
}

std::vector<std::string> complete_checkpoints(const std::string& run_dir) {
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(ckdir, ec)) return {};
  for (const auto& entry : fs::directory_iterator(ckdir)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && is_complete(entry.path())) found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<ResumePoint> resume_from_newest_readable(const std::string& run_dir, model::QwenVL& model,
                                                       DistributedAdamW& opt, dist::Communicator& comm) {
  const auto latest = latest_checkpoint(run_dir);
  if (!latest) return std::nullopt;
  std::vector<std::string> candidates{*latest};
  for (auto& c : complete_checkpoints(run_dir))
    if (c != *latest) candidates.push_back(std::move(c));
  std::string errors;
  for (const auto& dir : candidates) {
    try {
      auto progress = load_checkpoint(dir, model, opt, comm);  // collective: every rank agrees
      if (!errors.empty()) log::warn("train: resuming from the older checkpoint ", dir);
      return ResumePoint{dir, std::move(progress)};
    } catch (const Error& e) {
      log::warn("train: checkpoint ", dir, " cannot be used (", e.what(), "); trying the previous one");
      errors += (errors.empty() ? "" : "; ") + std::string(e.what());
    }
  }
  fail("no checkpoint in '", run_dir, "/checkpoints' can be loaded: ", errors,
       " — move the folder away to start over");
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(ckdir, ec)) return std::nullopt;
  if (fs::is_regular_file(ckdir / "latest", ec)) {
    std::string name = io::read_file((ckdir / "latest").string());
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
    if (step_of(name) >= 0 && is_complete(ckdir / name)) return (ckdir / name).string();
  }
  // `latest` missing or pointing at a removed folder: the highest complete step folder.
  int64_t best = -1;
  fs::path best_path;
  for (const auto& entry : fs::directory_iterator(ckdir)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step > best && is_complete(entry.path())) {
      best = step;
      best_path = entry.path();
    }
  }
  if (best < 0) return std::nullopt;
  return best_path.string();
}

TrainProgress load_checkpoint(const std::string& checkpoint_dir, model::QwenVL& model, DistributedAdamW& opt,
                              dist::Communicator& comm) {
  const fs::path dir(checkpoint_dir);
  const std::string state_path = (dir / kTrainerStateFile).string();
  TrainProgress p;
  // Every rank loads; a failure on any rank (e.g. its optimizer file is missing) stops all of them.
  dist::run_agreed(comm, "resume from " + checkpoint_dir, false, [&] {
    {
      auto f = h5::open_read(state_path);
      try {
        EVOQ_CHECK(h5::has_attr(f, "format") && h5::get_attr_string(f, "format") == kTrainerFormat, state_path,
                   ": not an evoq trainer state file");
        const int64_t world = h5::get_attr_int(f, "world_size");
        EVOQ_CHECK(world == comm.size(), state_path, ": written by ", world, " ranks, this run has ", comm.size(),
                   " (resume with the same rank count)");
        p.step = h5::get_attr_int(f, "step");
        p.epoch = h5::get_attr_int(f, "epoch");
        p.position = h5::get_attr_int(f, "position");
        p.seed = h5::get_attr_u64(f, "seed");
        p.extra = nlohmann::json::parse(h5::get_attr_string(f, "extra"));
        if (comm.is_root() && h5::has_attr(f, "model_sha256"))
          EVOQ_CHECK(h5::get_attr_string(f, "model_sha256") == io::weights_checksum((dir / "model").string()),
                     (dir / "model").string(), ": the weights do not match their checksum (corrupt)");
      } catch (const H5::Exception& e) {
        fail(state_path, ": cannot read trainer state (", e.getDetailMsg(), ")");
      } catch (const nlohmann::json::exception& e) {
        fail(state_path, ": bad 'extra' JSON (", e.what(), ")");
      }
    }
    model::load_weights(model, io::Checkpoint::open((dir / "model").string()));
    opt.load_state((dir / optimizer_file(comm.rank())).string());
  });
  return p;
}

}  // namespace evoq::train
