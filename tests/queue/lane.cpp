// The lane: senders in memory mode that take no lock (docs/architecture.md, "The lane").
// Its items must keep their place against everything that goes through the deque — items
// sent once it closed, spilled pages, a backlog written at shutdown — and the figures
// must stay exact across its closing and opening again.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "helpers.hpp"
#include "test_util.hpp"

// An item that counts its live instances: every one the lane moves out leaves a moved-from
// instance in its slot, which must be destroyed exactly once — when the slot is given back,
// when the lane opens again, at shutdown.
struct Counted {
  static inline std::atomic<long> live{0};
  std::uint64_t v = 0;
  Counted() noexcept { ++live; }
  explicit Counted(std::uint64_t x) noexcept : v(x) { ++live; }
  Counted(const Counted& o) noexcept : v(o.v) { ++live; }
  Counted(Counted&& o) noexcept : v(o.v) { ++live; }
  Counted& operator=(const Counted&) noexcept = default;
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() { --live; }
  template <class Archive>
  void serialize(Archive& ar) {
    ar(v);
  }
};

namespace hopper::test {
namespace {

inline constexpr std::uint64_t kU64 = sizeof(std::uint64_t);

// HOPPER_TEST_LANE=1: every queue this run opens uses the lane (ctest runs the whole of
// queue_test once more that way, its tests prefixed "lane.").
struct LaneFromEnvironment : ::testing::Environment {
  void SetUp() override {
    if (const char* v = std::getenv("HOPPER_TEST_LANE"); v != nullptr && v[0] == '1') detail::lane_by_default() = true;
  }
};
[[maybe_unused]] const ::testing::Environment* const kLaneFromEnvironment =
    ::testing::AddGlobalTestEnvironment(new LaneFromEnvironment);

// These tests open their queues with the lane, whatever the run's default.
class Lane : public ::testing::Test {
 protected:
  void SetUp() override { was_ = detail::lane_by_default().exchange(true); }
  void TearDown() override { detail::lane_by_default() = was_; }

