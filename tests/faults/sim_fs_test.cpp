// tests/support/sim_fs: the in-RAM simulated file system the fault-schedule explorer runs queues
// on. One TEST per documented behaviour, then two that run a real queue on it.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <hopper/hopper.hpp>

#include "sim_fs.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;


bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The errno text as Status::IoError writes it.
std::string errno_text(int err) { return std::strerror(err); }

// Stands in for a File that could not be opened (the failure is already reported), so
// that the rest of the test fails instead of crashing the whole binary. Not thread-safe.
class UnopenedFile final : public File {
 public:
  explicit UnopenedFile(fs::path path) : path_(std::move(path)) {}
  Status append(const void*, std::size_t) override { return error(); }
  Result<std::size_t> read_at(std::uint64_t, void*, std::size_t) override { return error(); }
  Status sync() override { return error(); }
  Status truncate(std::uint64_t) override { return error(); }
  Result<std::uint64_t> size() override { return error(); }
  const fs::path& path() const noexcept override { return path_; }

 private:
  Status error() const { return Status(Errc::io_error, path_.native() + " was never opened"); }
  fs::path path_;
};

// A sim with /d made, and a way to open files in it that reports failure and goes on.
// Not thread-safe (one test's).
struct Fixture {
  std::shared_ptr<SimFileSystem> sim = SimFileSystem::create();
  Fixture() { EXPECT_TRUE(sim->create_directories("/d").ok()); }
  std::unique_ptr<File> open(const fs::path& p, OpenMode mode = OpenMode::append) {
    auto f = sim->open(p, mode);
    EXPECT_TRUE(f.ok()) << f.status().message();
    if (!f.ok()) return std::make_unique<UnopenedFile>(p);
    return std::move(*f);
  }
};

Status append(File& f, const std::string& bytes) { return f.append(bytes.data(), bytes.size()); }

std::string read_all(File& f) {
  auto size = f.size();
  if (!size.ok()) return "<size failed: " + size.status().message() + ">";
  std::string out(*size, '\0');
  auto got = f.read_at(0, out.data(), out.size());
  if (!got.ok()) return "<read failed: " + got.status().message() + ">";
  out.resize(*got);
  return out;
}

std::uint64_t count_of(const SimFileSystem& sim, SimOp op) { return sim.counts()[static_cast<std::size_t>(op)]; }

// ======================================================================================
// Where a queue can tell, it behaves as the POSIX file system does
// ======================================================================================

TEST(SimFs, ToStringNamesEveryKind) {
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < kSimOpKinds; ++i) names.insert(to_string(static_cast<SimOp>(i)));
  EXPECT_EQ(names.size(), kSimOpKinds);
  EXPECT_EQ(names.count("unknown"), 0u);
  EXPECT_EQ(to_string(SimOp::dir_sync), "dir_sync");
}

TEST(SimFs, OpeningAMissingFileForReadingIsENOENTNamingThePath) {
  Fixture t;
  auto f = t.sim->open("/d/nope", OpenMode::read);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Errc::not_found);  // as the POSIX one says it
  EXPECT_TRUE(contains(f.status().message(), "/d/nope")) << f.status().message();
  EXPECT_TRUE(contains(f.status().message(), errno_text(ENOENT))) << f.status().message();
  // Creating needs the parent directory, as open(O_CREAT) does.
  auto g = t.sim->open("/nodir/x", OpenMode::append);
  ASSERT_FALSE(g.ok());
  EXPECT_TRUE(contains(g.status().message(), errno_text(ENOENT))) << g.status().message();
}

TEST(SimFs, RemovingAMissingFileIsENOENT) {
  Fixture t;
  Status s = t.sim->remove("/d/nope");
  EXPECT_EQ(s.code(), Errc::not_found);
  EXPECT_TRUE(contains(s.message(), errno_text(ENOENT))) << s.message();
  EXPECT_TRUE(contains(s.message(), "/d/nope")) << s.message();
}

TEST(SimFs, ListingAMissingDirectoryIsENOENT) {
  Fixture t;
  auto names = t.sim->list("/nodir");
  ASSERT_FALSE(names.ok());
  EXPECT_EQ(names.status().code(), Errc::not_found);
  EXPECT_TRUE(contains(names.status().message(), errno_text(ENOENT))) << names.status().message();
}

TEST(SimFs, CreateDirectoriesCreatesParentsAndListShowsEntries) {
  Fixture t;
  ASSERT_TRUE(t.sim->create_directories("/a/b/c/").ok());
  auto a = t.sim->list("/a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, std::vector<std::string>{"b"});
  auto f = t.open("/a/b/c/file");
  auto c = t.sim->list("/a/b/c");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, std::vector<std::string>{"file"});
  // A file in the way of a directory.
  EXPECT_FALSE(t.sim->create_directories("/a/b/c/file/sub").ok());
  EXPECT_TRUE(t.sim->create_directories("/a/b").ok()) << "existing directories are fine";
}

