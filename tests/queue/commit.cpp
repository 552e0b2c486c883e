// Receiver::commit with manual_commit, and Receiver::position with commit(position): what a
// clean restart, a failed commit and a power cut bring back (tests/support/fault_fs).
// Properties: RC_PARAMS="max_success=1000" for a longer run.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "fault_fs.hpp"
#include "storage/format.hpp"
#include "tagged.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

// ======================================================================================
// Receiver::commit and manual_commit
// ======================================================================================

Options commit_options(const fs::path& dir, std::shared_ptr<FaultFileSystem> ffs) {
  Options o = fault_options(dir, std::move(ffs));
  o.manual_commit = true;
  o.max_memory_bytes = 256;
  o.segment_bytes = 2 << 10;
  o.page_bytes = 256;
  return o;
}

// Sends tagged(0, 0..n-1) and closes cleanly.
void fill(const Options& o, std::uint32_t n) {
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch.has_value());
  for (std::uint32_t i = 0; i < n; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i, i % 30)).ok()) << i;
}

// Receives the rest after a reopen; returns the index of the first item (n if none) and
// checks the rest follow in order up to n - 1.
std::uint32_t resume_point(const Options& o, std::uint32_t n, std::string* error) {
  auto ch = open_channel<std::string>(o);
  if (!ch) {
    *error = "reopen failed";
    return 0;
  }
  ch->sender.close();
  std::vector<std::string> back;
  Status end = receive_all(ch->receiver, back);
  if (end.code() != Errc::closed) *error = "receiving after the reopen: " + end.message();
  const std::uint32_t first = back.empty() ? n : (parse_tag(back.front()) ? parse_tag(back.front())->index : ~0u);
  for (std::uint32_t k = 0; k < back.size(); ++k) {
    if (back[k] != tagged(0, first + k, (first + k) % 30)) {
      *error = "after resuming at " + std::to_string(first) + ", item " + std::to_string(k) + " is \"" + back[k] + "\"";
      break;
    }
  }
  if (error->empty() && first + back.size() != n)
    *error = "resumed at " + std::to_string(first) + " but got " + std::to_string(back.size()) + " of " +
             std::to_string(n);
  return first;
}

TEST(Commit, ManualCommitResumesAfterTheLastCommitOnACleanRestart) {
  TempDir dir;
  const Options o = commit_options(dir.path(), FaultFileSystem::create());
  fill(o, 100);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::string v;
    for (int k = 0; k < 40; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
    ASSERT_TRUE(ch->receiver.commit().ok());
    for (int k = 0; k < 25; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());  // received, not committed
    EXPECT_EQ(ch->receiver.stats().commits, 1u);
  }
  std::string error;
  EXPECT_EQ(resume_point(o, 100, &error), 40u) << "received-but-uncommitted items must come back";
  EXPECT_EQ(error, "");
}

TEST(Commit, WithoutManualCommitACleanShutdownNeverRedelivers) {
  TempDir dir;
  Options o = commit_options(dir.path(), FaultFileSystem::create());
  o.manual_commit = false;
  fill(o, 100);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::string v;
    for (int k = 0; k < 65; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
  }
  std::string error;
  EXPECT_EQ(resume_point(o, 100, &error), 65u);
  EXPECT_EQ(error, "");
}

// A clean shutdown under SyncPolicy::none syncs what it wrote: a power loss right after it
// loses nothing, and the committed position holds.
TEST(Commit, ACleanShutdownIsDurable) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  const Options o = commit_options(dir.path(), ffs);
  fill(o, 150);
  ffs->crash();
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::string v;
    for (int k = 0; k < 70; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
    ASSERT_TRUE(ch->receiver.commit().ok());
    for (int k = 0; k < 10; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
  }
  ffs->crash();
  std::string error;
  EXPECT_EQ(resume_point(o, 150, &error), 70u);
  EXPECT_EQ(error, "");
}

