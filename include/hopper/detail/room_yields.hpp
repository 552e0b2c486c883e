// RoomYields: how many times a sender without room lets go of the queue lock and yields
// before it sleeps (Queue<T>::send_locked; docs/architecture.md, "Budgets").
#pragma once

#include <algorithm>

namespace hopper::detail {

// Adapts to what yielding bought, as the receiver's pause does: twice as many yields (up to
// kMost) after a send whose yields found room, half as many (down to kLeast) after one that
// slept anyway. With a receiver that keeps up, room comes back within tens of microseconds
// and a sender that sleeps costs a wake-up on both sides; with a slow receiver each item it
// takes wakes the sender, whose yields would be CPU spent for nothing (docs/performance.md,
// "Yielding for room"). Not thread-safe: the queue lock guards it.
class RoomYields {
 public:
  static constexpr int kLeast = 4;
  static constexpr int kMost = 64;
  int limit() const noexcept { return limit_; }
  void found_room() noexcept { limit_ = std::min(kMost, limit_ * 2); }
  void slept() noexcept { limit_ = std::max(kLeast, limit_ / 2); }

 private:
  int limit_ = kLeast;
};

}  // namespace hopper::detail
