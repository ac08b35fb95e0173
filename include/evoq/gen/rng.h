#pragma once
// Counter-based random numbers for sampling (torch-free).
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) is a keyed
// bijection of a 128-bit counter. Every random number used for one generated token is a pure
// function of (seed, request id, sample index, step), so a sample does not depend on which other
// sequences share its batch, how many ranks run, or whether the run was resumed.
//
// Layout: key = seed (low word, high word); counter = (step, sample index, request id low word,
// request id high word). Steps >= kReservedSteps are not token steps: they name per-sample
// decisions taken outside decoding (e.g. kSwapStep, the image-order swap of a compare sample).
#include <array>
#include <cstdint>

namespace evoq::gen {

using PhiloxCounter = std::array<uint32_t, 4>;
using PhiloxKey = std::array<uint32_t, 2>;

// The Philox4x32 bijection with 10 rounds (Random123's philox4x32_10).
inline PhiloxCounter philox4x32_10(PhiloxCounter ctr, PhiloxKey key) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    const uint64_t p0 = uint64_t(kMul0) * ctr[0];
    const uint64_t p1 = uint64_t(kMul1) * ctr[2];
    ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ ctr[3] ^ key[1], uint32_t(p0)};
  }
  return ctr;
}

inline constexpr uint32_t kReservedSteps = 0xFFFF0000u;
inline constexpr uint32_t kSwapStep = 0xFFFFFFFFu;  // compare: whether this sample shows the images swapped

// Identifies one sample stream.
struct SampleStream {
  uint64_t seed = 0;
  uint64_t request_id = 0;
  uint32_t sample_index = 0;

  // The four 32-bit words drawn for `step`.
  PhiloxCounter bits(uint32_t step) const {
    return philox4x32_10({step, sample_index, uint32_t(request_id), uint32_t(request_id >> 32)},
                         {uint32_t(seed), uint32_t(seed >> 32)});
  }

  // A uniform double in [0, 1) with 53 random bits, from the first two words of `step`.
  double uniform(uint32_t step) const {
    PhiloxCounter w = bits(step);
    uint64_t x = (uint64_t(w[0]) << 32 | w[1]) >> 11;
    return double(x) * 0x1.0p-53;
  }
};

}  // namespace evoq::gen
