// The on-disk format of a queue directory, in one place: the byte layouts and their
// encoders and decoders, item framing, where a page is, and the order pages are delivered
// in. The writer, the reader, recovery, the queue's engine and inspect all use it, so they
// cannot disagree. docs/format.md is its grammar.
//
//   DIR/LOCK                       flock'ed while a process has the queue open
//   DIR/CURSOR                     next sequence number to deliver (commit, clean shutdown;
//                                  replaced durably)
//   DIR/CURSOR.read                the same, advisory: how far the receiver got (replaced
//                                  without sync; a reader takes the larger valid one)
//   DIR/hopper-<20 digits>.seg     segment files, numbered from 1
//
// A segment file:
//
//   +--------------------------------+---------+---------+-----+
//   | segment header (32 bytes)      | page    | page    | ... |
//   +--------------------------------+---------+---------+-----+
//
//   segment header: magic "HOPRSEG\0" u64 | version u32 | reserved u32 (0)
//                   | segment number u64 | checksum u64 = XXH3-64(bytes 0..23)
//
// A page (version 2, "HPG2"; version 1 pages, "HPG1", have no times and 4-byte frames):
//
//   +-------+-------------+---------+------------+-----------+---------+---------+-----------+----------+-------------+
//   | magic | payload_len | raw_len | item_count | first_seq | segment | base_ms | newest_ms | checksum | zstd frame  |
//   | u32   | u32         | u32     | u32        | u64       | u64     | u64     | u64       | u64      | payload_len |
//   +-------+-------------+---------+------------+-----------+---------+---------+-----------+----------+-------------+
//     checksum = XXH3-64 over header bytes 0..47, then the payload.
//
//   The zstd frame decompresses to raw_len bytes: item_count items, each u32 length, u32
//   time offset (ms after base_ms) and that many bytes of the item's encoding.
//
// All integers are little-endian. A page is valid only if its checksum matches; no
// length is trusted before that. The segment number in each page rejects stale bytes
// that a reused or copied file might hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hopper::format {

inline constexpr std::uint64_t kSegmentMagic = 0x0047455352504f48ull;  // "HOPRSEG\0"
inline constexpr std::uint32_t kPageMagic = 0x32475048u;               // "HPG2", written
inline constexpr std::uint32_t kPageMagicV1 = 0x31475048u;             // "HPG1", still read
inline constexpr std::uint32_t kCursorMagic = 0x31435048u;             // "HPC1"
// The segment format written; version 1 (no item times) is still read.
inline constexpr std::uint32_t kVersion = 2;
inline constexpr std::uint32_t kVersion1 = 1;
inline constexpr bool known_segment_version(std::uint32_t v) noexcept { return v == kVersion || v == kVersion1; }

inline constexpr std::size_t kSegmentHeaderSize = 32;
inline constexpr std::size_t kPageHeaderSize = 56;    // version 2
inline constexpr std::size_t kPageHeaderSizeV1 = 40;  // version 1
inline constexpr std::size_t kItemPrefixSize = 8;     // version 2: length u32, time offset u32
inline constexpr std::size_t kItemPrefixSizeV1 = 4;   // version 1: length u32
inline constexpr std::size_t page_header_size(std::uint32_t version) noexcept {
  return version == kVersion1 ? kPageHeaderSizeV1 : kPageHeaderSize;
}
inline constexpr std::size_t item_prefix_size(std::uint32_t version) noexcept {
  return version == kVersion1 ? kItemPrefixSizeV1 : kItemPrefixSize;
}
// Largest time offset an item frame holds: a page's items lie within ~49.7 days of its
// base (an open page past that is sealed first).
inline constexpr std::uint64_t kMaxTimeOffset = 0xffffffffu;
inline constexpr std::size_t kCursorSize = 24;    // CURSOR version 1: the position alone
inline constexpr std::size_t kCursorV2Size = 32;  // CURSOR version 2: the position and the end
inline constexpr std::uint32_t kCursorVersion2 = 2;

// Largest raw (uncompressed) page a reader accepts: bounds allocation on damaged input.
inline constexpr std::uint32_t kMaxRawPage = 1u << 31;

struct SegmentHeader {
  std::uint32_t version = kVersion;
  std::uint64_t segment = 0;
};

