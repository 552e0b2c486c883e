// Core: budgets, the open page, the writer token, segment bookkeeping, durability and the
// receiver's read path. See include/hopper/detail/core.hpp for the locking rules.
#include <hopper/detail/core.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <thread>

#include <hopper/file_system.hpp>

#include "format.hpp"
#include "recovery.hpp"
#include "segment_reader.hpp"
#include "spill_writer.hpp"

namespace hopper::detail {

namespace {
// Sealed pages may wait for the writer, holding their raw bytes in RAM, up to this many;
// past it a spilling sender waits (or writes them itself). Bounds the spill path's memory
// to roughly (kMaxPending + 2) pages. While the disk refuses writes, this is also all the
// RAM that holds what could not be written: past it, the full policy applies.
constexpr std::size_t kMaxPending = 4;
// Lines of damage kept for damage_report(); the counters in Stats keep counting past it.
constexpr std::size_t kMaxDamageLines = 1000;
// Reads of one page before it is skipped as unreadable, and the pauses between them.
constexpr std::uint32_t kReadAttempts = 3;
constexpr std::chrono::milliseconds kReadPauses[kReadAttempts - 1] = {std::chrono::milliseconds(1),
                                                                      std::chrono::milliseconds(10)};
// At shutdown, the pauses between attempts at a write the disk refused (four attempts).
constexpr std::chrono::milliseconds kShutdownPauses[] = {std::chrono::milliseconds(1), std::chrono::milliseconds(10),
                                                         std::chrono::milliseconds(50)};

// What a sender, flush() or a receiver is told of a page that could not be written: an
// io_error whatever the file system called it (a missing file, say), naming the path.
Status as_io_error(const Status& s) {
  if (s.ok() || s.code() == Errc::io_error) return s;
  std::string m = s.message();
  const std::string prefix = std::string(to_string(s.code())) + ": ";
  if (m.rfind(prefix, 0) == 0) m.erase(0, prefix.size());
  return Status(Errc::io_error, std::move(m));
}

// The pause before retrying a failed write or unlink, after `failures` in a row: 1 ms,
// doubling, at most a second — quick to resume once the disk is back, and a dead disk
// costs a few calls a second, not a core.
Clock::duration backoff(std::uint32_t failures) {
  const std::uint32_t shift = failures == 0 ? 0 : std::min<std::uint32_t>(failures - 1, 10);
  return std::min<Clock::duration>(std::chrono::milliseconds(1) * (1u << shift), std::chrono::seconds(1));
}
}  // namespace

struct SealedPage {
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::string raw;
  std::uint64_t bound = 0;  // what it may add to the disk once written
  // raw: nobody has compressed it (the appender compresses it inline); compressing: a
  // thread compresses it with mu released — meanwhile nobody moves it or reads it from
  // RAM; compressed: `frame` holds header room and the zstd frame.
  enum class Stage : std::uint8_t { raw, compressing, compressed } stage = Stage::raw;
  bool help_failed = false;  // compressing outside failed: left to the appender, who reports
  std::string frame;
};

struct SegmentState {
  std::uint64_t bytes = 0;    // file size
  std::uint64_t unread = 0;   // pages in it the receiver has not finished
  std::uint64_t max_end = 0;  // one past the highest sequence number in it
  bool active = false;        // the writer may still append to it
  // An unlink is under way (nobody else touches the entry meanwhile), or failed and is
  // retried at retry_at. Either way its bytes stay counted until the file is gone.
  enum class Removal : std::uint8_t { none, removing, failed } removal = Removal::none;
  Clock::time_point retry_at{};
  // Left in place unread at open (it could not be read): counted, never delivered, never
  // removed by this handle; a later open tries it again.
  bool held = false;
  bool releasable() const noexcept { return removal == Removal::none && !held; }
};

struct FailedRange {
  std::uint64_t begin, end;
  Status why;
  std::uint64_t unanswered;  // senders of its items not yet told (each waits for it)
};

struct DiskState {
  DiskState(std::shared_ptr<FileSystem> f, const Options& o, std::uint64_t next_segment)
      : fs(std::move(f)),
        dir(o.directory),
        writer(fs, dir, o.segment_bytes, o.compression_level, next_segment, o.sync != SyncPolicy::none),
        reader(fs, dir) {}

  std::shared_ptr<FileSystem> fs;
  std::filesystem::path dir;
  std::unique_ptr<FileLock> lock;

  // [mu] Sealed pages in order: unread (written) < in flight < pending (not yet written).
  std::deque<PageRef> unread;
  bool in_flight = false;
  std::deque<SealedPage> pending;
  std::uint64_t pending_bound = 0;  // pending pages and the one in flight
  bool writing = false;             // the writer token: its holder owns `writer`
  bool dropping = false;            // a drop_oldest removal is under way
  std::optional<std::uint64_t> active_segment;  // the segment the writer last appended to
  std::optional<std::uint64_t> retire_requested;  // found missing: the writer must leave it

  // [mu] Segment files present and their bytes.
  std::map<std::uint64_t, SegmentState> segments;
  std::uint64_t disk_bytes = 0;
  std::uint32_t remove_failures = 0;  // unlinks failed in a row, for the back-off

  // [mu] Durability.
  std::chrono::steady_clock::time_point last_sync = std::chrono::steady_clock::now();
  std::deque<FailedRange> failed;  // SyncPolicy::always: items whose page failed to be stored
  // SyncPolicy::always: pages written to the active file since its last good fdatasync.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> unsynced;

  // [mu] Totals.
  std::uint64_t disk_in = 0;  // items that went into pages (spilled + recovered)
  std::uint64_t spilled = 0;
  std::uint64_t recovered = 0;
  std::uint64_t pages_written = 0;
  std::uint64_t pages_compressed_ahead = 0;
  std::uint64_t bytes_uncompressed = 0;
  std::uint64_t bytes_compressed = 0;
  std::uint64_t corrupt_pages = 0;
  std::uint64_t torn_bytes = 0;
  std::uint64_t missing = 0;
  std::uint64_t syncs = 0;
  std::uint64_t commits = 0;
  std::uint64_t pages_unreadable = 0;
  std::uint64_t items_unreadable = 0;
  std::uint64_t write_errors = 0;
  std::uint64_t sync_errors = 0;
  std::uint64_t read_errors = 0;
  std::uint64_t remove_errors = 0;
  std::vector<std::uint64_t> recovered_counts;
  std::vector<std::string> damage;  // one line per damage found, naming the file

  // Items that left the disk side (handed out, skipped as damaged, dropped), and items that
  // failed validation. Written by the receiver (and drop_oldest under mu), read by stats()
  // for reporting only: relaxed is enough, nothing is ordered by them.
  std::atomic<std::uint64_t> disk_out{0};
  std::atomic<std::uint64_t> corrupt_items{0};

