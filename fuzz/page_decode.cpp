// Fuzz target page_decode: arbitrary bytes through the page decoder (detail::PageDecoder)
// and through the item layer (format::ItemCursor, detail::decode<T>).
//
// Input: one selector byte, then the bytes.
//   selector bit 0: the decoder expects the segment number the page header claims (so a
//                   page whose checksum holds gets through); else a number from the input.
// Oracles:
//   - PageDecoder accepts exactly the pages that page_oracle.cpp (written from the grammar
//     in docs/format.md) accepts, and then yields the same raw bytes;
//   - it never grows its output buffer beyond what the payload can decompress to
//     (ZSTD_decompressBound), whatever the header claims: a page's memory is bounded by
//     its bytes, not by a length field;
//   - ItemCursor over any bytes returns items that lie inside them, in order, and reports
//     a malformed tail as !ok();
//   - decode<T> either refuses, or accepts bytes that are exactly encode<T> of the value.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_decompressBound (exported by libzstd.so)
#include <zstd.h>

#include <hopper/hopper.hpp>

#include "byte_source.hpp"
#include "check.hpp"
#include "storage/format.hpp"
#include "page_oracle.hpp"
#include "storage/segment_reader.hpp"

namespace {

using namespace hopper;

// decode<T> accepts only canonical encodings: re-encoding the value gives the bytes back.
template <class T>
void round_trip(std::string_view bytes) {
  T value{};
  if (!detail::decode(bytes, value)) return;
  std::string again;
  detail::encode(value, again);
  HOPPER_FUZZ_CHECK(again == bytes, "decode accepted " + std::to_string(bytes.size()) +
                                        " bytes that do not re-encode to themselves (" +
                                        std::to_string(again.size()) + " bytes)");
}

void items_through_every_type(std::string_view item) {
  round_trip<std::string>(item);
  round_trip<std::uint64_t>(item);
  round_trip<std::vector<std::string>>(item);
  round_trip<std::vector<std::uint32_t>>(item);
  round_trip<std::pair<std::uint32_t, std::string>>(item);
  round_trip<std::vector<std::vector<std::uint8_t>>>(item);
}

void cursor_over(std::string_view raw, std::uint32_t version) {
  format::ItemCursor cur(raw, version);
  std::size_t end = 0;
  while (auto item = cur.next()) {
    HOPPER_FUZZ_CHECK(item->data() >= raw.data() + end + format::item_prefix_size(version) &&
                          item->data() + item->size() <= raw.data() + raw.size(),
                      "ItemCursor returned bytes outside its input or out of order");
    end = static_cast<std::size_t>(item->data() + item->size() - raw.data());
    HOPPER_FUZZ_CHECK(cur.offset() == end, "ItemCursor offset is not the end of the item it returned");
    items_through_every_type(*item);
  }
  HOPPER_FUZZ_CHECK(cur.ok() == (cur.offset() == raw.size()), "ItemCursor stopped early without reporting it");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::ByteSource in(data, size);
  const std::uint8_t selector = in.u8();
  std::uint64_t expected_segment = (selector & 1) ? 0 : in.u64();
  const std::string page = in.rest();
  if (selector & 1)
    if (auto h = format::parse_page_header(page)) expected_segment = h->segment;

  static detail::PageDecoder decoder;  // reused, as the reader reuses it: state must not leak
  std::string raw = "left over from an earlier page";
  const std::size_t capacity_before = raw.capacity();
  const Status s = decoder.decode(page, expected_segment, raw);
  if (page.size() >= format::kPageHeaderSizeV1) {
    // The smaller (version 1) header leaves the most bytes to be read as a frame.
    const unsigned long long bound =
        ZSTD_decompressBound(page.data() + format::kPageHeaderSizeV1, page.size() - format::kPageHeaderSizeV1);
    const std::size_t most = ZSTD_isError(bound) || bound == ZSTD_CONTENTSIZE_ERROR ? 0 : static_cast<std::size_t>(bound);
    HOPPER_FUZZ_CHECK(raw.capacity() <= std::max(capacity_before, most) + 4096,
                      "decoding a page of " + std::to_string(page.size()) + " bytes made its output buffer " +
                          std::to_string(raw.capacity()) + " bytes, more than its payload can decompress to (" +
                          std::to_string(most) + "): " + s.message());
  }
  const auto want = fuzz::oracle_page(page, expected_segment);
  HOPPER_FUZZ_CHECK(s.ok() == want.has_value(),
                    std::string("PageDecoder says ") + s.message() + ", the grammar says " +
                        (want ? "valid" : "invalid"));
  if (s.ok()) {
    HOPPER_FUZZ_CHECK(raw == want->raw, "PageDecoder's raw bytes differ from the frame's content");
    cursor_over(raw, format::parse_page_header(page)->version);
  } else {
    HOPPER_FUZZ_CHECK(s.code() == Errc::corrupt, "a bad page must be Errc::corrupt: " + s.message());
  }
  // The same bytes as a raw payload of either framing, and as one item.
  cursor_over(page, format::kVersion);
  cursor_over(page, format::kVersion1);
  items_through_every_type(page);
  return 0;
}