TEST(SimFs, RenameReplacesItsTarget) {
  Fixture t;
  auto a = t.open("/d/a");
  auto b = t.open("/d/b");
  ASSERT_TRUE(append(*a, "new").ok());
  ASSERT_TRUE(append(*b, "old").ok());
  ASSERT_TRUE(t.sim->rename("/d/a", "/d/b").ok());
  EXPECT_EQ(t.sim->live_contents("/d/b"), "new");
  EXPECT_EQ(t.sim->live_contents("/d/a"), std::nullopt);
  EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"b", 3}}));
  Status missing = t.sim->rename("/d/a", "/d/c");
  EXPECT_TRUE(contains(missing.message(), errno_text(ENOENT))) << missing.message();
}

TEST(SimFs, AnUnlinkedFileStaysReadableAndWritableThroughOpenFiles) {
  Fixture t;
  auto f = t.open("/d/x");
  ASSERT_TRUE(append(*f, "abc").ok());
  ASSERT_TRUE(t.sim->remove("/d/x").ok());
  EXPECT_EQ(t.sim->live_contents("/d/x"), std::nullopt);
  EXPECT_FALSE(t.sim->open("/d/x", OpenMode::read).ok());
  ASSERT_TRUE(append(*f, "def").ok());
  EXPECT_EQ(read_all(*f), "abcdef");
  EXPECT_TRUE(f->sync().ok());
}

TEST(SimFs, FilesListsLiveFilesWithTheirSizes) {
  Fixture t;
  auto a = t.open("/d/a");
  ASSERT_TRUE(append(*a, "12345").ok());
  auto b = t.open("/d/b");
  ASSERT_TRUE(t.sim->create_directories("/d/sub").ok());
  EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"a", 5}, {"b", 0}}));
  EXPECT_TRUE(t.sim->files("/elsewhere").empty());
}

// ======================================================================================
// Faults by operation count
// ======================================================================================

TEST(SimFs, AnNthFaultFailsExactlyThatCallOfItsKind) {
  Fixture t;
  auto f = t.open("/d/x");
  t.sim->arm(SimFault{.op = SimOp::append, .nth = 3, .err = ENOSPC});
  EXPECT_TRUE(append(*f, "a").ok());
  EXPECT_TRUE(f->sync().ok()) << "another kind does not count";
  EXPECT_TRUE(append(*f, "b").ok());
  Status s = append(*f, "c");
  EXPECT_EQ(s.code(), Errc::io_error);
  EXPECT_TRUE(contains(s.message(), errno_text(ENOSPC))) << s.message();
  EXPECT_TRUE(contains(s.message(), "/d/x")) << s.message();
  EXPECT_TRUE(append(*f, "d").ok()) << "the fault was spent";
  EXPECT_EQ(t.sim->live_contents("/d/x"), "abd") << "a failed (not partial) append writes nothing";
  EXPECT_EQ(t.sim->faults_injected(), 1u);
  EXPECT_EQ(t.sim->faults_armed(), 0u);
}

TEST(SimFs, AFaultCountsFromWhenItWasArmed) {
  Fixture t;
  auto f = t.open("/d/x");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(append(*f, "a").ok());
  t.sim->arm(SimFault{.op = SimOp::append, .nth = 1});
  EXPECT_FALSE(append(*f, "b").ok()) << "nth = 1 is the next call, whatever came before";
  t.sim->arm(SimFault{.op = SimOp::append, .nth = 0});
  EXPECT_FALSE(append(*f, "b").ok()) << "nth = 0 means the next one too";
}

TEST(SimFs, EveryKindOfCallCanBeFailed) {
  for (std::size_t i = 0; i < kSimOpKinds; ++i) {
    const SimOp op = static_cast<SimOp>(i);
    SCOPED_TRACE(std::string(to_string(op)));
    Fixture t;
    t.sim->put("/d/f", "bytes");
    auto f = t.open("/d/f");
    t.sim->arm(SimFault{.op = op, .err = EACCES});
    char buf[4];
    Status s;
    switch (op) {
      case SimOp::open: s = t.sim->open("/d/f", OpenMode::read).status(); break;
      case SimOp::append: s = append(*f, "x"); break;
      case SimOp::read: s = f->read_at(0, buf, sizeof buf).status(); break;
      case SimOp::sync: s = f->sync(); break;
      case SimOp::truncate: s = f->truncate(1); break;
      case SimOp::size: s = f->size().status(); break;
      case SimOp::rename: s = t.sim->rename("/d/f", "/d/g"); break;
      case SimOp::remove: s = t.sim->remove("/d/f"); break;
      case SimOp::list: s = t.sim->list("/d").status(); break;
      case SimOp::mkdir: s = t.sim->create_directories("/d/e"); break;
      case SimOp::dir_sync: s = t.sim->sync_directory("/d"); break;
      case SimOp::lock: s = t.sim->lock("/d/LOCK").status(); break;
    }
    EXPECT_EQ(s.code(), Errc::io_error);
    EXPECT_TRUE(contains(s.message(), errno_text(EACCES))) << s.message();
    EXPECT_EQ(t.sim->faults_injected(), 1u);
    // A failed call changed nothing.
    EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"f", 5}}));
    EXPECT_EQ(t.sim->live_contents("/d/f"), "bytes");
  }
}

