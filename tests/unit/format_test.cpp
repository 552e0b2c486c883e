// The on-disk format, one TEST per edge case (after leveldb's log_test.cc): encoding round
// trips; every header field's damage detected; a flipped byte anywhere in a page; a
// segment truncated at every offset; resynchronisation past damage; stale pages; segment
// file names; the CURSOR; item framing; the delivery order; and PageDecoder refusing pages
// that lie behind a valid checksum.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <xxhash.h>

#include <hopper/hopper.hpp>

#include "storage/cursor_file.hpp"
#include "storage/format.hpp"
#include "storage/recovery.hpp"
#include "storage/segment_reader.hpp"
#include "test_util.hpp"

namespace hopper {
namespace {

using detail::PageDecoder;
using detail::scan_segment;
using test::flip_byte;
using test::page_image;
using test::raw_payload;
using test::segment_header_image;
using test::zstd_frame;

constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();

const std::vector<std::string> kItems = {"alpha", "", "gamma gamma gamma", std::string(300, 'x'), "e"};

// A page of kItems for segment 3 starting at sequence 100, and its header fields.
std::string sample_page() { return page_image(3, 100, kItems); }

// A segment image: header of `number` then one page per entry of `pages` (each a list of
// items), sequence numbers running on from `first_seq`.
std::string segment_image(std::uint64_t number, const std::vector<std::vector<std::string>>& pages,
                          std::uint64_t first_seq = 0) {
  std::string image = segment_header_image(number);
  std::uint64_t seq = first_seq;
  for (const auto& items : pages) {
    image += page_image(number, seq, items);
    seq += items.size();
  }
  return image;
}

std::vector<std::vector<std::string>> four_pages() {
  return {{"a1", "a2", "a3"}, {"b1", std::string(200, 'b')}, {"c1"}, {"d1", "d2", "", "d4"}};
}

// ---------------------------------------------------------------- segment header

TEST(SegmentHeader, RoundTrip) {
  for (std::uint64_t n : {std::uint64_t{1}, std::uint64_t{42}, kMaxU64}) {
    const std::string b = segment_header_image(n);
    ASSERT_EQ(b.size(), format::kSegmentHeaderSize);
    auto h = format::decode_segment_header(b);
    ASSERT_TRUE(h.has_value()) << n;
    EXPECT_EQ(h->segment, n);
    EXPECT_EQ(h->version, format::kVersion);
  }
}

TEST(SegmentHeader, MagicIsTheDocumentedBytes) {
  const std::string b = segment_header_image(1);
  EXPECT_EQ(b.substr(0, 8), std::string("HOPRSEG\0", 8));
}

TEST(SegmentHeader, EveryFlippedByteDetected) {
  const std::string good = segment_header_image(7);
  for (std::size_t off = 0; off < good.size(); ++off) {
    std::string b = good;
    flip_byte(b, off);
    EXPECT_FALSE(format::decode_segment_header(b).has_value()) << "flipped byte " << off;
  }
}

TEST(SegmentHeader, ShortInputRejected) {
  const std::string good = segment_header_image(7);
  for (std::size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(format::decode_segment_header(good.substr(0, n)).has_value()) << n << " bytes";
}

TEST(SegmentHeader, UnknownVersionIsReportedAsFound) {
  // The header is intact (checksum matches), only its version is one this build does not
  // write: decoding reports it so recovery can refuse the file instead of calling it damage.
  auto h = format::decode_segment_header(segment_header_image(9, format::kVersion + 1));
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->version, format::kVersion + 1);
  EXPECT_EQ(h->segment, 9u);
}

// ---------------------------------------------------------------- page header

TEST(PageHeader, RoundTripOfEveryField) {
  format::PageHeader h;
  h.payload_len = 3;
  h.raw_len = 0x01020304;
  h.item_count = 0xfffffffe;
  h.first_seq = 0x1122334455667788ull;
  h.segment = kMaxU64 - 1;
  const std::string page = page_image(h, "xyz");
  ASSERT_EQ(page.size(), format::kPageHeaderSize + 3);
  auto p = format::parse_page_header(page);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->payload_len, 3u);
  EXPECT_EQ(p->raw_len, 0x01020304u);
  EXPECT_EQ(p->item_count, 0xfffffffeu);
  EXPECT_EQ(p->first_seq, 0x1122334455667788ull);
  EXPECT_EQ(p->segment, kMaxU64 - 1);
  EXPECT_TRUE(format::page_checksum_ok(page, std::string_view(page).substr(format::kPageHeaderSize)));
}

TEST(PageHeader, VersionTwoCarriesTheItemsTimes) {
  format::PageHeader h;
  h.payload_len = 3;
  h.first_seq = 9;
  h.segment = 2;
  h.base_ms = 0x0102030405060708ull;
  h.newest_ms = kMaxU64 - 2;
  const std::string page = page_image(h, "xyz");
  ASSERT_EQ(page.size(), 56u + 3);
  EXPECT_EQ(page.substr(0, 4), "HPG2");
  auto p = format::parse_page_header(page);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->version, format::kVersion);
  EXPECT_EQ(p->base_ms, 0x0102030405060708ull);
  EXPECT_EQ(p->newest_ms, kMaxU64 - 2);
  // The times are under the checksum.
  for (std::size_t off = 32; off < 48; ++off) {
    std::string b = page;
    flip_byte(b, off);
    EXPECT_FALSE(format::page_checksum_ok(b, std::string_view(b).substr(56))) << off;
  }
}

TEST(PageHeader, VersionOneIsStillRead) {
  format::PageHeader h;
  h.version = format::kVersion1;
  h.payload_len = 3;
  h.item_count = 4;
  h.first_seq = 77;
  h.segment = 5;
  const std::string page = page_image(h, "xyz");
  ASSERT_EQ(page.size(), 40u + 3);
  EXPECT_EQ(page.substr(0, 4), "HPG1");
  auto p = format::parse_page_header(page);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->version, format::kVersion1);
  EXPECT_EQ(p->header_size(), 40u);
  EXPECT_EQ(p->first_seq, 77u);
  EXPECT_EQ(p->base_ms, 0u);
  EXPECT_TRUE(format::page_checksum_ok(page, std::string_view(page).substr(40)));
  // A version 1 header is too short to be read as version 2: the magic decides.
  std::string relabelled = page;
  format::put_u32(relabelled.data(), format::kPageMagic);
  EXPECT_FALSE(format::parse_page_header(relabelled.substr(0, 43)).has_value() &&
               format::page_checksum_ok(relabelled, std::string_view(relabelled).substr(40)));
}

