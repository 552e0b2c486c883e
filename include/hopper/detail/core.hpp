// Core: the type-independent engine of a queue. Queue<T> keeps the deque of Placement<T>
// and the receiver's batch; everything else — the lock and the wake-ups, the budgets, the
// open page, sealed pages and the writer, segment files, the receiver's read path, commit,
// open and shutdown — is here, behind methods. Not part of the public API.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <time.h>

#include <hopper/detail/sync.hpp>
#include <hopper/detail/verdicts.hpp>
#include <hopper/options.hpp>
#include <hopper/stats.hpp>
#include <hopper/status.hpp>

namespace hopper {
class FileLock;
class FileSystem;
}  // namespace hopper

namespace hopper::detail {

class ReadPath;
class SpillWriter;
struct SealedPage;

// The largest item encoding a page can hold (a page's raw bytes are at most 2 GiB, and
// the item's frame comes on top; core.cpp checks it against the format). An item larger
// than this could never be written, not even at a clean shutdown, so send() refuses it
// (too_large) rather than lose it later.
inline constexpr std::uint64_t kMaxItemEncoding = (std::uint64_t{1} << 31) - 8;

// What Queue<T>'s open lane holds (docs/architecture.md, "The lane"), for Core::stats.
struct LaneFigures {
  // Core's received count, read before `sent` (Core::received_before): every item counted
  // there was admitted before, so items_received never exceeds items_sent in a snapshot.
  std::optional<std::uint64_t> received;
  std::uint64_t sent = 0;   // items it took since it opened
  std::uint64_t items = 0;  // of them, not yet given back by the receiver
  std::uint64_t bytes = 0;  // their footprints
};

// Capabilities (checked by clang's -Wthread-safety; see sync.hpp):
//   mutex()     the queue lock. Guards Queue<T>'s deque and every member marked
//               HOPPER_GUARDED_BY(mu_) here, and the rooms (src/engine/) Core holds.
//   writer token  taken under the lock (SpillPipeline::writing()); its holder owns the
//               SpillWriter and appends pages with the lock released, so pages reach
//               files in sequence order.
//   receiver()  the receiving thread's role: the read path (the page being read, the
//               delivery position, held items) is touched only by it, without the lock.
// Lock order: the queue lock is the only lock. No file I/O and no compression happen under
// it: whoever does them releases it for the call, and wakes waiters only after unlocking
// where it can.
//
// Disk faults (docs/durability.md, "Disk faults"): a failed page write keeps the page in
// RAM and schedules a retry after a back-off (or, under SyncPolicy::always, answers its
// senders); a failed sync closes the file for appends and answers the senders it was to
// acknowledge; a failed read is retried, then the page is skipped and counted; a failed
// unlink keeps the segment counted and is retried. Whoever waits on a condition variable
// while a retry is scheduled waits no longer than until it is due, and retries then.
//
// Thread-safety: what each method needs is in its annotation; "takes the lock" methods
// may be called from any thread.
class Core {
 public:
  // Validates the options, creates the directory, takes its LOCK and recovers it.
  static Result<std::unique_ptr<Core>> open(const Options& options);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  const Options& options() const noexcept { return opt_; }

  // ---- the queue clock and Options::max_age (docs/architecture.md, "Age")
  // Milliseconds of Unix time, read from the monotonic clock anchored at open: it never
  // goes back while the queue is open, whatever the wall clock does. Coarse (the kernel's
  // tick, a few ms) and cheap: read once per send.
  std::uint64_t now_ms() const noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return clock_offset_ms_ + static_cast<std::uint64_t>(ts.tv_sec) * 1000u +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000000u;
  }
  // Whether an item accepted at `at_ms` is past Options::max_age now (never when max_age
  // is off, or the time is unknown: 0, an item of a version 1 page).
  bool expired(std::uint64_t at_ms) const noexcept {
    if (max_age_ms_ == 0 || at_ms == 0) return false;
    const std::uint64_t now = now_ms();
    return now > at_ms && now - at_ms > max_age_ms_;
  }
  bool expires() const noexcept { return max_age_ms_ != 0; }
  Mutex& mutex() const HOPPER_RETURN_CAPABILITY(mu_) { return mu_; }
  Token& receiver() HOPPER_RETURN_CAPABILITY(receiver_) { return receiver_; }

