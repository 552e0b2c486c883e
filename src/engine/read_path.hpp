// ReadPath: the receiver's side of the disk — the page being read, where delivery stands,
// and the items held until commit.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <hopper/detail/sync.hpp>
#include <hopper/file_system.hpp>
#include <hopper/options.hpp>
#include <hopper/status.hpp>

#include "engine/open_page.hpp"
#include "engine/spill_pipeline.hpp"
#include "storage/format.hpp"
#include "storage/segment_reader.hpp"

namespace hopper::detail {

// The page the receiver reads items from (loaded from its file, or taken from RAM), the
// retry of a read that failed, the delivery position (every item numbered below it was
// handed out, or lost to damage or drops), and, with manual_commit, the memory items
// handed out and not yet committed, kept encoded so that a clean shutdown can give them
// back. Receiver-private: only the receiving thread touches it (Core holds it under the
// receiver's Token), so it needs no lock.
class ReadPath {
 public:
  // Reads of one page before it is skipped as unreadable.
  static constexpr std::uint32_t kReadAttempts = 3;

  // `position`: the delivery position recovered at open.
  ReadPath(std::shared_ptr<FileSystem> fs, std::filesystem::path dir, const Options& options,
           std::uint64_t position);

  // ---- the page due
  // The receiver popped a Disk marker: the next page in the chain is due.
  void mark_due() noexcept { due_ = true; }
  bool due() const noexcept { return due_; }
  // An item is left in the page being read, or a page is due.
  bool item_pending() const noexcept { return due_ || left_ > 0; }
  // The next item of the page being read; false when it has no more. `out` stays valid
  // until the next page is loaded. `finished`: that was its last item. `at_ms`: when it
  // was accepted (0: unknown, a version 1 page).
  bool next_item(std::string_view& out, bool& finished, std::uint64_t& at_ms);
  // When the next item of the page being read was accepted (0: none is left, or its time
  // is unknown).
  std::uint64_t next_time_ms() const noexcept {
    if (left_ == 0 || !timed_) return 0;
    const std::optional<std::uint32_t> offset = items_->peek_time_offset();
    return offset ? base_ms_ + *offset : 0;
  }

  // ---- loading the due page (Core takes it from the chain)
  // A read of this page failed earlier and its retry is not due yet.
  bool waiting_to_retry(Clock::time_point now) const noexcept { return attempts_ > 0 && now < retry_at_; }
  Clock::time_point retry_at() const noexcept { return retry_at_; }
  const Status& last_error() const noexcept { return error_; }
  // Reads `ref` from its file (through `file`, opened on its segment when it is not) into
  // the page buffer. Runs without the queue lock.
  Status read(const format::PageRef& ref, OpenSegment& file) { return reader_.read(ref, file, raw_); }
  // The read of the due page failed with `why`: true when it is to be retried (after a
  // pause from `now`), false when it has failed every attempt (then it is skipped).
  bool read_failed(const Status& why, Clock::time_point now);
  // The due page is skipped: discarded, dropped while being read, unreadable or damaged.
  // `from_file`: it was read from `page.ref.segment` (the segment counts it finished).
  void skip(const UnreadPage& page, bool from_file);
  // The due page was read from its file: its items after `page.skip` are next.
  void start(const UnreadPage& page);
  // The due page was taken from RAM (it never reached a file).
  void start(RawPage page);
  // The page read is used up. Its segment, when it came from a file (once).
  std::optional<std::uint64_t> finish();
  // No page was there for the marker popped (an internal error, reported as corrupt).
  void abandon_due() noexcept { due_ = false; }

  // ---- where delivery stands
  std::uint64_t position() const noexcept { return deliver_seq_; }
  // One memory item handed out.
  void delivered_memory_item() noexcept { ++deliver_seq_; }
  void delivered_memory_items(std::uint64_t n) noexcept { deliver_seq_ += n; }
  // `n` memory items drop_oldest discarded ahead of the receiver.
  void skipped(std::uint64_t n) noexcept { deliver_seq_ += n; }

  // ---- manual_commit: memory items handed out, not yet committed
  // The encoding of the memory item about to be handed out goes into the returned buffer,
  // between begin_held() and end_held(); it stays charged `footprint` until a commit
  // passes it.
  std::string& begin_held(std::uint64_t footprint, std::uint64_t at_ms);
  void end_held(std::uint64_t at_ms);
  // Lets go of the held items numbered below `position` (a page partly below it is cut)
  // and returns the sum of their footprints.
  std::uint64_t release_held(std::uint64_t position);
  std::vector<RawPage> take_held() {
    held_footprints_.clear();
    return std::move(held_);
  }

  // ---- shutdown
  // The items of a page taken from RAM not yet handed out: they exist nowhere else.
  std::optional<RawPage> unread_ram_items() const;
  // The memory items still queued, staged into pages to be written: each item numbered
  // `seq`, accepted at `at_ms`, is encoded between begin_shutdown_item() and
  // end_shutdown_item().
  std::string& begin_shutdown_item(std::uint64_t seq, std::uint64_t at_ms);
  void end_shutdown_item(std::uint64_t at_ms) { shutdown_.back().end_item(at_ms); }
  std::vector<RawPage> take_shutdown_pages() { return std::move(shutdown_); }

 private:
  std::uint32_t page_bytes_;
  bool due_ = false;        // a Disk marker was popped; its page is not loaded yet
  std::string raw_;         // the page being read
  std::optional<format::ItemCursor> items_;
  std::uint32_t left_ = 0;   // its items not yet handed out
  std::uint32_t index_ = 0;  // its items consumed, skipped ones included
  std::uint64_t first_seq_ = 0;
  std::uint64_t base_ms_ = 0;    // its items' times: base_ms_ + offset (version 2)
  std::uint64_t newest_ms_ = 0;
  bool timed_ = false;           // its items carry times (not a version 1 page)
  bool from_file_ = false;
  std::uint64_t segment_ = 0;
  std::uint32_t attempts_ = 0;   // failed reads of the due page so far
  Clock::time_point retry_at_{};  // when the due page may be read again
  Status error_;                  // why its last read failed
  std::vector<RawPage> held_;
  std::deque<std::uint64_t> held_footprints_;  // of each item in held_, in order
  std::vector<RawPage> shutdown_;
  // High-water mark: every item numbered below it was handed out (or lost to damage).
  std::uint64_t deliver_seq_;
  SegmentReader reader_;
};

}  // namespace hopper::detail
