// The queue through its public API: order across memory and disk, budgets, the full
// policies, timeouts, closing in both directions, liveness of the last item, flush,
// too_large, option validation, directory errors, locking, item types and Stats; and,
// through a gated file system, the receiver finishing a segment inside the writer's
// rotation window.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "forwarding_fs.hpp"
#include "test_util.hpp"

// ---- item types for the customization points (at namespace scope, before any use) ----

// Serializable through a `serialize` member; footprint through a `hopper_footprint` member.
struct Reading {
  std::uint32_t sensor = 0;
  std::string label;
  std::vector<double> values;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(sensor, label, values);
  }
  std::uint64_t hopper_footprint() const noexcept { return 100; }
  bool operator==(const Reading&) const = default;
};

// Footprint through a Footprint specialization, which must win over its member.
struct Blob {
  std::string bytes;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(bytes);
  }
  std::uint64_t hopper_footprint() const noexcept { return 1; }  // ignored: specialized below
  bool operator==(const Blob&) const = default;
};

template <>
struct hopper::Footprint<Blob> {
  static std::uint64_t of(const Blob& b) noexcept { return 1000 + b.bytes.size(); }
};

namespace hopper {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

constexpr std::uint64_t kU32 = sizeof(std::uint32_t);

// Memory for exactly `items` u32 items; disk large.
Options u32_options(const std::filesystem::path& dir, std::uint64_t items) {
  Options o = test::small_options(dir);
  o.max_memory_bytes = items * kU32;
  return o;
}

template <class T>
Channel<T> open(const Options& o) {
  auto ch = channel<T>(o);
  if (!ch.ok()) throw std::runtime_error("channel(): " + ch.status().message());
  return std::move(*ch);
}

Status send_u32(Sender<std::uint32_t>& s, std::uint32_t v) { return s.send(std::uint32_t{v}); }

void expect_budgets(const Stats& st, const Options& o, const char* where) {
  EXPECT_LE(st.memory_bytes, o.max_memory_bytes) << where;
  if (o.max_disk_bytes > 0) {
    EXPECT_LE(st.disk_bytes, o.max_disk_bytes) << where;
    EXPECT_LE(test::segment_bytes_on_disk(o.directory), o.max_disk_bytes) << where;
  }
}

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

// Sends until the queue refuses; returns how many were accepted.
template <class T, class Make>
int fill(Sender<T>& s, Make make) {
  for (int n = 0; n < 1000000; ++n) {
    Status st = s.try_send(make(n));
    if (!st.ok()) {
      EXPECT_EQ(st.code(), Errc::full) << st.message();
      return n;
    }
  }
  ADD_FAILURE() << "the queue never became full";
  return -1;
}

Options fillable_options(const std::filesystem::path& dir, FullPolicy policy) {
  Options o = test::small_options(dir);
  o.max_memory_bytes = 100;
  o.page_bytes = 128;
  o.segment_bytes = test::min_segment_for_page(128);
  o.max_disk_bytes = o.segment_bytes * 2;
  o.when_full = policy;
  return o;
}

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

// ---------------------------------------------------------------- flush and Stats

TEST(Queue, FlushWritesTheOpenPage) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 2));
  for (std::uint32_t i = 0; i < 12; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  EXPECT_EQ(ch.receiver.stats().pages_written, 0u);
  EXPECT_TRUE(test::segment_files(dir.path()).empty());
  ASSERT_TRUE(ch.sender.flush().ok());
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.pages_written, 1u);
  EXPECT_EQ(st.segments, 1u);
  auto files = test::segment_files(dir.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(st.disk_bytes, std::filesystem::file_size(files[0]));
  auto pages = test::pages_of(files[0]);
  ASSERT_EQ(pages.size(), 1u);
  EXPECT_EQ(pages[0].count, 10u);
  EXPECT_EQ(pages[0].first_seq, 2u);
  // Nothing to seal: a second flush writes nothing.
  ASSERT_TRUE(ch.sender.flush().ok());
  EXPECT_EQ(ch.receiver.stats().pages_written, 1u);
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), test::iota_u32(12));
}