  // Item counts of the recovered pages, in order: Queue<T> pushes a Disk marker for each
  // before any handle exists, so the backlog is delivered first.
  std::vector<std::uint64_t> recovered_pages() const HOPPER_REQUIRES(mu_);

  // ---- handles (take the lock)
  void add_sender() HOPPER_EXCLUDES(mu_);
  void drop_sender() HOPPER_EXCLUDES(mu_);
  void drop_receiver() HOPPER_EXCLUDES(mu_);
  bool receiver_gone() const HOPPER_REQUIRES(mu_) { return !receiver_alive_; }
  bool senders_gone() const HOPPER_REQUIRES(mu_) { return senders_ == 0; }

  // ---- where a sent item goes: the memory budget and the sender's mode
  // (docs/architecture.md, "Sender modes" and "Budgets")
  bool sync_always() const noexcept { return opt_.sync == SyncPolicy::always; }
  bool holds_uncommitted() const noexcept { return opt_.manual_commit; }
  // Whether the answer of route() depends on the batch items the receiver claimed since
  // the last settle: then Queue<T> settles first.
  bool should_settle(std::uint64_t fp) const HOPPER_REQUIRES(mu_) {
    return !sync_always() && (memory_bytes_ + fp > opt_.max_memory_bytes || (disk_mode_ && markers_ == 0));
  }
  bool memory_fits(std::uint64_t fp) const HOPPER_REQUIRES(mu_) {
    return !sync_always() && memory_bytes_ + fp <= opt_.max_memory_bytes;
  }
  // The sender's mode decides, and changes: memory mode while items fit; disk mode once
  // one does not (and spilling is on), so that no item overtakes an earlier one; back to
  // memory once the receiver has taken every spilled page and memory is at most half full
  // (hysteresis). SyncPolicy::always stays in disk mode.
  Route route(std::uint64_t fp) HOPPER_REQUIRES(mu_) {
    const bool fits = memory_fits(fp);
    if (sync_always()) disk_mode_ = true;
    if (!disk_mode_) {
      if (fits) return Route::memory;
      if (opt_.max_disk_bytes > 0) {
        disk_mode_ = true;
      } else if (fp > opt_.max_memory_bytes) {
        return Route::too_large;
      }
    }
    if (disk_mode_) {
      if (markers_ == 0 && fits && (memory_bytes_ == 0 || memory_bytes_ + fp <= opt_.max_memory_bytes / 2))
        return Route::leave_disk;
      return Route::page;
    }
    return Route::no_room;
  }
  // Memory mode ends: the caller sealed the open page (its items precede the next one).
  void leave_disk_mode() HOPPER_REQUIRES(mu_) { disk_mode_ = false; }
  // An item of footprint `fp` joined the deque, numbered next. True when the receiver
  // waits (the caller wakes it once it has released the lock).
  bool memory_pushed(std::uint64_t fp) HOPPER_REQUIRES(mu_) {
    memory_bytes_ += fp;
    ++memory_items_;
    ++next_seq_;
    ++items_sent_;
    HOPPER_ASSERT(memory_bytes_ <= opt_.max_memory_bytes, "the memory budget was exceeded");
    return wake_due();
  }
  // Items the receiver claimed from its batch leave the budget (Queue<T>::settle).
  void memory_settled(std::uint64_t bytes, std::uint64_t items) HOPPER_REQUIRES(mu_) {
    HOPPER_ASSERT(bytes <= memory_bytes_ && items <= memory_items_, "settled more than memory held");
    memory_bytes_ -= bytes;
    memory_items_ -= items;
  }
  // The receiver takes a memory item under the lock. With manual_commit it stays charged
  // until a commit passes it (and its encoding is kept: begin_held).
  void memory_handed_out(std::uint64_t fp) HOPPER_REQUIRES(mu_) {
    if (holds_uncommitted()) {
      uncommitted_footprint_ += fp;
    } else {
      HOPPER_ASSERT(fp <= memory_bytes_, "handed out more than memory held");
      memory_bytes_ -= fp;
    }
    --memory_items_;
  }
  // The receiver found the memory item at the deque's front past Options::max_age: it
  // leaves the budget and is passed over (expired_memory_item).
  void memory_expired(std::uint64_t fp) HOPPER_REQUIRES(mu_, receiver_) {
    HOPPER_ASSERT(fp <= memory_bytes_ && memory_items_ > 0, "expired more than memory held");
    memory_bytes_ -= fp;
    --memory_items_;
    expired_memory_item(fp);
  }
  // FullPolicy::drop_oldest discarded a memory item. `ahead_of_receiver`: it was taken
  // from the deque's front (the receiver then skips its number).
  void memory_dropped(std::uint64_t fp, bool ahead_of_receiver) HOPPER_REQUIRES(mu_) {
    HOPPER_ASSERT(fp <= memory_bytes_ && memory_items_ > 0, "dropped more than memory held");
    memory_bytes_ -= fp;
    --memory_items_;
    ++items_dropped_;
    if (ahead_of_receiver) ++skipped_in_memory_;
  }
  std::uint64_t memory_bytes() const HOPPER_REQUIRES(mu_) { return memory_bytes_; }