  SpillWriter writer;    // [writer token]
  SegmentReader reader;  // [receiver]
  // [mu, unless the receiver has taken it out to read a page] The segment file the
  // receiver reads, kept open between pages. Whoever removes that segment closes it.
  OpenSegment read_file;
  // [mu] Compression contexts not in use, for threads that compress sealed pages outside
  // the writer token: at most one per page being compressed (so at most kMaxPending).
  std::vector<std::unique_ptr<Compressor>> idle_compressors;
};

}  // namespace hopper::detail

namespace hopper {

Status validate(const Options& o) {
  auto bad = [](std::string what) { return Status(Errc::invalid_argument, std::move(what)); };
  if (o.directory.empty()) return bad("Options::directory is empty; a queue needs a directory of its own");
  if (o.max_memory_bytes == 0) return bad("Options::max_memory_bytes is 0; the memory budget must be at least one item");
  if (o.page_bytes == 0) return bad("Options::page_bytes is 0");
  if (o.page_bytes > format::kMaxRawPage / 2)
    return bad("Options::page_bytes is " + std::to_string(o.page_bytes) + "; at most " +
               std::to_string(format::kMaxRawPage / 2));
  if (o.compression_level < -7 || o.compression_level > 22)
    return bad("Options::compression_level is " + std::to_string(o.compression_level) +
               "; zstd levels run from -7 to 22");
  if (o.when_full != FullPolicy::block && o.when_full != FullPolicy::fail && o.when_full != FullPolicy::drop_oldest)
    return bad("Options::when_full is not a FullPolicy value");
  if (o.sync != SyncPolicy::none && o.sync != SyncPolicy::interval && o.sync != SyncPolicy::always)
    return bad("Options::sync is not a SyncPolicy value");
  if (o.sync == SyncPolicy::interval && o.sync_interval.count() <= 0)
    return bad("Options::sync_interval must be positive with SyncPolicy::interval");
  if (o.sync == SyncPolicy::always && o.max_disk_bytes == 0)
    return bad("Options::sync is SyncPolicy::always but Options::max_disk_bytes is 0: items must go to disk");
  if (o.max_disk_bytes > 0) {
    const std::uint64_t page_need = detail::SpillWriter::bound(o.page_bytes);
    if (o.segment_bytes < page_need)
      return bad("Options::segment_bytes (" + std::to_string(o.segment_bytes) +
                 ") is smaller than one page of Options::page_bytes (" + std::to_string(o.page_bytes) +
                 ") with its headers: at least " + std::to_string(page_need));
    if (o.segment_bytes > o.max_disk_bytes)
      return bad("Options::segment_bytes (" + std::to_string(o.segment_bytes) +
                 ") is larger than Options::max_disk_bytes (" + std::to_string(o.max_disk_bytes) +
                 "); set max_disk_bytes = 0 to never spill");
  }
  return Status();
}

}  // namespace hopper

