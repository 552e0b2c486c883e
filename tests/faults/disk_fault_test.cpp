// Disk faults, one test per shape found (issue "Disk faults"): a disk that fills up, fails
// fsync, loses files, refuses reads or unlinks. Each test pins one behaviour and failed on
// the code before its fix. The queues run on tests/support/sim_fs (RAM, exact durability model),
// with tests/support/hook_fs where a call must fail or pause at one precise point; the tests that
// need a real kernel (a sparse file, an open descriptor) use the POSIX file system.
#include <gtest/gtest.h>

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <cereal/types/string.hpp>

#include <hopper/hopper.hpp>

#include "storage/format.hpp"
#include "hook_fs.hpp"
#include "sim_fs.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kDir = "/q";

fs::path seg(std::uint64_t n) { return kDir / format::segment_file_name(n); }
bool is_segment(const fs::path& p) { return format::parse_segment_file_name(p.filename().native()).has_value(); }

// Options on a simulated disk: small pages and segments so that a few items spill.
Options sim_options(std::shared_ptr<FileSystem> fs) {
  Options o;
  o.directory = kDir;
  o.file_system = std::move(fs);
  o.max_memory_bytes = 1024;
  o.max_disk_bytes = 1 << 20;
  o.segment_bytes = 8 << 10;
  o.page_bytes = 512;
  return o;
}

template <class T>
Channel<T> open_or_die(const Options& o) {
  auto ch = channel<T>(o);
  if (!ch.ok()) throw std::runtime_error("channel(): " + ch.status().message());
  return std::move(*ch);
}

