// Core: the type-independent half of a queue — the queue lock, budgets, the open page,
// sealed pages, segment files and the receiver's read path. Queue<T> adds the deque of
// Placement<T> on top. Not part of the public API.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <hopper/options.hpp>
#include <hopper/stats.hpp>
#include <hopper/status.hpp>

namespace hopper::detail {

struct DiskState;   // defined in src/core.cpp
struct SealedPage;  // likewise

using Clock = std::chrono::steady_clock;

// How long a call may wait for room or for an item.
struct Wait {
  enum Kind { never, forever, until } kind = forever;
  Clock::time_point deadline{};
  static Wait none() { return {never, {}}; }
  static Wait always() { return {forever, {}}; }
  static Wait for_(std::chrono::milliseconds d) { return {until, Clock::now() + d}; }
  bool expired(Clock::time_point now) const noexcept { return kind == never || (kind == until && now >= deadline); }
};

// What happened to an item offered to the open page.
enum class SpillVerdict {
  accepted,   // the item is in the open page, numbered next_seq++
  need_seal,  // the page must be sealed first (it cannot grow past a segment); retry
  full,       // no room in the disk budget
  behind,     // too many sealed pages wait for the writer: help it, or wait for it (the
              // budgets have room: not a reason to fail or drop anything — unless the disk
              // refuses writes, see disk_refusal())
  too_large,  // the item can never fit in a segment
};

// Thread-safety: members marked [mu] are guarded by `mu`; members marked [receiver]
// are touched only by the one receiving thread (or by the destructor, when no other
// handle is left). Everything else is immutable after open().
//
// Lock order: `mu` is the only lock. No file I/O and no compression happen under it:
// page writes are done with `mu` released by whoever holds the writer token
// (DiskState::writing), sealed pages may be compressed beforehand, in parallel, by any
// thread that claimed one (SealedPage::Stage::compressing), and page reads are done by
// the receiver on its private state.
//
// Disk faults (docs/durability.md, "Disk faults"): a failed page write keeps the page in
// RAM and schedules a retry after a back-off (or, under SyncPolicy::always, answers its
// senders); a failed sync closes the file for appends and answers the senders it was to
// acknowledge; a failed read is retried, then the page is skipped and counted; a failed
// unlink keeps the segment counted and is retried. Whoever waits on a condition variable
// while a retry is scheduled waits no longer than until it is due, and retries then.
class Core {
 public:
  static Result<std::unique_ptr<Core>> open(const Options& options);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  const Options& options() const noexcept { return opt_; }

  std::mutex mu;
  std::condition_variable receiver_cv;  // the receiver waits here for items or pages
  std::condition_variable sender_cv;    // senders wait here for room

  // ---- [mu] handles and waiters ----
  int senders = 0;
  bool receiver_alive = true;
  bool receiver_waiting = false;
  int senders_waiting = 0;
  int room_waiters = 0;  // of senders_waiting, those waiting for room (not for a sync)

  // ---- [mu] the placement deque's accounting (the deque lives in Queue<T>) ----
  std::uint64_t memory_bytes = 0;
  std::uint64_t memory_items = 0;
  std::uint64_t markers = 0;  // Disk(n) markers in the deque
  bool disk_mode = false;     // senders append to the open page (see docs/architecture.md)
  std::uint64_t next_seq = 0; // sequence number of the next accepted item
  std::uint64_t items_sent = 0;

