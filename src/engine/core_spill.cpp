// Core's spill flows: the writer token, appends and group commit, compress-ahead, with the
// queue lock released around compression and I/O. The rules are SpillPipeline's
// (spill_pipeline.hpp); this file holds the lock windows and the wake-ups.
#include <hopper/detail/core.hpp>

#include <hopper/file_system.hpp>

#include <utility>

#include "engine/core_rooms.hpp"
#include "engine/segment_set.hpp"
#include "engine/spill_pipeline.hpp"
#include "storage/format.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {

// The token's state lives in the pipeline (writing()), under the queue lock; Token is the
// capability clang checks the SpillWriter against.
bool Core::take_writer_token() {
  if (rooms_->pipeline.writing()) return false;
  rooms_->pipeline.set_writing(true);
  writer_token_.acquire();
  return true;
}

void Core::give_writer_token() {
  rooms_->pipeline.set_writing(false);
  writer_token_.release();
}

bool Core::writer_busy() const { return rooms_->pipeline.writing(); }
bool Core::writer_idle_with_work() const { return rooms_->pipeline.idle_with_work(Clock::now()); }
Status Core::disk_refusal() const { return rooms_->pipeline.write_error(); }
Durability Core::durability(std::uint64_t seq, Status& why) { return rooms_->pipeline.durability(seq, why); }

bool Core::write_sealed() {
  bool progress = false;
  for (;;) {
    if (!rooms_->pipeline.has_pending()) return progress;
    if (rooms_->pipeline.may_append(Clock::now())) {
      progress = true;
      if (!append_pending()) return progress;  // a write failed: the caller hears of it
      continue;
    }
    // Someone holds the token, is compressing the next page, or a retry is not yet due:
    // compress one of the pages meanwhile.
    SealedPage* page = rooms_->pipeline.claim();
    if (page == nullptr) return progress;
    compress_sealed(*page);
    progress = true;
  }
}

Status Core::write_all() {
  while (rooms_->pipeline.has_pending() || rooms_->pipeline.writing()) {
    if (rooms_->pipeline.has_pending() && !rooms_->pipeline.writing() && !rooms_->pipeline.front_being_compressed()) {
      // One attempt now, whatever the back-off says: the caller asked for it.
      if (!append_pending()) return rooms_->pipeline.write_error();
      continue;
    }
    if (SealedPage* page = rooms_->pipeline.claim()) {
      compress_sealed(*page);
      continue;
    }
    ++senders_waiting_;
    sender_cv_.wait(mu_);
    --senders_waiting_;
  }
  return Status();
}

void Core::compress_sealed(SealedPage& page) {
  // `page` is claimed (Stage::compressing): nobody moves it, pops it or reads it from RAM
  // until compressed() says it is done, so it is read here without the lock.
  std::unique_ptr<Compressor> c = rooms_->pipeline.take_compressor();
  std::string frame;
  mu_.unlock();
  if (!c) c = std::make_unique<Compressor>();
  Status s = c->compress(page.page.raw, opt_.compression_level, frame);
  mu_.lock();
  rooms_->pipeline.return_compressor(std::move(c));
  rooms_->pipeline.compressed(page, s, std::move(frame));
  // The page may be appended, or read from RAM, now: whoever waits for that may go on.
  if (senders_waiting_ > 0) sender_cv_.notify_all();
  wake_receiver_locked();
}

void Core::segment_closed(std::uint64_t number, const Status& sync, bool synced) {
  if (rooms_->pipeline.active_segment() == number) rooms_->pipeline.set_active_segment(std::nullopt);
  rooms_->segments.deactivate(number);
  const std::uint64_t told = rooms_->pipeline.segment_closed(sync, synced);
  if (sync.ok()) return;
  add_damage(sync.message() + ": the segment is closed for appends" +
             (told > 0 ? "; " + std::to_string(told) + " items written since its last sync were answered io_error"
                       : std::string()));
  if (told > 0 && senders_waiting_ > 0) sender_cv_.notify_all();
}

void Core::release_after_append(std::optional<std::uint64_t> closed, std::optional<std::uint64_t> replaced) {
  if (closed) release_segment(*closed);
  if (replaced) {
    // Closed by a rotation, or by an earlier failure whose notice came here.
    rooms_->segments.deactivate(*replaced);
    release_segment(*replaced);
  }
}

