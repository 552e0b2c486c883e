// Asymmetric barriers through membarrier(2) (include/hopper/detail/barrier.hpp).
#include <hopper/detail/barrier.hpp>

#include <atomic>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace hopper::detail {

namespace {

#if defined(__linux__) && defined(SYS_membarrier)
long membarrier(int cmd) noexcept { return ::syscall(SYS_membarrier, cmd, 0, 0); }
#endif

bool register_expedited() noexcept {
#if defined(__linux__) && defined(SYS_membarrier)
  const long commands = membarrier(MEMBARRIER_CMD_QUERY);
  if (commands < 0 || (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 ||
      (commands & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
    return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#else
  return false;
#endif
}

}  // namespace

bool asymmetric_barriers() noexcept {
  static const bool registered = register_expedited();
  return registered;
}

void heavy_barrier(bool asymmetric) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!asymmetric) return;
#if defined(__linux__) && defined(SYS_membarrier)
  // Fails only for a process that is not registered (EPERM), which asymmetric_barriers()
  // made sure this one is.
  (void)membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
#endif
}

}  // namespace hopper::detail
