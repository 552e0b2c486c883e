// The budgets and what happens when they are reached: memory and disk never exceeded, the
// fail and block policies (drop_oldest has its own file), send_for's timeout, and
// too_large for an item that can fit nowhere.
#include <gtest/gtest.h>

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

// ---------------------------------------------------------------- budgets

TEST(Queue, MemoryBudgetIsExactWithoutSpilling) {
  // max_disk_bytes = 0: memory_bytes is the sum of the footprints of the items queued.
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_disk_bytes = 0;
  o.max_memory_bytes = 600;
  o.when_full = FullPolicy::fail;
  auto ch = open<std::string>(o);
  std::deque<std::uint64_t> queued;
  std::uint64_t sum = 0;
  std::size_t len = 0;
  for (int round = 0; round < 50; ++round) {
    std::string s(len, 'a' + round % 26);
    len = (len * 7 + 13) % 120;
    const std::uint64_t fp = footprint(s);
    Status st = ch.sender.send(std::move(s));
    if (sum + fp <= o.max_memory_bytes) {
      ASSERT_TRUE(st.ok()) << st.message();
      queued.push_back(fp);
      sum += fp;
    } else {
      ASSERT_EQ(st.code(), Errc::full) << "round " << round;
    }
    ASSERT_EQ(ch.receiver.stats().memory_bytes, sum);
    ASSERT_EQ(ch.receiver.stats().memory_items, queued.size());
    if (round % 3 == 2 && !queued.empty()) {
      std::string out;
      ASSERT_TRUE(ch.receiver.try_recv(out).ok());
      sum -= queued.front();
      queued.pop_front();
      ASSERT_EQ(ch.receiver.stats().memory_bytes, sum);
    }
  }
}

TEST(Queue, MemoryBudgetNeverExceeded) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 300;
  o.page_bytes = 256;
  o.segment_bytes = 2048;
  o.max_disk_bytes = 4096;
  o.when_full = FullPolicy::fail;
  auto ch = open<std::string>(o);
  std::vector<std::string> sent, got;
  std::size_t len = 1;
  for (int op = 0; op < 600; ++op) {
    if (op % 5 < 3) {
      std::string s(len, static_cast<char>('a' + op % 26));
      len = (len * 5 + 3) % 90;
      std::string copy = s;
      Status st = ch.sender.try_send(std::move(s));
      if (st.ok()) sent.push_back(copy);
      else ASSERT_EQ(st.code(), Errc::full);
    } else {
      std::string out;
      if (ch.receiver.try_recv(out).ok()) got.push_back(out);
    }
    expect_budgets(ch.receiver.stats(), o, "after an op");
  }
  for (auto& s : test::drain(ch.receiver)) got.push_back(s);
  EXPECT_EQ(got, sent);
  EXPECT_GT(ch.receiver.stats().items_spilled, 0u);
}

TEST(Queue, DiskBudgetNeverExceededWhileRunning) {
  TempDir dir;
  Options o = u32_options(dir.path(), 4);
  o.page_bytes = 40;
  o.segment_bytes = test::min_segment_for_page(40) + 100;
  o.max_disk_bytes = o.segment_bytes * 3;
  o.when_full = FullPolicy::fail;
  auto ch = open<std::uint32_t>(o);
  std::uint32_t next = 0;
  std::vector<std::uint32_t> got;
  for (int round = 0; round < 20; ++round) {
    // Fill until both budgets say no.
    int accepted = 0;
    for (;;) {
      Status st = send_u32(ch.sender, next);
      expect_budgets(ch.receiver.stats(), o, "after a send");
      if (!st.ok()) {
        ASSERT_EQ(st.code(), Errc::full);
        break;
      }
      ++next;
      ASSERT_LT(++accepted, 100000) << "never full";
    }
    EXPECT_GT(ch.receiver.stats().disk_bytes, 0u);
    // Take some, not all.
    std::uint32_t v = 0;
    for (int i = 0; i < 7 + round; ++i) {
      if (!ch.receiver.try_recv(v).ok()) break;
      got.push_back(v);
      expect_budgets(ch.receiver.stats(), o, "after a recv");
    }
  }
  for (auto x : test::drain(ch.receiver)) got.push_back(x);
  EXPECT_EQ(got, test::iota_u32(next));
}