  // ---- [mu] spill path ----
  bool spill_enabled() const noexcept { return opt_.max_disk_bytes > 0; }
  // SyncPolicy::always: every item goes to disk and its sender waits until it is synced.
  bool sync_always() const noexcept { return opt_.sync == SyncPolicy::always; }
  // Memory mode resumes only at or below this many bytes (hysteresis).
  std::uint64_t low_water() const noexcept { return opt_.max_memory_bytes / 2; }
  // The open page's bytes: call begin_item(), append an item's encoding, then end_item().
  std::string& page() noexcept { return page_; }
  std::size_t begin_item();
  SpillVerdict end_item(std::size_t mark);
  bool page_open() const noexcept { return page_items_ > 0; }
  bool page_full() const noexcept { return page_.size() >= opt_.page_bytes; }
  // Seals the open page (it joins the sealed pages, in order) and returns its item count;
  // the caller pushes Disk(count) while still holding `mu`.
  std::uint64_t seal();
  // Spill work, whatever this thread can do now: append the sealed pages at the front if
  // no one holds the writer token (taking it) and no retry back-off is running, else
  // compress a sealed page nobody has claimed, so that appends find it compressed.
  // Releases `lk` during compression and I/O; returns with it held. False when there was
  // nothing this thread could do: wait (wait_for_spill_work), and try again.
  bool write_sealed(std::unique_lock<std::mutex>& lk);
  // flush() and shutdown: writes every sealed page now (one attempt each, back-off or
  // not), waiting for other writers as needed. The first write error is returned; the
  // pages it concerns stay in RAM.
  Status write_all(std::unique_lock<std::mutex>& lk);
  // Not ok while the disk refuses page writes: the last attempt failed (and its page is
  // kept in RAM for a retry). Under SyncPolicy::none and interval, sends go on into RAM
  // pages while there is room for them; then the full policy applies.
  const Status& disk_refusal() const noexcept { return write_error_; }
  // Waits on sender_cv until notified, `wait`'s deadline, or the next retry of a failed
  // disk operation comes due, whichever is first (the waiter then retries it). True when
  // the wait's own deadline has passed. `for_room`: the waiter wants room (room_waiters).
  bool wait_sender(std::unique_lock<std::mutex>& lk, const Wait& wait, bool for_room);
  // SyncPolicy::always: where the item numbered `seq` stands.
  enum class Durability { waiting, durable, failed };
  // A `failed` answer is given once per item (its sender's): then it is forgotten.
  Durability durability(std::uint64_t seq, Status& why);
  bool writer_busy() const noexcept;
  // FullPolicy::drop_oldest with spilling: discards the oldest segment (its unread pages
  // are skipped by the receiver and counted), or, when the disk refuses writes and no
  // segment can go, the oldest sealed page waiting in RAM. False when nothing can be
  // dropped now.
  bool drop_oldest_on_disk(std::unique_lock<std::mutex>& lk);
  std::uint64_t items_dropped = 0;   // [mu]
  std::uint64_t skipped_in_memory = 0;  // [mu] memory items dropped ahead of the receiver
  // Sealed pages wait and this thread could write or compress one: a sender about to wait
  // for room does that instead (room on disk may only be missing because nobody wrote).
  bool writer_idle_with_work() const noexcept;
  // The active segment is read to the end but was kept for more appends (see
  // keep_read_active): retire and remove it now that its room is needed. True when it went.
  bool reclaim_read_active(std::unique_lock<std::mutex>& lk);
  // Segments whose unlink failed are removed again once their retry is due. True when one
  // went (room came back). Senders and the receiver call it whenever removal_pending():
  // a failed unlink needs no manual call to be retried.
  bool retry_removals(std::unique_lock<std::mutex>& lk);
  bool removal_pending() const noexcept { return failed_removals_ > 0; }

