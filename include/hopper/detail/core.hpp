// Core: the type-independent half of a queue — the queue lock, budgets, the open page,
// sealed pages, segment files and the receiver's read position. Queue<T> adds the deque of
// Placement<T> on top. Not part of the public API.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
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

// What happened to an item offered to the open page.
enum class SpillVerdict {
  accepted,   // the item is in the open page, numbered next_seq++
  need_seal,  // the page must be sealed first (it cannot grow past a segment); retry
  full,       // no room in the disk budget
  behind,     // too many sealed pages wait for the writer: help it, or wait for it (the
              // budgets have room: not a reason to fail or drop anything)
  too_large,  // the item can never fit in a segment
  failed,     // the spill path has an I/O error (spill_error())
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
  // no one holds the writer token (taking it), else compress a sealed page nobody has
  // claimed, so that appends find it compressed. Releases `lk` during compression and
  // I/O; returns with it held. False when there was nothing this thread could do (others
  // hold the token and every page): wait on sender_cv, which they notify.
  bool write_sealed(std::unique_lock<std::mutex>& lk);
  // Waits until every sealed page is written (writing them itself when it can); the first
  // write error, if any, is returned. Used by flush and shutdown.
  Status write_all(std::unique_lock<std::mutex>& lk);
  const Status& spill_error() const noexcept { return sync_error_.ok() ? spill_error_ : sync_error_; }
  // SyncPolicy::always: where the item numbered `seq` stands.
  enum class Durability { waiting, durable, failed };
  // A `failed` answer is given once per item (its sender's): then it is forgotten.
  Durability durability(std::uint64_t seq, Status& why);
  bool writer_busy() const noexcept;
  // FullPolicy::drop_oldest with spilling: discards the oldest segment (its unread pages
  // are skipped by the receiver and counted). False when nothing can be dropped now.
  bool drop_oldest_segment(std::unique_lock<std::mutex>& lk);
  std::uint64_t items_dropped = 0;   // [mu]
  std::uint64_t skipped_in_memory = 0;  // [mu] memory items dropped ahead of the receiver
  // Sealed pages wait and this thread could write or compress one: a sender about to wait
  // for room does that instead (room on disk may only be missing because nobody wrote).
  bool writer_idle_with_work() const noexcept;
  // The active segment is read to the end but was kept for more appends (see
  // keep_read_active): retire and remove it now that its room is needed. True when it went.
  bool reclaim_read_active(std::unique_lock<std::mutex>& lk);

  // ---- receiver ----
  // [mu] The receiver popped a Disk marker: the next page in order is now due.
  void page_due() noexcept { page_due_ = true; }
  // [receiver] The next item of the due page, or got = false when it has no more items
  // (then the receiver goes back to the deque). Takes `mu` only to fetch a page. An
  // io_error leaves the page due, to be retried; damaged pages are skipped and counted.
  Status next_disk_item(std::string_view& out, bool& got);
  bool disk_item_pending() const noexcept { return page_due_ || read_left_ > 0; }
  // [receiver] Persists the delivery position; see Receiver::commit.
  Status commit();
  // [receiver, mu] manual_commit: a memory item handed out stays charged against the
  // budget, and is kept encoded (for a clean shutdown) until commit().
  bool holds_uncommitted() const noexcept { return opt_.manual_commit; }
  std::uint64_t uncommitted_footprint = 0;  // [mu]
  // [receiver] The encoding of the memory item just handed out goes after begin_held().
  std::string& held() noexcept { return held_.back().raw; }
  void begin_held();
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
  Status load_page();

  // Replaces CURSOR atomically; `durable` adds the fdatasync and the directory fsync.
  Status write_cursor(std::uint64_t position, bool durable);
  // [mu] Removes a segment that is read to the end and committed (retiring it first if
  // the writer was appending to it and is idle).
  void release_segment(std::unique_lock<std::mutex>& lk, std::uint64_t number);
  std::uint64_t commit_position() const noexcept;
  // [mu] Takes the writer token and appends the sealed pages at the front until one is
  // being compressed by another thread, then syncs as the policy says. False when an
  // append failed and the page was kept (spill_error_ says why).
  bool append_pending(std::unique_lock<std::mutex>& lk);
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
  bool may_read_from_ram() const noexcept;

  Options opt_;
  std::unique_ptr<DiskState> d_;  // [mu] unless noted there

  // [mu] the open page: length-prefixed item encodings
  std::string page_;
  std::uint32_t page_items_ = 0;
  std::uint64_t page_first_seq_ = 0;
  Status spill_error_;             // the last page write failed; retried later
  Status sync_error_;              // an fdatasync failed: sticky, nothing is durable after it
  std::uint64_t durable_seq_ = 0;  // SyncPolicy::always: items numbered below it are synced
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
  std::vector<RawPage> held_;      // manual_commit: memory items handed out, not committed
  std::size_t held_mark_ = 0;
  std::uint64_t deliver_seq_ = 0;  // high-water mark: every item numbered below it was handed out (or lost to damage)
  // Written only by the receiver; read by stats() for reporting. No ordering is derived
  // from it, so relaxed accesses suffice.
  std::atomic<std::uint64_t> received_{0};
};

}  // namespace hopper::detail
