// Inspection: a read-only look into a queue directory — its segments, pages, items and
// damage — and a way to read its items without consuming them. For tools and monitoring
// (`hopper inspect`, `hopper verify`, `hopper dump`).
//
// Nothing here takes the directory's LOCK or writes anything: a queue that another process
// has open may be inspected while it runs. What is seen is then a snapshot that may already
// be stale: segments the owner deletes while they are read are skipped, and an incomplete
// page at the end of a segment of a locked queue is reported as being written, not as
// damage. The CURSOR file of a running queue is the delivery position last persisted
// (at the last commit() or clean shutdown), not the live one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <hopper/detail/codec.hpp>
#include <hopper/status.hpp>

namespace hopper {

// A byte range of one segment file that holds no valid page.
struct DamagedRange {
  std::uint64_t segment = 0;   // segment number
  std::uint64_t begin = 0;     // file offsets, [begin, end)
  std::uint64_t end = 0;
  std::string reason;          // what failed, e.g. "checksum mismatch or bad page header"
};

struct SegmentSummary {
  std::uint64_t number = 0;
  std::filesystem::path path;
  std::uint64_t bytes = 0;        // file size when it was read
  std::uint64_t pages = 0;        // valid pages
  std::uint64_t items = 0;        // items in the valid pages
  std::uint64_t raw_bytes = 0;    // their uncompressed payload bytes
  std::optional<std::uint64_t> first_seq;  // lowest sequence number in it
  std::optional<std::uint64_t> last_seq;   // highest sequence number in it
  bool header_ok = true;
  std::uint32_t version = 0;      // format version in its header (when the header is ok)
  std::uint64_t corrupt_pages = 0;  // damaged regions (each listed in Inspection::damaged)
  std::uint64_t tail_bytes = 0;     // an incomplete page at the end: being written, or torn
};

// Who holds the queue's LOCK, as far as can be told without taking it.
struct LockHolder {
  bool held = false;                 // a process holds the flock (from /proc/locks)
  bool known = false;                // false when /proc/locks could not be read
  std::optional<long> pid;           // the holder (from /proc/locks, else from the LOCK file)
  std::optional<long> recorded_pid;  // the pid written in the LOCK file by its last holder
};

struct Inspection {
  std::filesystem::path directory;
  std::vector<SegmentSummary> segments;  // by segment number
  std::vector<DamagedRange> damaged;     // damage, in segment and offset order
  std::vector<std::string> notes;        // other findings, one line each, naming the file

  std::uint64_t pages = 0;
  std::uint64_t items = 0;              // items in valid pages (delivered or not)
  std::uint64_t disk_bytes = 0;         // bytes of segment files
  std::uint64_t raw_bytes = 0;          // uncompressed payload bytes of valid pages
  std::uint64_t corrupt_pages = 0;
  std::uint64_t tail_bytes = 0;         // incomplete pages at segment ends
  std::uint64_t pages_decoded = 0;      // with InspectOptions::decode_pages
  std::optional<std::uint64_t> oldest_seq;  // lowest sequence number on disk
  std::optional<std::uint64_t> newest_seq;  // highest sequence number on disk

  std::optional<std::uint64_t> cursor;  // next sequence number to deliver, from CURSOR
  bool cursor_damaged = false;          // CURSOR present but unreadable
  std::uint64_t undelivered_items = 0;  // distinct items numbered at or after the cursor

  LockHolder lock;

  // No damaged range, no unreadable segment header, no damaged CURSOR, and no incomplete
  // tail unless the queue is held by a live process (which may be writing it).
  bool intact() const noexcept;
};

struct InspectOptions {
  // Also decompress every valid page and check that its items tile it exactly (as a
  // receiver would). Slower; `hopper verify` does it. A page that passes its checksum but
  // fails to decode is reported as damaged.
  bool decode_pages = false;
  // Called after each segment with the bytes read so far and the total (for progress).
  std::function<void(std::uint64_t done, std::uint64_t total)> progress;
};

// Scans `dir`. io_error if the directory cannot be listed; a segment that cannot be read
// is a note, one that vanished while being read (consumed by its owner) is skipped.
// Thread-safe: it keeps no state between calls.
Result<Inspection> inspect(const std::filesystem::path& dir, const InspectOptions& options = {});

// One stored item: its sequence number and its encoded bytes (cereal binary, as the
// queue's T wrote them; see decode_item).
struct StoredItem {
  std::uint64_t seq = 0;
  std::string_view bytes;  // valid until the next call to ItemReader::next
};

// Reads the items of a queue directory's valid pages in sequence order, without consuming
// them (nothing is written, no lock is taken). Each sequence number is returned once even
// when several pages hold it. Not thread-safe: one thread at a time.
class ItemReader {
 public:
  struct Options {
    bool from_cursor = true;  // skip items before the CURSOR (already delivered)
  };
  static Result<ItemReader> open(const std::filesystem::path& dir, Options options);
  static Result<ItemReader> open(const std::filesystem::path& dir) { return open(dir, Options{}); }

  ItemReader(ItemReader&&) noexcept;
  ItemReader& operator=(ItemReader&&) noexcept;
  ~ItemReader();

  // The next item; false at the end or on an I/O error (see status()). Pages that fail
  // validation now, or whose segment was deleted since open(), are skipped and counted.
  bool next(StoredItem& item);
  const Status& status() const noexcept;
  std::uint64_t skipped_pages() const noexcept;  // unreadable since open(): deleted or damaged
  std::uint64_t total_items() const noexcept;    // what a full read would return, per open()

 private:
  struct State;
  explicit ItemReader(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

// Decodes the bytes of a StoredItem as a T (the type the queue was opened with). False
// when they are not exactly one T's encoding.
template <class T>
bool decode_item(std::string_view bytes, T& out) noexcept {
  return detail::decode(bytes, out);
}

}  // namespace hopper