TEST(Commit, SegmentsStayUntilCommitted) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  const Options o = commit_options(dir.path(), ffs);
  fill(o, 1000);
  const std::size_t before = segment_files(dir.path()).size();
  ASSERT_GE(before, 3u) << "the backlog should span several segments";
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    const std::vector<std::string> all = drain(ch->receiver);
    ASSERT_EQ(all.size(), 1000u);
    EXPECT_EQ(segment_files(dir.path()).size(), before) << "a segment was deleted before its items were committed";
    ffs->freeze();  // power loss before any commit
  }
  ffs->crash();
  std::string error;
  EXPECT_EQ(resume_point(o, 1000, &error), 0u);
  EXPECT_EQ(error, "");
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    ASSERT_EQ(drain(ch->receiver).size(), 1000u);
    ASSERT_TRUE(ch->receiver.commit().ok());
    EXPECT_LE(segment_files(dir.path()).size(), 1u) << "committed segments are not needed any more";
  }
}

TEST(Commit, AFailedCommitReportsAnErrorAndKeepsThePosition) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  const Options o = commit_options(dir.path(), ffs);
  fill(o, 60);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::string v;
    for (int k = 0; k < 10; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
    ASSERT_TRUE(ch->receiver.commit().ok());
    for (int k = 0; k < 10; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
    ffs->fail_syncs(1);
    Status s = ch->receiver.commit();
    EXPECT_EQ(s.code(), Errc::io_error) << "the CURSOR's fdatasync failed, yet: " << describe(s);
    ffs->fail_dir_syncs(1);
    s = ch->receiver.commit();
    EXPECT_EQ(s.code(), Errc::io_error) << "the directory fsync after the rename failed, yet: " << describe(s);
    ffs->fail_writes(1, ENOSPC);
    s = ch->receiver.commit();
    EXPECT_EQ(s.code(), Errc::io_error) << "the CURSOR could not be written, yet: " << describe(s);
    ffs->freeze();
  }
  ffs->crash();
  std::string error;
  EXPECT_EQ(resume_point(o, 60, &error), 10u);
  EXPECT_EQ(error, "");
}

TEST(Commit, CommitWorksAgainOnceTheDiskIsBack) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  const Options o = commit_options(dir.path(), ffs);
  fill(o, 60);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::string v;
    for (int k = 0; k < 10; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
    ffs->fail_writes(1, ENOSPC);
    EXPECT_EQ(ch->receiver.commit().code(), Errc::io_error);
    ffs->heal();
    for (int k = 0; k < 5; ++k) ASSERT_TRUE(ch->receiver.try_recv(v).ok());
    Status s = ch->receiver.commit();
    EXPECT_TRUE(s.ok()) << s.message();
    ffs->freeze();
  }
  ffs->crash();
  std::string error;
  EXPECT_EQ(resume_point(o, 60, &error), 15u);
  EXPECT_EQ(error, "");
}

// ======================================================================================
// Receiver::position and Receiver::commit(position)
// ======================================================================================

// Receives until `out` holds `n` items (recv_many hands out what is ready: a page's rest).
void receive_n(Receiver<std::string>& r, std::vector<std::string>& out, std::size_t n) {
  while (out.size() < n) {
    Status s = r.recv_many_for(out, n - out.size(), seconds(10));
    ASSERT_TRUE(s.ok()) << "after " << out.size() << " items: " << s.message();
  }
}

std::uint64_t sum(const std::vector<std::uint64_t>& v, std::size_t from, std::size_t to) {
  std::uint64_t total = 0;
  for (std::size_t i = from; i < to; ++i) total += v[i];
  return total;
}

