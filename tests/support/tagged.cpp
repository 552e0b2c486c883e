#include "tagged.hpp"

#include <cstdlib>

namespace hopper::test {

std::string tagged(std::uint32_t producer, std::uint32_t index, std::size_t pad) {
  std::string s = std::to_string(producer) + "." + std::to_string(index) + ".";
  std::uint64_t x = (std::uint64_t{producer} << 32 | index) * 0x9e3779b97f4a7c15ull + 1;
  for (std::size_t k = 0; k < pad; ++k) {
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    s.push_back(static_cast<char>('a' + (x >> 40) % 26));
  }
  return s;
}

std::optional<Tag> parse_tag(const std::string& s) {
  Tag t;
  char* end = nullptr;
  t.producer = static_cast<std::uint32_t>(std::strtoul(s.c_str(), &end, 10));
  if (end == s.c_str() || *end != '.') return std::nullopt;
  const char* idx = end + 1;
  t.index = static_cast<std::uint32_t>(std::strtoul(idx, &end, 10));
  if (end == idx || *end != '.') return std::nullopt;
  const std::size_t pad = s.size() - static_cast<std::size_t>(end + 1 - s.c_str());
  if (s != tagged(t.producer, t.index, pad)) return std::nullopt;
  return t;
}

std::string tag_text(const Tag& t) { return std::to_string(t.producer) + "." + std::to_string(t.index); }

std::string tagged_in_run(std::uint64_t run, std::uint32_t producer, std::uint32_t index, std::size_t pad) {
  return std::to_string(run) + "." + tagged(producer, index, pad);
}

std::optional<RunTag> parse_run_tag(const std::string& s) {
  RunTag r;
  char* end = nullptr;
  r.run = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str() || *end != '.') return std::nullopt;
  auto t = parse_tag(std::string(end + 1));
  if (!t) return std::nullopt;
  r.tag = *t;
  return r;
}

}  // namespace hopper::test
