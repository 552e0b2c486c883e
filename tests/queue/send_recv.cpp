// Sending and receiving through the public API: order across memory and disk and across
// producers, every way of receiving (timeouts, liveness of the last item, recv_many), and
// closing in both directions.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "helpers.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- order

TEST(Queue, MemoryOnlyRoundTrip) {
  TempDir dir;
  auto ch = channel<std::uint32_t>(test::small_options(dir.path()));
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  for (std::uint32_t i = 0; i < 100; ++i) ASSERT_TRUE(ch->sender.send(std::uint32_t{i}).ok());
  std::uint32_t v = 0;
  for (std::uint32_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(ch->receiver.recv(v).ok());
    ASSERT_EQ(v, i);
  }
  EXPECT_EQ(ch->receiver.stats().items_spilled, 0u);
}

TEST(Queue, OrderAcrossMemoryDiskMemoryTransitions) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 10));
  std::uint32_t next = 0;
  // Memory: 10 fit.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(send_u32(ch.sender, next++).ok());
  EXPECT_EQ(ch.receiver.stats().memory_items, 10u);
  EXPECT_EQ(ch.receiver.stats().items_spilled, 0u);
  // Disk: the next 10 do not fit in memory.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(send_u32(ch.sender, next++).ok());
  EXPECT_EQ(ch.receiver.stats().memory_items, 10u);
  EXPECT_EQ(ch.receiver.stats().items_spilled, 10u);
  // The receiver takes all memory items and part of the spilled page.
  std::vector<std::uint32_t> got;
  std::uint32_t v = 0;
  for (int i = 0; i < 15; ++i) {
    ASSERT_TRUE(ch.receiver.try_recv(v).ok());
    got.push_back(v);
  }
  // Every spilled page is taken and memory is empty: back to memory.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(send_u32(ch.sender, next++).ok());
  EXPECT_EQ(ch.receiver.stats().items_spilled, 10u) << "senders did not return to memory mode";
  EXPECT_EQ(ch.receiver.stats().memory_items, 10u);
  // Disk again, then memory again once drained.
  for (int i = 0; i < 25; ++i) ASSERT_TRUE(send_u32(ch.sender, next++).ok());
  EXPECT_EQ(ch.receiver.stats().items_spilled, 35u);
  for (auto x : test::drain(ch.receiver)) got.push_back(x);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(send_u32(ch.sender, next++).ok());
  EXPECT_EQ(ch.receiver.stats().items_spilled, 35u);
  for (auto x : test::drain(ch.receiver)) got.push_back(x);
  EXPECT_EQ(got, test::iota_u32(next));
}

TEST(Queue, EachProducerKeepsItsOrder) {
  TempDir dir;
  Options o = u32_options(dir.path(), 16);
  o.page_bytes = 64;
  o.segment_bytes = 4096;
  o.max_disk_bytes = 16384;
  auto ch = open<std::uint32_t>(o);
  constexpr std::uint32_t kProducers = 4, kEach = 2000;
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    threads.emplace_back([s = ch.sender, p]() mutable {
      for (std::uint32_t i = 0; i < kEach; ++i) ASSERT_TRUE(s.send(p << 24 | i).ok());
    });
  }
  ch.sender.close();
  std::vector<std::uint32_t> next(kProducers, 0);
  std::uint64_t total = 0;
  std::uint32_t v = 0;
  Status s;
  while ((s = ch.receiver.recv(v)).ok()) {
    const std::uint32_t p = v >> 24, i = v & 0xffffff;
    ASSERT_LT(p, kProducers);
    ASSERT_EQ(i, next[p]) << "producer " << p;
    ++next[p];
    ++total;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(s.code(), Errc::closed);
  EXPECT_EQ(total, kProducers * kEach);
}

// ---------------------------------------------------------------- receiving

TEST(Queue, TryRecvEmpty) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  std::uint32_t v = 77;
  EXPECT_EQ(ch.receiver.try_recv(v).code(), Errc::empty);
  EXPECT_EQ(v, 77u);
  ASSERT_TRUE(send_u32(ch.sender, 1).ok());
  ASSERT_TRUE(ch.receiver.try_recv(v).ok());
  EXPECT_EQ(v, 1u);
  EXPECT_EQ(ch.receiver.try_recv(v).code(), Errc::empty);
}

TEST(Queue, RecvForTimesOut) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  std::uint32_t v = 5;
  EXPECT_EQ(ch.receiver.recv_for(v, 10ms).code(), Errc::timeout);
  EXPECT_EQ(v, 5u);
  ASSERT_TRUE(send_u32(ch.sender, 9).ok());
  ASSERT_TRUE(ch.receiver.recv_for(v, 10ms).ok());
  EXPECT_EQ(v, 9u);
}

TEST(Queue, RecvForGetsAnItemSentWhileItWaits) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 1));
  std::thread t([s = ch.sender]() mutable {
    std::this_thread::sleep_for(20ms);
    for (std::uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(s.send(std::uint32_t{i}).ok());
  });
  std::uint32_t v = 0;
  for (std::uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(ch.receiver.recv_for(v, 60s).ok());
    EXPECT_EQ(v, i);
  }
  t.join();
}