TEST(CommitAt, PositionGrowsWithEveryKindOfReceive) {
  for (bool manual : {true, false}) {
    SCOPED_TRACE(manual ? "manual_commit" : "without manual_commit");
    TempDir dir;
    Options o = commit_options(dir.path(), FaultFileSystem::create());
    o.manual_commit = manual;
    fill(o, 100);  // numbered 0..99, on disk
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    Receiver<std::string>& r = ch->receiver;
    EXPECT_EQ(r.position(), 0u);
    std::string v;
    ASSERT_TRUE(r.try_recv(v).ok());
    EXPECT_EQ(r.position(), 1u);
    ASSERT_TRUE(r.recv(v).ok());
    EXPECT_EQ(r.position(), 2u);
    ASSERT_TRUE(r.recv_for(v, seconds(10)).ok());
    EXPECT_EQ(r.position(), 3u);
    std::vector<std::string> many;
    ASSERT_TRUE(r.recv_many(many, 5).ok());
    EXPECT_EQ(r.position(), 3u + many.size());
    ASSERT_TRUE(r.try_recv_many(many, 5).ok());
    EXPECT_EQ(r.position(), 3u + many.size());
    ASSERT_TRUE(r.recv_many_for(many, 5, seconds(10)).ok());
    EXPECT_EQ(r.position(), 3u + many.size());
    EXPECT_EQ(many.back(), tagged(0, static_cast<std::uint32_t>(2 + many.size()), (2 + many.size()) % 30));
    // The rest of the backlog, then items sent now (numbered 100 on, in memory).
    const std::uint64_t before = r.position();
    std::vector<std::string> rest;
    receive_n(r, rest, 100 - before);
    EXPECT_EQ(r.position(), 100u);
    for (std::uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(ch->sender.send(tagged(1, i)).ok());
    std::vector<std::string> fresh;
    receive_n(r, fresh, 10);
    EXPECT_EQ(r.position(), 110u);
    ASSERT_TRUE(r.try_recv(v).code() == Errc::empty);
    EXPECT_EQ(r.position(), 110u) << "nothing handed out: the position stays";
    ASSERT_TRUE(r.commit(105).ok());
    ch.reset();
    // A restart resumes at the committed position (manual_commit), or past everything
    // received (without: a clean shutdown persists how far delivery got).
    auto again = open_channel<std::string>(o);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->receiver.position(), manual ? 105u : 110u);
  }
}

TEST(CommitAt, PositionPassesOverDroppedItems) {
  for (bool manual : {true, false}) {
    SCOPED_TRACE(manual ? "manual_commit" : "without manual_commit");
    TempDir dir;
    Options o = small_options(dir.path());
    o.max_disk_bytes = 0;
    o.max_memory_bytes = 4 * sizeof(std::uint64_t);
    o.when_full = FullPolicy::drop_oldest;
    o.manual_commit = manual;
    auto ch = open_channel<std::uint64_t>(o);
    ASSERT_TRUE(ch.has_value());
    for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(ch->sender.send(std::uint64_t{i}).ok()) << i;
    ASSERT_EQ(ch->receiver.stats().items_dropped, 6u);  // 0..5 went
    std::uint64_t v = 0;
    ASSERT_TRUE(ch->receiver.try_recv(v).ok());
    EXPECT_EQ(v, 6u);
    EXPECT_EQ(ch->receiver.position(), 7u) << "the dropped items 0..5 are passed over";
    ASSERT_TRUE(ch->receiver.commit(ch->receiver.position()).ok());
    ch.reset();
    auto again = open_channel<std::uint64_t>(o);
    ASSERT_TRUE(again.has_value());
    again->sender.close();
    EXPECT_EQ(drain(again->receiver), (std::vector<std::uint64_t>{7, 8, 9}));
  }
}

TEST(CommitAt, PositionPassesOverDamagedItems) {
  TempDir dir;
  const Options o = commit_options(dir.path(), FaultFileSystem::create());
  fill(o, 300);
  const auto files = segment_files(dir.path());
  ASSERT_FALSE(files.empty());
  const auto pages = pages_of(files.front());
  ASSERT_GE(pages.size(), 3u);
  const PageInfo damaged = pages[1];
  flip_byte(files.front(), damaged.offset + damaged.bytes - 3);  // in its payload
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch.has_value());
  ch->sender.close();
  std::string v;
  std::uint32_t got = 0;
  bool jumped = false;
  while (ch->receiver.try_recv(v).ok()) {
    const auto tag = parse_tag(v);
    ASSERT_TRUE(tag.has_value()) << v;
    EXPECT_EQ(ch->receiver.position(), tag->index + 1u) << "after item " << tag->index;
    if (tag->index != got) jumped = true;
    got = tag->index + 1;
  }
  EXPECT_TRUE(jumped) << "no item was skipped: the damage did not take";
  EXPECT_EQ(ch->receiver.position(), 300u);
  EXPECT_EQ(ch->receiver.stats().corrupt_pages, 1u);
  EXPECT_EQ(damaged.count, 300u - ch->receiver.stats().items_received);
}

