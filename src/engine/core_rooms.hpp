// Core::Rooms: the rooms Core holds under the queue lock, for Core's own sources.
#pragma once

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <hopper/detail/core.hpp>

#include "engine/open_page.hpp"
#include "engine/segment_set.hpp"
#include "engine/spill_pipeline.hpp"

namespace hopper::detail {

// The rooms the queue lock guards (Core::rooms_), and the totals no single room owns.
struct Core::Rooms {
  Rooms(const Options& o, std::uint64_t next_seq) : page(o), pipeline(o, next_seq), segments(o.directory, o) {}

  OpenPage page;
  SpillPipeline pipeline;
  SegmentSet segments;
  bool dropping = false;  // a drop_oldest removal is under way
  std::vector<std::uint64_t> recovered_counts;
  std::vector<std::string> damage;  // one line per damage found, naming the file

  std::uint64_t disk_in = 0;  // items that went into pages (spilled + recovered)
  std::uint64_t spilled = 0;
  std::uint64_t recovered = 0;
  std::uint64_t corrupt_pages = 0;
  std::uint64_t torn_bytes = 0;
  std::uint64_t missing = 0;
  std::uint64_t commits = 0;
  std::uint64_t pages_unreadable = 0;
  std::uint64_t items_unreadable = 0;
  std::uint64_t read_errors = 0;
};

// The compression helpers' threads (Options::compression_threads).
struct Core::Helpers {
  std::vector<std::thread> threads;
};

}  // namespace hopper::detail
