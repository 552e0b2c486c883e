// Room reserved ahead of the appends when the queue syncs (SyncPolicy interval, always:
// File::preallocate, SpillWriter::kReserveStep): on the real disk the segment being
// written is longer than its pages, the room it did not use is cut when it is closed
// (rotation, shutdown), a crash leaves it as zeros that the next open cuts as a torn tail
// without losing an acknowledged item, and a file system that refuses (or a cut that
// fails) changes nothing that is delivered.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "forwarding_fs.hpp"
#include "storage/spill_writer.hpp"
#include "tagged.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;

Options always_on_disk(const fs::path& dir) {
  Options o;
  o.directory = dir;
  o.sync = SyncPolicy::always;
  o.segment_bytes = 4u << 20;
  return o;
}

// The end of the last page of a segment file (its bytes past that are not pages).
std::uint64_t pages_end(const fs::path& segment) {
  std::uint64_t end = 0;
  for (const PageInfo& p : pages_of(segment)) end = std::max(end, p.offset + p.bytes);
  return end;
}

// Closes the senders of a reopened queue and checks it gives back tagged(0, 0..n-1), in order.
void expect_all_back(Channel<std::string>& ch, int n) {
  ch.sender.close();
  const auto back = recv_until_closed(ch.receiver);
  ASSERT_EQ(back.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) EXPECT_EQ(back[i], tagged(0, i));
}

// Files whose preallocate() and truncate() can be made to fail (ENOSPC, EIO); the rest is
// the real disk.
class RefusingFileSystem : public ForwardingFileSystem {
 public:
  bool refuse_preallocate = false;
  bool refuse_truncate = false;
  int preallocations = 0;

  Result<std::unique_ptr<File>> open(const fs::path& path, OpenMode mode) override {
    return open_wrapped<RefusingFile>(path, mode, this);
  }

 private:
  class RefusingFile : public ForwardingFile {
   public:
    RefusingFile(std::unique_ptr<File> inner, RefusingFileSystem* owner) : ForwardingFile(std::move(inner)), owner_(owner) {}
    Status preallocate(std::uint64_t size) override {
      if (owner_->refuse_preallocate) return Status::IoError("fallocate", path().native(), ENOSPC);
      ++owner_->preallocations;
      return ForwardingFile::preallocate(size);
    }
    Status truncate(std::uint64_t size) override {
      if (owner_->refuse_truncate) return Status::IoError("truncate", path().native(), EIO);
      return ForwardingFile::truncate(size);
    }

   private:
    RefusingFileSystem* owner_;
  };
};

TEST(Preallocation, TheSegmentBeingWrittenHasRoomAheadAndLosesItAtShutdown) {
  TempDir dir;
  const Options o = always_on_disk(dir.path());
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i)).ok());
    const auto segs = segment_files(dir.path());
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_GE(fs::file_size(segs[0]), detail::SpillWriter::kReserveStep) << "no room was reserved ahead";
    EXPECT_GT(fs::file_size(segs[0]), pages_end(segs[0]));
  }
  // A clean shutdown cut the room: the file ends with its last page.
  const auto segs = segment_files(dir.path());
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(fs::file_size(segs[0]), pages_end(segs[0]));
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->receiver.stats().torn_bytes, 0u);
  EXPECT_TRUE(ch->receiver.damage_report().empty());
  expect_all_back(*ch, 20);
}

TEST(Preallocation, ARotatedSegmentEndsWithItsLastPage) {
  TempDir dir;
  Options o = always_on_disk(dir.path());
  o.page_bytes = 16u << 10;
  o.segment_bytes = 96u << 10;  // less than one reservation step: reserved up to the segment's size
  const std::string big(3000, 'x');
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch);
    int i = 0;
    while (segment_files(dir.path()).size() < 3) ASSERT_TRUE(ch->sender.send(big + std::to_string(i++)).ok());
    const auto segs = segment_files(dir.path());
    for (std::size_t k = 0; k + 1 < segs.size(); ++k)
      EXPECT_EQ(fs::file_size(segs[k]), pages_end(segs[k])) << segs[k] << " kept its reserved room after rotation";
    EXPECT_GT(fs::file_size(segs.back()), pages_end(segs.back())) << "the segment being written reserves room";
  }
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->receiver.stats().torn_bytes, 0u);
}

