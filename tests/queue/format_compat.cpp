// Directories written by an earlier on-disk format still open and deliver. The fixture in
// tests/fixtures/format-1 was written by the last build of format version 1 (its program is
// make_fixture.c beside it): 240 string items through the C API with a 2 KiB memory budget,
// 3,000-byte segments and 700-byte pages, the first 40 received and committed (manual
// commit), the rest left queued. Nothing in it may change: it stands for files in the field.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <hopper/hopper.hpp>
#include <hopper/inspect.hpp>

#include "helpers.hpp"
#include "storage/format.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

const std::filesystem::path kFormat1 = std::filesystem::path(HOPPER_FIXTURES) / "format-1";

// The items make_fixture.c sends, numbered i.
std::string fixture_item(int i) {
  static const std::string tail = "abcdefghijklmnopqrstuvwxyz0123456789!";
  char head[32];
  std::snprintf(head, sizeof head, "format-1 item %03d ", i);
  return head + tail.substr(0, static_cast<std::size_t>(i % 37));
}

std::vector<std::string> fixture_items(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(fixture_item(i));
  return out;
}

// A copy of the fixture to open (opening writes: LOCK, CURSOR, segments).
void copy_fixture(const std::filesystem::path& to) {
  std::filesystem::create_directories(to);
  for (const auto& e : std::filesystem::directory_iterator(kFormat1)) {
    const std::string name = e.path().filename().native();
    if (name == "CURSOR" || format::parse_segment_file_name(name)) std::filesystem::copy_file(e.path(), to / name);
  }
}

// try_recv until it says something other than ok; returns that.
Errc receive_all_now(Receiver<std::string>& r, std::vector<std::string>& out) {
  std::string item;
  for (;;) {
    Status s = r.try_recv(item);
    if (!s.ok()) return s.code();
    out.push_back(item);
  }
}

Options fixture_options(const std::filesystem::path& dir) {
  Options o;
  o.directory = dir;
  o.max_memory_bytes = 2048;
  o.segment_bytes = 3000 + 64;  // room for a version 2 page of the same raw size
  o.page_bytes = 700;
  o.manual_commit = true;
  return o;
}

TEST(FormatCompat, TheFixtureIsFormatOne) {
  // Guards the fixture itself: were it rewritten by this build, the tests below would
  // prove nothing.
  const auto segments = segment_files(kFormat1);
  ASSERT_EQ(segments.size(), 2u);
  for (const auto& seg : segments) {
    const std::string image = read_file(seg);
    auto header = format::decode_segment_header(image);
    ASSERT_TRUE(header.has_value()) << seg;
    EXPECT_EQ(header->version, format::kVersion1) << seg;
    for (const PageInfo& p : pages_in(image)) EXPECT_EQ(image.substr(p.offset, 4), "HPG1") << seg;
  }
}

TEST(FormatCompat, AFormatOneDirectoryDeliversItsBacklogInOrder) {
  TempDir dir;
  copy_fixture(dir.path());
  auto ch = open<std::string>(fixture_options(dir.path()));
  EXPECT_EQ(ch.receiver.position(), 40u) << "its CURSOR";
  std::vector<std::string> got;
  ASSERT_EQ(receive_all_now(ch.receiver, got), Errc::empty);
  EXPECT_EQ(got, fixture_items(40, 240));
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.corrupt_pages + st.corrupt_items + st.items_missing + st.torn_bytes, 0u);
}

TEST(FormatCompat, FormatOneItemsNeverExpireAndHaveNoAge) {
  TempDir dir;
  copy_fixture(dir.path());
  Options o = fixture_options(dir.path());
  o.max_age = std::chrono::milliseconds(1);  // every item is older than that
  auto ch = open<std::string>(o);
  EXPECT_EQ(ch.receiver.stats().oldest_item_age_ms, 0u);
  std::vector<std::string> got;
  ASSERT_EQ(receive_all_now(ch.receiver, got), Errc::empty);
  EXPECT_EQ(got, fixture_items(40, 240));
  EXPECT_EQ(ch.receiver.stats().items_expired, 0u);
}

TEST(FormatCompat, NewItemsJoinAFormatOneBacklogInVersionTwoSegments) {
  TempDir dir;
  copy_fixture(dir.path());
  const Options o = fixture_options(dir.path());
  {
    auto ch = open<std::string>(o);
    std::string item;
    for (int i = 40; i < 100; ++i) {
      ASSERT_TRUE(ch.receiver.recv(item).ok());
      ASSERT_EQ(item, fixture_item(i));
    }
    ASSERT_TRUE(ch.receiver.commit().ok());
    for (int i = 240; i < 400; ++i) ASSERT_TRUE(ch.sender.send(fixture_item(i)).ok());
  }
  // Both versions side by side: segment 2 of version 1, new ones of version 2.
  std::vector<std::uint32_t> versions;
  for (const auto& seg : segment_files(dir.path()))
    versions.push_back(format::decode_segment_header(read_file(seg))->version);
  EXPECT_NE(std::find(versions.begin(), versions.end(), format::kVersion1), versions.end());
  EXPECT_NE(std::find(versions.begin(), versions.end(), format::kVersion), versions.end());
  auto in = inspect(dir.path());
  ASSERT_TRUE(in.ok()) << in.status().message();
  EXPECT_TRUE(in->intact());
  auto ch = open<std::string>(o);
  std::vector<std::string> got;
  ASSERT_EQ(receive_all_now(ch.receiver, got), Errc::empty);
  EXPECT_EQ(got, fixture_items(100, 400));
}

}  // namespace
}  // namespace hopper::test
