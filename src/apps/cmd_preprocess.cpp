// `evoq preprocess`: runs the image processor on one or more images and writes the vision tower's
// input. Several images are concatenated in order, as transformers does for a list of images.
#include <iostream>
#include <optional>
#include <vector>

#include "evoq/cli/cli.h"
#include "evoq/core/error.h"
#include "evoq/image/processor.h"
#include "evoq/io/npy.h"

namespace {

using evoq::cli::po::value;

std::optional<std::int64_t> optional_int(const evoq::cli::po::variables_map& vm, const char* name) {
  if (!vm.count(name)) return std::nullopt;
  return vm[name].as<long long>();
}

int run_preprocess(const evoq::cli::po::variables_map& vm) {
  const std::string model = evoq::cli::require_string(vm, "model");
  const std::string out = evoq::cli::require_string(vm, "out");
  if (!vm.count("image") || vm["image"].as<std::vector<std::string>>().empty())
    throw evoq::UsageError("the option '--image' is required");
  const auto images = vm["image"].as<std::vector<std::string>>();
  evoq::image::ProcessorConfig config = evoq::image::load_processor_config(model);
  evoq::image::override_pixel_limits(config, optional_int(vm, "min-pixels"), optional_int(vm, "max-pixels"));

  std::vector<float> pixel_values;
  std::vector<std::array<std::int64_t, 3>> grids;
  std::int64_t rows = 0, tokens = 0;
  for (const auto& image : images) {
    evoq::image::ProcessedImage p = evoq::image::preprocess_file(image, config);
    pixel_values.insert(pixel_values.end(), p.pixel_values.begin(), p.pixel_values.end());
    grids.push_back(p.grid_thw);
    rows += p.rows;
    tokens += p.num_image_tokens;
  }
  evoq::io::write_npy(out, pixel_values.data(), {rows, config.patch_dim()});
  for (const auto& g : grids) std::cout << "grid_thw " << g[0] << " " << g[1] << " " << g[2] << "\n";
  std::cout << "pixel_values " << rows << "x" << config.patch_dim() << "\n"
            << "image_tokens " << tokens << "\n";
  return 0;
}

EVOQ_COMMAND(
    "preprocess", "run the Qwen2-VL image processor on images; write pixel_values as .npy",
    [](evoq::cli::po::options_description& o, evoq::cli::po::positional_options_description&) {
      o.add_options()
          ("model", value<std::string>(), "checkpoint directory (reads its preprocessor_config.json)")
          ("image", value<std::vector<std::string>>()->composing(),
           "image file (JPEG, PNG, BMP, TIFF, WebP); repeat for several (patches concatenated in order)")
          ("out", value<std::string>(), "output .npy file: float32 [patches, 1176]")
          ("min-pixels", value<long long>(), "override the config's min_pixels")
          ("max-pixels", value<long long>(), "override the config's max_pixels");
    },
    run_preprocess,
    "evoq preprocess --model DIR --image PATH [--image PATH ...] --out FILE.npy [--min-pixels N] [--max-pixels N]\n"
    "prints one 'grid_thw T H W' line per image, then the pixel_values shape and the <|image_pad|> count");

}  // namespace