TEST(SimFs, TimesFailsThatManyConsecutiveCallsThenTheFaultIsSpent) {
  Fixture t;
  auto f = t.open("/d/x");
  t.sim->arm(SimFault{.op = SimOp::sync, .nth = 2, .times = 3});
  std::vector<bool> ok;
  for (int i = 0; i < 6; ++i) ok.push_back(f->sync().ok());
  EXPECT_EQ(ok, (std::vector<bool>{true, false, false, false, true, true}));
  EXPECT_EQ(t.sim->faults_armed(), 0u);
  // Until cleared.
  t.sim->arm(SimFault{.op = SimOp::sync, .times = UINT64_MAX});
  for (int i = 0; i < 100; ++i) ASSERT_FALSE(f->sync().ok()) << i;
  EXPECT_EQ(t.sim->faults_armed(), 1u);
  t.sim->clear_faults();
  EXPECT_TRUE(f->sync().ok());
  EXPECT_EQ(t.sim->faults_injected(), 103u);
}

TEST(SimFs, PathContainsCountsOnlyMatchingCalls) {
  Fixture t;
  auto seg = t.open("/d/hopper-1.seg");
  auto cur = t.open("/d/CURSOR.tmp");
  t.sim->arm(SimFault{.op = SimOp::sync, .nth = 2, .path_contains = ".seg"});
  EXPECT_TRUE(seg->sync().ok());
  EXPECT_TRUE(cur->sync().ok()) << "not a .seg: neither fails nor counts";
  EXPECT_TRUE(cur->sync().ok());
  EXPECT_FALSE(seg->sync().ok()) << "the second .seg sync";
  // Rename matches on either of its paths.
  t.sim->arm(SimFault{.op = SimOp::rename, .path_contains = "CURSOR"});
  EXPECT_TRUE(t.sim->rename("/d/hopper-1.seg", "/d/hopper-2.seg").ok());
  EXPECT_FALSE(t.sim->rename("/d/hopper-2.seg", "/d/CURSOR").ok()) << "the target matches";
}

TEST(SimFs, TwoFaultsOnOneCallBothCountAndTheFirstArmedDecides) {
  Fixture t;
  auto f = t.open("/d/x");
  t.sim->arm(SimFault{.op = SimOp::append, .nth = 1, .err = ENOSPC});
  t.sim->arm(SimFault{.op = SimOp::append, .nth = 2, .err = EIO});
  t.sim->arm(SimFault{.op = SimOp::append, .nth = 1, .err = EROFS});
  Status first = append(*f, "a");
  EXPECT_TRUE(contains(first.message(), errno_text(ENOSPC))) << first.message();
  Status second = append(*f, "b");
  EXPECT_TRUE(contains(second.message(), errno_text(EIO))) << "EROFS was spent on the first call: " << second.message();
  EXPECT_TRUE(append(*f, "c").ok());
  EXPECT_EQ(t.sim->faults_injected(), 2u) << "calls failed, not faults fired";
}

TEST(SimFs, APartialAppendWritesTheFirstHalfThenFails) {
  Fixture t;
  auto f = t.open("/d/x");
  ASSERT_TRUE(append(*f, "keep").ok());
  t.sim->arm(SimFault{.op = SimOp::append, .err = ENOSPC, .partial = true});
  Status s = append(*f, "0123456789");
  EXPECT_TRUE(contains(s.message(), errno_text(ENOSPC))) << s.message();
  EXPECT_EQ(t.sim->live_contents("/d/x"), "keep01234") << "the prefix is really there";
  EXPECT_EQ(f->size().value(), 9u);
  // The caller cuts back to what it knew, as the seam asks.
  ASSERT_TRUE(f->truncate(4).ok());
  EXPECT_EQ(read_all(*f), "keep");
}

// ======================================================================================
// Power loss
// ======================================================================================

TEST(SimFs, PowerCutAfterNLetsExactlyNMutatingCallsThrough) {
  Fixture t;
  t.sim->put("/d/old", "old");
  auto f = t.open("/d/x");
  t.sim->power_cut_after(3);
  char buf[8];
  // Reads, lists, sizes and opens of existing files are not mutating: they do not count.
  ASSERT_TRUE(f->read_at(0, buf, sizeof buf).ok());
  ASSERT_TRUE(t.sim->list("/d").ok());
  ASSERT_TRUE(t.sim->open("/d/old", OpenMode::append).ok());
  ASSERT_TRUE(t.sim->open("/d/old", OpenMode::read).ok());
  EXPECT_TRUE(append(*f, "1").ok());
  EXPECT_TRUE(t.sim->create_directories("/d/e").ok());
  EXPECT_FALSE(t.sim->frozen());
  EXPECT_TRUE(append(*f, "2").ok());
  EXPECT_TRUE(t.sim->frozen()) << "stopped as the third went through";
  Status s = append(*f, "3");
  EXPECT_TRUE(contains(s.message(), errno_text(EIO))) << s.message();
  EXPECT_TRUE(contains(s.message(), "power loss")) << s.message();
  EXPECT_EQ(t.sim->live_contents("/d/x"), "12");
  EXPECT_EQ(t.sim->faults_injected(), 1u);
}

