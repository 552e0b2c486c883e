// Options::max_age and the age and capacity figures of Stats: items past the age are passed
// over (counted, never returned) wherever they wait — in memory (the receiver's batch, the
// deque's front with manual_commit), in pages on disk item by item, whole pages by their
// header without being read — and across restarts, with the recovered times clamped to
// the open when they lie in its future. Real time: ages are a few hundred ms, pauses twice
// that, so a loaded machine delays the test but does not change its answer.
#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <hopper/hopper.hpp>

#include "helpers.hpp"
#include "storage/format.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kAge{300};
constexpr milliseconds kPastAge{700};  // a pause after which every item sent before it is past kAge

std::uint64_t wall_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// An item as the queue encodes it into a page.
std::string enc(const std::string& item) {
  std::string out;
  detail::encode(item, out);
  return out;
}

std::vector<std::string> tagged(const std::string& tag, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(tag + "-" + std::to_string(i));
  return out;
}

void send_all(Sender<std::string>& s, const std::vector<std::string>& items) {
  for (const std::string& item : items) ASSERT_TRUE(s.send(std::string(item)).ok()) << item;
}

// Receives until empty, one by one or (many) in batches of up to 7.
std::vector<std::string> receive_now(Receiver<std::string>& r, bool many) {
  std::vector<std::string> out;
  if (many) {
    while (r.try_recv_many(out, 7).ok()) {
    }
    return out;
  }
  std::string item;
  while (r.try_recv(item).ok()) out.push_back(item);
  return out;
}

Options memory_options(const std::filesystem::path& dir) {
  Options o = small_options(dir);
  o.max_memory_bytes = 64 << 10;
  o.max_age = kAge;
  return o;
}

// Memory small, pages small: everything past the first few items is spilled.
Options spill_options(const std::filesystem::path& dir) {
  Options o = small_options(dir);
  o.max_memory_bytes = 256;
  o.page_bytes = 256;
  o.segment_bytes = min_segment_for_page(256) * 3;
  o.max_age = kAge;
  return o;
}

struct Shape {
  bool manual_commit;  // no batch: the deque's front, one item at a time
  bool many;           // recv_many (take_ready) rather than recv
};
class MemoryExpiry : public ::testing::TestWithParam<Shape> {};

TEST_P(MemoryExpiry, ItemsPastTheAgeArePassedOverAndCounted) {
  TempDir dir;
  Options o = memory_options(dir.path());
  o.manual_commit = GetParam().manual_commit;
  auto ch = open<std::string>(o);
  const auto old_items = tagged("old", 20);
  send_all(ch.sender, old_items);
  std::this_thread::sleep_for(kPastAge);
  const auto fresh = tagged("fresh", 5);
  send_all(ch.sender, fresh);
  EXPECT_EQ(receive_now(ch.receiver, GetParam().many), fresh);
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_expired, old_items.size());
  std::uint64_t footprints = 0;
  for (const std::string& s : old_items) footprints += footprint(s);
  EXPECT_EQ(st.bytes_expired, footprints);
  EXPECT_EQ(st.items_received, fresh.size());
  EXPECT_EQ(ch.receiver.position(), old_items.size() + fresh.size()) << "the expired items are passed, not pending";
  if (o.manual_commit) {
    ASSERT_TRUE(ch.receiver.commit().ok());
    EXPECT_EQ(ch.receiver.stats().memory_bytes, 0u) << "expired items leave the budget";
  } else {
    EXPECT_EQ(st.memory_bytes, 0u) << "expired items leave the budget";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MemoryExpiry,
                         ::testing::Values(Shape{false, false}, Shape{false, true}, Shape{true, false},
                                           Shape{true, true}),
                         [](const auto& info) {
                           return std::string(info.param.manual_commit ? "ManualCommit" : "Batch") +
                                  (info.param.many ? "RecvMany" : "Recv");
                         });

