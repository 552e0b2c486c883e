// OpenPage and RawPage: item framing, and the disk budget's rule for taking one more item
// into the open page — without threads, files or a queue around it.
#include <gtest/gtest.h>

#include "engine/open_page.hpp"
#include "storage/format.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {
namespace {

Options options() {
  Options o;
  o.directory = "/nowhere";
  o.page_bytes = 64;
  o.segment_bytes = SpillWriter::bound(200);
  o.max_disk_bytes = 4 * o.segment_bytes;
  return o;
}

SpillVerdict offer(OpenPage& page, std::uint64_t seq, const std::string& item, bool sealed_full = false,
                   std::uint64_t disk_in_use = 0, std::uint64_t at_ms = 1000) {
  page.begin_item() += item;
  return page.end_item(seq, at_ms, sealed_full, disk_in_use);
}

TEST(OpenPage, ItemsAreFramedAsTheFormatSays) {
  OpenPage page(options());
  ASSERT_EQ(offer(page, 7, "ab"), SpillVerdict::accepted);
  ASSERT_EQ(offer(page, 8, ""), SpillVerdict::accepted);
  RawPage sealed = page.seal();
  EXPECT_EQ(sealed.first_seq, 7u);
  EXPECT_EQ(sealed.count, 2u);
  EXPECT_EQ(sealed.raw, std::string("\x02\0\0\0\0\0\0\0ab\0\0\0\0\0\0\0\0", 18));
  EXPECT_FALSE(page.open());
}

TEST(OpenPage, ItemsCarryTheirTimesAsOffsetsFromTheFirst) {
  OpenPage page(options());
  ASSERT_EQ(offer(page, 0, "a", false, 0, 5000), SpillVerdict::accepted);
  ASSERT_EQ(offer(page, 1, "b", false, 0, 5000 + 0x01020304), SpillVerdict::accepted);
  // A sender that read the clock just before another (and locked after it): framed as the base.
  ASSERT_EQ(offer(page, 2, "c", false, 0, 4990), SpillVerdict::accepted);
  RawPage sealed = page.seal();
  EXPECT_EQ(sealed.base_ms, 5000u);
  EXPECT_EQ(sealed.newest_ms, 5000u + 0x01020304);
  format::ItemCursor items(sealed.raw);
  const std::uint32_t want[] = {0, 0x01020304, 0};
  for (std::uint32_t offset : want) {
    ASSERT_TRUE(items.next().has_value());
    EXPECT_EQ(items.time_offset(), offset);
  }
}

TEST(OpenPage, AnItemTooLateForThePagesTimeFrameSealsItFirst) {
  OpenPage page(options());
  ASSERT_EQ(offer(page, 0, "a", false, 0, 1000), SpillVerdict::accepted);
  EXPECT_EQ(offer(page, 1, "b", false, 0, 1000 + format::kMaxTimeOffset), SpillVerdict::accepted);
  EXPECT_EQ(offer(page, 2, "c", false, 0, 1000 + format::kMaxTimeOffset + 1), SpillVerdict::need_seal);
  page.seal();
  EXPECT_EQ(offer(page, 2, "c", false, 0, 1000 + format::kMaxTimeOffset + 1), SpillVerdict::accepted);
}

TEST(OpenPage, ARefusedItemIsTakenBack) {
  const Options o = options();
  OpenPage page(o);
  ASSERT_EQ(offer(page, 0, "first"), SpillVerdict::accepted);
  EXPECT_EQ(offer(page, 1, std::string(300, 'x')), SpillVerdict::too_large);
  EXPECT_EQ(offer(page, 1, "x", /*sealed_full=*/true), SpillVerdict::behind);
  // The disk budget counts the page with the new item at its worst compressed size.
  const std::uint64_t worst = SpillWriter::bound(2 * format::kItemPrefixSize + 5 + 1);
  EXPECT_EQ(offer(page, 1, "x", false, o.max_disk_bytes - worst + 1), SpillVerdict::full);
  EXPECT_EQ(offer(page, 1, "x", false, o.max_disk_bytes - worst), SpillVerdict::accepted);
  RawPage sealed = page.seal();
  EXPECT_EQ(sealed.count, 2u);
  EXPECT_EQ(sealed.raw, std::string("\x05\0\0\0\0\0\0\0first\x01\0\0\0\0\0\0\0x", 22))
      << "refused items left nothing behind";
}

TEST(OpenPage, APageThatWouldOutgrowASegmentIsSealedFirst) {
  OpenPage page(options());
  ASSERT_EQ(offer(page, 0, std::string(150, 'a')), SpillVerdict::accepted);
  EXPECT_EQ(offer(page, 1, std::string(150, 'b')), SpillVerdict::need_seal);
  page.seal();
  EXPECT_EQ(offer(page, 1, std::string(150, 'b')), SpillVerdict::accepted);
}

TEST(OpenPage, FullOncePageBytesAreReached) {
  OpenPage page(options());
  // page_bytes is 64: a frame of 8 and 55 bytes, then one more frame.
  ASSERT_EQ(offer(page, 0, std::string(55, 'a')), SpillVerdict::accepted);
  EXPECT_FALSE(page.full());
  ASSERT_EQ(offer(page, 1, ""), SpillVerdict::accepted);
  EXPECT_TRUE(page.full());
}

}  // namespace
}  // namespace hopper::detail