TEST(PageHeader, LittleEndianLayout) {
  format::PageHeader h;
  h.payload_len = 0;
  h.raw_len = 0x0a0b0c0d;
  h.item_count = 1;
  h.first_seq = 2;
  h.segment = 3;
  h.base_ms = 0x1112131415161718ull;
  h.newest_ms = 4;
  const std::string page = page_image(h, "");
  EXPECT_EQ(page.substr(0, 4), "HPG2");
  EXPECT_EQ(static_cast<unsigned char>(page[8]), 0x0d);
  EXPECT_EQ(static_cast<unsigned char>(page[11]), 0x0a);
  EXPECT_EQ(format::get_u64(page.data() + 16), 2u);
  EXPECT_EQ(format::get_u64(page.data() + 24), 3u);
  EXPECT_EQ(static_cast<unsigned char>(page[32]), 0x18);
  EXPECT_EQ(format::get_u64(page.data() + 40), 4u);
  EXPECT_EQ(format::get_u64(page.data() + 48), format::parse_page_header(page)->checksum);
  EXPECT_TRUE(format::page_checksum_ok(page, ""));
}

TEST(PageHeader, ParseNeedsAFullHeaderAndTheMagic) {
  const std::string page = sample_page();
  for (std::size_t n = 0; n < format::kPageHeaderSize; ++n)
    EXPECT_FALSE(format::parse_page_header(std::string_view(page).substr(0, n)).has_value()) << n;
  EXPECT_TRUE(format::parse_page_header(std::string_view(page).substr(0, format::kPageHeaderSize)).has_value());
  for (std::size_t off = 0; off < 4; ++off) {
    std::string b = page;
    flip_byte(b, off);
    EXPECT_FALSE(format::parse_page_header(b).has_value()) << "magic byte " << off;
  }
}

TEST(PageHeader, ChecksumCoversEveryHeaderField) {
  struct Field {
    const char* name;
    std::size_t begin, end;
  };
  const Field fields[] = {{"magic", 0, 4},       {"payload_len", 4, 8}, {"raw_len", 8, 12},
                          {"item_count", 12, 16}, {"first_seq", 16, 24}, {"segment", 24, 32},
                          {"checksum", 32, 40}};
  const std::string page = sample_page();
  for (const Field& f : fields) {
    for (std::size_t off = f.begin; off < f.end; ++off) {
      std::string b = page;
      flip_byte(b, off);
      EXPECT_FALSE(format::page_checksum_ok(b, std::string_view(b).substr(format::kPageHeaderSize)))
          << f.name << " byte " << off;
    }
  }
}

TEST(PageHeader, ChecksumCoversEveryPayloadByte) {
  const std::string page = sample_page();
  for (std::size_t off = format::kPageHeaderSize; off < page.size(); ++off) {
    std::string b = page;
    flip_byte(b, off);
    EXPECT_FALSE(format::page_checksum_ok(b, std::string_view(b).substr(format::kPageHeaderSize))) << off;
  }
}

TEST(PageHeader, ChecksumOfShortHeaderFails) {
  const std::string page = sample_page();
  EXPECT_FALSE(format::page_checksum_ok(std::string_view(page).substr(0, format::kPageHeaderSize - 1), ""));
}

// ---------------------------------------------------------------- items in a raw page

TEST(ItemCursor, WalksItemsIncludingEmptyOnes) {
  const std::string raw = raw_payload(kItems);
  format::ItemCursor cur(raw);
  for (const std::string& want : kItems) {
    auto got = cur.next();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, want);
  }
  EXPECT_FALSE(cur.next().has_value());
  EXPECT_TRUE(cur.ok());
  EXPECT_EQ(cur.offset(), raw.size());
}

TEST(ItemCursor, EmptyRawPageHasNoItems) {
  format::ItemCursor cur("");
  EXPECT_FALSE(cur.next().has_value());
  EXPECT_TRUE(cur.ok());
}

TEST(ItemCursor, PrefixCutShortIsMalformed) {
  const std::string raw = raw_payload({"abc"});
  for (std::size_t extra = 1; extra < format::kItemPrefixSize; ++extra) {
    const std::string b = raw + std::string(extra, '\0');
    format::ItemCursor cur(b);
    ASSERT_TRUE(cur.next().has_value());
    EXPECT_FALSE(cur.next().has_value());
    EXPECT_FALSE(cur.ok()) << extra << " stray bytes";
  }
}

TEST(ItemCursor, LengthRunningPastTheEndIsMalformed) {
  std::string raw = raw_payload({"abc", "defg"});
  raw.pop_back();  // the second item's length now claims one byte more than is left
  format::ItemCursor cur(raw);
  ASSERT_EQ(cur.next(), std::optional<std::string_view>("abc"));
  EXPECT_FALSE(cur.next().has_value());
  EXPECT_FALSE(cur.ok());
}

TEST(ItemCursor, HugeLengthIsMalformedNotAnOverflow) {
  std::string raw(8, '\0');
  format::put_u32(raw.data(), 0xffffffffu);
  format::ItemCursor cur(raw);
  EXPECT_FALSE(cur.next().has_value());
  EXPECT_FALSE(cur.ok());
}

// ---------------------------------------------------------------- item encoding (codec)

template <class T>
std::string encoded(const T& v) {
  std::string out;
  detail::encode(v, out);
  return out;
}

TEST(ItemCodec, RoundTripsOfTheStandardTypes) {
  const std::vector<std::string> strings = {"", "x", std::string(1000, 'y')};
  std::vector<std::string> s_out;
  ASSERT_TRUE(detail::decode(encoded(strings), s_out));
  EXPECT_EQ(s_out, strings);
  std::uint64_t u = 0;
  ASSERT_TRUE(detail::decode(encoded(std::uint64_t{0x0102030405060708ull}), u));
  EXPECT_EQ(u, 0x0102030405060708ull);
  std::pair<std::uint32_t, std::string> p;
  ASSERT_TRUE(detail::decode(encoded(std::make_pair(7u, std::string("seven"))), p));
  EXPECT_EQ(p, std::make_pair(7u, std::string("seven")));
}