TEST(Queue, NoDiskBudgetNeverCreatesASegmentWhileRunning) {
  TempDir dir;
  Options o = u32_options(dir.path(), 10);
  o.max_disk_bytes = 0;
  o.when_full = FullPolicy::fail;
  {
    auto ch = open<std::uint32_t>(o);
    for (std::uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
    EXPECT_EQ(send_u32(ch.sender, 10).code(), Errc::full);
    EXPECT_EQ(ch.sender.try_send(10).code(), Errc::full);
    EXPECT_EQ(ch.sender.send_for(10, 1ms).code(), Errc::timeout);
    ASSERT_TRUE(ch.sender.flush().ok());
    std::uint32_t v = 0;
    ASSERT_TRUE(ch.receiver.try_recv(v).ok());
    EXPECT_EQ(v, 0u);
    ASSERT_TRUE(send_u32(ch.sender, 10).ok());
    const Stats st = ch.receiver.stats();
    EXPECT_EQ(st.items_spilled, 0u);
    EXPECT_EQ(st.pages_written, 0u);
    EXPECT_EQ(st.segments, 0u);
    EXPECT_EQ(st.disk_bytes, 0u);
    EXPECT_TRUE(test::segment_files(dir.path()).empty());
  }
  // A clean shutdown still keeps the items in memory (the only time it writes).
  auto ch = open<std::uint32_t>(o);
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), test::iota_u32(10, 1));
}

// ---------------------------------------------------------------- full policies

TEST(Queue, FailPolicyReturnsFullWithTheItemUntouched) {
  TempDir dir;
  auto ch = open<std::string>(fillable_options(dir.path(), FullPolicy::fail));
  const int n = fill(ch.sender, [](int i) { return "item " + std::to_string(i); });
  ASSERT_GT(n, 0);
  const std::string value(100, 'v');  // heap-allocated: a move would empty it
  std::string item = value;
  Status st = ch.sender.send(std::move(item));
  EXPECT_EQ(st.code(), Errc::full) << st.message();
  EXPECT_EQ(item, value);
  const std::string& cref = item;
  EXPECT_EQ(ch.sender.send(cref).code(), Errc::full);
  EXPECT_EQ(item, value);
  // Room again once the receiver takes something.
  std::string out;
  ASSERT_TRUE(ch.receiver.try_recv(out).ok());
  EXPECT_EQ(out, "item 0");
}

TEST(Queue, TrySendFullNeverWaitsWhateverThePolicy) {
  TempDir dir;
  auto ch = open<std::string>(fillable_options(dir.path(), FullPolicy::block));
  ASSERT_GT(fill(ch.sender, [](int i) { return std::to_string(i); }), 0);
  const std::string value(64, 'w');
  std::string item = value;
  EXPECT_EQ(ch.sender.try_send(std::move(item)).code(), Errc::full);
  EXPECT_EQ(item, value);
}

TEST(Queue, BlockPolicyWaitsUntilTheReceiverMakesRoom) {
  TempDir dir;
  auto ch = open<std::string>(fillable_options(dir.path(), FullPolicy::block));
  const int n = fill(ch.sender, [](int i) { return std::to_string(i); });
  ASSERT_GT(n, 0);
  std::atomic<bool> returned{false};
  Status sent;
  std::thread t([&, s = ch.sender]() mutable {
    sent = s.send("late");
    returned = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned.load()) << "send returned while both budgets were full: " << sent.message();
  std::vector<std::string> got;
  std::string out;
  ASSERT_TRUE(ch.receiver.recv(out).ok());  // makes room
  got.push_back(out);
  t.join();
  EXPECT_TRUE(sent.ok()) << sent.message();
  ch.sender.close();
  for (auto& x : test::recv_until_closed(ch.receiver)) got.push_back(x);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(n) + 1);
  for (int i = 0; i < n; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], std::to_string(i));
  EXPECT_EQ(got.back(), "late");
}

TEST(Queue, SendForTimesOutWithTheItemUntouched) {
  for (FullPolicy policy : {FullPolicy::block, FullPolicy::fail}) {
    TempDir dir;
    auto ch = open<std::string>(fillable_options(dir.path(), policy));
    ASSERT_GT(fill(ch.sender, [](int i) { return std::to_string(i); }), 0);
    const std::string value(80, 't');
    std::string item = value;
    Status st = ch.sender.send_for(std::move(item), 20ms);
    EXPECT_EQ(st.code(), Errc::timeout) << "policy " << static_cast<int>(policy) << ": " << st.message();
    EXPECT_EQ(item, value);
  }
}

TEST(Queue, SendForSucceedsWhenRoomAppearsInTime) {
  TempDir dir;
  auto ch = open<std::string>(fillable_options(dir.path(), FullPolicy::fail));
  ASSERT_GT(fill(ch.sender, [](int i) { return std::to_string(i); }), 0);
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    std::string out;
    EXPECT_TRUE(ch.receiver.recv(out).ok());
  });
  Status st = ch.sender.send_for("in time", 60s);
  t.join();
  EXPECT_TRUE(st.ok()) << st.message();
}

