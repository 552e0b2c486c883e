// Queue<T>: the deque of Placement<T> — Memory(item) or Disk(n) — and the receiver's batch,
// on top of Core. Not part of the public API; Sender<T> and Receiver<T> are its handles.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <hopper/detail/codec.hpp>
#include <hopper/detail/core.hpp>
#include <hopper/footprint.hpp>
#include <hopper/options.hpp>
#include <hopper/stats.hpp>
#include <hopper/status.hpp>

namespace hopper::detail {

// An item held in memory, with the footprint it was charged and the running total of
// footprints pushed up to and including it (so that the budget of any run of consecutive
// items is known in O(1): see Queue::settle). Its acceptance time is in a TimeMark.
template <class T>
struct Memory {
  // A constructor, so that the deque builds it in place (clang 14 has no parenthesised
  // aggregate initialisation).
  Memory(T&& i, std::uint64_t f, std::uint64_t t) : item(std::move(i)), footprint(f), total(t) {}
  T item;
  std::uint64_t footprint;
  std::uint64_t total;
};

// When memory items were accepted, per run rather than per item: the memory items from the
// one whose Memory::total is `total` on, up to the next mark, were accepted at `at`
// (Core::now_ms). The coarse clock ticks every few ms, so a mark covers many items, and
// Memory<T> stays as small as it was without times (measured: a time per item cost
// memory/u64 about a tenth of its rate). Marks only move forward in time: an item whose
// sender read the clock before an earlier-numbered one gets that one's time.
struct TimeMark {
  std::uint64_t total;
  std::uint64_t at;
};
// The time of the memory item whose Memory::total is `total`, from `marks` (in order) that
// cover it; `from` is where to start looking, and is moved to its mark.
inline std::uint64_t time_of(const std::deque<TimeMark>& marks, std::uint64_t total, std::size_t& from) noexcept {
  if (marks.empty()) return 0;
  while (from + 1 < marks.size() && marks[from + 1].total <= total) ++from;
  return marks[from].at;
}
// A marker: the next `count` items, in order, are in one page on disk (or about to be).
struct Disk {
  std::uint64_t count;
};
template <class T>
using Placement = std::variant<Memory<T>, Disk>;

// A hint to the CPU that this thread is spinning.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// The size of an item's encoding, where it could exceed kMaxItemEncoding: numbers never
// can; strings are measured in O(1); anything else is walked once by a counting archive.
template <class T>
std::uint64_t encoding_size_bound(const T& item) {
  if constexpr (std::is_arithmetic_v<T>) {
    return sizeof(T);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return sizeof(std::uint64_t) + item.size();
  } else {
    return encoded_size(item);
  }
}

// Thread-safe: any number of senders and one receiver. The deque is guarded by the queue
// lock (Core::mutex(), see Core for the lock rules), the receiving calls hold the
// receiver's role (Core::receiver()); the destructor runs when the last handle is gone and
// writes what is still in memory to disk.
//
// The receiver's batch: when the deque holds only memory items, the receiver swaps the
// whole deque out under the lock (O(1)) and hands its items out without the lock, claiming
// each with one atomic increment of `claim_`. Their budget is given back lazily: whoever
// needs an exact figure under the lock (a sender without room, stats(), the receiver's
// next swap) counts the claimed items as gone (settle(), O(1) through Memory::total). A
// sender about to wait for room raises `room_wanted_`, and the receiver then settles and
// wakes it after its next claim. FullPolicy::drop_oldest claims the oldest unclaimed items
// of the batch before the receiver does. See docs/architecture.md.
template <class T>
class Queue {
 public:
  explicit Queue(std::unique_ptr<Core> core) : core_(std::move(core)) {
    // The recovered backlog comes first, before anything sent after this open.
    MutexLock lk(core_->mutex());
    for (std::uint64_t n : core_->recovered_pages()) {
      deque_.emplace_back(std::in_place_type<Disk>, Disk{n});  // in place: no variant temporary
      core_->marker_pushed();
    }
  }
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  ~Queue() {
    try {
      shutdown();
    } catch (...) {
      // Nothing can be reported from a destructor; a reopen recovers what reached disk.
    }
  }

