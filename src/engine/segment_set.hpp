// SegmentSet: the segment files a queue holds, and the rules for letting them go.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <vector>

#include <hopper/detail/sync.hpp>
#include <hopper/options.hpp>
#include <hopper/status.hpp>

#include "storage/segment_reader.hpp"

namespace hopper::detail {

// The segment files present — their bytes (what the disk budget counts), the pages in each
// the receiver has not finished, the highest sequence number each holds, whether the writer
// may still append to it — and the rules of removing them: when a segment may go (read to
// the end and committed; the active one kept for more appends while syncing), an unlink's
// states (none → removing → gone, or → failed → removing again after a back-off), which
// segment drop_oldest takes. It also holds the receiver's open descriptor, because whoever
// removes a segment must close it.
//
// The bottom room: it knows nothing of pages in flight, the writer or the receiver; they
// tell it what happened. Thread-compatible: Core holds it under the queue lock, and runs
// each unlink between begin_removal and end_removal with the lock released.
class SegmentSet {
 public:
  SegmentSet(std::filesystem::path dir, const Options& options);

  // ---- open: what recovery found
  void add(std::uint64_t number, std::uint64_t bytes, std::uint64_t pages);
  // Delivered, but its unlink failed at open: counted, and retried from `now` on.
  void add_undeleted(std::uint64_t number, std::uint64_t bytes, Clock::time_point now);
  // Left in place unread at open (it could not be read, or not wholly scanned): counted,
  // never delivered, never removed by this handle; a later open tries it again.
  void add_held(std::uint64_t number, std::uint64_t bytes);
  // A recovered page of `number` holds items up to `end` (exclusive).
  void note_end(std::uint64_t number, std::uint64_t end);

  // ---- the writer
  // A file the writer created (its header written): counted from now on, and active.
  void opened(std::uint64_t number, std::uint64_t bytes);
  // A page of `bytes` holding items below `end` was appended to `number` (now active).
  void appended(std::uint64_t number, std::uint64_t bytes, std::uint64_t end);
  // Room the writer reserved in `number` past its pages (SpillWriter::slack): counted on
  // disk (physical_bytes), not in what pages may fill (bytes). Ignored for a segment not
  // present.
  void set_slack(std::uint64_t number, std::uint64_t slack);
  // The writer appends to `number` no more (if it is still present).
  void deactivate(std::uint64_t number);
  bool is_active(std::uint64_t number) const;

  // ---- when a segment may go
  enum class Release {
    not_yet,  // absent, held, being removed, pages unread, or items not committed
    remove,   // closed, read to the end and committed
    retire,   // the same, but the writer may still append to it: retire it first
  };
  Release release(std::uint64_t number) const;
  // Read to the end and committed (whatever its removal state): the writer's active
  // segment, when it may be retired.
  bool read_and_committed(std::uint64_t number) const;
  // Whether an active segment read to the end stays for more appends rather than being
  // retired now: when syncing, a new segment costs a directory fsync, which with a receiver
  // that keeps up would come once per group commit; so it is kept until it holds a quarter
  // of segment_bytes, or a sender waits for room (`room_waiters`).
  bool keep_for_appends(std::uint64_t number, int room_waiters) const;
  // The receiver finished one page of `number`. True when that was its last unread page
  // and its items are committed (then it may be released).
  bool page_read(std::uint64_t number);
  // With manual_commit, items numbered below `position` are committed (never moves back).
  void commit(std::uint64_t position);
  std::uint64_t committed() const noexcept { return commit_seq_; }
  // Items numbered below it may leave the disk: committed ones (manual_commit), else all
  // (reading is committing).
  std::uint64_t commit_position() const noexcept;
  // Segments read to the end and committed, neither held nor being removed.
  std::vector<std::uint64_t> releasable() const;

