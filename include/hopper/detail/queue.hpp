// Queue<T>: the deque of Placement<T> — Memory(item) or Disk(n) — on top of Core.
// Not part of the public API; Sender<T> and Receiver<T> are its handles.
#pragma once

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

// An item held in memory, with the footprint it was charged.
template <class T>
struct Memory {
  // A constructor, so that the deque builds it in place (clang 14 has no parenthesised
  // aggregate initialisation).
  Memory(T&& i, std::uint64_t f) : item(std::move(i)), footprint(f) {}
  T item;
  std::uint64_t footprint;
};
// A marker: the next `count` items, in order, are in one page on disk (or about to be).
struct Disk {
  std::uint64_t count;
};
template <class T>
using Placement = std::variant<Memory<T>, Disk>;

// How long a call may wait for room or for an item.
struct Wait {
  enum Kind { never, forever, until } kind = forever;
  std::chrono::steady_clock::time_point deadline{};
  static Wait none() { return {never, {}}; }
  static Wait always() { return {forever, {}}; }
  static Wait for_(std::chrono::milliseconds d) { return {until, std::chrono::steady_clock::now() + d}; }
};

// Thread-safe: any number of senders and one receiver. All state is guarded by
// core_->mu (see Core for the lock rules); the destructor runs when the last handle is
// gone and writes what is still in memory to disk.
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
    for (;;) {
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
      std::unique_lock lk(c.mu);
      if (c.skipped_in_memory > 0) {
        c.skip_dropped_memory_items(c.skipped_in_memory);
        c.skipped_in_memory = 0;
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

  Stats stats() const { return core_->stats(); }
  std::vector<std::string> damage_report() const { return core_->damage_report(); }

 private:
  // [receiver] Appends the items that are ready, in order, until `out` holds `limit`:
  // memory items under one lock acquisition per run, disk items from the page being read.
  // Stops at an empty deque or a read error (the error comes back from the next recv).
  void take_ready(std::vector<T>& out, std::size_t limit) {
    Core& c = *core_;
    while (out.size() < limit) {
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
      std::unique_lock lk(c.mu);
      if (c.skipped_in_memory > 0) {
        c.skip_dropped_memory_items(c.skipped_in_memory);
        c.skipped_in_memory = 0;
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
      // Emptied under this acquisition: done. Locking again at once to look for more
      // would mostly find nothing, and would contend with the senders for the lock.
      const bool emptied = deque_.empty();
      const bool wake = took && !c.holds_uncommitted() && c.senders_waiting > 0;
      lk.unlock();
      if (wake) c.sender_cv.notify_all();
      if (!took || (emptied && !c.disk_item_pending())) break;
    }
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
    deque_.emplace_back(std::in_place_type<Memory<T>>, std::move(item), fp);  // in place: no variant move
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
    bool dropped = false;
    while (!deque_.empty() && c.memory_bytes + fp > c.options().max_memory_bytes) {
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
};

}  // namespace hopper::detail