  // On any non-ok result `item` is untouched. `policy` is what to do when both budgets
  // are full and `wait` allows no (more) waiting: fail (Errc::full), block (wait), or
  // drop_oldest (discard the oldest data, then retry).
  Status send(T& item, Wait wait, FullPolicy policy) {
    if (const std::uint64_t bytes = encoding_size_bound(item); bytes > kMaxItemEncoding)
      return core_->refuse_encoding(bytes);
    const std::uint64_t fp = footprint(item);
    const std::uint64_t at = core_->now_ms();  // before the lock: not a cost of holding it
    bool wake = false;
    MutexLock lk(core_->mutex());
    Status s = send_locked(item, fp, at, wait, policy, wake);
    // A receiver woken under the lock would only block on the mutex this sender holds.
    lk.unlock();
    if (wake) core_->notify_receiver();
    return s;
  }

  // Sends items[0..] in order under one lock acquisition (released only where send()
  // would release it: page I/O and waits), one clock read and one wake-up of the receiver;
  // under SyncPolicy::always the accepted items are asked after once all are in the open
  // page, so the first wait is one group commit for the batch instead of one per item. `accepted`: how many, a prefix; the first item not
  // accepted gives the status, it and those after it are untouched. `policy`/`wait` as
  // for send(): each item first tries without waiting; an item that must wait for room
  // wakes the receiver first (it may be the one to make room).
  Status send_many(std::span<T> items, std::size_t& accepted, Wait wait, FullPolicy policy) {
    accepted = 0;
    if (items.empty()) return Status();
    const std::uint64_t at = core_->now_ms();
    const bool may_wait = wait.kind != Wait::never && policy != FullPolicy::fail;
    bool wake = false;
    // SyncPolicy::always: the accepted items' numbers, as runs [first, end) (other senders'
    // items come between only where the lock was released).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> unsynced;
    Status s;
    MutexLock lk(core_->mutex());
    for (T& item : items) {
      if (const std::uint64_t bytes = encoding_size_bound(item); bytes > kMaxItemEncoding) {
        s = core_->refuse_encoding(bytes);
        break;
      }
      const std::uint64_t fp = footprint(item);
      std::optional<std::uint64_t> seq;
      bool woke = false;
      s = send_locked(item, fp, at, Wait::none(), policy == FullPolicy::block ? FullPolicy::fail : policy, woke, &seq);
      if (s.code() == Errc::full && may_wait) {
        if (wake) {  // what this batch pushed so far may be what the receiver waits for
          lk.unlock();
          core_->notify_receiver();
          wake = false;
          lk.lock();
        }
        s = send_locked(item, fp, at, wait, policy, woke, &seq);
      }
      wake |= woke;
      if (!s.ok()) break;
      ++accepted;
      if (seq) {
        if (!unsynced.empty() && unsynced.back().second == *seq) ++unsynced.back().second;
        else unsynced.emplace_back(*seq, *seq + 1);
      }
    }
    // The first wait covers the batch (one group commit); the others find their item
    // durable at once, or its page failed (a failed page does not stop later ones being
    // written, so every item is asked after: each failed item is answered once).
    Status synced;
    for (const auto& [first, end] : unsynced)
      for (std::uint64_t seq = first; seq < end; ++seq)
        if (Status d = await_durable(seq); !d.ok() && synced.ok()) synced = d;
    if (!synced.ok()) s = synced;
    lk.unlock();
    if (wake) core_->notify_receiver();
    return s;
  }