// Reserved room is disk in use: counted in disk_bytes, and never past max_disk_bytes (the
// writer reserves only what the budget has left).
TEST(Preallocation, ReservedRoomIsCountedAndStaysWithinTheDiskBudget) {
  TempDir dir;
  Options o = always_on_disk(dir.path());
  o.page_bytes = 16u << 10;
  o.segment_bytes = 200u << 10;
  o.max_disk_bytes = 300u << 10;
  o.when_full = FullPolicy::fail;
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  std::mt19937_64 rng(11);
  bool reserved = false;
  for (int i = 0; i < 1000; ++i) {
    std::string item(1000, '\0');  // incompressible: the pages fill the budget
    for (char& c : item) c = static_cast<char>(rng());
    const Status s = ch->sender.try_send(std::move(item));
    if (s.code() == Errc::full) break;
    ASSERT_TRUE(s.ok()) << describe(s);
    std::uint64_t on_disk = 0;
    for (const auto& seg : segment_files(dir.path())) {
      on_disk += fs::file_size(seg);
      reserved |= fs::file_size(seg) > pages_end(seg);
    }
    const Stats st = ch->receiver.stats();
    ASSERT_EQ(st.disk_bytes, on_disk) << "after item " << i;
    ASSERT_LE(on_disk, o.max_disk_bytes) << "after item " << i;
  }
  EXPECT_TRUE(reserved) << "no room was ever reserved: nothing was tested";
}

// A crash (here: the files as they are while the queue is open, copied elsewhere and opened
// there) leaves the reserved room as zeros after the last page: a torn tail, cut at open.
TEST(Preallocation, ACrashLeavesTheRoomAsATornTailAndLosesNoAcknowledgedItem) {
  TempDir dir, copy;
  const Options o = always_on_disk(dir.path());
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i)).ok());
  std::uint64_t zeros = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    if (e.path().filename() == "LOCK") continue;
    fs::copy_file(e.path(), copy.path() / e.path().filename());
    if (e.path().extension() == ".seg") zeros += fs::file_size(e.path()) - pages_end(e.path());
  }
  ASSERT_GT(zeros, 0u);
  Options c = o;
  c.directory = copy.path();
  auto after = open_channel<std::string>(c);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->receiver.stats().torn_bytes, zeros);
  EXPECT_EQ(after->receiver.stats().corrupt_pages, 0u);
  expect_all_back(*after, 50);
}

TEST(Preallocation, AFileSystemThatRefusesIsAppendedToAsWithout) {
  TempDir dir;
  auto rfs = std::make_shared<RefusingFileSystem>();
  rfs->refuse_preallocate = true;
  Options o = always_on_disk(dir.path());
  o.file_system = rfs;
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i)).ok());
    const auto segs = segment_files(dir.path());
    ASSERT_EQ(segs.size(), 1u);
    EXPECT_EQ(fs::file_size(segs[0]), pages_end(segs[0]));
    EXPECT_EQ(ch->receiver.stats().write_errors, 0u) << "a refused reservation is not a failed write";
  }
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  expect_all_back(*ch, 20);
}

// The cut at shutdown fails: the zeros stay, and the next open cuts them as a torn tail.
TEST(Preallocation, ACutThatFailsLeavesATornTailForTheNextOpen) {
  TempDir dir;
  auto rfs = std::make_shared<RefusingFileSystem>();
  Options o = always_on_disk(dir.path());
  o.file_system = rfs;
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i)).ok());
    EXPECT_GT(rfs->preallocations, 0);
    rfs->refuse_truncate = true;
  }
  const auto segs = segment_files(dir.path());
  ASSERT_EQ(segs.size(), 1u);
  const std::uint64_t zeros = fs::file_size(segs[0]) - pages_end(segs[0]);
  ASSERT_GT(zeros, 0u);
  rfs->refuse_truncate = false;
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  EXPECT_EQ(ch->receiver.stats().torn_bytes, zeros);
  expect_all_back(*ch, 20);
}

// Without syncing nothing is reserved (an fdatasync is what it saves).
TEST(Preallocation, NothingIsReservedWithoutSyncs) {
  TempDir dir;
  Options o = always_on_disk(dir.path());
  o.sync = SyncPolicy::none;
  o.max_memory_bytes = 64;  // every item spills
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i)).ok());
  ASSERT_TRUE(ch->sender.flush().ok());
  const auto segs = segment_files(dir.path());
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(fs::file_size(segs[0]), pages_end(segs[0]));
}

}  // namespace
}  // namespace hopper::test