// Waits until `pred` holds (polling), at most 10 s: a liveness check, not a timing one.
template <class P>
bool eventually(P pred) {
  for (int i = 0; i < 10000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

// Everything a reopened queue delivers (its senders closed).
std::vector<std::string> reopen_and_drain(const Options& o, Stats* stats = nullptr) {
  auto ch = open_or_die<std::string>(o);
  ch.sender.close();
  std::vector<std::string> out;
  std::string v;
  Status s;
  while ((s = ch.receiver.recv_for(v, 10s)).ok()) out.push_back(v);
  EXPECT_EQ(s.code(), Errc::closed) << s.message();
  if (stats) *stats = ch.receiver.stats();
  return out;
}

std::string item(int i, std::size_t pad = 40) { return "item-" + std::to_string(i) + std::string(pad, 'x'); }

// ---- SyncPolicy::always: each send is answered about its own item ----------------------

// Every item goes to disk on its own page, written and synced before send returns.
Options always_options(std::shared_ptr<FileSystem> fs) {
  Options o = sim_options(std::move(fs));
  o.sync = SyncPolicy::always;
  o.page_bytes = 1;
  return o;
}

// The first page append of a segment file (not its header) is held at `gate` and then
// answered by `answer`; every later call goes through.
HookFileSystem::Hook hold_first_page_append(Gate& gate, std::function<Status(const fs::path&)> answer) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  return [&gate, answer = std::move(answer), done](SimOp op, const fs::path& p, std::size_t bytes) {
    if (op != SimOp::append || !is_segment(p) || bytes <= format::kSegmentHeaderSize || done->exchange(true))
      return Status();
    gate.hold();
    return answer(p);
  };
}

// Shape 1. Sender A's page write is slow, then fails with ENOSPC; meanwhile sender B's item
// is accepted, and its page is written and synced after A's failed. A used to wait for the
// durability of "the last number handed out" — B's — and was told ok: after a reopen only
// B's item existed.
TEST(DiskFaultRegression, AlwaysASendIsAnsweredAboutItsOwnItemNotTheLastOneNumbered) {
  auto sim = SimFileSystem::create();
  auto hook = std::make_shared<HookFileSystem>(sim);
  Gate gate;
  hook->set_hook(hold_first_page_append(gate, [](const fs::path& p) { return Status::FromErrno("write", p.native(), ENOSPC); }));
  const Options o = always_options(hook);
  {
    auto ch = open_or_die<std::string>(o);
    Sender<std::string> b = ch.sender;
    auto a_sent = std::async(std::launch::async, [&] { return ch.sender.send("a"); });
    ASSERT_TRUE(gate.wait_entered());
    auto b_sent = std::async(std::launch::async, [&] { return b.send("b"); });
    ASSERT_TRUE(eventually([&] { return ch.receiver.stats().items_sent == 2; })) << "B's item was never accepted";
    gate.release();
    const Status a = a_sent.get();
    const Status bs = b_sent.get();
    EXPECT_EQ(a.code(), Errc::io_error) << "A's page was never written, yet A was told " << a.message();
    EXPECT_TRUE(bs.ok()) << bs.message();
    EXPECT_EQ(ch.receiver.stats().write_errors, 1u);
  }
  EXPECT_EQ(reopen_and_drain(o), std::vector<std::string>{"b"});
}

// Shape 2. The other way round: A's page is written (slowly), B's fails. A used to be told
// B's io_error (a retry would duplicate A's item) and B waited forever.
TEST(DiskFaultRegression, AlwaysASenderIsNotToldAnotherSendersFailureAndNoneWaitsForever) {
  auto sim = SimFileSystem::create();
  auto hook = std::make_shared<HookFileSystem>(sim);
  Gate gate;
  auto pages = std::make_shared<std::atomic<int>>(0);
  hook->set_hook([&gate, pages](SimOp op, const fs::path& p, std::size_t bytes) {
    if (op != SimOp::append || !is_segment(p) || bytes <= format::kSegmentHeaderSize) return Status();
    const int n = ++*pages;
    if (n == 1) gate.hold();                                                      // A's: slow, then written
    if (n == 2) return Status::FromErrno("write", p.native(), ENOSPC);  // B's: refused
    return Status();
  });
  const Options o = always_options(hook);
  {
    auto ch = open_or_die<std::string>(o);
    Sender<std::string> b = ch.sender;
    auto a_sent = std::async(std::launch::async, [&] { return ch.sender.send("a"); });
    ASSERT_TRUE(gate.wait_entered());
    auto b_sent = std::async(std::launch::async, [&] { return b.send("b"); });
    ASSERT_TRUE(eventually([&] { return ch.receiver.stats().items_sent == 2; }));
    gate.release();
    EXPECT_TRUE(a_sent.get().ok()) << "A's item was stored";
    ASSERT_EQ(b_sent.wait_for(10s), std::future_status::ready) << "B waits forever for its failed page";
    EXPECT_EQ(b_sent.get().code(), Errc::io_error);
  }
  EXPECT_EQ(reopen_and_drain(o), std::vector<std::string>{"a"});
}

// Shape 3. In one group commit A's page goes into segment 1, then B's page makes the writer
// rotate, and the fdatasync that closes segment 1 fails. A later successful sync (of the
// new segment) used to acknowledge A as well: after a power loss A's item was gone.
TEST(DiskFaultRegression, AlwaysAFailedSyncAtRotationIsNotAcknowledgedByALaterOne) {
  auto sim = SimFileSystem::create();
  auto hook = std::make_shared<HookFileSystem>(sim);
  Gate gate;
  hook->set_hook(hold_first_page_append(gate, [](const fs::path&) { return Status(); }));
  Options o = always_options(hook);
  o.segment_bytes = 170;  // one page of a one-letter item, not two
  o.max_disk_bytes = 1 << 20;
  Status a, b;
  {
    auto ch = open_or_die<std::string>(o);
    Sender<std::string> second = ch.sender;
    auto a_sent = std::async(std::launch::async, [&] { return ch.sender.send("a"); });
    ASSERT_TRUE(gate.wait_entered());
    auto b_sent = std::async(std::launch::async, [&] { return second.send("b"); });
    ASSERT_TRUE(eventually([&] { return ch.receiver.stats().items_sent == 2; }));
    sim->arm(SimFault{SimOp::sync, 1, 1, EIO, false, format::segment_file_name(1)});
    gate.release();
    a = a_sent.get();
    b = b_sent.get();
    EXPECT_EQ(ch.receiver.stats().sync_errors, 1u);
    sim->power_cut_now();
  }
  sim->reboot(Unsynced::dropped);
  const std::vector<std::string> back = reopen_and_drain(o);
  EXPECT_EQ(a.code(), Errc::io_error) << "A's page was in the segment whose sync failed; A was told " << a.message();
  EXPECT_TRUE(b.ok()) << b.message();
  EXPECT_TRUE(std::find(back.begin(), back.end(), "b") != back.end()) << "an acknowledged item was lost";
  for (const auto& s : back) EXPECT_TRUE(s == "a" || s == "b") << s;
}

// ---- SyncPolicy::none: a write fault is retried by later operations ------------------

// Shape 4. One ENOSPC used to turn every later spilling send into io_error until someone
// called flush(): nothing retried the page kept in RAM. Now later sends retry it (after a
// short back-off) and, with the receiver busy elsewhere, all 2,000 sends succeed.
TEST(DiskFaultRegression, AWriteFaultIsRetriedByLaterSendsWithoutFlush) {
  auto sim = SimFileSystem::create();
  const Options o = sim_options(sim);
  auto ch = open_or_die<std::string>(o);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ch.sender.send(item(i)).ok());  // memory full, spilling
  sim->arm(SimFault{SimOp::append, 1, 1, ENOSPC, true, ".seg"});
  std::vector<std::string> sent;
  for (int i = 20; i < 20 + 2000; ++i) {
    Status s = ch.sender.send(item(i));
    ASSERT_TRUE(s.ok()) << "send " << i << " after the disk came back: " << s.message();
    sent.push_back(item(i));
  }
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.write_errors, 1u);
  EXPECT_GT(st.pages_written, 10u) << "the kept page was never written again";
  ch.sender.close();
  std::vector<std::string> back;
  std::string v;
  while (ch.receiver.recv_for(v, 10s).ok()) back.push_back(v);
  ASSERT_EQ(back.size(), 2020u);
  EXPECT_TRUE(std::equal(sent.begin(), sent.end(), back.begin() + 20));
}

