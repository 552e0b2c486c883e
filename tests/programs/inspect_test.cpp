// The read-only inspection API: what it reports about a queue directory, live or closed,
// intact or damaged, and that reading items through it consumes nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>
#include <hopper/inspect.hpp>

#include "storage/format.hpp"
#include "test_util.hpp"

namespace hopper {
namespace {

using test::TempDir;

std::string item(int i) { return "metric.number." + std::to_string(i) + " " + std::to_string(i * 7) + " 1700000000"; }

Options spill_options(const std::filesystem::path& dir) {
  Options o = test::small_options(dir);
  o.max_memory_bytes = 512;  // a handful of items; the rest spill
  o.manual_commit = false;
  return o;
}

// Sends `n` items and flushes; the receiver has taken none.
void fill(Sender<std::string>& s, int from, int n) {
  for (int i = from; i < from + n; ++i) ASSERT_TRUE(s.send(item(i)).ok());
  ASSERT_TRUE(s.flush().ok());
}

// Every item through ItemReader; sequence numbers must be consecutive unless `gaps` (damage).
std::vector<std::string> read_all(const std::filesystem::path& dir, ItemReader::Options o = {}, bool gaps = false) {
  auto r = ItemReader::open(dir, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  std::vector<std::string> out;
  if (!r.ok()) return out;
  StoredItem it;
  std::uint64_t expect_seq = 0;
  bool first = true;
  while (r->next(it)) {
    if (!first && gaps) { EXPECT_GE(it.seq, expect_seq); }
    if (!first && !gaps) { EXPECT_EQ(it.seq, expect_seq); }
    first = false;
    expect_seq = it.seq + 1;
    std::string s;
    EXPECT_TRUE(decode_item(it.bytes, s));
    out.push_back(s);
  }
  EXPECT_TRUE(r->status().ok()) << r->status().message();
  EXPECT_EQ(out.size(), r->total_items());
  return out;
}

TEST(Inspect, EmptyDirectory) {
  TempDir dir;
  auto r = inspect(dir.path());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->segments.empty());
  EXPECT_EQ(r->items, 0u);
  EXPECT_FALSE(r->oldest_seq.has_value());
  EXPECT_FALSE(r->cursor.has_value());
  EXPECT_FALSE(r->lock.held);
  EXPECT_TRUE(r->intact());
}

TEST(Inspect, NotADirectoryIsAnIoError) {
  TempDir dir;
  auto r = inspect(dir / "missing");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Errc::io_error);
  EXPECT_NE(r.status().message().find("missing"), std::string::npos);
  EXPECT_FALSE(ItemReader::open(dir / "missing").ok());
}

TEST(Inspect, LiveQueueWithoutTakingItsLock) {
  TempDir dir;
  auto ch = channel<std::string>(spill_options(dir.path()));
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  fill(ch->sender, 0, 2000);
  const Stats st = ch->receiver.stats();
  ASSERT_GT(st.disk_items, 0u);

  auto r = inspect(dir.path(), InspectOptions{.decode_pages = true, .progress = {}});
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->lock.held);
  ASSERT_TRUE(r->lock.pid.has_value());
  EXPECT_EQ(*r->lock.pid, static_cast<long>(::getpid()));
  EXPECT_EQ(r->items, st.disk_items);
  EXPECT_EQ(r->disk_bytes, st.disk_bytes);
  EXPECT_EQ(r->segments.size(), st.segments);
  EXPECT_EQ(r->pages, r->pages_decoded);
  EXPECT_GT(r->raw_bytes, 0u);
  ASSERT_TRUE(r->oldest_seq && r->newest_seq);
  EXPECT_EQ(*r->newest_seq, 1999u);
  EXPECT_EQ(*r->newest_seq - *r->oldest_seq + 1, r->items);
  EXPECT_EQ(r->undelivered_items, r->items);
  EXPECT_TRUE(r->damaged.empty());
  EXPECT_TRUE(r->intact());

  std::uint64_t seg_bytes = 0;
  for (const auto& s : r->segments) seg_bytes += std::filesystem::file_size(s.path);
  EXPECT_EQ(seg_bytes, r->disk_bytes);