 private:
  // send() with the queue lock held throughout (Core's calls release it for I/O and waits
  // and take it back). `wake`: the item went to memory and the receiver waits.
  // `durable_seq` (send_many): under SyncPolicy::always, set to the accepted item's number
  // instead of waiting for its fdatasync; the caller waits for the batch afterwards.
  HOPPER_INLINE_ONCE Status send_locked(T& item, std::uint64_t fp, std::uint64_t at, Wait wait, FullPolicy policy,
                                        bool& wake, std::optional<std::uint64_t>* durable_seq = nullptr)
      HOPPER_REQUIRES(core_->mutex()) {
    bool timed_out = false;
    bool needs_memory = false;  // too large for a segment, small enough for the memory budget
    for (;;) {
      if (core_->receiver_gone()) return Status(Errc::closed, "the receiver is gone");
      core_->retry_removals_if_due();  // a failed unlink, when its retry is due
      // Items the receiver claimed from its batch still count until settled: settle when
      // the answer depends on it (no room, or disk mode may end).
      if (core_->should_settle(fp)) settle();
      switch (core_->route(fp)) {
        case Route::memory:
          return push_memory(item, fp, at, wake);
        case Route::leave_disk:
          return leave_disk_mode(item, fp, at, wake);
        case Route::too_large:
          return core_->refuse_footprint(fp);
        case Route::no_room:
          break;
        case Route::page: {
          std::uint64_t seq = 0;
          std::string& page = core_->begin_page_item();
          try {
            encode(item, page);
          } catch (...) {
            core_->cancel_page_item();
            throw;
          }
          switch (core_->end_page_item(seq, at)) {
            case SpillVerdict::accepted:
              if (core_->page_full()) {
                seal_and_push();
                core_->spill_sealed();
              }
              if (core_->sync_always()) {
                if (durable_seq) {
                  *durable_seq = seq;
                  return Status();
                }
                return await_durable(seq);
              }
              return Status();
            case SpillVerdict::need_seal:
              seal_and_push();
              core_->spill_sealed();
              continue;
            case SpillVerdict::too_large:
              if (core_->sync_always() || fp > core_->options().max_memory_bytes) return core_->refuse_for_segment(fp);
              // Only memory can hold it: it waits for room there, behind the open page.
              if (core_->memory_fits(fp)) return leave_disk_mode(item, fp, at, wake);
              needs_memory = true;
              break;
            case SpillVerdict::behind:
              // Sealed pages wait for the writer. Not a full queue: whatever the policy,
              // help write them, or wait for those who are (they notify the senders) —
              // unless the disk refuses them: then the RAM they may take is used up, and
              // the full policy applies.
              if (core_->memory_fits(fp)) return leave_disk_mode(item, fp, at, wake);
              if (core_->write_sealed()) continue;
              if (!core_->disk_refusal().ok()) break;
              if (core_->wait_sender(wait.kind == Wait::never ? Wait::always() : wait, false))
                return Status(Errc::timeout, "the spill writer did not catch up before the deadline");
              continue;
            case SpillVerdict::full:
              if (core_->memory_fits(fp)) return leave_disk_mode(item, fp, at, wake);
              if (core_->writer_idle_with_work()) {
                core_->write_sealed();
                continue;
              }
              if (core_->reclaim_read_active()) continue;  // a read segment kept for appends
              if (core_->retry_removals()) continue;       // delivered segments a failed unlink left
              if (core_->reclaim_expired()) continue;      // a segment wholly past max_age
              break;
          }
          break;
        }
      }
      // No room in memory or on disk. drop_oldest cannot make room in memory for an item
      // that only memory can take (it drops segments when spilling): that item waits.
      if (policy == FullPolicy::drop_oldest && !needs_memory && drop_oldest(fp)) continue;
      if (wait.kind == Wait::never || (wait.kind == Wait::forever && policy == FullPolicy::fail))
        return core_->refuse_full();
      if (timed_out) return Status(Errc::timeout, "no room before the deadline");
      // About to wait for room: ask the receiver to settle and wake us after its next
      // claim, then count what it claimed meanwhile. Both sides use sequentially
      // consistent operations, so at least one sees the other: no claim goes unnoticed.
      room_wanted_.store(true, std::memory_order_seq_cst);
      if (settle()) continue;
      // Waits no longer than until a failed write or unlink is due for a retry: then this
      // sender retries it (the loop comes back through write_sealed and retry_removals).
      timed_out = core_->wait_sender(wait, true);
    }
  }

 public:
  Status recv(T& out, Wait wait) {
    TokenScope role(core_->receiver());
    return recv_one(out, wait);
  }
  // recv with a deadline `timeout` from now. The clock is read only when the batch has
  // nothing ready: without a clock read per call recv_for of u64 from memory ran 1.4x as
  // fast (docs/performance.md, the matrix).
  Status recv_for(T& out, std::chrono::milliseconds timeout) {
    TokenScope role(core_->receiver());
    if (take_batched(out)) return Status();
    return recv_one(out, Wait::for_(timeout));
  }

  // Appends up to `max` items to `out`, in order: takes what is there without waiting —
  // consecutive memory items under one lock acquisition, disk items from the page being
  // read without any — and only when that is nothing waits for the first as recv does.
  Status recv_many(std::vector<T>& out, std::size_t max, Wait wait) {
    return recv_many_with(out, max, [wait] { return wait; });
  }
  // recv_many with a deadline `timeout` from now, read from the clock only when nothing is
  // ready (as recv_for).
  Status recv_many_for(std::vector<T>& out, std::size_t max, std::chrono::milliseconds timeout) {
    return recv_many_with(out, max, [timeout] { return Wait::for_(timeout); });
  }

  Result<int> wait_handle() {
    TokenScope role(core_->receiver());
    return core_->wait_handle();
  }

  Status commit() {
    TokenScope role(core_->receiver());
    return core_->commit(core_->position());
  }
  Status commit(std::uint64_t position) {
    TokenScope role(core_->receiver());
    return core_->commit(position);
  }
  std::uint64_t position() const {
    TokenScope role(core_->receiver());
    return core_->position();
  }