TEST(Queue, StatsTotals) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 10));
  for (std::uint32_t i = 0; i < 100; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  ASSERT_TRUE(ch.sender.flush().ok());
  Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_sent, 100u);
  EXPECT_EQ(st.items_received, 0u);
  EXPECT_EQ(st.items_spilled, 90u);
  EXPECT_EQ(st.memory_items, 10u);
  EXPECT_EQ(st.memory_bytes, 40u);
  EXPECT_EQ(st.disk_items, 90u);
  EXPECT_EQ(st.pages_written, 1u);
  EXPECT_EQ(st.bytes_uncompressed, 90u * (4 + kU32));  // length prefix + cereal's u32
  auto files = test::segment_files(dir.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(st.bytes_compressed, std::filesystem::file_size(files[0]) - format::kSegmentHeaderSize);
  EXPECT_EQ(st.disk_bytes, std::filesystem::file_size(files[0]));
  EXPECT_EQ(st.corrupt_pages, 0u);
  EXPECT_EQ(st.corrupt_items, 0u);
  EXPECT_EQ(st.torn_bytes, 0u);
  EXPECT_EQ(st.items_recovered, 0u);

  std::uint32_t v = 0;
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(ch.receiver.recv(v).ok());
  st = ch.receiver.stats();
  EXPECT_EQ(st.items_received, 30u);
  EXPECT_EQ(st.memory_items, 0u);
  EXPECT_EQ(st.disk_items, 70u);
  auto rest = test::drain(ch.receiver);
  EXPECT_EQ(rest.size(), 70u);
  st = ch.receiver.stats();
  EXPECT_EQ(st.items_received, 100u);
  EXPECT_EQ(st.disk_items, 0u);
  EXPECT_EQ(st.memory_bytes, 0u);
  EXPECT_EQ(st.segments, 0u);
  EXPECT_EQ(st.disk_bytes, 0u);
  EXPECT_TRUE(test::segment_files(dir.path()).empty());
}

TEST(Queue, StatsIsCallableFromAnotherThread) {
  TempDir dir;
  auto ch = open<std::uint32_t>(u32_options(dir.path(), 8));
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    while (!stop) {
      Stats st = ch.receiver.stats();
      EXPECT_LE(st.memory_bytes, 8 * kU32);
      EXPECT_LE(st.items_received, st.items_sent);
    }
  });
  std::thread producer([s = ch.sender]() mutable {
    for (std::uint32_t i = 0; i < 3000; ++i) EXPECT_TRUE(s.send(std::uint32_t{i}).ok());
  });
  ch.sender.close();
  auto got = test::recv_until_closed(ch.receiver);
  producer.join();
  stop = true;
  watcher.join();
  EXPECT_EQ(got, test::iota_u32(3000));
}

// ---------------------------------------------------------------- segments

