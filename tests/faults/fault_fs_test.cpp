// The fault-injecting file system itself: what survives its simulated power loss, and
// whether its faults happen as asked. The durability tests are only as good as this model.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "fault_fs.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<File> open_file(FileSystem& f, const fs::path& p, OpenMode mode = OpenMode::append) {
  auto r = f.open(p, mode);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(*r) : nullptr;
}

void append(File& f, const std::string& bytes) {
  Status s = f.append(bytes.data(), bytes.size());
  ASSERT_TRUE(s.ok()) << s.message();
}

TEST(FaultFs, UnsyncedBytesAreDroppedAndSyncedBytesKept) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  append(*f, "durable");
  ASSERT_TRUE(f->sync().ok());
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  append(*f, "-lost");
  EXPECT_EQ(read_file(dir / "a"), "durable-lost");  // the live file has everything
  f.reset();
  ffs->crash();
  EXPECT_EQ(read_file(dir / "a"), "durable");
  EXPECT_EQ(ffs->counters().syncs, 1u);
  EXPECT_EQ(ffs->counters().dir_syncs, 1u);
}

TEST(FaultFs, CreationNeedsADirectorySync) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "new");
  append(*f, "x");
  ASSERT_TRUE(f->sync().ok());  // the data is durable, the name is not
  f.reset();
  ffs->crash();
  EXPECT_FALSE(fs::exists(dir / "new"));

  f = open_file(*ffs, dir / "new");
  append(*f, "y");
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());  // the name is durable, the data is not
  f.reset();
  ffs->crash();
  ASSERT_TRUE(fs::exists(dir / "new"));
  EXPECT_EQ(read_file(dir / "new"), "");
}

TEST(FaultFs, RenameIsRevertedUntilTheDirectoryIsSynced) {
  TempDir dir;
  write_file(dir / "CURSOR", "old");  // existed before: durable as it is
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "CURSOR.tmp", OpenMode::truncate);
  append(*f, "new");
  ASSERT_TRUE(f->sync().ok());
  f.reset();
  ASSERT_TRUE(ffs->rename(dir / "CURSOR.tmp", dir / "CURSOR").ok());
  EXPECT_EQ(read_file(dir / "CURSOR"), "new");
  ffs->crash();
  EXPECT_EQ(read_file(dir / "CURSOR"), "old");
  EXPECT_FALSE(fs::exists(dir / "CURSOR.tmp"));  // its creation was never made durable

  f = open_file(*ffs, dir / "CURSOR.tmp", OpenMode::truncate);
  append(*f, "new");
  ASSERT_TRUE(f->sync().ok());
  f.reset();
  ASSERT_TRUE(ffs->rename(dir / "CURSOR.tmp", dir / "CURSOR").ok());
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  ffs->crash();
  EXPECT_EQ(read_file(dir / "CURSOR"), "new");
  EXPECT_FALSE(fs::exists(dir / "CURSOR.tmp"));
  EXPECT_EQ(ffs->counters().renames, 2u);
}

TEST(FaultFs, RemovalIsRevertedUntilTheDirectoryIsSynced) {
  TempDir dir;
  write_file(dir / "seg", "contents");
  auto ffs = FaultFileSystem::create();
  ASSERT_TRUE(ffs->remove(dir / "seg").ok());
  EXPECT_FALSE(fs::exists(dir / "seg"));
  ffs->crash();
  ASSERT_TRUE(fs::exists(dir / "seg"));
  EXPECT_EQ(read_file(dir / "seg"), "contents");

  ASSERT_TRUE(ffs->remove(dir / "seg").ok());
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  ffs->crash();
  EXPECT_FALSE(fs::exists(dir / "seg"));
}

TEST(FaultFs, DirectorySyncCoversOnlyItsOwnDirectory) {
  TempDir dir;
  fs::create_directories(dir / "sub");
  auto ffs = FaultFileSystem::create();
  open_file(*ffs, dir / "sub" / "f").reset();
  open_file(*ffs, dir / "g").reset();
  ASSERT_TRUE(ffs->sync_directory(dir.path() / "").ok());  // a trailing slash is the same directory
  ffs->crash();
  EXPECT_FALSE(fs::exists(dir / "sub" / "f"));
  EXPECT_TRUE(fs::exists(dir / "g"));
}

