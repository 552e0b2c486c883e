// Write failures without a crash, through tests/support/fault_fs: a full disk, EIO and
// short writes lose nothing acknowledged, and the queue recovers once the disk is back.
// RC_PARAMS="max_success=1000" for a longer run.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "fault_fs.hpp"
#include "tagged.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

// ======================================================================================
// Write failures (full disk, EIO, short writes) without a crash
// ======================================================================================

enum class WriteOp { send, recv, flush, free_space, fail_writes, heal };
std::ostream& operator<<(std::ostream& os, WriteOp op) {
  static const char* const names[] = {"send", "recv", "flush", "free_space", "fail_writes", "heal"};
  return os << names[static_cast<int>(op)];
}

// Under either policy, while the disk refuses writes: sends answer ok, io_error or full
// (never anything else, never a hang); everything answered ok is received exactly once, in
// order, nothing else is; and once space returns, flush succeeds and sends work again.
RC_GTEST_PROP(WriteFaults, NothingAcknowledgedIsLostAndTheQueueRecovers, ()) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  Options o = fault_options(dir.path(), ffs);
  const bool always = *rc::gen::arbitrary<bool>();
  o.sync = always ? SyncPolicy::always : SyncPolicy::none;
  o.max_memory_bytes = 512;
  o.max_disk_bytes = *rc::gen::element<std::uint64_t>(8 << 10, 16 << 10, 64 << 10);
  o.segment_bytes = 4 << 10;
  // Compression helpers (Options::compression_threads; none run under always) write pages
  // on threads of their own: then a page may be in flight when the receiver asks, and it
  // waits for it (recv_for) rather than finding nothing (try_recv).
  o.compression_threads = always ? 0 : *rc::gen::element<std::uint32_t>(0, 0, 1, 2);
  const auto ops = *rc::gen::container<std::vector<WriteOp>>(
      *rc::gen::inRange<std::size_t>(1, 250),
      rc::gen::weightedElement<WriteOp>({{10, WriteOp::send}, {*rc::gen::inRange(0, 5), WriteOp::recv}, {1, WriteOp::flush},
                                         {1, WriteOp::free_space}, {1, WriteOp::fail_writes}, {1, WriteOp::heal}}));
  Watchdog dog(seconds(120), "WriteFaults property case");
  auto ch = open_channel<std::string>(o);
  RC_ASSERT(ch.has_value());
  std::deque<std::string> expected;  // acknowledged, not yet received
  std::uint32_t next = 0;
  std::uint64_t errors = 0, fulls = 0;
  std::string v;
  auto check_budgets = [&] {
    const Stats st = ch->receiver.stats();
    RC_ASSERT(st.memory_bytes <= o.max_memory_bytes);
    RC_ASSERT(st.disk_bytes <= o.max_disk_bytes);
  };
  auto recv_one = [&] {
    Status s = o.compression_threads == 0 || expected.empty() ? ch->receiver.try_recv(v)
                                                              : ch->receiver.recv_for(v, seconds(10));
    if (expected.empty()) {
      RC_ASSERT(s.code() == Errc::empty);
    } else {
      // An acknowledged item is never unavailable: it is on disk or still in RAM.
      RC_ASSERT(s.ok());
      RC_ASSERT(v == expected.front());
      expected.pop_front();
    }
  };
  for (WriteOp op : ops) {
    switch (op) {
      case WriteOp::send: {
        const std::string item = tagged(0, next++, *rc::gen::inRange<std::size_t>(0, 200));
        Status s = ch->sender.send(std::string(item));
        RC_LOG() << "send " << item.size() << " bytes: " << describe(s) << "\n";
        RC_ASSERT((s.ok() || s.code() == Errc::io_error || s.code() == Errc::full));
        if (s.ok()) expected.push_back(item);
        errors += s.code() == Errc::io_error;
        fulls += s.code() == Errc::full;
        break;
      }
      case WriteOp::recv: recv_one(); break;
      case WriteOp::flush: {
        Status s = ch->sender.flush();
        RC_LOG() << "flush: " << describe(s) << "\n";
        RC_ASSERT((s.ok() || s.code() == Errc::io_error));
        break;
      }
      case WriteOp::free_space: ffs->set_free_space(*rc::gen::inRange<std::uint64_t>(0, 6000)); break;
      case WriteOp::fail_writes:
        ffs->fail_writes(*rc::gen::inRange<std::uint64_t>(1, 4), *rc::gen::element(ENOSPC, EIO),
                         *rc::gen::arbitrary<bool>());
        break;
      case WriteOp::heal: ffs->heal(); break;
    }
    check_budgets();
  }
  RC_CLASSIFY(errors > 0, "io_error seen");
  RC_CLASSIFY(fulls > 0, "full seen");
  RC_CLASSIFY(ffs->counters().failed_writes > 0, "a write failed");
  RC_CLASSIFY(o.compression_threads > 0, "compression helpers");

  // Space returns: flush retries what was left; once the receiver has made room (the
  // budgets may be full), sends work again.
  ffs->heal();
  const Status flushed = ch->sender.flush();
  if (!flushed.ok()) RC_FAIL("flush after the disk healed: " + flushed.message());
  const std::size_t keep = *rc::gen::inRange<std::size_t>(0, 4);
  while (expected.size() > keep) recv_one();
  for (int k = 0; k < 20; ++k) {
    const std::string item = tagged(0, next++, 10);
    Status s = ch->sender.send(std::string(item));
    if (!s.ok()) RC_FAIL("send " + std::to_string(k) + " once the disk is back: " + s.message());
    expected.push_back(item);
  }
  // Part is received now, the rest after a clean restart: nothing lost, nothing twice.
  const std::size_t now = *rc::gen::inRange<std::size_t>(0, expected.size() + 1);
  for (std::size_t k = 0; k < now; ++k) recv_one();
  RC_LOG() << "policy " << (always ? "always" : "none") << ", " << o.compression_threads << " helpers; before the restart: " << expected.size()
           << " to come back\n";
  ch.reset();  // clean shutdown
  for (const std::string& e : dir_entries(dir.path()))
    RC_LOG() << "  " << e << " " << fs::file_size(dir.path() / e) << " bytes\n";
  auto again = open_channel<std::string>(o);
  RC_ASSERT(again.has_value());
  again->sender.close();
  std::vector<std::string> back;
  RC_ASSERT(receive_all(again->receiver, back).code() == Errc::closed);
  const Stats after = again->receiver.stats();
  RC_LOG() << "after the restart: recovered " << after.items_recovered << ", corrupt pages " << after.corrupt_pages
           << ", torn bytes " << after.torn_bytes << "\n";
  RC_ASSERT(back == std::vector<std::string>(expected.begin(), expected.end()));
}