 private:
  bool was_ = false;
};

Options spilling_u64(const std::filesystem::path& dir, std::uint64_t items_in_memory) {
  Options o = small_options(dir);
  o.max_memory_bytes = items_in_memory * kU64;
  return o;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// Items 0..3 go through the lane; item 4 does not fit, so the lane closes and 4..19 spill
// to pages. The receiver must take the lane's items first.
TEST_F(Lane, ItsItemsComeBeforeThoseSentAfterItClosed) {
  TempDir dir;
  auto ch = open<std::uint64_t>(spilling_u64(dir.path(), 4));
  for (std::uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
  Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_sent, 20u);
  EXPECT_GT(st.items_spilled, 0u);
  EXPECT_LE(st.memory_bytes, 4 * kU64);
  EXPECT_EQ(drain(ch.receiver), range(0, 20));
}

// Once the receiver has taken everything the lane opens again, numbered on from where the
// deque's items ended: positions, counts and the budget stay exact through both changes.
TEST_F(Lane, OpensAgainOnceEverythingWasTakenAndTheFiguresStayExact) {
  TempDir dir;
  auto ch = open<std::uint64_t>(spilling_u64(dir.path(), 4));
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
  EXPECT_EQ(drain(ch.receiver), range(0, 10));
  EXPECT_EQ(ch.receiver.position(), 10u);
  for (int round = 1; round <= 3; ++round) {
    const std::uint64_t from = 10 * round;
    for (std::uint64_t i = from; i < from + 3; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
    Stats st = ch.receiver.stats();
    EXPECT_EQ(st.items_sent, from + 3) << "round " << round;
    EXPECT_EQ(st.memory_items, 3u) << "round " << round;
    EXPECT_EQ(st.memory_bytes, 3 * kU64) << "round " << round;
    std::uint64_t v = 0;
    ASSERT_TRUE(ch.receiver.try_recv(v).ok());
    EXPECT_EQ(v, from);
    st = ch.receiver.stats();
    EXPECT_EQ(st.memory_items, 2u) << "round " << round;
    EXPECT_EQ(st.memory_bytes, 2 * kU64) << "round " << round;
    // Past the budget again: the lane closes with two items in it, the rest spill.
    for (std::uint64_t i = from + 3; i < from + 10; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
    EXPECT_EQ(drain(ch.receiver), range(from + 1, from + 10)) << "round " << round;
    EXPECT_EQ(ch.receiver.position(), from + 10) << "round " << round;
    st = ch.receiver.stats();
    EXPECT_EQ(st.memory_items, 0u);
    EXPECT_EQ(st.memory_bytes, 0u);
    EXPECT_EQ(st.items_received, from + 10);
  }
}

// Items still in the lane at shutdown are written with the others, before the ones that
// went through the deque after it closed, and come back in order after a reopen.
TEST_F(Lane, ItemsLeftInItAreWrittenAtShutdownBeforeTheDequesOnes) {
  TempDir dir;
  const Options o = spilling_u64(dir.path(), 8);
  {
    auto ch = open<std::uint64_t>(o);
    for (std::uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
    std::uint64_t v = 99;
    ASSERT_TRUE(ch.receiver.recv(v).ok());
    EXPECT_EQ(v, 0u);
    // 1..5 wait in the lane; these close it (they do not fit) and go to pages.
    for (std::uint64_t i = 6; i < 14; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
  }
  auto ch = open<std::uint64_t>(o);
  EXPECT_EQ(ch.receiver.position(), 1u);
  EXPECT_EQ(drain(ch.receiver), range(1, 14));
}

// In memory mode a full budget is no room, not a reason to close the lane: its ring holds
// a budget's worth of T-sized items, so it is full exactly when the budget is, and the
// budget must be what answers. (The ring was asked first: the lane closed whenever memory
// filled, and every later send took the lock.)
TEST_F(Lane, AFullBudgetInMemoryModeLeavesItOpen) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_disk_bytes = 0;
  o.max_memory_bytes = 64 * kU64;
  auto ch = open<std::uint64_t>(o);
  const std::uint64_t closed_before = detail::lane_closings().load();
  std::uint64_t sent = 0;
  Status s;
  while ((s = ch.sender.try_send(std::uint64_t{sent})).ok()) ++sent;
  EXPECT_EQ(s.code(), Errc::full);
  EXPECT_EQ(sent, 64u);
  std::uint64_t v = 0;
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(ch.receiver.try_recv(v).ok());
    ASSERT_TRUE(ch.sender.try_send(std::uint64_t{sent++}).ok());
    EXPECT_EQ(ch.sender.try_send(std::uint64_t{999}).code(), Errc::full);
  }
  EXPECT_EQ(detail::lane_closings().load(), closed_before);
  EXPECT_EQ(drain(ch.receiver), range(3, sent));
}

// The lane's two handshakes, each side a store and then a load of the other's flag (a
// light barrier per item, a heavy one before a sleep: detail/barrier.hpp), many times
// over: a receiver that sleeps for every item (its sender waits for it each time), and
// senders that wait for room for every item (a budget of one). A lost wake-up hangs it.
TEST_F(Lane, NoWakeUpIsLostWhenEitherSideSleepsForEveryItem) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_disk_bytes = 0;
  o.max_memory_bytes = kU64;
  auto ch = open<std::uint64_t>(o);
  constexpr std::uint64_t kRounds = 2000;
  std::atomic<std::uint64_t> taken{0};
  std::thread sender([&, s = ch.sender]() mutable {
    for (std::uint64_t i = 0; i < kRounds; ++i) {
      ASSERT_TRUE(s.send(std::uint64_t{i}).ok());
      while (taken.load() <= i) std::this_thread::yield();  // the receiver sleeps meanwhile
    }
    for (std::uint64_t i = kRounds; i < 2 * kRounds; ++i) ASSERT_TRUE(s.send(std::uint64_t{i}).ok());
  });
  ch.sender.close();
  for (std::uint64_t i = 0; i < 2 * kRounds; ++i) {
    std::uint64_t v = 0;
    ASSERT_TRUE(ch.receiver.recv(v).ok());
    ASSERT_EQ(v, i);
    taken.store(i + 1);
  }
  sender.join();
  std::uint64_t v = 0;
  EXPECT_EQ(ch.receiver.recv(v).code(), Errc::closed);
}

// What the receiver takes out of a slot is destroyed once, later, a run at a time (the
// slot goes back with it): through runs of the give-back, the lane closing and opening
// again, and a shutdown with items taken and not.
TEST_F(Lane, WhatTakingLeavesInASlotIsDestroyedExactlyOnce) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_memory_bytes = 129 * sizeof(Counted);
  const long before = Counted::live.load();
  {
    auto ch = open<Counted>(o);
    Counted got;
    std::uint64_t next = 0, sent = 0;
    for (int round = 0; round < 40; ++round) {  // 200 items: past several give-backs
      for (int i = 0; i < 5; ++i) ASSERT_TRUE(ch.sender.send(Counted{sent++}).ok());
      for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(ch.receiver.try_recv(got).ok());
        ASSERT_EQ(got.v, next++);
      }
    }
    // Past the budget: the lane closes with items in it, the rest spill; all come back
    // and the lane opens again.
    for (int i = 0; i < 140; ++i) ASSERT_TRUE(ch.sender.send(Counted{sent++}).ok());
    for (int i = 0; i < 140; ++i) {
      ASSERT_TRUE(ch.receiver.recv(got).ok());
      ASSERT_EQ(got.v, next++);
    }
    // Ten in the lane, three of them taken: the shutdown writes seven and destroys all.
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(ch.sender.send(Counted{sent++}).ok());
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(ch.receiver.try_recv(got).ok());
      ASSERT_EQ(got.v, next++);
    }
  }
  EXPECT_EQ(Counted::live.load(), before);
  {
    auto ch = open<Counted>(o);
    std::vector<std::uint64_t> rest;
    Counted got;
    while (ch.receiver.try_recv(got).ok()) rest.push_back(got.v);
    EXPECT_EQ(rest, range(343, 350));
  }
  EXPECT_EQ(Counted::live.load(), before);
}

// A receiver that is gone closes the lane: senders hear it at once.
TEST_F(Lane, SendersHearThatTheReceiverIsGone) {
  TempDir dir;
  auto ch = open<std::uint64_t>(spilling_u64(dir.path(), 64));
  ASSERT_TRUE(ch.sender.send(std::uint64_t{1}).ok());
  ch.receiver.close();
  EXPECT_EQ(ch.sender.send(std::uint64_t{2}).code(), Errc::closed);
}

// Many senders through a lane that keeps closing (a budget of 16 items, spilling) and
// opening again (the receiver catches up): every sender's items arrive in its order, none
// twice, none lost, and the memory budget holds whenever stats() looks.
TEST_F(Lane, ManySendersThroughALaneThatClosesAndOpensKeepTheirOrder) {
  TempDir dir;
  auto ch = open<std::uint64_t>(spilling_u64(dir.path(), 16));
  constexpr int kSenders = 4;
  constexpr std::uint64_t kEach = 20000;
  std::vector<std::thread> senders;
  for (int p = 0; p < kSenders; ++p) {
    senders.emplace_back([s = ch.sender, p]() mutable {
      for (std::uint64_t i = 0; i < kEach; ++i) {
        ASSERT_TRUE(s.send((std::uint64_t(p) << 32) | i).ok());
        if (i % 1000 == 999) std::this_thread::yield();
      }
    });
  }
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    while (!stop) EXPECT_LE(ch.receiver.stats().memory_bytes, 16 * kU64);
  });
  ch.sender.close();
  std::vector<std::uint64_t> next(kSenders, 0);
  std::uint64_t got = 0;
  std::vector<std::uint64_t> batch;
  for (;;) {
    batch.clear();
    const Status s = (got % 3 == 0) ? ch.receiver.recv_many(batch, 64) : [&] {
      std::uint64_t v = 0;
      Status r = ch.receiver.recv(v);
      if (r.ok()) batch.push_back(v);
      return r;
    }();
    if (s.code() == Errc::closed) break;
    ASSERT_TRUE(s.ok()) << s.message();
    for (std::uint64_t v : batch) {
      const std::uint64_t p = v >> 32;
      ASSERT_LT(p, std::uint64_t{kSenders});
      ASSERT_EQ(v & 0xffffffffu, next[p]) << "sender " << p;
      ++next[p];
      ++got;
    }
  }
  for (auto& t : senders) t.join();
  stop = true;
  watcher.join();
  EXPECT_EQ(got, kSenders * kEach);
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_sent, kSenders * kEach);
  EXPECT_EQ(st.items_received, kSenders * kEach);
  EXPECT_EQ(ch.receiver.position(), kSenders * kEach);
}

}  // namespace
}  // namespace hopper::test