  // ---- receiver ----
  // [mu] The receiver popped a Disk marker: the next page in order is now due.
  void page_due() noexcept { page_due_ = true; }
  // [receiver] The next item of the due page, or got = false when it has no more items
  // (then the receiver goes back to the deque). Takes `mu` only to fetch a page, and waits
  // (for a page being written, or a read to retry) no longer than `wait` allows: then
  // empty (Wait::never) or timeout. A failed read is retried a few times, then the page is
  // skipped and counted; damaged pages are skipped and counted. io_error only when a page
  // the receiver must write before reading it (manual_commit, SyncPolicy::always) cannot
  // be written now.
  Status next_disk_item(std::string_view& out, bool& got, const Wait& wait);
  bool disk_item_pending() const noexcept { return page_due_ || read_left_ > 0; }
  // [receiver] The delivery position: every item numbered below it was handed out, or
  // passed over (damaged, dropped). See Receiver::position.
  std::uint64_t position() const noexcept { return deliver_seq_; }
  // [receiver] Persists `position` (at most position()) as the commit position, and lets
  // go of what only the items numbered below it kept: their held memory (footprint and
  // encoding) and segments wholly below it. See Receiver::commit.
  Status commit(std::uint64_t position);
  Status commit() { return commit(deliver_seq_); }
  // [receiver, mu] manual_commit: a memory item handed out stays charged against the
  // budget, and is kept encoded (for a clean shutdown) until a commit passes it.
  bool holds_uncommitted() const noexcept { return opt_.manual_commit; }
  // [receiver] The encoding of the memory item just handed out goes after begin_held(),
  // which is told the footprint it stays charged.
  std::string& held() noexcept { return held_.back().raw; }
  void begin_held(std::uint64_t footprint);
  void end_held();
  // [receiver] One more item handed out from memory / one item failed to deserialize.
  void delivered_memory_item() noexcept;
  void delivered_disk_item() noexcept;
  // [receiver, mu] drop_oldest discarded `n` memory items at the front of the deque.
  void skip_dropped_memory_items(std::uint64_t n) noexcept;
  void corrupt_item() noexcept;
  std::uint64_t items_received() const noexcept { return received_.load(std::memory_order_relaxed); }

  // ---- open and shutdown ----
  // Item counts of the recovered pages, in order: Queue<T> pushes a Disk marker for each.
  std::vector<std::uint64_t> recovered_pages() const;
  // [receiver] Shutdown, with no other handle left: writes the receiver's unread in-memory
  // page, then `raw` pages of items that were in memory (first_seq, count, bytes), then the
  // cursor, and syncs. Called once, after write_all().
  struct RawPage {
    std::uint64_t first_seq;
    std::uint32_t count;
    std::string raw;
  };
  Status persist(std::vector<RawPage> memory_pages);

  Stats stats();  // takes `mu`
  std::vector<std::string> damage_report();  // takes `mu`

 private:
  explicit Core(Options options);
  void finish_page();
  Status load_page(const Wait& wait);