// Numbers and strings are encoded without an archive (codec.hpp): the bytes must be the
// archive's, both ways, for every size class.
template <class T>
std::string archived(const T& v) {
  std::string out;
  detail::OutArchive ar(out);
  ar(v);
  return out;
}
template <class T>
bool archive_decoded(std::string_view bytes, T& out) {
  try {
    detail::InArchive ar(bytes);
    ar(out);
    return ar.remaining() == 0;
  } catch (const std::exception&) {
    return false;
  }
}

TEST(ItemCodec, DirectNumbersAndStringsAreTheArchivesBytes) {
  for (const std::string& s : {std::string(), std::string("a"), std::string(255, 'b'), std::string(70000, '\0')}) {
    EXPECT_EQ(encoded(s), archived(s)) << s.size();
    EXPECT_EQ(detail::encoded_size(s), archived(s).size());
    std::string back;
    ASSERT_TRUE(archive_decoded(encoded(s), back));
    EXPECT_EQ(back, s);
    ASSERT_TRUE(detail::decode(archived(s), back));
    EXPECT_EQ(back, s);
  }
  for (std::uint64_t u : {std::uint64_t{0}, std::uint64_t{1}, ~std::uint64_t{0}}) {
    EXPECT_EQ(encoded(u), archived(u));
    EXPECT_EQ(detail::encoded_size(u), 8u);
  }
  EXPECT_EQ(encoded(-3), archived(-3));
  EXPECT_EQ(encoded(2.5), archived(2.5));
  EXPECT_EQ(encoded(true), archived(true));
  EXPECT_EQ(encoded('z'), archived('z'));
  double d = 0;
  ASSERT_TRUE(detail::decode(archived(-0.125), d));
  EXPECT_EQ(d, -0.125);
  std::uint16_t small = 0;
  EXPECT_FALSE(detail::decode(archived(std::uint32_t{7}), small));  // the wrong width is not a T
}

TEST(ItemCodec, StringEncodingIsCerealsBinaryLayout) {
  // u64 length, then the bytes: what docs/format.md promises for std::string items.
  EXPECT_EQ(encoded(std::string("ab")), std::string("\x02\0\0\0\0\0\0\0ab", 10));
}

TEST(ItemCodec, TruncatedEncodingRefusedAtEveryLength) {
  const std::string full = encoded(std::vector<std::string>{"alpha", "beta", ""});
  std::vector<std::string> out;
  for (std::size_t n = 0; n < full.size(); ++n)
    EXPECT_FALSE(detail::decode(std::string_view(full).substr(0, n), out)) << n << " bytes";
}

TEST(ItemCodec, TrailingBytesRefused) {
  std::uint32_t v = 0;
  EXPECT_FALSE(detail::decode(encoded(std::uint32_t{5}) + "!", v));
  std::string s;
  EXPECT_FALSE(detail::decode(encoded(std::string("abc")) + std::string(1, '\0'), s));
}

TEST(ItemCodec, HugeContainerSizeRefusedWithoutAllocating) {
  // A size claiming more elements than bytes remain is damage: refused before any
  // allocation (a 2^60-element vector would throw bad_alloc or worse).
  for (std::uint64_t claimed : {std::uint64_t{1} << 60, std::uint64_t{1000}, ~std::uint64_t{0}}) {
    std::string bytes(8, '\0');
    format::put_u64(bytes.data(), claimed);
    bytes += "abc";
    std::vector<std::string> vs;
    EXPECT_FALSE(detail::decode(bytes, vs)) << claimed;
    std::string str;
    EXPECT_FALSE(detail::decode(bytes, str)) << claimed;
    std::vector<std::uint64_t> vu;
    EXPECT_FALSE(detail::decode(bytes, vu)) << claimed;
  }
}

// ---------------------------------------------------------------- PageDecoder

TEST(PageDecoder, DecodesAValidPage) {
  PageDecoder dec;
  std::string raw;
  Status s = dec.decode(sample_page(), 3, raw);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(raw, raw_payload(kItems));
}

TEST(PageDecoder, DecodesAPageOfZeroItems) {
  PageDecoder dec;
  std::string raw = "stale";
  Status s = dec.decode(page_image(1, 0, {}), 1, raw);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(raw.empty());
}

TEST(PageDecoder, IsReusableAcrossPages) {
  PageDecoder dec;
  std::string raw;
  for (int i = 0; i < 3; ++i) {
    const std::vector<std::string> items(static_cast<std::size_t>(i + 1), std::string(static_cast<std::size_t>(i * 50), 'q'));
    ASSERT_TRUE(dec.decode(page_image(5, 0, items), 5, raw).ok());
    EXPECT_EQ(raw, raw_payload(items));
  }
}

TEST(PageDecoder, FlippedByteAnywhereRejected) {
  const std::string page = sample_page();
  PageDecoder dec;
  std::string raw;
  for (std::size_t off = 0; off < page.size(); ++off) {
    std::string b = page;
    flip_byte(b, off);
    Status s = dec.decode(b, 3, raw);
    EXPECT_EQ(s.code(), Errc::corrupt) << "flipped byte " << off << ": " << s.message();
  }
}

TEST(PageDecoder, TruncatedPageRejected) {
  const std::string page = sample_page();
  PageDecoder dec;
  std::string raw;
  for (std::size_t n = 0; n < page.size(); ++n)
    EXPECT_EQ(dec.decode(std::string_view(page).substr(0, n), 3, raw).code(), Errc::corrupt) << n << " bytes";
}

TEST(PageDecoder, TrailingByteRejected) {
  PageDecoder dec;
  std::string raw;
  EXPECT_EQ(dec.decode(sample_page() + "!", 3, raw).code(), Errc::corrupt);
}

TEST(PageDecoder, StalePageOfAnotherSegmentRejected) {
  PageDecoder dec;
  std::string raw;
  Status s = dec.decode(sample_page(), 4, raw);
  EXPECT_EQ(s.code(), Errc::corrupt);
  EXPECT_NE(s.message().find("segment 3"), std::string::npos) << s.message();
}

