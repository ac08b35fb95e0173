#pragma once
// Image order for compare samples (torch-free): each sample of a pair shows the two images in the
// original order or swapped, by its own counter-based random bit, so position bias averages out
// within a pair and the choice does not depend on batching. A vote in the shown order is mapped
// back to the original order before counting.
#include <cstdint>

#include "evoq/gen/answer_parser.h"
#include "evoq/gen/rng.h"

namespace evoq::gen {

// True when sample `sample` of pair `request_id` shows (B, A) instead of (A, B).
inline bool compare_sample_swapped(uint64_t seed, uint64_t request_id, int sample) {
  return (SampleStream{seed, request_id, uint32_t(sample)}.bits(kSwapStep)[0] & 1u) != 0;
}

// 0 = A (the original first image) is better, 1 = B is better, -1 = invalid answer.
inline int original_order_vote(const CompareAnswer& answer, bool swapped) {
  if (!answer.valid()) return -1;
  return swapped ? 1 - answer.choice : answer.choice;
}

}  // namespace evoq::gen
