#pragma once
// Decoding image files to 8-bit RGB with OpenCV, converting the way transformers' slow Qwen2-VL image
// processor sees a PIL image opened from the same file (Image.open, no EXIF rotation):
//  - BGR(A) channel order -> RGB;
//  - grey -> R = G = B;
//  - alpha (RGBA, grey+alpha, palette/tRNS transparency as OpenCV expands it) -> composited onto
//    white with Pillow's alpha_composite integer arithmetic (transformers' convert_to_rgb);
//  - 16-bit samples -> 8 bits as Pillow converts them: colour (and grey+alpha) keep the high byte
//    (Pillow unpacks "RGB;16B"/"RGBA;16B"/"LA;16B"); a single 16-bit grey channel opens as mode
//    "I;16" and Pillow's convert("RGB") clips it to 255.
//  - 8-bit RGBA TIFFs arrive from OpenCV premultiplied; over white that still gives Pillow's values.
// Known differences from PIL (checked against Pillow 13): a grey PNG whose tRNS chunk marks one grey
// level transparent, and grey+alpha TIFFs (OpenCV drops their alpha; PIL makes those pixels white);
// CMYK JPEGs (OpenCV's and Pillow's CMYK->RGB differ by a few levels); GIF is not read.
// Every failure (missing, empty, unreadable or undecodable file) throws evoq::Error naming the file.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "evoq/image/rgb_image.h"

namespace evoq::image {

// Reads and decodes an image file (JPEG, PNG, BMP, TIFF, WebP, and whatever else OpenCV reads).
Image8 load_rgb(const std::filesystem::path& path);

// Decodes an encoded image held in memory; `name` names it in errors.
Image8 decode_rgb(std::span<const std::uint8_t> encoded, const std::string& name);

}  // namespace evoq::image