  // ---- Queue<T>'s lane (docs/architecture.md, "The lane")
  // The lane closed: the `issued` items it took since it opened are numbered now (they
  // precede anything accepted after), and those the receiver has not given back yet
  // (`items`, `bytes`) count in the memory budget until it does (memory_settled).
  void lane_closed(std::uint64_t issued, std::uint64_t bytes, std::uint64_t items) HOPPER_REQUIRES(mu_) {
    next_seq_ += issued;
    items_sent_ += issued;
    memory_bytes_ += bytes;
    memory_items_ += items;
  }
  // Whether the lane may open again: memory mode, nothing in the budget, no marker, no
  // open page, a receiver. (Queue<T> checks its own deque, batch and ring.)
  bool lane_may_open() const HOPPER_REQUIRES(mu_) {
    return !disk_mode_ && markers_ == 0 && memory_bytes_ == 0 && memory_items_ == 0 && receiver_alive_ &&
           !page_open();
  }
  // A lane sender published an item and the receiver asked to be woken (it waits on its
  // condition variable, or its wait handle is armed): true when the caller must wake it,
  // once it has released the lock.
  bool take_wake() HOPPER_REQUIRES(mu_) { return wake_due(); }
  std::uint64_t next_seq() const HOPPER_REQUIRES(mu_) { return next_seq_; }
  // The deque holds Disk markers: the receiver must take items one by one (no batch).
  bool has_markers() const HOPPER_REQUIRES(mu_) { return markers_ != 0; }

  // ---- refusals, with messages naming the option (out of line: strings)
  Status refuse_encoding(std::uint64_t encoding_bytes) const;
  Status refuse_footprint(std::uint64_t fp) const;
  Status refuse_for_segment(std::uint64_t fp) const;
  Status refuse_full() const HOPPER_REQUIRES(mu_);

