#include "page_oracle.hpp"

#include <cstring>

#include <xxhash.h>
#include <zstd.h>

namespace hopper::fuzz {
namespace {

constexpr std::uint32_t kPageMagic = 0x31475048u;  // "HPG1"
constexpr std::size_t kHeader = 40;
constexpr std::uint64_t kMaxRaw = std::uint64_t{1} << 31;

std::uint64_t le(std::string_view b, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t(static_cast<unsigned char>(b[at + i])) << (8 * i);
  return v;
}

}  // namespace

std::optional<OraclePage> oracle_page(std::string_view page, std::uint64_t expected_segment) {
  if (page.size() < kHeader || le(page, 0, 4) != kPageMagic) return std::nullopt;
  const std::uint64_t payload_len = le(page, 4, 4);
  const std::uint64_t raw_len = le(page, 8, 4);
  const std::uint64_t count = le(page, 12, 4);
  if (page.size() - kHeader != payload_len) return std::nullopt;
  // checksum = XXH3_64(header bytes 0..31 ++ payload)
  std::string covered(page.substr(0, 32));
  covered.append(page.substr(kHeader));
  if (XXH3_64bits(covered.data(), covered.size()) != le(page, 32, 8)) return std::nullopt;
  OraclePage out;
  out.first_seq = le(page, 16, 8);
  out.segment = le(page, 24, 8);
  out.bytes = page.size();
  if (out.segment != expected_segment || raw_len > kMaxRaw) return std::nullopt;
  std::string_view payload = page.substr(kHeader);
  if (ZSTD_getFrameContentSize(payload.data(), payload.size()) != raw_len) return std::nullopt;
  out.raw.resize(raw_len);
  const std::size_t n = ZSTD_decompress(out.raw.data(), out.raw.size(), payload.data(), payload.size());
  if (ZSTD_isError(n) || n != raw_len) return std::nullopt;
  // items := (length:u32 bytes[length]){item_count}, tiling raw_len exactly
  std::size_t pos = 0;
  while (pos < out.raw.size()) {
    if (out.raw.size() - pos < 4) return std::nullopt;
    const std::uint64_t len = le(out.raw, pos, 4);
    if (out.raw.size() - pos - 4 < len) return std::nullopt;
    out.items.emplace_back(out.raw.substr(pos + 4, len));
    pos += 4 + len;
  }
  if (out.items.size() != count) return std::nullopt;
  return out;
}

std::vector<OraclePage> oracle_pages_anywhere(std::string_view image, std::uint64_t number) {
  std::vector<OraclePage> out;
  for (std::size_t off = 0; off + kHeader <= image.size(); ++off) {
    if (le(image, off, 4) != kPageMagic) continue;
    const std::uint64_t payload_len = le(image, off + 4, 4);
    if (payload_len > image.size() - off - kHeader) continue;
    if (auto p = oracle_page(image.substr(off, kHeader + payload_len), number)) {
      p->offset = off;
      out.push_back(std::move(*p));
    }
  }
  return out;
}

}  // namespace hopper::fuzz