TEST(CommitAt, BeyondThePositionIsInvalidAndChangesNothing) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  Options o = commit_options(dir.path(), ffs);
  o.max_memory_bytes = 1 << 20;
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch.has_value());
  for (std::uint32_t i = 0; i < 20; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i, i % 30)).ok());
  std::vector<std::string> got;
  receive_n(ch->receiver, got, 10);
  ASSERT_TRUE(ch->receiver.commit(4).ok());
  const Stats before = ch->receiver.stats();
  for (std::uint64_t p : {11ull, 20ull, ~0ull}) {
    Status s = ch->receiver.commit(p);
    EXPECT_EQ(s.code(), Errc::invalid_argument) << p << ": " << describe(s);
  }
  EXPECT_EQ(ch->receiver.position(), 10u);
  const Stats after = ch->receiver.stats();
  EXPECT_EQ(after.commits, before.commits);
  EXPECT_EQ(after.memory_bytes, before.memory_bytes);
  ch->sender.close();
  ch.reset();
  std::string error;
  EXPECT_EQ(resume_point(o, 20, &error), 4u) << "the refused commits moved the position";
  EXPECT_EQ(error, "");
}

TEST(CommitAt, BelowTheLastCommitIsANoOp) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  const Options o = commit_options(dir.path(), ffs);
  fill(o, 60);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::vector<std::string> got;
    receive_n(ch->receiver, got, 30);
    ASSERT_TRUE(ch->receiver.commit(20).ok());
    const Stats before = ch->receiver.stats();
    ffs->fail_writes(1, ENOSPC);  // a commit that wrote anything would fail
    for (std::uint64_t p : {19ull, 5ull, 0ull}) {
      Status s = ch->receiver.commit(p);
      EXPECT_TRUE(s.ok()) << p << ": " << describe(s);
    }
    ffs->heal();
    EXPECT_EQ(ch->receiver.stats().commits, before.commits);
    EXPECT_EQ(ch->receiver.position(), 30u);
    ffs->freeze();  // power loss: only the durable position counts
  }
  ffs->crash();
  std::string error;
  EXPECT_EQ(resume_point(o, 60, &error), 20u);
  EXPECT_EQ(error, "");
}

// Items in memory: a commit in the middle of what was received gives back exactly the
// footprints of the items before it (cutting a held page in two), and a clean restart
// brings back exactly those after it.
TEST(CommitAt, InTheMiddleOfABatchReleasesExactlyTheMemoryOfTheItemsBeforeIt) {
  TempDir dir;
  Options o = commit_options(dir.path(), FaultFileSystem::create());
  o.max_memory_bytes = 1 << 20;  // everything stays in memory
  const std::uint32_t n = 40;
  std::vector<std::uint64_t> fp(n);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string item = tagged(0, i, i % 30 + (i % 3) * 20);  // some inline, some on the heap
      fp[i] = footprint(item);
      ASSERT_TRUE(ch->sender.send(std::move(item)).ok());
    }
    ASSERT_EQ(ch->receiver.stats().disk_items, 0u);
    ASSERT_EQ(ch->receiver.stats().memory_bytes, sum(fp, 0, n));
    std::vector<std::string> got;
    receive_n(ch->receiver, got, n);
    ASSERT_EQ(ch->receiver.position(), n);
    EXPECT_EQ(ch->receiver.stats().memory_bytes, sum(fp, 0, n)) << "received, not committed: still charged";
    for (std::uint64_t p : {13u, 17u, 18u, 30u}) {
      ASSERT_TRUE(ch->receiver.commit(p).ok()) << p;
      EXPECT_EQ(ch->receiver.stats().memory_bytes, sum(fp, p, n)) << "after commit(" << p << ")";
    }
    EXPECT_EQ(ch->receiver.stats().commits, 4u);
  }
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch.has_value());
  ch->sender.close();
  std::vector<std::string> back;
  ASSERT_EQ(receive_all(ch->receiver, back).code(), Errc::closed);
  std::vector<std::string> expected;
  for (std::uint32_t i = 30; i < n; ++i) expected.push_back(tagged(0, i, i % 30 + (i % 3) * 20));
  EXPECT_EQ(back, expected) << "exactly the received items after the commit come back";
  EXPECT_EQ(ch->receiver.stats().items_missing, 0u);
}

