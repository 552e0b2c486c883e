// Asymmetric memory barriers, for the lane's two handshakes (Queue<T>, "the lane"): a side
// that runs per item (a sender publishing, the receiver taking) against a side that runs
// only before it sleeps (the receiver with nothing to take, a sender without room). Each
// side stores its flag and then loads the other's; with a full barrier on both sides at
// least one sees the other, so no wake-up is lost. A full barrier per item costs what a
// locked instruction does (on x86 a third of the receiver's time at 4 producers of u64,
// docs/performance.md); membarrier(2)'s private expedited command lets the sleeper pay for
// both: it makes every running thread of the process execute a full barrier, so the per
// item side needs only to keep the compiler from reordering its store and load.
//
// light_barrier() is the per-item side, heavy_barrier() the sleeper's. They pair only if
// both ask asymmetric_barriers() the same question, which is answered once per process:
// true when the kernel has the command and registered the process for it (Linux 4.14 and
// later; containers whose seccomp filter refuses membarrier get false). False: both are a
// full fence, as a sequentially consistent store and load would be. Not part of the
// public API.
#pragma once

#include <atomic>

namespace hopper::detail {

// Whether heavy_barrier() is a membarrier; asks the kernel (and registers) on first use.
bool asymmetric_barriers() noexcept;

// The side that runs per item.
inline void light_barrier(bool asymmetric) noexcept {
  if (asymmetric) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

// The side that runs before a sleep. `asymmetric` must be what asymmetric_barriers()
// returned (the caller keeps it, as light_barrier's callers do).
void heavy_barrier(bool asymmetric) noexcept;

}  // namespace hopper::detail