// While the disk refuses every write, sends go on into RAM pages while there is room for
// them; then the full policy applies (fail: Errc::full, naming the disk's error). Once the
// disk is back a later send writes what waited, without flush(), and nothing is lost.
TEST(DiskFault, WhileTheDiskRefusesTheFullPolicyAppliesThenSendsResumeByThemselves) {
  auto sim = SimFileSystem::create();
  Options o = sim_options(sim);
  o.when_full = FullPolicy::fail;
  auto ch = open_or_die<std::string>(o);
  sim->arm(SimFault{SimOp::append, 1, UINT64_MAX, EIO, false, ".seg"});
  std::vector<std::string> sent;
  Status s;
  int i = 0;
  for (; i < 10000; ++i) {
    s = ch.sender.send(item(i));
    if (!s.ok()) break;
    sent.push_back(item(i));
  }
  ASSERT_EQ(s.code(), Errc::full) << s.message();
  EXPECT_NE(s.message().find("refuses"), std::string::npos) << s.message();
  EXPECT_GT(sent.size(), 30u) << "sends should go on into RAM pages for a while";
  EXPECT_GE(ch.receiver.stats().write_errors, 1u);
  sim->clear_faults();
  ASSERT_TRUE(eventually([&] {
    if (!ch.sender.send(item(i)).ok()) return false;
    sent.push_back(item(i++));
    return true;
  })) << "sends never resumed once the disk was back";
  ch.sender.close();
  std::vector<std::string> back;
  std::string v;
  while (ch.receiver.recv_for(v, 10s).ok()) back.push_back(v);
  EXPECT_EQ(back, sent);
}

// A blocked sender retries by itself: nobody else calls anything, the disk comes back, and
// the send that was waiting completes.
TEST(DiskFault, ABlockedSenderRetriesTheDiskByItself) {
  auto sim = SimFileSystem::create();
  Options o = sim_options(sim);
  o.when_full = FullPolicy::block;
  auto ch = open_or_die<std::string>(o);
  sim->arm(SimFault{SimOp::append, 1, UINT64_MAX, EIO, false, ".seg"});
  int i = 0;
  while (ch.sender.try_send(item(i)).ok()) ++i;
  auto blocked = std::async(std::launch::async, [&] { return ch.sender.send(item(i)); });
  EXPECT_EQ(blocked.wait_for(50ms), std::future_status::timeout) << "send did not wait for room";
  sim->clear_faults();
  ASSERT_EQ(blocked.wait_for(10s), std::future_status::ready) << "the blocked send never retried the disk";
  EXPECT_TRUE(blocked.get().ok());
}

// drop_oldest while the disk refuses and no segment is left to drop: the oldest page
// waiting in RAM goes, counted; sends never fail or block.
TEST(DiskFault, DropOldestDropsRamPagesTheDiskRefusesAndCountsThem) {
  auto sim = SimFileSystem::create();
  Options o = sim_options(sim);
  o.when_full = FullPolicy::drop_oldest;
  auto ch = open_or_die<std::string>(o);
  sim->arm(SimFault{SimOp::append, 1, UINT64_MAX, EIO, false, ".seg"});
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(ch.sender.send(item(i)).ok()) << i;
  const Stats st = ch.receiver.stats();
  EXPECT_GT(st.items_dropped, 0u);
  ch.sender.close();
  std::vector<std::string> back;
  std::string v;
  while (ch.receiver.recv_for(v, 10s).ok()) back.push_back(v);
  EXPECT_EQ(back.size() + ch.receiver.stats().items_dropped, 3000u);
  EXPECT_EQ(back.back(), item(2999)) << "the newest items stay";
}

// ---- missing and unreadable segments ---------------------------------------------------

// Fills several segments, flushed, with items 0..n-1; returns n.
int fill_segments(Sender<std::string>& s, const std::shared_ptr<SimFileSystem>& sim, std::size_t segments) {
  int i = 0;
  while (sim->files(kDir).size() < segments + 1 || i < 60) {  // + LOCK
    EXPECT_TRUE(s.send(item(i)).ok());
    ++i;
  }
  EXPECT_TRUE(s.flush().ok());
  return i;
}