// The pages below lie behind a checksum that matches: only the decoder's own checks can
// refuse them.
struct LyingPage {
  std::string raw = raw_payload(kItems);
  std::string frame = zstd_frame(raw);
  format::PageHeader header() const {
    format::PageHeader h;
    h.payload_len = static_cast<std::uint32_t>(frame.size());
    h.raw_len = static_cast<std::uint32_t>(raw.size());
    h.item_count = static_cast<std::uint32_t>(kItems.size());
    h.first_seq = 100;
    h.segment = 3;
    return h;
  }
};

Status decode(const std::string& page) {
  PageDecoder dec;
  std::string raw;
  return dec.decode(page, 3, raw);
}

TEST(PageDecoder, RawLenMismatchRejectedBehindValidChecksum) {
  LyingPage p;
  for (std::int64_t delta : {std::int64_t{-1}, std::int64_t{1}, -static_cast<std::int64_t>(p.raw.size())}) {
    auto h = p.header();
    h.raw_len = static_cast<std::uint32_t>(static_cast<std::int64_t>(h.raw_len) + delta);
    EXPECT_EQ(decode(page_image(h, p.frame)).code(), Errc::corrupt) << "raw_len off by " << delta;
  }
}

TEST(PageDecoder, RawLenAboveTheMaximumRejected) {
  LyingPage p;
  auto h = p.header();
  h.raw_len = format::kMaxRawPage + 1;
  EXPECT_EQ(decode(page_image(h, p.frame)).code(), Errc::corrupt);
}

TEST(PageDecoder, ItemCountMismatchRejectedBehindValidChecksum) {
  LyingPage p;
  for (std::uint32_t count : {0u, 4u, 6u, 0xffffffffu}) {
    auto h = p.header();
    h.item_count = count;
    Status s = decode(page_image(h, p.frame));
    EXPECT_EQ(s.code(), Errc::corrupt) << "item_count " << count;
  }
}

TEST(PageDecoder, PayloadThatIsNotAFrameRejectedBehindValidChecksum) {
  LyingPage p;
  std::string junk(p.frame.size(), 'J');
  EXPECT_EQ(decode(page_image(p.header(), junk)).code(), Errc::corrupt);
  std::string bad_magic = p.frame;
  flip_byte(bad_magic, 0);  // the zstd frame magic
  EXPECT_EQ(decode(page_image(p.header(), bad_magic)).code(), Errc::corrupt);
}

TEST(PageDecoder, TruncatedFrameRejectedBehindValidChecksum) {
  LyingPage p;
  for (std::size_t cut = 1; cut < p.frame.size(); ++cut) {
    const std::string frame = p.frame.substr(0, p.frame.size() - cut);
    auto h = p.header();
    h.payload_len = static_cast<std::uint32_t>(frame.size());
    EXPECT_EQ(decode(page_image(h, frame)).code(), Errc::corrupt) << cut << " bytes cut";
  }
}

TEST(PageDecoder, SecondFrameOrTrailingJunkInPayloadRejected) {
  LyingPage p;
  for (const std::string& payload : {p.frame + p.frame, p.frame + "junk", p.frame + std::string(1, '\0')}) {
    auto h = p.header();
    h.payload_len = static_cast<std::uint32_t>(payload.size());
    EXPECT_EQ(decode(page_image(h, payload)).code(), Errc::corrupt) << payload.size() << " payload bytes";
  }
}

TEST(PageDecoder, FrameOfMalformedItemsRejectedBehindValidChecksum) {
  // The frame is fine; what it holds does not tile into items.
  std::string raw = raw_payload({"abc", "defg"});
  raw.pop_back();
  const std::string frame = zstd_frame(raw);
  for (std::uint32_t count : {1u, 2u}) {
    format::PageHeader h;
    h.payload_len = static_cast<std::uint32_t>(frame.size());
    h.raw_len = static_cast<std::uint32_t>(raw.size());
    h.item_count = count;
    h.first_seq = 0;
    h.segment = 3;
    EXPECT_EQ(decode(page_image(h, frame)).code(), Errc::corrupt) << count;
  }
}

TEST(PageDecoder, PayloadLenMismatchRejected) {
  LyingPage p;
  auto h = p.header();
  h.payload_len += 1;  // claims a byte the page does not have
  EXPECT_EQ(decode(page_image(h, p.frame)).code(), Errc::corrupt);
}

TEST(PageDecoder, FixedUpChecksumAloneDoesNotMakeAPageValid) {
  // The helper used throughout the tests: after a field is changed on purpose,
  // fix_page_checksum makes the checksum agree again, and the decoder must still refuse.
  std::string page = sample_page();
  format::put_u32(page.data() + 12, 4);  // item_count 5 -> 4
  EXPECT_EQ(decode(page).code(), Errc::corrupt);
  test::fix_page_checksum(page, 0);
  EXPECT_TRUE(format::page_checksum_ok(page, std::string_view(page).substr(format::kPageHeaderSize)));
  Status s = decode(page);
  EXPECT_EQ(s.code(), Errc::corrupt);
  EXPECT_NE(s.message().find("count"), std::string::npos) << s.message();
}

// ---------------------------------------------------------------- scan_segment

TEST(ScanSegment, EmptyImage) {
  auto scan = scan_segment("", 1);
  EXPECT_FALSE(scan.header_ok);
  EXPECT_TRUE(scan.pages.empty());
  EXPECT_EQ(scan.cut, 0u);
  EXPECT_EQ(scan.torn_bytes, 0u);
  EXPECT_EQ(scan.corrupt_pages, 0u);
}

TEST(ScanSegment, HeaderOnly) {
  auto scan = scan_segment(segment_header_image(1), 1);
  EXPECT_TRUE(scan.header_ok);
  EXPECT_EQ(scan.version, format::kVersion);
  EXPECT_TRUE(scan.pages.empty());
  EXPECT_EQ(scan.cut, format::kSegmentHeaderSize);
  EXPECT_EQ(scan.torn_bytes, 0u);
  EXPECT_EQ(scan.corrupt_pages, 0u);
  EXPECT_TRUE(scan.problems.empty());
}