struct PageHeader {
  std::uint32_t version = kVersion;  // by the magic: 2 ("HPG2") or 1 ("HPG1")
  std::uint32_t payload_len = 0;
  std::uint32_t raw_len = 0;
  std::uint32_t item_count = 0;
  std::uint64_t first_seq = 0;
  std::uint64_t segment = 0;
  // Version 2: item times, in ms of the queue clock (Unix time; docs/format.md "Time").
  // Each item's time is base_ms plus its frame's offset; newest_ms is the largest.
  std::uint64_t base_ms = 0;
  std::uint64_t newest_ms = 0;
  std::uint64_t checksum = 0;
  std::size_t header_size() const noexcept { return page_header_size(version); }
};

void encode_segment_header(const SegmentHeader& h, char out[kSegmentHeaderSize]);
// nullopt when the magic or checksum is wrong. The version is returned as found.
std::optional<SegmentHeader> decode_segment_header(std::string_view bytes);

// Fills the header's checksum from its other fields and `payload`, then writes it
// (h.header_size() bytes: the version decides the layout; version 1 only for tests).
void encode_page_header(PageHeader& h, std::string_view payload, char* out);
// Parses the fixed fields of either version (by the magic); checks the magic only.
// Lengths are NOT trusted yet. nullopt when the bytes are fewer than the header.
std::optional<PageHeader> parse_page_header(std::string_view bytes);
// True when `payload` (payload_len bytes) matches the header's checksum.
bool page_checksum_ok(std::string_view header_bytes, std::string_view payload);
// The same check over a payload given in pieces, in order: for payloads read through a
// bounded window. Not thread-safe.
class PageChecksum {
 public:
  explicit PageChecksum(std::string_view header_bytes);  // the whole header, either version
  ~PageChecksum();
  PageChecksum(const PageChecksum&) = delete;
  PageChecksum& operator=(const PageChecksum&) = delete;
  void update(std::string_view piece);
  bool matches() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::uint64_t expected_ = 0;
};

// Little-endian fields.
inline void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
inline void put_u64(char* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
inline std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
inline std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}


// ---- item framing: a page's raw payload is its items back to back, each a u32 length,
// (version 2) a u32 time offset, and that many bytes. Written only through
// begin_item/end_item (version 2 only), read only through ItemCursor (either version).

// The largest item a frame can carry.
inline constexpr std::uint64_t kMaxItemBytes = 0xffffffffu;
// Appending an item to `raw`: begin_item reserves its frame and returns where it starts;
// the caller appends the item's bytes; end_item writes the frame. (Taking it back is
// raw.resize(mark).) Inline, as is ItemCursor::next: every spilled item passes here.
inline std::size_t begin_item(std::string& raw) {
  const std::size_t mark = raw.size();
  raw.append(kItemPrefixSize, '\0');
  return mark;
}
// Bytes of the item begun at `mark`, without its frame.
inline std::uint64_t item_bytes(const std::string& raw, std::size_t mark) noexcept {
  return raw.size() - mark - kItemPrefixSize;
}
inline void end_item(std::string& raw, std::size_t mark, std::uint32_t time_offset) {
  put_u32(raw.data() + mark, static_cast<std::uint32_t>(item_bytes(raw, mark)));
  put_u32(raw.data() + mark + 4, time_offset);
}

// Walks the length-prefixed items of a raw page of `version`. Stops (and reports) on a
// prefix that runs past the end.
class ItemCursor {
 public:
  explicit ItemCursor(std::string_view raw, std::uint32_t version = kVersion)
      : raw_(raw), prefix_(item_prefix_size(version)) {}
  // The next item's bytes, or nullopt at the end or on a malformed prefix (see ok()).
  std::optional<std::string_view> next() {
    if (pos_ == raw_.size()) return std::nullopt;
    if (raw_.size() - pos_ < prefix_) return malformed();
    const std::uint32_t len = get_u32(raw_.data() + pos_);
    if (raw_.size() - pos_ - prefix_ < len) return malformed();
    time_offset_ = prefix_ == kItemPrefixSize ? get_u32(raw_.data() + pos_ + 4) : 0;
    std::string_view item = raw_.substr(pos_ + prefix_, len);
    pos_ += prefix_ + len;
    return item;
  }
  // The time offset of the item next() returned last (0 in version 1 pages).
  std::uint32_t time_offset() const noexcept { return time_offset_; }
  // The time offset of the item next() will return, if its frame is there (version 2).
  std::optional<std::uint32_t> peek_time_offset() const noexcept {
    if (prefix_ != kItemPrefixSize || raw_.size() - pos_ < prefix_) return std::nullopt;
    return get_u32(raw_.data() + pos_ + 4);
  }
  bool ok() const noexcept { return ok_; }
  std::size_t offset() const noexcept { return pos_; }