  Status flush() {
    MutexLock lk(core_->mutex());
    seal_and_push();
    return core_->write_all();
  }

  void add_sender() { core_->add_sender(); }
  void drop_sender() { core_->drop_sender(); }
  void drop_receiver() { core_->drop_receiver(); }

  Stats stats() {
    std::uint64_t oldest = 0;  // when the oldest memory item waiting was accepted
    {
      MutexLock lk(core_->mutex());
      settle();
      // The batch's first unclaimed item is older than any in the deque.
      // (A marker at the deque's front: the chain's pages are older, Core asks them.)
      if (settled_ < batch_size_) {
        std::size_t from = 0;
        oldest = time_of(batch_marks_, batch_item(settled_).total, from);
      } else if (!deque_.empty()) {
        if (auto* m = std::get_if<Memory<T>>(&deque_.front())) oldest = front_time(*m);
      }
    }
    return core_->stats(oldest);
  }
  std::vector<std::string> damage_report() const { return core_->damage_report(); }

 private:
  // recv_many's body; `make_wait()` gives the Wait once nothing is ready without one.
  template <class MakeWait>
  Status recv_many_with(std::vector<T>& out, std::size_t max, MakeWait make_wait) {
    if (max == 0) return Status();
    TokenScope role(core_->receiver());
    const std::size_t start = out.size();
    take_ready(out, start + max);
    if (out.size() > start) return Status();
    out.emplace_back();
    if (Status s = recv_one(out.back(), make_wait()); !s.ok()) {
      out.pop_back();
      return s;
    }
    take_ready(out, start + max);
    return Status();
  }

  Status recv_one(T& out, Wait wait) HOPPER_REQUIRES(core_->receiver()) {
    bool timed_out = false;
    bool waited = false;
    for (;;) {
      if (take_batched(out)) return Status();
      if (core_->disk_item_pending()) {
        std::string_view bytes;
        bool got = false;
        if (Status s = core_->next_disk_item(bytes, got, wait); !s.ok()) return s;
        if (!got) continue;
        if (decode(bytes, out)) {
          core_->delivered_disk_item();
          return Status();
        }
        core_->corrupt_item();  // a valid page whose item is not a T: skipped, counted
        continue;
      }
      pace();
      retired_.clear();  // the batch used up before, outside the lock
      MutexLock lk(core_->mutex());
      core_->retry_removals_if_due();  // a failed unlink, when its retry is due
      retire_batch();
      core_->settle_skipped();
      if (start_batch()) {  // the batch is taken without the lock
        busy_ = !waited;
        continue;
      }
      if (!deque_.empty()) {
        if (auto* m = std::get_if<Memory<T>>(&deque_.front())) {
          if (core_->expires() && core_->expired(front_time(*m))) {
            core_->memory_expired(m->footprint);  // passed over, never returned
            deque_.pop_front();
            if (!core_->holds_uncommitted() && core_->senders_waiting()) core_->notify_senders();  // room came back
            continue;
          }
          take_memory_item(*m, out);
          deque_.pop_front();
          const bool wake = !core_->holds_uncommitted() && core_->senders_waiting();
          lk.unlock();
          if (wake) core_->notify_senders();
          core_->delivered_memory_item();
          return Status();
        }
        deque_.pop_front();
        core_->marker_taken();
        continue;
      }
      // Nothing queued. Items in the open page are taken now rather than stranded — but
      // not under SyncPolicy::always: there every item in it has a sender waiting for its
      // sync, who seals and writes it (await_durable), with the items of the senders who
      // join meanwhile. Sealing it here cut those groups short: the receiver then wrote a
      // page of one or two items with an fdatasync of its own (4 producers: 1.2 items per
      // fdatasync).
      if (core_->page_open() && !core_->sync_always()) {
        seal_and_push();
        continue;
      }
      if (core_->senders_gone()) return Status(Errc::closed, "every sender is gone and all items were received");
      if (wait.kind == Wait::never) {
        core_->arm_wait_handle();  // found nothing under this lock: the next arrival signals it
        return Status(Errc::empty, "");
      }
      if (timed_out) return Status(Errc::timeout, "nothing arrived before the deadline");
      timed_out = core_->wait_receiver(wait);
      waited = true;
    }
  }