bool Core::append_pending() {
  if (!take_writer_token()) {
    HOPPER_ASSERT(false, "an append started while the writer token was taken");
    return true;
  }
  bool ok = true;
  bool wrote = false;  // pages went to the file that is active at the end
  std::uint64_t written_end = 0;
  // A wake-up due to the receiver for a page written: given when the lock is next released
  // (for the next append or the sync), so that the receiver does not wake only to block on
  // the lock this thread holds.
  bool wake_rx = false;
  while (rooms_->pipeline.has_pending() && !rooms_->pipeline.front_being_compressed()) {
    // A segment found missing while being appended to: the next page starts a new one,
    // and what this round wrote to the lost file is answered failed.
    if (std::optional<std::uint64_t> gone = rooms_->pipeline.take_retire_request(); gone && writer_->active() == *gone) {
      writer_->abandon();
      segment_closed(*gone,
                     Status(Errc::not_found,
                            (opt_.directory / format::segment_file_name(*gone)).native() + ": the file is gone"),
                     false);
      wrote = false;
    }
    SealedPage p = rooms_->pipeline.start_append();
    // Room the writer may reserve past this page (syncing): what the disk budget has left
    // once every page in flight is counted at its worst size.
    const std::uint64_t in_use =
        rooms_->segments.physical_bytes() + rooms_->pipeline.pending_bound() + SpillWriter::bound(p.page.raw.size());
    writer_->set_reserve_room(opt_.max_disk_bytes > in_use ? opt_.max_disk_bytes - in_use : 0);
    mu_.unlock();  // compression (if nobody did it yet) and the append run without the queue lock
    if (std::exchange(wake_rx, false)) notify_receiver();
    AppendOutcome r = p.stage == SealedPage::Stage::compressed
                          ? writer_->append_compressed(p.page.items(), p.page.raw.size(), p.frame)
                          : writer_->append(p.page.items(), p.page.raw);
    mu_.lock();
    // The segment the writer left (rotation, or a file it could not cut back): its pages'
    // durability is settled by the sync that closed it. Released below, once this page is
    // published.
    const std::optional<std::uint64_t> closed = r.closed_segment;
    if (closed) {
      segment_closed(*closed, r.closed_sync, true);  // before this page joins the unsynced ones
      wrote = false;
    }
    // A new file: counted at once (its header is on disk, whatever the page does next), and
    // the writer's active segment from now on.
    std::optional<std::uint64_t> replaced;
    if (r.opened_segment) {
      rooms_->segments.opened(*r.opened_segment, r.opened_bytes);
      if (rooms_->pipeline.active_segment() != r.opened_segment) replaced = rooms_->pipeline.active_segment();
      rooms_->pipeline.set_active_segment(r.opened_segment);
    }
    // Reserved room is disk in use: the closed segment's (a cut that failed), the active one's.
    if (closed) rooms_->segments.set_slack(*closed, r.closed_slack);
    if (const std::optional<std::uint64_t> active = writer_->active())
      rooms_->segments.set_slack(*active, writer_->slack());
    if (!r.status.ok()) {
      if (sync_always()) {
        // Its senders are told (io_error) and keep their items; the page is never
        // delivered. Its Disk marker maps to a discarded page the receiver skips.
        const std::uint32_t count = p.page.count;
        rooms_->pipeline.page_failed(std::move(p), as_io_error(r.status));
        items_sent_ -= count;
        rooms_->spilled -= count;
        rooms_->disk_in -= count;
        wake_receiver_locked();
        if (senders_waiting_ > 0) sender_cv_.notify_all();
        release_after_append(closed, replaced);
        continue;
      }
      // Still ours, still in order: kept in RAM (the receiver may read it from there) and
      // written again once the back-off has passed, by whoever comes next.
      rooms_->pipeline.page_kept(std::move(p), as_io_error(r.status), Clock::now());
      wake_receiver_locked();
      release_after_append(closed, replaced);
      ok = false;
      break;
    }
    // Publish the page before anything below may release the lock: the receiver must find
    // it in the chain the moment it is no longer in flight, or it would take the next
    // sealed page out of order.
    const AppendedPage& a = r.page;
    const std::uint64_t end = p.page.end_seq();
    std::string buffer = std::move(p.page.raw);  // page_written needs its numbers, not its bytes
    rooms_->pipeline.page_written(std::move(p), a);
    rooms_->page.recycle(std::move(buffer));
    rooms_->segments.appended(a.segment, a.bytes, end);
    wrote = true;
    written_end = std::max(written_end, end);
    wake_rx |= wake_due();
    if (!sync_always() && senders_waiting_ > 0) sender_cv_.notify_all();
    release_after_append(closed, replaced);
    // The page's segment is the active one now; any other that was is closed (by this
    // rotation, or by one whose notice was lost to a failed append) and may go if read.
    if (rooms_->pipeline.active_segment() != a.segment) {
      const std::optional<std::uint64_t> previous = rooms_->pipeline.active_segment();
      rooms_->pipeline.set_active_segment(a.segment);
      if (previous) {
        rooms_->segments.deactivate(*previous);
        release_segment(*previous);
      }
    }
  }
  // One fdatasync for everything written in this round: with SyncPolicy::always, every
  // sender whose item is in these pages is acknowledged by it (group commit).
  const Clock::time_point now = Clock::now();
  bool sync_failed = false;
  if (wrote && rooms_->pipeline.sync_due(now) && writer_->active()) {
    const std::uint64_t number = *writer_->active();
    mu_.unlock();
    if (std::exchange(wake_rx, false)) notify_receiver();
    Status s = writer_->sync();
    mu_.lock();
    rooms_->pipeline.synced(now, s.ok());
    if (!s.ok()) {
      sync_failed = true;
      segment_closed(number, s, true);  // the writer has closed the file already
      release_segment(number);
    }
  }
  // Every page numbered below written_end is now either synced or answered failed (the
  // pipeline asks its failed ranges first).
  rooms_->pipeline.durable_below(written_end);
  // The receiver may have finished the active segment while we held the token (during a
  // rotation, say) and could not retire it then; nobody else would.
  retire_active_if_read();
  (void)retry_removals();
  give_writer_token();
  if (senders_waiting_ > 0) sender_cv_.notify_all();
  if (wake_rx) notify_receiver();
  // The pages written were announced as they were published. A waiting receiver is told
  // of the rest: pages still pending (kept for a retry, sealed meanwhile, or left to a
  // compressor — with the token free it may write them itself) and a failed sync. Waking
  // it after every round besides cost a receiver that keeps up under SyncPolicy::always
  // a wake-up, a block on this lock and its hand-over per item (docs/performance.md,
  // "Durable writes").
  if (!ok || sync_failed || rooms_->pipeline.has_pending()) wake_receiver_locked();
  return ok;
}

}  // namespace hopper::detail