 private:
  std::nullopt_t malformed() noexcept {
    ok_ = false;
    return std::nullopt;
  }
  std::string_view raw_;
  std::size_t prefix_;
  std::size_t pos_ = 0;
  std::uint32_t time_offset_ = 0;
  bool ok_ = true;
};

// What a page's header says of its items, beside the lengths and the checksum that
// writing it computes.
struct PageItems {
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::uint64_t base_ms = 0;
  std::uint64_t newest_ms = 0;
};

// ---- pages, located

// Where a valid page is and what its header (whose checksum passed) says it holds.
struct PageRef {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;  // header + payload
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::uint32_t version = kVersion;  // its layout (and item framing)
  std::uint32_t raw_len = 0;         // its payload's bytes, decompressed
  std::uint64_t base_ms = 0;         // version 2: its items' times (0 in version 1: unknown)
  std::uint64_t newest_ms = 0;
};

// ---- the delivery order (docs/format.md, rule 6)

// A page to deliver, and how many of its leading items were delivered already.
struct DuePage {
  PageRef ref;
  std::uint32_t skip = 0;
};
struct DeliveryOrder {
  std::vector<DuePage> pages;   // in sequence order, each number once
  std::uint64_t items = 0;      // items they deliver
  std::uint64_t covered = 0;    // one past the last number delivered (at least `from`)
  std::uint64_t max_end = 0;    // one past the highest number any page holds (at least `from`)
  // Numbers in [from, covered) that no page holds: lost, [begin, end) each, in order.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
};
// Order is by sequence number, not file position: sorts the valid pages by first_seq,
// drops pages wholly below `from` (delivered), skips the delivered prefix of a page that
// straddles it, and trims overlaps (a page wholly covered by earlier ones is a duplicate).
// Recovery delivers in this order, and inspect reads in it.
DeliveryOrder delivery_order(std::vector<PageRef> pages, std::uint64_t from);

// "hopper-00000000000000000042.seg" <-> 42. Parse rejects anything else, including 0.
std::string segment_file_name(std::uint64_t number);
std::optional<std::uint64_t> parse_segment_file_name(std::string_view name);

inline constexpr const char* kLockFileName = "LOCK";
inline constexpr const char* kCursorFileName = "CURSOR";
inline constexpr const char* kCursorTempName = "CURSOR.tmp";
// The advisory position, written as the receiver finishes segments (without manual
// commit). Never synced, so a power loss may leave it damaged or old: it is then ignored,
// and it never replaces CURSOR, so a durable commit is never undone by it.
inline constexpr const char* kReadCursorFileName = "CURSOR.read";
inline constexpr const char* kReadCursorTempName = "CURSOR.read.tmp";

// CURSOR, version 1: magic u32 | version u32 (1) | position u64 | checksum u64 =
//   XXH3-64(bytes 0..15). Read, never written any more.
// CURSOR, version 2: magic u32 | version u32 (2) | position u64 | end u64 | checksum u64 =
//   XXH3-64(bytes 0..23). `end`: the number the next accepted item was to get when it was
//   written, so that items accepted before it and found on no page are counted missing at
//   open even when no later page shows the gap.
struct CursorRecord {
  std::uint64_t position = 0;
  std::optional<std::uint64_t> end;  // version 2 only
};
std::string encode_cursor(std::uint64_t position);  // version 1 (tests of old directories)
std::string encode_cursor(std::uint64_t position, std::uint64_t end);  // version 2
std::optional<CursorRecord> decode_cursor_record(std::string_view bytes);
// The position of either version.
std::optional<std::uint64_t> decode_cursor(std::string_view bytes);

}  // namespace hopper::format
