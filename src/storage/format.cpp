#include "storage/format.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

namespace hopper::format {

void encode_segment_header(const SegmentHeader& h, char out[kSegmentHeaderSize]) {
  put_u64(out, kSegmentMagic);
  put_u32(out + 8, h.version);
  put_u32(out + 12, 0);
  put_u64(out + 16, h.segment);
  put_u64(out + 24, XXH3_64bits(out, 24));
}

std::optional<SegmentHeader> decode_segment_header(std::string_view b) {
  if (b.size() < kSegmentHeaderSize) return std::nullopt;
  if (get_u64(b.data()) != kSegmentMagic) return std::nullopt;
  if (get_u64(b.data() + 24) != XXH3_64bits(b.data(), 24)) return std::nullopt;
  SegmentHeader h;
  h.version = get_u32(b.data() + 8);
  h.segment = get_u64(b.data() + 16);
  return h;
}

static std::uint64_t page_checksum(const char* header, std::size_t header_size, std::string_view payload) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header, header_size - 8);
  XXH3_64bits_update(&state, payload.data(), payload.size());
  return XXH3_64bits_digest(&state);
}

void encode_page_header(PageHeader& h, std::string_view payload, char* out) {
  put_u32(out, h.version == kVersion1 ? kPageMagicV1 : kPageMagic);
  put_u32(out + 4, h.payload_len);
  put_u32(out + 8, h.raw_len);
  put_u32(out + 12, h.item_count);
  put_u64(out + 16, h.first_seq);
  put_u64(out + 24, h.segment);
  if (h.version != kVersion1) {
    put_u64(out + 32, h.base_ms);
    put_u64(out + 40, h.newest_ms);
  }
  const std::size_t size = h.header_size();
  h.checksum = page_checksum(out, size, payload);
  put_u64(out + size - 8, h.checksum);
}

std::optional<PageHeader> parse_page_header(std::string_view b) {
  if (b.size() < 4) return std::nullopt;
  PageHeader h;
  const std::uint32_t magic = get_u32(b.data());
  if (magic == kPageMagic) {
    h.version = kVersion;
  } else if (magic == kPageMagicV1) {
    h.version = kVersion1;
  } else {
    return std::nullopt;
  }
  const std::size_t size = h.header_size();
  if (b.size() < size) return std::nullopt;
  h.payload_len = get_u32(b.data() + 4);
  h.raw_len = get_u32(b.data() + 8);
  h.item_count = get_u32(b.data() + 12);
  h.first_seq = get_u64(b.data() + 16);
  h.segment = get_u64(b.data() + 24);
  if (h.version != kVersion1) {
    h.base_ms = get_u64(b.data() + 32);
    h.newest_ms = get_u64(b.data() + 40);
  }
  h.checksum = get_u64(b.data() + size - 8);
  return h;
}

bool page_checksum_ok(std::string_view header, std::string_view payload) {
  auto h = parse_page_header(header);
  if (!h) return false;
  return page_checksum(header.data(), h->header_size(), payload) == h->checksum;
}

struct PageChecksum::State {
  XXH3_state_t xxh;
};

PageChecksum::PageChecksum(std::string_view header) : state_(std::make_unique<State>()) {
  XXH3_64bits_reset(&state_->xxh);
  if (auto h = parse_page_header(header)) {
    XXH3_64bits_update(&state_->xxh, header.data(), h->header_size() - 8);
    expected_ = h->checksum;
  }
}
PageChecksum::~PageChecksum() = default;
void PageChecksum::update(std::string_view piece) { XXH3_64bits_update(&state_->xxh, piece.data(), piece.size()); }
bool PageChecksum::matches() const { return XXH3_64bits_digest(&state_->xxh) == expected_; }

DeliveryOrder delivery_order(std::vector<PageRef> all, std::uint64_t from) {
  std::stable_sort(all.begin(), all.end(), [](const PageRef& a, const PageRef& b) { return a.first_seq < b.first_seq; });
  DeliveryOrder order;
  std::uint64_t expect = from;
  std::uint64_t max_end = from;
  for (const PageRef& p : all) {
    const std::uint64_t end = p.first_seq + p.count;
    max_end = std::max(max_end, end);
    if (p.count == 0 || end <= expect) continue;  // delivered already, or a duplicate
    // Numbers are handed out without holes, so a hole means items that are gone.
    if (p.first_seq > expect) order.gaps.emplace_back(expect, p.first_seq);
    DuePage due{p, static_cast<std::uint32_t>(expect > p.first_seq ? expect - p.first_seq : 0)};
    expect = end;
    order.items += p.count - due.skip;
    order.pages.push_back(due);
  }
  order.covered = expect;
  order.max_end = max_end;
  return order;
}

static constexpr std::string_view kSegPrefix = "hopper-";
static constexpr std::string_view kSegSuffix = ".seg";
static constexpr std::size_t kSegDigits = 20;

std::string segment_file_name(std::uint64_t number) {
  std::string digits = std::to_string(number);
  return std::string(kSegPrefix) + std::string(kSegDigits - digits.size(), '0') + digits +
         std::string(kSegSuffix);
}

std::optional<std::uint64_t> parse_segment_file_name(std::string_view name) {
  if (name.size() != kSegPrefix.size() + kSegDigits + kSegSuffix.size()) return std::nullopt;
  if (name.substr(0, kSegPrefix.size()) != kSegPrefix) return std::nullopt;
  if (name.substr(name.size() - kSegSuffix.size()) != kSegSuffix) return std::nullopt;
  std::string_view digits = name.substr(kSegPrefix.size(), kSegDigits);
  for (char c : digits)
    if (c < '0' || c > '9') return std::nullopt;
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size() || n == 0) return std::nullopt;
  return n;
}

std::string encode_cursor(std::uint64_t next_seq) {
  std::string out(kCursorSize, '\0');
  put_u32(out.data(), kCursorMagic);
  put_u32(out.data() + 4, 1);
  put_u64(out.data() + 8, next_seq);
  put_u64(out.data() + 16, XXH3_64bits(out.data(), 16));
  return out;
}

std::string encode_cursor(std::uint64_t position, std::uint64_t end) {
  std::string out(kCursorV2Size, '\0');
  put_u32(out.data(), kCursorMagic);
  put_u32(out.data() + 4, kCursorVersion2);
  put_u64(out.data() + 8, position);
  put_u64(out.data() + 16, end);
  put_u64(out.data() + 24, XXH3_64bits(out.data(), 24));
  return out;
}

std::optional<CursorRecord> decode_cursor_record(std::string_view b) {
  if (b.size() < 8 || get_u32(b.data()) != kCursorMagic) return std::nullopt;
  const std::uint32_t version = get_u32(b.data() + 4);
  if (version == 1 && b.size() == kCursorSize) {
    if (get_u64(b.data() + 16) != XXH3_64bits(b.data(), 16)) return std::nullopt;
    return CursorRecord{get_u64(b.data() + 8), std::nullopt};
  }
  if (version == kCursorVersion2 && b.size() == kCursorV2Size) {
    if (get_u64(b.data() + 24) != XXH3_64bits(b.data(), 24)) return std::nullopt;
    return CursorRecord{get_u64(b.data() + 8), get_u64(b.data() + 16)};
  }
  return std::nullopt;
}

std::optional<std::uint64_t> decode_cursor(std::string_view b) {
  auto r = decode_cursor_record(b);
  if (!r) return std::nullopt;
  return r->position;
}

}  // namespace hopper::format