TEST(Queue, CopiesOfASenderKeepTheFailPolicy) {
  // FullPolicy::fail belongs to the queue: every producer handle must honour it.
  TempDir dir;
  auto ch = open<std::string>(fillable_options(dir.path(), FullPolicy::fail));
  ASSERT_GT(fill(ch.sender, [](int i) { return std::to_string(i); }), 0);
  Sender<std::string> copy = ch.sender;
  auto attempt = std::async(std::launch::async, [&] { return copy.send("from a copy"); });
  if (attempt.wait_for(2s) != std::future_status::ready) {
    ch.receiver.close();  // unblocks the send (it then returns closed) so the test ends
  }
  Status st = attempt.get();
  EXPECT_EQ(st.code(), Errc::full) << "a copied Sender blocked instead of failing: " << st.message();
}

TEST(Queue, AssignedSenderTakesTheFailPolicyOfItsSource) {
  TempDir fail_dir, block_dir;
  auto failing = open<std::string>(fillable_options(fail_dir.path(), FullPolicy::fail));
  auto blocking = open<std::string>(fillable_options(block_dir.path(), FullPolicy::block));
  ASSERT_GT(fill(failing.sender, [](int i) { return std::to_string(i); }), 0);
  Sender<std::string> s = blocking.sender;
  s = failing.sender;  // now a producer of the failing queue
  auto attempt = std::async(std::launch::async, [&] { return s.send("x"); });
  if (attempt.wait_for(2s) != std::future_status::ready) failing.receiver.close();
  Status st = attempt.get();
  EXPECT_EQ(st.code(), Errc::full) << st.message();
}

// ---------------------------------------------------------------- too_large

TEST(Queue, TooLargeWhenTheItemHasToGoToDisk) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 64;
  o.page_bytes = 64;
  o.segment_bytes = test::min_segment_for_page(64) + 50;
  o.max_disk_bytes = o.segment_bytes * 4;
  auto ch = open<std::string>(o);
  const std::string big(static_cast<std::size_t>(o.segment_bytes), 'B');
  std::string item = big;
  Status st = ch.sender.send(std::move(item));
  EXPECT_EQ(st.code(), Errc::too_large) << st.message();
  EXPECT_NE(st.message().find("segment_bytes"), std::string::npos) << st.message();
  EXPECT_EQ(item, big);
  // Smaller items still flow, in order, and the refused one left no trace.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ch.sender.send(std::to_string(i)).ok());
  ch.sender.close();
  auto got = test::recv_until_closed(ch.receiver);
  EXPECT_EQ(got, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
}

TEST(Queue, TooLargeInTheMiddleOfASpilledPageKeepsTheOthers) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 40;
  o.page_bytes = 4096;
  o.segment_bytes = test::min_segment_for_page(4096);
  o.max_disk_bytes = o.segment_bytes * 4;
  auto ch = open<std::string>(o);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ch.sender.send("a" + std::to_string(i)).ok());
  std::string big(static_cast<std::size_t>(o.segment_bytes), 'B');
  EXPECT_EQ(ch.sender.send(std::move(big)).code(), Errc::too_large);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ch.sender.send("b" + std::to_string(i)).ok());
  ch.sender.close();
  auto got = test::recv_until_closed(ch.receiver);
  EXPECT_EQ(got, (std::vector<std::string>{"a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"}));
}

TEST(Queue, TooLargeWithoutSpillingWhenTheFootprintExceedsMemory) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_disk_bytes = 0;
  o.max_memory_bytes = 200;
  auto ch = open<std::string>(o);
  const std::string big(300, 'M');
  std::string item = big;
  Status st = ch.sender.send(std::move(item));
  EXPECT_EQ(st.code(), Errc::too_large) << st.message();
  EXPECT_NE(st.message().find("max_memory_bytes"), std::string::npos) << st.message();
  EXPECT_EQ(item, big);
  EXPECT_EQ(ch.sender.try_send(std::move(item)).code(), Errc::too_large);
  EXPECT_EQ(item, big);
  // Exactly the budget fits.
  std::string fits(200 - sizeof(std::string) - 1, 'f');
  fits.shrink_to_fit();
  ASSERT_EQ(footprint(fits), 200u);
  EXPECT_TRUE(ch.sender.send(std::move(fits)).ok());
}

TEST(Queue, TooLargeBoundaryIsExact) {
  // The largest string whose page (prefix, cereal size, bytes, headers, zstd bound) still
  // fits one segment is accepted; one byte more is too_large.
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 1;  // every item goes to disk
  o.page_bytes = 1;
  o.segment_bytes = 3000;
  o.max_disk_bytes = o.segment_bytes * 2;
  std::size_t fits = 0;
  while (test::min_segment_for_item(8 + fits + 1) <= o.segment_bytes) ++fits;
  auto ch = open<std::string>(o);
  EXPECT_TRUE(ch.sender.send(std::string(fits, 'f')).ok());
  EXPECT_EQ(ch.sender.send(std::string(fits + 1, 'g')).code(), Errc::too_large);
  std::string out;
  ASSERT_TRUE(ch.receiver.recv(out).ok());
  EXPECT_EQ(out, std::string(fits, 'f'));
}

}  // namespace
}  // namespace hopper::test
