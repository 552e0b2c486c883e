#include "page_oracle.hpp"

#include <cstring>

#include <xxhash.h>
#include <zstd.h>

namespace hopper::fuzz {
namespace {

constexpr std::uint32_t kPageMagicV1 = 0x31475048u;  // "HPG1": 40-byte header, u32 item frames
constexpr std::uint32_t kPageMagicV2 = 0x32475048u;  // "HPG2": 56-byte header, u32+u32 item frames
constexpr std::uint64_t kMaxRaw = std::uint64_t{1} << 31;

std::uint64_t le(std::string_view b, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return v;
}

// The header size a page magic at `at` announces; 0 for anything else.
std::size_t header_size_at(std::string_view b, std::size_t at) {
  if (b.size() - at < 4) return 0;
  const std::uint64_t magic = le(b, at, 4);
  return magic == kPageMagicV2 ? 56 : magic == kPageMagicV1 ? 40 : 0;
}

}  // namespace

std::optional<OraclePage> oracle_page(std::string_view page, std::uint64_t expected_segment) {
  const std::size_t header = header_size_at(page, 0);
  if (header == 0 || page.size() < header) return std::nullopt;
  const std::size_t prefix = header == 56 ? 8 : 4;
  const std::uint64_t payload_len = le(page, 4, 4);
  const std::uint64_t raw_len = le(page, 8, 4);
  const std::uint64_t count = le(page, 12, 4);
  if (page.size() - header != payload_len) return std::nullopt;
  // checksum = XXH3_64(header bytes before the checksum ++ payload)
  std::string covered(page.substr(0, header - 8));
  covered.append(page.substr(header));
  if (XXH3_64bits(covered.data(), covered.size()) != le(page, header - 8, 8)) return std::nullopt;
  OraclePage out;
  out.first_seq = le(page, 16, 8);
  out.segment = le(page, 24, 8);
  out.bytes = page.size();
  if (out.segment != expected_segment || raw_len > kMaxRaw) return std::nullopt;
  std::string_view payload = page.substr(header);
  if (ZSTD_getFrameContentSize(payload.data(), payload.size()) != raw_len) return std::nullopt;
  out.raw.resize(raw_len);
  const std::size_t n = ZSTD_decompress(out.raw.data(), out.raw.size(), payload.data(), payload.size());
  if (ZSTD_isError(n) || n != raw_len) return std::nullopt;
  // items := (length:u32 [time offset:u32, version 2] bytes[length]){item_count}, tiling raw_len exactly
  std::size_t pos = 0;
  while (pos < out.raw.size()) {
    if (out.raw.size() - pos < prefix) return std::nullopt;
    const std::uint64_t len = le(out.raw, pos, 4);
    if (out.raw.size() - pos - prefix < len) return std::nullopt;
    out.items.emplace_back(out.raw.substr(pos + prefix, len));
    pos += prefix + len;
  }
  if (out.items.size() != count) return std::nullopt;
  return out;
}

std::vector<OraclePage> oracle_pages_anywhere(std::string_view image, std::uint64_t number) {
  std::vector<OraclePage> out;
  for (std::size_t off = 0; off + 40 <= image.size(); ++off) {
    const std::size_t header = header_size_at(image, off);
    if (header == 0 || image.size() - off < header) continue;
    const std::uint64_t payload_len = le(image, off + 4, 4);
    if (payload_len > image.size() - off - header) continue;
    if (auto p = oracle_page(image.substr(off, header + payload_len), number)) {
      p->offset = off;
      out.push_back(std::move(*p));
    }
  }
  return out;
}

}  // namespace hopper::fuzz