  // The items on disk, read in order, are the last ones sent; reading consumed nothing.
  const std::vector<std::string> stored = read_all(dir.path());
  ASSERT_EQ(stored.size(), r->items);
  for (std::size_t i = 0; i < stored.size(); ++i) EXPECT_EQ(stored[i], item(static_cast<int>(*r->oldest_seq + i)));
  std::string got;
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(ch->receiver.try_recv(got).ok()) << i;
    ASSERT_EQ(got, item(i));
  }
}

TEST(Inspect, CursorAfterCleanShutdown) {
  TempDir dir;
  {
    auto ch = channel<std::string>(spill_options(dir.path()));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    fill(ch->sender, 0, 1000);
    std::string got;
    for (int i = 0; i < 300; ++i) ASSERT_TRUE(ch->receiver.try_recv(got).ok());
  }
  auto r = inspect(dir.path());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->lock.held);
  ASSERT_TRUE(r->cursor.has_value());
  EXPECT_EQ(*r->cursor, 300u);
  EXPECT_EQ(r->undelivered_items, 700u);
  EXPECT_EQ(*r->newest_seq, 999u);
  EXPECT_TRUE(r->intact());

  const auto pending = read_all(dir.path());
  ASSERT_EQ(pending.size(), 700u);
  EXPECT_EQ(pending.front(), item(300));
  EXPECT_EQ(pending.back(), item(999));
  // Without the cursor: whatever is still on disk, from the oldest page.
  const auto everything = read_all(dir.path(), ItemReader::Options{.from_cursor = false});
  EXPECT_GE(everything.size(), 700u);
  EXPECT_EQ(everything.back(), item(999));

  // The queue itself still returns exactly the undelivered items.
  auto ch = channel<std::string>(spill_options(dir.path()));
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  EXPECT_EQ(test::drain(ch->receiver), pending);
}

TEST(Inspect, DamagedPageIsARangeAndNotIntact) {
  TempDir dir;
  {
    auto ch = channel<std::string>(spill_options(dir.path()));
    ASSERT_TRUE(ch.ok());
    fill(ch->sender, 0, 3000);
  }
  const auto files = test::segment_files(dir.path());
  ASSERT_FALSE(files.empty());
  const auto offsets = test::page_offsets(files[0]);
  ASSERT_GE(offsets.size(), 3u);
  test::flip_byte(files[0], offsets[1] + format::kPageHeaderSize + 3);

  auto before = ItemReader::open(dir.path());
  ASSERT_TRUE(before.ok());
  auto r = inspect(dir.path());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->intact());
  ASSERT_EQ(r->damaged.size(), 1u);
  EXPECT_EQ(r->damaged[0].begin, offsets[1]);
  EXPECT_EQ(r->damaged[0].end, offsets[2]);
  EXPECT_EQ(r->corrupt_pages, 1u);
  EXPECT_EQ(r->segments[0].corrupt_pages, 1u);

  // Items of the other pages are still readable, and none twice.
  const auto stored = read_all(dir.path(), {}, true);
  EXPECT_LT(stored.size(), 3000u);
  EXPECT_EQ(stored.back(), item(2999));
}

TEST(Inspect, ChecksumValidButUndecodablePageOnlyFoundByDecoding) {
  TempDir dir;
  {
    auto ch = channel<std::string>(spill_options(dir.path()));
    ASSERT_TRUE(ch.ok());
    fill(ch->sender, 0, 1000);
  }
  const auto files = test::segment_files(dir.path());
  ASSERT_FALSE(files.empty());
  const auto offsets = test::page_offsets(files[0]);
  ASSERT_GE(offsets.size(), 2u);
  test::flip_byte(files[0], offsets[0] + format::kPageHeaderSize + 5);  // inside the zstd frame
  test::fix_page_checksum(files[0], offsets[0]);

  auto quick = inspect(dir.path());
  ASSERT_TRUE(quick.ok());
  auto deep = inspect(dir.path(), InspectOptions{.decode_pages = true, .progress = {}});
  ASSERT_TRUE(deep.ok());
  EXPECT_EQ(deep->pages + 1, quick->pages);
  EXPECT_FALSE(deep->intact());
  ASSERT_EQ(deep->damaged.size(), 1u);
  EXPECT_EQ(deep->damaged[0].begin, offsets[0]);
  EXPECT_NE(deep->damaged[0].reason.find("decode"), std::string::npos);
}