// The items of segment `n` (by its page headers).
std::vector<std::string> items_in_segment(const std::shared_ptr<SimFileSystem>& sim, std::uint64_t n,
                                          const std::vector<std::string>& sent) {
  std::vector<std::string> out;
  auto bytes = sim->live_contents(seg(n));
  if (!bytes) return out;
  for (const auto& p : pages_in(*bytes))
    for (std::uint32_t k = 0; k < p.count; ++k) out.push_back(sent[p.first_seq + k]);
  return out;
}

// Shape 5a. A segment deleted while the queue runs: the receiver used to get io_error on
// every call, never reaching later segments or memory. Now its pages are skipped, counted
// and reported, and everything else is delivered in order.
TEST(DiskFaultRegression, ASegmentDeletedWhileRunningIsSkippedCountedAndReported) {
  auto sim = SimFileSystem::create();
  const Options o = sim_options(sim);
  auto ch = open_or_die<std::string>(o);
  const int n = fill_segments(ch.sender, sim, 3);
  std::vector<std::string> sent;
  for (int i = 0; i < n; ++i) sent.push_back(item(i));
  const std::vector<std::string> lost = items_in_segment(sim, 2, sent);
  ASSERT_FALSE(lost.empty());
  ASSERT_TRUE(sim->vanish(seg(2)));
  ch.sender.close();
  std::vector<std::string> back;
  std::string v;
  Status s;
  while ((s = ch.receiver.recv_for(v, 10s)).ok()) back.push_back(v);
  EXPECT_EQ(s.code(), Errc::closed) << s.message();
  std::vector<std::string> expected;
  for (const auto& x : sent)
    if (std::find(lost.begin(), lost.end(), x) == lost.end()) expected.push_back(x);
  EXPECT_EQ(back, expected);
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_unreadable, lost.size());
  EXPECT_GE(st.pages_unreadable, 1u);
  EXPECT_EQ(st.disk_bytes, 0u) << "the lost segment's bytes stay in the budget";
  const auto report = ch.receiver.damage_report();
  EXPECT_TRUE(std::any_of(report.begin(), report.end(),
                          [](const std::string& l) { return l.find(format::segment_file_name(2)) != std::string::npos; }))
      << "the damage report does not name the lost segment";
}

// Shape 5b. A segment whose reads fail (EIO) for good: skipped after a few attempts while
// running (the receiver used to get io_error on every call); and reopening a directory
// whose segment cannot be read succeeds (it used to fail outright), reporting the file,
// which is left in place, and delivering the rest.
TEST(DiskFaultRegression, AnUnreadableSegmentIsSkippedWhileRunning) {
  auto sim = SimFileSystem::create();
  const Options o = sim_options(sim);
  auto ch = open_or_die<std::string>(o);
  const int n = fill_segments(ch.sender, sim, 3);
  std::vector<std::string> sent;
  for (int i = 0; i < n; ++i) sent.push_back(item(i));
  const std::vector<std::string> lost = items_in_segment(sim, 2, sent);
  sim->arm(SimFault{SimOp::read, 1, UINT64_MAX, EIO, false, format::segment_file_name(2)});
  ch.sender.close();
  std::vector<std::string> back;
  std::string v;
  Status s;
  while ((s = ch.receiver.recv_for(v, 10s)).ok()) back.push_back(v);
  EXPECT_EQ(s.code(), Errc::closed) << s.message();
  EXPECT_EQ(back.size() + lost.size(), sent.size());
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_unreadable, lost.size());
  EXPECT_GE(st.read_errors, 3u);
}

TEST(DiskFaultRegression, ADirectoryWithAnUnreadableSegmentStillOpens) {
  auto sim = SimFileSystem::create();
  const Options o = sim_options(sim);
  std::vector<std::string> sent, lost;
  {
    auto ch = open_or_die<std::string>(o);
    const int n = fill_segments(ch.sender, sim, 3);
    for (int i = 0; i < n; ++i) sent.push_back(item(i));
    lost = items_in_segment(sim, 2, sent);
  }
  sim->arm(SimFault{SimOp::read, 1, UINT64_MAX, EIO, false, format::segment_file_name(2)});
  auto again = channel<std::string>(o);
  ASSERT_TRUE(again.ok()) << again.status().message();
  const auto report = again->receiver.damage_report();
  EXPECT_TRUE(std::any_of(report.begin(), report.end(),
                          [](const std::string& l) { return l.find("unreadable") != std::string::npos; }));
  again->sender.close();
  std::vector<std::string> back;
  std::string v;
  while (again->receiver.recv_for(v, 10s).ok()) back.push_back(v);
  std::vector<std::string> expected;
  for (const auto& x : sent)
    if (std::find(lost.begin(), lost.end(), x) == lost.end()) expected.push_back(x);
  EXPECT_EQ(back, expected);
  EXPECT_EQ(again->receiver.stats().items_missing, lost.size());
  EXPECT_TRUE(sim->live_contents(seg(2)).has_value()) << "an unreadable segment must be left in place";
}