namespace hopper::detail {

Core::Core(Options options) : opt_(std::move(options)) {}

Core::~Core() = default;

Result<std::unique_ptr<Core>> Core::open(const Options& options) {
  if (Status s = validate(options); !s.ok()) return s;
  auto fs = options.file_system ? options.file_system : FileSystem::posix();
  if (Status s = fs->create_directories(options.directory); !s.ok()) return s;
  auto lock = fs->lock(options.directory / format::kLockFileName);
  if (!lock.ok()) return lock.status();
  // A damaged region is searched for the next valid page at most this far: twice the
  // largest file these options let the writer make, plus the largest page a shutdown may
  // write. Past it lies nothing this queue wrote.
  RecoveryLimits limits;
  limits.resync_limit = 2 * std::max(options.segment_bytes, options.max_disk_bytes) +
                        SpillWriter::bound(std::min<std::uint64_t>(
                            std::uint64_t{options.page_bytes} + options.max_memory_bytes, format::kMaxRawPage));
  auto rec = recover(*fs, options.directory, limits);
  if (!rec.ok()) return rec.status();

  std::unique_ptr<Core> core(new Core(options));
  core->d_ = std::make_unique<DiskState>(fs, options, rec->next_segment);
  DiskState& d = *core->d_;
  d.lock = std::move(*lock);
  for (const auto& s : rec->segments) {
    d.segments[s.number] = SegmentState{s.bytes, s.pages, 0, false};
    d.disk_bytes += s.bytes;
  }
  for (const auto& s : rec->stale) {
    // Delivered, but its unlink failed at open: counted, and retried from now on.
    SegmentState& seg = d.segments[s.number];
    seg.bytes = s.bytes;
    seg.removal = SegmentState::Removal::failed;
    ++core->failed_removals_;
    seg.retry_at = Clock::now();
    d.disk_bytes += s.bytes;
  }
  for (const auto& s : rec->held) {
    SegmentState& seg = d.segments[s.number];
    seg.bytes = s.bytes;
    seg.held = true;
    d.disk_bytes += s.bytes;
  }
  for (const auto& p : rec->pages) {
    d.unread.push_back(p);
    d.recovered_counts.push_back(p.count - p.skip);
    auto& seg = d.segments[p.segment];
    seg.max_end = std::max(seg.max_end, p.first_seq + p.count);
  }
  d.recovered = d.disk_in = rec->items;
  d.damage = std::move(rec->problems);
  d.corrupt_pages = rec->corrupt_pages;
  d.torn_bytes = rec->torn_bytes;
  d.missing = rec->missing;
  d.read_errors = rec->read_errors;
  d.remove_errors = rec->remove_errors;
  core->next_seq = rec->next_seq;
  core->durable_seq_ = rec->next_seq;
  core->deliver_seq_ = rec->cursor;
  core->commit_seq_ = rec->cursor;
  core->page_.reserve(options.page_bytes + 4096);
  return core;
}

std::vector<std::uint64_t> Core::recovered_pages() const { return d_->recovered_counts; }

void Core::add_damage(std::string line) {
  if (d_->damage.size() < kMaxDamageLines) d_->damage.push_back(std::move(line));
}

// ---------------------------------------------------------------------------------------
// Spill path: the open page, sealing, the writer token.

std::size_t Core::begin_item() {
  const std::size_t mark = page_.size();
  page_.append(format::kItemPrefixSize, '\0');
  return mark;
}

SpillVerdict Core::end_item(std::size_t mark) {
  const std::uint64_t item = page_.size() - mark;  // prefix + encoding
  auto refuse = [&](SpillVerdict v) {
    page_.resize(mark);
    return v;
  };
  if (item - format::kItemPrefixSize > 0xffffffffull || SpillWriter::bound(item) > opt_.segment_bytes)
    return refuse(SpillVerdict::too_large);
  if (page_items_ > 0 && SpillWriter::bound(page_.size()) > opt_.segment_bytes)
    return refuse(SpillVerdict::need_seal);
  if (d_->pending.size() >= kMaxPending) return refuse(SpillVerdict::behind);
  if (d_->disk_bytes + d_->pending_bound + SpillWriter::bound(page_.size()) > opt_.max_disk_bytes)
    return refuse(SpillVerdict::full);
  format::put_u32(page_.data() + mark, static_cast<std::uint32_t>(item - format::kItemPrefixSize));
  if (page_items_ == 0) page_first_seq_ = next_seq;
  ++page_items_;
  ++next_seq;
  ++d_->spilled;
  ++d_->disk_in;
  return SpillVerdict::accepted;
}

std::uint64_t Core::seal() {
  if (page_items_ == 0) return 0;
  SealedPage p;
  p.first_seq = page_first_seq_;
  p.count = page_items_;
  p.raw = std::move(page_);
  p.bound = SpillWriter::bound(p.raw.size());
  page_ = std::string();
  page_.reserve(opt_.page_bytes + 4096);
  page_items_ = 0;
  d_->pending_bound += p.bound;
  d_->pending.push_back(std::move(p));
  return d_->pending.back().count;
}

namespace {
bool claimable(const SealedPage& p) { return p.stage == SealedPage::Stage::raw && !p.help_failed; }
}  // namespace

bool Core::writer_idle_with_work() const noexcept {
  const DiskState& d = *d_;
  if (d.pending.empty()) return false;
  if (!d.writing && d.pending.front().stage != SealedPage::Stage::compressing &&
      (write_error_.ok() || Clock::now() >= write_retry_at_))
    return true;
  return std::any_of(d.pending.begin(), d.pending.end(), claimable);
}
bool Core::writer_busy() const noexcept { return d_->writing; }

Clock::time_point Core::next_retry() const noexcept {
  const DiskState& d = *d_;
  Clock::time_point at = Clock::time_point::max();
  if (!write_error_.ok() && !d.pending.empty()) at = write_retry_at_;
  if (failed_removals_ > 0)
    for (const auto& [number, seg] : d.segments)
      if (seg.removal == SegmentState::Removal::failed) at = std::min(at, seg.retry_at);
  return at;
}

bool Core::wait_sender(std::unique_lock<std::mutex>& lk, const Wait& wait, bool for_room) {
  ++senders_waiting;
  if (for_room) ++room_waiters;
  const Clock::time_point retry = next_retry();
  const Clock::time_point until = wait.kind == Wait::until ? std::min(wait.deadline, retry) : retry;
  if (until == Clock::time_point::max()) {
    sender_cv.wait(lk);
  } else {
    sender_cv.wait_until(lk, until);
  }
  if (for_room) --room_waiters;
  --senders_waiting;
  return wait.kind == Wait::until && Clock::now() >= wait.deadline;
}

void Core::remove_segment(std::unique_lock<std::mutex>& lk, std::uint64_t number) {
  DiskState& d = *d_;
  auto it = d.segments.find(number);
  if (it == d.segments.end() || it->second.removal == SegmentState::Removal::removing) return;
  if (it->second.removal == SegmentState::Removal::failed) --failed_removals_;
  it->second.removal = SegmentState::Removal::removing;
  // The receiver's open descriptor goes with the file: an unlinked file that is still open
  // keeps its blocks, and the budget would count room the disk does not have.
  OpenSegment closing;
  if (d.read_file.is(number)) closing = std::move(d.read_file);
  lk.unlock();
  closing.file.reset();
  Status s = d.fs->remove(d.dir / format::segment_file_name(number));
  lk.lock();
  // Nobody else touches an entry being removed: `it` is still ours.
  if (s.ok() || s.code() == Errc::not_found) {
    d.disk_bytes -= it->second.bytes;
    d.segments.erase(it);
    d.remove_failures = 0;
    if (senders_waiting > 0) sender_cv.notify_all();
    return;
  }
  ++d.remove_errors;
  if (it->second.removal != SegmentState::Removal::failed) ++failed_removals_;
  it->second.removal = SegmentState::Removal::failed;
  it->second.retry_at = Clock::now() + backoff(++d.remove_failures);
}

bool Core::retry_removals(std::unique_lock<std::mutex>& lk) {
  if (failed_removals_ == 0) return false;
  DiskState& d = *d_;
  const Clock::time_point now = Clock::now();
  std::vector<std::uint64_t> due;
  for (const auto& [number, seg] : d.segments)
    if (seg.removal == SegmentState::Removal::failed && seg.retry_at <= now) due.push_back(number);
  const std::size_t before = d.segments.size();
  for (std::uint64_t number : due) remove_segment(lk, number);  // each re-checks its entry
  return d.segments.size() < before;
}

bool Core::write_sealed(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  bool progress = false;
  for (;;) {
    if (d.pending.empty()) return progress;
    if (!d.writing && d.pending.front().stage != SealedPage::Stage::compressing &&
        (write_error_.ok() || Clock::now() >= write_retry_at_)) {
      progress = true;
      if (!append_pending(lk)) return progress;  // a write failed: the caller hears of it
      continue;
    }
    // Someone holds the token, is compressing the next page, or a retry is not yet due:
    // compress one of the pages meanwhile. References into a deque survive pushes and pops
    // at the other elements, and a claimed page is neither moved nor popped by anyone else.
    auto it = std::find_if(d.pending.begin(), d.pending.end(), claimable);
    if (it == d.pending.end()) return progress;
    compress_sealed(lk, *it);
    progress = true;
  }
}

void Core::compress_sealed(std::unique_lock<std::mutex>& lk, SealedPage& p) {
  DiskState& d = *d_;
  p.stage = SealedPage::Stage::compressing;
  std::unique_ptr<Compressor> c;
  if (!d.idle_compressors.empty()) {
    c = std::move(d.idle_compressors.back());
    d.idle_compressors.pop_back();
  }
  std::string frame;
  lk.unlock();
  if (!c) c = std::make_unique<Compressor>();
  Status s = c->compress(p.raw, opt_.compression_level, frame);
  lk.lock();
  d.idle_compressors.push_back(std::move(c));
  if (s.ok()) {
    p.frame = std::move(frame);
    p.stage = SealedPage::Stage::compressed;
    ++d.pages_compressed_ahead;
  } else {
    p.stage = SealedPage::Stage::raw;  // the appender compresses it and reports the error
    p.help_failed = true;
  }
  // The page may be appended, or read from RAM, now: whoever waits for that may go on.
  if (senders_waiting > 0) sender_cv.notify_all();
  if (receiver_waiting) receiver_cv.notify_one();
}

void Core::segment_closed(std::uint64_t number, const Status& sync, bool synced) {
  DiskState& d = *d_;
  if (d.active_segment == number) d.active_segment.reset();
  auto it = d.segments.find(number);
  if (it != d.segments.end()) it->second.active = false;
  if (sync.ok()) {
    ++d.syncs;
  } else {
    if (synced) ++d.sync_errors;
    std::uint64_t told = 0;
    // What the kernel failed to write back may be gone while the page cache says
    // otherwise, and a later sync of the file would not say so: the senders waiting for
    // this sync are told it failed (their items may still be delivered: at least once).
    for (const auto& [begin, end] : d.unsynced) {
      d.failed.push_back(FailedRange{begin, end, as_io_error(sync), end - begin});
      told += end - begin;
    }
    add_damage(sync.message() + ": the segment is closed for appends" +
               (told > 0 ? "; " + std::to_string(told) + " items written since its last sync were answered io_error"
                         : std::string()));
    if (told > 0 && senders_waiting > 0) sender_cv.notify_all();
  }
  d.unsynced.clear();
}

bool Core::append_pending(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  d.writing = true;
  bool ok = true;
  bool wrote = false;  // pages went to the file that is active at the end
  std::uint64_t written_end = 0;
  while (!d.pending.empty() && d.pending.front().stage != SealedPage::Stage::compressing) {
    // A segment found missing while being appended to: the next page starts a new one,
    // and what this round wrote to the lost file is answered failed.
    if (d.retire_requested) {
      const std::uint64_t gone = *d.retire_requested;
      d.retire_requested.reset();
      if (d.writer.active() == gone) {
        d.writer.abandon();
        segment_closed(gone,
                       Status(Errc::not_found, (d.dir / format::segment_file_name(gone)).native() + ": the file is gone"),
                       false);
        wrote = false;
      }
    }
    SealedPage p = std::move(d.pending.front());
    d.pending.pop_front();
    d.in_flight = true;
    lk.unlock();  // compression (if nobody did it yet) and the append run without the queue lock
    AppendOutcome r = p.stage == SealedPage::Stage::compressed
                          ? d.writer.append_compressed(p.first_seq, p.count, p.raw.size(), p.frame)
                          : d.writer.append(p.first_seq, p.count, p.raw);
    lk.lock();
    d.in_flight = false;
    // The segment the writer left (rotation, or a file it could not cut back): its pages'
    // durability is settled by the sync that closed it. Released below, once this page is
    // published.
    std::optional<std::uint64_t> closed = r.closed_segment;
    if (closed) {
      segment_closed(*closed, r.closed_sync);  // before this page joins `unsynced`
      wrote = false;
    }
    // A new file: counted at once (its header is on disk, whatever the page does next), and
    // the writer's active segment from now on.
    std::optional<std::uint64_t> replaced;
    if (r.opened_segment) {
      SegmentState& fresh = d.segments[*r.opened_segment];
      fresh.active = true;
      fresh.bytes += r.opened_bytes;
      d.disk_bytes += r.opened_bytes;
      if (d.active_segment != r.opened_segment) replaced = d.active_segment;
      d.active_segment = r.opened_segment;
    }
    auto settle_closed = [&] {
      if (closed) release_segment(lk, *closed);
      closed.reset();
      if (replaced) {
        // Closed by a rotation, or by an earlier failure whose notice came here.
        auto it = d.segments.find(*replaced);
        if (it != d.segments.end()) {
          it->second.active = false;
          release_segment(lk, *replaced);
        }
      }
      replaced.reset();
    };
    if (!r.status.ok()) {
      ++d.write_errors;
      if (sync_always()) {
        // Its senders are told (io_error) and keep their items; the page is never
        // delivered. Its Disk marker maps to a discarded page the receiver skips.
        d.pending_bound -= p.bound;
        PageRef gone;
        gone.first_seq = p.first_seq;
        gone.count = p.count;
        gone.discarded = true;
        d.unread.push_back(gone);
        // Kept until each of its senders has been told: forgetting it earlier (as a bounded
        // list once did) left a sender descheduled meanwhile waiting forever.
        d.failed.push_back(FailedRange{p.first_seq, p.first_seq + p.count, as_io_error(r.status), p.count});
        items_sent -= p.count;
        d.spilled -= p.count;
        d.disk_in -= p.count;
        if (receiver_waiting) receiver_cv.notify_one();
        if (senders_waiting > 0) sender_cv.notify_all();
        settle_closed();
        continue;
      }
      // Still ours, still in order: kept in RAM (the receiver may read it from there) and
      // written again once the back-off has passed, by whoever comes next.
      write_error_ = as_io_error(r.status);
      write_retry_at_ = Clock::now() + backoff(++write_failures_);
      d.pending.push_front(std::move(p));
      if (receiver_waiting) receiver_cv.notify_one();
      settle_closed();
      ok = false;
      break;
    }
    // Publish the page before anything below may release the lock: the receiver must find
    // it in `unread` the moment it is no longer in flight, or it would take the next
    // pending page out of order.
    d.pending_bound -= p.bound;
    write_error_ = Status();  // the disk takes pages again
    write_failures_ = 0;
    const AppendedPage& a = r.page;
    SegmentState& seg = d.segments[a.segment];
    seg.active = true;
    seg.bytes += a.bytes;
    ++seg.unread;
    seg.max_end = std::max(seg.max_end, p.first_seq + p.count);
    d.disk_bytes += a.bytes;
    d.unread.push_back(PageRef{a.segment, a.offset, a.bytes, p.first_seq, p.count, 0, false});
    ++d.pages_written;
    d.bytes_uncompressed += a.raw_bytes;
    d.bytes_compressed += a.bytes;
    wrote = true;
    written_end = std::max(written_end, p.first_seq + p.count);
    if (sync_always()) d.unsynced.emplace_back(p.first_seq, p.first_seq + p.count);
    if (receiver_waiting) receiver_cv.notify_one();
    if (!sync_always() && senders_waiting > 0) sender_cv.notify_all();
    settle_closed();
    // The page's segment is the active one now; any other that was is closed (by this
    // rotation, or by one whose notice was lost to a failed append) and may go if read.
    if (d.active_segment != a.segment) {
      const std::optional<std::uint64_t> previous = d.active_segment;
      d.active_segment = a.segment;
      if (previous) {
        auto it = d.segments.find(*previous);
        if (it != d.segments.end()) {
          it->second.active = false;
          release_segment(lk, *previous);
        }
      }
    }
  }
  // One fdatasync for everything written in this round: with SyncPolicy::always, every
  // sender whose item is in these pages is acknowledged by it (group commit).
  const auto now = Clock::now();
  const bool sync_due = opt_.sync == SyncPolicy::always ||
                        (opt_.sync == SyncPolicy::interval && now - d.last_sync >= opt_.sync_interval);
  if (wrote && sync_due && d.writer.active()) {
    const std::uint64_t number = *d.writer.active();
    lk.unlock();
    Status s = d.writer.sync();
    lk.lock();
    d.last_sync = now;
    if (s.ok()) {
      ++d.syncs;
      d.unsynced.clear();
    } else {
      segment_closed(number, s);  // the writer has closed the file already
      release_segment(lk, number);
    }
  }
  // Every page numbered below written_end is now either synced or answered failed
  // (DiskState::failed, which durability() asks first).
  if (sync_always()) durable_seq_ = std::max(durable_seq_, written_end);
  // The receiver may have finished the active segment while we held the token (during a
  // rotation, say) and could not retire it then; nobody else would.
  retire_active_if_read(lk);
  (void)retry_removals(lk);
  d.writing = false;
  if (senders_waiting > 0) sender_cv.notify_all();
  if (receiver_waiting) receiver_cv.notify_one();
  return ok;
}

void Core::retire_active_if_read(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  if (!d.active_segment) return;
  const std::uint64_t number = *d.active_segment;
  auto it = d.segments.find(number);
  if (it == d.segments.end() || it->second.unread > 0 || it->second.max_end > commit_position()) return;
  if (keep_read_active(it->second.bytes)) return;
  retire_segment(number);
  remove_segment(lk, number);
}

bool Core::keep_read_active(std::uint64_t bytes) const noexcept {
  // Retiring a read active segment gives its bytes back at once, but the next page then
  // opens a new segment; when syncing (interval, always) a new segment costs a directory
  // fsync, which with a receiver that keeps up would come once per group commit. So then
  // it is kept until it holds a quarter of segment_bytes, or a sender waits for room.
  return opt_.sync != SyncPolicy::none && bytes < opt_.segment_bytes / 4 && room_waiters == 0;
}

bool Core::reclaim_read_active(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  if (d.writing || !d.active_segment) return false;
  const std::uint64_t number = *d.active_segment;
  auto it = d.segments.find(number);
  if (it == d.segments.end() || it->second.unread > 0 || it->second.max_end > commit_position()) return false;
  const std::size_t before = d.segments.size();
  retire_idle_active(lk, number);
  return d.segments.size() < before;
}

void Core::retire_idle_active(std::unique_lock<std::mutex>& lk, std::uint64_t number) {
  DiskState& d = *d_;
  d.writing = true;
  retire_segment(number);
  remove_segment(lk, number);
  d.writing = false;
  if (senders_waiting > 0) sender_cv.notify_all();
}

void Core::retire_segment(std::uint64_t number) {
  DiskState& d = *d_;
  if (d.writer.active() == number) {
    d.writer.abandon();
    d.unsynced.clear();
  }
  if (d.active_segment == number) d.active_segment.reset();
  auto it = d.segments.find(number);
  if (it != d.segments.end()) it->second.active = false;
}

Status Core::write_all(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  while (!d.pending.empty() || d.writing) {
    if (!d.pending.empty() && !d.writing && d.pending.front().stage != SealedPage::Stage::compressing) {
      // One attempt now, whatever the back-off says: the caller asked for it.
      if (!append_pending(lk)) return write_error_;
      continue;
    }
    auto it = std::find_if(d.pending.begin(), d.pending.end(), claimable);
    if (it != d.pending.end()) {
      compress_sealed(lk, *it);
      continue;
    }
    ++senders_waiting;
    sender_cv.wait(lk);
    --senders_waiting;
  }
  return Status();
}

Core::Durability Core::durability(std::uint64_t seq, Status& why) {
  for (auto it = d_->failed.begin(); it != d_->failed.end(); ++it) {
    if (seq >= it->begin && seq < it->end) {
      why = it->why;
      if (--it->unanswered == 0) d_->failed.erase(it);
      return Durability::failed;
    }
  }
  if (seq < durable_seq_) return Durability::durable;
  return Durability::waiting;
}

std::uint64_t Core::commit_position() const noexcept {
  // Without manual_commit, reading is committing: a segment may go once it is read.
  return opt_.manual_commit ? commit_seq_ : ~std::uint64_t{0};
}

bool Core::drop_oldest_pending() {
  DiskState& d = *d_;
  if (d.writing || d.pending.empty() || d.pending.front().stage == SealedPage::Stage::compressing) return false;
  // Nothing is in flight (no writer): the front page is next after everything in
  // `unread`, so its discarded ref goes at the end of it, in order.
  SealedPage& p = d.pending.front();
  PageRef gone;
  gone.first_seq = p.first_seq;
  gone.count = p.count;
  gone.discarded = true;
  d.unread.push_back(gone);
  d.pending_bound -= p.bound;
  items_dropped += p.count;
  d.disk_out.fetch_add(p.count, std::memory_order_relaxed);
  d.pending.pop_front();
  if (d.pending.empty()) write_error_ = Status();  // nothing kept for a retry
  if (receiver_waiting) receiver_cv.notify_one();
  return true;
}

bool Core::drop_oldest_on_disk(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  // Room that costs no data first: delivered segments whose unlink failed before.
  if (retry_removals(lk)) return true;
  // One drop at a time: a second sender finding the disk full while a drop is under way
  // waits for it (remove_segment wakes it) rather than discarding another segment too.
  if (d.dropping) return false;
  auto live = std::find_if(d.segments.begin(), d.segments.end(), [](const auto& e) { return e.second.releasable(); });
  if (live == d.segments.end()) {
    // No segment to drop, and what waits is in RAM because the disk refuses it.
    return !write_error_.ok() && drop_oldest_pending();
  }
  const std::uint64_t number = live->first;
  SegmentState& seg = live->second;
  const bool take_token = seg.active;
  if (take_token) {
    if (d.writing) return false;  // the writer is appending to it; try again after
    d.writing = true;
    retire_segment(number);
  }
  // Its unread pages will be skipped by the receiver; the page it may be reading now was
  // taken out of `unread` already and is delivered (or, if the read fails because the file
  // is gone, counted as dropped then).
  std::uint64_t dropped = 0;
  for (PageRef& ref : d.unread) {
    if (ref.segment == number && !ref.discarded) {
      ref.discarded = true;
      dropped += ref.count - ref.skip;
    }
  }
  items_dropped += dropped;
  d.disk_out.fetch_add(dropped, std::memory_order_relaxed);
  d.dropping = true;
  remove_segment(lk, number);
  d.dropping = false;
  if (take_token) {
    d.writing = false;  // only ever give back a token we took
    if (senders_waiting > 0) sender_cv.notify_all();
  }
  return true;
}

void Core::segment_lost(std::unique_lock<std::mutex>& lk, std::uint64_t number, const Status& why) {
  DiskState& d = *d_;
  auto it = d.segments.find(number);
  if (it == d.segments.end() || it->second.removal != SegmentState::Removal::none) return;
  std::uint64_t pages = 0, items = 0;
  for (PageRef& ref : d.unread) {
    if (ref.segment == number && !ref.discarded) {
      ref.discarded = true;
      ++pages;
      items += ref.count - ref.skip;
    }
  }
  d.pages_unreadable += pages;
  d.items_unreadable += items;
  d.disk_out.fetch_add(items, std::memory_order_relaxed);
  add_damage((d.dir / format::segment_file_name(number)).native() + ": the file is gone (" + why.message() +
             "); its " + std::to_string(pages) + " other unread pages (" + std::to_string(items) +
             " items) are skipped");
  if (it->second.active) {
    if (!d.writing) {
      retire_segment(number);
    } else {
      d.retire_requested = number;  // the writer leaves it before its next page
    }
  }
  it->second.unread = 0;
  // Unlinked as any segment done with: "not found" then takes it out of the budget, and
  // should the file be there after all (a transient fault said otherwise), it goes now
  // rather than stay uncounted.
  if (!it->second.active) remove_segment(lk, number);
}

// ---------------------------------------------------------------------------------------
// Read path (receiver).

bool Core::may_read_from_ram() const noexcept {
  // A page taken from RAM never reaches a file: not allowed when senders wait for it to be
  // synced (always), nor when a crash must not lose what was received but not committed.
  return opt_.sync != SyncPolicy::always && !opt_.manual_commit;
}

Status Core::load_page(const Wait& wait) {
  DiskState& d = *d_;
  OpenSegment closing;  // a descriptor to close once the lock is released (declared first)
  std::unique_lock lk(mu);
  // Waits on receiver_cv until `until` or the caller's deadline. False when the caller
  // may not wait that long (it then returns).
  auto wait_receiver = [&](Clock::time_point until) {
    if (wait.kind == Wait::never) return false;
    if (wait.kind == Wait::until) {
      if (Clock::now() >= wait.deadline) return false;
      until = std::min(until, wait.deadline);
    }
    receiver_waiting = true;
    if (until == Clock::time_point::max()) {
      receiver_cv.wait(lk);
    } else {
      receiver_cv.wait_until(lk, until);
    }
    receiver_waiting = false;
    return true;
  };
  auto give_up = [&](const Status& why) {
    if (!why.ok()) return why;
    if (wait.kind == Wait::never) return Status(Errc::empty, "");
    return Status(Errc::timeout, "the next page was not ready before the deadline");
  };
  for (;;) {
    if (!d.unread.empty()) {
      PageRef ref = d.unread.front();
      if (ref.discarded) {
        d.unread.pop_front();
        page_due_ = false;
        read_left_ = 0;
        read_from_file_ = false;
        read_attempts_ = 0;
        deliver_seq_ = std::max(deliver_seq_, ref.first_seq + ref.count);
        return Status();
      }
      if (read_attempts_ > 0 && Clock::now() < read_retry_at_) {
        // The last read of this page failed: try again once the pause is over.
        if (!wait_receiver(read_retry_at_)) return give_up(read_error_);
        continue;
      }
      d.unread.pop_front();
      OpenSegment file = std::move(d.read_file);
      lk.unlock();
      Status s = d.reader.read(ref, file, read_raw_);
      lk.lock();
      auto seg = d.segments.find(ref.segment);
      const bool present = seg != d.segments.end() && seg->second.removal == SegmentState::Removal::none;
      if (present) {
        d.read_file = std::move(file);
      } else {
        closing = std::move(file);  // its segment went meanwhile: closed once unlocked
      }
      if (s.code() == Errc::io_error || s.code() == Errc::not_found) {
        if (!present) {
          // Dropped (drop_oldest) while we were reading it.
          const std::uint64_t lost = ref.count - ref.skip;
          items_dropped += lost;
          d.disk_out.fetch_add(lost, std::memory_order_relaxed);
          page_due_ = false;
          read_attempts_ = 0;
          deliver_seq_ = std::max(deliver_seq_, ref.first_seq + ref.count);
          return Status();
        }
        ++d.read_errors;
        read_error_ = s;
        if (++read_attempts_ < kReadAttempts) {
          d.unread.push_front(ref);  // retried after a pause, by this call or the next
          read_retry_at_ = Clock::now() + kReadPauses[read_attempts_ - 1];
          continue;
        }
        // Unreadable: skipped and counted, never returned; the receiver moves on.
        read_attempts_ = 0;
        const std::uint64_t lost = ref.count - ref.skip;
        ++d.pages_unreadable;
        d.items_unreadable += lost;
        d.disk_out.fetch_add(lost, std::memory_order_relaxed);
        add_damage(s.message() + " (page at offset " + std::to_string(ref.offset) + ", " + std::to_string(lost) +
                   " items): unreadable after " + std::to_string(kReadAttempts) + " attempts, skipped");
        if (s.code() == Errc::not_found) segment_lost(lk, ref.segment, s);
        page_due_ = false;
        read_from_file_ = true;
        read_segment_ = ref.segment;
        read_left_ = 0;
        deliver_seq_ = std::max(deliver_seq_, ref.first_seq + ref.count);
        lk.unlock();
        finish_page();
        return Status();
      }
      read_attempts_ = 0;
      page_due_ = false;
      read_from_file_ = true;
      read_segment_ = ref.segment;
      read_first_seq_ = ref.first_seq;
      read_count_ = ref.count;
      read_pos_ = 0;
      read_index_ = 0;
      if (!s.ok()) {
        // Damaged since it was written or recovered: skipped and counted, never returned.
        const std::uint64_t lost = ref.count - ref.skip;
        d.disk_out.fetch_add(lost, std::memory_order_relaxed);
        d.corrupt_items.fetch_add(lost, std::memory_order_relaxed);
        ++d.corrupt_pages;
        add_damage(s.message() + "; " + std::to_string(lost) + " items skipped");
        lk.unlock();
        deliver_seq_ = std::max(deliver_seq_, ref.first_seq + ref.count);
        read_left_ = 0;
        finish_page();
        return Status();
      }
      lk.unlock();
      for (std::uint32_t i = 0; i < ref.skip; ++i) {
        read_pos_ += format::kItemPrefixSize + format::get_u32(read_raw_.data() + read_pos_);
        ++read_index_;
      }
      read_left_ = ref.count - ref.skip;
      deliver_seq_ = std::max(deliver_seq_, ref.first_seq + ref.skip);
      return Status();
    }
    if (!d.in_flight && !d.pending.empty() && d.pending.front().stage != SealedPage::Stage::compressing &&
        may_read_from_ram()) {
      // Not written yet: read it straight from RAM, no disk round trip.
      SealedPage p = std::move(d.pending.front());
      d.pending.pop_front();
      d.pending_bound -= p.bound;
      // The pages a failed write kept are delivered: nothing is left to retry.
      if (d.pending.empty()) write_error_ = Status();
      if (senders_waiting > 0) sender_cv.notify_all();
      lk.unlock();
      page_due_ = false;
      read_raw_ = std::move(p.raw);
      read_from_file_ = false;
      read_first_seq_ = p.first_seq;
      read_count_ = p.count;
      read_pos_ = 0;
      read_index_ = 0;
      read_left_ = p.count;
      deliver_seq_ = std::max(deliver_seq_, p.first_seq);
      return Status();
    }
    if (!d.in_flight && !d.pending.empty()) {
      // The page must reach its file first (or its compression finish): help.
      const bool attempt = !d.writing && d.pending.front().stage != SealedPage::Stage::compressing &&
                           (write_error_.ok() || Clock::now() >= write_retry_at_);
      const bool progress = write_sealed(lk);
      // A write this call made failed: the caller hears why (io_error), and the page stays
      // in RAM to be written again after the back-off. (Under always a failed page is
      // discarded and answered to its senders: the receiver skips it.)
      if (attempt && !write_error_.ok() && !sync_always()) return write_error_;
      if (progress) continue;
    }
    if (d.in_flight || !d.pending.empty()) {
      // Someone else is writing (or compressing) it, or a retry is not yet due.
      const Status why = d.writing || d.in_flight ? Status() : write_error_;
      if (!wait_receiver(why.ok() ? Clock::time_point::max() : next_retry())) return give_up(why);
      continue;
    }
    page_due_ = false;
    return Status(Errc::corrupt, "internal error: a Disk marker without a page");
  }
}

Status Core::next_disk_item(std::string_view& out, bool& got, const Wait& wait) {
  got = false;
  for (;;) {
    if (read_left_ > 0) {
      const std::uint32_t len = format::get_u32(read_raw_.data() + read_pos_);
      out = std::string_view(read_raw_).substr(read_pos_ + format::kItemPrefixSize, len);
      read_pos_ += format::kItemPrefixSize + len;
      --read_left_;
      deliver_seq_ = read_first_seq_ + read_index_ + 1;
      ++read_index_;
      d_->disk_out.fetch_add(1, std::memory_order_relaxed);
      got = true;
      if (read_left_ == 0) finish_page();  // `out` stays valid: read_raw_ is untouched
      return Status();
    }
    if (!page_due_) return Status();
    if (Status s = load_page(wait); !s.ok()) return s;
  }
}

void Core::finish_page() {
  if (!read_from_file_) return;  // read from RAM: nothing on disk to release
  read_from_file_ = false;
  DiskState& d = *d_;
  std::unique_lock lk(mu);
  auto it = d.segments.find(read_segment_);
  if (it == d.segments.end() || !it->second.releasable()) return;
  if (it->second.unread > 0 && --it->second.unread > 0) return;
  if (it->second.max_end > commit_position()) return;  // commit() releases it
  release_segment(lk, read_segment_);
  (void)retry_removals(lk);
  if (!opt_.manual_commit) {
    // Record how far delivery got: after a crash, the items of a deleted segment are then
    // known delivered rather than missing, and those of one kept for more appends are not
    // delivered again. Advisory: not synced, and a failure only means a later restart
    // reports a gap that is not a loss, or redelivers.
    const std::uint64_t end = next_seq;
    lk.unlock();
    (void)write_cursor(deliver_seq_, end, false);
  }
}

void Core::release_segment(std::unique_lock<std::mutex>& lk, std::uint64_t number) {
  DiskState& d = *d_;
  auto it = d.segments.find(number);
  // Checked here, not by the caller: a caller releasing several segments drops the lock
  // for each unlink, and meanwhile the writer may append to one of the others.
  if (it == d.segments.end() || !it->second.releasable() || it->second.unread > 0 ||
      it->second.max_end > commit_position())
    return;
  if (!it->second.active) {
    remove_segment(lk, number);
    return;
  }
  // Everything written to the active segment is read. Retire it now, if the writer is not
  // using it, so its space comes back; the next page starts a new segment.
  if (d.writing) return;  // the writer is appending to it: it will be read, and retired then
  if (keep_read_active(it->second.bytes)) return;  // kept for more appends
  retire_idle_active(lk, number);
}

// received_ is written by the receiver alone (stats() reads it from any thread), so a
// relaxed load and store suffice: no read-modify-write on the receive path.
void Core::delivered_memory_item() noexcept {
  ++deliver_seq_;
  received_.store(received_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void Core::delivered_disk_item() noexcept {
  received_.store(received_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void Core::corrupt_item() noexcept { d_->corrupt_items.fetch_add(1, std::memory_order_relaxed); }

void Core::skip_dropped_memory_items(std::uint64_t n) noexcept { deliver_seq_ += n; }

void Core::begin_held(std::uint64_t footprint) {
  // deliver_seq_ is the number of the item about to be handed out.
  held_footprints_.push_back(footprint);
  if (held_.empty() || held_.back().first_seq + held_.back().count != deliver_seq_ ||
      held_.back().raw.size() >= opt_.page_bytes) {
    held_.push_back(RawPage{deliver_seq_, 0, {}});
  }
  held_.back().raw.append(format::kItemPrefixSize, '\0');
  held_mark_ = held_.back().raw.size();
}

void Core::end_held() {
  RawPage& p = held_.back();
  format::put_u32(p.raw.data() + held_mark_ - format::kItemPrefixSize,
                  static_cast<std::uint32_t>(p.raw.size() - held_mark_));
  ++p.count;
}

// ---------------------------------------------------------------------------------------
// Commit and shutdown.

Status Core::write_cursor(std::uint64_t position, std::uint64_t end, bool durable) {
  DiskState& d = *d_;
  // The durable position replaces CURSOR; the advisory one goes to a file of its own, so
  // that an unsynced replacement (which a power loss may leave empty) never stands where a
  // durable commit did.
  const auto tmp = d.dir / (durable ? format::kCursorTempName : format::kReadCursorTempName);
  const auto cur = d.dir / (durable ? format::kCursorFileName : format::kReadCursorFileName);
  auto f = d.fs->open(tmp, OpenMode::truncate);
  if (!f.ok()) return f.status();
  const std::string bytes = format::encode_cursor(position, end);
  Status s = (*f)->append(bytes.data(), bytes.size());
  if (s.ok() && durable) s = (*f)->sync();
  f->reset();
  if (s.ok()) s = d.fs->rename(tmp, cur);
  if (s.ok() && durable) s = d.fs->sync_directory(d.dir);  // the rename itself must survive
  return s;
}

std::uint64_t Core::release_held(std::uint64_t position) {
  // held_ holds its items in order of sequence number, and held_footprints_ one footprint
  // per item in the same order: the first `items` of both go.
  std::size_t items = 0;
  std::size_t pages = 0;
  for (RawPage& p : held_) {
    if (p.first_seq >= position) break;
    if (p.first_seq + p.count <= position) {
      items += p.count;
      ++pages;
      continue;
    }
    // Partly below the position: its first items go, the rest stay held.
    const auto n = static_cast<std::uint32_t>(position - p.first_seq);
    format::ItemCursor cut(p.raw);  // the framing's one reader; held pages are ours, well formed
    for (std::uint32_t i = 0; i < n; ++i) (void)cut.next();
    p.raw.erase(0, cut.offset());
    p.first_seq += n;
    p.count -= n;
    items += n;
    break;
  }
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(pages));
  std::uint64_t released = 0;
  for (std::size_t i = 0; i < items; ++i) released += held_footprints_[i];
  held_footprints_.erase(held_footprints_.begin(), held_footprints_.begin() + static_cast<std::ptrdiff_t>(items));
  return released;
}

Status Core::commit(std::uint64_t position) {
  if (position > deliver_seq_)
    return Status(Errc::invalid_argument, "commit position " + std::to_string(position) +
                                              " is beyond the receiver's position " + std::to_string(deliver_seq_) +
                                              ": only items handed out can be committed");
  // Already committed: nothing to do (commit_seq_ is written by the receiver alone).
  if (position < commit_seq_) return Status();
  std::uint64_t end = 0;
  {
    std::lock_guard lk(mu);
    end = next_seq;
  }
  if (Status s = write_cursor(position, end, true); !s.ok()) return s;
  // Memory items handed out before the position are done: their encodings and their
  // charge against the budget go. Those at or after it stay held.
  const std::uint64_t released = release_held(position);
  std::unique_lock lk(mu);
  ++d_->commits;
  commit_seq_ = std::max(commit_seq_, position);
  memory_bytes -= released;
  if (senders_waiting > 0) sender_cv.notify_all();
  // Segments read to the end and now wholly committed can go.
  std::vector<std::uint64_t> done;
  for (const auto& [number, seg] : d_->segments)
    if (seg.releasable() && seg.unread == 0 && seg.max_end <= commit_seq_) done.push_back(number);
  for (std::uint64_t number : done) release_segment(lk, number);
  (void)retry_removals(lk);
  return Status();
}

Status Core::persist(std::vector<RawPage> memory_pages) {
  DiskState& d = *d_;
  Status first;
  auto keep = [&](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  {
    // An active segment read to the end and kept for more appends (keep_read_active) has
    // no more coming: it goes now, so a clean shutdown of a drained queue leaves no file.
    std::unique_lock lk(mu);
    (void)reclaim_read_active(lk);
    // Unlinks that failed get one more try, back-off or not.
    for (auto& [number, seg] : d.segments)
      if (seg.removal == SegmentState::Removal::failed) seg.retry_at = Clock::now();
    (void)retry_removals(lk);
    d.read_file = OpenSegment();
  }
  // The rest of a page the receiver took from RAM exists nowhere else.
  if (!read_from_file_ && read_left_ > 0) {
    memory_pages.insert(memory_pages.begin(),
                        RawPage{read_first_seq_ + read_index_, read_left_, read_raw_.substr(read_pos_)});
  }
  // Items handed out but not committed come back after the restart (manual_commit).
  for (RawPage& p : held_) memory_pages.push_back(std::move(p));
  held_.clear();
  held_footprints_.clear();
  // Sealed pages a failed write left behind get one more attempt.
  for (SealedPage& p : d.pending) memory_pages.push_back(RawPage{p.first_seq, p.count, std::move(p.raw)});
  d.pending.clear();
  // Nobody is left to tell of a failure now: a write the disk refuses is tried again a few
  // times (a transient fault passes), and once one has failed every attempt the disk is
  // taken for dead and the rest is tried once each.
  bool disk_dead = false;
  auto attempt = [&](const auto& write) {
    for (std::size_t i = 0;; ++i) {
      Status s = write();
      if (s.ok() || disk_dead) return s;
      if (i == std::size(kShutdownPauses)) {
        disk_dead = true;
        return s;
      }
      std::this_thread::sleep_for(kShutdownPauses[i]);
    }
  };
  for (const RawPage& p : memory_pages) {
    if (p.count == 0) continue;
    keep(attempt([&] {
      AppendOutcome r = d.writer.append(p.first_seq, p.count, p.raw);
      keep(r.closed_sync);
      return r.status;
    }));
  }
  keep(d.writer.close());
  // Every item numbered below the cursor was handed out (and, with manual_commit,
  // committed). Replaced atomically.
  keep(attempt([&] { return write_cursor(opt_.manual_commit ? commit_seq_ : deliver_seq_, next_seq, true); }));
  return first;
}

std::vector<std::string> Core::damage_report() {
  std::lock_guard lk(mu);
  return d_->damage;
}

Stats Core::stats() {
  std::lock_guard lk(mu);
  const DiskState& d = *d_;
  Stats s;
  s.memory_items = memory_items;
  s.memory_bytes = memory_bytes;
  const std::uint64_t out = d.disk_out.load(std::memory_order_relaxed);
  s.disk_items = d.disk_in > out ? d.disk_in - out : 0;
  s.disk_bytes = d.disk_bytes;
  s.segments = d.segments.size();
  s.items_sent = items_sent;
  s.items_received = received_.load(std::memory_order_relaxed);
  s.items_spilled = d.spilled;
  s.items_recovered = d.recovered;
  s.pages_written = d.pages_written;
  s.pages_compressed_ahead = d.pages_compressed_ahead;
  s.bytes_uncompressed = d.bytes_uncompressed;
  s.bytes_compressed = d.bytes_compressed;
  s.syncs = d.syncs;
  s.commits = d.commits;
  s.items_dropped = items_dropped;
  s.corrupt_pages = d.corrupt_pages;
  s.corrupt_items = d.corrupt_items.load(std::memory_order_relaxed);
  s.torn_bytes = d.torn_bytes;
  s.items_missing = d.missing;
  s.pages_unreadable = d.pages_unreadable;
  s.items_unreadable = d.items_unreadable;
  s.write_errors = d.write_errors;
  s.sync_errors = d.sync_errors;
  s.read_errors = d.read_errors;
  s.remove_errors = d.remove_errors;
  return s;
}

}  // namespace hopper::detail