// The smallest case of the property above: under SyncPolicy::none a page write fails, the
// page stays in RAM, the disk comes back, and flush() must retry it and say ok.
TEST(WriteFaults, FlushSucceedsOnceTheDiskIsBack) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  Options o = fault_options(dir.path(), ffs);
  o.max_memory_bytes = 256;
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch.has_value());
  std::vector<std::string> sent;
  for (std::uint32_t i = 0; i < 20; ++i) {
    sent.push_back(tagged(0, i, 40));
    ASSERT_TRUE(ch->sender.send(std::string(sent.back())).ok());
  }
  ASSERT_GT(ch->receiver.stats().items_spilled, 0u);
  ffs->fail_writes(1, EIO);
  EXPECT_EQ(ch->sender.flush().code(), Errc::io_error);
  ffs->heal();
  Status s = ch->sender.flush();
  EXPECT_TRUE(s.ok()) << "flush after the disk came back: " << s.message();
  EXPECT_GE(ffs->counters().appends, 1u) << "the kept page was never written";
  ch->sender.close();
  std::vector<std::string> back;
  EXPECT_EQ(receive_all(ch->receiver, back).code(), Errc::closed);
  EXPECT_EQ(back, sent);
}

// Found by the property above after the fix of the previous case: the page kept in RAM is
// taken by the receiver (read from RAM, never written), so no write succeeds before the
// flush; with nothing left to write, the failure is history and flush() must say ok.
TEST(WriteFaults, FlushSucceedsOnceTheDiskIsBackAfterTheKeptPageWasReceived) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  Options o = fault_options(dir.path(), ffs);
  o.max_memory_bytes = 256;
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch.has_value());
  std::vector<std::string> sent;
  for (std::uint32_t i = 0; i < 20; ++i) {
    sent.push_back(tagged(0, i, 40));
    ASSERT_TRUE(ch->sender.send(std::string(sent.back())).ok());
  }
  ASSERT_GT(ch->receiver.stats().items_spilled, 0u);
  ffs->fail_writes(1, EIO);
  EXPECT_EQ(ch->sender.flush().code(), Errc::io_error);
  EXPECT_EQ(drain(ch->receiver), sent) << "the kept page is read from RAM";
  ffs->heal();
  Status s = ch->sender.flush();
  EXPECT_TRUE(s.ok()) << "flush after the disk came back, nothing left to write: " << s.message();
}