// A read that fails once is retried: nothing is lost to a transient fault.
TEST(DiskFault, ATransientReadFaultLosesNothing) {
  auto sim = SimFileSystem::create();
  const Options o = sim_options(sim);
  auto ch = open_or_die<std::string>(o);
  const int n = fill_segments(ch.sender, sim, 2);
  // Two failures in a row on the first page read (an open, then a read): the third
  // attempt succeeds.
  sim->arm(SimFault{SimOp::read, 1, 1, EIO, false, ".seg"});
  sim->arm(SimFault{SimOp::open, 1, 1, ENOENT, false, ".seg"});
  ch.sender.close();
  std::vector<std::string> back;
  std::string v;
  while (ch.receiver.recv_for(v, 10s).ok()) back.push_back(v);
  ASSERT_EQ(back.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) EXPECT_EQ(back[i], item(i));
  EXPECT_EQ(ch.receiver.stats().items_unreadable, 0u);
  EXPECT_EQ(ch.receiver.stats().read_errors, 2u);
}

// Shape 6. A 1 TiB sparse file named like a segment used to make channel() throw
// std::bad_alloc (recovery sized a buffer by the file). Recovery's memory is bounded
// whatever the files' sizes, a damaged region is searched only so far, and what was not
// scanned is reported and left alone.
TEST(DiskFaultRegression, AHugeSparseFileNamedLikeASegmentDoesNotBreakTheOpen) {
  TempDir dir;
  const fs::path p = dir.path() / format::segment_file_name(1);
  write_file(p, segment_header_image(1));
  fs::resize_file(p, 1ull << 40);
  Options o;
  o.directory = dir.path();
  o.max_memory_bytes = 1 << 20;
  o.max_disk_bytes = 4 << 20;
  o.segment_bytes = 1 << 20;
  Result<Channel<std::string>> ch = Status(Errc::invalid_argument, "not opened");
  ASSERT_NO_THROW(ch = channel<std::string>(o));
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  const auto report = ch->receiver.damage_report();
  EXPECT_TRUE(std::any_of(report.begin(), report.end(),
                          [](const std::string& l) { return l.find("not scanned") != std::string::npos; }));
  EXPECT_EQ(fs::file_size(p), 1ull << 40) << "bytes recovery did not look at were cut";
  // The queue works, and its new segments are numbered past the file left in place.
  ASSERT_TRUE(ch->sender.send("x").ok());
  ASSERT_TRUE(ch->sender.flush().ok());
  std::string v;
  ASSERT_TRUE(ch->receiver.try_recv(v).ok());
  EXPECT_EQ(v, "x");
}

// ---- unlinks -------------------------------------------------------------------------

// Shape 7. A failed unlink used to forget the segment (erased from the map first) while its
// bytes stayed counted: the budget shrank for good. Now the segment stays counted and its
// unlink is retried by later operations; an unlink answered ENOENT is a removal.
TEST(DiskFaultRegression, AFailedUnlinkIsRetriedAndTheBudgetComesBack) {
  auto sim = SimFileSystem::create();
  Options o = sim_options(sim);
  o.when_full = FullPolicy::fail;
  auto ch = open_or_die<std::string>(o);
  sim->arm(SimFault{SimOp::remove, 1, 1, EIO, false, format::segment_file_name(1)});
  int i = 0;
  for (int round = 0; round < 5; ++round) {
    fill_segments(ch.sender, sim, 3);
    std::string v;
    while (ch.receiver.try_recv(v).ok()) {
    }
    const Stats st = ch.receiver.stats();
    std::uint64_t on_disk = 0, files = 0;
    for (const auto& [name, size] : sim->files(kDir))
      if (format::parse_segment_file_name(name)) on_disk += size, ++files;
    EXPECT_EQ(st.disk_bytes, on_disk) << "round " << round;
    EXPECT_EQ(st.segments, files) << "round " << round;
    i += 1;
  }
  EXPECT_EQ(ch.receiver.stats().remove_errors, 1u);
  // Retried by later operations, with no manual call: the file goes.
  ASSERT_TRUE(eventually([&] {
    (void)ch.sender.send(item(i));
    std::string v;
    while (ch.receiver.try_recv(v).ok()) {
    }
    return !sim->live_contents(seg(1)).has_value();
  })) << "the segment whose unlink failed was never removed";
  EXPECT_EQ(ch.receiver.stats().disk_bytes, 0u);
}

