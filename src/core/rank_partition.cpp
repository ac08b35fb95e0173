#include "evoq/core/rank_partition.h"

#include <algorithm>

#include "evoq/core/error.h"

namespace evoq::core {

std::pair<std::size_t, std::size_t> block_range(std::size_t n, int rank, int ranks) {
  EVOQ_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "rank ", rank, " of ", ranks);
  const std::size_t base = n / std::size_t(ranks), extra = n % std::size_t(ranks), r = std::size_t(rank);
  const std::size_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

std::vector<std::size_t> strided_indices(std::size_t n, int rank, int ranks) {
  EVOQ_CHECK(ranks > 0 && rank >= 0 && rank < ranks, "rank ", rank, " of ", ranks);
  std::vector<std::size_t> out;
  for (std::size_t i = std::size_t(rank); i < n; i += std::size_t(ranks)) out.push_back(i);
  return out;
}

}  // namespace evoq::core