TEST(Queue, SegmentsRotateAndAreDeletedOnceRead) {
  TempDir dir;
  Options o = u32_options(dir.path(), 10);
  o.page_bytes = 64;  // 8 u32 per page
  o.segment_bytes = 600;
  o.max_disk_bytes = 1 << 20;
  auto ch = open<std::uint32_t>(o);
  for (std::uint32_t i = 0; i < 500; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  ASSERT_TRUE(ch.sender.flush().ok());
  auto files = test::segment_files(dir.path());
  ASSERT_GT(files.size(), 3u);
  EXPECT_EQ(ch.receiver.stats().segments, files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    EXPECT_LE(std::filesystem::file_size(files[i]), o.segment_bytes) << files[i];
    EXPECT_EQ(files[i].filename().native(), format::segment_file_name(i + 1));
  }
  const std::uint64_t highest = *format::parse_segment_file_name(files.back().filename().native());
  std::vector<std::uint32_t> got;
  std::uint32_t v = 0;
  std::size_t last_count = files.size();
  while (ch.receiver.try_recv(v).ok()) {
    got.push_back(v);
    const std::size_t now = test::segment_files(dir.path()).size();
    ASSERT_LE(now, last_count) << "a segment appeared while only reading";
    last_count = now;
    ASSERT_EQ(ch.receiver.stats().segments, now);
    ASSERT_EQ(ch.receiver.stats().disk_bytes, test::segment_bytes_on_disk(dir.path()));
  }
  EXPECT_EQ(got, test::iota_u32(500));
  EXPECT_TRUE(test::segment_files(dir.path()).empty());
  EXPECT_EQ(ch.receiver.stats().segments, 0u);
  // New spills start a new segment number, never reuse a deleted one.
  for (std::uint32_t i = 0; i < 30; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  ASSERT_TRUE(ch.sender.flush().ok());
  files = test::segment_files(dir.path());
  ASSERT_FALSE(files.empty());
  EXPECT_GT(*format::parse_segment_file_name(files[0].filename().native()), highest);
}

TEST(Queue, ASegmentIsDeletedOnlyAfterItsLastPageIsRead) {
  TempDir dir;
  Options o = u32_options(dir.path(), 1);
  o.page_bytes = 16;  // two u32 per page
  o.segment_bytes = 4096;
  auto ch = open<std::uint32_t>(o);
  for (std::uint32_t i = 0; i < 7; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
  ASSERT_TRUE(ch.sender.flush().ok());
  ASSERT_EQ(test::segment_files(dir.path()).size(), 1u);
  std::uint32_t v = 0;
  for (std::uint32_t i = 0; i < 6; ++i) {
    ASSERT_TRUE(ch.receiver.try_recv(v).ok());
    EXPECT_EQ(v, i);
    EXPECT_EQ(test::segment_files(dir.path()).size(), 1u) << "deleted with items unread, after item " << i;
  }
  ASSERT_TRUE(ch.receiver.try_recv(v).ok());
  EXPECT_EQ(v, 6u);
  EXPECT_TRUE(test::segment_files(dir.path()).empty());
}

// A POSIX file system in which one call (sync of, or remove of, a path containing a given
// string) can be held at a gate: the test learns when a thread has reached it and decides
// when it may go on. Lets a test put the receiver exactly inside the writer's window.
// Thread-safe.
class GatedFileSystem final : public test::ForwardingFileSystem {
 public:
  // The next matching call (one only) will be held.
  void arm(std::string op, std::string path_part) {
    std::lock_guard lk(mu_);
    op_ = std::move(op);
    part_ = std::move(path_part);
    entered_ = false;
  }
  // Waits until a thread is held at the armed gate; false if none came within 30s.
  bool wait_entered() {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, 30s, [this] { return entered_; });
  }
  // Lets the thread held longest go on.
  void release() {
    std::lock_guard lk(mu_);
    ++released_;
    cv_.notify_all();
  }
  void gate(const char* op, const std::filesystem::path& path) {
    std::unique_lock lk(mu_);
    if (op_.empty() || op_ != op || path.native().find(part_) == std::string::npos) return;
    op_.clear();
    const int me = ++held_;
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lk, [&] { return released_ >= me; });
  }

  Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) override {
    return open_wrapped<GatedFile>(path, mode, *this);
  }
  Status remove(const std::filesystem::path& path) override {
    gate("remove", path);
    return ForwardingFileSystem::remove(path);
  }

 private:
  class GatedFile final : public test::ForwardingFile {
   public:
    GatedFile(std::unique_ptr<File> f, GatedFileSystem& fs) : ForwardingFile(std::move(f)), fs_(fs) {}
    Status sync() override {
      fs_.gate("sync", path());
      return ForwardingFile::sync();
    }

   private:
    GatedFileSystem& fs_;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  std::string op_, part_;
  bool entered_ = false;
  int held_ = 0, released_ = 0;
};

// Options for the rotation race below: every string goes to disk, one item per page, and
// a segment too small for two one-letter pages, so "b" makes the writer rotate.
Options rotation_race_options(const std::filesystem::path& dir, std::shared_ptr<FileSystem> fs) {
  Options o = test::small_options(dir);
  o.file_system = std::move(fs);
  o.max_memory_bytes = 1;
  o.page_bytes = 1;
  o.segment_bytes = test::min_segment_for_item(8 + 2);  // room for a two-letter item
  o.max_disk_bytes = 1 << 20;
  return o;
}

// Sends "a" (segment 1), then "b", whose write rotates to segment 2; the receiver reads
// "a" while the writer syncs segment 1 to close it, and "b" while the writer removes
// segment 1 — i.e. it finishes segment 2 while the writer still holds the writer token.
void read_while_the_writer_rotates(Channel<std::string>& ch, GatedFileSystem& fs) {
  const std::string first = format::segment_file_name(1);
  ASSERT_TRUE(ch.sender.send("a").ok());
  fs.arm("sync", first);
  auto sent = std::async(std::launch::async, [&] { return ch.sender.send("b"); });
  ASSERT_TRUE(fs.wait_entered()) << "the writer never synced segment 1 to rotate";
  std::string out;
  ASSERT_TRUE(ch.receiver.recv(out).ok());
  EXPECT_EQ(out, "a");
  fs.arm("remove", first);
  fs.release();
  ASSERT_TRUE(fs.wait_entered()) << "the writer never removed segment 1";
  ASSERT_TRUE(ch.receiver.recv(out).ok());
  EXPECT_EQ(out, "b");
  fs.release();
  ASSERT_TRUE(sent.get().ok());
  EXPECT_EQ(ch.receiver.try_recv(out).code(), Errc::empty);
}

TEST(Queue, ASegmentReadWhileTheWriterRotatesIsStillDeleted) {
  // Once every item is read, no segment may be left behind: the receiver deletes what it
  // has read, and its bytes would otherwise hold the disk budget.
  TempDir dir;
  auto fs = std::make_shared<GatedFileSystem>();
  auto ch = open<std::string>(rotation_race_options(dir.path(), fs));
  read_while_the_writer_rotates(ch, *fs);
  EXPECT_EQ(ch.receiver.stats().disk_items, 0u);
  EXPECT_EQ(ch.receiver.stats().segments, 0u) << "a fully read segment was left behind";
  EXPECT_EQ(ch.receiver.stats().disk_bytes, 0u);
  EXPECT_TRUE(test::segment_files(dir.path()).empty());
}

TEST(Queue, ASegmentReadWhileTheWriterRotatesDoesNotStarveSenders) {
  // The same race with a disk budget just big enough for "b" next to "a": afterwards the
  // queue is empty, so a two-letter item must find room (it fits an empty disk budget).
  const std::string raw = test::raw_payload({std::string("\x01\0\0\0\0\0\0\0a", 9)});
  const std::uint64_t one_letter_segment =
      format::kSegmentHeaderSize + format::kPageHeaderSize + test::zstd_frame(raw).size();
  TempDir dir;
  auto fs = std::make_shared<GatedFileSystem>();
  Options o = rotation_race_options(dir.path(), fs);
  o.max_disk_bytes = one_letter_segment + test::min_segment_for_item(8 + 1);
  ASSERT_GE(o.max_disk_bytes, o.segment_bytes);
  auto ch = open<std::string>(o);
  read_while_the_writer_rotates(ch, *fs);
  ASSERT_EQ(ch.receiver.stats().memory_items + ch.receiver.stats().disk_items, 0u);
  Status s = ch.sender.send_for("cc", 2s);
  EXPECT_TRUE(s.ok()) << "an empty queue refused an item that fits its disk budget: " << s.message();
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

// ---------------------------------------------------------------- options

struct BadOption {
  const char* name;
  void (*spoil)(Options&);
  const char* must_mention;
};

TEST(Queue, EveryInvalidOptionIsNamed) {
  TempDir dir;
  const BadOption cases[] = {
      {"empty directory", [](Options& o) { o.directory.clear(); }, "directory"},
      {"zero memory", [](Options& o) { o.max_memory_bytes = 0; }, "max_memory_bytes"},
      {"zero page", [](Options& o) { o.page_bytes = 0; }, "page_bytes"},
      {"page larger than segment",
       [](Options& o) {
         o.page_bytes = 4096;
         o.segment_bytes = test::min_segment_for_page(4096) - 1;
       },
       "segment_bytes"},
      {"page larger than segment (page named)",
       [](Options& o) {
         o.page_bytes = 4096;
         o.segment_bytes = 4096;
       },
       "page_bytes"},
      {"segment larger than disk",
       [](Options& o) {
         o.segment_bytes = 1 << 20;
         o.max_disk_bytes = (1 << 20) - 1;
       },
       "max_disk_bytes"},
      {"page above the maximum", [](Options& o) { o.page_bytes = (1u << 30) + 1; }, "page_bytes"},
      {"compression too low", [](Options& o) { o.compression_level = -8; }, "compression_level"},
      {"compression too high", [](Options& o) { o.compression_level = 23; }, "compression_level"},
  };
  for (const BadOption& c : cases) {
    Options o = test::small_options(dir.path());
    c.spoil(o);
    Status v = validate(o);
    EXPECT_EQ(v.code(), Errc::invalid_argument) << c.name;
    EXPECT_NE(v.message().find(c.must_mention), std::string::npos) << c.name << ": " << v.message();
    auto ch = channel<std::uint32_t>(o);
    ASSERT_FALSE(ch.ok()) << c.name;
    EXPECT_EQ(ch.status().code(), Errc::invalid_argument) << c.name;
    EXPECT_NE(ch.status().message().find(c.must_mention), std::string::npos) << c.name << ": " << ch.status().message();
  }
  // Nothing was created by a refused open.
  EXPECT_TRUE(test::dir_entries(dir.path()).empty());
}

TEST(Queue, OptionsAtTheirLimitsAreValid) {
  TempDir dir;
  for (int level : {-7, 22}) {
    Options o = test::small_options(dir.path());
    o.compression_level = level;
    EXPECT_TRUE(validate(o).ok()) << level << ": " << validate(o).message();
  }
  Options o = test::small_options(dir.path());
  o.segment_bytes = test::min_segment_for_page(o.page_bytes);
  EXPECT_TRUE(validate(o).ok()) << validate(o).message();
  o.max_disk_bytes = o.segment_bytes;
  EXPECT_TRUE(validate(o).ok()) << validate(o).message();
  // Spilling off: segment and page sizes do not matter.
  o.max_disk_bytes = 0;
  o.segment_bytes = 1;
  EXPECT_TRUE(validate(o).ok()) << validate(o).message();
  auto ch = channel<std::uint32_t>(o);
  EXPECT_TRUE(ch.ok()) << ch.status().message();
  EXPECT_TRUE(validate(test::tiny_options(dir.path(), 1)).ok());
}

TEST(Queue, ExtremeCompressionLevelsRoundTrip) {
  for (int level : {-7, 0, 22}) {
    TempDir dir;
    Options o = u32_options(dir.path(), 2);
    o.compression_level = level;
    auto ch = open<std::uint32_t>(o);
    for (std::uint32_t i = 0; i < 300; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
    ASSERT_TRUE(ch.sender.flush().ok());
    ch.sender.close();
    EXPECT_EQ(test::recv_until_closed(ch.receiver), test::iota_u32(300)) << "level " << level;
  }
}

TEST(Queue, MissingDirectoryIsCreated) {
  TempDir dir;
  Options o = test::small_options(dir / "a/b/c");
  auto ch = channel<std::uint32_t>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  EXPECT_TRUE(std::filesystem::is_directory(dir / "a/b/c"));
}

TEST(Queue, DirectoryThatIsARegularFileIsAnIoError) {
  TempDir dir;
  test::write_file(dir / "plain", "not a directory");
  auto ch = channel<std::uint32_t>(test::small_options(dir / "plain"));
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::io_error);
  EXPECT_NE(ch.status().message().find((dir / "plain").native()), std::string::npos) << ch.status().message();
  EXPECT_EQ(test::read_file(dir / "plain"), "not a directory");
}

TEST(Queue, DirectoryUnderARegularFileIsAnIoError) {
  TempDir dir;
  test::write_file(dir / "plain", "x");
  auto ch = channel<std::uint32_t>(test::small_options(dir / "plain" / "queue"));
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::io_error);
  EXPECT_NE(ch.status().message().find("plain"), std::string::npos) << ch.status().message();
  EXPECT_NE(ch.status().message().find("Not a directory"), std::string::npos) << ch.status().message();
}

TEST(Queue, DirectoryUnderAReadOnlyParentIsAnIoError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions; covered by the ENOTDIR test";
  TempDir dir;
  std::filesystem::create_directory(dir / "ro");
  std::filesystem::permissions(dir / "ro", std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  auto ch = channel<std::uint32_t>(test::small_options(dir / "ro" / "queue"));
  std::filesystem::permissions(dir / "ro", std::filesystem::perms::owner_all);
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::io_error);
  EXPECT_NE(ch.status().message().find("ro"), std::string::npos) << ch.status().message();
}

// ---------------------------------------------------------------- locking

TEST(Queue, SecondChannelOnTheSameDirectoryIsLocked) {
  TempDir dir;
  {
    auto first = channel<std::uint32_t>(test::small_options(dir.path()));
    ASSERT_TRUE(first.ok()) << first.status().message();
    ASSERT_TRUE(first->sender.send(1).ok());
    auto second = channel<std::uint32_t>(test::small_options(dir.path()));
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), Errc::locked) << second.status().message();
    EXPECT_NE(second.status().message().find(dir.path().native()), std::string::npos) << second.status().message();
    // The refused open did not disturb the first.
    std::uint32_t v = 0;
    ASSERT_TRUE(first->receiver.try_recv(v).ok());
    EXPECT_EQ(v, 1u);
  }
  // Released when the first closes.
  auto again = channel<std::uint32_t>(test::small_options(dir.path()));
  EXPECT_TRUE(again.ok()) << again.status().message();
}