TEST(DiskFault, AnUnlinkAnsweredNotFoundIsARemoval) {
  auto sim = SimFileSystem::create();
  auto hook = std::make_shared<HookFileSystem>(sim);
  hook->set_hook([sim](SimOp op, const fs::path& p, std::size_t) {
    if (op == SimOp::remove && is_segment(p)) {
      sim->vanish(p);  // somebody else got there first
      return Status::FromErrno("unlink", p.native(), ENOENT);
    }
    return Status();
  });
  auto ch = open_or_die<std::string>(sim_options(hook));
  fill_segments(ch.sender, sim, 2);
  std::string v;
  while (ch.receiver.try_recv(v).ok()) {
  }
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.remove_errors, 0u);
  EXPECT_EQ(st.disk_bytes, 0u);
  EXPECT_EQ(st.segments, 0u);
}

// drop_oldest whose unlinks fail: the sender that took the writer token to drop the active
// segment gives it back and wakes those waiting for it; nobody hangs, and every item is
// received or counted dropped.
TEST(DiskFaultRegression, DropOldestWithFailingUnlinksNeverWedgesSenders) {
  auto sim = SimFileSystem::create();
  Options o = sim_options(sim);
  o.when_full = FullPolicy::drop_oldest;
  o.max_disk_bytes = 3 * o.segment_bytes;
  auto ch = open_or_die<std::string>(o);
  // Eight in a row: the retries back off 1, 2, ... 128 ms while the disk stays full of
  // files that would not go (senders wait for them: nothing else can make room).
  sim->arm(SimFault{SimOp::remove, 1, 8, EIO, false, ".seg"});
  Watchdog dog(60s, "DropOldestWithFailingUnlinksNeverWedgesSenders");
  std::vector<std::thread> senders;
  for (int t = 0; t < 3; ++t) {
    senders.emplace_back([s = ch.sender, t]() mutable {
      for (int i = 0; i < 1500; ++i) ASSERT_TRUE(s.send(item(t * 100000 + i, 80)).ok());
    });
  }
  for (auto& t : senders) t.join();
  ch.sender.close();
  std::uint64_t got = 0;
  std::string v;
  Status end;
  while ((end = ch.receiver.recv_for(v, 10s)).ok()) ++got;
  EXPECT_EQ(end.code(), Errc::closed) << end.message();
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(got + st.items_dropped, 4500u);
  EXPECT_GT(st.remove_errors, 0u);
}

// ---- waits and sizes -----------------------------------------------------------------

// Shape 8. An item too large for a segment but within the memory budget used to get
// too_large as soon as memory was full; it can be stored (in memory), so it waits for room
// there (block) or gets full (try_send). Only an item that fits nowhere is too_large.
TEST(DiskFaultRegression, AnItemTooLargeForASegmentWaitsForMemoryInsteadOfTooLarge) {
  TempDir dir;
  Options o;
  o.directory = dir.path();
  o.max_memory_bytes = 1 << 20;
  o.segment_bytes = 64 << 10;
  o.page_bytes = 16 << 10;
  o.max_disk_bytes = 1 << 20;
  o.when_full = FullPolicy::block;
  auto ch = open_or_die<std::string>(o);
  const std::string big(100 << 10, 'b');
  int sent = 0;
  while (footprint(big) * (sent + 1) <= o.max_memory_bytes) {
    ASSERT_TRUE(ch.sender.send(std::string(big)).ok());
    ++sent;
  }
  EXPECT_EQ(ch.sender.try_send(std::string(big)).code(), Errc::full);
  auto waiting = std::async(std::launch::async, [&] { return ch.sender.send(std::string(big)); });
  EXPECT_EQ(waiting.wait_for(50ms), std::future_status::timeout) << "it should wait for room in memory";
  std::string v;
  ASSERT_TRUE(ch.receiver.recv(v).ok());
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(waiting.get().ok());
  // Too large for a segment and for the memory budget: too_large at once.
  EXPECT_EQ(ch.sender.try_send(std::string(2 << 20, 'c')).code(), Errc::too_large);
}

// Shape 9. try_recv() and recv_for(10ms) used to wait, without any deadline, for another
// thread's page write (with manual_commit a page must reach its file before it is read).
TEST(DiskFaultRegression, TryRecvAndRecvForDoNotWaitForAnotherThreadsSlowPageWrite) {
  auto sim = SimFileSystem::create();
  auto hook = std::make_shared<HookFileSystem>(sim);
  Gate gate;
  hook->set_hook(hold_first_page_append(gate, [](const fs::path&) { return Status(); }));
  Options o = sim_options(hook);
  o.manual_commit = true;
  o.max_memory_bytes = 1;  // every item spills
  o.page_bytes = 1;
  auto ch = open_or_die<std::string>(o);
  auto sent = std::async(std::launch::async, [&] { return ch.sender.send("a"); });
  ASSERT_TRUE(gate.wait_entered());
  std::string v;
  auto tried = std::async(std::launch::async, [&] { return ch.receiver.try_recv(v); });
  if (tried.wait_for(10s) != std::future_status::ready) {
    gate.release();
    FAIL() << "try_recv waited for another thread's page write";
  }
  EXPECT_EQ(tried.get().code(), Errc::empty);
  auto timed = std::async(std::launch::async, [&] { return ch.receiver.recv_for(v, 10ms); });
  if (timed.wait_for(10s) != std::future_status::ready) {
    gate.release();
    FAIL() << "recv_for(10ms) waited past its deadline";
  }
  EXPECT_EQ(timed.get().code(), Errc::timeout);
  gate.release();
  ASSERT_TRUE(sent.get().ok());
  ASSERT_TRUE(ch.receiver.recv_for(v, 10s).ok());
  EXPECT_EQ(v, "a");
}