  // Replaces CURSOR atomically; `durable` adds the fdatasync and the directory fsync.
  // Not durable: the advisory CURSOR.read instead, which never replaces CURSOR.
  // `end`: next_seq when it is written (the items below it were accepted).
  Status write_cursor(std::uint64_t position, std::uint64_t end, bool durable);
  // [mu] Removes a segment that is read to the end and committed (retiring it first if
  // the writer was appending to it and is idle).
  void release_segment(std::unique_lock<std::mutex>& lk, std::uint64_t number);
  // [mu] Unlinks a segment, releasing `lk` for the call. Its bytes stay counted until the
  // file is gone; a failed unlink is retried later (retry_removals).
  void remove_segment(std::unique_lock<std::mutex>& lk, std::uint64_t number);
  std::uint64_t commit_position() const noexcept;
  // [mu] Takes the writer token and appends the sealed pages at the front until one is
  // being compressed by another thread, then syncs as the policy says. False when an
  // append failed and the page was kept (disk_refusal() says why).
  bool append_pending(std::unique_lock<std::mutex>& lk);
  // [mu, writer token held] The writer stopped appending to `number` (rotation, a failed
  // sync, an abandoned file): pages written to it since its last good sync are durable
  // if `sync` is ok, else answered failed (always) and counted (a sync error when
  // `synced`: the status is an fdatasync's). Never releases the lock; the caller releases
  // the segment (release_segment) once it may.
  void segment_closed(std::uint64_t number, const Status& sync, bool synced = true);
  // [mu] Compresses `page` (claimed: Stage::compressing) with `mu` released.
  void compress_sealed(std::unique_lock<std::mutex>& lk, SealedPage& page);
  // [mu, writer token held] Retires and removes the active segment if it is read to the end.
  void retire_active_if_read(std::unique_lock<std::mutex>& lk);
  // [mu] Whether a segment read to the end that the writer is still appending to stays
  // for more appends rather than being retired now (see docs/architecture.md).
  bool keep_read_active(std::uint64_t bytes) const noexcept;
  // [mu, writer token free] Takes the token, retires the active segment `number` (read to
  // the end) and removes it, gives the token back and wakes waiting senders.
  void retire_idle_active(std::unique_lock<std::mutex>& lk, std::uint64_t number);
  // [mu, writer token held] The writer stops appending to `number` (if it still was).
  void retire_segment(std::uint64_t number);
  // [mu] A segment file is gone (read found it missing): its unread pages are skipped and
  // counted, its bytes leave the budget, and the writer stops appending to it.
  void segment_lost(std::unique_lock<std::mutex>& lk, std::uint64_t number, const Status& why);
  // [mu] The sealed page at the front of `pending` is dropped (drop_oldest while the disk
  // refuses): counted, and its place in the chain becomes a discarded page.
  bool drop_oldest_pending();
  // [mu] When the next retry of a failed write or unlink is due (max() when none is).
  Clock::time_point next_retry() const noexcept;
  void add_damage(std::string line);
  bool may_read_from_ram() const noexcept;

  Options opt_;
  std::unique_ptr<DiskState> d_;  // [mu] unless noted there

  // [mu] the open page: length-prefixed item encodings
  std::string page_;
  std::uint32_t page_items_ = 0;
  std::uint64_t page_first_seq_ = 0;
  // [mu] The last page write failed (ok once one succeeds, or no page it kept is left):
  // the page is kept in RAM and retried when write_retry_at_ comes.
  Status write_error_;
  Clock::time_point write_retry_at_{};
  std::uint32_t write_failures_ = 0;  // in a row, for the back-off
  std::uint32_t failed_removals_ = 0;  // segments whose unlink failed, waiting for a retry
  std::uint64_t durable_seq_ = 0;  // SyncPolicy::always: items numbered below it are synced
                                   // (or answered failed: DiskState::failed is asked first)
  std::uint64_t commit_seq_ = 0;   // items numbered below it are committed

  // [receiver] the page being read
  bool page_due_ = false;       // a Disk marker was popped; its page is not loaded yet
  std::string read_raw_;
  std::size_t read_pos_ = 0;
  std::uint32_t read_left_ = 0;
  std::uint32_t read_index_ = 0;  // items of the page consumed, skipped ones included
  std::uint64_t read_first_seq_ = 0;
  std::uint32_t read_count_ = 0;
  bool read_from_file_ = false;
  std::uint64_t read_segment_ = 0;
  std::uint32_t read_attempts_ = 0;   // failed reads of the due page so far
  Clock::time_point read_retry_at_{};  // when the due page may be read again
  Status read_error_;                  // why its last read failed
  // [receiver] Lets go of the held items numbered below `position`: their encodings leave
  // held_ (a page partly below it is cut), and the sum of their footprints is returned.
  std::uint64_t release_held(std::uint64_t position);

  std::vector<RawPage> held_;      // manual_commit: memory items handed out, not committed
  std::deque<std::uint64_t> held_footprints_;  // the footprint of each item in held_, in order
  std::size_t held_mark_ = 0;
  std::uint64_t deliver_seq_ = 0;  // high-water mark: every item numbered below it was handed out (or lost to damage)
  // Written only by the receiver; read by stats() for reporting. No ordering is derived
  // from it, so relaxed accesses suffice.
  std::atomic<std::uint64_t> received_{0};
};

}  // namespace hopper::detail