TEST(ScanSegment, FindsEveryPageInFileOrder) {
  const auto pages = four_pages();
  const std::string image = segment_image(5, pages, 1000);
  auto scan = scan_segment(image, 5);
  ASSERT_TRUE(scan.header_ok);
  ASSERT_EQ(scan.pages.size(), pages.size());
  std::uint64_t off = format::kSegmentHeaderSize, seq = 1000;
  for (std::size_t i = 0; i < pages.size(); ++i) {
    EXPECT_EQ(scan.pages[i].segment, 5u);
    EXPECT_EQ(scan.pages[i].offset, off);
    EXPECT_EQ(scan.pages[i].first_seq, seq);
    EXPECT_EQ(scan.pages[i].count, pages[i].size());
    off += scan.pages[i].bytes;
    seq += pages[i].size();
  }
  EXPECT_EQ(off, image.size());
  EXPECT_EQ(scan.cut, image.size());
  EXPECT_EQ(scan.torn_bytes, 0u);
  EXPECT_EQ(scan.corrupt_pages, 0u);
  EXPECT_TRUE(scan.problems.empty());
}

TEST(ScanSegment, TruncationAtEveryOffsetKeepsExactlyTheCompletePages) {
  const auto pages = four_pages();
  const std::string image = segment_image(2, pages);
  std::vector<std::uint64_t> ends;  // where each page ends
  std::uint64_t off = format::kSegmentHeaderSize;
  for (const auto& p : test::pages_in(image)) ends.push_back(off += p.bytes);
  ASSERT_EQ(ends.size(), pages.size());

  for (std::uint64_t cut = 0; cut <= image.size(); ++cut) {
    auto scan = scan_segment(std::string_view(image).substr(0, cut), 2);
    std::size_t complete = 0;
    std::uint64_t valid_end = format::kSegmentHeaderSize;
    while (complete < ends.size() && ends[complete] <= cut) valid_end = ends[complete++];
    ASSERT_EQ(scan.pages.size(), complete) << "cut at " << cut;
    EXPECT_EQ(scan.corrupt_pages, 0u) << "cut at " << cut;
    if (cut < format::kSegmentHeaderSize) {
      EXPECT_FALSE(scan.header_ok) << "cut at " << cut;
      EXPECT_EQ(scan.cut, 0u) << "cut at " << cut;
      EXPECT_EQ(scan.torn_bytes, cut) << "cut at " << cut;
    } else {
      EXPECT_TRUE(scan.header_ok) << "cut at " << cut;
      EXPECT_EQ(scan.cut, valid_end) << "cut at " << cut;
      EXPECT_EQ(scan.torn_bytes, cut - valid_end) << "cut at " << cut;
      EXPECT_EQ(scan.problems.empty(), cut == valid_end) << "cut at " << cut;
    }
  }
}

TEST(ScanSegment, DamagedPageInTheMiddleSkippedAndNextFound) {
  const auto pages = four_pages();
  const std::string good = segment_image(4, pages);
  const auto info = test::pages_in(good);
  // Every byte of the second page, header and payload: the page is dropped, its
  // neighbours survive.
  for (std::uint64_t off = info[1].offset; off < info[1].offset + info[1].bytes; ++off) {
    std::string image = good;
    flip_byte(image, off);
    auto scan = scan_segment(image, 4);
    ASSERT_EQ(scan.pages.size(), 3u) << "flipped byte " << off;
    EXPECT_EQ(scan.pages[0].offset, info[0].offset);
    EXPECT_EQ(scan.pages[1].offset, info[2].offset) << "flipped byte " << off;
    EXPECT_EQ(scan.pages[2].offset, info[3].offset);
    EXPECT_EQ(scan.corrupt_pages, 1u) << "flipped byte " << off;
    EXPECT_EQ(scan.torn_bytes, 0u) << "flipped byte " << off;
    EXPECT_EQ(scan.cut, image.size()) << "flipped byte " << off;
    EXPECT_FALSE(scan.problems.empty());
  }
}

TEST(ScanSegment, DamagedFirstPageSkipped) {
  const std::string good = segment_image(4, four_pages());
  const auto info = test::pages_in(good);
  std::string image = good;
  flip_byte(image, info[0].offset + 20);
  auto scan = scan_segment(image, 4);
  ASSERT_EQ(scan.pages.size(), 3u);
  EXPECT_EQ(scan.pages[0].offset, info[1].offset);
  EXPECT_EQ(scan.corrupt_pages, 1u);
}

TEST(ScanSegment, DamagedLastCompletePageIsCutAndCounted) {
  const std::string good = segment_image(4, four_pages());
  const auto info = test::pages_in(good);
  std::string image = good;
  flip_byte(image, info[3].offset + info[3].bytes - 1);
  auto scan = scan_segment(image, 4);
  ASSERT_EQ(scan.pages.size(), 3u);
  EXPECT_EQ(scan.cut, info[3].offset);
  EXPECT_EQ(scan.corrupt_pages, 1u);
  EXPECT_EQ(scan.torn_bytes, 0u);
}

// Items that do not compress: a page of them spans several 4 KiB units of the file.
std::vector<std::string> incompressible_items(std::size_t n, std::size_t bytes) {
  std::vector<std::string> items;
  std::uint64_t x = 0x9e3779b97f4a7c15u;
  for (std::size_t i = 0; i < n; ++i) {
    std::string item(bytes, '\0');
    for (char& c : item) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x | 1);  // never a zero byte
    }
    items.push_back(std::move(item));
  }
  return items;
}

// Under SyncPolicy::always the segment has room reserved ahead (zeros), so an append that
// SIGKILL cut short between two 4 KiB units leaves a page whose header and length are whole
// and whose end is zeros: torn (the writer died mid-append), not a damaged page.
TEST(ScanSegment, AnAppendCutShortIntoReservedRoomIsATornTail) {
  const std::string first = page_image(3, 0, {"a", "bc"});
  const std::string last = page_image(3, 2, incompressible_items(4, 4000));
  const std::string good = segment_header_image(3) + first + last;
  const std::uint64_t last_at = good.size() - last.size();
  const std::string room(64 * 1024, '\0');
  int cuts = 0;
  for (std::uint64_t cut = (last_at / 4096 + 1) * 4096; cut < good.size(); cut += 4096, ++cuts) {
    const std::string image = good.substr(0, cut) + std::string(good.size() - cut, '\0') + room;
    auto scan = scan_segment(image, 3);
    ASSERT_EQ(scan.pages.size(), 1u) << "cut at " << cut;
    EXPECT_EQ(scan.corrupt_pages, 0u) << "cut at " << cut;
    EXPECT_EQ(scan.torn_bytes, image.size() - last_at) << "cut at " << cut;
    EXPECT_EQ(scan.cut, last_at) << "cut at " << cut;
  }
  EXPECT_GE(cuts, 3);
  // Whole, with the room after it: nothing torn but the room.
  auto whole = scan_segment(good + room, 3);
  EXPECT_EQ(whole.pages.size(), 2u);
  EXPECT_EQ(whole.corrupt_pages, 0u);
  EXPECT_EQ(whole.torn_bytes, room.size());
}