  // Appends the items that are ready, in order, until `out` holds `limit`: memory items
  // from the batch (or, with markers in the deque, under one lock acquisition per run),
  // disk items from the page being read. Stops at an empty deque, once the batch it
  // swapped in is used up, or at a read error (the error comes back from the next recv).
  void take_ready(std::vector<T>& out, std::size_t limit) HOPPER_REQUIRES(core_->receiver()) {
    bool swapped = false;
    while (out.size() < limit) {
      if (take_batched(out, limit)) continue;
      // Used up the batch this call swapped in: done. Locking again at once to look for
      // more would mostly find nothing, and would contend with the senders for the lock.
      if (swapped) break;
      if (core_->disk_item_pending()) {
        std::string_view bytes;
        bool got = false;
        if (Status s = core_->next_disk_item(bytes, got, Wait::none()); !s.ok()) break;  // the items so far stand
        if (!got) continue;
        out.emplace_back();
        if (decode(bytes, out.back())) {
          core_->delivered_disk_item();
        } else {
          out.pop_back();
          core_->corrupt_item();
        }
        continue;
      }
      pace();
      retired_.clear();
      MutexLock lk(core_->mutex());
      retire_batch();
      core_->settle_skipped();
      if (start_batch()) {  // the batch is taken without the lock
        busy_ = true;
        swapped = true;
        continue;
      }
      bool took = false;
      while (!deque_.empty() && out.size() < limit) {
        auto* m = std::get_if<Memory<T>>(&deque_.front());
        if (m == nullptr) {
          deque_.pop_front();
          core_->marker_taken();
          took = true;
          break;
        }
        if (core_->expires() && core_->expired(front_time(*m))) {
          core_->memory_expired(m->footprint);  // passed over, never returned
          deque_.pop_front();
          took = true;
          continue;
        }
        take_memory_item(*m, out.emplace_back());
        deque_.pop_front();
        core_->delivered_memory_item();
        took = true;
      }
      // Emptied under this acquisition: done (as above).
      const bool emptied = deque_.empty();
      const bool wake = took && !core_->holds_uncommitted() && core_->senders_waiting();
      lk.unlock();
      if (wake) core_->notify_senders();
      if (!took || (emptied && !core_->disk_item_pending())) break;
    }
  }

  // ---- the receiver's batch ----

  // Swaps the deque out as the receiver's batch, when it holds only memory items and
  // handed-out items need not be kept (manual_commit keeps the one-by-one path). The
  // caller then releases the lock and claims from the batch.
  bool start_batch() HOPPER_REQUIRES(core_->mutex(), core_->receiver()) {
    if (deque_.empty() || core_->has_markers() || core_->holds_uncommitted()) return false;
    batch_.swap(deque_);  // deque_ gets the empty container retire_batch() left in batch_
    batch_marks_.swap(marks_);  // and their times, likewise
    batch_mark_ = 0;
    batch_size_ = batch_.size();
    return true;
  }

  // The batch is used up (every item claimed by the receiver or dropped): settles it and
  // moves it to retired_, to be cleared without the lock.
  void retire_batch() HOPPER_REQUIRES(core_->mutex(), core_->receiver()) {
    if (batch_size_ == 0) return;
    // A sender waiting for room was woken by the claim that made it (after_claim); this
    // covers any other order of events.
    if (settle() && core_->senders_waiting()) core_->notify_senders();
    retired_.swap(batch_);
    batch_marks_.clear();  // a few marks: cleared here, its nodes kept for the next swap
    batch_size_ = 0;
    settled_ = 0;
    next_claim_ = 0;
    claim_.store(0, std::memory_order_relaxed);
  }

  // The batch just used up was small: the receiver keeps up with its senders. Let items
  // gather for a moment before taking the lock again — coming back for one or two items
  // at a time takes the lock's cache line from a sender for every item. A quarter of the
  // pause after a batch the receiver had to sleep for (`busy_` false): its senders are
  // slower, and a long pause would mostly burn CPU — none when what it slept for was a
  // single item: nothing came while it woke, so its senders are slower than a wake-up
  // (docs/performance.md, "CPU when the sender is slow").
  void pace() HOPPER_REQUIRES(core_->receiver()) {
    const std::uint64_t size = batch_size_unlocked();
    if (size == 0 || size >= kSmallBatch || (size == 1 && !busy_)) return;
    const int spins = busy_ ? kPaceSpins : kPaceSpins / 4;
    for (int i = 0; i < spins; ++i) cpu_relax();
  }

  // Counts the batch items claimed since the last call as gone from memory. True when
  // there were any. O(1): Memory::total is a running sum of footprints.
  bool settle() HOPPER_REQUIRES(core_->mutex()) {
    if (settled_ >= batch_size_) return false;
    const std::uint64_t claimed = std::min<std::uint64_t>(claim_.load(std::memory_order_seq_cst), batch_size_);
    if (claimed <= settled_) return false;
    const Memory<T>& first = batch_item(settled_);
    const Memory<T>& last = batch_item(claimed - 1);
    core_->memory_settled(last.total - first.total + first.footprint, claimed - settled_);
    settled_ = claimed;
    return true;
  }