  // ---- the open page and the spill path
  // Appending an item to the open page: encode it into the returned buffer, then
  // end_page_item (or cancel_page_item if encoding threw). Accepted: numbered `seq`.
  std::string& begin_page_item() HOPPER_REQUIRES(mu_);
  void cancel_page_item() HOPPER_REQUIRES(mu_);
  SpillVerdict end_page_item(std::uint64_t& seq, std::uint64_t at_ms) HOPPER_REQUIRES(mu_);
  bool page_open() const HOPPER_REQUIRES(mu_);
  bool page_full() const HOPPER_REQUIRES(mu_);
  // Seals the open page (it joins the sealed pages, in order); returns its item count
  // (0: no page was open). The caller pushes Disk(count), then marker_pushed().
  std::uint64_t seal() HOPPER_REQUIRES(mu_);
  // SyncPolicy::always: whether a leader finding the writer idle should let the senders of
  // the last group join the open page first (it holds fewer items than that group had).
  bool group_forming() const HOPPER_REQUIRES(mu_);
  void marker_pushed() HOPPER_REQUIRES(mu_);
  // Spill work, whatever this thread can do now: append the sealed pages at the front if
  // no one holds the writer token (taking it) and no retry back-off is running, else
  // compress a sealed page nobody has claimed, so that appends find it compressed.
  // Releases the lock during compression and I/O; returns with it held. False when there
  // was nothing this thread could do: wait (wait_sender), and try again.
  bool write_sealed() HOPPER_REQUIRES(mu_);
  // flush() and shutdown: writes every sealed page now (one attempt each, back-off or
  // not), waiting for other writers as needed. The first write error is returned; the
  // pages it concerns stay in RAM.
  Status write_all() HOPPER_REQUIRES(mu_);
  // A sender just sealed a page (and pushed its marker): with compression helpers running
  // (Options::compression_threads), an idle one is woken for it and the sender goes on;
  // else the sender writes it now (write_sealed). Pages the receiver seals to read them
  // are not handed to helpers: it takes them from RAM.
  void spill_sealed() HOPPER_REQUIRES(mu_) {
    if (!helping_) {
      (void)write_sealed();
    } else if (helpers_idle_ > 0) {
      helper_cv_.notify_one();
    }
  }
  // Not ok while the disk refuses page writes (its page is kept in RAM for a retry). Under
  // SyncPolicy::none and interval, sends go on into RAM pages while there is room for
  // them; then the full policy applies.
  Status disk_refusal() const HOPPER_REQUIRES(mu_);
  bool writer_busy() const HOPPER_REQUIRES(mu_);
  // Sealed pages wait and this thread could write or compress one: a sender about to wait
  // for room does that instead (room on disk may only be missing because nobody wrote).
  bool writer_idle_with_work() const HOPPER_REQUIRES(mu_);
  // SyncPolicy::always: where the item numbered `seq` stands (a `failed` answer is given
  // once, to its sender, with the reason in `why`).
  Durability durability(std::uint64_t seq, Status& why) HOPPER_REQUIRES(mu_);

  // ---- room on disk
  // The active segment is read to the end but was kept for more appends: retire and remove
  // it now that its room is needed. True when it went.
  bool reclaim_read_active() HOPPER_REQUIRES(mu_);
  // Segments whose unlink failed are removed again once their retry is due. True when one
  // went (room came back). Senders and the receiver call it whenever a removal is pending:
  // a failed unlink needs no manual call to be retried.
  bool retry_removals() HOPPER_REQUIRES(mu_);
  // Inline: every send and every receive that locks passes here.
  void retry_removals_if_due() HOPPER_REQUIRES(mu_) {
    if (removal_pending_) (void)retry_removals();
  }
  // FullPolicy::drop_oldest with spilling: discards the oldest segment (its unread pages
  // are skipped by the receiver and counted), or, when the disk refuses writes and no
  // segment can go, the oldest sealed page waiting in RAM. False when nothing can be
  // dropped now.
  bool drop_oldest_on_disk() HOPPER_REQUIRES(mu_);
  // Options::max_age, when the disk is full: the oldest segment goes if every page in it is
  // past the age and none of it has been read (so nothing of it was handed out, committed
  // or not): its items count as expired. True when it went. Whatever the full policy: an
  // expired item is never worth keeping a new one out.
  bool reclaim_expired() HOPPER_REQUIRES(mu_);

  // ---- waiting and waking
  // A sender waits on its condition variable until notified, `wait`'s deadline, or the
  // next retry of a failed disk operation comes due, whichever is first (the waiter then
  // retries it). True when the wait's own deadline has passed. `for_room`: the waiter
  // wants room (it keeps a read active segment from being kept for appends).
  bool wait_sender(const Wait& wait, bool for_room) HOPPER_REQUIRES(mu_);
  // The receiver waits for an item, or for `wait`'s deadline (true when it passed).
  bool wait_receiver(const Wait& wait) HOPPER_REQUIRES(mu_);
  bool senders_waiting() const HOPPER_REQUIRES(mu_) { return senders_waiting_ > 0; }
  // Wakes them: after releasing the lock where possible (a waiter woken under it would
  // only block on it). The receiver is also woken through its wait handle, if it has one.
  void notify_receiver() noexcept {
    receiver_cv_.notify_one();
    if (wait_fd_.load(std::memory_order_acquire) >= 0) signal_wait_handle();
  }

