// TicketRing: a bound, not a queue to use. The least an in-memory MPSC queue must do per
// item to keep what hopper promises in memory — one total order across producers and a
// byte budget shared by all of them — without a lock: a ticket from one shared counter
// (fetch_add) orders the items, a shared byte counter (fetch_add) charges the budget, and
// the item is published into a ring slot the receiver drains in ticket order (a
// sequence-numbered slot per ticket). No spill, no durability, no age, no drop policy,
// no stats: whatever hopper's in-memory send path could become without its lock, it
// would still do at least this. docs/performance.md, "Where moodycamel's advantage comes
// from", compares it with moodycamel (no total order, no budget) and with hopper.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>

#include <hopper/footprint.hpp>

namespace hopper::bench {

// `kAdmitFirst`: admit with a compare-and-swap of the same word, only once the budget has
// room (what a queue that spills must do: an item refused by the budget goes elsewhere,
// and so must not hold a ticket); otherwise fetch_add first and wait for room after.
template <class T, bool kAdmitFirst = false>
class TicketRing {
 public:
  // Room for the budget's worth of the smallest items and then some, so that the ring is
  // not what makes a producer wait: the budget is.
  explicit TicketRing(std::uint64_t budget_bytes)
      : budget_(std::min(budget_bytes, kBytesMask / 2)),
        capacity_(std::min<std::uint64_t>(std::bit_ceil(budget_bytes / std::max<std::uint64_t>(1, footprint(T{})) + 1024),
                               std::uint64_t{1} << (kTicketBits - 1))),
        mask_(capacity_ - 1),
        slots_(new Slot[capacity_]) {
    for (std::uint64_t i = 0; i < capacity_; ++i) slots_[i].turn.store(i, std::memory_order_relaxed);
  }

  // Any thread. Waits for room in the budget (an item larger than the budget waits for an
  // empty queue), then for its slot.
  void push(T&& item) {
    const std::uint64_t fp = footprint(item);
    // One fetch_add takes the ticket and charges the budget, so that bytes are charged in
    // ticket order: with two counters a producer could be charged ahead of an earlier
    // ticket that then waits for room the later one holds (a deadlock, seen). The word
    // holds the ticket in its low kTicketBits and the bytes ever charged above them, both
    // modulo their widths; the ring's turns are kept modulo 2^kTicketBits too.
    std::uint64_t t = 0;
    if constexpr (kAdmitFirst) {
      std::uint64_t old = word_.load(std::memory_order_relaxed);
      for (;;) {
        const std::uint64_t reserved = ((old >> kTicketBits) + fp) & kBytesMask;
        const std::uint64_t held = (reserved - released_.load(std::memory_order_seq_cst)) & kBytesMask;
        if (held > budget_ && held != fp) {
          await([&] {
            const std::uint64_t r = ((word_.load(std::memory_order_relaxed) >> kTicketBits) + fp) & kBytesMask;
            const std::uint64_t h = (r - released_.load(std::memory_order_seq_cst)) & kBytesMask;
            return h <= budget_ || h == fp;
          });
          old = word_.load(std::memory_order_relaxed);
          continue;
        }
        if (word_.compare_exchange_weak(old, old + ((fp << kTicketBits) | 1), std::memory_order_seq_cst,
                                        std::memory_order_relaxed))
          break;
      }
      t = old & kTicketMask;
    } else {
      const std::uint64_t old = word_.fetch_add((fp << kTicketBits) | 1, std::memory_order_seq_cst);
      t = old & kTicketMask;
      const std::uint64_t reserved = ((old >> kTicketBits) + fp) & kBytesMask;
      await([&] {
        const std::uint64_t held = (reserved - released_.load(std::memory_order_seq_cst)) & kBytesMask;
        return held <= budget_ || held == fp;  // an item larger than the budget: into an empty queue
      });
    }
    Slot& s = slots_[t & mask_];
    await([&] { return s.turn.load(std::memory_order_seq_cst) == t; });
    s.item = std::move(item);
    s.footprint = fp;
    s.turn.store((t + 1) & kTicketMask, std::memory_order_seq_cst);
    if (receiver_sleeping_.load(std::memory_order_seq_cst)) wake(items_);
  }

