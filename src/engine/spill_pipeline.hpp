// SpillPipeline: sealed pages on their way to the disk, and the written pages the receiver
// has still to read, in order.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <hopper/detail/sync.hpp>
#include <hopper/detail/verdicts.hpp>
#include <hopper/options.hpp>
#include <hopper/status.hpp>

#include "engine/open_page.hpp"
#include "storage/format.hpp"
#include "storage/io_error.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {

// How many compression helpers a queue with these options runs: Options::compression_threads,
// or none when nothing spills (max_disk_bytes = 0) or under SyncPolicy::always (every sender
// writes, and waits for, its own page's group commit: a helper would only add a hand-off).
inline std::uint32_t compression_helpers(const Options& o) {
  return o.max_disk_bytes > 0 && o.sync != SyncPolicy::always ? o.compression_threads : 0;
}

// A sealed page: its items, in RAM, until the writer appends it (or the receiver takes it
// from RAM).
struct SealedPage {
  RawPage page;
  std::uint64_t bound = 0;  // what it may add to the disk once written (SpillWriter::bound)
  // raw: nobody has compressed it (the appender compresses it inline); compressing: a
  // thread compresses it with the queue lock released — meanwhile nobody moves it or reads
  // it from RAM; compressed: `frame` holds header room and the zstd frame.
  enum class Stage : std::uint8_t { raw, compressing, compressed } stage = Stage::raw;
  bool help_failed = false;  // compressing outside failed: left to the appender, who reports
  std::string frame;
};

// A page in the chain the receiver reads: written (a place in a segment file), or
// discarded — dropped by drop_oldest, lost with its file, or never written (a failed write
// under SyncPolicy::always) — whose items the receiver skips.
struct UnreadPage {
  format::PageRef ref;
  std::uint32_t skip = 0;   // leading items delivered before a restart (recovery)
  bool discarded = false;
};

// Pages after the open page, in sequence order: written (`unread`, the receiver's next),
// then at most one in flight (being appended, the queue lock released), then sealed
// (`pending`, in RAM). Holds the rules of getting them to disk: the writer token's state
// (only its holder appends, so pages reach files in order), compress-ahead (a thread that
// finds the token taken compresses a later page for the appender), the back-off after a
// failed write, and group commit (SyncPolicy::always: which items are durable, and which
// were answered failed — each failed range kept until each of its senders has been told).
//
// Publication rule: a written page joins `unread` before anything may release the queue
// lock again (page_written does it), so the receiver never finds nothing in flight and
// takes the next sealed page from RAM out of order.
//
// Thread-compatible: Core holds it under the queue lock; a claimed page (Stage::compressing)
// and the page in flight are touched outside it only by the thread that claimed them.
class SpillPipeline {
 public:
  // Sealed pages may wait for the writer, holding their raw bytes in RAM, up to
  // max_pending(): kPendingBytes of pages, at least kMaxPending and at most
  // kMaxPendingHelped of them; past it a spilling sender waits (or writes them itself).
  // Bounds the spill path's memory to roughly two pages more. While the disk refuses
  // writes, this is also all the RAM that holds what could not be written: past it, the
  // full policy applies. Pages are appended in order, so while the front page is being
  // compressed the other senders can only fill and compress the ones behind it: with 4,
  // 4 producers on 2 cores left the cores idle 18% of the time (spill/line/4p: 1.12x with
  // 8, 1.20x with 16 — docs/performance.md, "Sealed pages in waiting").
  static constexpr std::size_t kMaxPending = 4;
  static constexpr std::uint64_t kPendingBytes = 1 << 20;
  // The same with compression helpers (Options::compression_threads). Pages are appended in
  // order, so a thread can compress ahead of the page being compressed for the writer only
  // as far as this: 4 left the sender and a helper waiting for each other a quarter of the
  // time (spill/line/1p: 1.11x zstd-1 with 4, 1.16x with 8, 1.27x with 16).
  static constexpr std::size_t kMaxPendingHelped = 16;

  // `next_seq`: the number the next accepted item gets (every item below it is durable or
  // was delivered before: recovered).
  SpillPipeline(const Options& options, std::uint64_t next_seq);