  // ---- the wait handle (Receiver::wait_handle)
  // An eventfd, made on the first call and kept until the queue closes: readable whenever
  // a receive that does not wait could return something (an item, closed), and sometimes
  // when it could not (then it returns empty, and the handle is quiet again).
  Result<int> wait_handle() HOPPER_REQUIRES(receiver_) HOPPER_EXCLUDES(mu_);
  // The receiver asked for a wait handle (wait_handle(); only the receiver does).
  bool has_wait_handle() const noexcept { return wait_fd_.load(std::memory_order_relaxed) >= 0; }
  // A receive that may not wait found nothing: the handle is emptied, and the next thing
  // that would wake a waiting receiver makes it readable. Under the same lock acquisition
  // as the look that found nothing, so no arrival can fall between them.
  void arm_wait_handle() HOPPER_REQUIRES(mu_) {
    if (wait_fd_.load(std::memory_order_relaxed) >= 0) arm_wait_handle_now();
  }
  void notify_senders() noexcept { sender_cv_.notify_all(); }

  // ---- the receiver
  // The receiver popped a Disk marker: the next page in order is now due.
  void marker_taken() HOPPER_REQUIRES(mu_, receiver_);
  // An item is left in the page being read, or a page is due.
  bool disk_item_pending() const HOPPER_REQUIRES(receiver_);
  // The next item of the due page, or got = false when it has no more items (then the
  // receiver goes back to the deque). Takes the lock only to fetch a page, and waits (for
  // a page being written, or a read to retry) no longer than `wait` allows: then empty
  // (Wait::never) or timeout. A failed read is retried a few times, then the page is
  // skipped and counted; damaged pages are skipped and counted. io_error only when a page
  // the receiver must write before reading it (manual_commit, SyncPolicy::always) cannot
  // be written now. `out` stays valid until the next call.
  Status next_disk_item(std::string_view& out, bool& got, const Wait& wait) HOPPER_REQUIRES(receiver_)
      HOPPER_EXCLUDES(mu_);
  // One item handed out: from memory (the delivery position moves), from a page.
  void delivered_memory_item() HOPPER_REQUIRES(receiver_);
  // `n` of them at once (the receiver's batch, one call per claim).
  void delivered_memory_items(std::uint64_t n) HOPPER_REQUIRES(receiver_);
  void delivered_disk_item() noexcept { count_received(); }
  // An item of a valid page did not decode as T: skipped, counted.
  void corrupt_item() noexcept { corrupt_items_.fetch_add(1, std::memory_order_relaxed); }
  // `n` memory items were dropped ahead of the receiver in its batch: their numbers are
  // skipped.
  void skip_delivered(std::uint64_t n) HOPPER_REQUIRES(receiver_);
  // Memory items drop_oldest took from the deque's front count as delivered, unless a page
  // is being read (they come after it, and so must the position).
  void settle_skipped() HOPPER_REQUIRES(mu_, receiver_) {
    if (skipped_in_memory_ > 0) settle_skipped_now();
  }
  // manual_commit: the encoding of the memory item being handed out goes into the returned
  // buffer, between begin_held() and end_held(); it stays charged `footprint` until a
  // commit passes it.
  std::string& begin_held(std::uint64_t footprint, std::uint64_t at_ms) HOPPER_REQUIRES(receiver_);
  void end_held(std::uint64_t at_ms) HOPPER_REQUIRES(receiver_);
  // A memory item of footprint `fp` was past Options::max_age when its turn came: passed
  // over (the delivery position moves past it), counted, never returned. Its budget is
  // given back by the caller (settle, or memory_expired).
  void expired_memory_item(std::uint64_t fp) HOPPER_REQUIRES(receiver_);
  // The delivery position: every item numbered below it was handed out, or passed over
  // (damaged, dropped). See Receiver::position.
  std::uint64_t position() const HOPPER_REQUIRES(receiver_);
  // Persists `position` (at most position()) as the commit position, and lets go of what
  // only the items numbered below it kept: their held memory (footprint and encoding) and
  // segments wholly below it. See Receiver::commit.
  Status commit(std::uint64_t position) HOPPER_REQUIRES(receiver_) HOPPER_EXCLUDES(mu_);

