// distort: makes synthetic distorted variants of reference images (KADID-10k's 25 types x 5 levels, see
// docs/DISTORTIONS.md) and a manifest CSV (path, reference_id, reference_path, type, type_id, level).
//   distort --input REFS_DIR --out OUT [--preset grid|round2] [--types a,b] [--levels 1,3] [--variants 10]
//           [--seed N]
// The same inputs and seed give byte-identical images.
#include <algorithm>
#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <opencv2/imgcodecs.hpp>

#include "evoq/core/error.h"
#include "evoq/eval/distortion_plan.h"
#include "evoq/eval/distortions.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;
using namespace evoq::eval;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<std::string> list_images(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    if (fs::is_directory(in)) {
      std::vector<std::string> found;
      for (const auto& e : fs::directory_iterator(in)) {
        std::string ext = e.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
        if (e.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp"))
          found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else {
      EVOQ_CHECK(fs::is_regular_file(in), "--input: no such file or directory: ", in);
      out.push_back(in);
    }
  }
  EVOQ_CHECK(!out.empty(), "--input: no images found");
  return out;
}

int run(int argc, char** argv) {
  po::options_description o("distort options");
  o.add_options()("help", "show this help")(
      "input", po::value<std::vector<std::string>>()->multitoken(), "reference images or directories")(
      "out", po::value<std::string>(), "output directory")(
      "preset", po::value<std::string>()->default_value("grid"), "grid (types x levels) or round2 (paper recipe)")(
      "types", po::value<std::string>()->default_value("all"), "grid: comma-separated type names or numbers")(
      "levels", po::value<std::string>()->default_value("1,2,3,4,5"), "grid: comma-separated levels")(
      "variants", po::value<int>()->default_value(10), "round2: distorted variants per reference")(
      "seed", po::value<std::uint64_t>()->default_value(0), "random seed")(
      "list-types", "print the 25 types and exit");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, o), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "distort: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << o;
    return 0;
  }
  if (vm.count("list-types")) {
    for (const auto& d : distortion_types())
      std::cout << static_cast<int>(d.type) << " " << d.name << (d.monotonic ? "" : " (non-monotonic)") << "\n";
    return 0;
  }
  if (!vm.count("input") || !vm.count("out")) {
    std::cerr << "distort: --input and --out are required\n" << o;
    return 2;
  }
  const auto refs = list_images(vm["input"].as<std::vector<std::string>>());
  const std::string out = vm["out"].as<std::string>();
  const auto seed = vm["seed"].as<std::uint64_t>();
  const std::string preset = vm["preset"].as<std::string>();
  std::vector<PlannedVariant> plan;
  if (preset == "round2") {
    plan = plan_round2(refs, vm["variants"].as<int>(), seed);
  } else if (preset == "grid") {
    std::vector<Distortion> types;
    if (vm["types"].as<std::string>() == "all")
      for (const auto& d : distortion_types()) types.push_back(d.type);
    else
      for (const auto& t : split(vm["types"].as<std::string>())) types.push_back(parse_distortion(t));
    std::vector<int> levels;
    for (const auto& l : split(vm["levels"].as<std::string>())) levels.push_back(std::stoi(l));
    plan = plan_grid(refs, types, levels, seed);
  } else {
    std::cerr << "distort: --preset must be grid or round2\n";
    return 2;
  }
  fs::create_directories(out);
  std::string current;
  cv::Mat ref;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    const auto& v = plan[i];
    if (v.reference_path != current) {
      ref = cv::imread(v.reference_path, cv::IMREAD_COLOR);
      EVOQ_CHECK(!ref.empty(), "cannot read image ", v.reference_path);
      current = v.reference_path;
    }
    const cv::Mat img = apply_distortion(ref, v.type, v.level, v.seed);
    const std::string path = (fs::path(out) / v.output_name).string();
    EVOQ_CHECK(cv::imwrite(path, img), "cannot write ", path);
  }
  std::ofstream(fs::path(out) / "manifest.csv") << manifest_csv(plan, out);
  std::cerr << "distort: wrote " << plan.size() << " images and " << (fs::path(out) / "manifest.csv").string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const evoq::Error& e) {
    std::cerr << "distort: error: " << e.what() << "\n";
    return 1;
  }
}