// Items read from segments: after a commit in the middle of what was received, a clean
// restart or a power cut brings back exactly the items after it.
TEST(CommitAt, InTheMiddleOfABatchFromSegmentsRedeliversExactlyTheRest) {
  for (bool power_cut : {false, true}) {
    SCOPED_TRACE(power_cut ? "power cut" : "clean restart");
    TempDir dir;
    auto ffs = FaultFileSystem::create();
    const Options o = commit_options(dir.path(), ffs);
    fill(o, 300);
    ASSERT_GE(segment_files(dir.path()).size(), 2u);
    {
      auto ch = open_channel<std::string>(o);
      ASSERT_TRUE(ch.has_value());
      std::vector<std::string> got;
      receive_n(ch->receiver, got, 200);
      ASSERT_EQ(ch->receiver.position(), 200u);
      ASSERT_TRUE(ch->receiver.commit(150).ok());
      EXPECT_EQ(ch->receiver.position(), 200u) << "a commit does not move the position";
      if (power_cut) ffs->freeze();
    }
    if (power_cut) ffs->crash();
    std::string error;
    EXPECT_EQ(resume_point(o, 300, &error), 150u);
    EXPECT_EQ(error, "");
  }
}

TEST(CommitAt, ASegmentIsRemovedOnlyOnceWhollyCommitted) {
  TempDir dir;
  const Options o = commit_options(dir.path(), FaultFileSystem::create());
  fill(o, 1000);
  const auto files = segment_files(dir.path());
  ASSERT_GE(files.size(), 3u);
  std::uint64_t end0 = 0, end1 = 0;  // one past the last item of the first two segments
  for (const PageInfo& p : pages_of(files[0])) end0 = std::max<std::uint64_t>(end0, p.first_seq + p.count);
  for (const PageInfo& p : pages_of(files[1])) end1 = std::max<std::uint64_t>(end1, p.first_seq + p.count);
  ASSERT_LT(end0, end1);
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch.has_value());
  ASSERT_EQ(drain(ch->receiver).size(), 1000u);
  ASSERT_TRUE(ch->receiver.commit(end0 - 1).ok());
  EXPECT_TRUE(fs::exists(files[0])) << "removed with its last item not committed";
  EXPECT_EQ(ch->receiver.stats().segments, files.size());
  ASSERT_TRUE(ch->receiver.commit(end0).ok());
  EXPECT_FALSE(fs::exists(files[0])) << "wholly committed, yet kept";
  EXPECT_TRUE(fs::exists(files[1]));
  EXPECT_EQ(ch->receiver.stats().segments, files.size() - 1);
  ASSERT_TRUE(ch->receiver.commit(end1 - 1).ok());
  EXPECT_TRUE(fs::exists(files[1]));
  ASSERT_TRUE(ch->receiver.commit(end1 + 1).ok());
  EXPECT_FALSE(fs::exists(files[1]));
  EXPECT_TRUE(fs::exists(files[2]));
}

// Items read from segments: a commit whose CURSOR could not be persisted leaves the
// position where it was; the same commit succeeds once the disk is back.
TEST(CommitAt, AFailedCommitKeepsThePositionAndARetrySucceeds) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  const Options o = commit_options(dir.path(), ffs);
  fill(o, 60);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    std::vector<std::string> got;
    receive_n(ch->receiver, got, 40);
    ASSERT_TRUE(ch->receiver.commit(10).ok());
    ffs->fail_syncs(1);
    EXPECT_EQ(ch->receiver.commit(20).code(), Errc::io_error);
    EXPECT_EQ(ch->receiver.stats().commits, 1u);
    Status s = ch->receiver.commit(20);
    EXPECT_TRUE(s.ok()) << "the retry: " << describe(s);
    EXPECT_EQ(ch->receiver.stats().commits, 2u);
    ffs->fail_writes(1, ENOSPC);
    EXPECT_EQ(ch->receiver.commit(30).code(), Errc::io_error);
    ffs->fail_dir_syncs(1);
    EXPECT_EQ(ch->receiver.commit(35).code(), Errc::io_error);
    ffs->freeze();
  }
  ffs->crash();
  std::string error;
  EXPECT_EQ(resume_point(o, 60, &error), 20u);
  EXPECT_EQ(error, "");
}