TEST(SimFs, AfterThePowerCutMutatingCallsFailAndChangeNothingButReadsWork) {
  Fixture t;
  t.sim->put("/d/a", "aaa");
  auto f = t.open("/d/a");
  t.sim->power_cut_now();
  EXPECT_TRUE(t.sim->frozen());
  const auto before = t.sim->files("/d");
  EXPECT_FALSE(append(*f, "x").ok());
  EXPECT_FALSE(f->sync().ok());
  EXPECT_FALSE(f->truncate(0).ok());
  EXPECT_FALSE(t.sim->rename("/d/a", "/d/b").ok());
  EXPECT_FALSE(t.sim->remove("/d/a").ok());
  EXPECT_FALSE(t.sim->create_directories("/d/e").ok());
  EXPECT_FALSE(t.sim->sync_directory("/d").ok());
  EXPECT_FALSE(t.sim->open("/d/new", OpenMode::append).ok()) << "creating";
  EXPECT_FALSE(t.sim->open("/d/a", OpenMode::truncate).ok()) << "emptying";
  EXPECT_FALSE(t.sim->lock("/d/LOCK").ok()) << "creating its file";
  EXPECT_EQ(t.sim->faults_injected(), 10u);
  EXPECT_EQ(t.sim->files("/d"), before);
  EXPECT_EQ(read_all(*f), "aaa");
  EXPECT_TRUE(t.sim->list("/d").ok());
  EXPECT_TRUE(t.sim->open("/d/a", OpenMode::read).ok());
  EXPECT_TRUE(t.sim->lock("/d/a").ok()) << "locking an existing file writes nothing";
}

// ======================================================================================
// Durability and reboot
// ======================================================================================

TEST(SimFs, RebootDroppedKeepsWhatTheLastSyncSawAndNothingElse) {
  Fixture t;
  auto f = t.open("/d/x");
  ASSERT_TRUE(t.sim->sync_directory("/d").ok());
  ASSERT_TRUE(append(*f, "synced").ok());
  ASSERT_TRUE(f->sync().ok());
  ASSERT_TRUE(append(*f, "-lost").ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "synced");
  EXPECT_EQ(t.sim->live_contents("/d/x"), "synced-lost");
  t.sim->reboot(Unsynced::dropped);
  EXPECT_EQ(t.sim->live_contents("/d/x"), "synced");
  auto g = t.open("/d/x", OpenMode::read);
  EXPECT_EQ(read_all(*g), "synced");
}

TEST(SimFs, ATruncationIsDurableOnlyOnceSynced) {
  Fixture t;
  t.sim->put("/d/x", "0123456789");
  auto f = t.open("/d/x");
  ASSERT_TRUE(f->truncate(4).ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "0123456789");
  ASSERT_TRUE(f->sync().ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "0123");
  auto g = t.open("/d/x", OpenMode::truncate);
  EXPECT_EQ(t.sim->live_contents("/d/x"), "");
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "0123") << "O_TRUNC is not durable before a sync";
  t.sim->reboot();
  EXPECT_EQ(t.sim->live_contents("/d/x"), "0123");
}

TEST(SimFs, RebootRandomPrefixKeepsASeededPrefixOfEachUnsyncedTail) {
  const std::string tail = "abcdefghijklmnopqrstuvwxyz";
  auto run = [&](std::uint64_t seed) {
    auto sim = SimFileSystem::create(seed);
    sim->put("/d/x", "base:");
    sim->put("/d/y", "base:");
    auto x = sim->open("/d/x", OpenMode::append);
    auto y = sim->open("/d/y", OpenMode::append);
    if (!x.ok() || !y.ok()) return std::pair<std::string, std::string>("<not opened>", "<not opened>");
    EXPECT_TRUE(append(**x, tail).ok());
    EXPECT_TRUE(append(**y, tail).ok());
    sim->reboot(Unsynced::random_prefix);
    return std::pair(sim->live_contents("/d/x").value_or("<gone>"), sim->live_contents("/d/y").value_or("<gone>"));
  };
  std::set<std::size_t> lengths;
  bool files_differ = false;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    const auto [x, y] = run(seed);
    for (const std::string& got : {x, y}) {
      ASSERT_GE(got.size(), 5u) << got;
      EXPECT_EQ(got, ("base:" + tail).substr(0, got.size())) << "not a prefix: " << got;
      lengths.insert(got.size());
    }
    files_differ |= x.size() != y.size();
    EXPECT_EQ(run(seed), std::pair(x, y)) << "seed " << seed << " did not repeat itself";
  }
  EXPECT_GT(lengths.size(), 10u) << "the prefixes hardly vary with the seed";
  EXPECT_TRUE(files_differ) << "each file should draw its own prefix";
  // What was kept is durable now: a second power loss keeps it.
  auto sim = SimFileSystem::create(3);
  sim->put("/d/x", "");
  auto x = sim->open("/d/x", OpenMode::append);
  ASSERT_TRUE(x.ok());
  ASSERT_TRUE(append(**x, tail).ok());
  sim->reboot(Unsynced::random_prefix);
  const auto kept = sim->live_contents("/d/x");
  EXPECT_EQ(sim->durable_contents("/d/x"), kept);
  sim->reboot(Unsynced::dropped);
  EXPECT_EQ(sim->live_contents("/d/x"), kept);
}

