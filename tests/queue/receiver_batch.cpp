// The receiver's batch (docs/architecture.md): Stats settle an item as received, a blocked
// sender gets the room of each item taken from the batch, and what is left in the batch
// is written at shutdown. Its drop_oldest tests are in drop_oldest.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <vector>

#include <hopper/hopper.hpp>

#include "helpers.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- the receiver's batch
// The receiver swaps the deque out and hands its items out without the lock; these pin
// what must not change because of it (docs/architecture.md, "The receiver's batch").

TEST(ReceiverBatch, StatsCountAnItemAsGoneOnceReceived) {
  TempDir dir;
  auto ch = open<std::uint64_t>(u64_memory_only(dir.path(), 16, FullPolicy::fail));
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
  std::uint64_t v = 99;
  ASSERT_TRUE(ch.receiver.recv(v).ok());  // the other nine wait in the receiver's batch
  EXPECT_EQ(v, 0u);
  Stats st = ch.receiver.stats();
  EXPECT_EQ(st.memory_items, 9u);
  EXPECT_EQ(st.memory_bytes, 9 * kU64);
  EXPECT_EQ(st.items_received, 1u);
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  st = ch.receiver.stats();
  EXPECT_EQ(st.memory_items, 8u);
  EXPECT_EQ(st.memory_bytes, 8 * kU64);
}

// A blocked sender gets the room of the item the receiver takes — from a batch it has
// just swapped in, and from the middle of one — with no further call on the receiver.
TEST(ReceiverBatch, ABlockedSenderGetsTheRoomOfEachItemTakenFromTheBatch) {
  TempDir dir;
  auto ch = open<std::uint64_t>(u64_memory_only(dir.path(), 4, FullPolicy::block));
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
  auto blocked_send = [&](std::uint64_t v) {
    return std::async(std::launch::async, [s = ch.sender, v]() mutable { return s.send(std::uint64_t{v}); });
  };
  // Waits for the sender; if it is still blocked, closes the receiver to let it go (so a
  // failure does not hang the test in the future's destructor) and says so.
  auto returned = [&](std::future<Status>& f) {
    if (f.wait_for(10s) == std::future_status::ready) return true;
    ch.receiver.close();
    return false;
  };
  auto first = blocked_send(4);
  EXPECT_EQ(first.wait_for(50ms), std::future_status::timeout) << "sent while memory was full";
  std::uint64_t v = 99;
  ASSERT_TRUE(ch.receiver.recv(v).ok());  // swaps 0..3 in, takes 0
  EXPECT_EQ(v, 0u);
  ASSERT_TRUE(returned(first)) << "the sender was not given the room of item 0";
  EXPECT_TRUE(first.get().ok());
  auto second = blocked_send(5);  // memory: 1, 2, 3 in the batch, 4 in the deque
  EXPECT_EQ(second.wait_for(50ms), std::future_status::timeout) << "sent while memory was full";
  ASSERT_TRUE(ch.receiver.recv(v).ok());  // takes 1 from the middle of the batch
  EXPECT_EQ(v, 1u);
  ASSERT_TRUE(returned(second)) << "the sender was not given the room of item 1";
  EXPECT_TRUE(second.get().ok());
  EXPECT_EQ(test::drain(ch.receiver), (std::vector<std::uint64_t>{2, 3, 4, 5}));
}

TEST(ReceiverBatch, ItemsLeftInTheBatchAreWrittenAtShutdownAndComeBackInOrder) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 64 * kU64;
  {
    auto ch = open<std::uint64_t>(o);
    for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
    std::uint64_t v = 99;
    ASSERT_TRUE(ch.receiver.recv(v).ok());  // 1..9 wait in the receiver's batch
    ASSERT_TRUE(ch.receiver.recv(v).ok());
    EXPECT_EQ(v, 1u);
    for (std::uint64_t i = 10; i < 13; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());  // behind it
  }
  auto ch = open<std::uint64_t>(o);
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), (std::vector<std::uint64_t>{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
}

}  // namespace
}  // namespace hopper::test