TEST(Queue, LockHeldWhileAnyHandleRemains) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  Sender<std::uint32_t> keep = ch.sender;
  ch.receiver.close();
  ch.sender.close();
  EXPECT_EQ(channel<std::uint32_t>(test::small_options(dir.path())).status().code(), Errc::locked);
  keep.close();
  EXPECT_TRUE(channel<std::uint32_t>(test::small_options(dir.path())).ok());
}

TEST(Queue, AnotherProcessGetsLocked) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto other = channel<std::uint32_t>(test::small_options(dir.path()));
    ::_exit(!other.ok() && other.status().code() == Errc::locked ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child process was not refused with Errc::locked";
}

// ---------------------------------------------------------------- item types

TEST(Queue, UserTypeWithSerializeAndFootprintMembers) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 250;  // two Readings of footprint 100
  auto ch = open<Reading>(o);
  std::vector<Reading> sent;
  for (std::uint32_t i = 0; i < 6; ++i) {
    Reading r{i, "sensor-" + std::to_string(i) + std::string(i * 10, '+'), std::vector<double>(i, 0.5 * i)};
    sent.push_back(r);
    ASSERT_TRUE(ch.sender.send(std::move(r)).ok());
    if (i == 1) {
      EXPECT_EQ(ch.receiver.stats().memory_bytes, 200u);
      EXPECT_EQ(ch.receiver.stats().memory_items, 2u);
    }
  }
  EXPECT_EQ(ch.receiver.stats().memory_items, 2u);
  EXPECT_EQ(ch.receiver.stats().items_spilled, 4u);
  ASSERT_TRUE(ch.sender.flush().ok());  // through a real file, not only RAM
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), sent);
}