TEST(Inspect, TornTailOfAClosedQueueIsNotIntact) {
  TempDir dir;
  {
    auto ch = channel<std::string>(spill_options(dir.path()));
    ASSERT_TRUE(ch.ok());
    fill(ch->sender, 0, 1000);
  }
  const auto files = test::segment_files(dir.path());
  const auto last = files.back();
  const auto size = std::filesystem::file_size(last);
  test::truncate_file(last, size - 10);
  auto r = inspect(dir.path());
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r->tail_bytes, 0u);
  EXPECT_TRUE(r->damaged.empty());
  EXPECT_FALSE(r->lock.held);
  EXPECT_FALSE(r->intact());
}

TEST(Inspect, ProgressReachesTheTotal) {
  TempDir dir;
  {
    auto ch = channel<std::string>(spill_options(dir.path()));
    ASSERT_TRUE(ch.ok());
    fill(ch->sender, 0, 5000);
  }
  std::uint64_t last_done = 0, last_total = 0;
  int calls = 0;
  InspectOptions o;
  o.progress = [&](std::uint64_t done, std::uint64_t total) {
    EXPECT_GE(done, last_done);
    last_done = done;
    last_total = total;
    ++calls;
  };
  auto r = inspect(dir.path(), o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(calls, static_cast<int>(r->segments.size()));
  EXPECT_EQ(last_done, last_total);
  EXPECT_EQ(last_done, r->disk_bytes);
}

// Another thread keeps spilling (tails being appended) and receiving (segments being
// deleted) while inspection runs: it must never report damage, and every item it reads
// must be the one sent with that sequence number.
TEST(Inspect, WhileTheQueueIsWrittenAndDrained) {
  TempDir dir;
  Options o = spill_options(dir.path());
  o.segment_bytes = 16 << 10;
  auto ch = channel<std::string>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (int i = 0; i < 60000; ++i) ASSERT_TRUE(ch->sender.send(item(i)).ok());
    done = true;
  });
  std::thread consumer([&] {
    std::string got;
    int next = 0;
    while (next < 60000) {
      if (ch->receiver.recv_for(got, std::chrono::milliseconds(50)).ok()) {
        ASSERT_EQ(got, item(next));
        ++next;
        if (next % 5000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let a backlog form
      }
    }
  });
  int rounds = 0;
  std::uint64_t items_seen = 0;
  while (!done || rounds < 5) {
    auto r = inspect(dir.path(), InspectOptions{.decode_pages = true, .progress = {}});
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_TRUE(r->damaged.empty()) << r->damaged.front().reason;
    EXPECT_TRUE(r->lock.held);
    EXPECT_TRUE(r->intact());
    auto reader = ItemReader::open(dir.path(), ItemReader::Options{.from_cursor = false});
    ASSERT_TRUE(reader.ok());
    StoredItem it;
    std::optional<std::uint64_t> last;
    while (reader->next(it)) {
      if (last) { ASSERT_GT(it.seq, *last); }
      last = it.seq;
      std::string s;
      ASSERT_TRUE(decode_item(it.bytes, s));
      ASSERT_EQ(s, item(static_cast<int>(it.seq)));
      ++items_seen;
    }
    EXPECT_TRUE(reader->status().ok()) << reader->status().message();
    ++rounds;
  }
  producer.join();
  consumer.join();
  EXPECT_GT(items_seen, 0u);  // it did see spilled items while they were on disk
}

TEST(Inspect, ForeignFilesAreIgnored) {
  TempDir dir;
  test::write_file(dir / "README", "not ours");
  test::write_file(dir / "hopper-1.seg", "not a segment name");
  auto r = inspect(dir.path());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->segments.empty());
  EXPECT_TRUE(r->intact());
}

}  // namespace
}  // namespace hopper