// A truncation is a metadata change that may or may not have reached the journal: a torn
// power loss shows either outcome, never anything else.
TEST(SimFs, RebootRandomPrefixKeepsOrUndoesAnUnsyncedTruncation) {
  std::set<std::string> outcomes;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    auto sim = SimFileSystem::create(seed);
    sim->put("/d/x", "0123456789");
    auto x = sim->open("/d/x", OpenMode::append);
    ASSERT_TRUE(x.ok());
    ASSERT_TRUE((*x)->truncate(4).ok());
    sim->reboot(Unsynced::random_prefix);
    outcomes.insert(sim->live_contents("/d/x").value_or("<gone>"));
  }
  EXPECT_EQ(outcomes, (std::set<std::string>{"0123", "0123456789"}));
}

TEST(SimFs, RebootKeptIsAProcessCrashThatKeepsEverything) {
  Fixture t;
  ASSERT_TRUE(t.sim->sync_directory("/d").ok());
  t.sim->put("/d/x", "synced");
  auto f = t.open("/d/x");
  ASSERT_TRUE(append(*f, "+unsynced").ok());
  auto g = t.open("/d/new");  // an entry never made durable
  ASSERT_TRUE(append(*g, "n").ok());
  ASSERT_TRUE(t.sim->rename("/d/x", "/d/renamed").ok());
  t.sim->reboot(Unsynced::kept);
  EXPECT_EQ(t.sim->live_contents("/d/renamed"), "synced+unsynced");
  EXPECT_EQ(t.sim->live_contents("/d/new"), "n");
  EXPECT_EQ(t.sim->live_contents("/d/x"), std::nullopt);
  // The kernel still has the pages; what a later power loss would keep has not changed.
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "synced");
  EXPECT_EQ(t.sim->durable_contents("/d/new"), std::nullopt);
  t.sim->reboot(Unsynced::dropped);
  EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"x", 6}}));
}

TEST(SimFs, RebootKillsOldFilesReleasesLocksClearsFaultsAndRestartsTheMachine) {
  Fixture t;
  t.sim->put("/d/x", "x");
  auto f = t.open("/d/x");
  auto held = t.sim->lock("/d/LOCK");
  ASSERT_TRUE(held.ok());
  t.sim->arm(SimFault{.op = SimOp::open, .times = UINT64_MAX});
  t.sim->power_cut_now();
  t.sim->reboot();
  EXPECT_FALSE(t.sim->frozen());
  EXPECT_EQ(t.sim->faults_armed(), 0u);
  const std::uint64_t injected = t.sim->faults_injected();
  char buf[1];
  for (Status s : {append(*f, "y"), f->read_at(0, buf, 1).status(), f->sync(), f->truncate(0), f->size().status()}) {
    EXPECT_EQ(s.code(), Errc::io_error);
    EXPECT_TRUE(contains(s.message(), errno_text(EIO))) << s.message();
  }
  EXPECT_EQ(t.sim->faults_injected(), injected) << "a dead file is not a fault";
  auto again = t.sim->lock("/d/LOCK");
  EXPECT_TRUE(again.ok()) << "the lock died with the machine: " << describe(again.status());
  held->reset();  // the old holder's late destructor must not release the new holder
  EXPECT_EQ(t.sim->lock("/d/LOCK").status().code(), Errc::locked);
  auto g = t.open("/d/x");
  EXPECT_TRUE(append(*g, "y").ok());
}

TEST(SimFs, AFailedSyncLosesTheUnsyncedBytesForGood) {
  Fixture t;
  t.sim->put("/d/x", "ok:");
  auto f = t.open("/d/x");
  ASSERT_TRUE(append(*f, "lost").ok());
  t.sim->arm(SimFault{.op = SimOp::sync});
  EXPECT_FALSE(f->sync().ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "ok:") << "a failed sync made something durable";
  EXPECT_EQ(read_all(*f), "ok:lost") << "until the reboot, reads still see the bytes";
  ASSERT_TRUE(append(*f, "+new").ok());
  ASSERT_TRUE(f->sync().ok());
  const std::string expected = std::string("ok:") + std::string(4, '\0') + "+new";
  EXPECT_EQ(t.sim->durable_contents("/d/x"), expected) << "the later sync resurrected the lost bytes";
  t.sim->reboot(Unsynced::random_prefix);
  EXPECT_EQ(t.sim->live_contents("/d/x"), expected);
}

TEST(SimFs, BytesRewrittenAfterTruncatingALostWritebackAreNotLost) {
  Fixture t;
  t.sim->put("/d/x", "ok:");
  auto f = t.open("/d/x");
  ASSERT_TRUE(append(*f, "lost").ok());
  t.sim->arm(SimFault{.op = SimOp::sync});
  ASSERT_FALSE(f->sync().ok());
  ASSERT_TRUE(f->truncate(5).ok());  // "ok:lo": two lost bytes stay lost
  ASSERT_TRUE(append(*f, "again").ok());
  ASSERT_TRUE(f->sync().ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), std::string("ok:") + std::string(2, '\0') + "again");
}