  // ---- removal (the unlink runs between these two, without the queue lock)
  struct Removal {
    std::filesystem::path path;
    OpenSegment descriptor;  // the receiver's, if it was open on this file: close it first
  };
  // Nullopt when the segment is gone or being removed already. Its bytes stay counted
  // until end_removal says the file is gone.
  std::optional<Removal> begin_removal(std::uint64_t number);
  // True when the file is gone (ok, or not_found: removed is removed); else the failure is
  // counted and retried after a back-off.
  bool end_removal(std::uint64_t number, const Status& unlink, Clock::time_point now);
  bool removal_pending() const noexcept { return failed_removals_ > 0; }
  // Failed removals whose retry is due at `now`.
  std::vector<std::uint64_t> due_removals(Clock::time_point now) const;
  // Every failed removal is due at `now` (shutdown gives each one more try).
  void retry_all_at(Clock::time_point now);
  // When the next retry of a failed removal is due (max() when none is).
  Clock::time_point next_retry() const;

  // ---- drop_oldest, expiry and lost files
  // The oldest segment neither held nor being removed.
  std::optional<std::uint64_t> oldest_live() const;
  // Pages found in it at open or appended since (0 when absent).
  std::uint64_t pages(std::uint64_t number) const;
  // A file found gone: none of its pages is left to read. It stays counted until it is
  // unlinked like any segment done with (begin_removal): "not found" then takes it out of
  // the budget, and should the file be there after all (a transient fault said otherwise),
  // it goes rather than stay on disk uncounted. False when it was absent or being removed;
  // `was_active` says whether the writer was appending to it.
  bool lose(std::uint64_t number, bool& was_active);
  // Present and not being removed.
  bool present(std::uint64_t number) const;

  // ---- the receiver's descriptor, kept between pages
  OpenSegment take_read_file() { return std::move(read_file_); }
  // Back from a read of `number`: kept if that segment is still present, else handed back
  // to be closed once the queue lock is released.
  OpenSegment return_read_file(OpenSegment file, std::uint64_t number);
  void close_read_file() { read_file_ = OpenSegment(); }

  // ---- totals
  // The bytes of the segments' headers and pages: what the disk budget's admission adds
  // pages to (pages fill reserved room before they grow a file).
  std::uint64_t bytes() const noexcept { return disk_bytes_; }
  // What the files take on disk: bytes() and the room reserved past the pages.
  std::uint64_t physical_bytes() const noexcept { return disk_bytes_ + slack_bytes_; }
  std::uint64_t count() const noexcept { return segments_.size(); }
  std::uint64_t remove_errors() const noexcept { return remove_errors_; }
  void count_remove_errors(std::uint64_t n) noexcept { remove_errors_ += n; }

 private:
  enum class Removing : std::uint8_t { none, removing, failed };
  struct Segment {
    std::uint64_t bytes = 0;    // file size, up to the end of its last page
    std::uint64_t slack = 0;    // reserved room past that (set_slack)
    std::uint64_t unread = 0;   // pages in it the receiver has not finished
    std::uint64_t pages = 0;    // pages in it (found at open or appended since)
    std::uint64_t max_end = 0;  // one past the highest sequence number in it
    bool active = false;        // the writer may still append to it
    // An unlink is under way (nobody else touches the entry meanwhile), or failed and is
    // retried at retry_at. Either way its bytes stay counted until the file is gone.
    Removing removal = Removing::none;
    Clock::time_point retry_at{};
    // Left in place unread at open (add_held): counted, never delivered, never removed.
    bool held = false;
    // May be released, dropped or read to its end: neither held nor being removed.
    bool releasable() const noexcept { return removal == Removing::none && !held; }
  };

  std::filesystem::path dir_;
  bool manual_commit_;
  bool syncing_;                 // SyncPolicy interval or always
  std::uint64_t segment_bytes_;
  std::map<std::uint64_t, Segment> segments_;
  std::uint64_t disk_bytes_ = 0;        // sum of segments_[*].bytes
  std::uint64_t slack_bytes_ = 0;       // sum of segments_[*].slack
  std::uint32_t remove_failures_ = 0;   // unlinks failed in a row, for the back-off
  std::uint32_t failed_removals_ = 0;   // segments in Removing::failed
  std::uint64_t remove_errors_ = 0;
  std::uint64_t commit_seq_ = 0;        // manual_commit: items below it are committed
  OpenSegment read_file_;               // the receiver's, unless it has taken it to read
};

}  // namespace hopper::detail