  // The receiving thread. False when every producer closed and the ring is empty.
  bool pop(T& out) {
    Slot& s = slots_[head_ & mask_];
    const std::uint64_t published = (head_ + 1) & kTicketMask;
    for (int spins = 0; s.turn.load(std::memory_order_acquire) != published; ++spins) {
      if (spins < kSpins) {
        spin_pause();
        continue;
      }
      give_back();  // producers may wait for what this receiver took
      const std::uint32_t seen = items_.load(std::memory_order_seq_cst);
      receiver_sleeping_.store(true, std::memory_order_seq_cst);
      if (s.turn.load(std::memory_order_seq_cst) == published) {
        receiver_sleeping_.store(false, std::memory_order_relaxed);
        break;
      }
      if (live_.load(std::memory_order_seq_cst) == 0) {
        receiver_sleeping_.store(false, std::memory_order_relaxed);
        if (s.turn.load(std::memory_order_acquire) == published) break;
        return false;
      }
      items_.wait(seen, std::memory_order_seq_cst);
      receiver_sleeping_.store(false, std::memory_order_relaxed);
    }
    out = std::move(s.item);
    taken_ += s.footprint;
    s.turn.store((head_ + capacity_) & kTicketMask, std::memory_order_release);
    head_ = (head_ + 1) & kTicketMask;
    // The budget comes back lazily, as hopper's receiver settles its batch: every 64
    // items, and whenever the ring runs dry.
    if ((head_ & 63) == 0) give_back();
    return true;
  }

  void open_producer() { live_.fetch_add(1, std::memory_order_relaxed); }
  void close_producer() {
    live_.fetch_sub(1, std::memory_order_seq_cst);
    items_.fetch_add(1, std::memory_order_seq_cst);
    items_.notify_all();
  }

 private:
  struct Slot {
    std::atomic<std::uint64_t> turn;  // t: free for ticket t; t + 1: holds ticket t's item
    std::uint64_t footprint = 0;
    T item{};
  };
  static constexpr int kSpins = 256;
  static constexpr int kTicketBits = 24;
  static constexpr std::uint64_t kTicketMask = (std::uint64_t{1} << kTicketBits) - 1;
  static constexpr std::uint64_t kBytesMask = (std::uint64_t{1} << (64 - kTicketBits)) - 1;

  static void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  static void wake(std::atomic<std::uint32_t>& signal) noexcept {
    signal.fetch_add(1, std::memory_order_seq_cst);
    signal.notify_all();
  }
  // Spin, then yield, then sleep until the receiver gives bytes or slots back (give_back
  // wakes sleepers; both sides' seq_cst operations make sure one sees the other).
  template <class Ready>
  void await(Ready ready) {
    for (int spins = 0; !ready(); ++spins) {
      if (spins < kSpins) {
        spin_pause();
      } else if (spins < kSpins + 64) {
        std::this_thread::yield();
      } else {
        const std::uint32_t seen = room_.load(std::memory_order_seq_cst);
        room_waiters_.fetch_add(1, std::memory_order_seq_cst);
        if (!ready()) room_.wait(seen, std::memory_order_seq_cst);
        room_waiters_.fetch_sub(1, std::memory_order_seq_cst);
      }
    }
  }
  void give_back() {
    if (taken_ == 0) return;
    released_.fetch_add(taken_, std::memory_order_seq_cst);  // modulo 2^64, read modulo kBytesMask
    taken_ = 0;
    if (room_waiters_.load(std::memory_order_seq_cst) > 0) wake(room_);
  }

  const std::uint64_t budget_;
  const std::uint64_t capacity_;
  const std::uint64_t mask_;
  const std::unique_ptr<Slot[]> slots_;
  // The producers' line: the ticket and the bytes charged, one word every push increments.
  alignas(64) std::atomic<std::uint64_t> word_{0};
  // The receiver's.
  alignas(64) std::uint64_t head_ = 0;
  std::uint64_t taken_ = 0;  // footprints taken since the last give-back
  alignas(64) std::atomic<std::uint64_t> released_{0};
  std::atomic<std::uint32_t> room_{0};
  std::atomic<int> room_waiters_{0};
  alignas(64) std::atomic<std::uint32_t> items_{0};
  std::atomic<bool> receiver_sleeping_{false};
  std::atomic<int> live_{0};
};

}  // namespace hopper::bench
