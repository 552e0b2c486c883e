// Core's segment flows: releasing, retiring and removing segment files (the unlink runs
// with the queue lock released), retrying failed unlinks, drop_oldest and files found
// gone. The rules are SegmentSet's (segment_set.hpp); this file holds the lock windows,
// the writer token where a segment the writer appends to must go, and the wake-ups.
#include <hopper/detail/core.hpp>

#include <hopper/file_system.hpp>

#include "engine/core_rooms.hpp"
#include "engine/segment_set.hpp"
#include "engine/spill_pipeline.hpp"
#include "storage/format.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {

void Core::remove_segment(std::uint64_t number) {
  std::optional<SegmentSet::Removal> removal = rooms_->segments.begin_removal(number);
  if (!removal) return;
  removal_pending_ = rooms_->segments.removal_pending();
  mu_.unlock();
  removal->descriptor.file.reset();
  Status s = fs_->remove(removal->path);
  mu_.lock();
  // The bytes stayed counted until the unlink returned, so the budget was never overrun.
  const bool removed = rooms_->segments.end_removal(number, s, Clock::now());
  removal_pending_ = rooms_->segments.removal_pending();
  if (removed && senders_waiting_ > 0) sender_cv_.notify_all();
}

bool Core::retry_removals() {
  if (!rooms_->segments.removal_pending()) return false;
  const std::vector<std::uint64_t> due = rooms_->segments.due_removals(Clock::now());
  const std::uint64_t before = rooms_->segments.count();
  for (std::uint64_t number : due) remove_segment(number);  // each re-checks its entry
  return rooms_->segments.count() < before;
}

void Core::release_segment(std::uint64_t number) {
  switch (rooms_->segments.release(number)) {
    case SegmentSet::Release::not_yet:
      return;
    case SegmentSet::Release::remove:
      remove_segment(number);
      return;
    case SegmentSet::Release::retire:
      // Everything written to the active segment is read. Retire it now, if the writer is
      // not using it, so its space comes back; the next page starts a new segment.
      if (rooms_->pipeline.writing()) return;  // it will be read, and retired then
      if (rooms_->segments.keep_for_appends(number, room_waiters_)) return;
      retire_idle_active(number);
      return;
  }
}

void Core::retire_segment(std::uint64_t number) {
  if (writer_->active() == number) {
    writer_->abandon();
    rooms_->pipeline.forget_unsynced();
  }
  if (rooms_->pipeline.active_segment() == number) rooms_->pipeline.set_active_segment(std::nullopt);
  rooms_->segments.deactivate(number);
}

void Core::retire_active_if_read() {
  const std::optional<std::uint64_t> active = rooms_->pipeline.active_segment();
  if (!active || !rooms_->segments.read_and_committed(*active)) return;
  if (rooms_->segments.keep_for_appends(*active, room_waiters_)) return;
  retire_segment(*active);
  remove_segment(*active);
}

void Core::retire_idle_active(std::uint64_t number) {
  if (!take_writer_token()) {
    HOPPER_ASSERT(false, "an idle active segment retired while the writer token was taken");
    return;
  }
  retire_segment(number);
  remove_segment(number);
  give_writer_token();
  if (senders_waiting_ > 0) sender_cv_.notify_all();
}

bool Core::reclaim_read_active() {
  const std::optional<std::uint64_t> active = rooms_->pipeline.active_segment();
  if (rooms_->pipeline.writing() || !active) return false;
  if (!rooms_->segments.read_and_committed(*active)) return false;
  const std::uint64_t before = rooms_->segments.count();
  retire_idle_active(*active);
  return rooms_->segments.count() < before;
}

void Core::drop_segment(std::uint64_t number) {
  // Its unread pages will be skipped by the receiver; the page it may be reading now was
  // taken out of the chain already and is delivered (or, if the read fails because the
  // file is gone, counted as dropped then).
  const std::uint64_t dropped = rooms_->pipeline.discard_segment(number).second;
  items_dropped_ += dropped;
  disk_out_.fetch_add(dropped, std::memory_order_relaxed);
  rooms_->dropping = true;
  remove_segment(number);
  rooms_->dropping = false;
}

bool Core::reclaim_expired() {
  if (max_age_ms_ == 0 || rooms_->dropping) return false;
  const std::optional<std::uint64_t> oldest = rooms_->segments.oldest_live();
  // The active segment holds the newest page written: not past the age if anything is not.
  if (!oldest || rooms_->segments.is_active(*oldest)) return false;
  const SpillPipeline::SegmentAge age = rooms_->pipeline.segment_age(*oldest);
  // Every page of it still waits in the chain: none is being read, none was read.
  if (age.pages == 0 || age.pages != rooms_->segments.pages(*oldest)) return false;
  if (age.newest_ms == 0 || !expired(age.newest_ms)) return false;
  (void)rooms_->pipeline.discard_segment(*oldest);
  count_expired(age.items, age.raw_bytes);
  disk_out_.fetch_add(age.items, std::memory_order_relaxed);
  rooms_->dropping = true;
  remove_segment(*oldest);
  rooms_->dropping = false;
  return true;
}

bool Core::drop_oldest_on_disk() {
  // Room that costs no data first: delivered segments whose unlink failed before.
  if (retry_removals()) return true;
  // One drop at a time: a second sender finding the disk full while a drop is under way
  // waits for it (remove_segment wakes it) rather than discarding another segment too.
  if (rooms_->dropping) return false;
  const std::optional<std::uint64_t> oldest = rooms_->segments.oldest_live();
  if (!oldest) {
    // No segment to drop, and what waits is in RAM because the disk refuses it.
    if (rooms_->pipeline.write_error().ok()) return false;
    const std::optional<std::uint32_t> count = rooms_->pipeline.drop_front();
    if (!count) return false;
    items_dropped_ += *count;
    disk_out_.fetch_add(*count, std::memory_order_relaxed);
    wake_receiver_locked();
    return true;
  }
  if (!rooms_->segments.is_active(*oldest)) {
    drop_segment(*oldest);
    return true;
  }
  // The writer appends to it: it must leave it first.
  if (!take_writer_token()) return false;  // the writer is appending to it; try again after
  retire_segment(*oldest);
  drop_segment(*oldest);
  give_writer_token();
  if (senders_waiting_ > 0) sender_cv_.notify_all();
  return true;
}

void Core::segment_lost(std::uint64_t number, const Status& why) {
  bool was_active = false;
  if (!rooms_->segments.lose(number, was_active)) return;
  const auto [pages, items] = rooms_->pipeline.discard_segment(number);
  rooms_->pages_unreadable += pages;
  rooms_->items_unreadable += items;
  disk_out_.fetch_add(items, std::memory_order_relaxed);
  add_damage((opt_.directory / format::segment_file_name(number)).native() + ": the file is gone (" + why.message() +
             "); its " + std::to_string(pages) + " other unread pages (" + std::to_string(items) +
             " items) are skipped");
  if (was_active) {
    if (take_writer_token()) {
      retire_segment(number);
      give_writer_token();
    } else {
      rooms_->pipeline.request_retire(number);  // the writer leaves it before its next page
    }
  }
  // Unlinked as any segment done with (SegmentSet::lose says why). One the writer is
  // appending to right now stays counted: the writer leaves it before its next page.
  if (!rooms_->segments.is_active(number)) remove_segment(number);
}

}  // namespace hopper::detail
