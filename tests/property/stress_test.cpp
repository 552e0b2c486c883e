// The seed's repeat loop and its relatives: the tiniest budgets (8 bytes of memory, a disk
// budget of a segment or three, one u32 per page, the smallest segment that holds one),
// a few items, a concurrent receiver, thousands of times. Each iteration checks order and
// count, so a lost wake-up, a stranded item or a reordering shows up as a failure (or,
// for a hang, as the watchdog's abort naming the test).
//
// HOPPER_STRESS_SCALE=N multiplies every loop count (default 1).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "test_util.hpp"

namespace hopper {
namespace {

using namespace std::chrono_literals;
using test::TempDir;
using u32 = std::uint32_t;

std::uint64_t scaled(std::uint64_t n) { return n * test::env_scale("HOPPER_STRESS_SCALE"); }

// Options for one iteration: the tiniest budgets, the disk budget cycling through one,
// two and three segments; fdatasync off (what is tested is the hand-off, not durability).
Options tiny(const std::filesystem::path& dir, std::uint64_t iteration) {
  Options o = test::tiny_options(dir, 1 + iteration % 3);
  o.file_system = test::unsynced_file_system();
  return o;
}

// One sender, one receiver thread, ten items: the seed's test, repeated.
TEST(Stress, SeedLoopTiniestBudgetsConcurrentReceiver) {
  const std::uint64_t loops = scaled(2500);
  test::Watchdog watchdog(std::chrono::seconds(300 * test::env_scale("HOPPER_STRESS_SCALE")), "Stress.SeedLoop");
  constexpr u32 kItems = 10;
  std::uint64_t spilled = 0;
  for (std::uint64_t it = 0; it < loops; ++it) {
    TempDir dir;
    auto ch = channel<u32>(tiny(dir.path(), it));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    std::vector<u32> got;
    Status end;
    std::thread receiver([&] { got = test::recv_until_closed(ch->receiver, &end); });
    for (u32 i = 0; i < kItems; ++i) {
      Status s = ch->sender.send(u32{i});
      ASSERT_TRUE(s.ok()) << "iteration " << it << ", item " << i << ": " << s.message();
    }
    ch->sender.close();
    receiver.join();
    ASSERT_EQ(end.code(), Errc::closed) << "iteration " << it << ": " << end.message();
    ASSERT_EQ(got, test::iota_u32(kItems)) << "iteration " << it;
    const Stats st = ch->receiver.stats();
    ASSERT_EQ(st.items_received, kItems) << "iteration " << it;
    ASSERT_EQ(st.memory_bytes, 0u) << "iteration " << it;
    spilled += st.items_spilled;
  }
  // The loop is only worth its time if the disk path was exercised.
  EXPECT_GT(spilled, 0u);
}

// The same with the real file system (fdatasync at every shutdown), fewer times.
TEST(Stress, SeedLoopRealFileSystem) {
  const std::uint64_t loops = scaled(150);
  test::Watchdog watchdog(std::chrono::seconds(300 * test::env_scale("HOPPER_STRESS_SCALE")), "Stress.SeedLoopRealFs");
  for (std::uint64_t it = 0; it < loops; ++it) {
    TempDir dir;
    auto ch = channel<u32>(test::tiny_options(dir.path(), 1 + it % 3));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    std::vector<u32> got;
    std::thread receiver([&] { got = test::recv_until_closed(ch->receiver); });
    for (u32 i = 0; i < 10; ++i) ASSERT_TRUE(ch->sender.send(u32{i}).ok()) << "iteration " << it;
    ch->sender.close();
    receiver.join();
    ASSERT_EQ(got, test::iota_u32(10)) << "iteration " << it;
  }
}

// Several producers, each with its own Sender copy, through the tiniest budgets: every
// item arrives once, each producer's in its order.
TEST(Stress, SeveralProducersTiniestBudgets) {
  const std::uint64_t loops = scaled(400);
  test::Watchdog watchdog(std::chrono::seconds(300 * test::env_scale("HOPPER_STRESS_SCALE")), "Stress.SeveralProducers");
  constexpr u32 kProducers = 4, kEach = 10;
  for (std::uint64_t it = 0; it < loops; ++it) {
    TempDir dir;
    auto ch = channel<u32>(tiny(dir.path(), it));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    std::vector<std::thread> producers;
    std::atomic<int> failed{0};
    for (u32 p = 0; p < kProducers; ++p) {
      producers.emplace_back([s = ch->sender, p, &failed]() mutable {
        for (u32 i = 0; i < kEach; ++i)
          if (!s.send(p << 16 | i).ok()) ++failed;
      });
    }
    ch->sender.close();
    std::vector<u32> next(kProducers, 0);
    u32 v = 0, total = 0;
    Status s;
    while ((s = ch->receiver.recv(v)).ok()) {
      const u32 p = v >> 16;
      ASSERT_LT(p, kProducers) << "iteration " << it << ": invented item " << v;
      ASSERT_EQ(v & 0xffff, next[p]) << "iteration " << it << ", producer " << p;
      ++next[p];
      ++total;
    }
    for (auto& t : producers) t.join();
    ASSERT_EQ(failed.load(), 0) << "iteration " << it;
    ASSERT_EQ(s.code(), Errc::closed) << "iteration " << it << ": " << s.message();
    ASSERT_EQ(total, kProducers * kEach) << "iteration " << it;
  }
}

// The receiver mixes every way of receiving (recv, recv_for, try_recv, recv_many) while
// two producers send through the tiniest budgets.
TEST(Stress, EveryWayOfReceiving) {
  const std::uint64_t loops = scaled(400);
  test::Watchdog watchdog(std::chrono::seconds(300 * test::env_scale("HOPPER_STRESS_SCALE")), "Stress.EveryWayOfReceiving");
  constexpr u32 kEach = 25;
  for (std::uint64_t it = 0; it < loops; ++it) {
    TempDir dir;
    auto ch = channel<u32>(tiny(dir.path(), it));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    std::vector<std::thread> producers;
    for (u32 p = 0; p < 2; ++p) {
      producers.emplace_back([s = ch->sender, p]() mutable {
        for (u32 i = 0; i < kEach; ++i) EXPECT_TRUE(s.send(p << 16 | i).ok());
      });
    }
    ch->sender.close();
    u32 next[2] = {0, 0};
    std::vector<u32> batch;
    bool closed = false;
    for (std::uint64_t round = 0; !closed; ++round) {
      batch.clear();
      u32 v = 0;
      Status s;
      switch ((round + it) % 4) {
        case 0: s = ch->receiver.recv(v); if (s.ok()) batch.push_back(v); break;
        case 1: s = ch->receiver.recv_for(v, 1ms); if (s.ok()) batch.push_back(v); break;
        case 2: s = ch->receiver.try_recv(v); if (s.ok()) batch.push_back(v); break;
        case 3: s = ch->receiver.recv_many(batch, 1 + round % 7); break;
      }
      if (!s.ok()) {
        ASSERT_TRUE(s.code() == Errc::timeout || s.code() == Errc::empty || s.code() == Errc::closed)
            << "iteration " << it << ": " << s.message();
        closed = s.code() == Errc::closed;
        continue;
      }
      for (u32 x : batch) {
        const u32 p = x >> 16;
        ASSERT_LT(p, 2u) << "iteration " << it;
        ASSERT_EQ(x & 0xffff, next[p]) << "iteration " << it << ", producer " << p;
        ++next[p];
      }
    }
    for (auto& t : producers) t.join();
    ASSERT_EQ(next[0], kEach) << "iteration " << it;
    ASSERT_EQ(next[1], kEach) << "iteration " << it;
  }
}

// The receiver goes away mid-stream while producers may be blocked; the last sender's
// close persists what is left. Per producer, received then recovered must be exactly what
// its sends accepted, in order: nothing lost in the hand-off, nothing twice.
TEST(Stress, ReceiverLeavesMidStreamNothingLostAcrossReopen) {
  const std::uint64_t loops = scaled(300);
  test::Watchdog watchdog(std::chrono::seconds(300 * test::env_scale("HOPPER_STRESS_SCALE")), "Stress.ReceiverLeaves");
  constexpr u32 kProducers = 3, kEach = 20;
  for (std::uint64_t it = 0; it < loops; ++it) {
    TempDir dir;
    const Options o = tiny(dir.path(), it);
    std::vector<std::vector<u32>> seen(kProducers);
    std::vector<u32> accepted(kProducers, 0);
    {
      auto ch = channel<u32>(o);
      ASSERT_TRUE(ch.ok()) << ch.status().message();
      std::vector<std::thread> producers;
      for (u32 p = 0; p < kProducers; ++p) {
        producers.emplace_back([s = ch->sender, p, &accepted]() mutable {
          for (u32 i = 0; i < kEach; ++i) {
            Status st = s.send(p << 16 | i);
            if (!st.ok()) {
              EXPECT_EQ(st.code(), Errc::closed);
              return;
            }
            accepted[p] = i + 1;
          }
        });
      }
      ch->sender.close();
      const u32 take = static_cast<u32>(it % (kProducers * kEach));
      u32 v = 0;
      for (u32 i = 0; i < take && ch->receiver.recv(v).ok(); ++i) seen[v >> 16].push_back(v & 0xffff);
      ch->receiver.close();
      for (auto& t : producers) t.join();
    }
    auto ch = channel<u32>(o);
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    ch->sender.close();
    for (u32 v : test::recv_until_closed(ch->receiver)) {
      ASSERT_LT(v >> 16, kProducers) << "iteration " << it;
      seen[v >> 16].push_back(v & 0xffff);
    }
    for (u32 p = 0; p < kProducers; ++p)
      ASSERT_EQ(seen[p], test::iota_u32(accepted[p])) << "iteration " << it << ", producer " << p;
  }
}

// One queue, a long stream through the tiniest budgets: segments are created and deleted
// tens of thousands of times while two producers and the receiver race.
TEST(Stress, LongStreamTiniestBudgets) {
  TempDir dir;
  test::Watchdog watchdog(std::chrono::seconds(300 * test::env_scale("HOPPER_STRESS_SCALE")), "Stress.LongStream");
  const u32 each = static_cast<u32>(scaled(15000));
  auto ch = channel<u32>(tiny(dir.path(), 1));
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  std::vector<std::thread> producers;
  for (u32 p = 0; p < 2; ++p) {
    producers.emplace_back([s = ch->sender, p, each]() mutable {
      for (u32 i = 0; i < each; ++i) ASSERT_TRUE(s.send(p << 31 | i).ok());
    });
  }
  ch->sender.close();
  u32 next[2] = {0, 0};
  u32 v = 0;
  while (ch->receiver.recv(v).ok()) {
    const u32 p = v >> 31;
    ASSERT_EQ(v & 0x7fffffff, next[p]) << "producer " << p;
    ++next[p];
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(next[0], each);
  EXPECT_EQ(next[1], each);
  const Stats st = ch->receiver.stats();
  EXPECT_GT(st.items_spilled, 0u);
  EXPECT_EQ(st.segments, 0u);
  EXPECT_TRUE(test::segment_files(dir.path()).empty());
}

}  // namespace
}  // namespace hopper