// Items in memory: a failed commit keeps them held (and charged); the retry lets go of them.
TEST(CommitAt, AFailedCommitKeepsTheHeldMemoryAndARetryReleasesIt) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  Options o = commit_options(dir.path(), ffs);
  o.max_memory_bytes = 1 << 20;
  const std::uint32_t n = 30;
  std::vector<std::uint64_t> fp(n);
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch.has_value());
    for (std::uint32_t i = 0; i < n; ++i) {
      std::string item = tagged(0, i, i % 30);
      fp[i] = footprint(item);
      ASSERT_TRUE(ch->sender.send(std::move(item)).ok());
    }
    std::vector<std::string> got;
    receive_n(ch->receiver, got, 25);
    ffs->fail_syncs(1);
    EXPECT_EQ(ch->receiver.commit(12).code(), Errc::io_error);
    EXPECT_EQ(ch->receiver.stats().memory_bytes, sum(fp, 0, n)) << "a failed commit released memory";
    ASSERT_TRUE(ch->receiver.commit(12).ok());
    EXPECT_EQ(ch->receiver.stats().memory_bytes, sum(fp, 12, n));
  }
  std::string error;
  EXPECT_EQ(resume_point(o, n, &error), 12u);
  EXPECT_EQ(error, "");
}

enum class CommitOp { recv, commit };
std::ostream& operator<<(std::ostream& os, CommitOp op) { return os << (op == CommitOp::recv ? "recv" : "commit"); }

// A backlog, a receiver that receives and commits in any pattern, and a power cut at any
// file-system call: after the reboot the receiver resumes exactly after the last commit
// that returned ok, and everything after it follows, in order.
RC_GTEST_PROP(Commit, ResumesExactlyAfterTheLastCommitAcrossPowerLoss, ()) {
  TempDir dir;
  auto ffs = FaultFileSystem::create(*rc::gen::inRange<std::uint64_t>(1, 1u << 30));
  Options o = commit_options(dir.path(), ffs);
  o.sync = *rc::gen::element(SyncPolicy::none, SyncPolicy::always);
  const auto n = *rc::gen::inRange<std::uint32_t>(1, 300);
  fill(o, n);
  const auto ops = *rc::gen::container<std::vector<CommitOp>>(
      *rc::gen::inRange<std::size_t>(0, 400),
      rc::gen::weightedElement<CommitOp>({{5, CommitOp::recv}, {1, CommitOp::commit}}));
  const auto cut_after = *rc::gen::inRange<std::uint64_t>(0, 60);
  const bool torn = *rc::gen::arbitrary<bool>();
  std::uint32_t received = 0, committed = 0;
  {
    auto ch = open_channel<std::string>(o);
    RC_ASSERT(ch.has_value());
    ffs->freeze_after(cut_after);
    std::string v;
    for (CommitOp op : ops) {
      if (op == CommitOp::recv) {
        Status s = ch->receiver.try_recv(v);
        if (received == n) {
          RC_ASSERT(s.code() == Errc::empty);
        } else {
          if (!s.ok()) RC_FAIL("recv of item " + std::to_string(received) + ": " + s.message());
          RC_ASSERT(v == tagged(0, received, received % 30));
          ++received;
        }
      } else {
        Status s = ch->receiver.commit();
        RC_LOG() << "commit at " << received << ": " << describe(s) << "\n";
        if (s.ok()) {
          committed = received;
        } else {
          RC_ASSERT(s.code() == Errc::io_error);
        }
      }
    }
    RC_CLASSIFY(ffs->frozen(), "power cut mid-run");
    RC_CLASSIFY(committed > 0, "something committed");
    RC_CLASSIFY(committed == n, "everything committed");
    ffs->freeze();
  }
  ffs->heal();
  ffs->crash(torn ? Unsynced::random_prefix : Unsynced::dropped);
  std::string error;
  const std::uint32_t resumed = resume_point(o, n, &error);
  RC_LOG() << "received " << received << ", committed " << committed << ", resumed at " << resumed << "\n";
  if (!error.empty()) RC_FAIL(error);
  RC_ASSERT(resumed == committed);
}

enum class LiveOp { recv, commit, send };
std::ostream& operator<<(std::ostream& os, LiveOp op) {
  static const char* const names[] = {"recv", "commit", "send"};
  return os << names[static_cast<int>(op)];
}

