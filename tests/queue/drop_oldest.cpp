// FullPolicy::drop_oldest: without spilling the oldest items in memory go, when spilling
// the oldest segment goes, every item is received or counted dropped, and items the
// receiver has already taken into its batch are dropped all the same.
// Elsewhere, by kind: Concurrency.DropOldestKeepsOrderAndCounts (property/), the disk-fault
// shapes under drop_oldest (faults/), SpillPipeline.DropOldest* (unit/engine/).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "fault_fs.hpp"
#include "helpers.hpp"
#include "tagged.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

using namespace std::chrono_literals;

// ======================================================================================
// drop_oldest
// ======================================================================================

TEST(DropOldest, WithoutSpillingTheOldestItemsInMemoryGo) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_disk_bytes = 0;
  o.max_memory_bytes = 4 * sizeof(std::uint64_t);
  o.when_full = FullPolicy::drop_oldest;
  auto ch = open_channel<std::uint64_t>(o);
  ASSERT_TRUE(ch.has_value());
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(ch->sender.send(std::uint64_t{i}).ok()) << i;
  EXPECT_EQ(ch->receiver.stats().items_dropped, 6u);
  EXPECT_EQ(drain(ch->receiver), (std::vector<std::uint64_t>{6, 7, 8, 9}));
}

TEST(DropOldest, WhenSpillingTheOldestSegmentGoesAndItsItemsAreCounted) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_memory_bytes = 16 * sizeof(std::uint64_t);
  o.page_bytes = 256;
  o.segment_bytes = min_segment_for_page(o.page_bytes) + 512;
  o.max_disk_bytes = 3 * o.segment_bytes;
  o.when_full = FullPolicy::drop_oldest;
  auto ch = open_channel<std::uint64_t>(o);
  ASSERT_TRUE(ch.has_value());
  const std::uint64_t n = 5000;
  for (std::uint64_t i = 0; i < n; ++i) ASSERT_TRUE(ch->sender.send(std::uint64_t{i}).ok()) << i;
  const Stats st = ch->receiver.stats();
  EXPECT_GT(st.items_dropped, 0u);
  EXPECT_LE(st.disk_bytes, o.max_disk_bytes);
  ch->sender.close();
  std::vector<std::uint64_t> back;
  ASSERT_EQ(receive_all(ch->receiver, back).code(), Errc::closed);
  EXPECT_TRUE(std::is_sorted(back.begin(), back.end()));
  EXPECT_EQ(std::adjacent_find(back.begin(), back.end()), back.end());
  EXPECT_EQ(back.size() + ch->receiver.stats().items_dropped, n) << "every item is received or counted dropped";
  ASSERT_FALSE(back.empty());
  EXPECT_EQ(back.back(), n - 1) << "the freshest item is kept";
}

enum class DropOp { send, recv };
std::ostream& operator<<(std::ostream& os, DropOp op) { return os << (op == DropOp::send ? "send" : "recv"); }