TEST(MaxAge, OffByDefaultNothingExpires) {
  TempDir dir;
  Options o = memory_options(dir.path());
  o.max_age = milliseconds(0);
  auto ch = open<std::string>(o);
  const auto items = tagged("kept", 10);
  send_all(ch.sender, items);
  std::this_thread::sleep_for(kPastAge);
  EXPECT_EQ(receive_now(ch.receiver, false), items);
  EXPECT_EQ(ch.receiver.stats().items_expired, 0u);
}

TEST(MaxAge, SpilledItemsPastTheAgeArePassedOverAndTheirSegmentsGo) {
  TempDir dir;
  const Options o = spill_options(dir.path());
  auto ch = open<std::string>(o);
  const auto old_items = tagged("old", 200);
  send_all(ch.sender, old_items);
  ASSERT_TRUE(ch.sender.flush().ok());
  ASSERT_GT(ch.receiver.stats().pages_written, 3u) << "the test needs pages on disk";
  std::this_thread::sleep_for(kPastAge);
  const auto fresh = tagged("fresh", 3);
  send_all(ch.sender, fresh);
  EXPECT_EQ(receive_now(ch.receiver, false), fresh);
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_expired, old_items.size());
  EXPECT_GT(st.bytes_expired, 0u);
  EXPECT_EQ(st.corrupt_pages + st.corrupt_items + st.items_missing, 0u);
  EXPECT_EQ(st.disk_items, 0u);
  ch.sender.close();
  ch.receiver.close();
  EXPECT_TRUE(segment_files(dir.path()).empty()) << "segments of expired pages are removed as any read ones";
}

// Three segments of disk, refusing when full; filled with "old-N" items until it refuses
// with every page written (a sealed page counts at its worst compressed size until it is:
// a refusal then may turn into room once the writer catches up). Returns how many were
// accepted.
int fill_three_segments(const std::filesystem::path& dir, bool manual_commit, std::optional<Channel<std::string>>& ch) {
  Options o = spill_options(dir);
  o.max_disk_bytes = o.segment_bytes * 3;
  o.when_full = FullPolicy::fail;
  o.manual_commit = manual_commit;
  ch.emplace(open<std::string>(o));
  int sent = 0;
  for (;;) {
    const int before = sent;
    while (ch->sender.try_send("old-" + std::to_string(sent)).ok()) ++sent;
    EXPECT_TRUE(ch->sender.flush().ok());
    if (sent == before) return sent;
  }
}

// A full disk whose oldest segment is wholly past the age makes room by it, whatever the
// policy (here fail, which would otherwise refuse), and only by it: a segment with a page
// not yet past the age, or one the receiver has started, stays.
TEST(MaxAge, AFullDiskReclaimsASegmentWhollyPastTheAge) {
  for (const bool manual : {false, true}) {
    SCOPED_TRACE(manual ? "manual_commit" : "implicit commit");
    TempDir dir;
    std::optional<Channel<std::string>> opened;
    const int sent = fill_three_segments(dir.path(), manual, opened);
    Channel<std::string>& ch = *opened;
    ASSERT_GT(ch.receiver.stats().segments, 1u);
    EXPECT_EQ(ch.sender.try_send("refused").code(), Errc::full) << "full before the age passes";
    std::this_thread::sleep_for(kPastAge);
    ASSERT_TRUE(ch.sender.try_send("fresh").ok()) << "an expired segment made room";
    const Stats st = ch.receiver.stats();
    EXPECT_GT(st.items_expired, 0u);
    EXPECT_EQ(st.items_dropped, 0u);
    // Whatever is left of the old items expires as the receiver reaches it; the new one comes.
    EXPECT_EQ(receive_now(ch.receiver, false), std::vector<std::string>{"fresh"});
    EXPECT_EQ(ch.receiver.stats().items_expired, static_cast<std::uint64_t>(sent));
    EXPECT_EQ(ch.receiver.position(), static_cast<std::uint64_t>(sent) + 1);
  }
}