  // ---- sealed pages
  void push(RawPage sealed);
  bool full() const noexcept { return pending_.size() >= max_pending_; }
  std::size_t max_pending() const noexcept { return max_pending_; }
  bool has_pending() const noexcept { return !pending_.empty(); }
  // Worst-case bytes the sealed pages and the one in flight may add to the disk.
  std::uint64_t pending_bound() const noexcept { return pending_bound_; }

  // ---- the writer token's state (Core's Token names the capability)
  bool writing() const noexcept { return writing_; }
  void set_writing(bool writing);
  // Whether the token's holder may append the front page now: there is one, nobody is
  // compressing it, and no back-off after a failed write is running.
  bool may_append(Clock::time_point now) const;
  // The same, whoever holds the token: sealed pages wait and a thread could write or
  // compress one (a sender about to wait for room does that instead).
  bool idle_with_work(Clock::time_point now) const;
  // The front page, out of `pending`, to be appended with the lock released. Precondition:
  // has_pending() and the front is not being compressed.
  SealedPage start_append();
  bool front_being_compressed() const;
  bool in_flight() const noexcept { return in_flight_; }

  // ---- what an append did (the page given back by start_append)
  // Written: it joins `unread` (the publication rule), its bytes leave pending_bound.
  void page_written(SealedPage page, const AppendedPage& where);
  // Failed under SyncPolicy::always: never delivered (a discarded page in its place), its
  // senders answered `why`.
  void page_failed(SealedPage page, const Status& why);
  // Failed otherwise: back at the front, retried once the back-off has passed.
  void page_kept(SealedPage page, const Status& why, Clock::time_point now);
  std::uint64_t write_errors() const noexcept { return write_errors_; }

  // ---- compress-ahead
  // Claims the first sealed page nobody has claimed (Stage::compressing); null when none.
  // The page stays where it is: a deque keeps references to its elements valid across
  // pushes and pops at its ends, and nobody moves a claimed page.
  SealedPage* claim();
  bool claimable() const;
  // Compression of a claimed page ended (`frame` on success).
  void compressed(SealedPage& page, const Status& s, std::string frame);
  // Zstd contexts not in use, for threads that compress outside the token (at most one per
  // page being compressed).
  std::unique_ptr<Compressor> take_compressor();
  void return_compressor(std::unique_ptr<Compressor> c);

  // ---- the segment being appended to
  const std::optional<std::uint64_t>& active_segment() const noexcept { return active_; }
  void set_active_segment(std::optional<std::uint64_t> number) { active_ = number; }
  // A segment found missing while being appended to: the writer leaves it before its next
  // page (take_retire_request tells it).
  void request_retire(std::uint64_t number) { retire_requested_ = number; }
  std::optional<std::uint64_t> take_retire_request() { return std::exchange(retire_requested_, std::nullopt); }

  // ---- durability and group commit
  // Whether a sync follows this round of appends: always, or (interval) when the interval
  // has passed since the last one.
  bool sync_due(Clock::time_point now) const;
  // A group commit's fdatasync ran at `now`; ok: the pages since the last one are durable.
  void synced(Clock::time_point now, bool ok);
  // The writer stopped appending to a file: its sync (`sync`) settles its unsynced pages —
  // durable if ok, else each range answered failed. `synced`: the status is an
  // fdatasync's (counted as a sync error if it failed). Returns the items answered failed.
  std::uint64_t segment_closed(const Status& sync, bool synced);
  // Forgets the pages awaiting a sync of the active file (it was abandoned).
  void forget_unsynced() { unsynced_.clear(); }
  // SyncPolicy::always: every item numbered below `end` is synced or answered failed.
  void durable_below(std::uint64_t end);
  // Where the item numbered `seq` stands. A `failed` answer is given once per item (its
  // sender's): then it is forgotten.
  Durability durability(std::uint64_t seq, Status& why);
  std::uint64_t syncs() const noexcept { return syncs_; }
  std::uint64_t sync_errors() const noexcept { return sync_errors_; }

  // ---- failed writes
  // Not ok while the disk refuses page writes: the last attempt failed and its page is kept
  // in RAM for a retry.
  const Status& write_error() const noexcept { return write_error_; }
  // When a retry of the kept page is due (max() when none is).
  Clock::time_point next_retry() const;

