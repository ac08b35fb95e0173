// `evoq preprocess`: runs the image processor on one image and writes the vision tower's input.
#include <iostream>
#include <optional>

#include "evoq/core/cli.h"
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
  const std::string image = evoq::cli::require_string(vm, "image");
  const std::string out = evoq::cli::require_string(vm, "out");
  evoq::image::ProcessorConfig config = evoq::image::load_processor_config(model);
  evoq::image::override_pixel_limits(config, optional_int(vm, "min-pixels"), optional_int(vm, "max-pixels"));
  const evoq::image::ProcessedImage p = evoq::image::preprocess_file(image, config);
  evoq::io::write_npy(out, p.pixel_values.data(), {p.rows, p.cols});
  std::cout << "grid_thw " << p.grid_thw[0] << " " << p.grid_thw[1] << " " << p.grid_thw[2] << "\n"
            << "pixel_values " << p.rows << "x" << p.cols << "\n"
            << "image_tokens " << p.num_image_tokens << "\n";
  return 0;
}

EVOQ_COMMAND(
    "preprocess", "run the Qwen2-VL image processor on one image; write pixel_values as .npy",
    [](evoq::cli::po::options_description& o, evoq::cli::po::positional_options_description&) {
      o.add_options()
          ("model", value<std::string>(), "checkpoint directory (reads its preprocessor_config.json)")
          ("image", value<std::string>(), "image file (JPEG, PNG, BMP, TIFF, WebP)")
          ("out", value<std::string>(), "output .npy file: float32 [patches, 1176]")
          ("min-pixels", value<long long>(), "override the config's min_pixels")
          ("max-pixels", value<long long>(), "override the config's max_pixels");
    },
    run_preprocess,
    "evoq preprocess --model DIR --image PATH --out FILE.npy [--min-pixels N] [--max-pixels N]");

}  // namespace
