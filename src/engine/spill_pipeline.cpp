#include "engine/spill_pipeline.hpp"

#include <algorithm>

#include "engine/backoff.hpp"

namespace hopper::detail {

namespace {
std::size_t pending_pages(std::uint32_t page_bytes) {
  const std::uint64_t pages = SpillPipeline::kPendingBytes / std::max<std::uint32_t>(page_bytes, 1);
  return static_cast<std::size_t>(
      std::clamp<std::uint64_t>(pages, SpillPipeline::kMaxPending, SpillPipeline::kMaxPendingHelped));
}
bool claimable_page(const SealedPage& p) { return p.stage == SealedPage::Stage::raw && !p.help_failed; }
}  // namespace

SpillPipeline::SpillPipeline(const Options& o, std::uint64_t next_seq)
    : always_(o.sync == SyncPolicy::always),
      max_pending_(compression_helpers(o) > 0 ? kMaxPendingHelped : pending_pages(o.page_bytes)),
      sync_(o.sync),
      sync_interval_(o.sync_interval),
      last_end_(next_seq),
      durable_seq_(next_seq) {}

void SpillPipeline::push(RawPage sealed) {
  // Sequence continuity: pages are sealed in the order of their numbers (memory items may
  // take numbers between them, never a page's).
  HOPPER_ASSERT(sealed.count > 0 && sealed.first_seq >= last_end_, "a page sealed out of order");
  last_end_ = sealed.end_seq();
  SealedPage p;
  p.bound = SpillWriter::bound(sealed.raw.size());
  p.page = std::move(sealed);
  pending_bound_ += p.bound;
  pending_.push_back(std::move(p));
}

void SpillPipeline::set_writing(bool writing) {
  HOPPER_ASSERT(writing_ != writing, writing ? "the writer token taken twice" : "the writer token given back twice");
  writing_ = writing;
}

bool SpillPipeline::front_being_compressed() const {
  return !pending_.empty() && pending_.front().stage == SealedPage::Stage::compressing;
}

bool SpillPipeline::may_append(Clock::time_point now) const {
  return !pending_.empty() && !writing_ && !front_being_compressed() && (write_error_.ok() || now >= write_retry_at_);
}

bool SpillPipeline::idle_with_work(Clock::time_point now) const {
  if (pending_.empty()) return false;
  if (!writing_ && !front_being_compressed() && (write_error_.ok() || now >= write_retry_at_)) return true;
  return claimable();
}

SealedPage SpillPipeline::start_append() {
  HOPPER_ASSERT(writing_ && !in_flight_, "an append started without the writer token, or beside another");
  HOPPER_ASSERT(!pending_.empty() && !front_being_compressed(), "an append of a page being compressed");
  SealedPage p = std::move(pending_.front());
  pending_.pop_front();
  in_flight_ = true;
  return p;
}

namespace {
void publish(std::deque<UnreadPage>& unread, UnreadPage page) {
  // The chain is in sequence order: the receiver reads it front to back.
  HOPPER_ASSERT(unread.empty() || unread.back().ref.first_seq + unread.back().ref.count <= page.ref.first_seq + page.skip,
                "a page joined the receiver's chain out of order");
  unread.push_back(page);
}
}  // namespace

void SpillPipeline::page_written(SealedPage p, const AppendedPage& a) {
  HOPPER_ASSERT(in_flight_, "a page written that was not in flight");
  in_flight_ = false;
  pending_bound_ -= p.bound;
  write_error_ = Status();  // the disk takes pages again
  write_failures_ = 0;
  UnreadPage u;
  u.ref = format::PageRef{a.segment, a.offset, a.bytes, p.page.first_seq, p.page.count, format::kVersion,
                          static_cast<std::uint32_t>(a.raw_bytes), p.page.base_ms, p.page.newest_ms};
  publish(unread_, u);
  ++pages_written_;
  bytes_uncompressed_ += a.raw_bytes;
  bytes_compressed_ += a.bytes;
  if (always_) unsynced_.emplace_back(p.page.first_seq, p.page.end_seq());
}

void SpillPipeline::page_failed(SealedPage p, const Status& why) {
  HOPPER_ASSERT(in_flight_, "a page failed that was not in flight");
  in_flight_ = false;
  ++write_errors_;
  pending_bound_ -= p.bound;
  UnreadPage gone;
  gone.ref.first_seq = p.page.first_seq;
  gone.ref.count = p.page.count;
  gone.discarded = true;
  publish(unread_, gone);
  // Kept until each of its senders has been told: forgetting it earlier (as a bounded list
  // once did) left a sender descheduled meanwhile waiting forever.
  failed_.push_back(FailedRange{p.page.first_seq, p.page.end_seq(), why, p.page.count});
}

void SpillPipeline::page_kept(SealedPage p, const Status& why, Clock::time_point now) {
  HOPPER_ASSERT(in_flight_, "a page kept that was not in flight");
  in_flight_ = false;
  ++write_errors_;
  write_error_ = why;
  write_retry_at_ = now + backoff(++write_failures_);
  pending_.push_front(std::move(p));
}

SealedPage* SpillPipeline::claim() {
  auto it = std::find_if(pending_.begin(), pending_.end(), claimable_page);
  if (it == pending_.end()) return nullptr;
  it->stage = SealedPage::Stage::compressing;
  return &*it;
}

bool SpillPipeline::claimable() const { return std::any_of(pending_.begin(), pending_.end(), claimable_page); }

void SpillPipeline::compressed(SealedPage& p, const Status& s, std::string frame) {
  HOPPER_ASSERT(p.stage == SealedPage::Stage::compressing, "a page compressed that was not claimed");
  if (s.ok()) {
    p.frame = std::move(frame);
    p.stage = SealedPage::Stage::compressed;
    ++pages_compressed_ahead_;
  } else {
    p.stage = SealedPage::Stage::raw;  // the appender compresses it and reports the error
    p.help_failed = true;
  }
}

std::unique_ptr<Compressor> SpillPipeline::take_compressor() {
  if (idle_compressors_.empty()) return nullptr;
  std::unique_ptr<Compressor> c = std::move(idle_compressors_.back());
  idle_compressors_.pop_back();
  return c;
}

void SpillPipeline::return_compressor(std::unique_ptr<Compressor> c) { idle_compressors_.push_back(std::move(c)); }

bool SpillPipeline::sync_due(Clock::time_point now) const {
  return sync_ == SyncPolicy::always || (sync_ == SyncPolicy::interval && now - last_sync_ >= sync_interval_);
}

void SpillPipeline::synced(Clock::time_point now, bool ok) {
  last_sync_ = now;
  if (ok) {
    ++syncs_;
    unsynced_.clear();
  }
}

std::uint64_t SpillPipeline::segment_closed(const Status& sync, bool synced) {
  std::uint64_t told = 0;
  if (sync.ok()) {
    ++syncs_;
  } else {
    if (synced) ++sync_errors_;
    // What the kernel failed to write back may be gone while the page cache says
    // otherwise, and a later sync of the file would not say so: the senders waiting for
    // this sync are told it failed (their items may still be delivered: at least once).
    for (const auto& [begin, end] : unsynced_) {
      failed_.push_back(FailedRange{begin, end, as_io_error(sync), end - begin});
      told += end - begin;
    }
  }
  unsynced_.clear();
  return told;
}

void SpillPipeline::durable_below(std::uint64_t end) {
  if (always_) durable_seq_ = std::max(durable_seq_, end);
}

Durability SpillPipeline::durability(std::uint64_t seq, Status& why) {
  for (auto it = failed_.begin(); it != failed_.end(); ++it) {
    if (seq >= it->begin && seq < it->end) {
      why = it->why;
      HOPPER_ASSERT(it->unanswered > 0, "a failed range answered more often than it has items");
      if (--it->unanswered == 0) failed_.erase(it);
      return Durability::failed;
    }
  }
  if (seq < durable_seq_) return Durability::durable;
  return Durability::waiting;
}

Clock::time_point SpillPipeline::next_retry() const {
  if (!write_error_.ok() && !pending_.empty()) return write_retry_at_;
  return Clock::time_point::max();
}

void SpillPipeline::add_recovered(const format::DuePage& page) {
  UnreadPage u;
  u.ref = page.ref;
  u.skip = page.skip;
  publish(unread_, u);
}

SpillPipeline::SegmentAge SpillPipeline::segment_age(std::uint64_t number) const {
  SegmentAge age;
  bool timed = true;
  for (const UnreadPage& u : unread_) {
    if (u.ref.segment != number || u.discarded) continue;
    ++age.pages;
    age.items += u.ref.count - u.skip;
    age.raw_bytes += u.ref.raw_len;
    timed = timed && u.ref.newest_ms != 0;
    age.newest_ms = std::max(age.newest_ms, u.ref.newest_ms);
  }
  if (!timed) age.newest_ms = 0;
  return age;
}

std::pair<std::uint64_t, std::uint64_t> SpillPipeline::discard_segment(std::uint64_t number) {
  std::uint64_t pages = 0, items = 0;
  for (UnreadPage& u : unread_) {
    if (u.ref.segment == number && !u.discarded) {
      u.discarded = true;
      ++pages;
      items += u.ref.count - u.skip;
    }
  }
  return {pages, items};
}

bool SpillPipeline::readable_from_ram() const { return !in_flight_ && !pending_.empty() && !front_being_compressed(); }

RawPage SpillPipeline::take_for_reading() {
  HOPPER_ASSERT(readable_from_ram(), "a sealed page read from RAM while in flight or being compressed");
  SealedPage p = std::move(pending_.front());
  pending_.pop_front();
  pending_bound_ -= p.bound;
  // The pages a failed write kept are delivered: nothing is left to retry.
  if (pending_.empty()) write_error_ = Status();
  return std::move(p.page);
}

std::uint64_t SpillPipeline::oldest_waiting_ms() const {
  for (const UnreadPage& u : unread_)
    if (!u.discarded && u.ref.base_ms != 0) return u.ref.base_ms;
  for (const SealedPage& p : pending_)
    if (p.page.count > 0) return p.page.base_ms;
  return 0;
}

std::optional<std::uint32_t> SpillPipeline::drop_front() {
  if (writing_ || pending_.empty() || front_being_compressed()) return std::nullopt;
  // Nothing is in flight (no writer): the front page is next after everything in
  // `unread`, so its discarded page goes at the end of it, in order.
  SealedPage& p = pending_.front();
  UnreadPage gone;
  gone.ref.first_seq = p.page.first_seq;
  gone.ref.count = p.page.count;
  gone.discarded = true;
  publish(unread_, gone);
  pending_bound_ -= p.bound;
  const std::uint32_t count = p.page.count;
  pending_.pop_front();
  if (pending_.empty()) write_error_ = Status();  // nothing kept for a retry
  return count;
}

std::vector<RawPage> SpillPipeline::take_pending() {
  std::vector<RawPage> pages;
  for (SealedPage& p : pending_) pages.push_back(std::move(p.page));
  pending_.clear();
  return pages;
}

}  // namespace hopper::detail