TEST(Queue, FootprintSpecializationWinsOverTheMember) {
  EXPECT_EQ(footprint(Blob{"abc"}), 1003u);
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 2100;  // two Blobs of ~1005
  auto ch = open<Blob>(o);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ch.sender.send(Blob{"b" + std::to_string(i) + "x"}).ok());
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.memory_items, 2u);
  EXPECT_EQ(st.memory_bytes, 2 * 1003u);
  EXPECT_EQ(st.items_spilled, 2u);
  ch.sender.close();
  auto got = test::recv_until_closed(ch.receiver);
  EXPECT_EQ(got, (std::vector<Blob>{{"b0x"}, {"b1x"}, {"b2x"}, {"b3x"}}));
}

TEST(Queue, DefaultFootprintCountsHeapBytes) {
  EXPECT_EQ(footprint(std::uint32_t{1}), 4u);
  EXPECT_EQ(footprint(std::string("short")), sizeof(std::string));
  std::string heap(100, 'h');
  EXPECT_EQ(footprint(heap), sizeof(std::string) + heap.capacity() + 1);
  std::vector<std::uint64_t> nums(10);
  EXPECT_EQ(footprint(nums), sizeof(nums) + nums.capacity() * 8);
  std::vector<std::string> strs{std::string(40, 'a'), "b"};
  EXPECT_EQ(footprint(strs), sizeof(strs) + strs.capacity() * sizeof(std::string) + strs[0].capacity() + 1);
}

