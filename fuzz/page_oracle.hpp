// The fuzz oracles' own reading of the page format (docs/format.md), written from the
// grammar and not from the library's reader, so that the two can be compared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hopper::fuzz {

// A page that is valid by every rule of docs/format.md: its header, the items of its
// decompressed payload (each an item's encoded bytes), where it starts and its length.
struct OraclePage {
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;  // header + payload
  std::uint64_t first_seq = 0;
  std::uint64_t segment = 0;
  std::string raw;
  std::vector<std::string> items;
};

// `page` is exactly one page (header + payload), or it is not valid.
std::optional<OraclePage> oracle_page(std::string_view page, std::uint64_t expected_segment);
// Every offset of `image` (a segment file) where a valid page of segment `number` starts,
// whatever lies around it.
std::vector<OraclePage> oracle_pages_anywhere(std::string_view image, std::uint64_t number);

}  // namespace hopper::fuzz