TEST(Queue, TheLastItemIsNeverStranded) {
  // Memory for one item: the rest go into the open page, which nothing seals but the
  // receiver finding the deque empty.
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 1));
  for (std::uint32_t i = 0; i < 5; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  EXPECT_EQ(ch.receiver.stats().items_spilled, 4u);
  EXPECT_EQ(ch.receiver.stats().pages_written, 0u);
  std::uint32_t v = 0;
  for (std::uint32_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(ch.receiver.recv_for(v, 10s).ok()) << "item " << i << " stranded";
    EXPECT_EQ(v, i);
  }
}

TEST(Queue, AWaitingReceiverGetsASpilledItemWithoutFlush) {
  // A long string never fits the memory budget: it can only go to the open page, and the
  // receiver, already waiting on an empty deque, must still get it.
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 40;
  auto ch = open<std::string>(o);
  std::promise<void> started;
  auto r = std::async(std::launch::async, [&] {
    started.set_value();
    std::string a;
    Status s = ch.receiver.recv_for(a, 10s);
    return std::make_pair(s, a);
  });
  started.get_future().wait();
  std::this_thread::sleep_for(20ms);  // most likely blocked by now; either way it must work
  const std::string big(100, 'z');
  ASSERT_TRUE(ch.sender.send(big).ok());
  EXPECT_EQ(ch.receiver.stats().items_spilled, 1u);
  auto [s, a] = r.get();
  EXPECT_TRUE(s.ok()) << "the spilled item was stranded: " << s.message();
  EXPECT_EQ(a, big);
  EXPECT_EQ(ch.receiver.stats().pages_written, 0u) << "taken from RAM, not through the disk";
}

TEST(Queue, RangeForYieldsEverythingUntilClosed) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 3));
  for (std::uint32_t i = 0; i < 50; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  ch.sender.close();
  std::vector<std::uint32_t> got;
  for (std::uint32_t& v : ch.receiver) got.push_back(v);
  EXPECT_EQ(got, test::iota_u32(50));
  EXPECT_TRUE(ch.receiver.status().ok()) << ch.receiver.status().message();
}

TEST(Queue, ReceiverMovesWithItsPosition) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 2));
  for (std::uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  std::uint32_t v = 0;
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  ASSERT_TRUE(ch.receiver.recv(v).ok());  // into the spilled page
  Receiver<std::uint32_t> moved = std::move(ch.receiver);
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(moved), test::iota_u32(7, 3));
}

TEST(Queue, RecvManyTakesUpToMaxInOrderAcrossMemoryAndDisk) {
  TempDir dir;
  Options o = u32_options(dir.path(), 5);
  o.page_bytes = 24;  // three u32 per page
  auto ch = open<std::uint32_t>(o);
  for (std::uint32_t i = 0; i < 40; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  ASSERT_TRUE(ch.sender.flush().ok());
  std::vector<std::uint32_t> got;
  for (std::size_t max : {1u, 2u, 7u, 3u, 100u}) {
    const std::size_t before = got.size();
    Status s = ch.receiver.try_recv_many(got, max);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_GE(got.size() - before, 1u);
    EXPECT_LE(got.size() - before, max);
  }
  while (got.size() < 40) ASSERT_TRUE(ch.receiver.recv_many(got, 5).ok());
  EXPECT_EQ(got, test::iota_u32(40));
  EXPECT_EQ(ch.receiver.stats().items_received, 40u);
  EXPECT_EQ(ch.receiver.stats().memory_bytes, 0u);
  EXPECT_EQ(ch.receiver.try_recv_many(got, 5).code(), Errc::empty);
  EXPECT_EQ(ch.receiver.recv_many_for(got, 5, 1ms).code(), Errc::timeout);
  EXPECT_EQ(got.size(), 40u) << "a failed bulk receive appended something";
  ch.sender.close();
  EXPECT_EQ(ch.receiver.recv_many(got, 5).code(), Errc::closed);
}

TEST(Queue, RecvManyTakesEveryMemoryItemAtOnce) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 50));
  for (std::uint32_t i = 0; i < 30; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  std::vector<std::uint32_t> got{999};  // appended to, not replaced
  ASSERT_TRUE(ch.receiver.recv_many(got, 1000).ok());
  ASSERT_EQ(got.size(), 31u);
  EXPECT_EQ(got.front(), 999u);
  EXPECT_EQ(std::vector<std::uint32_t>(got.begin() + 1, got.end()), test::iota_u32(30));
}

TEST(Queue, RecvManyOfZeroTakesNothing) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  ASSERT_TRUE(send_u32(ch.sender, 1).ok());
  std::vector<std::uint32_t> got;
  (void)ch.receiver.try_recv_many(got, 0);
  EXPECT_TRUE(got.empty());
  std::uint32_t v = 0;
  ASSERT_TRUE(ch.receiver.try_recv(v).ok());
  EXPECT_EQ(v, 1u);
}

