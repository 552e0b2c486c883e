// Spilling to segment files: flush writes the open page, Stats counts what went where,
// segments rotate and are deleted once read; and, through a gated file system, the
// receiver finishing a segment inside the writer's rotation window.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "forwarding_fs.hpp"
#include "helpers.hpp"
#include "storage/format.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

using namespace std::chrono_literals;

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
  EXPECT_EQ(st.bytes_uncompressed, 90u * (format::kItemPrefixSize + kU32));  // frame + cereal's u32
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

}  // namespace
}  // namespace hopper::test