  // ---- the receiver's side of the chain
  void add_recovered(const format::DuePage& page);
  bool has_unread() const noexcept { return !unread_.empty(); }
  const UnreadPage& next_unread() const { return unread_.front(); }
  void pop_unread() { unread_.pop_front(); }
  void unpop_unread(const UnreadPage& page) { unread_.push_front(page); }  // a read to retry
  // Marks the unread pages of `number` discarded; returns their pages and items.
  std::pair<std::uint64_t, std::uint64_t> discard_segment(std::uint64_t number);
  // The unread pages of `number` in the chain: how many, their items and raw bytes, and
  // the newest time of their items (0 if any of them has none: format version 1).
  struct SegmentAge {
    std::uint64_t pages = 0, items = 0, raw_bytes = 0, newest_ms = 0;
  };
  SegmentAge segment_age(std::uint64_t number) const;
  // The front sealed page may be read straight from RAM (none in flight, nobody is
  // compressing it).
  bool readable_from_ram() const;
  // Takes the front sealed page to read it from RAM: it never reaches a file.
  RawPage take_for_reading();
  // drop_oldest while the disk refuses writes: the front sealed page goes (a discarded page
  // in its place). Its item count, or nullopt when it cannot go now (the writer holds it).
  std::optional<std::uint32_t> drop_front();
  // Shutdown: every sealed page left, in order.
  std::vector<RawPage> take_pending();
  // When the oldest item of the chain with a known time was accepted (0: none; pages of
  // format version 1 have no times).
  std::uint64_t oldest_waiting_ms() const;

  // ---- totals
  std::uint64_t pages_written() const noexcept { return pages_written_; }
  std::uint64_t pages_compressed_ahead() const noexcept { return pages_compressed_ahead_; }
  std::uint64_t bytes_uncompressed() const noexcept { return bytes_uncompressed_; }
  std::uint64_t bytes_compressed() const noexcept { return bytes_compressed_; }

 private:
  struct FailedRange {
    std::uint64_t begin, end;
    Status why;
    std::uint64_t unanswered;  // senders of its items not yet told (each waits for it)
  };

  const bool always_;
  const std::size_t max_pending_;
  const SyncPolicy sync_;
  const std::chrono::milliseconds sync_interval_;

  std::deque<UnreadPage> unread_;   // written (or discarded), in order
  bool in_flight_ = false;
  std::deque<SealedPage> pending_;  // sealed, in order
  std::uint64_t pending_bound_ = 0;  // pending pages and the one in flight
  bool writing_ = false;             // the writer token is taken
  std::optional<std::uint64_t> active_;            // the segment the writer last appended to
  std::optional<std::uint64_t> retire_requested_;  // found missing: the writer must leave it
  std::uint64_t last_end_ = 0;  // one past the last sealed page's items (sequence check)

  // The last page write failed (ok once one succeeds, or no page it kept is left): the page
  // is kept in RAM and retried when write_retry_at_ comes.
  Status write_error_;
  Clock::time_point write_retry_at_{};
  std::uint32_t write_failures_ = 0;  // in a row, for the back-off

  // Group commit (SyncPolicy::always).
  Clock::time_point last_sync_ = Clock::now();
  std::uint64_t durable_seq_ = 0;  // items numbered below it are synced (or answered failed:
                                   // failed_ is asked first)
  std::deque<FailedRange> failed_;  // items whose page failed to be stored
  std::vector<std::pair<std::uint64_t, std::uint64_t>> unsynced_;  // pages written to the
                                                                   // active file since its last good fdatasync

  std::vector<std::unique_ptr<Compressor>> idle_compressors_;

  std::uint64_t write_errors_ = 0;
  std::uint64_t pages_written_ = 0;
  std::uint64_t pages_compressed_ahead_ = 0;
  std::uint64_t bytes_uncompressed_ = 0;
  std::uint64_t bytes_compressed_ = 0;
  std::uint64_t syncs_ = 0;
  std::uint64_t sync_errors_ = 0;
};

}  // namespace hopper::detail