// The same page damaged where a cut could not have done it (its last bytes written): still
// a damaged page, though zeros follow it.
TEST(ScanSegment, ADamagedLastPageBeforeReservedRoomIsCounted) {
  const std::string last = page_image(3, 2, incompressible_items(4, 4000));
  std::string image = segment_header_image(3) + page_image(3, 0, {"a", "bc"}) + last;
  const std::uint64_t last_at = image.size() - last.size();
  flip_byte(image, last_at + 5000);
  image += std::string(64 * 1024, '\0');
  auto scan = scan_segment(image, 3);
  ASSERT_EQ(scan.pages.size(), 1u);
  EXPECT_EQ(scan.corrupt_pages, 1u);
  EXPECT_EQ(scan.torn_bytes, 0u);
  EXPECT_EQ(scan.cut, last_at);
}

TEST(ScanSegment, TwoDamagedPagesInARow) {
  const std::string good = segment_image(4, four_pages());
  const auto info = test::pages_in(good);
  std::string image = good;
  flip_byte(image, info[1].offset + 41);
  flip_byte(image, info[2].offset + 41);
  auto scan = scan_segment(image, 4);
  ASSERT_EQ(scan.pages.size(), 2u);
  EXPECT_EQ(scan.pages[0].offset, info[0].offset);
  EXPECT_EQ(scan.pages[1].offset, info[3].offset);
  EXPECT_GE(scan.corrupt_pages, 1u);
  EXPECT_EQ(scan.cut, image.size());
}

TEST(ScanSegment, JunkBetweenPagesSkipped) {
  const auto pages = four_pages();
  std::string image = segment_header_image(6) + page_image(6, 0, pages[0]);
  std::string junk = "junk" + std::string(50, '\x5a');
  junk += "HPG1";  // a page magic that is not followed by a valid page
  junk += std::string(60, '\x01');
  image += junk;
  image += page_image(6, 3, pages[1]);
  auto scan = scan_segment(image, 6);
  ASSERT_EQ(scan.pages.size(), 2u);
  EXPECT_EQ(scan.pages[1].first_seq, 3u);
  EXPECT_EQ(scan.corrupt_pages, 1u);
  EXPECT_EQ(scan.torn_bytes, 0u);
  EXPECT_EQ(scan.cut, image.size());
}

TEST(ScanSegment, StalePageOfAnotherSegmentRejected) {
  // Bytes of segment 7 inside segment 8 (a reused or copied file): valid checksum, wrong
  // segment number; the pages around it are kept.
  std::string image = segment_header_image(8) + page_image(8, 0, {"a"}) + page_image(7, 1, {"stale"}) +
                      page_image(8, 1, {"b"});
  auto scan = scan_segment(image, 8);
  ASSERT_EQ(scan.pages.size(), 2u);
  for (const auto& p : scan.pages) EXPECT_EQ(p.segment, 8u);
  EXPECT_EQ(scan.pages[1].first_seq, 1u);
  EXPECT_EQ(scan.corrupt_pages, 1u);
}

TEST(ScanSegment, WholeImageOfAnotherSegmentYieldsNothing) {
  const std::string image = segment_image(1, four_pages());
  auto scan = scan_segment(image, 2);
  EXPECT_FALSE(scan.header_ok);
  EXPECT_TRUE(scan.pages.empty());
  EXPECT_FALSE(scan.problems.empty());
}

TEST(ScanSegment, DamagedSegmentHeaderStillFindsSelfValidatingPages) {
  // Each page carries its own checksum and segment number, so one flipped header byte
  // does not cost the pages; it is reported.
  const std::string good = segment_image(3, four_pages());
  for (std::size_t off = 0; off < format::kSegmentHeaderSize; ++off) {
    std::string image = good;
    flip_byte(image, off);
    auto scan = scan_segment(image, 3);
    EXPECT_FALSE(scan.header_ok) << off;
    EXPECT_EQ(scan.pages.size(), 4u) << off;
    EXPECT_FALSE(scan.problems.empty()) << off;
  }
}

TEST(ScanSegment, UnknownVersionReported) {
  std::string image = segment_header_image(3, format::kVersion + 1) + page_image(3, 0, {"x"});
  auto scan = scan_segment(image, 3);
  EXPECT_TRUE(scan.header_ok);
  EXPECT_EQ(scan.version, format::kVersion + 1);
}

TEST(ScanSegment, ZeroFilledTailIsCut) {
  // What a file system may show after a crash: the size grew, the data did not arrive.
  const std::string good = segment_image(3, four_pages());
  for (std::size_t zeros : {1u, 39u, 40u, 41u, 4096u}) {
    auto scan = scan_segment(good + std::string(zeros, '\0'), 3);
    EXPECT_EQ(scan.pages.size(), 4u) << zeros;
    EXPECT_EQ(scan.cut, good.size()) << zeros;
    EXPECT_EQ(scan.torn_bytes + (scan.corrupt_pages > 0 ? zeros : 0), zeros) << zeros;
  }
}

TEST(ScanSegment, PageClaimingHugePayloadDoesNotHideTheNextPage) {
  // A damaged payload_len must not be trusted to skip over good pages.
  const std::string good = segment_image(4, four_pages());
  const auto info = test::pages_in(good);
  std::string image = good;
  format::put_u32(image.data() + info[1].offset + 4, 0x7fffffff);
  auto scan = scan_segment(image, 4);
  ASSERT_EQ(scan.pages.size(), 3u);
  EXPECT_EQ(scan.pages[1].offset, info[2].offset);
  EXPECT_EQ(scan.torn_bytes, 0u);
  EXPECT_EQ(scan.corrupt_pages, 1u);
}

