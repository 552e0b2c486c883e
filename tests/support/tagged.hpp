// Items that say who sent them: "producer.index." then `pad` letters drawn from
// (producer, index). Anything a queue invents or garbles fails to parse, and the padding
// does not compress to nothing (so budgets fill up as they would with real data).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace hopper::test {

struct Tag {
  std::uint32_t producer = 0;
  std::uint32_t index = 0;
  auto operator<=>(const Tag&) const = default;
};

std::string tagged(std::uint32_t producer, std::uint32_t index, std::size_t pad = 0);
// The tag of an item made by tagged(), or nullopt if `s` is not exactly such an item.
std::optional<Tag> parse_tag(const std::string& s);
// "producer.index", for messages.
std::string tag_text(const Tag& t);

// The same within a numbered run (a crash test's trial): "run." then a tagged item, so an
// item left over from another run is recognised as such.
struct RunTag {
  std::uint64_t run = 0;
  Tag tag;
};
std::string tagged_in_run(std::uint64_t run, std::uint32_t producer, std::uint32_t index, std::size_t pad = 0);
std::optional<RunTag> parse_run_tag(const std::string& s);

}  // namespace hopper::test