// ---------------------------------------------------------------- closing

TEST(Queue, RecvDrainsThenReportsClosed) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 4));
  Sender<std::uint32_t> second = ch.sender;
  for (std::uint32_t i = 0; i < 20; ++i) ASSERT_TRUE(send_u32(i % 2 ? second : ch.sender, i).ok());
  ch.sender.close();
  std::uint32_t v = 0;
  // One producer is left: nothing is closed yet.
  for (std::uint32_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(ch.receiver.recv(v).ok());
    ASSERT_EQ(v, i);
  }
  EXPECT_EQ(ch.receiver.try_recv(v).code(), Errc::empty);
  ASSERT_TRUE(send_u32(second, 20).ok());
  second.close();
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  EXPECT_EQ(v, 20u);
  EXPECT_EQ(ch.receiver.recv(v).code(), Errc::closed);
  EXPECT_EQ(ch.receiver.try_recv(v).code(), Errc::closed);
  EXPECT_EQ(ch.receiver.recv_for(v, 1ms).code(), Errc::closed);
}

TEST(Queue, DestroyedSendersCountAsClosed) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 4));
  {
    Sender<std::uint32_t> a = ch.sender, b = a;
    ch.sender.close();
    ASSERT_TRUE(send_u32(b, 1).ok());
  }
  std::uint32_t v = 0;
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  EXPECT_EQ(ch.receiver.recv(v).code(), Errc::closed);
}

TEST(Queue, BlockedRecvWakesWhenTheLastSenderCloses) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  auto r = std::async(std::launch::async, [&] {
    std::uint32_t v = 0;
    return ch.receiver.recv(v);
  });
  std::this_thread::sleep_for(20ms);
  ch.sender.close();
  ASSERT_EQ(r.wait_for(30s), std::future_status::ready) << "recv did not wake on close";
  EXPECT_EQ(r.get().code(), Errc::closed);
}

TEST(Queue, SendAfterTheReceiverIsGoneIsClosedAndLeavesTheItem) {
  TempDir dir;
  auto ch = open<std::string>(test::small_options(dir.path()));
  ch.receiver.close();
  const std::string value(50, 'c');
  std::string item = value;
  EXPECT_EQ(ch.sender.send(std::move(item)).code(), Errc::closed);
  EXPECT_EQ(item, value);
  EXPECT_EQ(ch.sender.try_send(std::move(item)).code(), Errc::closed);
  EXPECT_EQ(ch.sender.send_for(std::move(item), 1ms).code(), Errc::closed);
  EXPECT_EQ(item, value);
  std::string out;
  EXPECT_EQ(ch.receiver.recv(out).code(), Errc::closed);  // the closed handle itself
}

TEST(Queue, BlockedSenderWakesWhenTheReceiverGoes) {
  TempDir dir;
  auto ch = open<std::string>(fillable_options(dir.path(), FullPolicy::block));
  ASSERT_GT(fill(ch.sender, [](int i) { return std::to_string(i); }), 0);
  auto r = std::async(std::launch::async, [s = ch.sender]() mutable { return s.send("waits"); });
  std::this_thread::sleep_for(20ms);
  ch.receiver.close();
  ASSERT_EQ(r.wait_for(30s), std::future_status::ready) << "send did not wake when the receiver went";
  EXPECT_EQ(r.get().code(), Errc::closed);
}

TEST(Queue, ClosedSenderHandleReportsClosed) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  Sender<std::uint32_t> other = ch.sender;
  ch.sender.close();
  ch.sender.close();  // idempotent
  EXPECT_EQ(send_u32(ch.sender, 1).code(), Errc::closed);
  EXPECT_EQ(ch.sender.try_send(1).code(), Errc::closed);
  EXPECT_EQ(ch.sender.flush().code(), Errc::closed);
  ASSERT_TRUE(send_u32(other, 2).ok());  // the other copy still works
  std::uint32_t v = 0;
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  EXPECT_EQ(v, 2u);
}

TEST(Queue, MovedSenderTransfersTheProducer) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  Sender<std::uint32_t> moved = std::move(ch.sender);
  EXPECT_EQ(send_u32(ch.sender, 1).code(), Errc::closed);  // the moved-from handle
  ASSERT_TRUE(send_u32(moved, 2).ok());
  std::uint32_t v = 0;
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  EXPECT_EQ(v, 2u);
  EXPECT_EQ(ch.receiver.try_recv(v).code(), Errc::empty) << "moving must not close a producer";
  Sender<std::uint32_t> assigned = ch.sender;  // a copy of a closed handle is closed too
  EXPECT_EQ(send_u32(assigned, 3).code(), Errc::closed);
  assigned = std::move(moved);
  ASSERT_TRUE(send_u32(assigned, 4).ok());
  assigned.close();
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  EXPECT_EQ(v, 4u);
  EXPECT_EQ(ch.receiver.recv(v).code(), Errc::closed);
}

}  // namespace
}  // namespace hopper::test