TEST(FaultFs, FailedWritesReportErrnoAndMayWriteAPrefix) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  ffs->fail_writes(1, ENOSPC);
  Status s = f->append("abcd", 4);
  EXPECT_EQ(s.code(), Errc::io_error);
  EXPECT_NE(s.message().find(std::strerror(ENOSPC)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find((dir / "a").native()), std::string::npos) << s.message();
  EXPECT_EQ(read_file(dir / "a"), "");

  ffs->fail_writes(2, EIO, /*partial=*/true);
  EXPECT_EQ(f->append("abcd", 4).code(), Errc::io_error);
  EXPECT_EQ(read_file(dir / "a"), "ab");
  EXPECT_EQ(f->append("efgh", 4).code(), Errc::io_error);
  EXPECT_EQ(read_file(dir / "a"), "abef");
  append(*f, "ij");  // the faults are used up
  EXPECT_EQ(read_file(dir / "a"), "abefij");
  EXPECT_EQ(ffs->counters().failed_writes, 3u);
  EXPECT_EQ(ffs->counters().appends, 1u);
}

TEST(FaultFs, FreeSpaceRunsOutAndComesBackWithTruncationAndRemoval) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  ffs->set_free_space(10);
  auto f = open_file(*ffs, dir / "a");
  append(*f, "12345678");
  Status s = f->append("abcd", 4);
  EXPECT_EQ(s.code(), Errc::io_error);
  EXPECT_NE(s.message().find(std::strerror(ENOSPC)), std::string::npos) << s.message();
  EXPECT_EQ(read_file(dir / "a"), "12345678ab");  // what fitted was written
  ASSERT_TRUE(f->truncate(8).ok());
  append(*f, "xy");
  EXPECT_EQ(f->append("z", 1).code(), Errc::io_error);
  f.reset();
  ASSERT_TRUE(ffs->remove(dir / "a").ok());
  auto g = open_file(*ffs, dir / "b");
  append(*g, "0123456789");
  EXPECT_EQ(g->append("z", 1).code(), Errc::io_error);
  ffs->set_free_space(std::nullopt);
  append(*g, "z");
}

TEST(FaultFs, AFailedSyncLosesTheDirtyBytesForGood) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  append(*f, "AAAA");
  ASSERT_TRUE(f->sync().ok());
  append(*f, "BBBB");
  ffs->fail_syncs(1);
  Status s = f->sync();
  EXPECT_EQ(s.code(), Errc::io_error);
  EXPECT_NE(s.message().find("fdatasync"), std::string::npos) << s.message();
  append(*f, "CCCC");
  ASSERT_TRUE(f->sync().ok());  // reports success, as Linux does once the error was seen
  EXPECT_EQ(read_file(dir / "a"), "AAAABBBBCCCC");  // the page cache still has it
  f.reset();
  ffs->crash();
  EXPECT_EQ(read_file(dir / "a"), std::string("AAAA") + std::string(4, '\0') + "CCCC");
  EXPECT_EQ(ffs->counters().failed_syncs, 1u);
  EXPECT_EQ(ffs->counters().syncs, 2u);
}

TEST(FaultFs, BytesRewrittenAfterTruncationAreNotPartOfALostWriteback) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  append(*f, "AAAA");
  ASSERT_TRUE(f->sync().ok());
  append(*f, "BBBB");
  ffs->fail_syncs(1);
  EXPECT_FALSE(f->sync().ok());
  ASSERT_TRUE(f->truncate(4).ok());  // what a writer does after a failure: cut back
  append(*f, "CCCC");
  ASSERT_TRUE(f->sync().ok());
  f.reset();
  ffs->crash();
  EXPECT_EQ(read_file(dir / "a"), "AAAACCCC");
}

// What write_cursor does: a sync of CURSOR.tmp fails, and the next commit opens it again
// with O_TRUNC, writes and syncs — that sync is good.
TEST(FaultFs, BytesWrittenAfterOpeningWithTruncationAreNotPartOfALostWriteback) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a", OpenMode::truncate);
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  append(*f, "AAAA");
  ffs->fail_syncs(1);
  EXPECT_FALSE(f->sync().ok());
  f = open_file(*ffs, dir / "a", OpenMode::truncate);
  append(*f, "BBBB");
  ASSERT_TRUE(f->sync().ok());
  f.reset();
  ffs->crash();
  EXPECT_EQ(read_file(dir / "a"), "BBBB");
}

TEST(FaultFs, DirectorySyncCanFail) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  open_file(*ffs, dir / "a").reset();
  ffs->fail_dir_syncs(1);
  EXPECT_EQ(ffs->sync_directory(dir.path()).code(), Errc::io_error);
  ffs->crash();
  EXPECT_FALSE(fs::exists(dir / "a"));
}