// Any interleaving of sends and receives under drop_oldest: a send never waits and never
// fails, the budgets hold, what comes out is in order and never twice, and every item is
// either received or counted in items_dropped.
RC_GTEST_PROP(DropOldest, EveryItemIsReceivedOrCountedDropped, ()) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.when_full = FullPolicy::drop_oldest;
  const bool spill = *rc::gen::arbitrary<bool>();
  o.max_memory_bytes = *rc::gen::inRange<std::uint64_t>(40, 400);
  o.page_bytes = 256;
  o.segment_bytes = min_segment_for_page(o.page_bytes) + *rc::gen::inRange<std::uint64_t>(0, 1024);
  o.max_disk_bytes = spill ? o.segment_bytes * *rc::gen::inRange<std::uint64_t>(1, 4) : 0;
  const auto ops = *rc::gen::container<std::vector<DropOp>>(
      *rc::gen::inRange<std::size_t>(1, 2000),
      rc::gen::weightedElement<DropOp>({{*rc::gen::inRange(1, 8), DropOp::send}, {1, DropOp::recv}}));
  Watchdog dog(seconds(120), "DropOldest property case");
  auto ch = open_channel<std::uint64_t>(o);
  RC_ASSERT(ch.has_value());
  std::uint64_t sent = 0;
  std::vector<std::uint64_t> back;
  std::uint64_t v = 0;
  for (DropOp op : ops) {
    if (op == DropOp::send) {
      Status s = ch->sender.try_send(std::uint64_t{sent});
      if (!s.ok()) RC_FAIL("send under drop_oldest: " + s.message());
      ++sent;
    } else {
      Status s = ch->receiver.try_recv(v);
      if (s.ok()) {
        RC_ASSERT((back.empty() || back.back() < v));
        RC_ASSERT(v < sent);
        back.push_back(v);
      } else {
        RC_ASSERT(s.code() == Errc::empty);
      }
    }
    const Stats st = ch->receiver.stats();
    RC_ASSERT(st.memory_bytes <= o.max_memory_bytes);
    if (spill) RC_ASSERT(st.disk_bytes <= o.max_disk_bytes);
  }
  ch->sender.close();
  std::vector<std::uint64_t> rest;
  RC_ASSERT(receive_all(ch->receiver, rest).code() == Errc::closed);
  for (std::uint64_t x : rest) {
    RC_ASSERT((back.empty() || back.back() < x));
    back.push_back(x);
  }
  const Stats st = ch->receiver.stats();
  RC_CLASSIFY(st.items_dropped > 0, "dropped some");
  RC_CLASSIFY(spill, "spilling");
  RC_ASSERT(back.size() + st.items_dropped == sent);
  if (sent > 0) RC_ASSERT((!back.empty() && back.back() == sent - 1));
}

// ======================================================================================
// ...taken into the receiver's batch (docs/architecture.md, "The receiver's batch")
// ======================================================================================

TEST(ReceiverBatch, DropOldestDropsTheOldestEvenWhenTheReceiverHasTakenThemInABatch) {
  TempDir dir;
  auto ch = open<std::uint64_t>(u64_memory_only(dir.path(), 4, FullPolicy::drop_oldest));
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
  std::uint64_t v = 99;
  ASSERT_TRUE(ch.receiver.recv(v).ok());  // 1, 2, 3 wait in the receiver's batch
  EXPECT_EQ(v, 0u);
  for (std::uint64_t i = 4; i < 7; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok()) << i;
  // 4 fitted; 5 and 6 each needed the oldest item's room: 1, then 2.
  EXPECT_EQ(ch.receiver.stats().items_dropped, 2u);
  EXPECT_EQ(test::drain(ch.receiver), (std::vector<std::uint64_t>{3, 4, 5, 6}));
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.memory_items, 0u);
  EXPECT_EQ(st.memory_bytes, 0u);
}

TEST(ReceiverBatch, RecvManyAfterDropsInTheBatchSkipsThem) {
  TempDir dir;
  auto ch = open<std::uint64_t>(u64_memory_only(dir.path(), 8, FullPolicy::drop_oldest));
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok());
  std::vector<std::uint64_t> got;
  ASSERT_TRUE(ch.receiver.recv_many(got, 2).ok());  // 0, 1; 2..7 wait in the batch
  for (std::uint64_t i = 8; i < 13; ++i) ASSERT_TRUE(ch.sender.send(std::uint64_t{i}).ok()) << i;
  // 8 and 9 fitted; 10, 11, 12 dropped 2, 3, 4.
  ASSERT_TRUE(ch.receiver.recv_many(got, 100).ok());
  ch.sender.close();
  for (auto x : test::recv_until_closed(ch.receiver)) got.push_back(x);
  EXPECT_EQ(got, (std::vector<std::uint64_t>{0, 1, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(ch.receiver.stats().items_dropped, 3u);
}

}  // namespace
}  // namespace hopper::test
