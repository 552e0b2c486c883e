// Queue<T>: the deque of Placement<T> — Memory(item) or Disk(n) — and the receiver's batch,
// on top of Core. Not part of the public API; Sender<T> and Receiver<T> are its handles.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <hopper/detail/barrier.hpp>
#include <hopper/detail/codec.hpp>
#include <hopper/detail/core.hpp>
#include <hopper/detail/node_cache.hpp>
#include <hopper/detail/room_yields.hpp>
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
// The deques of placements keep their blocks for reuse (NodeCache).
template <class T>
using PlacementDeque = std::deque<Placement<T>, CachedAllocator<Placement<T>, Placement<T>>>;

// Whether queues opened from now on use the lane (Queue<T>, "the lane"). Off: it is
// measured against the lock path and not yet ahead in every shape (docs/performance.md,
// "The lane: sends without the lock"); the tests turn it on for the suites that run it.
inline std::atomic<bool>& lane_by_default() noexcept {
  static std::atomic<bool> on{false};
  return on;
}

// How many times a lane has closed, in every queue of the process: tests look at it (a
// lane that closes where it need not is slower, not wrong). Under the lock, rarely.
inline std::atomic<std::uint64_t>& lane_closings() noexcept {
  static std::atomic<std::uint64_t> n{0};
  return n;
}

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
  explicit Queue(std::unique_ptr<Core> core) : core_(std::move(core)), lane_on_(lane_possible(core_->options())) {
    // The recovered backlog comes first, before anything sent after this open.
    MutexLock lk(core_->mutex());
    for (std::uint64_t n : core_->recovered_pages()) {
      deque_.emplace_back(std::in_place_type<Disk>, Disk{n});  // in place: no variant temporary
      core_->marker_pushed();
    }
    if (lane_on_) {
      lane_capacity_ = lane_capacity(core_->options());
      // Zeroed and untouched: a slot's pages are used only once the ring gets that far
      // (calloc, aligned here by hand: aligned_alloc would not zero them lazily).
      lane_memory_ = std::calloc(lane_capacity_ * sizeof(LaneSlot) + alignof(LaneSlot), 1);
    }
    if (lane_on_ && lane_memory_ == nullptr) lane_on_ = false;  // no ring: the lock path serves alone
    if constexpr (!std::is_trivially_destructible_v<T>) {
      try {
        if (lane_on_) lane_shells_.reserve(kLaneGiveBack);
      } catch (...) {
        lane_on_ = false;  // as without the ring
      }
    }
    if (lane_on_) {
      void* aligned = lane_memory_;
      std::size_t room = lane_capacity_ * sizeof(LaneSlot) + alignof(LaneSlot);
      lane_slots_ = static_cast<LaneSlot*>(std::align(alignof(LaneSlot), lane_capacity_ * sizeof(LaneSlot), aligned, room));
      lane_asymmetric_ = asymmetric_barriers();
      // Open once nothing was recovered: a backlog is delivered first, through the deque.
      if (deque_.empty()) {
        lane_closed_ = false;
        lane_shut_.store(false, std::memory_order_relaxed);
        lane_word_.store(0, std::memory_order_release);
      }
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
    lane_destroy_rest();
    std::free(lane_memory_);
  }

  // On any non-ok result `item` is untouched. `policy` is what to do when both budgets
  // are full and `wait` allows no (more) waiting: fail (Errc::full), block (wait), or
  // drop_oldest (discard the oldest data, then retry).
  Status send(T& item, Wait wait, FullPolicy policy) {
    if (const std::uint64_t bytes = encoding_size_bound(item); bytes > kMaxItemEncoding)
      return core_->refuse_encoding(bytes);
    const std::uint64_t fp = footprint(item);
    const std::uint64_t at = core_->now_ms();  // before the lock: not a cost of holding it
    if (lane_on_ && lane_send(item, fp, at, wait)) return Status();
    bool wake = false;
    // Strings: a buffer the receiver is done with, freed here after the unlock (clear_retired).
    [[maybe_unused]] std::conditional_t<kRecycles, T, char> spare{};
    MutexLock lk(core_->mutex());
    RoomWait room;
    Status s = send_locked(item, fp, at, wait, policy, wake, room);
    room_waited(room, s);
    if constexpr (kRecycles) {
      if (!spares_.empty()) {
        spare = std::move(spares_.back());
        spares_.pop_back();
      }
    }
    // A receiver woken under the lock would only block on the mutex this sender holds.
    lk.unlock();
    if (wake) core_->notify_receiver();
    return s;
  }

  // send() through the lane, without the lock; false when the item must take the lock
  // path (the lane is closed, full, or has no room even after a short spin). Out of line,
  // so that the lock path's code is what it was without the lane.
  [[gnu::noinline]] bool lane_send(T& item, std::uint64_t fp, std::uint64_t at, Wait wait) {
    std::uint64_t ticket = 0;
    LaneTry got = lane_admit(fp, ticket);
    // No room: a receiver that keeps up gives some back within microseconds (every
    // kLaneGiveBack items). A sender that may wait spins for it a little before it takes
    // the lock to sleep: senders that all slept for room were woken for every item the
    // receiver took, and most went back to sleep (docs/performance.md, "The lane").
    for (int spins = 0; got == LaneTry::no_room && wait.kind != Wait::never && spins < kLaneRoomSpins; ++spins) {
      if (spins < kLaneRoomSpins / 2) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
      got = lane_admit(fp, ticket);
    }
    if (got != LaneTry::admitted) return false;
    lane_publish(ticket, item, fp, at);
    light_barrier(lane_asymmetric_);  // the publication, then lane_wake_: see lane_arm
    if (lane_wake_.load(std::memory_order_relaxed)) lane_wake_receiver();
    return true;
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
      RoomWait room;
      s = send_locked(item, fp, at, Wait::none(), policy == FullPolicy::block ? FullPolicy::fail : policy, woke, room,
                      &seq);
      if (s.code() == Errc::full && may_wait) {
        if (wake) {  // what this batch pushed so far may be what the receiver waits for
          lk.unlock();
          core_->notify_receiver();
          wake = false;
          lk.lock();
        }
        s = send_locked(item, fp, at, wait, policy, woke, room, &seq);
        room_waited(room, s);
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
  // How a send waited for room: it yielded up to room_yields_.limit() times, then slept
  // (room_waited tells room_yields_ what the yields bought).
  struct RoomWait {
    int yields = 0;
    bool slept = false;
  };
  // send() with the queue lock held throughout (Core's calls release it for I/O and waits
  // and take it back). `wake`: the item went to memory and the receiver waits.
  // `durable_seq` (send_many): under SyncPolicy::always, set to the accepted item's number
  // instead of waiting for its fdatasync; the caller waits for the batch afterwards.
  // `room`: how the send waited for room (room_waited).
  HOPPER_INLINE_ONCE Status send_locked(T& item, std::uint64_t fp, std::uint64_t at, Wait wait, FullPolicy policy,
                                        bool& wake, RoomWait& room,
                                        std::optional<std::uint64_t>* durable_seq = nullptr)
      HOPPER_REQUIRES(core_->mutex()) {
    bool timed_out = false;
    bool needs_memory = false;  // too large for a segment, small enough for the memory budget
    for (;;) {
      if (core_->receiver_gone()) return Status(Errc::closed, "the receiver is gone");
      core_->retry_removals_if_due();  // a failed unlink, when its retry is due
      if (!lane_closed_) {
        // The lane is open: the item goes there, or waits for room there when memory is all
        // it may use; anything else (spilling, an item past the budget, a full ring) closes
        // the lane and takes the path below, behind the lane's items.
        std::uint64_t ticket = 0;
        const LaneTry got = lane_admit(fp, ticket, true);
        if (got == LaneTry::admitted) {
          lane_publish(ticket, item, fp, at);
          wake = lane_wake_locked();
          return Status();
        }
        if (got != LaneTry::no_room || core_->options().max_disk_bytes > 0 || fp > core_->options().max_memory_bytes) {
          close_lane();
          continue;
        }
      } else {
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
      }  // the lane is closed
      // No room in memory or on disk. drop_oldest cannot make room in memory for an item
      // that only memory can take (it drops segments when spilling): that item waits.
      if (policy == FullPolicy::drop_oldest && !needs_memory && drop_oldest(fp)) continue;
      if (wait.kind == Wait::never || (wait.kind == Wait::forever && policy == FullPolicy::fail))
        return core_->refuse_full();
      if (timed_out) return Status(Errc::timeout, "no room before the deadline");
      if (room.yields < room_yields_.limit()) {  // room comes back within microseconds, mostly
        ++room.yields;
        yield_unlocked();
        continue;
      }
      // About to wait for room: ask the receiver to settle and wake us after its next
      // claim, then count what it claimed meanwhile. Both sides use sequentially
      // consistent operations, so at least one sees the other: no claim goes unnoticed.
      room_wanted_.store(true, std::memory_order_seq_cst);
      if (settle()) continue;
      if (!lane_closed_) {
        heavy_barrier(lane_asymmetric_);  // the lane's receiver orders its side with a light one
        if (lane_has_room(fp)) continue;  // the receiver gave some back meanwhile
      }
      // Waits no longer than until a failed write or unlink is due for a retry: then this
      // sender retries it (the loop comes back through write_sealed and retry_removals).
      if (!room.slept && room.yields > 0) room_yields_.slept();  // the yields were in vain
      room.slept = true;
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
    if (take_lane(out) || take_batched(out)) return Status();
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
  void drop_receiver() {
    {
      // Senders then hear that the receiver is gone (the lane would not tell them).
      MutexLock lk(core_->mutex());
      close_lane();
    }
    core_->drop_receiver();
  }

  Stats stats() {
    std::uint64_t oldest = 0;  // when the oldest memory item waiting was accepted
    LaneFigures lane;
    MutexLock lk(core_->mutex());
    {
      settle();
      if (!lane_closed_) {
        // The open lane holds every memory item (the deque and the batch are empty). Read
        // while senders and the receiver go on: a snapshot, exact when they are idle.
        // The word first: what was taken is read after it, and can only be more than was
        // taken when the word was read (so the difference never exceeds what the lane held).
        // What the receiver counted as received before the word, too: a later count could
        // include items admitted after the word was read (more received than sent).
        lane.received = core_->received_before();
        const std::uint64_t w = lane_word_.load(std::memory_order_seq_cst);
        const std::uint64_t taken = lane_taken_.load(std::memory_order_seq_cst);
        lane.sent = lane_ticket(w);
        if (lane_ticket(taken) < lane_ticket(w)) {
          lane.items = lane_ticket(w) - lane_ticket(taken);
          lane.bytes = lane_bytes(w) > lane_bytes(taken) ? lane_bytes(w) - lane_bytes(taken) : 0;
          oldest = lane_slot(lane_ticket(taken)).at.load(std::memory_order_relaxed);
        }
      }
      // The batch's first unclaimed item is older than any in the deque.
      // (A marker at the deque's front: the chain's pages are older, Core asks them.)
      if (settled_ < batch_size_) {
        std::size_t from = 0;
        oldest = time_of(batch_marks_, batch_item(settled_).total, from);
      } else if (!deque_.empty()) {
        if (auto* m = std::get_if<Memory<T>>(&deque_.front())) oldest = front_time(*m);
      }
    }
    return core_->stats(oldest, lane);
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
      if (take_lane(out) || take_batched(out)) return Status();
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
      clear_retired();  // the batch used up before, outside the lock
      MutexLock lk(core_->mutex());
      pass_spares();
      if (lane_pending()) continue;  // the lane's items come before anything else
      core_->retry_removals_if_due();  // a failed unlink, when its retry is due
      retire_batch();
      core_->settle_skipped();
      if (start_batch()) {  // the batch is taken without the lock
        paced(true);
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
      if (lane_reopen()) continue;
      if (core_->senders_gone()) return Status(Errc::closed, "every sender is gone and all items were received");
      if (wait.kind == Wait::never) {
        // Without a wait handle nobody is to be woken: a try_recv that polls does not pay
        // lane_arm's barrier for every empty answer.
        if (core_->has_wait_handle() && lane_arm()) continue;
        core_->arm_wait_handle();  // found nothing under this lock: the next arrival signals it
        paced(false);
        return Status(Errc::empty, "");
      }
      if (timed_out) return Status(Errc::timeout, "nothing arrived before the deadline");
      if (lane_arm()) continue;
      paced(false);
      timed_out = core_->wait_receiver(wait);
      lane_slept_ = true;
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
      if (take_lane(out, limit) || take_batched(out, limit)) continue;
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
      clear_retired();
      MutexLock lk(core_->mutex());
      pass_spares();
      if (lane_pending()) continue;  // the lane's items come before anything else
      retire_batch();
      core_->settle_skipped();
      if (start_batch()) {  // the batch is taken without the lock
        paced(true);
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
      paced(took);
      if (!took && lane_reopen()) continue;
      // Emptied under this acquisition: done (as above).
      const bool emptied = deque_.empty();
      const bool wake = took && !core_->holds_uncommitted() && core_->senders_waiting();
      lk.unlock();
      if (wake) core_->notify_senders();
      if (!took || (emptied && !core_->disk_item_pending())) break;
    }
  }

  // ---- the receiver's batch ----

  // Clears the used-up batch. Strings: taking an item by move assignment left the
  // receiver's old buffer in its place (libstdc++ hands it over); up to kSpares of those
  // buffers, and a quarter of the memory budget, are kept instead for the senders, who
  // each free one on their own thread after sending (send). Freed here, on the receiver's
  // thread, each went back to the arena of the sender that allocated it, under that arena's
  // lock, which the sender's next malloc needed (docs/performance.md, "Buffers freed where
  // they are allocated"); freed by a sender, it goes to that thread's own cache, where its
  // next allocation of a line finds it.
  void clear_retired() HOPPER_REQUIRES(core_->receiver()) {
    if constexpr (kRecycles) {
      if (shells_.empty() && !retired_.empty()) {
        if (shells_.capacity() < kSpares) {
          try {
            shells_.reserve(kSpares);
          } catch (...) {
            retired_.clear();  // no room for the list: freed here, as before
            return;
          }
        }
        std::uint64_t bytes = 0;
        const std::uint64_t most = core_->options().max_memory_bytes / 4;
        int misses = 0;  // items without a buffer: recv_many moved them out whole; stop looking
        for (Placement<T>& p : retired_) {
          auto* m = std::get_if<Memory<T>>(&p);
          if (m == nullptr) continue;
          const std::uint64_t held = HeapBytes<T>::of(m->item);
          if (held == 0 || held > kMaxSpare) {
            if (++misses == kSpareMisses) break;
            continue;
          }
          if (shells_.size() == kSpares || bytes + held > most) break;
          bytes += held;
          m->item.clear();
          shells_.push_back(std::move(m->item));
        }
      }
    }
    retired_.clear();
  }
  // Hands the buffers clear_retired kept to the senders, once they freed the last ones.
  void pass_spares() HOPPER_REQUIRES(core_->mutex(), core_->receiver()) {
    if constexpr (kRecycles) {
      if (spares_.empty() && !shells_.empty()) spares_.swap(shells_);
    }
  }

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
    node_cache_.publish();  // the blocks of the batch cleared before this lock, for senders
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
  //
  // How long adapts to what the pauses bought (paced()): each time the lock, taken after
  // them, finds a batch, the next pause may be twice as long (up to kPaceSpins); each time
  // it finds nothing and the receiver goes to sleep anyway, half as long, down to none.
  // Senders at 100 k items/s, a few at a time, gave nothing to gather in a pause and their
  // receiver spent a third of its CPU in it; fast senders keep it whole. With no pause left
  // the lock is still taken at once, and whether it finds a batch still counts: faster
  // senders bring the pause back.
  void pace() HOPPER_REQUIRES(core_->receiver()) {
    const std::uint64_t size = batch_size_unlocked();
    if (size == 0 || size >= kSmallBatch || (size == 1 && !busy_)) return;
    paced_ = true;
    const int spins = busy_ ? pace_spins_ : pace_spins_ / 4;
    for (int i = 0; i < spins; ++i) cpu_relax();
  }
  // After pace(): whether the look under the lock it was for found a batch (true) or left
  // the receiver nothing but to wait (false).
  void paced(bool found) HOPPER_REQUIRES(core_->receiver()) {
    if (!paced_) return;
    paced_ = false;
    pace_spins_ = found ? std::min(kPaceSpins, 2 * pace_spins_ + 8) : pace_spins_ / 2;
  }

  // Counts the batch items claimed since the last call as gone from memory. True when
  // there were any. O(1): Memory::total is a running sum of footprints.
  bool settle() HOPPER_REQUIRES(core_->mutex()) {
    const bool lane = settle_lane();
    if (settled_ >= batch_size_) return lane;
    const std::uint64_t claimed = std::min<std::uint64_t>(claim_.load(std::memory_order_seq_cst), batch_size_);
    if (claimed <= settled_) return lane;
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

  // How a send waited for room: see RoomWait, before send_locked.
  void room_waited(const RoomWait& room, const Status& s) HOPPER_REQUIRES(core_->mutex()) {
    if (room.yields > 0 && !room.slept && s.ok()) room_yields_.found_room();
  }

  // Lets other threads have the lock and the core for a moment.
  void yield_unlocked() HOPPER_REQUIRES(core_->mutex()) {
    core_->mutex().unlock();
    std::this_thread::yield();
    core_->mutex().lock();
  }

  // SyncPolicy::always: waits until the item numbered `seq` is synced, leading a group
  // commit itself whenever no one else is writing.
  Status await_durable(std::uint64_t seq) HOPPER_REQUIRES(core_->mutex()) {
    int yields = 0;
    for (;;) {
      Status why;
      switch (core_->durability(seq, why)) {
        case Durability::durable: return Status();
        case Durability::failed: return why;
        case Durability::waiting: break;
      }
      // The senders of the last group were answered together; the first back would lead
      // alone and leave the rest to the next round (groups of 1 and 3 with four
      // producers). Let them join first — one producer never waits: its group was one.
      if (!core_->writer_busy() && yields < kGroupYields && core_->group_forming()) {
        ++yields;
        yield_unlocked();
        continue;
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
    close_lane();  // its items are numbered now, before the deque's
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
    // The lane's items the receiver did not take precede the deque's (and the batch's, now
    // at its front): the lane opens only when those are empty, and the receiver drains it
    // before them once it is closed.
    if (lane_on_) {
      const std::uint64_t end = lane_ticket(lane_word_.load(std::memory_order_acquire));
      HOPPER_ASSERT(seq >= end - lane_head_, "the lane holds more items than were ever numbered");
      std::uint64_t n = seq - (end - lane_head_);
      for (; lane_head_ < end; ++lane_head_) {
        LaneSlot& slot = lane_slot(lane_head_);
        const std::uint64_t at = slot.at.load(std::memory_order_relaxed);
        std::string& raw = core_->begin_shutdown_item(n++, at);
        encode(*slot.item(), raw);
        core_->end_shutdown_item(at);
        slot.item()->~T();
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

  // ---- the lane (docs/architecture.md, "The lane") ----
  //
  // In memory mode, while the deque and the receiver's batch are empty, senders do not take
  // the lock: one compare-and-swap of lane_word_ — the closed bit, the footprints charged
  // since the lane opened and the ticket — admits an item against the memory budget and
  // gives it the next ticket, and the item goes into the ring slot of its ticket; the
  // receiver takes the slots in ticket order and gives the budget back (lane_released_:
  // the footprints and items it took) every kLaneGiveBack items and whenever the ring runs
  // dry. An item the lane cannot take without the lock — the budget is full and the queue
  // spills, or the item is larger than the budget, the ring is full, or the lane's counters
  // would overflow — closes the lane under the lock (close_lane: its items are numbered and
  // charged to Core then) and takes the path through the deque, behind the lane's items:
  // the receiver takes every item of a closed lane before anything else. It opens again
  // when the receiver has taken everything (lane_reopen). A sender that must wait for room
  // waits as before, under the lock, and tries the lane again when woken.
  //
  // Off (lane_possible) under SyncPolicy::always (every item goes to a page), with
  // manual_commit (a handed-out item is kept until committed), with FullPolicy::drop_oldest
  // (it drops the oldest memory items, which the receiver alone may take from the ring),
  // and for items whose move may throw (a ticket must become a published slot).
  struct LaneSlotFields {
    std::atomic<std::uint64_t> tag;  // lane_tag(epoch, ticket): that ticket's item is here
    std::atomic<std::uint64_t> at;   // when it was accepted (stats() reads it unlocked)
    std::uint64_t footprint;
    alignas(T) unsigned char storage[sizeof(T)];
  };
  // A slot's size is a power of two up to a cache line (then whole lines), so that slots
  // never straddle lines.
  static constexpr std::size_t kLaneSlotAlign =
      sizeof(LaneSlotFields) >= 64 ? 64 : std::bit_ceil(sizeof(LaneSlotFields));
  struct alignas(kLaneSlotAlign) LaneSlot : LaneSlotFields {
    T* item() noexcept { return std::launder(reinterpret_cast<T*>(this->storage)); }
  };
  enum class LaneTry { admitted, closed, no_room, overflow };

  static constexpr int kTicketBits = 24;
  static constexpr std::uint64_t kTicketMask = (std::uint64_t{1} << kTicketBits) - 1;
  static constexpr std::uint64_t kLaneClosed = std::uint64_t{1} << 63;
  // A lane that issued this many tickets, or charged this many bytes, since it opened closes
  // (and opens again with tickets from zero and the bytes one past where they were,
  // lane_reopen): its counters never wrap.
  static constexpr std::uint64_t kLaneMaxTickets = std::uint64_t{1} << (kTicketBits - 1);
  static constexpr std::uint64_t kLaneMaxBytes = std::uint64_t{1} << 38;
  static constexpr std::uint64_t kLaneGiveBack = 64;
  static constexpr int kGroupYields = 4;
  static constexpr std::uint64_t kLaneMaxSlots = std::uint64_t{1} << 18;
  static constexpr int kLaneRoomSpins = 128;  // half CPU pauses, half yields

  static bool lane_possible(const Options& o) {
    return lane_by_default().load(std::memory_order_relaxed) && o.sync != SyncPolicy::always && !o.manual_commit && o.when_full != FullPolicy::drop_oldest &&
           std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>;
  }
  // Room for a budget's worth of items as small as a T itself, within bounds.
  static std::uint64_t lane_capacity(const Options& o) {
    const std::uint64_t items = o.max_memory_bytes / std::max<std::uint64_t>(1, sizeof(T));
    return std::clamp<std::uint64_t>(std::bit_ceil(std::max<std::uint64_t>(items, 1)), 64, kLaneMaxSlots);
  }
  static std::uint64_t lane_ticket(std::uint64_t word) noexcept { return word & kTicketMask; }
  static std::uint64_t lane_bytes(std::uint64_t word) noexcept { return (word & ~kLaneClosed) >> kTicketBits; }
  static std::uint64_t lane_tag(std::uint64_t epoch, std::uint64_t ticket) noexcept {
    return (epoch << kTicketBits) | (ticket + 1);
  }
  // Consecutive tickets in consecutive slots: the receiver reads the slots of a cache line
  // one after the other (two u64 items per line). Spreading consecutive tickets over
  // separate lines, so that no two senders write one line, cost one producer of u64 a
  // quarter of its rate and gained 4 producers nothing (docs/performance.md, "The lane,
  // third round"); slots of a line or more, a line each, are not affected.
  LaneSlot& lane_slot(std::uint64_t ticket) const noexcept { return lane_slots_[ticket & (lane_capacity_ - 1)]; }

  // Any sender, with or without the lock. `exact` (under the lock): against what the
  // receiver took, not only what it gave back — a sender that would otherwise wait or be
  // refused looks at the exact figure, which costs a read of the receiver's line.
  LaneTry lane_admit(std::uint64_t fp, std::uint64_t& ticket, bool exact = false) {
    const std::atomic<std::uint64_t>& back = exact ? lane_taken_ : lane_released_;
    std::uint64_t w = lane_word_.load(std::memory_order_acquire);
    for (;;) {
      if (w & kLaneClosed) return LaneTry::closed;
      const std::uint64_t r = back.load(std::memory_order_seq_cst);
      const std::uint64_t t = lane_ticket(w);
      if (t + 1 >= kLaneMaxTickets || lane_bytes(w) + fp >= kLaneMaxBytes) return LaneTry::overflow;
      // The budget before the ring: a ring of a budget's worth of T-sized items is full
      // exactly when the budget is, and a full budget is no room (wait, or spin), not a
      // reason to close the lane. Only items whose footprint is below sizeof(T) fill the
      // ring first.
      if (lane_bytes(w) - lane_bytes(r) + fp > core_->options().max_memory_bytes) return LaneTry::no_room;
      if (t - lane_ticket(r) >= lane_capacity_) return LaneTry::overflow;
      if (lane_word_.compare_exchange_weak(w, w + (fp << kTicketBits) + 1, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
        ticket = t;
        return LaneTry::admitted;
      }
    }
  }
  // A sender about to wait for room: the lane has it now after all.
  bool lane_has_room(std::uint64_t fp) const {
    const std::uint64_t w = lane_word_.load(std::memory_order_seq_cst);
    const std::uint64_t r = lane_taken_.load(std::memory_order_seq_cst);
    return !(w & kLaneClosed) && lane_bytes(w) - lane_bytes(r) + fp <= core_->options().max_memory_bytes;
  }
  // The admitted sender of `ticket` moves its item in. Its slot is free: the receiver gave
  // back the item a ring's length before it (lane_admit counts tickets not given back).
  void lane_publish(std::uint64_t ticket, T& item, std::uint64_t fp, std::uint64_t at) noexcept {
    LaneSlot& slot = lane_slot(ticket);
    ::new (static_cast<void*>(slot.storage)) T(std::move(item));
    slot.footprint = fp;
    slot.at.store(at, std::memory_order_relaxed);
    // The item, then its tag. A sender without the lock then reads lane_wake_ after a
    // light barrier (lane_send; see lane_arm); one with the lock need not.
    slot.tag.store(lane_tag(lane_epoch_.load(std::memory_order_relaxed), ticket), std::memory_order_release);
  }
  // The receiver asked to be woken (lane_arm): wake it, under the lock so that it is
  // waiting by then.
  void lane_wake_receiver() {
    bool wake = false;
    {
      MutexLock lk(core_->mutex());
      wake = lane_wake_locked();
    }
    if (wake) core_->notify_receiver();
  }
  bool lane_wake_locked() HOPPER_REQUIRES(core_->mutex()) {
    if (!lane_wake_.load(std::memory_order_relaxed)) return false;
    lane_wake_.store(false, std::memory_order_relaxed);
    return core_->take_wake();
  }

  // Closes the lane (under the lock; senders then take the deque's path, behind its
  // items): what it took is numbered, and what the receiver has not given back is charged
  // to the memory budget (settle() gives it back as the receiver does).
  void close_lane() HOPPER_REQUIRES(core_->mutex()) {
    if (lane_closed_) return;
    const std::uint64_t w = lane_word_.fetch_or(kLaneClosed, std::memory_order_seq_cst);
    const std::uint64_t r = lane_taken_.load(std::memory_order_seq_cst);
    lane_closed_ = true;
    lane_shut_.store(true, std::memory_order_release);
    lane_closings().fetch_add(1, std::memory_order_relaxed);
    lane_settled_ = r;
    core_->lane_closed(lane_ticket(w), lane_bytes(w) - lane_bytes(r), lane_ticket(w) - lane_ticket(r));
  }
  // A closed lane: what the receiver took since the last call leaves the budget (as a
  // batch item does once claimed: settle).
  bool settle_lane() HOPPER_REQUIRES(core_->mutex()) {
    if (!lane_closed_ || !lane_on_) return false;
    const std::uint64_t r = lane_taken_.load(std::memory_order_seq_cst);
    if (r == lane_settled_) return false;
    core_->memory_settled(lane_bytes(r) - lane_bytes(lane_settled_), lane_ticket(r) - lane_ticket(lane_settled_));
    lane_settled_ = r;
    return true;
  }

  // The receiver's. Whether the lane has an item for it, or will have one at once (a closed
  // lane's item still being moved in): then it must take that before anything else.
  bool lane_pending() HOPPER_REQUIRES(core_->mutex(), core_->receiver()) {
    if (!lane_on_) return false;
    if (lane_slot(lane_head_).tag.load(std::memory_order_seq_cst) == lane_tag(lane_epoch_rx_, lane_head_)) return true;
    return lane_closed_ && lane_head_ != lane_ticket(lane_word_.load(std::memory_order_acquire));
  }
  // The receiver, about to wait or to arm its wait handle with the lane open: asks lane
  // senders to wake it, then looks once more. The sender publishes, then reads lane_wake_
  // after a light barrier; the receiver sets it, then reads the slot after a heavy one
  // (detail/barrier.hpp): at least one sees the other. True: an item is there after all.
  bool lane_arm() HOPPER_REQUIRES(core_->mutex(), core_->receiver()) {
    if (!lane_on_ || lane_closed_) return false;
    lane_wake_.store(true, std::memory_order_relaxed);
    heavy_barrier(lane_asymmetric_);
    if (lane_slot(lane_head_).tag.load(std::memory_order_acquire) != lane_tag(lane_epoch_rx_, lane_head_)) return false;
    lane_wake_.store(false, std::memory_order_relaxed);
    return true;
  }
  // Opens the lane again once the receiver has taken everything (under the lock, so that no
  // sender is on the deque's path meanwhile). True when it did.
  bool lane_reopen() HOPPER_REQUIRES(core_->mutex(), core_->receiver()) {
    if (!lane_on_ || !lane_closed_) return false;
    if (lane_head_ != lane_ticket(lane_word_.load(std::memory_order_acquire))) return false;
    if (!deque_.empty() || batch_size_ != 0 || core_->disk_item_pending() || !core_->lane_may_open()) return false;
    lane_give_back();
    (void)settle_lane();
    if (!core_->lane_may_open()) return false;
    // A new epoch: tickets from zero (tags no slot holds yet), and the bytes one past where
    // they were. A sender still holding a word it read before the lane closed must fail its
    // compare-and-swap, or it would be admitted against figures of another epoch: the bytes
    // only grow, so no word repeats — unless they wrap, after kLaneMaxBytes have gone
    // through the lane, and that sender was held between a load and the next instruction
    // all that while.
    const std::uint64_t base = lane_bytes(lane_word_.load(std::memory_order_acquire)) + 1;
    const std::uint64_t start = (base < kLaneMaxBytes / 2 ? base : 1) << kTicketBits;
    ++lane_epoch_rx_;
    lane_epoch_.store(lane_epoch_rx_, std::memory_order_relaxed);
    lane_head_ = 0;
    lane_taken_bytes_ = lane_bytes(start);
    lane_taken_.store(start, std::memory_order_relaxed);
    lane_released_.store(start, std::memory_order_relaxed);
    lane_given_ = start;
    lane_settled_ = start;
    lane_closed_ = false;
    lane_shut_.store(false, std::memory_order_relaxed);
    lane_word_.store(start, std::memory_order_release);  // senders that see it open see the rest
    return true;
  }
  // The budget the receiver took back from the lane since the last call, for its senders,
  // and a run of what taking left freed (lane_taken). Compared with the receiver's own copy:
  // lane_released_'s line is the senders' to read (and lane_wake_'s, which they write).
  void lane_give_back() HOPPER_REQUIRES(core_->receiver()) {
    lane_shells_.clear();
    const std::uint64_t r = lane_taken_.load(std::memory_order_relaxed);
    if (lane_given_ == r) return;
    lane_given_ = r;
    lane_released_.store(r, std::memory_order_release);
  }
  // The lane ran dry: give back what was taken if it is a quarter of the budget or more.
  // Less is of no use to a sender (it has three quarters of the budget), and writing the
  // senders' line whenever a receiver that keeps up finds the lane empty cost one
  // producer of u64 a cache miss per item (docs/performance.md).
  void lane_give_back_dry() HOPPER_REQUIRES(core_->receiver()) {
    if ((lane_taken_bytes_ - lane_bytes(lane_given_)) * 4 >= core_->options().max_memory_bytes) lane_give_back();
  }

  // The next item of the lane, in ticket order; false when it has none now (or is off).
  // A closed lane's item still being moved in is waited for: its sender is between its
  // compare-and-swap and its publication.
  bool take_lane(T& out) HOPPER_REQUIRES(core_->receiver()) {
    if (!lane_on_) return false;
    for (;;) {
      LaneSlot* slot = lane_ready();
      if (slot == nullptr) return false;
      const bool expired = core_->expires() && core_->expired(slot->at.load(std::memory_order_relaxed));
      if (!expired) out = std::move(*slot->item());
      lane_taken(*slot, expired);
      lane_after_take();
      if (!expired) {
        core_->delivered_memory_item();
        return true;
      }
    }
  }
  // Appends lane items to `out` until it holds `limit`; false when the lane had none.
  bool take_lane(std::vector<T>& out, std::size_t limit) HOPPER_REQUIRES(core_->receiver()) {
    if (!lane_on_) return false;
    bool took = false;
    std::uint64_t delivered = 0;
    while (out.size() < limit) {
      LaneSlot* slot = lane_ready();
      if (slot == nullptr) break;
      took = true;
      const bool expired = core_->expires() && core_->expired(slot->at.load(std::memory_order_relaxed));
      if (!expired) {
        out.push_back(std::move(*slot->item()));
        ++delivered;
      }
      lane_taken(*slot, expired);
    }
    if (delivered > 0) core_->delivered_memory_items(delivered);
    if (took) lane_after_take();
    return took;
  }
  LaneSlot* lane_ready() HOPPER_REQUIRES(core_->receiver()) {
    LaneSlot& slot = lane_slot(lane_head_);
    const std::uint64_t tag = lane_tag(lane_epoch_rx_, lane_head_);
    for (int spins = 0; slot.tag.load(std::memory_order_acquire) != tag; ++spins) {
      // Open: the lane is dry. lane_shut_, not the closed bit of lane_word_: reading the
      // senders' word whenever the lane is dry cost one producer a cache miss per
      // compare-and-swap. A lane closed since is seen under the lock (lane_pending).
      const bool dry = !lane_shut_.load(std::memory_order_acquire) ||
                       lane_head_ == lane_ticket(lane_word_.load(std::memory_order_acquire));
      if (dry) {
        lane_give_back_dry();
        light_barrier(lane_asymmetric_);  // what was taken, then room_wanted_: see lane_after_take
        if (room_wanted_.load(std::memory_order_relaxed)) {
          lane_give_back();  // for the lock-free senders too, whatever is owed
          after_claim();
        }
        if (lane_pace(slot, tag)) return &slot;
        return nullptr;
      }
      if (spins < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // its sender was preempted between admission and publication
      }
    }
    return &slot;
  }
  // The lane ran dry after a short run of items: the receiver keeps up with its senders.
  // As pace() does for the batch, it waits a moment for the next item before it takes the
  // lock to sleep — a sleep per item costs the sender a wake-up per item — unless what it
  // slept for last was a single item (its senders are slower than a wake-up). True when
  // the item came meanwhile.
  bool lane_pace(LaneSlot& slot, std::uint64_t tag) HOPPER_REQUIRES(core_->receiver()) {
    const std::uint64_t run = lane_run_;
    const bool slept = std::exchange(lane_slept_, false);
    lane_run_ = 0;
    if (run == 0 || run >= kSmallBatch || (run == 1 && slept)) return false;
    const int spins = slept ? kPaceSpins / 4 : kPaceSpins;
    for (int i = 0; i < spins; ++i) {
      cpu_relax();
      if (slot.tag.load(std::memory_order_acquire) == tag) return true;
    }
    return false;
  }

  // The item of `slot` (the head) was moved out, or passed over when `expired`.
  void lane_taken(LaneSlot& slot, bool expired) HOPPER_REQUIRES(core_->receiver()) {
    ++lane_run_;
    const std::uint64_t fp = slot.footprint;
    if constexpr (!std::is_trivially_destructible_v<T>) {
      // What taking left (for a string: the old buffer of the receiver's variable, which
      // libstdc++'s move assignment hands over) is freed a run at a time, not one per item
      // while the producer allocates the next: the two then collided on the allocator's
      // lock (docs/performance.md, "The lane, second round"). Its slot is free at once.
      if (lane_shells_.size() == kLaneGiveBack) lane_shells_.clear();
      lane_shells_.push_back(std::move(*slot.item()));  // reserved: never reallocates
    }
    slot.item()->~T();
    if (expired) core_->expired_memory_item(fp);
    lane_taken_bytes_ += fp;
    ++lane_head_;
    // For settle() and stats(), at once (one line, the receiver's); for the lane's senders,
    // lazily (lane_give_back: another line, which they read on every admission). A release
    // store: a sequentially consistent one was a third of the receiver's time at 4
    // producers of u64 (lane_after_take orders it before room_wanted_).
    lane_taken_.store((lane_taken_bytes_ << kTicketBits) | lane_head_, std::memory_order_release);
    if (lane_head_ % kLaneGiveBack == 0) lane_give_back();
  }
  // After a take (of one item, or of a run for recv_many): a sender waits for room, so give
  // the budget back and wake it — once per run, so that it finds room for the whole run.
  // The receiver stores what it took, then reads room_wanted_ after a light barrier; a
  // sender about to wait for room sets it, then reads what was taken after a heavy one
  // (send_locked): at least one sees the other.
  void lane_after_take() HOPPER_REQUIRES(core_->receiver()) {
    light_barrier(lane_asymmetric_);
    if (!room_wanted_.load(std::memory_order_relaxed)) return;
    lane_give_back();
    after_claim();
  }
  // The lane's items nobody took (a shutdown that failed half-way): destroyed.
  void lane_destroy_rest() HOPPER_NO_THREAD_SAFETY_ANALYSIS {
    if (!lane_on_ || lane_slots_ == nullptr) return;
    const std::uint64_t end = lane_ticket(lane_word_.load(std::memory_order_acquire));
    for (; lane_head_ < end; ++lane_head_) lane_slot(lane_head_).item()->~T();
  }

  // pace(): a batch smaller than this means the receiver keeps up; it then spins this
  // many CPU pauses (about 1 to 10 us, by CPU) before it takes the lock again.
  static constexpr std::uint64_t kSmallBatch = 128;
  static constexpr int kPaceSpins = 256;

  // Strings: buffers the receiver was done with, for senders to free on their own threads
  // (clear_retired). At most kSpares of them, none larger than kMaxSpare bytes, and a
  // quarter of the memory budget in all, in each of spares_ and shells_; for other types
  // the two take no room.
  static constexpr bool kRecycles = std::is_same_v<T, std::string>;
  static constexpr std::size_t kSpares = 256;
  static constexpr std::uint64_t kMaxSpare = 4096;
  static constexpr int kSpareMisses = 8;
  struct NoSpares {};
  using Spares = std::conditional_t<kRecycles, std::vector<T>, NoSpares>;

  std::unique_ptr<Core> core_;
  // The lane's fixed facts, beside core_ on a line nobody writes after construction: every
  // send and every receive reads lane_on_ (next to the receiver's retired_ it shared a line
  // the receiver writes per batch, and 4 producers of u64 lost up to a tenth with the lane
  // off).
  bool lane_on_;                     // set at construction only
  bool lane_asymmetric_ = false;     // asymmetric_barriers(), asked once the lane is on
  std::uint64_t lane_capacity_ = 0;  // slots, a power of two
  void* lane_memory_ = nullptr;      // what calloc gave; lane_slots_ is within it, aligned
  LaneSlot* lane_slots_ = nullptr;
  // The senders' side starts a cache line: core_ is read on every call, by the receiver too.
  // The deques' blocks, kept for reuse: a quarter of the memory budget at most in each of
  // its two lists. Declared before the deques (they give their blocks back when destroyed);
  // its block size is set by their constructors, before the queue is shared.
  alignas(64) NodeCache node_cache_{core_->options().max_memory_bytes / 4};
  alignas(64) PlacementDeque<T> deque_ HOPPER_GUARDED_BY(core_->mutex()){
      CachedAllocator<Placement<T>, Placement<T>>(&node_cache_, false)};
  std::uint64_t pushed_bytes_ HOPPER_GUARDED_BY(core_->mutex()) = 0;  // footprints ever pushed (Memory::total)
  std::uint64_t settled_ HOPPER_GUARDED_BY(core_->mutex()) = 0;  // batch items counted as gone: [0, settled_)
  std::deque<TimeMark> marks_ HOPPER_GUARDED_BY(core_->mutex());  // the times of deque_'s memory items
  // Buffers the receiver is done with, one for each send to free (clear_retired): on the
  // senders' lines, as each send that takes one writes it.
  [[no_unique_address]] Spares spares_ HOPPER_GUARDED_BY(core_->mutex());
  RoomYields room_yields_ HOPPER_GUARDED_BY(core_->mutex());
  // The lane as the lock holder knows it: here, not beside lane_word_, whose line the
  // senders compare-and-swap — a receiver that reads them whenever the lane is dry took
  // that line from one producer of u64 for every few items.
  bool lane_closed_ HOPPER_GUARDED_BY(core_->mutex()) = true;  // the closed bit
  std::uint64_t lane_settled_ HOPPER_GUARDED_BY(core_->mutex()) = 0;  // lane_taken_ as settle_lane saw it

  // The receiver's batch, on cache lines of its own: the receiver claims from it for
  // every item while senders write the deque. Its structure (and batch_size_) changes
  // only under the lock, by the receiver, so that senders holding the lock may read
  // footprints and claim items to drop; the receiver reads it without the lock
  // (batch_size_unlocked, claimed_item).
  alignas(64) PlacementDeque<T> batch_ HOPPER_GUARDED_BY(core_->mutex()){
      CachedAllocator<Placement<T>, Placement<T>>(&node_cache_, false)};
  std::uint64_t batch_size_ HOPPER_GUARDED_BY(core_->mutex()) = 0;
  std::uint64_t next_claim_ HOPPER_GUARDED_BY(core_->receiver()) = 0;  // the batch index it expects to claim next
  std::deque<TimeMark> batch_marks_ HOPPER_GUARDED_BY(core_->mutex());  // the times of batch_'s items
  std::size_t batch_mark_ HOPPER_GUARDED_BY(core_->receiver()) = 0;     // the mark batch_time() looked at last
  bool busy_ HOPPER_GUARDED_BY(core_->receiver()) = false;  // the batch was there without waiting (pace)
  bool paced_ HOPPER_GUARDED_BY(core_->receiver()) = false;  // pace() ran; paced() not yet told what it bought
  int pace_spins_ HOPPER_GUARDED_BY(core_->receiver()) = kPaceSpins;  // pace()'s pauses after a batch that was there
  // claim_: batch items [0, claim_) are claimed. room_wanted_: a sender waits for room,
  // settle after a claim. Sequentially consistent: see the class comment.
  std::atomic<std::uint64_t> claim_{0};
  std::atomic<bool> room_wanted_{false};
  // A used-up batch, cleared unlocked: its blocks go to the receiver's list of node_cache_.
  PlacementDeque<T> retired_ HOPPER_GUARDED_BY(core_->receiver()){
      CachedAllocator<Placement<T>, Placement<T>>(&node_cache_, true)};
  // The buffers clear_retired keeps, until pass_spares hands them to the senders.
  [[no_unique_address]] Spares shells_ HOPPER_GUARDED_BY(core_->receiver());

  // The lane. Senders' line: the word they compare-and-swap, the epoch they tag with.
  alignas(64) std::atomic<std::uint64_t> lane_word_{kLaneClosed};  // closed | bytes | ticket
  std::atomic<std::uint64_t> lane_epoch_{1};
  // What the receiver gave back to the lane's senders (bytes | items since it opened), and
  // whether it asked them to wake it: read by every admission, written now and then.
  alignas(64) std::atomic<std::uint64_t> lane_released_{0};
  std::atomic<bool> lane_wake_{false};
  // The receiver's line: what it took (bytes | items, written per item), and its own.
  alignas(64) std::atomic<std::uint64_t> lane_taken_{0};
  std::uint64_t lane_head_ HOPPER_GUARDED_BY(core_->receiver()) = 0;  // the next ticket to take
  std::uint64_t lane_given_ HOPPER_GUARDED_BY(core_->receiver()) = 0;  // what lane_released_ holds
  // What taking left in the slots since the last give-back, at most kLaneGiveBack (lane_taken).
  std::vector<T> lane_shells_ HOPPER_GUARDED_BY(core_->receiver());
  // The closed bit as close_lane leaves it, for the receiver's lane_ready: written when the
  // lane closes or opens, read whenever the lane is dry.
  std::atomic<bool> lane_shut_{true};
  std::uint64_t lane_epoch_rx_ HOPPER_GUARDED_BY(core_->receiver()) = 1;
  std::uint64_t lane_taken_bytes_ HOPPER_GUARDED_BY(core_->receiver()) = 0;  // since the lane opened
  std::uint64_t lane_run_ HOPPER_GUARDED_BY(core_->receiver()) = 0;  // items taken since it was last dry
  bool lane_slept_ HOPPER_GUARDED_BY(core_->receiver()) = false;   // it slept before this run (lane_pace)
};

}  // namespace hopper::detail
