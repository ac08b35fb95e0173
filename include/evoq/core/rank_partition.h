#pragma once
// How ranks split a list of n work items (pairs to vote, images to roll out or estimate, images to score).
// One rule for every stage, so that a job's split is predictable from its rank count alone.
#include <cstddef>
#include <utility>
#include <vector>

namespace evoq::core {

// Contiguous block of rank `rank` of `ranks`: [begin, end). The first n % ranks ranks get one item more
// than the others (n = 10, 4 ranks: [0,3) [3,6) [6,8) [8,10)); ranks beyond n get an empty block.
std::pair<std::size_t, std::size_t> block_range(std::size_t n, int rank, int ranks);

// Items rank, rank + ranks, rank + 2 ranks, ... (round robin): balances lists whose cost grows along
// the list.
std::vector<std::size_t> strided_indices(std::size_t n, int rank, int ranks);
// Whether item i of a streamed list belongs to `rank` under the round-robin rule above.
inline bool strided_owner(std::size_t i, int rank, int ranks) { return i % std::size_t(ranks) == std::size_t(rank); }

}  // namespace evoq::core