  // The batch holds only Memory placements (start_batch). Only `item` of a claimed
  // element is ever written, by its claimant; footprint and total are read by anyone.
  Memory<T>& batch_item(std::uint64_t i) HOPPER_REQUIRES(core_->mutex()) {
    return *std::get_if<Memory<T>>(&batch_[i]);
  }

  // The receiver's reads of the batch without the lock. Safe: the batch's structure
  // (swap, clear) and batch_size_ change only under the lock and only by the receiver
  // itself, so the receiver sees its own writes; senders holding the lock only read them,
  // and write an item only after claiming it (claim_), which the receiver then skips.
  std::uint64_t batch_size_unlocked() const HOPPER_NO_THREAD_SAFETY_ANALYSIS { return batch_size_; }
  Memory<T>& claimed_item(std::uint64_t i) HOPPER_NO_THREAD_SAFETY_ANALYSIS {
    return *std::get_if<Memory<T>>(&batch_[i]);
  }

  // Claims up to `want` items of the batch: [first, first + n). Items the senders dropped
  // before the receiver claimed them are skipped (and their sequence numbers with them).
  // n = 0 when the batch is used up.
  std::uint64_t claim(std::uint64_t want, std::uint64_t& first) HOPPER_REQUIRES(core_->receiver()) {
    const std::uint64_t size = batch_size_unlocked();
    if (next_claim_ >= size) return 0;
    want = std::min(want, size - next_claim_);
    first = claim_.fetch_add(want, std::memory_order_seq_cst);
    const std::uint64_t from = std::min(first, size);
    if (from > next_claim_) core_->skip_delivered(from - next_claim_);
    next_claim_ = std::min(first + want, size);
    return next_claim_ > from ? next_claim_ - from : 0;
  }

  // After a claim: a sender waits for room, so settle and wake it.
  void after_claim() {
    if (!room_wanted_.load(std::memory_order_seq_cst)) return;
    bool wake = false;
    {
      MutexLock lk(core_->mutex());
      settle();
      room_wanted_.store(false, std::memory_order_relaxed);
      wake = core_->senders_waiting();
    }
    if (wake) core_->notify_senders();
  }

  // The next item of the batch; false when it is used up. Items past Options::max_age
  // are passed over.
  bool take_batched(T& out) HOPPER_REQUIRES(core_->receiver()) {
    for (;;) {
      std::uint64_t first = 0;
      if (claim(1, first) == 0) return false;
      Memory<T>& m = claimed_item(first);
      if (core_->expires() && core_->expired(batch_time(m.total))) {
        core_->expired_memory_item(m.footprint);  // its budget goes with the claim (settle)
        after_claim();
        continue;
      }
      out = std::move(m.item);
      core_->delivered_memory_item();
      after_claim();
      return true;
    }
  }

  // Appends items of the batch to `out` until it holds `limit`; false when the batch is
  // used up.
  bool take_batched(std::vector<T>& out, std::size_t limit) HOPPER_REQUIRES(core_->receiver()) {
    std::uint64_t first = 0;
    const std::uint64_t n = claim(limit - out.size(), first);
    if (n == 0) return false;
    const std::size_t before = out.size();
    if (core_->expires()) {
      for (std::uint64_t i = first; i < first + n; ++i) {
        Memory<T>& m = claimed_item(i);
        if (core_->expired(batch_time(m.total))) {
          core_->expired_memory_item(m.footprint);  // its budget goes with the claim (settle)
          continue;
        }
        out.push_back(std::move(m.item));
      }
    } else {
      for (std::uint64_t i = first; i < first + n; ++i) out.push_back(std::move(claimed_item(i).item));
    }
    if (out.size() > before) core_->delivered_memory_items(out.size() - before);
    after_claim();
    return true;
  }

  // When the memory item at the deque's front was accepted; the marks before its own go
  // (every item they covered has left the front).
  std::uint64_t front_time(const Memory<T>& m) HOPPER_REQUIRES(core_->mutex()) {
    while (marks_.size() > 1 && marks_[1].total <= m.total) marks_.pop_front();
    return marks_.empty() ? 0 : marks_.front().at;
  }
  // When a batch item (claimed, in claim order) was accepted. The receiver's, unlocked:
  // batch_marks_ changes only under the lock, by the receiver itself (as batch_).
  std::uint64_t batch_time(std::uint64_t total) HOPPER_NO_THREAD_SAFETY_ANALYSIS {
    return time_of(batch_marks_, total, batch_mark_);
  }

