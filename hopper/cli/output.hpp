// How the hopper tool prints: aligned text tables for people, JSON for scripts.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace hopper::cli {

using Json = nlohmann::ordered_json;  // keys in the order written, as people read them

// Columns of text, padded to the widest cell; numbers right-aligned. Not thread-safe.
class Table {
 public:
  explicit Table(std::vector<std::string> headers, std::vector<bool> right_aligned = {});
  void row(std::vector<std::string> cells);
  void print(std::ostream& out, std::string_view indent = "") const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// `s` as valid UTF-8 for a JSON string: a byte that is not part of a well-formed UTF-8
// sequence becomes the code point of its value (U+0080..U+00FF), so arbitrary items always
// make valid JSON and each byte stays recognisable.
std::string json_text(std::string_view s);

// 1234567 -> "1,234,567"
std::string with_commas(std::uint64_t n);
// 1536 -> "1.5 KiB"
std::string human_bytes(std::uint64_t n);

}  // namespace hopper::cli