TEST(SimFs, ACreatedFileExistsAfterPowerLossOnlyOnceItsDirectoryIsSynced) {
  Fixture t;
  auto f = t.open("/d/x");
  ASSERT_TRUE(append(*f, "data").ok());
  ASSERT_TRUE(f->sync().ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), std::nullopt) << "fdatasync alone does not make the name durable";
  ASSERT_TRUE(t.sim->sync_directory("/").ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), std::nullopt) << "another directory's sync does not either";
  ASSERT_TRUE(t.sim->sync_directory("/d").ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "data");
  // Not synced: gone after a reboot.
  auto g = t.open("/d/y");
  ASSERT_TRUE(g->sync().ok());
  t.sim->reboot();
  EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"x", 4}}));
  EXPECT_FALSE(t.sim->open("/d/y", OpenMode::read).ok());
  // The directories themselves always survive.
  EXPECT_TRUE(t.sim->list("/d").ok());
}

TEST(SimFs, ARenameNotFollowedByADirectorySyncLeavesTheOldMapping) {
  Fixture t;
  t.sim->put("/d/CURSOR", "old");
  auto tmp = t.open("/d/CURSOR.tmp", OpenMode::truncate);
  ASSERT_TRUE(append(*tmp, "new").ok());
  ASSERT_TRUE(tmp->sync().ok());
  ASSERT_TRUE(t.sim->rename("/d/CURSOR.tmp", "/d/CURSOR").ok());
  EXPECT_EQ(t.sim->live_contents("/d/CURSOR"), "new");
  EXPECT_EQ(t.sim->durable_contents("/d/CURSOR"), "old");
  EXPECT_EQ(t.sim->durable_contents("/d/CURSOR.tmp"), std::nullopt);
  t.sim->reboot();
  EXPECT_EQ(t.sim->live_contents("/d/CURSOR"), "old");
  EXPECT_EQ(t.sim->files("/d").size(), 1u);
  // With the directory synced, the new mapping is what survives.
  auto tmp2 = t.open("/d/CURSOR.tmp", OpenMode::truncate);
  ASSERT_TRUE(append(*tmp2, "new").ok());
  ASSERT_TRUE(tmp2->sync().ok());
  ASSERT_TRUE(t.sim->rename("/d/CURSOR.tmp", "/d/CURSOR").ok());
  ASSERT_TRUE(t.sim->sync_directory("/d").ok());
  t.sim->reboot();
  EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"CURSOR", 3}}));
  EXPECT_EQ(t.sim->live_contents("/d/CURSOR"), "new");
}

TEST(SimFs, ARemovalIsDurableOnlyOnceItsDirectoryIsSynced) {
  Fixture t;
  t.sim->put("/d/a", "aa");
  t.sim->put("/d/b", "bb");
  ASSERT_TRUE(t.sim->remove("/d/a").ok());
  ASSERT_TRUE(t.sim->remove("/d/b").ok());
  EXPECT_EQ(t.sim->durable_contents("/d/a"), "aa");
  t.sim->reboot();
  EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"a", 2}, {"b", 2}}));
  ASSERT_TRUE(t.sim->remove("/d/a").ok());
  ASSERT_TRUE(t.sim->sync_directory("/d").ok());
  t.sim->reboot();
  EXPECT_EQ(t.sim->files("/d"), (std::map<std::string, std::uint64_t>{{"b", 2}}));
}

TEST(SimFs, AnUnlinkedButDurableFileKeepsCollectingSyncsThroughItsOpenFile) {
  Fixture t;
  t.sim->put("/d/x", "a");
  auto f = t.open("/d/x");
  ASSERT_TRUE(t.sim->remove("/d/x").ok());  // not durable: the name comes back at reboot
  ASSERT_TRUE(append(*f, "b").ok());
  ASSERT_TRUE(f->sync().ok());
  EXPECT_EQ(t.sim->durable_contents("/d/x"), "ab") << "the inode is the same";
  t.sim->reboot();
  EXPECT_EQ(t.sim->live_contents("/d/x"), "ab");
}

TEST(SimFs, AVanishedFileIsGoneNowAndDurablyButOpenFilesKeepWorking) {
  Fixture t;
  t.sim->put("/d/x", "abc");
  auto f = t.open("/d/x");
  const std::uint64_t ops = t.sim->total_ops();
  EXPECT_TRUE(t.sim->vanish("/d/x"));
  EXPECT_FALSE(t.sim->vanish("/d/x"));
  EXPECT_EQ(t.sim->total_ops(), ops) << "not a call of the queue's";
  EXPECT_EQ(t.sim->live_contents("/d/x"), std::nullopt);
  EXPECT_EQ(t.sim->durable_contents("/d/x"), std::nullopt);
  EXPECT_TRUE(append(*f, "d").ok());
  EXPECT_EQ(read_all(*f), "abcd");
  ASSERT_TRUE(f->sync().ok());
  t.sim->reboot();
  EXPECT_TRUE(t.sim->files("/d").empty());
}