// A type whose encoding is as large as a test wants without the memory: it saves a view
// of any bytes (a read-only zero mapping here), and loads into a string of its own.
struct Blob {
  std::string_view view;
  std::string owned;
  std::uint64_t hopper_footprint() const noexcept { return 64; }
  template <class A>
  void save(A& ar) const {
    ar(cereal::make_size_tag(static_cast<cereal::size_type>(view.size())));
    ar(cereal::binary_data(view.data(), view.size()));
  }
  template <class A>
  void load(A& ar) {
    cereal::size_type n = 0;
    ar(cereal::make_size_tag(n));
    owned.resize(static_cast<std::size_t>(n));
    ar(cereal::binary_data(owned.data(), owned.size()));
  }
};

// Shape 10. An in-memory item whose encoding a page cannot hold used to be accepted and
// then dropped at clean shutdown (only items_missing told). Refused at send: too_large.
TEST(DiskFaultRegression, AnItemNoPageCanHoldIsRefusedAtSend) {
  const std::size_t n = (std::size_t{1} << 31) + 16;
  void* zeros = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(zeros, MAP_FAILED);
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_memory_bytes = 1 << 20;
  {
    auto ch = open_or_die<Blob>(o);
    Blob huge;
    huge.view = std::string_view(static_cast<const char*>(zeros), n);
    const Status s = ch.sender.send(std::move(huge));
    EXPECT_EQ(s.code(), Errc::too_large) << s.message();
    Blob small;
    small.view = "hello";
    ASSERT_TRUE(ch.sender.send(std::move(small)).ok());
  }
  ::munmap(zeros, n);
  auto ch = open_or_die<Blob>(o);
  Blob back;
  ASSERT_TRUE(ch.receiver.try_recv(back).ok());
  EXPECT_EQ(back.owned, "hello");
  EXPECT_EQ(ch.receiver.stats().items_missing, 0u);
}

// ---- positions ------------------------------------------------------------------------

// The advisory delivery position (written as the receiver finishes segments) used to
// replace CURSOR without an fdatasync: once a later directory fsync made that rename
// durable, a power loss left CURSOR empty — damaged — and a durable commit was undone
// (delivery restarted at the oldest page still on disk). It now lives in a file of its own.
// Here segment 1 stays on disk (its unlink fails), so the undone commit would show.
TEST(DiskFaultRegression, AnAdvisoryPositionNeverUndoesADurableCommit) {
  auto sim = SimFileSystem::create();
  Options o = always_options(sim);
  o.segment_bytes = 300;  // a few one-item pages each
  {
    auto ch = open_or_die<std::string>(o);
    int i = 0;
    while (sim->files(kDir).size() < 4) ASSERT_TRUE(ch.sender.send("i" + std::to_string(i++)).ok());  // 3 segments
    sim->arm(SimFault{SimOp::remove, 1, UINT64_MAX, EIO, false, format::segment_file_name(1)});
    std::string v;
    ASSERT_TRUE(ch.receiver.try_recv(v).ok());
    ASSERT_EQ(v, "i0");
    ASSERT_TRUE(ch.receiver.commit().ok());  // durable: i0 is done
    const auto first = pages_in(*sim->live_contents(seg(1)));
    std::uint64_t in_first = 0;
    for (const auto& p : first) in_first += p.count;
    for (std::uint64_t k = 1; k < in_first; ++k) ASSERT_TRUE(ch.receiver.try_recv(v).ok());  // segment 1 is read: advisory position
    ASSERT_TRUE(sim->live_contents(seg(1)).has_value()) << "the unlink was to fail";
    const std::size_t files = sim->files(kDir).size();
    while (sim->files(kDir).size() <= files) ASSERT_TRUE(ch.sender.send("i" + std::to_string(i++)).ok());  // a new segment: a directory fsync
    sim->power_cut_now();
  }
  sim->reboot(Unsynced::dropped);
  const std::vector<std::string> back = reopen_and_drain(o);
  EXPECT_TRUE(std::find(back.begin(), back.end(), "i0") == back.end()) << "a committed item came back";
}