// Found by the property above. The first page write into a freshly created segment fails
// (the disk has room for the segment header only); once the disk is back, pages go to that
// same file and the receiver reads them. From then on nothing acknowledged may vanish:
// later pages, and what a clean shutdown persists, must come back after a restart.
TEST(WriteFaults, AFailedFirstWriteIntoANewSegmentLosesNothingLater) {
  for (SyncPolicy policy : {SyncPolicy::none, SyncPolicy::always}) {
    SCOPED_TRACE(policy == SyncPolicy::none ? "SyncPolicy::none" : "SyncPolicy::always");
    TempDir dir;
    auto ffs = FaultFileSystem::create();
    Options o = fault_options(dir.path(), ffs);
    o.sync = policy;
    o.max_memory_bytes = 256;
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::vector<std::string> acked;
    std::uint32_t i = 0;
    auto send = [&]() -> Status {
      const std::string item = tagged(0, i++, 40);
      Status s = ch->sender.send(std::string(item));
      if (s.ok()) acked.push_back(item);
      return s;
    };
    ffs->set_free_space(format::kSegmentHeaderSize + 8);  // the header fits, no page does
    for (int k = 0; k < 20; ++k) (void)send();
    // none: the page waits in RAM and flush reports the failure; always: its senders were told.
    if (policy == SyncPolicy::none) {
      EXPECT_EQ(ch->sender.flush().code(), Errc::io_error);
    } else {
      EXPECT_LT(acked.size(), 20u);
    }
    ASSERT_GE(ffs->counters().failed_writes, 1u);
    ffs->heal();
    (void)ch->sender.flush();  // writes what was kept (FlushSucceedsOnceTheDiskIsBack checks its status)
    for (int k = 0; k < 5; ++k) ASSERT_TRUE(send().ok());
    ASSERT_TRUE(ch->sender.flush().ok());
    const std::vector<std::string> back = drain(ch->receiver);
    ASSERT_EQ(back, acked) << "what was acknowledged before the fault was healed";
    EXPECT_EQ(ch->receiver.stats().disk_bytes, segment_bytes_on_disk(dir.path()))
        << "Stats::disk_bytes disagrees with the segment files present";
    // Spill again: these pages go to the writer's current segment file.
    for (int k = 0; k < 30; ++k) ASSERT_TRUE(send().ok());
    ASSERT_TRUE(ch->sender.flush().ok());
    EXPECT_FALSE(segment_files(dir.path()).empty()) << "pages were written, yet no segment file is present";
    ch.reset();  // clean shutdown
    auto again = open_channel<std::string>(o);
    ASSERT_TRUE(again.has_value());
    again->sender.close();
    std::vector<std::string> rest;
    EXPECT_EQ(receive_all(again->receiver, rest).code(), Errc::closed);
    EXPECT_EQ(rest.size(), 30u) << "items acknowledged after the fault were lost across a clean restart";
    EXPECT_EQ(rest, std::vector<std::string>(acked.begin() + static_cast<std::ptrdiff_t>(back.size()), acked.end()));
  }
}

}  // namespace
}  // namespace hopper::test
