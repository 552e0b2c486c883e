// Receiver::wait_handle: an eventfd an event loop polls instead of blocking in recv. It must
// be readable whenever try_recv could return something (no lost wake-up, whatever the
// interleaving with senders, memory or spilled pages, sync policy, manual commit), and quiet
// once try_recv has said empty and nothing has arrived since (no busy polling).
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <hopper/hopper.hpp>

#include "hook_fs.hpp"
#include "test_util.hpp"

namespace {

using hopper::Errc;

using hopper::test::readable;

hopper::Options small_options(const std::filesystem::path& dir) {
  hopper::Options o;
  o.directory = dir;
  o.max_memory_bytes = 4096;
  o.page_bytes = 4096;
  o.segment_bytes = 64 << 10;
  o.max_disk_bytes = 64 << 20;
  return o;
}

TEST(WaitHandle, ReadableOnlyWhileThereIsSomethingToTake) {
  hopper::test::TempDir dir;
  auto ch = hopper::channel<std::string>(small_options(dir.path()));
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  auto& tx = ch->sender;
  auto& rx = ch->receiver;
  auto fd = rx.wait_handle();
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  auto again = rx.wait_handle();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *fd);  // one handle per queue

  std::string out;
  EXPECT_TRUE(readable(*fd, 0));  // a new handle starts readable: nothing was announced yet
  EXPECT_EQ(rx.try_recv(out), Errc::empty);
  EXPECT_FALSE(readable(*fd, 0));  // empty re-armed it: quiet

  ASSERT_TRUE(tx.send("a").ok());
  EXPECT_TRUE(readable(*fd, 0));
  ASSERT_TRUE(tx.send("b").ok());
  ASSERT_TRUE(rx.try_recv(out).ok());
  EXPECT_EQ(out, "a");
  ASSERT_TRUE(rx.try_recv(out).ok());
  EXPECT_EQ(out, "b");
  EXPECT_EQ(rx.try_recv(out), Errc::empty);
  EXPECT_FALSE(readable(*fd, 0));

  // Spilled items, in pages: the open page is taken when nothing else is queued.
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(tx.send(std::string(100, 'x') + std::to_string(i)).ok());
  EXPECT_TRUE(readable(*fd, 0));
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(rx.try_recv(out).ok()) << i;
    ASSERT_EQ(out, std::string(100, 'x') + std::to_string(i));
  }
  EXPECT_GT(rx.stats().items_spilled, 0u);
  EXPECT_EQ(rx.try_recv(out), Errc::empty);
  EXPECT_FALSE(readable(*fd, 0));

  tx.close();  // closed is news too
  EXPECT_TRUE(readable(*fd, 0));
  EXPECT_EQ(rx.try_recv(out), Errc::closed);
}

TEST(WaitHandle, TryRecvManyEmptyRearmsItToo) {
  hopper::test::TempDir dir;
  auto ch = hopper::channel<std::string>(small_options(dir.path()));
  ASSERT_TRUE(ch.ok());
  auto& tx = ch->sender;
  auto& rx = ch->receiver;
  auto fd = rx.wait_handle();
  ASSERT_TRUE(fd.ok());
  std::vector<std::string> out;
  EXPECT_EQ(rx.try_recv_many(out, 16), Errc::empty);
  EXPECT_FALSE(readable(*fd, 0));
  ASSERT_TRUE(tx.send("a").ok());
  EXPECT_TRUE(readable(*fd, 0));
  ASSERT_TRUE(rx.try_recv_many(out, 16).ok());
  EXPECT_EQ(out, std::vector<std::string>{"a"});
}