// ---------------------------------------------------------------- segment file names

TEST(SegmentFileName, RoundTrip) {
  for (std::uint64_t n : {std::uint64_t{1}, std::uint64_t{42}, std::uint64_t{1} << 40, kMaxU64}) {
    const std::string name = format::segment_file_name(n);
    EXPECT_EQ(name.size(), 31u) << name;
    EXPECT_EQ(format::parse_segment_file_name(name), n) << name;
  }
  EXPECT_EQ(format::segment_file_name(42), "hopper-00000000000000000042.seg");
  EXPECT_EQ(format::segment_file_name(kMaxU64), "hopper-18446744073709551615.seg");
}

TEST(SegmentFileName, LeadingZerosParsed) {
  EXPECT_EQ(format::parse_segment_file_name("hopper-00000000000000000007.seg"), 7u);
  EXPECT_EQ(format::parse_segment_file_name("hopper-10000000000000000000.seg"), 10000000000000000000ull);
}

TEST(SegmentFileName, NamesSortLikeNumbers) {
  const std::uint64_t ns[] = {1, 9, 10, 99, 100, 12345678901234ull, kMaxU64};
  for (std::size_t i = 1; i < std::size(ns); ++i)
    EXPECT_LT(format::segment_file_name(ns[i - 1]), format::segment_file_name(ns[i]));
}

TEST(SegmentFileName, WrongDigitCountRejected) {
  EXPECT_FALSE(format::parse_segment_file_name("hopper-42.seg"));
  EXPECT_FALSE(format::parse_segment_file_name("hopper-0000000000000000042.seg"));    // 19 digits
  EXPECT_FALSE(format::parse_segment_file_name("hopper-000000000000000000042.seg"));  // 21 digits
  EXPECT_FALSE(format::parse_segment_file_name("hopper-.seg"));
}

TEST(SegmentFileName, ZeroRejected) {
  EXPECT_FALSE(format::parse_segment_file_name("hopper-00000000000000000000.seg"));
}

TEST(SegmentFileName, OverflowRejected) {
  EXPECT_FALSE(format::parse_segment_file_name("hopper-18446744073709551616.seg"));
  EXPECT_FALSE(format::parse_segment_file_name("hopper-99999999999999999999.seg"));
}

TEST(SegmentFileName, NonDigitsRejected) {
  for (const char* name : {"hopper-0000000000000000004a.seg", "hopper-+0000000000000000042.seg",
                           "hopper--0000000000000000042.seg", "hopper- 0000000000000000042.seg",
                           "hopper-0000000000000000004 .seg", "hopper-0x000000000000000042.seg"})
    EXPECT_FALSE(format::parse_segment_file_name(name)) << name;
}

TEST(SegmentFileName, OtherFilesRejected) {
  for (const char* name : {"", "LOCK", "CURSOR", "CURSOR.tmp", ".", "..", "hopper-00000000000000000001.seg.tmp",
                           "xhopper-00000000000000000001.seg", "hopper-00000000000000000001.SEG",
                           "HOPPER-00000000000000000001.seg", "hopper_00000000000000000001.seg",
                           "hopper-00000000000000000001.se", "hopper-00000000000000000001seg",
                           "hopper-00000000000000000001.sex"})
    EXPECT_FALSE(format::parse_segment_file_name(name)) << '"' << name << '"';
}

TEST(SegmentFileName, EmbeddedNulRejected) {
  std::string name = format::segment_file_name(42);
  name[10] = '\0';
  EXPECT_FALSE(format::parse_segment_file_name(name));
}

// ---------------------------------------------------------------- CURSOR

TEST(Cursor, RoundTrip) {
  for (std::uint64_t n : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1} << 40, kMaxU64}) {
    const std::string b = format::encode_cursor(n);
    ASSERT_EQ(b.size(), format::kCursorSize);
    EXPECT_EQ(format::decode_cursor(b), n);
  }
}

TEST(Cursor, EveryFlippedByteDetected) {
  const std::string good = format::encode_cursor(12345);
  for (std::size_t off = 0; off < good.size(); ++off) {
    std::string b = good;
    flip_byte(b, off);
    EXPECT_FALSE(format::decode_cursor(b).has_value()) << "flipped byte " << off;
  }
}

TEST(Cursor, WrongSizeRejected) {
  const std::string good = format::encode_cursor(7);
  EXPECT_FALSE(format::decode_cursor(""));
  EXPECT_FALSE(format::decode_cursor(good.substr(0, good.size() - 1)));
  EXPECT_FALSE(format::decode_cursor(good + '\0'));
  EXPECT_FALSE(format::decode_cursor(good + good));
}

TEST(Cursor, UnknownVersionOrMagicRejectedEvenWithValidChecksum) {
  auto with = [](std::uint32_t magic, std::uint32_t version) {
    std::string b = format::encode_cursor(7);
    format::put_u32(b.data(), magic);
    format::put_u32(b.data() + 4, version);
    format::put_u64(b.data() + 16, XXH3_64bits(b.data(), 16));  // as the writer computes it
    return b;
  };
  EXPECT_EQ(format::decode_cursor(with(format::kCursorMagic, 1)), 7u);  // the recipe is right
  EXPECT_FALSE(format::decode_cursor(with(format::kCursorMagic, 2)));  // version 2 is 32 bytes
  EXPECT_FALSE(format::decode_cursor(with(format::kCursorMagic, 3)));
  EXPECT_FALSE(format::decode_cursor(with(format::kCursorMagic, 0)));
  EXPECT_FALSE(format::decode_cursor(with(format::kPageMagic, 1)));
}

TEST(Cursor, VersionTwoCarriesTheEnd) {
  const std::string b = format::encode_cursor(12, 40);
  ASSERT_EQ(b.size(), format::kCursorV2Size);
  const auto r = format::decode_cursor_record(b);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->position, 12u);
  EXPECT_EQ(r->end, 40u);
  EXPECT_FALSE(format::decode_cursor_record(format::encode_cursor(12))->end.has_value());
}