  // ---- compression helpers (Options::compression_threads; src/engine/core_helpers.cpp)
  // Starts them; open does, once the queue is recovered. An error names why a thread could
  // not be started (the ones started are stopped again).
  Status start_helpers() HOPPER_EXCLUDES(mu_);
  // Stops them and waits for them: each finishes the page it is on (compressing it, or
  // appending a round of pages and its sync). Sealed pages left are written by whoever
  // comes next, as without helpers. Shutdown calls it first; again later, it does nothing.
  // Called by the last owner of the queue only (shutdown, ~Core).
  void stop_helpers() HOPPER_EXCLUDES(mu_);

  // ---- shutdown, with no other handle left
  // The memory items, in deque order, each numbered `seq`: encode each into the buffer
  // returned, between begin_shutdown_item() and end_shutdown_item().
  std::string& begin_shutdown_item(std::uint64_t seq, std::uint64_t at_ms) HOPPER_REQUIRES(receiver_);
  void end_shutdown_item(std::uint64_t at_ms) HOPPER_REQUIRES(receiver_);
  // Writes the receiver's unread in-memory page, the memory items, handed-out items not
  // yet committed and sealed pages a failed write left, then the cursor, and syncs.
  // Called once, after write_all().
  Status persist() HOPPER_REQUIRES(receiver_) HOPPER_EXCLUDES(mu_);

  // What the receiver has taken, for a snapshot taken without its cooperation: stored with
  // release by the receiver after each take, so that what this counts was admitted before.
  std::uint64_t received_before() const noexcept { return received_.load(std::memory_order_acquire); }
  // `memory_oldest_ms`: when the oldest memory item waiting was accepted (0: none waits);
  // Queue<T> knows it.
  // `lane`: what Queue<T>'s open lane holds beyond the figures Core keeps.
  // Under the lock, so that Queue<T>'s figures and Core's are one snapshot (the lane closing
  // between two acquisitions would count its items twice).
  Stats stats(std::uint64_t memory_oldest_ms, const LaneFigures& lane) const HOPPER_REQUIRES(mu_);
  std::vector<std::string> damage_report() const HOPPER_EXCLUDES(mu_);

 private:
  struct Rooms;  // src/engine/core.cpp

  explicit Core(Options options);
  void count_received() noexcept;
  // Whether a wake-up is due for the receiver: it waits on its condition variable, or its
  // wait handle is armed (which the wake-up disarms: one signal per arming). One wake-up
  // per wait, too: once woken the receiver looks at everything again under the lock before
  // it waits again, so a second notify meanwhile would only be another futex call (under
  // SyncPolicy::always every item accepted into the open page asked for one).
  bool wake_due() HOPPER_REQUIRES(mu_) {
    if (receiver_waiting_) {
      receiver_waiting_ = false;
      return true;
    }
    if (!handle_armed_) return false;
    handle_armed_ = false;
    return true;
  }
  // Under the lock, for the wake-ups Core makes itself.
  void wake_receiver_locked() HOPPER_REQUIRES(mu_) {
    if (wake_due()) notify_receiver();
  }
  // For an item taken into the open page, or a marker pushed for a sealed page. Under
  // SyncPolicy::always its sender writes the page before it returns, and the receiver can
  // read it only then (append_pending wakes it); a receiver waiting on the condition
  // variable woken now would only contend for the lock and wait again. An armed wait
  // handle is signalled all the same (a try_recv may seal and write the page itself).
  void wake_receiver_unless_always() HOPPER_REQUIRES(mu_) {
    if (!sync_always()) {
      wake_receiver_locked();
    } else if (handle_armed_) {
      handle_armed_ = false;
      notify_receiver();
    }
  }
  void signal_wait_handle() noexcept;
  void arm_wait_handle_now() HOPPER_REQUIRES(mu_);
  void settle_skipped_now() HOPPER_REQUIRES(mu_, receiver_);

