#include "engine/segment_set.hpp"

#include <algorithm>

#include "engine/backoff.hpp"
#include "storage/format.hpp"

namespace hopper::detail {

SegmentSet::SegmentSet(std::filesystem::path dir, const Options& o)
    : dir_(std::move(dir)),
      manual_commit_(o.manual_commit),
      syncing_(o.sync != SyncPolicy::none),
      segment_bytes_(o.segment_bytes) {}

void SegmentSet::add(std::uint64_t number, std::uint64_t bytes, std::uint64_t pages) {
  Segment& s = segments_[number];
  HOPPER_ASSERT(s.bytes == 0 && s.removal == Removing::none, "a recovered segment added twice");
  s.bytes = bytes;
  s.unread = pages;
  s.pages = pages;
  disk_bytes_ += bytes;
}

void SegmentSet::add_undeleted(std::uint64_t number, std::uint64_t bytes, Clock::time_point now) {
  Segment& s = segments_[number];
  s.bytes = bytes;
  s.removal = Removing::failed;
  s.retry_at = now;
  ++failed_removals_;
  disk_bytes_ += bytes;
}

void SegmentSet::add_held(std::uint64_t number, std::uint64_t bytes) {
  Segment& s = segments_[number];
  HOPPER_ASSERT(s.bytes == 0 && s.removal == Removing::none, "a held segment added twice");
  s.bytes = bytes;
  s.held = true;
  disk_bytes_ += bytes;
}

void SegmentSet::note_end(std::uint64_t number, std::uint64_t end) {
  Segment& s = segments_[number];
  s.max_end = std::max(s.max_end, end);
}

void SegmentSet::opened(std::uint64_t number, std::uint64_t bytes) {
  Segment& s = segments_[number];
  s.active = true;
  s.bytes += bytes;
  disk_bytes_ += bytes;
}

void SegmentSet::set_slack(std::uint64_t number, std::uint64_t slack) {
  auto it = segments_.find(number);
  if (it == segments_.end()) return;
  slack_bytes_ = slack_bytes_ - it->second.slack + slack;
  it->second.slack = slack;
}

void SegmentSet::appended(std::uint64_t number, std::uint64_t bytes, std::uint64_t end) {
  Segment& s = segments_[number];
  HOPPER_ASSERT(s.removal == Removing::none, "a page appended to a segment being removed");
  s.active = true;
  s.bytes += bytes;
  ++s.unread;
  ++s.pages;
  s.max_end = std::max(s.max_end, end);
  disk_bytes_ += bytes;
}

void SegmentSet::deactivate(std::uint64_t number) {
  auto it = segments_.find(number);
  if (it != segments_.end()) it->second.active = false;
}

bool SegmentSet::is_active(std::uint64_t number) const {
  auto it = segments_.find(number);
  return it != segments_.end() && it->second.active;
}

std::uint64_t SegmentSet::commit_position() const noexcept {
  // Without manual_commit, reading is committing: a segment may go once it is read.
  return manual_commit_ ? commit_seq_ : ~std::uint64_t{0};
}

SegmentSet::Release SegmentSet::release(std::uint64_t number) const {
  auto it = segments_.find(number);
  // Checked here, not by the caller: a caller releasing several segments drops the lock
  // for each unlink, and meanwhile the writer may append to one of the others.
  if (it == segments_.end() || !it->second.releasable() || it->second.unread > 0 ||
      it->second.max_end > commit_position())
    return Release::not_yet;
  return it->second.active ? Release::retire : Release::remove;
}

bool SegmentSet::read_and_committed(std::uint64_t number) const {
  auto it = segments_.find(number);
  return it != segments_.end() && it->second.unread == 0 && it->second.max_end <= commit_position();
}

bool SegmentSet::keep_for_appends(std::uint64_t number, int room_waiters) const {
  auto it = segments_.find(number);
  const std::uint64_t bytes = it == segments_.end() ? 0 : it->second.bytes;
  return syncing_ && bytes < segment_bytes_ / 4 && room_waiters == 0;
}

bool SegmentSet::page_read(std::uint64_t number) {
  auto it = segments_.find(number);
  if (it == segments_.end() || !it->second.releasable()) return false;
  if (it->second.unread > 0 && --it->second.unread > 0) return false;
  return it->second.max_end <= commit_position();  // else commit() releases it
}

void SegmentSet::commit(std::uint64_t position) { commit_seq_ = std::max(commit_seq_, position); }

std::vector<std::uint64_t> SegmentSet::releasable() const {
  std::vector<std::uint64_t> done;
  for (const auto& [number, seg] : segments_)
    if (seg.releasable() && seg.unread == 0 && seg.max_end <= commit_seq_) done.push_back(number);
  return done;
}

std::optional<SegmentSet::Removal> SegmentSet::begin_removal(std::uint64_t number) {
  auto it = segments_.find(number);
  if (it == segments_.end() || it->second.removal == Removing::removing) return std::nullopt;
  if (it->second.removal == Removing::failed) {
    HOPPER_ASSERT(failed_removals_ > 0, "a failed removal that was not counted");
    --failed_removals_;
  }
  it->second.removal = Removing::removing;
  Removal r;
  r.path = dir_ / format::segment_file_name(number);
  // The receiver's open descriptor goes with the file: an unlinked file that is still open
  // keeps its blocks, and the budget would count room the disk does not have.
  if (read_file_.is(number)) r.descriptor = std::move(read_file_);
  return r;
}

bool SegmentSet::end_removal(std::uint64_t number, const Status& s, Clock::time_point now) {
  // Nobody else touches an entry being removed: it is still there, and still ours.
  auto it = segments_.find(number);
  HOPPER_ASSERT(it != segments_.end() && it->second.removal == Removing::removing,
                "a removal ended that was not under way");
  if (s.ok() || s.code() == Errc::not_found) {
    HOPPER_ASSERT(disk_bytes_ >= it->second.bytes, "the disk count fell below a segment's bytes");
    disk_bytes_ -= it->second.bytes;
    slack_bytes_ -= it->second.slack;
    segments_.erase(it);
    remove_failures_ = 0;
    return true;
  }
  ++remove_errors_;
  ++failed_removals_;
  it->second.removal = Removing::failed;
  it->second.retry_at = now + backoff(++remove_failures_);
  return false;
}

std::vector<std::uint64_t> SegmentSet::due_removals(Clock::time_point now) const {
  std::vector<std::uint64_t> due;
  if (failed_removals_ == 0) return due;
  for (const auto& [number, seg] : segments_)
    if (seg.removal == Removing::failed && seg.retry_at <= now) due.push_back(number);
  return due;
}

void SegmentSet::retry_all_at(Clock::time_point now) {
  for (auto& [number, seg] : segments_)
    if (seg.removal == Removing::failed) seg.retry_at = now;
}

Clock::time_point SegmentSet::next_retry() const {
  Clock::time_point at = Clock::time_point::max();
  if (failed_removals_ > 0)
    for (const auto& [number, seg] : segments_)
      if (seg.removal == Removing::failed) at = std::min(at, seg.retry_at);
  return at;
}

std::uint64_t SegmentSet::pages(std::uint64_t number) const {
  auto it = segments_.find(number);
  return it == segments_.end() ? 0 : it->second.pages;
}

std::optional<std::uint64_t> SegmentSet::oldest_live() const {
  for (const auto& [number, seg] : segments_)
    if (seg.releasable()) return number;
  return std::nullopt;
}

bool SegmentSet::lose(std::uint64_t number, bool& was_active) {
  auto it = segments_.find(number);
  if (it == segments_.end() || it->second.removal != Removing::none) return false;
  was_active = it->second.active;
  it->second.unread = 0;
  return true;
}

bool SegmentSet::present(std::uint64_t number) const {
  auto it = segments_.find(number);
  return it != segments_.end() && it->second.removal == Removing::none;
}

OpenSegment SegmentSet::return_read_file(OpenSegment file, std::uint64_t number) {
  if (!present(number)) return file;  // its segment went meanwhile: closed once unlocked
  read_file_ = std::move(file);
  return OpenSegment();
}

}  // namespace hopper::detail
