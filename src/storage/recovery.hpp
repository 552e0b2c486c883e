// Recovery: what an earlier run left in a queue directory, validated and put in order.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <hopper/file_system.hpp>
#include <hopper/status.hpp>

#include "storage/format.hpp"
#include "storage/segment_reader.hpp"

namespace hopper::detail {

struct RecoveredSegment {
  std::uint64_t number = 0;
  std::uint64_t bytes = 0;   // file size after any cut
  std::uint64_t pages = 0;   // pages in it still to be delivered
};

struct Recovery {
  std::vector<format::DuePage> pages;       // to deliver, in format::delivery_order
  std::vector<RecoveredSegment> segments;   // files kept (each has pages to deliver)
  // Segments with nothing left to deliver whose removal failed: the queue counts their
  // bytes and retries the unlink (pages is 0).
  std::vector<RecoveredSegment> stale;
  // Segment files left in place unread (they could not be read, or not wholly scanned):
  // their bytes are counted against the budget while the queue runs, and they are neither
  // delivered nor removed; a later open tries them again (pages is 0).
  std::vector<RecoveredSegment> held;
  std::uint64_t cursor = 0;                 // from CURSOR: items below it were delivered
  std::uint64_t end = 0;                    // from CURSOR (version 2): items below it were
                                            // accepted; those on no page are missing
  std::uint64_t next_seq = 0;               // first sequence number for new items
  std::uint64_t next_segment = 1;           // first number for new segment files
  std::uint64_t items = 0;                  // items to deliver
  std::uint64_t corrupt_pages = 0;          // damaged regions skipped (each counts once)
  std::uint64_t torn_bytes = 0;             // bytes cut from segment tails
  std::uint64_t missing = 0;                // sequence numbers between the cursor and the
                                            // last page that no valid page holds
  std::uint64_t read_errors = 0;            // reads that failed (each attempt counts)
  std::uint64_t remove_errors = 0;          // unlinks that failed
  std::vector<std::string> problems;        // one line per damage found, naming the file
};

// How far recovery looks. A damaged region is searched for the next valid page at most
// `resync_limit` bytes far: past that the rest of the file is reported and left untouched
// (a queue of these options never writes such a gap, so it is not ours to cut). Memory is
// bounded by a window of a fixed size whatever the files' sizes.
struct RecoveryLimits {
  std::uint64_t resync_limit = ~std::uint64_t{0};
};

// Scans `dir` (already locked by the caller). Damaged pages are skipped, torn tails cut,
// fully delivered and empty segments removed, files that are not ours left alone. A
// segment file that cannot be opened or read (after a few attempts) is reported, left in
// place and not delivered; so is a damaged or unreadable CURSOR (delivery then starts at
// the oldest page). Fails only when the directory cannot be listed, and on segments
// written by an unknown format version.
Result<Recovery> recover(FileSystem& fs, const std::filesystem::path& dir, const RecoveryLimits& limits = {});

// Validates one segment image (the whole file) in memory: the pages found, in file order.
// `cut` is where the valid data ends (a torn or damaged tail starts there).
struct SegmentScan {
  std::vector<format::PageRef> pages;
  std::uint64_t cut = 0;
  std::uint64_t corrupt_pages = 0;
  std::uint64_t torn_bytes = 0;
  bool header_ok = false;
  bool complete = true;  // false: a damaged region went on past the resync limit; the
                         // bytes after it were not scanned and must not be cut
  std::uint32_t version = 0;
  std::vector<std::string> problems;
};
SegmentScan scan_segment(std::string_view image, std::uint64_t number);
// The same over a file read through a bounded window. io_error (or not_found) if a read fails.
Result<SegmentScan> scan_segment_file(File& file, std::uint64_t number, std::uint64_t resync_limit);

}  // namespace hopper::detail
