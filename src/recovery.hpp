// Recovery: what an earlier run left in a queue directory, validated and put in order.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <hopper/file_system.hpp>
#include <hopper/status.hpp>

#include "segment_reader.hpp"

namespace hopper::detail {

struct RecoveredSegment {
  std::uint64_t number = 0;
  std::uint64_t bytes = 0;   // file size after any cut
  std::uint64_t pages = 0;   // pages in it still to be delivered
};

struct Recovery {
  std::vector<PageRef> pages;               // to deliver, by sequence number, overlaps trimmed
  std::vector<RecoveredSegment> segments;   // files kept (each has pages to deliver)
  std::uint64_t cursor = 0;                 // from CURSOR: items below it were delivered
  std::uint64_t next_seq = 0;               // first sequence number for new items
  std::uint64_t next_segment = 1;           // first number for new segment files
  std::uint64_t items = 0;                  // items to deliver
  std::uint64_t corrupt_pages = 0;          // damaged regions skipped (each counts once)
  std::uint64_t torn_bytes = 0;             // bytes cut from segment tails
  std::uint64_t missing = 0;                // sequence numbers between the cursor and the
                                            // last page that no valid page holds
  std::vector<std::string> problems;        // one line per damage found, naming the file
};

// Scans `dir` (already locked by the caller). Damaged pages are skipped, torn tails cut,
// fully delivered and empty segments removed, files that are not ours left alone.
// Fails only on I/O errors and on segments written by an unknown format version.
Result<Recovery> recover(FileSystem& fs, const std::filesystem::path& dir);

// Validates one segment image (the whole file) in memory: the pages found, in file order.
// `cut` is where the valid data ends (a torn or damaged tail starts there).
struct SegmentScan {
  std::vector<PageRef> pages;
  std::uint64_t cut = 0;
  std::uint64_t corrupt_pages = 0;
  std::uint64_t torn_bytes = 0;
  bool header_ok = false;
  std::uint32_t version = 0;
  std::vector<std::string> problems;
};
SegmentScan scan_segment(std::string_view image, std::uint64_t number);

}  // namespace hopper::detail