TEST(Queue, VectorsOfStringsThroughMemoryAndDisk) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 400;
  auto ch = open<std::vector<std::string>>(o);
  std::vector<std::vector<std::string>> sent;
  for (int i = 0; i < 20; ++i) {
    std::vector<std::string> item;
    for (int j = 0; j < i % 4; ++j) item.push_back(std::string(static_cast<std::size_t>(i * j), 'a' + j));
    if (i % 5 == 0) item.push_back("");
    sent.push_back(item);
    const std::uint64_t fp = footprint(item);
    const std::uint64_t before = ch.receiver.stats().memory_bytes;
    const std::uint64_t spilled = ch.receiver.stats().items_spilled;
    ASSERT_TRUE(ch.sender.send(std::move(item)).ok());
    const Stats st = ch.receiver.stats();
    if (st.items_spilled == spilled) { EXPECT_EQ(st.memory_bytes, before + fp) << i; }
    EXPECT_LE(st.memory_bytes, o.max_memory_bytes);
  }
  EXPECT_GT(ch.receiver.stats().items_spilled, 0u);
  ASSERT_TRUE(ch.sender.flush().ok());
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), sent);
}

TEST(Queue, StringsOfEverySizeClassRoundTrip) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 256;
  o.page_bytes = 1024;
  auto ch = open<std::string>(o);
  std::vector<std::string> sent;
  for (std::size_t len : {0u, 1u, 15u, 16u, 100u, 1000u, 5000u, 0u, 3u}) {
    sent.push_back(std::string(len, static_cast<char>('A' + len % 26)));
    ASSERT_TRUE(ch.sender.send(sent.back()).ok());
  }
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), sent);
}

// ---------------------------------------------------------------- the receiver's batch
// The receiver swaps the deque out and hands its items out without the lock; these pin
// what must not change because of it (docs/architecture.md, "The receiver's batch").

constexpr std::uint64_t kU64 = sizeof(std::uint64_t);

// Memory for exactly `items` u64, nothing spilled.
Options u64_memory_only(const std::filesystem::path& dir, std::uint64_t items, FullPolicy when_full) {
  Options o = test::small_options(dir);
  o.max_memory_bytes = items * kU64;
  o.max_disk_bytes = 0;
  o.when_full = when_full;
  return o;
}

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
}  // namespace hopper
