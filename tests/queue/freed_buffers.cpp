// Where the buffers of received strings are freed (docs/architecture.md, "Buffers freed
// where they are allocated"): receiving into a string by recv() leaves the receiver's old
// buffer in the queue; a sender frees it on its own thread, so that it goes to that
// thread's allocator cache rather than to the arena's lock the sender's next allocation
// needs. Its own executable: it replaces the global operator new and delete to see which
// thread frees what.
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>

#include <hopper/hopper.hpp>

#include "helpers.hpp"
#include "test_util.hpp"

namespace {

// Frees of blocks of a received line's size, by the role of the thread that freed them.
enum Role { kOther = 0, kSender = 1, kReceiver = 2 };
thread_local Role t_role = kOther;
std::atomic<std::uint64_t> g_line_frees[3];
constexpr std::size_t kLine = 1000;  // a block of malloc_usable_size in [kLine + 1, kLine + 64]

[[maybe_unused]] void count_free(void* p) noexcept {
  if (p == nullptr) return;
  const std::size_t n = malloc_usable_size(p);
  if (n > kLine && n <= kLine + 64) g_line_frees[t_role].fetch_add(1, std::memory_order_relaxed);
}

// ThreadSanitizer's runtime defines the global operator new and delete itself (linking a
// replacement fails): there the rounds run and are checked, the frees are not counted.
#if defined(__SANITIZE_THREAD__)
#define HOPPER_COUNTS_FREES 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HOPPER_COUNTS_FREES 0
#endif
#endif
#ifndef HOPPER_COUNTS_FREES
#define HOPPER_COUNTS_FREES 1
#endif

}  // namespace

#if HOPPER_COUNTS_FREES
void* operator new(std::size_t n) {
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  count_free(p);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  count_free(p);
  std::free(p);
}
#endif

namespace hopper::test {
namespace {

struct Counts {
  std::uint64_t sender;
  std::uint64_t receiver;
};

// One sender thread and one receiver thread in lock step: `rounds` rounds of `per_round`
// lines of kLine bytes, each round all sent, then all received one recv() at a time into
// the same variable (whose old buffer the queue gets each time), before the next round is
// sent. So each round is one batch of the receiver's, retired at the next round's first
// recv().
Counts run_rounds(std::uint64_t memory_bytes, int rounds, int per_round) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_memory_bytes = memory_bytes;
  o.max_disk_bytes = 0;
  auto ch = open<std::string>(o);
  for (auto& c : g_line_frees) c = 0;
  std::atomic<int> sent_rounds{0};
  std::atomic<int> received_rounds{0};
  std::thread sender([&, s = std::move(ch.sender)]() mutable {
    t_role = kSender;
    for (int r = 0; r < rounds; ++r) {
      while (received_rounds.load() < r) std::this_thread::yield();
      for (int i = 0; i < per_round; ++i) {
        std::string line(kLine, static_cast<char>('a' + (r + i) % 26));
        EXPECT_TRUE(s.send(std::move(line)).ok());
      }
      sent_rounds.store(r + 1);
    }
  });
  t_role = kReceiver;
  std::string out;
  for (int r = 0; r < rounds; ++r) {
    while (sent_rounds.load() < r + 1) std::this_thread::yield();
    for (int i = 0; i < per_round; ++i) {
      EXPECT_TRUE(ch.receiver.recv(out).ok()) << "round " << r << " item " << i;
      // Compared without building the expected line: its free would count as the receiver's.
      const char c = static_cast<char>('a' + (r + i) % 26);
      EXPECT_TRUE(out.size() == kLine && out.find_first_not_of(c) == std::string::npos) << "round " << r << " item " << i;
    }
    received_rounds.store(r + 1);
  }
  sender.join();
  t_role = kOther;
  return Counts{g_line_frees[kSender].load(), g_line_frees[kReceiver].load()};
}

// Every line's buffer is freed once the receiver is done with it; with room for the
// spares, nearly all of those frees happen on the sender's thread: a round's buffers are
// kept when the receiver retires its batch, and freed by the sends of the round after
// (all but the last two rounds'). Freed by the receiver, each would go to the
// sender's arena under its lock.
TEST(FreedBuffers, TheSenderFreesTheBuffersTheReceiverIsDoneWith) {
  const int rounds = 100;
  const int per_round = 50;
  const Counts c = run_rounds(1 << 20, rounds, per_round);
  if (!HOPPER_COUNTS_FREES) GTEST_SKIP() << "frees are not counted under ThreadSanitizer";
  const std::uint64_t lines = std::uint64_t{rounds} * per_round;
  EXPECT_GE(c.sender, lines * 9 / 10) << "receiver freed " << c.receiver;
  EXPECT_LE(c.receiver, lines / 10) << "sender freed " << c.sender;
}

// What the queue keeps for senders to free is bounded by a quarter of the memory budget:
// with room for 16 lines of 1,033 bytes, 4 of each round's 10 buffers reach a sender
// (4 KiB); the receiver frees the rest, as it did before.
TEST(FreedBuffers, TheSparesKeptAreBoundedByAQuarterOfTheBudget) {
  const int rounds = 50;
  const int per_round = 10;
  const Counts c = run_rounds(16 * 1100, rounds, per_round);
  if (!HOPPER_COUNTS_FREES) GTEST_SKIP() << "frees are not counted under ThreadSanitizer";
  EXPECT_LE(c.sender, std::uint64_t{rounds} * 4);
  EXPECT_GT(c.sender, 0u) << "no spare reached the sender";
  // Every buffer is freed by one or the other, but the last two rounds' and the (at most
  // 2 x 4) spares still kept when the run ends.
  EXPECT_GE(c.sender + c.receiver, std::uint64_t{rounds - 2} * per_round - 8);
}

}  // namespace
}  // namespace hopper::test