TEST(SimFs, ASecondLockIsLockedUntilTheFirstIsDestroyed) {
  Fixture t;
  auto first = t.sim->lock("/d/LOCK");
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ(t.sim->files("/d").count("LOCK"), 1u) << "lock creates its file";
  auto second = t.sim->lock("/d/LOCK");
  EXPECT_EQ(second.status().code(), Errc::locked);
  EXPECT_TRUE(contains(second.status().message(), "/d/LOCK")) << second.status().message();
  EXPECT_TRUE(t.sim->lock("/d/OTHER").ok()) << "another path is another lock";
  first->reset();
  EXPECT_TRUE(t.sim->lock("/d/LOCK").ok());
  EXPECT_FALSE(t.sim->lock("/nodir/LOCK").ok());
}

TEST(SimFs, CountsAreDeterministicForAFixedSequence) {
  auto run = [](std::uint64_t seed) {
    auto sim = SimFileSystem::create(seed);
    std::vector<std::tuple<SimOp, std::string, std::uint64_t, bool>> trace;
    sim->set_trace([&](SimOp op, const fs::path& p, std::uint64_t ordinal, bool failed) {
      trace.emplace_back(op, p.string(), ordinal, failed);
    });
    (void)sim->create_directories("/q");
    auto lock = sim->lock("/q/LOCK");
    for (int i = 0; i < 3; ++i) {
      const fs::path p = "/q/seg" + std::to_string(i);
      auto f = sim->open(p, OpenMode::truncate);
      if (!f.ok()) continue;  // counted, and the expected counts below will say so
      (void)append(**f, "page");
      (void)(*f)->sync();
      (void)(*f)->size();
      (void)sim->sync_directory("/q");
    }
    (void)sim->rename("/q/seg0", "/q/seg9");
    (void)sim->remove("/q/seg1");
    (void)sim->remove("/q/missing");  // fails, and counts
    (void)sim->list("/q");
    (void)sim->open("/q/missing", OpenMode::read);
    return std::pair(sim->counts(), trace);
  };
  const auto [counts, trace] = run(1);
  EXPECT_EQ(run(1), run(1));
  EXPECT_EQ(run(2).first, counts) << "the seed does not change what is counted";
  std::array<std::uint64_t, kSimOpKinds> expected{};
  auto at = [&](SimOp op) -> std::uint64_t& { return expected[static_cast<std::size_t>(op)]; };
  at(SimOp::mkdir) = 1;
  at(SimOp::lock) = 1;
  at(SimOp::open) = 4;
  at(SimOp::append) = 3;
  at(SimOp::sync) = 3;
  at(SimOp::size) = 3;
  at(SimOp::dir_sync) = 3;
  at(SimOp::rename) = 1;
  at(SimOp::remove) = 2;
  at(SimOp::list) = 1;
  EXPECT_EQ(counts, expected);
  ASSERT_EQ(trace.size(), 22u);
  EXPECT_EQ(trace[0], std::tuple(SimOp::mkdir, std::string("/q"), 1ull, false));
  EXPECT_EQ(trace[19], std::tuple(SimOp::remove, std::string("/q/missing"), 2ull, true));
  EXPECT_EQ(trace.back(), std::tuple(SimOp::open, std::string("/q/missing"), 4ull, true));
}

TEST(SimFs, ATracedOrdinalArmedOnAFreshRunFailsExactlyThatCall) {
  auto workload = [](SimFileSystem& sim) {
    std::vector<bool> failed;
    (void)sim.create_directories("/q");
    for (int i = 0; i < 4; ++i) {
      auto f = sim.open("/q/f" + std::to_string(i), OpenMode::append);
      failed.push_back(!f.ok());
      if (f.ok()) failed.push_back(!append(**f, "x").ok());
    }
    return failed;
  };
  auto probe = SimFileSystem::create();
  std::vector<std::uint64_t> opens;
  probe->set_trace([&](SimOp op, const fs::path& p, std::uint64_t ordinal, bool) {
    if (op == SimOp::open && p == "/q/f2") opens.push_back(ordinal);
  });
  (void)workload(*probe);
  ASSERT_EQ(opens, std::vector<std::uint64_t>{3});
  auto sim = SimFileSystem::create();
  sim->arm(SimFault{.op = SimOp::open, .nth = opens[0]});
  EXPECT_EQ(workload(*sim), (std::vector<bool>{false, false, false, false, true, false, false}));
}