TEST(MaxAge, AFullDiskKeepsASegmentTheReceiverHasStarted) {
  TempDir dir;
  std::optional<Channel<std::string>> opened;
  fill_three_segments(dir.path(), true, opened);
  Channel<std::string>& ch = *opened;
  // Every memory item and the first from segment 1: handed out, not committed, so they
  // must come back after a restart.
  const std::uint64_t in_memory = ch.receiver.stats().memory_items;
  std::string item;
  for (std::uint64_t i = 0; i <= in_memory; ++i) ASSERT_TRUE(ch.receiver.try_recv(item).ok());
  std::this_thread::sleep_for(kPastAge);
  EXPECT_EQ(ch.sender.try_send("fresh").code(), Errc::full) << "the started segment is not reclaimed";
  EXPECT_EQ(ch.receiver.stats().items_expired, 0u);
  ch.sender.close();
  ch.receiver.close();
  const auto files = segment_files(dir.path());
  ASSERT_FALSE(files.empty());
  EXPECT_EQ(files.front().filename(), format::segment_file_name(1)) << "the started segment was kept";
}

TEST(MaxAge, AgeCountsAcrossARestart) {
  TempDir dir;
  Options o = spill_options(dir.path());
  o.max_age = milliseconds(0);
  const auto items = tagged("before", 100);
  {
    auto ch = open<std::string>(o);
    send_all(ch.sender, items);
  }
  std::this_thread::sleep_for(kPastAge);
  {
    // Without an age the backlog comes back whole (and the times in it do no harm)...
    Options keep = o;
    keep.manual_commit = true;  // ...and stays, for the next open
    auto ch = open<std::string>(keep);
    EXPECT_EQ(receive_now(ch.receiver, false), items);
  }
  o.max_age = kAge;
  auto ch = open<std::string>(o);
  EXPECT_GT(ch.receiver.stats().oldest_item_age_ms, static_cast<std::uint64_t>(kAge.count()));
  EXPECT_TRUE(receive_now(ch.receiver, false).empty()) << "accepted before the restart, past the age after it";
  EXPECT_EQ(ch.receiver.stats().items_expired, items.size());
}

// A segment written by hand: a page whose items are an hour old, whose payload is not a
// zstd frame at all (its checksum is right: recovery accepts it; reading it would fail),
// then a page of items accepted now.
std::filesystem::path write_old_and_fresh(const std::filesystem::path& dir, std::uint64_t old_ms,
                                          std::uint64_t fresh_ms) {
  format::PageHeader old;
  const std::string junk = "not a zstd frame, but its checksum is right";
  old.payload_len = static_cast<std::uint32_t>(junk.size());
  old.raw_len = 100;
  old.item_count = 4;
  old.first_seq = 0;
  old.segment = 1;
  old.base_ms = old_ms - 10;
  old.newest_ms = old_ms;
  std::string image = segment_header_image(1) + page_image(old, junk);
  image += page_image(1, 4, {enc(std::string("fresh-0")), enc(std::string("fresh-1"))},
                      format::kVersion, fresh_ms);
  std::filesystem::create_directories(dir);
  const auto path = dir / format::segment_file_name(1);
  write_file(path, image);
  return path;
}

TEST(MaxAge, WholePagesPastTheAgeAreSkippedByTheirHeaderUnread) {
  TempDir dir;
  write_old_and_fresh(dir.path(), wall_ms() - 3600 * 1000, wall_ms());
  Options o = small_options(dir.path());
  o.max_age = std::chrono::minutes(1);
  auto ch = open<std::string>(o);
  EXPECT_EQ(receive_now(ch.receiver, false), (std::vector<std::string>{"fresh-0", "fresh-1"}));
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.items_expired, 4u);
  EXPECT_EQ(st.corrupt_pages, 0u) << "the expired page was decompressed";
  EXPECT_EQ(st.corrupt_items, 0u);
}

