// How the hopper tool prints: aligned text tables for people, JSON for scripts.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace hopper::cli {

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

// A JSON string literal (quotes included) of `s`; bytes that are not valid UTF-8 are
// written as \u00XX of their byte value so the output is always valid JSON.
std::string json_string(std::string_view s);

// 1234567 -> "1,234,567"
std::string with_commas(std::uint64_t n);
// 1536 -> "1.5 KiB"
std::string human_bytes(std::uint64_t n);

}  // namespace hopper::cli