// As above, with SyncPolicy::always and a producer sending while the receiver receives and
// commits, so that commits, segment deletion and new segments interleave. After the power
// cut, with T the order of acceptance (the backlog, then the new sends) and R what was
// received before it: what comes back is in T's order, never twice, starts right after the
// last committed item of R, and holds every acknowledged item not committed.
RC_GTEST_PROP(Commit, ResumesExactlyAfterTheLastCommitWhileSendingAcrossPowerLoss, ()) {
  TempDir dir;
  auto ffs = FaultFileSystem::create(*rc::gen::inRange<std::uint64_t>(1, 1u << 30));
  Options o = commit_options(dir.path(), ffs);
  o.sync = SyncPolicy::always;
  const auto n = *rc::gen::inRange<std::uint32_t>(0, 200);
  fill(o, n);
  const auto ops = *rc::gen::container<std::vector<LiveOp>>(
      *rc::gen::inRange<std::size_t>(0, 400),
      rc::gen::weightedElement<LiveOp>({{4, LiveOp::recv}, {1, LiveOp::commit}, {4, LiveOp::send}}));
  const auto cut_after = *rc::gen::inRange<std::uint64_t>(0, 300);
  const bool torn = *rc::gen::arbitrary<bool>();

  std::map<std::string, std::size_t> position;  // T: item -> place in the order of acceptance
  std::vector<std::string> order;
  auto accept = [&](const std::string& item) {
    position[item] = order.size();
    order.push_back(item);
  };
  for (std::uint32_t i = 0; i < n; ++i) accept(tagged(0, i, i % 30));
  std::set<std::string> acked(order.begin(), order.end());  // the backlog is durable
  std::vector<std::string> received;
  std::size_t committed = 0;
  {
    auto ch = open_channel<std::string>(o);
    RC_ASSERT(ch.has_value());
    ffs->freeze_after(cut_after);
    std::string v;
    std::uint32_t next = 0;
    for (LiveOp op : ops) {
      switch (op) {
        case LiveOp::send: {
          const std::string item = tagged(1, next, (next * 7) % 50);
          ++next;
          accept(item);
          Status s = ch->sender.send(std::string(item));
          RC_ASSERT((s.ok() || s.code() == Errc::io_error));
          if (s.ok()) acked.insert(item);
          break;
        }
        case LiveOp::recv: {
          Status s = ch->receiver.try_recv(v);
          if (s.ok()) {
            RC_ASSERT(position.count(v) == 1u);
            RC_ASSERT((received.empty() || position[received.back()] < position[v]));
            received.push_back(v);
          } else {
            RC_ASSERT((s.code() == Errc::empty || s.code() == Errc::io_error));
          }
          break;
        }
        case LiveOp::commit: {
          Status s = ch->receiver.commit();
          RC_LOG() << "commit after " << received.size() << " received: " << describe(s) << "\n";
          if (s.ok()) committed = received.size();
          break;
        }
      }
    }
    RC_CLASSIFY(ffs->frozen(), "power cut mid-run");
    RC_CLASSIFY(committed > 0, "something committed");
    RC_CLASSIFY(committed > n, "committed past the backlog");
    ffs->freeze();
  }
  ffs->heal();
  ffs->crash(torn ? Unsynced::random_prefix : Unsynced::dropped);

  auto ch = open_channel<std::string>(o);
  RC_ASSERT(ch.has_value());
  ch->sender.close();
  std::vector<std::string> back;
  const Status end = receive_all(ch->receiver, back);
  if (end.code() != Errc::closed) RC_FAIL("receiving after the reboot: " + end.message());
  RC_LOG() << "received " << received.size() << ", committed " << committed << ", back " << back.size() << "\n";
  const std::size_t floor = committed == 0 ? 0 : position[received[committed - 1]] + 1;
  std::size_t last = 0;
  for (std::size_t k = 0; k < back.size(); ++k) {
    auto it = position.find(back[k]);
    if (it == position.end()) RC_FAIL("an item nobody sent came back: " + back[k]);
    if (it->second < floor) RC_FAIL("committed item came back: " + back[k]);
    if (k > 0 && it->second <= last) RC_FAIL("out of order or twice: " + back[k]);
    last = it->second;
  }
  const std::set<std::string> back_set(back.begin(), back.end());
  for (std::size_t k = floor; k < order.size(); ++k) {
    if (acked.count(order[k]) == 1 && back_set.count(order[k]) == 0)
      RC_FAIL("acknowledged and not committed, yet lost: " + order[k]);
  }
}

}  // namespace
}  // namespace hopper::test
