// Core's receiver flows: loading the next page in order (from its file, with the queue lock
// released, or from RAM), reading items out of it, finishing a segment, commit. The
// receiver's state is ReadPath's (read_path.hpp); this file holds the lock windows, the
// waits and the wake-ups.
#include <hopper/detail/core.hpp>

#include <hopper/file_system.hpp>

#include "engine/core_rooms.hpp"
#include "engine/read_path.hpp"
#include "engine/segment_set.hpp"
#include "engine/spill_pipeline.hpp"
#include "storage/cursor_file.hpp"
#include "storage/format.hpp"

namespace hopper::detail {

namespace {
// How often, at most, the advisory position is written for a segment that stays on disk
// (Core::finish_page).
constexpr std::chrono::seconds kAdvisoryInterval{1};

Status give_up(const Status& why, const Wait& wait) {
  if (!why.ok()) return why;
  if (wait.kind == Wait::never) return Status(Errc::empty, "");
  return Status(Errc::timeout, "the next page was not ready before the deadline");
}
}  // namespace

bool Core::may_read_from_ram() const noexcept {
  // A page taken from RAM never reaches a file: not allowed when senders wait for it to be
  // synced (always), nor when a crash must not lose what was received but not committed.
  return opt_.sync != SyncPolicy::always && !opt_.manual_commit;
}

void Core::marker_taken() {
  HOPPER_ASSERT(markers_ > 0, "a Disk marker taken that was never pushed");
  --markers_;
  read_->mark_due();
}

bool Core::disk_item_pending() const { return read_->item_pending(); }

void Core::count_received() noexcept {
  // received_ is written by the receiver alone (stats() reads it from any thread), so a
  // relaxed load and store suffice: no read-modify-write on the receive path.
  received_.store(received_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void Core::delivered_memory_item() {
  read_->delivered_memory_item();
  count_received();
}

void Core::delivered_memory_items(std::uint64_t n) {
  read_->delivered_memory_items(n);
  received_.store(received_.load(std::memory_order_relaxed) + n, std::memory_order_release);
}

void Core::skip_delivered(std::uint64_t n) { read_->skipped(n); }

void Core::settle_skipped_now() {
  if (read_->item_pending()) return;
  read_->skipped(skipped_in_memory_);
  skipped_in_memory_ = 0;
}

std::string& Core::begin_held(std::uint64_t footprint, std::uint64_t at_ms) {
  return read_->begin_held(footprint, at_ms);
}
std::uint64_t Core::position() const { return read_->position(); }
void Core::end_held(std::uint64_t at_ms) { read_->end_held(at_ms); }

void Core::count_expired(std::uint64_t items, std::uint64_t bytes) noexcept {
  // The receiver counts, and so does a sender reclaiming an expired segment.
  expired_items_.fetch_add(items, std::memory_order_relaxed);
  expired_bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

void Core::expired_memory_item(std::uint64_t fp) {
  read_->delivered_memory_item();  // passed over: the position moves past it
  count_expired(1, fp);
}

Status Core::load_page(const Wait& wait) {
  OpenSegment closing;  // a descriptor to close once the lock is released (declared first)
  MutexLock lk(mu_);
  for (;;) {
    if (rooms_->pipeline.has_unread()) {
      const UnreadPage page = rooms_->pipeline.next_unread();
      if (page.discarded) {
        rooms_->pipeline.pop_unread();
        read_->skip(page, false);
        return Status();
      }
      if (page.ref.newest_ms != 0 && expired(page.ref.newest_ms)) {
        // Every item in it is past max_age: passed over by its header alone, never read
        // or decompressed; its segment goes once its last page is passed.
        rooms_->pipeline.pop_unread();
        const std::uint64_t items = page.ref.count - page.skip;
        disk_out_.fetch_add(items, std::memory_order_relaxed);
        count_expired(items, page.ref.count == 0 ? 0 : page.ref.raw_len / page.ref.count * items);
        read_->skip(page, true);
        lk.unlock();
        finish_page();
        return Status();
      }
      if (read_->waiting_to_retry(Clock::now())) {
        // The last read of this page failed: try again once the pause is over.
        if (!wait_for_page(wait, read_->retry_at())) return give_up(read_->last_error(), wait);
        continue;
      }
      rooms_->pipeline.pop_unread();
      OpenSegment file = rooms_->segments.take_read_file();
      lk.unlock();
      Status s = read_->read(page.ref, file);
      lk.lock();
      const bool present = rooms_->segments.present(page.ref.segment);
      closing = rooms_->segments.return_read_file(std::move(file), page.ref.segment);
      const std::uint64_t lost = page.ref.count - page.skip;
      if (s.code() == Errc::io_error || s.code() == Errc::not_found) {
        if (!present) {
          // Dropped (drop_oldest) while we were reading it. (An expired segment is only
          // reclaimed while none of its pages is being read.)
          items_dropped_ += lost;
          disk_out_.fetch_add(lost, std::memory_order_relaxed);
          read_->skip(page, false);
          return Status();
        }
        ++rooms_->read_errors;
        if (read_->read_failed(s, Clock::now())) {
          rooms_->pipeline.unpop_unread(page);  // retried after a pause, by this call or the next
          continue;
        }
        // Unreadable: skipped and counted, never returned; the receiver moves on.
        ++rooms_->pages_unreadable;
        rooms_->items_unreadable += lost;
        disk_out_.fetch_add(lost, std::memory_order_relaxed);
        add_damage(s.message() + " (page at offset " + std::to_string(page.ref.offset) + ", " + std::to_string(lost) +
                   " items): unreadable after " + std::to_string(ReadPath::kReadAttempts) + " attempts, skipped");
        if (s.code() == Errc::not_found) segment_lost(page.ref.segment, s);
        read_->skip(page, true);
        lk.unlock();
        finish_page();
        return Status();
      }
      if (!s.ok()) {
        // Damaged since it was written or recovered: skipped and counted, never returned.
        disk_out_.fetch_add(lost, std::memory_order_relaxed);
        corrupt_items_.fetch_add(lost, std::memory_order_relaxed);
        ++rooms_->corrupt_pages;
        add_damage(s.message() + "; " + std::to_string(lost) + " items skipped");
        read_->skip(page, true);
        lk.unlock();
        finish_page();
        return Status();
      }
      lk.unlock();
      read_->start(page);
      reading_ms_.store(read_->next_time_ms(), std::memory_order_relaxed);
      return Status();
    }
    if (rooms_->pipeline.readable_from_ram() && may_read_from_ram()) {
      // Not written yet: read it straight from RAM, no disk round trip.
      RawPage p = rooms_->pipeline.take_for_reading();
      if (senders_waiting_ > 0) sender_cv_.notify_all();
      lk.unlock();
      read_->start(std::move(p));
      reading_ms_.store(read_->next_time_ms(), std::memory_order_relaxed);
      return Status();
    }
    if (!rooms_->pipeline.in_flight() && rooms_->pipeline.has_pending()) {
      // The page must reach its file first (or its compression finish): help.
      const bool attempt = rooms_->pipeline.may_append(Clock::now());
      const bool progress = write_sealed();
      // A write this call made failed: the caller hears why (io_error), and the page stays
      // in RAM to be written again after the back-off. (Under always a failed page is
      // discarded and answered to its senders: the receiver skips it.)
      if (attempt && !rooms_->pipeline.write_error().ok() && !sync_always()) return rooms_->pipeline.write_error();
      if (progress) continue;
    }
    if (rooms_->pipeline.in_flight() || rooms_->pipeline.has_pending()) {
      // Someone else is writing (or compressing) it, or a retry is not yet due.
      const Status why =
          rooms_->pipeline.writing() || rooms_->pipeline.in_flight() ? Status() : rooms_->pipeline.write_error();
      if (!wait_for_page(wait, why.ok() ? Clock::time_point::max() : next_retry())) return give_up(why, wait);
      continue;
    }
    read_->abandon_due();
    return Status(Errc::corrupt, "internal error: a Disk marker without a page");
  }
}

Status Core::next_disk_item(std::string_view& out, bool& got, const Wait& wait) {
  got = false;
  for (;;) {
    bool finished = false;
    std::uint64_t at = 0;
    if (read_->next_item(out, finished, at)) {
      disk_out_.fetch_add(1, std::memory_order_relaxed);
      if (expired(at)) {
        count_expired(1, out.size());  // passed over: never returned
        if (finished) finish_page();
        continue;
      }
      reading_ms_.store(read_->next_time_ms(), std::memory_order_relaxed);
      got = true;
      if (finished) finish_page();  // `out` stays valid: the page's bytes are untouched
      return Status();
    }
    if (!read_->due()) return Status();
    if (Status s = load_page(wait); !s.ok()) return s;
  }
}

void Core::finish_page() {
  reading_ms_.store(0, std::memory_order_relaxed);
  const std::optional<std::uint64_t> segment = read_->finish();
  if (!segment) return;  // read from RAM: nothing on disk to release
  MutexLock lk(mu_);
  if (!rooms_->segments.page_read(*segment)) return;
  release_segment(*segment);
  (void)retry_removals();
  if (!opt_.manual_commit) {
    // Record how far delivery got: after a crash, the items of a deleted segment are then
    // known delivered rather than missing, and those of one kept for more appends are not
    // delivered again. Advisory: not synced, and a failure only means a later restart
    // reports a gap that is not a loss, or redelivers. For a segment that stays (kept for
    // appends under SyncPolicy::always/interval, where it is read page by page as fast as
    // each is synced, or its unlink failed) at most once per kAdvisoryInterval: a write
    // and a rename per page cost the durable path a fifth of its rate (docs/performance.md,
    // "Durable writes"), and after a crash at most the pages read in that last interval come
    // again, within what docs/durability.md allows (the segment being read).
    const Clock::time_point now = Clock::now();
    if (rooms_->segments.present(*segment) && now < advisory_due_) return;
    advisory_due_ = now + kAdvisoryInterval;
    const std::uint64_t end = next_seq_;
    lk.unlock();
    (void)write_cursor(*fs_, opt_.directory, read_->position(), end, false);
  }
}

Status Core::commit(std::uint64_t position) {
  if (position > read_->position())
    return Status(Errc::invalid_argument, "commit position " + std::to_string(position) +
                                              " is beyond the receiver's position " +
                                              std::to_string(read_->position()) +
                                              ": only items handed out can be committed");
  std::uint64_t end = 0;
  {
    MutexLock lk(mu_);
    // Already committed: nothing to do (only the receiver moves the commit position).
    if (position < rooms_->segments.committed()) return Status();
    end = next_seq_;
  }
  if (Status s = write_cursor(*fs_, opt_.directory, position, end, true); !s.ok()) return s;
  // Memory items handed out before the position are done: their encodings and their
  // charge against the budget go. Those at or after it stay held.
  const std::uint64_t released = read_->release_held(position);
  MutexLock lk(mu_);
  ++rooms_->commits;
  rooms_->segments.commit(position);
  HOPPER_ASSERT(released <= uncommitted_footprint_ && uncommitted_footprint_ <= memory_bytes_,
                "more committed than memory held");
  memory_bytes_ -= released;
  uncommitted_footprint_ -= released;
  if (senders_waiting_ > 0) sender_cv_.notify_all();
  // Segments read to the end and now wholly committed can go.
  for (std::uint64_t number : rooms_->segments.releasable()) release_segment(number);
  (void)retry_removals();
  return Status();
}

}  // namespace hopper::detail