TEST(MaxAge, WithoutAnAgeTheSamePageIsReadAndFoundDamaged) {
  // The control of the test above: the old page is only harmless because it is not read.
  TempDir dir;
  write_old_and_fresh(dir.path(), wall_ms() - 3600 * 1000, wall_ms());
  auto ch = open<std::string>(small_options(dir.path()));
  EXPECT_EQ(receive_now(ch.receiver, false), (std::vector<std::string>{"fresh-0", "fresh-1"}));
  EXPECT_EQ(ch.receiver.stats().corrupt_pages, 1u);
  EXPECT_EQ(ch.receiver.stats().items_expired, 0u);
}

TEST(MaxAge, TimesInTheFutureOfTheOpenExpireAsIfAcceptedAtTheOpen) {
  // Written by a clock a day ahead (set back since, or another machine's): without the clamp
  // these items would wait a day to expire.
  TempDir dir;
  const std::uint64_t tomorrow = wall_ms() + 24 * 3600 * 1000;
  std::filesystem::create_directories(dir.path());
  write_file(dir / format::segment_file_name(1),
             segment_header_image(1) +
                 page_image(1, 0, {enc(std::string("a")), enc(std::string("b"))},
                            format::kVersion, tomorrow));
  Options o = small_options(dir.path());
  o.max_age = kAge;
  {
    auto ch = open<std::string>(o);
    const Stats st = ch.receiver.stats();
    EXPECT_LT(st.oldest_item_age_ms, static_cast<std::uint64_t>(kAge.count())) << "as old as the open, no older";
    std::this_thread::sleep_for(kPastAge);
    EXPECT_TRUE(receive_now(ch.receiver, false).empty());
    EXPECT_EQ(ch.receiver.stats().items_expired, 2u);
  }
}

TEST(MaxAge, VersionOnePagesHaveNoTimeAndNeverExpire) {
  TempDir dir;
  std::filesystem::create_directories(dir.path());
  write_file(dir / format::segment_file_name(1),
             segment_header_image(1, format::kVersion1) +
                 page_image(1, 0, {enc(std::string("v1"))}, format::kVersion1));
  Options o = small_options(dir.path());
  o.max_age = milliseconds(1);
  auto ch = open<std::string>(o);
  EXPECT_EQ(ch.receiver.stats().oldest_item_age_ms, 0u) << "unknown, not a guess";
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(receive_now(ch.receiver, false), std::vector<std::string>{"v1"});
}

TEST(MaxAge, ANegativeAgeIsRefusedByName) {
  TempDir dir;
  Options o = small_options(dir.path());
  o.max_age = milliseconds(-5);
  auto ch = channel<std::string>(o);
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::invalid_argument);
  EXPECT_NE(ch.status().message().find("Options::max_age"), std::string::npos) << ch.status().message();
}

// ---- Stats: age and capacity

TEST(AgeStats, CapacitiesAreTheBudgets) {
  TempDir dir;
  const Options o = spill_options(dir.path());
  auto ch = open<std::string>(o);
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.memory_capacity_bytes, o.max_memory_bytes);
  EXPECT_EQ(st.disk_capacity_bytes, o.max_disk_bytes);
  EXPECT_EQ(st.oldest_item_age_ms, 0u) << "nothing waits";
}

// The oldest waiting item's age, wherever it waits: memory (batch or deque), the open page,
// sealed pages, pages on disk, the page being read.
TEST(AgeStats, TheOldestWaitingItemsAgeWhereverItWaits) {
  for (const bool spill : {false, true}) {
    SCOPED_TRACE(spill ? "spilled" : "in memory");
    TempDir dir;
    Options o = spill ? spill_options(dir.path()) : memory_options(dir.path());
    o.max_age = milliseconds(0);
    auto ch = open<std::string>(o);
    send_all(ch.sender, tagged("first", spill ? 100 : 3));
    std::this_thread::sleep_for(milliseconds(400));
    send_all(ch.sender, tagged("second", spill ? 100 : 3));
    Stats st = ch.receiver.stats();
    EXPECT_GE(st.oldest_item_age_ms, 350u);
    EXPECT_LT(st.oldest_item_age_ms, 60000u);
    // Take the first items: what waits now was sent after the pause.
    std::string item;
    for (int i = 0; i < (spill ? 100 : 3); ++i) ASSERT_TRUE(ch.receiver.try_recv(item).ok());
    EXPECT_EQ(item, spill ? "first-99" : "first-2");
    st = ch.receiver.stats();
    EXPECT_LT(st.oldest_item_age_ms, 350u) << "still counting an item already received";
    receive_now(ch.receiver, false);
    EXPECT_EQ(ch.receiver.stats().oldest_item_age_ms, 0u);
  }
}