// A commit whose directory fsync failed reported io_error and kept the position — but the
// new CURSOR it had renamed into place stayed there, and the next directory fsync that
// succeeded (a new segment's) made it durable: after a power loss the item received and
// not committed was gone (found by Model.RandomCommandSequencesWithDiskFaults). The
// previous CURSOR is now put back when the directory fsync fails.
TEST(DiskFaultRegression, AFailedCommitIsNotMadeDurableByALaterDirectorySync) {
  for (bool first_commit : {true, false}) {
    SCOPED_TRACE(first_commit ? "no CURSOR before the failed commit" : "a CURSOR before it");
    auto sim = SimFileSystem::create();
    Options o = always_options(sim);
    o.manual_commit = true;
    o.segment_bytes = 300;  // a few one-item pages each
    {
      auto ch = open_or_die<std::string>(o);
      std::string v;
      if (!first_commit) {  // a durable commit first: CURSOR exists
        ASSERT_TRUE(ch.sender.send("i0").ok());
        ASSERT_TRUE(ch.receiver.try_recv(v).ok());
        ASSERT_TRUE(ch.receiver.commit().ok());
      }
      ASSERT_TRUE(ch.sender.send("i1").ok());
      ASSERT_TRUE(ch.receiver.try_recv(v).ok());
      ASSERT_EQ(v, "i1");
      sim->arm(SimFault{SimOp::dir_sync, 1, 1, EIO, false, ""});
      ASSERT_EQ(ch.receiver.commit().code(), Errc::io_error);
      const std::size_t files = sim->files(kDir).size();
      int i = 2;
      while (sim->files(kDir).size() <= files) ASSERT_TRUE(ch.sender.send("i" + std::to_string(i++)).ok());  // a directory fsync that succeeds
      sim->power_cut_now();
    }
    sim->reboot(Unsynced::dropped);
    const std::vector<std::string> back = reopen_and_drain(o);
    ASSERT_FALSE(back.empty());
    EXPECT_EQ(back.front(), "i1") << "received, its commit failed: it comes back first";
    EXPECT_TRUE(std::find(back.begin(), back.end(), "i0") == back.end()) << "a committed item came back";
  }
}

// drop_oldest without spilling discards memory items ahead of the receiver; a shutdown
// before the receiver looked again used to write a cursor behind them, so the next open
// reported them missing (they were counted dropped).
TEST(DiskFaultRegression, ItemsDroppedInMemoryAreNotReportedMissingAfterAShutdown) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_disk_bytes = 0;
  o.when_full = FullPolicy::drop_oldest;
  o.max_memory_bytes = 4 * footprint(item(0));
  {
    auto ch = open_or_die<std::string>(o);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(ch.sender.send(item(i)).ok());
    EXPECT_EQ(ch.receiver.stats().items_dropped, 6u);
  }
  Stats st;
  const std::vector<std::string> back = reopen_and_drain(o, &st);
  EXPECT_EQ(back, (std::vector<std::string>{item(6), item(7), item(8), item(9)}));
  EXPECT_EQ(st.items_missing, 0u);
}

// The receiver's open descriptor used to keep a segment that drop_oldest removed: its
// blocks stayed allocated while the budget counted them free.
TEST(DiskFaultRegression, ASegmentDroppedUnderTheReceiverIsNotKeptOpen) {
  TempDir dir;
  Options o;
  o.directory = dir.path();
  o.max_memory_bytes = 1024;
  o.segment_bytes = 8 << 10;
  o.max_disk_bytes = 3 * o.segment_bytes;
  o.page_bytes = 512;
  o.when_full = FullPolicy::drop_oldest;
  auto ch = open_or_die<std::string>(o);
  int i = 0;
  while (segment_files(dir.path()).size() < 2) ASSERT_TRUE(ch.sender.send(item(i++, 200)).ok());
  ASSERT_TRUE(ch.sender.flush().ok());
  // Memory items come first; the next one is read from segment 1, whose descriptor the
  // receiver then keeps for the next page.
  std::string v;
  const std::uint64_t in_memory = ch.receiver.stats().memory_items;
  for (std::uint64_t k = 0; k <= in_memory; ++k) ASSERT_TRUE(ch.receiver.try_recv(v).ok());
  const fs::path first = segment_files(dir.path()).front();
  // drop_oldest removes segment 1 while the receiver holds it open.
  while (fs::exists(first)) ASSERT_TRUE(ch.sender.send(item(i++, 200)).ok());
  bool held = false;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const fs::path target = fs::read_symlink(e.path(), ec);
    if (!ec && target.native().find(first.filename().native()) != std::string::npos) held = true;
  }
  EXPECT_FALSE(held) << first << " was removed but is still open";
}

}  // namespace
}  // namespace hopper::test
