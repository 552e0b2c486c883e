// Queue<T>: the deque of Placement<T> — Memory(item) or Disk(n) — on top of Core.
// Not part of the public API; Sender<T> and Receiver<T> are its handles.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
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
// items is known in O(1): see Queue::settle).
template <class T>
struct Memory {
  // A constructor, so that the deque builds it in place (clang 14 has no parenthesised
  // aggregate initialisation).
  Memory(T&& i, std::uint64_t f, std::uint64_t t) : item(std::move(i)), footprint(f), total(t) {}
  T item;
  std::uint64_t footprint;
  std::uint64_t total;
};
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

// How long a call may wait for room or for an item.
struct Wait {
  enum Kind { never, forever, until } kind = forever;
  std::chrono::steady_clock::time_point deadline{};
  static Wait none() { return {never, {}}; }
  static Wait always() { return {forever, {}}; }
  static Wait for_(std::chrono::milliseconds d) { return {until, std::chrono::steady_clock::now() + d}; }
};

// Thread-safe: any number of senders and one receiver. All state is guarded by
// core_->mu (see Core for the lock rules) except the receiver's batch (below); the
// destructor runs when the last handle is gone and writes what is still in memory to disk.
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
    for (std::uint64_t n : core_->recovered_pages()) {
      deque_.push_back(Disk{n});
      ++core_->markers;
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
    Core& c = *core_;
    const Options& o = c.options();
    const std::uint64_t fp = footprint(item);
    bool timed_out = false;
    std::unique_lock lk(c.mu);
    for (;;) {
      if (!c.receiver_alive) return Status(Errc::closed, "the receiver is gone");
      // Items the receiver claimed from its batch still count until settled: settle when
      // the answer depends on it (no room, or disk mode may end).
      if (!c.sync_always() && (c.memory_bytes + fp > o.max_memory_bytes || (c.disk_mode && c.markers == 0)))
        settle();
      // With SyncPolicy::always an item is acknowledged only from disk: memory is not used.
      const bool fits_memory = !c.sync_always() && c.memory_bytes + fp <= o.max_memory_bytes;
      if (c.sync_always()) c.disk_mode = true;
      if (!c.disk_mode) {
        if (fits_memory) return push_memory(lk, item, fp);
        if (c.spill_enabled()) {
          c.disk_mode = true;
        } else if (fp > o.max_memory_bytes) {
          return Status(Errc::too_large, "item footprint of " + std::to_string(fp) +
                                             " bytes exceeds Options::max_memory_bytes (" +
                                             std::to_string(o.max_memory_bytes) + ") and spilling is off");
        }
      }
      if (c.disk_mode) {
        // Back to memory once the receiver has taken every spilled page and memory is at
        // most half full (hysteresis: no flapping between modes on every item).
        if (c.markers == 0 && fits_memory && (c.memory_bytes == 0 || c.memory_bytes + fp <= c.low_water()))
          return leave_disk_mode(lk, item, fp);
        const std::size_t mark = c.begin_item();
        try {
          encode(item, c.page());
        } catch (...) {
          c.page().resize(mark);
          throw;
        }
        switch (c.end_item(mark)) {
          case SpillVerdict::accepted:
            ++c.items_sent;
            if (c.receiver_waiting) c.receiver_cv.notify_one();
            if (c.page_full()) {
              seal_and_push();
              c.write_sealed(lk);
            }
            if (c.sync_always()) return await_durable(lk, c.next_seq - 1);
            return Status();
          case SpillVerdict::need_seal:
            seal_and_push();
            c.write_sealed(lk);
            continue;
          case SpillVerdict::too_large:
            return Status(Errc::too_large, "item encodes to more than fits in one segment (Options::segment_bytes = " +
                                               std::to_string(o.segment_bytes) + ")");
          case SpillVerdict::failed:
            if (fits_memory) return leave_disk_mode(lk, item, fp);
            return c.spill_error();
          case SpillVerdict::behind:
            // Sealed pages wait for the writer. Not a full queue: whatever the policy,
            // help write them, or wait for those who are (they notify sender_cv).
            if (fits_memory) return leave_disk_mode(lk, item, fp);
            if (c.write_sealed(lk)) continue;
            ++c.senders_waiting;
            if (wait.kind == Wait::until) {
              timed_out = c.sender_cv.wait_until(lk, wait.deadline) == std::cv_status::timeout;
            } else {
              c.sender_cv.wait(lk);
            }
            --c.senders_waiting;
            if (timed_out) return Status(Errc::timeout, "the spill writer did not catch up before the deadline");
            continue;
          case SpillVerdict::full:
            if (fits_memory) return leave_disk_mode(lk, item, fp);
            if (c.writer_idle_with_work()) {
              c.write_sealed(lk);
              continue;
            }
            if (c.reclaim_read_active(lk)) continue;  // a read segment kept for appends
            break;
        }
      }
      // No room in memory or on disk.
      if (policy == FullPolicy::drop_oldest && drop_oldest(lk, fp)) continue;
      if (wait.kind == Wait::never || (wait.kind == Wait::forever && policy == FullPolicy::fail))
        return Status(Errc::full, "memory and disk budgets are full");
      if (timed_out) return Status(Errc::timeout, "no room before the deadline");
      // About to wait for room: ask the receiver to settle and wake us after its next
      // claim, then count what it claimed meanwhile. Both sides use sequentially
      // consistent operations, so at least one sees the other: no claim goes unnoticed.
      room_wanted_.store(true, std::memory_order_seq_cst);
      if (settle()) continue;
      ++c.senders_waiting;
      ++c.room_waiters;
      if (wait.kind == Wait::forever) {
        c.sender_cv.wait(lk);
      } else {
        timed_out = c.sender_cv.wait_until(lk, wait.deadline) == std::cv_status::timeout;
      }
      --c.room_waiters;
      --c.senders_waiting;
    }
  }

  Status recv(T& out, Wait wait) {
    Core& c = *core_;
    bool timed_out = false;
    bool waited = false;
    for (;;) {
      if (take_batched(out)) return Status();
      if (c.disk_item_pending()) {
        std::string_view bytes;
        bool got = false;
        if (Status s = c.next_disk_item(bytes, got); !s.ok()) return s;
        if (!got) continue;
        if (decode(bytes, out)) {
          c.delivered_disk_item();
          return Status();
        }
        c.corrupt_item();  // a valid page whose item is not a T: skipped, counted
        continue;
      }
      pace();
      retired_.clear();  // the batch used up before, outside the lock
      std::unique_lock lk(c.mu);
      retire_batch();
      if (c.skipped_in_memory > 0) {
        c.skip_dropped_memory_items(c.skipped_in_memory);
        c.skipped_in_memory = 0;
      }
      if (start_batch()) {  // unlocks: the batch is taken without the lock
        busy_ = !waited;
        continue;
      }
      if (!deque_.empty()) {
        if (auto* m = std::get_if<Memory<T>>(&deque_.front())) {
          take_memory_item(*m, out);
          deque_.pop_front();
          const bool wake = !c.holds_uncommitted() && c.senders_waiting > 0;
          lk.unlock();
          if (wake) c.sender_cv.notify_all();
          c.delivered_memory_item();
          return Status();
        }
        deque_.pop_front();
        --c.markers;
        c.page_due();
        continue;
      }
      // Nothing queued. Items in the open page are taken now rather than stranded.
      if (c.page_open()) {
        seal_and_push();
        continue;
      }
      if (c.senders == 0) return Status(Errc::closed, "every sender is gone and all items were received");
      if (wait.kind == Wait::never) return Status(Errc::empty, "");
      if (timed_out) return Status(Errc::timeout, "nothing arrived before the deadline");
      c.receiver_waiting = true;
      if (wait.kind == Wait::forever) {
        c.receiver_cv.wait(lk);
      } else {
        timed_out = c.receiver_cv.wait_until(lk, wait.deadline) == std::cv_status::timeout;
      }
      c.receiver_waiting = false;
      waited = true;
    }
  }

  // Appends up to `max` items to `out`, in order: takes what is there without waiting —
  // consecutive memory items under one lock acquisition, disk items from the page being
  // read without any — and only when that is nothing waits for the first as recv does.
  Status recv_many(std::vector<T>& out, std::size_t max, Wait wait) {
    if (max == 0) return Status();
    const std::size_t start = out.size();
    take_ready(out, start + max);
    if (out.size() > start) return Status();
    out.emplace_back();
    if (Status s = recv(out.back(), wait); !s.ok()) {
      out.pop_back();
      return s;
    }
    take_ready(out, start + max);
    return Status();
  }

  Status commit() { return core_->commit(); }

  Status flush() {
    std::unique_lock lk(core_->mu);
    seal_and_push();
    return core_->write_all(lk);
  }

  void add_sender() {
    std::lock_guard lk(core_->mu);
    ++core_->senders;
  }
  void drop_sender() {
    std::lock_guard lk(core_->mu);
    if (--core_->senders == 0 && core_->receiver_waiting) core_->receiver_cv.notify_one();
  }
  void drop_receiver() {
    std::lock_guard lk(core_->mu);
    core_->receiver_alive = false;
    core_->sender_cv.notify_all();
  }

  Stats stats() {
    {
      std::lock_guard lk(core_->mu);
      settle();
    }
    return core_->stats();
  }
  std::vector<std::string> damage_report() const { return core_->damage_report(); }

 private:
  // [receiver] Appends the items that are ready, in order, until `out` holds `limit`:
  // memory items from the batch (or, with markers in the deque, under one lock
  // acquisition per run), disk items from the page being read. Stops at an empty deque,
  // once the batch it swapped in is used up, or at a read error (the error comes back
  // from the next recv).
  void take_ready(std::vector<T>& out, std::size_t limit) {
    Core& c = *core_;
    bool swapped = false;
    while (out.size() < limit) {
      if (take_batched(out, limit)) continue;
      // Used up the batch this call swapped in: done. Locking again at once to look for
      // more would mostly find nothing, and would contend with the senders for the lock.
      if (swapped) break;
      if (c.disk_item_pending()) {
        std::string_view bytes;
        bool got = false;
        if (Status s = c.next_disk_item(bytes, got); !s.ok()) break;  // the items so far stand
        if (!got) continue;
        out.emplace_back();
        if (decode(bytes, out.back())) {
          c.delivered_disk_item();
        } else {
          out.pop_back();
          c.corrupt_item();
        }
        continue;
      }
      pace();
      retired_.clear();
      std::unique_lock lk(c.mu);
      retire_batch();
      if (c.skipped_in_memory > 0) {
        c.skip_dropped_memory_items(c.skipped_in_memory);
        c.skipped_in_memory = 0;
      }
      if (start_batch()) {  // unlocks
        busy_ = true;
        swapped = true;
        continue;
      }
      bool took = false;
      while (!deque_.empty() && out.size() < limit) {
        auto* m = std::get_if<Memory<T>>(&deque_.front());
        if (m == nullptr) {
          deque_.pop_front();
          --c.markers;
          c.page_due();
          took = true;
          break;
        }
        take_memory_item(*m, out.emplace_back());
        deque_.pop_front();
        c.delivered_memory_item();
        took = true;
      }
      // Emptied under this acquisition: done (as above).
      const bool emptied = deque_.empty();
      const bool wake = took && !c.holds_uncommitted() && c.senders_waiting > 0;
      lk.unlock();
      if (wake) c.sender_cv.notify_all();
      if (!took || (emptied && !c.disk_item_pending())) break;
    }
  }

  // ---- the receiver's batch ----

  // [receiver, mu] Swaps the deque out as the receiver's batch, when it holds only memory
  // items and handed-out items need not be kept (manual_commit keeps the one-by-one
  // path). The caller then releases the lock and claims from the batch.
  bool start_batch() {
    Core& c = *core_;
    if (deque_.empty() || c.markers != 0 || c.holds_uncommitted()) return false;
    batch_.swap(deque_);  // deque_ gets the empty container retire_batch() left in batch_
    batch_size_ = batch_.size();
    return true;
  }

  // [receiver, mu] The batch is used up (every item claimed by the receiver or dropped):
  // settles it and moves it to retired_, to be cleared without the lock.
  void retire_batch() {
    if (batch_size_ == 0) return;
    // A sender waiting for room was woken by the claim that made it (after_claim); this
    // covers any other order of events.
    if (settle() && core_->senders_waiting > 0) core_->sender_cv.notify_all();
    retired_.swap(batch_);
    batch_size_ = 0;
    settled_ = 0;
    next_claim_ = 0;
    claim_.store(0, std::memory_order_relaxed);
  }

  // [receiver] The batch just used up was small: the receiver keeps up with its senders.
  // Let items gather for a moment before taking the lock again — coming back for one or
  // two items at a time takes the lock's cache line from a sender for every item. A
  // quarter of the pause after a batch the receiver had to sleep for (`busy_` false): its
  // senders are slower, and a long pause would mostly burn CPU (docs/performance.md, "CPU
  // when the sender is slow").
  void pace() {
    if (batch_size_ == 0 || batch_size_ >= kSmallBatch) return;
    const int spins = busy_ ? kPaceSpins : kPaceSpins / 4;
    for (int i = 0; i < spins; ++i) cpu_relax();
  }

  // [mu] Counts the batch items claimed since the last call as gone from memory. True
  // when there were any. O(1): Memory::total is a running sum of footprints.
  bool settle() {
    if (settled_ >= batch_size_) return false;
    const std::uint64_t claimed = std::min<std::uint64_t>(claim_.load(std::memory_order_seq_cst), batch_size_);
    if (claimed <= settled_) return false;
    const Memory<T>& first = batch_item(settled_);
    const Memory<T>& last = batch_item(claimed - 1);
    core_->memory_bytes -= last.total - first.total + first.footprint;
    core_->memory_items -= claimed - settled_;
    settled_ = claimed;
    return true;
  }

  // The batch holds only Memory placements (start_batch). Only `item` of a claimed
  // element is ever written, by its claimant; footprint and total are read by anyone.
  Memory<T>& batch_item(std::uint64_t i) { return *std::get_if<Memory<T>>(&batch_[i]); }

  // [receiver] Claims up to `want` items of the batch: [first, first + n). Items the
  // senders dropped before the receiver claimed them are skipped (and their sequence
  // numbers with them). n = 0 when the batch is used up.
  std::uint64_t claim(std::uint64_t want, std::uint64_t& first) {
    if (next_claim_ >= batch_size_) return 0;
    want = std::min(want, batch_size_ - next_claim_);
    first = claim_.fetch_add(want, std::memory_order_seq_cst);
    const std::uint64_t from = std::min(first, batch_size_);
    if (from > next_claim_) core_->skip_dropped_memory_items(from - next_claim_);
    next_claim_ = std::min(first + want, batch_size_);
    return next_claim_ > from ? next_claim_ - from : 0;
  }

  // [receiver] After a claim: a sender waits for room, so settle and wake it.
  void after_claim() {
    if (!room_wanted_.load(std::memory_order_seq_cst)) return;
    Core& c = *core_;
    bool wake = false;
    {
      std::lock_guard lk(c.mu);
      settle();
      room_wanted_.store(false, std::memory_order_relaxed);
      wake = c.senders_waiting > 0;
    }
    if (wake) c.sender_cv.notify_all();
  }

  // [receiver] The next item of the batch; false when it is used up.
  bool take_batched(T& out) {
    std::uint64_t first = 0;
    if (claim(1, first) == 0) return false;
    out = std::move(batch_item(first).item);
    core_->delivered_memory_item();
    after_claim();
    return true;
  }

  // [receiver] Appends items of the batch to `out` until it holds `limit`; false when the
  // batch is used up.
  bool take_batched(std::vector<T>& out, std::size_t limit) {
    std::uint64_t first = 0;
    const std::uint64_t n = claim(limit - out.size(), first);
    if (n == 0) return false;
    for (std::uint64_t i = first; i < first + n; ++i) {
      out.push_back(std::move(batch_item(i).item));
      core_->delivered_memory_item();
    }
    after_claim();
    return true;
  }

  // [mu] Hands out the front memory item. With manual_commit it stays charged against the
  // budget until commit(), and a copy of its encoding is kept so that a clean shutdown can
  // give it back.
  void take_memory_item(Memory<T>& m, T& out) {
    Core& c = *core_;
    if (c.holds_uncommitted()) {
      c.uncommitted_footprint += m.footprint;
      c.begin_held();
      encode(m.item, c.held());
      c.end_held();
    } else {
      c.memory_bytes -= m.footprint;
    }
    --c.memory_items;
    out = std::move(m.item);
  }

  // Releases `lk`, then wakes a waiting receiver: woken under the lock it would only block
  // on the mutex the sender still holds.
  Status push_memory(std::unique_lock<std::mutex>& lk, T& item, std::uint64_t fp) {
    Core& c = *core_;
    pushed_bytes_ += fp;
    deque_.emplace_back(std::in_place_type<Memory<T>>, std::move(item), fp, pushed_bytes_);  // in place: no variant move
    c.memory_bytes += fp;
    ++c.memory_items;
    ++c.next_seq;
    ++c.items_sent;
    const bool wake = c.receiver_waiting;
    lk.unlock();
    if (wake) c.receiver_cv.notify_one();
    return Status();
  }

  Status leave_disk_mode(std::unique_lock<std::mutex>& lk, T& item, std::uint64_t fp) {
    seal_and_push();  // the open page's items precede this one
    core_->disk_mode = false;
    return push_memory(lk, item, fp);
  }

  // SyncPolicy::always: waits until the item numbered `seq` is synced, leading a group
  // commit itself whenever no one else is writing.
  Status await_durable(std::unique_lock<std::mutex>& lk, std::uint64_t seq) {
    Core& c = *core_;
    for (;;) {
      Status why;
      switch (c.durability(seq, why)) {
        case Core::Durability::durable: return Status();
        case Core::Durability::failed: return why;
        case Core::Durability::waiting: break;
      }
      // With the writer idle, seal the open page (it holds our item) and write it. With it
      // busy, leave the page open for the next round to take with everyone's items (group
      // commit), and help compress what is sealed meanwhile.
      if (!c.writer_busy()) seal_and_push();
      if (c.write_sealed(lk)) continue;
      ++c.senders_waiting;
      c.sender_cv.wait(lk);
      --c.senders_waiting;
    }
  }

  // FullPolicy::drop_oldest: makes room for an item of footprint `fp` by discarding the
  // oldest segment, or (not spilling) the oldest memory items at the front. False when
  // nothing could be dropped now.
  bool drop_oldest(std::unique_lock<std::mutex>& lk, std::uint64_t fp) {
    Core& c = *core_;
    if (c.spill_enabled()) return c.drop_oldest_segment(lk);
    bool dropped = false;  // or room made otherwise: the caller tries again
    for (;;) {
      dropped |= settle();
      if (c.memory_bytes + fp <= c.options().max_memory_bytes) break;
      if (settled_ < batch_size_) {
        // The oldest items are in the receiver's batch: claim the next before it does.
        std::uint64_t k = settled_;
        if (!claim_.compare_exchange_strong(k, k + 1, std::memory_order_seq_cst)) continue;  // it did: settle, retry
        Memory<T>& m = batch_item(k);
        c.memory_bytes -= m.footprint;
        --c.memory_items;
        ++c.items_dropped;
        settled_ = k + 1;
        [[maybe_unused]] T gone = std::move(m.item);  // freed now; the receiver clears the slot
        dropped = true;
        continue;
      }
      if (deque_.empty()) break;
      auto* m = std::get_if<Memory<T>>(&deque_.front());
      if (m == nullptr) break;  // a recovered page is next: it is not ours to drop here
      c.memory_bytes -= m->footprint;
      --c.memory_items;
      deque_.pop_front();
      ++c.items_dropped;
      ++c.skipped_in_memory;
      dropped = true;
    }
    return dropped;
  }

  void seal_and_push() {
    if (const std::uint64_t n = core_->seal(); n > 0) {
      deque_.push_back(Disk{n});
      ++core_->markers;
      if (core_->receiver_waiting) core_->receiver_cv.notify_one();
    }
  }

  // No handle is left: write every item still in memory to disk, so a reopen returns it.
  void shutdown() {
    Core& c = *core_;
    std::unique_lock lk(c.mu);
    // Items of the receiver's batch it never claimed go back to the front of the deque.
    settle();
    if (batch_size_ > 0) {
      const std::uint64_t from = std::min<std::uint64_t>(claim_.load(std::memory_order_seq_cst), batch_size_);
      if (from > next_claim_) c.skip_dropped_memory_items(from - next_claim_);
      for (std::uint64_t i = batch_size_; i-- > from;) deque_.push_front(std::move(batch_[i]));
      batch_.clear();
      batch_size_ = 0;
    }
    seal_and_push();
    (void)c.write_all(lk);  // on failure the pages stay sealed; persist() tries them again
    // Items in the deque hold consecutive sequence numbers ending at next_seq - 1, so the
    // memory items (all after any recovered marker) are numbered by walking backwards.
    std::vector<std::uint64_t> seqs(deque_.size());
    std::uint64_t seq = c.next_seq;
    for (std::size_t i = deque_.size(); i-- > 0;) {
      if (auto* d = std::get_if<Disk>(&deque_[i])) {
        seq -= d->count;
      } else {
        seqs[i] = --seq;
      }
    }
    std::vector<Core::RawPage> pages;
    Core::RawPage* open = nullptr;
    for (std::size_t i = 0; i < deque_.size(); ++i) {
      auto* m = std::get_if<Memory<T>>(&deque_[i]);
      if (m == nullptr) {
        open = nullptr;
        continue;
      }
      if (open == nullptr || open->raw.size() >= c.options().page_bytes) {
        pages.push_back(Core::RawPage{seqs[i], 0, {}});
        open = &pages.back();
      }
      const std::size_t mark = open->raw.size();
      open->raw.append(4, '\0');
      encode(m->item, open->raw);
      const std::uint64_t len = open->raw.size() - mark - 4;
      for (int b = 0; b < 4; ++b) open->raw[mark + b] = static_cast<char>(len >> (8 * b));
      ++open->count;
    }
    lk.unlock();
    (void)c.persist(std::move(pages));
  }

  std::unique_ptr<Core> core_;
  std::deque<Placement<T>> deque_;  // [core_->mu]
  std::uint64_t pushed_bytes_ = 0;  // [core_->mu] footprints ever pushed (Memory::total)
  // pace(): a batch smaller than this means the receiver keeps up; it then spins this
  // many CPU pauses (about 1 to 10 us, by CPU) before it takes the lock again.
  static constexpr std::uint64_t kSmallBatch = 128;
  static constexpr int kPaceSpins = 256;
  std::uint64_t settled_ = 0;       // [core_->mu] batch items counted as gone: [0, settled_)

  // The receiver's batch, on cache lines of its own: the receiver claims from it for
  // every item while senders write the deque.
  // [receiver; its structure changes only under core_->mu, so that senders holding the
  // lock may read footprints and claim items to drop]
  alignas(64) std::deque<Placement<T>> batch_;
  std::uint64_t batch_size_ = 0;     // [receiver writes it under core_->mu]
  std::uint64_t next_claim_ = 0;     // [receiver] the batch index it expects to claim next
  bool busy_ = false;                // [receiver] the batch was there without waiting (pace)
  std::atomic<std::uint64_t> claim_{0};    // batch items [0, claim_) are claimed
  std::atomic<bool> room_wanted_{false};   // a sender waits for room: settle after a claim
  std::deque<Placement<T>> retired_;       // [receiver] a used-up batch, cleared unlocked
};

}  // namespace hopper::detail