TEST(FaultFs, FrozenRefusesEveryMutationButReads) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  append(*f, "abc");
  ASSERT_TRUE(f->sync().ok());
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  ffs->freeze();
  EXPECT_TRUE(ffs->frozen());
  EXPECT_EQ(f->append("d", 1).code(), Errc::io_error);
  EXPECT_EQ(f->sync().code(), Errc::io_error);
  EXPECT_EQ(f->truncate(0).code(), Errc::io_error);
  EXPECT_EQ(ffs->rename(dir / "a", dir / "b").code(), Errc::io_error);
  EXPECT_EQ(ffs->remove(dir / "a").code(), Errc::io_error);
  EXPECT_EQ(ffs->sync_directory(dir.path()).code(), Errc::io_error);
  EXPECT_FALSE(ffs->open(dir / "c", OpenMode::append).ok());
  EXPECT_FALSE(ffs->open(dir / "a", OpenMode::truncate).ok());
  EXPECT_FALSE(ffs->lock(dir / "LOCK").ok());
  char buf[3];
  auto got = f->read_at(0, buf, 3);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(buf, 3), "abc");
  EXPECT_TRUE(ffs->open(dir / "a", OpenMode::read).ok());
  EXPECT_TRUE(ffs->list(dir.path()).ok());
  EXPECT_EQ(read_file(dir / "a"), "abc");
  EXPECT_EQ(ffs->counters().refused_frozen, 9u);
  f.reset();
  ffs->crash();
  EXPECT_FALSE(ffs->frozen());
  EXPECT_EQ(read_file(dir / "a"), "abc");
  auto g = open_file(*ffs, dir / "a");
  append(*g, "d");  // works again after the reboot
}

TEST(FaultFs, FreezeAfterLetsExactlyThatManyMutationsThrough) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  ffs->freeze_after(2);
  EXPECT_TRUE(f->append("1", 1).ok());
  EXPECT_TRUE(f->sync().ok());
  EXPECT_FALSE(ffs->frozen());
  EXPECT_EQ(f->append("2", 1).code(), Errc::io_error);
  EXPECT_TRUE(ffs->frozen());
  EXPECT_EQ(read_file(dir / "a"), "1");
}

TEST(FaultFs, TornCrashKeepsAPrefixOfTheUnsyncedTail) {
  bool saw_partial = false;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    TempDir dir;
    auto ffs = FaultFileSystem::create(seed);
    auto f = open_file(*ffs, dir / "a");
    append(*f, "base");
    ASSERT_TRUE(f->sync().ok());
    ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
    append(*f, "0123456789");
    f.reset();
    ffs->crash(Unsynced::random_prefix);
    const std::string got = read_file(dir / "a");
    const std::string full = "base0123456789";
    ASSERT_GE(got.size(), 4u);
    ASSERT_LE(got.size(), full.size());
    ASSERT_EQ(got, full.substr(0, got.size()));
    saw_partial |= got.size() > 4 && got.size() < full.size();
    // What survived is durable now: a second crash keeps it.
    ffs->crash();
    ASSERT_EQ(read_file(dir / "a"), got);
  }
  EXPECT_TRUE(saw_partial);
}

TEST(FaultFs, DurableContentsReportsWhatACrashWouldLeave) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  EXPECT_FALSE(ffs->durable_contents(dir / "a").has_value());
  append(*f, "xy");
  ASSERT_TRUE(f->sync().ok());
  ASSERT_TRUE(ffs->sync_directory(dir.path()).ok());
  append(*f, "z");
  EXPECT_EQ(ffs->durable_contents(dir / "a"), std::optional<std::string>("xy"));
}

TEST(FaultFs, HeldSyncsWaitWithoutBlockingOtherCalls) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto f = open_file(*ffs, dir / "a");
  append(*f, "x");
  ffs->hold_syncs();
  std::thread t([&] { EXPECT_TRUE(f->sync().ok()); });
  while (ffs->syncs_waiting() == 0) std::this_thread::yield();
  auto g = open_file(*ffs, dir / "b");  // other calls go on meanwhile
  append(*g, "y");
  EXPECT_EQ(ffs->counters().syncs, 0u);
  ffs->release_syncs();
  t.join();
  EXPECT_EQ(ffs->counters().syncs, 1u);
  EXPECT_EQ(ffs->syncs_waiting(), 0u);
}

TEST(FaultFs, LockStillExcludes) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  auto first = ffs->lock(dir / "LOCK");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(ffs->lock(dir / "LOCK").status().code(), Errc::locked);
}

}  // namespace
}  // namespace hopper::test