  // A compression helper's loop: write or compress sealed pages (write_sealed) while there
  // are any, else wait for a sender's sealed page (spill_sealed) or for a failed write's
  // retry to come due.
  void help() HOPPER_EXCLUDES(mu_);

  // The conductor's steps (src/engine/): each names the lock windows it opens.
  bool append_pending() HOPPER_REQUIRES(mu_);
  void compress_sealed(SealedPage& page) HOPPER_REQUIRES(mu_);
  void segment_closed(std::uint64_t number, const Status& sync, bool synced) HOPPER_REQUIRES(mu_);
  void release_after_append(std::optional<std::uint64_t> closed, std::optional<std::uint64_t> replaced)
      HOPPER_REQUIRES(mu_, writer_token_);
  void release_segment(std::uint64_t number) HOPPER_REQUIRES(mu_);
  void remove_segment(std::uint64_t number) HOPPER_REQUIRES(mu_);
  void retire_segment(std::uint64_t number) HOPPER_REQUIRES(mu_, writer_token_);
  void retire_active_if_read() HOPPER_REQUIRES(mu_, writer_token_);
  void retire_idle_active(std::uint64_t number) HOPPER_REQUIRES(mu_);
  void drop_segment(std::uint64_t number) HOPPER_REQUIRES(mu_);
  void segment_lost(std::uint64_t number, const Status& why) HOPPER_REQUIRES(mu_);
  bool take_writer_token() HOPPER_REQUIRES(mu_) HOPPER_TRY_ACQUIRE(true, writer_token_);
  void give_writer_token() HOPPER_REQUIRES(mu_) HOPPER_RELEASE(writer_token_);
  Clock::time_point next_retry() const HOPPER_REQUIRES(mu_);
  bool may_read_from_ram() const noexcept;
  bool wait_for_page(const Wait& wait, Clock::time_point until) HOPPER_REQUIRES(mu_);
  Status load_page(const Wait& wait) HOPPER_REQUIRES(receiver_) HOPPER_EXCLUDES(mu_);
  void finish_page() HOPPER_REQUIRES(receiver_) HOPPER_EXCLUDES(mu_);
  void add_damage(std::string line) HOPPER_REQUIRES(mu_);
  void count_expired(std::uint64_t items, std::uint64_t bytes) noexcept;

  const Options opt_;
  const std::uint64_t max_age_ms_;      // Options::max_age; 0: off
  const std::uint64_t clock_offset_ms_;  // now_ms() minus the monotonic clock, fixed at open
  std::shared_ptr<FileSystem> fs_;
  std::unique_ptr<FileLock> lock_;

  // The lock starts a cache line: what is above is read on every item (max_age_ms_ by the
  // receiver, unlocked) and must not share a line with the word every send writes. When
  // Options grew by 8 bytes, max_age_ms_ moved onto the lock's line and recv() of u64 ran
  // at half its rate (docs/performance.md, "The lock").
  alignas(64) mutable Mutex mu_;
  CondVar receiver_cv_;  // the receiver waits here for items or pages
  CondVar sender_cv_;    // senders wait here for room, a sealed-page slot or a group commit;
                         // flush and shutdown for the writer
  CondVar helper_cv_;    // idle compression helpers wait here for a sealed page
  Token writer_token_;   // see above; SpillPipeline::writing() says whether it is taken
  Token receiver_;

  // Handles and waiters. Notifications are skipped when the matching waiter count is
  // zero, so the uncontended path makes no futex calls.
  int senders_ HOPPER_GUARDED_BY(mu_) = 0;
  bool receiver_alive_ HOPPER_GUARDED_BY(mu_) = true;
  bool receiver_waiting_ HOPPER_GUARDED_BY(mu_) = false;
  int senders_waiting_ HOPPER_GUARDED_BY(mu_) = 0;
  int room_waiters_ HOPPER_GUARDED_BY(mu_) = 0;  // of senders_waiting_, those waiting for room