  // Hands out the front memory item. With manual_commit it stays charged against the
  // budget until a commit passes it, and a copy of its encoding is kept so that a clean shutdown can
  // give it back.
  void take_memory_item(Memory<T>& m, T& out) HOPPER_REQUIRES(core_->mutex(), core_->receiver()) {
    const std::uint64_t at = front_time(m);  // also lets go of the marks before it
    if (core_->holds_uncommitted()) {
      std::string& held = core_->begin_held(m.footprint, at);
      encode(m.item, held);
      core_->end_held(at);
    }
    core_->memory_handed_out(m.footprint);
    out = std::move(m.item);
  }

  // `wake`: the receiver waits; send() wakes it once it has released the lock.
  HOPPER_INLINE_ONCE Status push_memory(T& item, std::uint64_t fp, std::uint64_t at, bool& wake)
      HOPPER_REQUIRES(core_->mutex()) {
    pushed_bytes_ += fp;
    deque_.emplace_back(std::in_place_type<Memory<T>>, std::move(item), fp, pushed_bytes_);  // in place: no variant move
    if (marks_.empty() || at > marks_.back().at) marks_.push_back(TimeMark{pushed_bytes_, at});
    wake = core_->memory_pushed(fp);
    return Status();
  }

  Status leave_disk_mode(T& item, std::uint64_t fp, std::uint64_t at, bool& wake) HOPPER_REQUIRES(core_->mutex()) {
    seal_and_push();  // the open page's items precede this one
    core_->leave_disk_mode();
    return push_memory(item, fp, at, wake);
  }

  // SyncPolicy::always: waits until the item numbered `seq` is synced, leading a group
  // commit itself whenever no one else is writing.
  Status await_durable(std::uint64_t seq) HOPPER_REQUIRES(core_->mutex()) {
    for (;;) {
      Status why;
      switch (core_->durability(seq, why)) {
        case Durability::durable: return Status();
        case Durability::failed: return why;
        case Durability::waiting: break;
      }
      // With the writer idle, seal the open page (it holds our item) and write it. With it
      // busy, leave the page open for the next round to take with everyone's items (group
      // commit), and help compress what is sealed meanwhile.
      if (!core_->writer_busy()) seal_and_push();
      if (core_->write_sealed()) continue;
      (void)core_->wait_sender(Wait::always(), false);
    }
  }

  // FullPolicy::drop_oldest: makes room for an item of footprint `fp` by discarding the
  // oldest segment, or (not spilling) the oldest memory items at the front. False when
  // nothing could be dropped now.
  bool drop_oldest(std::uint64_t fp) HOPPER_REQUIRES(core_->mutex()) {
    if (core_->options().max_disk_bytes > 0) return core_->drop_oldest_on_disk();
    bool dropped = false;  // or room made otherwise: the caller tries again
    for (;;) {
      dropped |= settle();
      if (core_->memory_bytes() + fp <= core_->options().max_memory_bytes) break;
      if (settled_ < batch_size_) {
        // The oldest items are in the receiver's batch: claim the next before it does.
        std::uint64_t k = settled_;
        if (!claim_.compare_exchange_strong(k, k + 1, std::memory_order_seq_cst)) continue;  // it did: settle, retry
        Memory<T>& m = batch_item(k);
        core_->memory_dropped(m.footprint, false);
        settled_ = k + 1;
        [[maybe_unused]] T gone = std::move(m.item);  // freed now; the receiver clears the slot
        dropped = true;
        continue;
      }
      if (deque_.empty()) break;
      auto* m = std::get_if<Memory<T>>(&deque_.front());
      if (m == nullptr) break;  // a recovered page is next: it is not ours to drop here
      core_->memory_dropped(m->footprint, true);
      deque_.pop_front();
      dropped = true;
    }
    return dropped;
  }

  void seal_and_push() HOPPER_REQUIRES(core_->mutex()) {
    if (const std::uint64_t n = core_->seal(); n > 0) {
      deque_.emplace_back(std::in_place_type<Disk>, Disk{n});  // in place: no variant temporary
      core_->marker_pushed();
    }
  }