TEST(SimFs, PerturbedConcurrentCallsStayConsistent) {
  auto sim = SimFileSystem::create(7);
  ASSERT_TRUE(sim->create_directories("/d").ok());
  sim->perturb(0.5);
  constexpr int kThreads = 4, kAppends = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto f = sim->open("/d/f" + std::to_string(t), OpenMode::append);
      if (!f.ok()) {
        ++failures;
        return;
      }
      for (int i = 0; i < kAppends; ++i) {
        if (!append(**f, "ab").ok()) ++failures;
        if (i % 50 == 0 && !(*f)->sync().ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  sim->perturb(0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(count_of(*sim, SimOp::append), std::uint64_t{kThreads * kAppends});
  for (const auto& [name, size] : sim->files("/d")) EXPECT_EQ(size, 2u * kAppends) << name;
}

// ======================================================================================
// A real queue on it
// ======================================================================================

// "item-<i>:" and 40-56 letters drawn from i: distinct, and compressing poorly enough that
// a few hundred of them fill several small segments.
std::string item(std::uint32_t i) {
  std::string s = "item-" + std::to_string(i) + ":";
  std::uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull;
  for (std::uint32_t k = 0; k < 40 + i % 17; ++k) {
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    s.push_back(static_cast<char>('a' + (x >> 40) % 26));
  }
  return s;
}

TEST(SimFsQueue, AChannelSpillsClosesAndReopensOnIt) {
  auto sim = SimFileSystem::create();
  Options o = small_options("/q");
  o.file_system = sim;
  o.max_memory_bytes = 512;
  o.page_bytes = 512;
  o.segment_bytes = 4096;
  constexpr std::uint32_t kItems = 400;
  {
    auto ch = channel<std::string>(o);
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    for (std::uint32_t i = 0; i < kItems; ++i) ASSERT_TRUE(ch->sender.send(item(i)).ok()) << i;
    ASSERT_TRUE(ch->sender.flush().ok());
    std::size_t segments = 0;
    for (const auto& [name, size] : sim->files("/q")) segments += name.ends_with(".seg");
    EXPECT_GE(segments, 2u) << "did not spill, or did not rotate";
    EXPECT_GT(ch->receiver.stats().disk_bytes, 0u);
    // Half now, half after a reopen.
    std::string got;
    for (std::uint32_t i = 0; i < kItems / 2; ++i) {
      ASSERT_TRUE(ch->receiver.try_recv(got).ok()) << i;
      ASSERT_EQ(got, item(i));
    }
    EXPECT_EQ(channel<std::string>(o).status().code(), Errc::locked) << "the directory lock holds on the sim";
  }
  EXPECT_GT(count_of(*sim, SimOp::append), 0u);
  EXPECT_GT(count_of(*sim, SimOp::dir_sync), 0u);
  auto ch = channel<std::string>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  ch->sender.close();
  std::vector<std::string> rest = recv_until_closed(ch->receiver);
  ASSERT_EQ(rest.size(), kItems / 2);
  for (std::uint32_t i = 0; i < kItems / 2; ++i) ASSERT_EQ(rest[i], item(kItems / 2 + i));
}

// A miniature of the explorer: for each cut point, run a SyncPolicy::always workload until
// the power goes, reboot, reopen, and find every acknowledged item, in order.
TEST(SimFsQueue, PowerCutDuringAnAlwaysRunLosesNoAcknowledgedItem) {
  constexpr std::uint32_t kItems = 30;
  // Where the cuts landed: while opening, after some acknowledgements, after all of them
  // (in the shutdown), or never (the run was shorter than the cut).
  std::uint64_t cuts_before_open = 0, cuts_with_acks = 0, cuts_at_shutdown = 0, no_cut = 0;
  for (std::uint64_t cut = 1; cut <= 80; ++cut) {
    for (Unsynced mode : {Unsynced::dropped, Unsynced::random_prefix}) {
      SCOPED_TRACE("cut after " + std::to_string(cut) + " mutating calls, " +
                   (mode == Unsynced::dropped ? "dropped" : "random_prefix"));
      auto sim = SimFileSystem::create(cut);
      Options o = small_options("/q");
      o.file_system = sim;
      o.sync = SyncPolicy::always;
      o.when_full = FullPolicy::fail;
      o.page_bytes = 512;
      o.segment_bytes = 2048;
      sim->power_cut_after(cut);
      std::vector<std::string> acked;
      {
        auto ch = channel<std::string>(o);
        if (!ch.ok()) {
          ++cuts_before_open;
        } else {
          for (std::uint32_t i = 0; i < kItems; ++i) {
            if (!ch->sender.send(item(i)).ok()) break;
            acked.push_back(item(i));
          }
        }
      }  // the handles go: a cut that has not happened yet may land in their shutdown
      if (!sim->frozen()) {
        ++no_cut;  // the whole run fit before the cut: nothing to test here
        continue;
      }
      cuts_with_acks += !acked.empty() && acked.size() < kItems;
      cuts_at_shutdown += acked.size() == kItems;
      sim->reboot(mode);
      auto ch = channel<std::string>(o);
      ASSERT_TRUE(ch.ok()) << ch.status().message();
      ch->sender.close();
      std::vector<std::string> back = recv_until_closed(ch->receiver);
      ASSERT_GE(back.size(), acked.size());
      // Everything acknowledged, in order, first; then at most the one send in flight.
      EXPECT_TRUE(std::equal(acked.begin(), acked.end(), back.begin()));
      EXPECT_LE(back.size(), acked.size() + 1);
      if (back.size() > acked.size()) { EXPECT_EQ(back.back(), item(static_cast<std::uint32_t>(acked.size()))); }
    }
  }
  std::cout << "cuts: " << cuts_before_open << " while opening, " << cuts_with_acks << " among the sends, "
            << cuts_at_shutdown << " in the shutdown, " << no_cut << " after the run\n";
  EXPECT_GT(cuts_before_open, 0u) << "no cut landed while opening";
  EXPECT_GT(cuts_with_acks, 20u) << "few cuts landed after an acknowledgement";
}

}  // namespace
}  // namespace hopper::test