// A page another thread is still writing: try_recv says empty and the handle stays quiet
// (no busy polling) until the write is done; then it is readable and the item is there.
TEST(WaitHandle, APageBeingWrittenWakesItOnceWrittenAndNotBefore) {
  hopper::test::TempDir dir;
  auto hook = std::make_shared<hopper::test::HookFileSystem>(hopper::FileSystem::posix());
  std::mutex m;
  std::condition_variable cv;
  bool entered = false, released = false;
  std::atomic<bool> held{false};
  hook->set_hook([&](hopper::test::SimOp op, const std::filesystem::path& p, std::size_t bytes) {
    // The first append of a page (not the segment's header) waits until released.
    if (op == hopper::test::SimOp::append && p.extension() == ".seg" && bytes > 32 && !held.exchange(true)) {
      std::unique_lock lk(m);
      entered = true;
      cv.notify_all();
      cv.wait(lk, [&] { return released; });
    }
    return hopper::Status();
  });
  hopper::Options o = small_options(dir.path());
  o.file_system = hook;
  o.manual_commit = true;  // the receiver may not take the page from RAM: it waits for the file
  o.max_memory_bytes = 1;  // every item spills
  o.page_bytes = 1;        // a page per item
  auto ch = hopper::channel<std::string>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  auto& tx = ch->sender;
  auto& rx = ch->receiver;
  auto fd = rx.wait_handle();
  ASSERT_TRUE(fd.ok());
  std::string out;
  EXPECT_EQ(rx.try_recv(out), Errc::empty);

  auto sent = std::async(std::launch::async, [&] { return tx.send(std::string(100, 'a')); });
  {
    std::unique_lock lk(m);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return entered; }));
  }
  EXPECT_TRUE(readable(*fd, 0));  // a page is due
  EXPECT_EQ(rx.try_recv(out), Errc::empty);  // ... but still being written
  const bool busy = readable(*fd, 200);
  {
    std::lock_guard lk(m);
    released = true;
  }
  cv.notify_all();
  EXPECT_FALSE(busy) << "readable while the only page was still being written";
  ASSERT_TRUE(sent.get().ok());
  EXPECT_TRUE(readable(*fd, 10000));
  ASSERT_TRUE(rx.try_recv(out).ok());
  EXPECT_EQ(out, std::string(100, 'a'));
}

TEST(WaitHandle, AClosedReceiverHasNone) {
  hopper::test::TempDir dir;
  auto ch = hopper::channel<std::string>(small_options(dir.path()));
  ASSERT_TRUE(ch.ok());
  ch->receiver.close();
  EXPECT_EQ(ch->receiver.wait_handle().status(), Errc::closed);
}

// The property: producers send concurrently; the receiver only ever sleeps in poll() on the
// handle, and takes with try_recv until empty. A lost wake-up leaves it asleep with items
// queued: poll's long timeout then fails the case.
RC_GTEST_PROP(WaitHandle, NoWakeUpIsLostWhateverTheInterleaving, ()) {
  const int producers = *rc::gen::inRange(1, 5);
  const int per_producer = *rc::gen::inRange(1, 1500);
  const bool spill = *rc::gen::arbitrary<bool>();
  const bool manual = *rc::gen::arbitrary<bool>();
  const auto sync = *rc::gen::element(hopper::SyncPolicy::none, hopper::SyncPolicy::always);
  const int item_bytes = *rc::gen::inRange(1, 300);

  hopper::test::TempDir dir;
  hopper::Options o = small_options(dir.path());
  if (!spill && sync != hopper::SyncPolicy::always) {
    o.max_memory_bytes = 64 << 20;
    o.max_disk_bytes = 0;
  }
  o.manual_commit = manual;
  o.sync = sync;
  auto ch = hopper::channel<std::string>(o);
  RC_ASSERT(ch.ok());
  auto& tx = ch->sender;
  auto& rx = ch->receiver;
  auto fd = rx.wait_handle();
  RC_ASSERT(fd.ok());

  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([s = tx, p, per_producer, item_bytes]() mutable {
      for (int i = 0; i < per_producer; ++i) {
        std::string item = std::to_string(p) + ":" + std::to_string(i) + ":";
        item.resize(item.size() + static_cast<std::size_t>(item_bytes), 'x');
        if (!s.send(std::move(item)).ok()) return;
        if (i % 97 == 0) std::this_thread::yield();
      }
    });
  }
  tx.close();

  std::vector<int> next(static_cast<std::size_t>(producers), 0);
  int received = 0;
  bool closed = false;
  int sleeps = 0;
  while (!closed) {
    if (!readable(*fd, 20000)) break;  // asleep with something to take: a lost wake-up
    ++sleeps;
    std::string out;
    for (;;) {
      hopper::Status s = rx.try_recv(out);
      if (s == Errc::empty) break;
      if (s == Errc::closed) {
        closed = true;
        break;
      }
      RC_ASSERT(s.ok());
      const auto colon = out.find(':');
      const int p = std::stoi(out.substr(0, colon));
      const int i = std::stoi(out.substr(colon + 1));
      RC_ASSERT(i == next[static_cast<std::size_t>(p)]);  // each producer's order
      ++next[static_cast<std::size_t>(p)];
      ++received;
      if (manual && received % 256 == 0) RC_ASSERT(rx.commit().ok());
    }
  }
  for (auto& t : threads) t.join();
  RC_ASSERT(closed);
  RC_ASSERT(received == producers * per_producer);
  RC_ASSERT(sleeps >= 1);
}

}  // namespace