// ---- a property: whatever the mix of memory and disk, receives and pauses, exactly the
// items that waited past the age when their turn came are passed over, the rest arrive in
// order, and every one is accounted for.

// Each case pauses for real (up to three times kPastAge): a dozen cases by default, not the
// usual hundred (HOPPER_AGE_CASES sets it).
TEST(MaxAgeProperty, ExactlyTheItemsLeftWaitingPastTheAgeExpire) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  params.maxSuccess = static_cast<int>(env_scale("HOPPER_AGE_CASES", 12));
  params.maxSize = 100;
  rc::detail::TestMetadata metadata;
  metadata.id = "MaxAgeProperty/ExactlyTheItemsLeftWaitingPastTheAgeExpire";
  metadata.description = metadata.id;
  const auto result = rc::detail::checkTestable(
      []() {
        TempDir dir;
        Options o = *rc::gen::element(spill_options(dir.path()), memory_options(dir.path()));
        o.manual_commit = *rc::gen::arbitrary<bool>();
        auto ch = open<std::string>(o);
        const int rounds = *rc::gen::inRange(1, 4);
        std::vector<std::string> expect;
        std::vector<std::string> got;
        std::vector<std::string> waiting;  // sent, not yet received
        std::uint64_t expired = 0;
        std::uint64_t sent = 0;
        for (int round = 0; round < rounds; ++round) {
          const int n = *rc::gen::inRange(0, 120);
          for (int i = 0; i < n; ++i) {
            std::string item = "r" + std::to_string(round) + "-" + std::to_string(i) +
                               std::string(static_cast<std::size_t>(*rc::gen::inRange(0, 40)), 'x');
            RC_ASSERT(ch.sender.send(std::string(item)).ok());
            waiting.push_back(std::move(item));
            ++sent;
          }
          // Receive some now: they are young.
          const auto take = static_cast<std::size_t>(*rc::gen::inRange<std::size_t>(0, waiting.size() + 1));
          for (std::size_t i = 0; i < take; ++i) {
            std::string item;
            RC_ASSERT(ch.receiver.try_recv(item).ok());
            got.push_back(item);
          }
          expect.insert(expect.end(), waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(take));
          waiting.erase(waiting.begin(), waiting.begin() + static_cast<std::ptrdiff_t>(take));
          if (*rc::gen::arbitrary<bool>()) {
            // A pause past the age: everything left waiting expires.
            std::this_thread::sleep_for(kPastAge);
            expired += waiting.size();
            waiting.clear();
          }
        }
        for (const std::string& item : receive_now(ch.receiver, *rc::gen::arbitrary<bool>())) got.push_back(item);
        expect.insert(expect.end(), waiting.begin(), waiting.end());
        RC_ASSERT(got == expect);
        const Stats st = ch.receiver.stats();
        RC_ASSERT(st.items_expired == expired);
        RC_ASSERT(st.items_received == got.size());
        RC_ASSERT(ch.receiver.position() == sent);
        RC_ASSERT(st.corrupt_items + st.corrupt_pages + st.items_missing == 0u);
      },
      metadata, params);
  if (!result.template is<rc::detail::SuccessResult>()) {
    std::ostringstream why;
    rc::detail::printResultMessage(result, why);
    FAIL() << why.str();
  }
}

}  // namespace
}  // namespace hopper::test