TEST(CursorFiles, TheLargerValidPositionAndEndWin) {
  using format::CursorRecord;
  EXPECT_FALSE(detail::combine_cursors(std::nullopt, std::nullopt).position.has_value());
  const auto only_durable = detail::combine_cursors(CursorRecord{7, 20}, std::nullopt);
  EXPECT_EQ(only_durable.position, 7u);
  EXPECT_EQ(only_durable.end, 20u);
  const auto advisory_ahead = detail::combine_cursors(CursorRecord{7, 20}, CursorRecord{9, 25});
  EXPECT_EQ(advisory_ahead.position, 9u);
  EXPECT_EQ(advisory_ahead.end, 25u);
  // An advisory position behind a durable commit never undoes it; a version 1 file has no end.
  const auto advisory_behind = detail::combine_cursors(CursorRecord{9, std::nullopt}, CursorRecord{3, 12});
  EXPECT_EQ(advisory_behind.position, 9u);
  EXPECT_EQ(advisory_behind.end, 12u);
}

// ---------------------------------------------------------------- item framing

TEST(ItemFraming, FramesWrittenAreTheOnesItemCursorReads) {
  std::string raw;
  for (const std::string& item : kItems) {
    const std::size_t mark = format::begin_item(raw);
    raw += item;
    EXPECT_EQ(format::item_bytes(raw, mark), item.size());
    format::end_item(raw, mark, 0);
  }
  // The documented layout: u32 length, u32 time offset, then the bytes.
  EXPECT_EQ(raw, raw_payload(kItems));
  format::ItemCursor cur(raw);
  for (const std::string& item : kItems) EXPECT_EQ(cur.next(), std::optional<std::string_view>(item));
  EXPECT_FALSE(cur.next());
  EXPECT_TRUE(cur.ok());
}

TEST(ItemFraming, TimeOffsetsComeBackItemByItem) {
  std::string raw;
  std::uint32_t offset = 0;
  for (const std::string& item : kItems) {
    const std::size_t mark = format::begin_item(raw);
    raw += item;
    format::end_item(raw, mark, offset);
    offset = offset * 3 + 0x01020305u;  // spans every byte of the field
  }
  format::ItemCursor cur(raw);
  offset = 0;
  for (const std::string& item : kItems) {
    ASSERT_EQ(cur.next(), std::optional<std::string_view>(item));
    EXPECT_EQ(cur.time_offset(), offset);
    offset = offset * 3 + 0x01020305u;
  }
}

TEST(ItemFraming, VersionOneFramesHaveNoTimes) {
  const std::string raw = raw_payload(kItems, format::kVersion1);
  format::ItemCursor cur(raw, format::kVersion1);
  for (const std::string& item : kItems) {
    ASSERT_EQ(cur.next(), std::optional<std::string_view>(item));
    EXPECT_EQ(cur.time_offset(), 0u);
  }
  EXPECT_FALSE(cur.next());
  EXPECT_TRUE(cur.ok());
  // Read with the other version's framing, the same bytes do not tile.
  format::ItemCursor wrong(raw);
  while (wrong.next()) {
  }
  EXPECT_FALSE(wrong.ok());
}

// ---------------------------------------------------------------- delivery order

format::PageRef page_ref(std::uint64_t segment, std::uint64_t first_seq, std::uint32_t count) {
  return format::PageRef{segment, 0, 0, first_seq, count};
}

TEST(DeliveryOrder, BySequenceNumberNotByFile) {
  const auto order = format::delivery_order({page_ref(2, 10, 5), page_ref(1, 0, 10), page_ref(3, 15, 1)}, 0);
  ASSERT_EQ(order.pages.size(), 3u);
  EXPECT_EQ(order.pages[0].ref.segment, 1u);
  EXPECT_EQ(order.pages[1].ref.segment, 2u);
  EXPECT_EQ(order.pages[2].ref.segment, 3u);
  EXPECT_EQ(order.items, 16u);
  EXPECT_EQ(order.covered, 16u);
  EXPECT_EQ(order.max_end, 16u);
  EXPECT_TRUE(order.gaps.empty());
}

TEST(DeliveryOrder, DeliveredPagesDropAndAStraddlingPageSkipsItsDeliveredPrefix) {
  const auto order = format::delivery_order({page_ref(1, 0, 10), page_ref(1, 10, 10), page_ref(2, 20, 5)}, 13);
  ASSERT_EQ(order.pages.size(), 2u);
  EXPECT_EQ(order.pages[0].ref.first_seq, 10u);
  EXPECT_EQ(order.pages[0].skip, 3u);
  EXPECT_EQ(order.pages[1].skip, 0u);
  EXPECT_EQ(order.items, 12u);
}

TEST(DeliveryOrder, OverlapsAreTrimmedAndDuplicatesDropped) {
  const auto order = format::delivery_order({page_ref(1, 0, 10), page_ref(2, 5, 10), page_ref(3, 2, 3)}, 0);
  ASSERT_EQ(order.pages.size(), 2u);  // [2, 5) lies inside [0, 10): a duplicate
  EXPECT_EQ(order.pages[1].ref.segment, 2u);
  EXPECT_EQ(order.pages[1].skip, 5u);
  EXPECT_EQ(order.items, 15u);
}

TEST(DeliveryOrder, GapsAreNumbersNoPageHolds) {
  const auto order = format::delivery_order({page_ref(1, 4, 2), page_ref(1, 9, 1), page_ref(1, 0, 0)}, 1);
  EXPECT_EQ(order.gaps, (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{1, 4}, {6, 9}}));
  EXPECT_EQ(order.items, 3u);
  EXPECT_EQ(order.covered, 10u);
}

TEST(DeliveryOrder, APositionPastEveryPageDeliversNothing) {
  const auto order = format::delivery_order({page_ref(1, 0, 10)}, 50);
  EXPECT_TRUE(order.pages.empty());
  EXPECT_EQ(order.items, 0u);
  EXPECT_EQ(order.covered, 50u);
  EXPECT_EQ(order.max_end, 50u);
}

TEST(SegmentHeader, ChecksumIsXxh3OfTheFirst24Bytes) {
  const std::string b = segment_header_image(11);
  EXPECT_EQ(format::get_u64(b.data() + 24), XXH3_64bits(b.data(), 24));
}

}  // namespace
}  // namespace hopper
