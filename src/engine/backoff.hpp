// The pause before retrying a disk operation that failed (a page write, an unlink).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include <hopper/detail/sync.hpp>

namespace hopper::detail {

// After `failures` in a row: 1 ms, doubling, at most a second — quick to resume once the
// disk is back, and a dead disk costs a few calls a second, not a core.
inline Clock::duration backoff(std::uint32_t failures) {
  const std::uint32_t shift = failures == 0 ? 0 : std::min<std::uint32_t>(failures - 1, 10);
  return std::min<Clock::duration>(std::chrono::milliseconds(1) * (1u << shift), std::chrono::seconds(1));
}

}  // namespace hopper::detail