  // No handle is left: write every item still in memory to disk, so a reopen returns it.
  void shutdown() {
    // The compression helpers finish the page they are on; what is left is written below.
    core_->stop_helpers();
    TokenScope role(core_->receiver());
    MutexLock lk(core_->mutex());
    // Memory items drop_oldest discarded ahead of the receiver count as delivered (they
    // are counted dropped), so the cursor does not report them missing at the next open.
    // Not while a page is being read: they come after it, and the cursor must not.
    core_->settle_skipped();
    // Items of the receiver's batch it never claimed go back to the front of the deque.
    settle();
    if (batch_size_ > 0) {
      const std::uint64_t from = std::min<std::uint64_t>(claim_.load(std::memory_order_seq_cst), batch_size_);
      if (from > next_claim_) core_->skip_delivered(from - next_claim_);
      for (std::uint64_t i = batch_size_; i-- > from;) deque_.push_front(std::move(batch_[i]));
      // Their times too: the batch's marks come before the deque's.
      marks_.insert(marks_.begin(), batch_marks_.begin(), batch_marks_.end());
      batch_marks_.clear();
      batch_.clear();
      batch_size_ = 0;
    }
    seal_and_push();
    (void)core_->write_all();  // on failure the pages stay sealed; persist() tries them again
    // Items in the deque hold consecutive sequence numbers ending at next_seq - 1, so the
    // memory items (all after any recovered marker) are numbered by walking backwards.
    std::vector<std::uint64_t> seqs(deque_.size());
    std::uint64_t seq = core_->next_seq();
    for (std::size_t i = deque_.size(); i-- > 0;) {
      if (auto* d = std::get_if<Disk>(&deque_[i])) {
        HOPPER_ASSERT(seq >= d->count, "the deque holds more items than were ever numbered");
        seq -= d->count;
      } else {
        HOPPER_ASSERT(seq > 0, "the deque holds more items than were ever numbered");
        seqs[i] = --seq;
      }
    }
    std::size_t mark = 0;
    for (std::size_t i = 0; i < deque_.size(); ++i) {
      if (auto* m = std::get_if<Memory<T>>(&deque_[i])) {
        const std::uint64_t at = time_of(marks_, m->total, mark);
        std::string& raw = core_->begin_shutdown_item(seqs[i], at);
        encode(m->item, raw);
        core_->end_shutdown_item(at);
      }
    }
    lk.unlock();
    (void)core_->persist();
  }

  // pace(): a batch smaller than this means the receiver keeps up; it then spins this
  // many CPU pauses (about 1 to 10 us, by CPU) before it takes the lock again.
  static constexpr std::uint64_t kSmallBatch = 128;
  static constexpr int kPaceSpins = 256;

  std::unique_ptr<Core> core_;
  // The senders' side starts a cache line: core_ is read on every call, by the receiver too.
  alignas(64) std::deque<Placement<T>> deque_ HOPPER_GUARDED_BY(core_->mutex());
  std::uint64_t pushed_bytes_ HOPPER_GUARDED_BY(core_->mutex()) = 0;  // footprints ever pushed (Memory::total)
  std::uint64_t settled_ HOPPER_GUARDED_BY(core_->mutex()) = 0;  // batch items counted as gone: [0, settled_)
  std::deque<TimeMark> marks_ HOPPER_GUARDED_BY(core_->mutex());  // the times of deque_'s memory items

  // The receiver's batch, on cache lines of its own: the receiver claims from it for
  // every item while senders write the deque. Its structure (and batch_size_) changes
  // only under the lock, by the receiver, so that senders holding the lock may read
  // footprints and claim items to drop; the receiver reads it without the lock
  // (batch_size_unlocked, claimed_item).
  alignas(64) std::deque<Placement<T>> batch_ HOPPER_GUARDED_BY(core_->mutex());
  std::uint64_t batch_size_ HOPPER_GUARDED_BY(core_->mutex()) = 0;
  std::uint64_t next_claim_ HOPPER_GUARDED_BY(core_->receiver()) = 0;  // the batch index it expects to claim next
  std::deque<TimeMark> batch_marks_ HOPPER_GUARDED_BY(core_->mutex());  // the times of batch_'s items
  std::size_t batch_mark_ HOPPER_GUARDED_BY(core_->receiver()) = 0;     // the mark batch_time() looked at last
  bool busy_ HOPPER_GUARDED_BY(core_->receiver()) = false;  // the batch was there without waiting (pace)
  // claim_: batch items [0, claim_) are claimed. room_wanted_: a sender waits for room,
  // settle after a claim. Sequentially consistent: see the class comment.
  std::atomic<std::uint64_t> claim_{0};
  std::atomic<bool> room_wanted_{false};
  std::deque<Placement<T>> retired_ HOPPER_GUARDED_BY(core_->receiver());  // a used-up batch, cleared unlocked
};

}  // namespace hopper::detail