  // The deque's accounting (the deque lives in Queue<T>) and the sender's mode.
  std::uint64_t memory_bytes_ HOPPER_GUARDED_BY(mu_) = 0;
  std::uint64_t memory_items_ HOPPER_GUARDED_BY(mu_) = 0;
  std::uint64_t uncommitted_footprint_ HOPPER_GUARDED_BY(mu_) = 0;  // manual_commit: handed out
  std::uint64_t markers_ HOPPER_GUARDED_BY(mu_) = 0;   // Disk(n) markers in the deque
  std::uint64_t last_group_ HOPPER_GUARDED_BY(mu_) = 0;  // items of the page sealed last
  bool disk_mode_ HOPPER_GUARDED_BY(mu_) = false;      // senders append to the open page
  std::uint64_t next_seq_ HOPPER_GUARDED_BY(mu_) = 0;  // the number of the next accepted item
  std::uint64_t items_sent_ HOPPER_GUARDED_BY(mu_) = 0;
  std::uint64_t items_dropped_ HOPPER_GUARDED_BY(mu_) = 0;
  std::uint64_t skipped_in_memory_ HOPPER_GUARDED_BY(mu_) = 0;  // dropped ahead of the receiver
  // SegmentSet::removal_pending(), kept here so the per-item paths test it inline; set
  // where that answer changes: open (undeleted segments) and remove_segment.
  bool removal_pending_ HOPPER_GUARDED_BY(mu_) = false;
  // Compression helpers: running (set by start_helpers, cleared by stop_helpers), and how
  // many wait on helper_cv_ (spill_sealed wakes one). Their threads: in helpers_, touched
  // only by open and by the queue's last owner.
  bool helping_ HOPPER_GUARDED_BY(mu_) = false;
  int helpers_idle_ HOPPER_GUARDED_BY(mu_) = 0;
  struct Helpers;
  std::unique_ptr<Helpers> helpers_;
  // The wait handle: -1 until the receiver asks for it; then set once, closed with Core.
  std::atomic<int> wait_fd_{-1};
  bool handle_armed_ HOPPER_GUARDED_BY(mu_) = false;  // emptied after a receive found nothing

  std::unique_ptr<Rooms> rooms_ HOPPER_PT_GUARDED_BY(mu_);                  // the rooms under the lock
  std::unique_ptr<SpillWriter> writer_ HOPPER_PT_GUARDED_BY(writer_token_);  // the token holder's

  // What the receiver reads and writes per item, on a cache line of its own: the senders
  // write the fields above on every send, and a shared line would travel between their
  // core and the receiver's with each item (measured: memory/u64/1p at 0.94x).
  alignas(64) std::unique_ptr<ReadPath> read_ HOPPER_PT_GUARDED_BY(receiver_);  // the receiver's
  // Counts for stats(), read from any thread for reporting only: relaxed ordering
  // suffices because no decision is derived from them. received_: items handed out
  // (written by the receiver alone). disk_out_: items that left the disk side (handed out,
  // skipped as damaged, dropped). corrupt_items_: items that failed validation.
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> disk_out_{0};
  std::atomic<std::uint64_t> corrupt_items_{0};
  // Items (and their bytes) passed over past max_age (by the receiver, or a sender that
  // reclaimed an expired segment), and, written by the receiver alone, when the next item
  // of the page it reads was accepted (0: none is being read).
  std::atomic<std::uint64_t> expired_items_{0};
  std::atomic<std::uint64_t> expired_bytes_{0};
  std::atomic<std::uint64_t> reading_ms_{0};
  // When the advisory position (CURSOR.read) may next be written for a segment that stays
  // on disk (finish_page).
  Clock::time_point advisory_due_ HOPPER_GUARDED_BY(receiver_){};
};

}  // namespace hopper::detail
