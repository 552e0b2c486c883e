// Core: open, shutdown and stats; the handles, the memory side's messages, and the lock
// windows, waits and wake-ups of every flow. The rules themselves live in the rooms:
// open_page (sealing, the disk budget), spill_pipeline (sealed pages, the writer token,
// compress-ahead, group commit), segment_set (segment files and their removal) and
// read_path (the receiver's page and delivery position). See docs/architecture.md.
#include <hopper/detail/core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include <hopper/file_system.hpp>

#include "engine/core_rooms.hpp"
#include "engine/read_path.hpp"
#include "storage/cursor_file.hpp"
#include "storage/format.hpp"
#include "storage/recovery.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {

static_assert(kMaxItemEncoding == format::kMaxRawPage - format::kItemPrefixSize,
              "the largest item is what one page can frame");

namespace {
// Lines of damage kept for damage_report(); the counters in Stats keep counting past it.
constexpr std::size_t kMaxDamageLines = 1000;
// At shutdown, the pauses between attempts at a write the disk refused (four attempts).
constexpr std::chrono::milliseconds kShutdownPauses[] = {std::chrono::milliseconds(1), std::chrono::milliseconds(10),
                                                         std::chrono::milliseconds(50)};

// At shutdown nobody is left to tell of a failure: a write the disk refuses is tried again
// a few times (a transient fault passes), and once one has failed every attempt the disk is
// taken for dead and the rest is tried once each. Whether attempt `i`, which ended with
// `s`, is to be followed by another (after a pause).
bool shutdown_retry(std::size_t i, const Status& s, bool& disk_dead) {
  if (s.ok() || disk_dead) return false;
  if (i == std::size(kShutdownPauses)) {
    disk_dead = true;
    return false;
  }
  std::this_thread::sleep_for(kShutdownPauses[i]);
  return true;
}

void keep_first(Status& first, const Status& s) {
  if (first.ok() && !s.ok()) first = s;
}
}  // namespace

namespace {
// now_ms()'s anchor: the wall clock at open minus the monotonic clock then.
std::uint64_t clock_offset_at_open() {
  timespec mono{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &mono);
  const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  const std::uint64_t mono_ms =
      static_cast<std::uint64_t>(mono.tv_sec) * 1000u + static_cast<std::uint64_t>(mono.tv_nsec) / 1000000u;
  // A wall clock before 1970 (or before the monotonic clock's count) is taken as the
  // monotonic clock alone: times stay ordered, only their meaning across restarts suffers.
  return wall > 0 && static_cast<std::uint64_t>(wall) > mono_ms ? static_cast<std::uint64_t>(wall) - mono_ms : 0;
}
}  // namespace

Core::Core(Options options)
    : opt_(std::move(options)),
      max_age_ms_(opt_.max_age.count() > 0 ? static_cast<std::uint64_t>(opt_.max_age.count()) : 0),
      clock_offset_ms_(clock_offset_at_open()) {}

Core::~Core() {
  stop_helpers();
  if (const int fd = wait_fd_.load(std::memory_order_relaxed); fd >= 0) ::close(fd);
}

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
  core->fs_ = fs;
  core->lock_ = std::move(*lock);
  core->writer_ = std::make_unique<SpillWriter>(fs, options.directory, options.segment_bytes, options.compression_level,
                                                rec->next_segment, options.sync != SyncPolicy::none);
  core->read_ = std::make_unique<ReadPath>(fs, options.directory, options, rec->cursor);
  {
    MutexLock lk(core->mu_);  // nobody else can see it yet; the analysis wants it all the same
    core->rooms_ = std::make_unique<Rooms>(options, rec->next_seq);
    Rooms& r = *core->rooms_;
    for (const auto& s : rec->segments) r.segments.add(s.number, s.bytes, s.pages);
    // Delivered, but their unlink failed at open: counted, and retried from now on.
    for (const auto& s : rec->stale) r.segments.add_undeleted(s.number, s.bytes, Clock::now());
    core->removal_pending_ = r.segments.removal_pending();
    // Left in place unread: counted against the budget, neither delivered nor removed.
    for (const auto& s : rec->held) r.segments.add_held(s.number, s.bytes);
    // Times written in the future of this open's clock (the wall clock was set back since,
    // or the files came from another machine) would keep their items from expiring until the
    // clock caught up: such a page is moved back so that its newest item is as old as this
    // open, its items keeping their spacing. Past times are kept: a clock set forward since
    // makes items older (docs/architecture.md, "Age").
    const std::uint64_t opened_ms = core->now_ms();
    for (auto p : rec->pages) {
      if (p.ref.version != format::kVersion1 && p.ref.newest_ms > opened_ms) {
        const std::uint64_t shift = p.ref.newest_ms - opened_ms;
        p.ref.base_ms = p.ref.base_ms > shift ? p.ref.base_ms - shift : 1;
        p.ref.newest_ms = opened_ms;
      }
      r.pipeline.add_recovered(p);
      r.recovered_counts.push_back(p.ref.count - p.skip);
      r.segments.note_end(p.ref.segment, p.ref.first_seq + p.ref.count);
    }
    r.segments.commit(rec->cursor);
    r.segments.count_remove_errors(rec->remove_errors);
    r.recovered = r.disk_in = rec->items;
    r.damage = std::move(rec->problems);
    r.corrupt_pages = rec->corrupt_pages;
    r.torn_bytes = rec->torn_bytes;
    r.missing = rec->missing;
    r.read_errors = rec->read_errors;
    core->next_seq_ = rec->next_seq;
  }
  // Compression helpers start once the queue is whole (Options::compression_threads).
  if (Status s = core->start_helpers(); !s.ok()) return s;
  return core;
}

std::vector<std::uint64_t> Core::recovered_pages() const { return rooms_->recovered_counts; }

void Core::add_damage(std::string line) {
  if (rooms_->damage.size() < kMaxDamageLines) rooms_->damage.push_back(std::move(line));
}

// ---- handles ------------------------------------------------------------------------------

void Core::add_sender() {
  MutexLock lk(mu_);
  ++senders_;
}

void Core::drop_sender() {
  MutexLock lk(mu_);
  HOPPER_ASSERT(senders_ > 0, "a sender dropped that was never added");
  if (--senders_ == 0) wake_receiver_locked();  // closed is news to a receiver too
}

void Core::drop_receiver() {
  MutexLock lk(mu_);
  receiver_alive_ = false;
  sender_cv_.notify_all();
}

// ---- refusals ----------------------------------------------------------------------------

Status Core::refuse_encoding(std::uint64_t bytes) const {
  return Status(Errc::too_large, "item encodes to " + std::to_string(bytes) + " bytes; a page holds at most one item of " +
                                     std::to_string(kMaxItemEncoding) + " bytes");
}

Status Core::refuse_footprint(std::uint64_t fp) const {
  return Status(Errc::too_large, "item footprint of " + std::to_string(fp) +
                                     " bytes exceeds Options::max_memory_bytes (" +
                                     std::to_string(opt_.max_memory_bytes) + ") and spilling is off");
}

Status Core::refuse_for_segment(std::uint64_t fp) const {
  return Status(Errc::too_large, "item encodes to more than fits in one segment (Options::segment_bytes = " +
                                     std::to_string(opt_.segment_bytes) + ") and its footprint of " +
                                     std::to_string(fp) + " bytes " +
                                     (sync_always() ? std::string("may not wait in memory (SyncPolicy::always)")
                                                    : "exceeds Options::max_memory_bytes (" +
                                                          std::to_string(opt_.max_memory_bytes) + ")"));
}

Status Core::refuse_full() const {
  const Status& refusal = rooms_->pipeline.write_error();
  return Status(Errc::full, refusal.ok() ? std::string("memory and disk budgets are full")
                                         : "memory is full and the disk refuses writes (" + refusal.message() +
                                               "); pages waiting for a retry fill the RAM allowed them");
}

// ---- the open page -----------------------------------------------------------------------

std::string& Core::begin_page_item() { return rooms_->page.begin_item(); }

void Core::cancel_page_item() { rooms_->page.cancel_item(); }

SpillVerdict Core::end_page_item(std::uint64_t& seq, std::uint64_t at_ms) {
  Rooms& r = *rooms_;
  const SpillVerdict v =
      r.page.end_item(next_seq_, at_ms, r.pipeline.full(), r.segments.bytes() + r.pipeline.pending_bound());
  if (v != SpillVerdict::accepted) return v;
  // Its own number, taken now: the caller may release the lock, and other senders' items
  // are numbered meanwhile.
  seq = next_seq_++;
  ++r.spilled;
  ++r.disk_in;
  ++items_sent_;
  wake_receiver_unless_always();
  return v;
}

bool Core::page_open() const { return rooms_->page.open(); }
bool Core::page_full() const { return rooms_->page.full(); }

std::uint64_t Core::seal() {
  if (!rooms_->page.open()) return 0;
  RawPage p = rooms_->page.seal();
  const std::uint64_t count = p.count;
  rooms_->pipeline.push(std::move(p));
  last_group_ = count;
  return count;
}

bool Core::group_forming() const { return rooms_->page.count() < last_group_; }

void Core::marker_pushed() {
  ++markers_;
  wake_receiver_unless_always();
}

// ---- waiting --------------------------------------------------------------------------------

Clock::time_point Core::next_retry() const {
  return std::min(rooms_->pipeline.next_retry(), rooms_->segments.next_retry());
}

bool Core::wait_sender(const Wait& wait, bool for_room) {
  ++senders_waiting_;
  if (for_room) ++room_waiters_;
  const Clock::time_point retry = next_retry();
  const Clock::time_point until = wait.kind == Wait::until ? std::min(wait.deadline, retry) : retry;
  if (until == Clock::time_point::max()) {
    sender_cv_.wait(mu_);
  } else {
    (void)sender_cv_.wait_until(mu_, until);
  }
  if (for_room) --room_waiters_;
  --senders_waiting_;
  return wait.kind == Wait::until && Clock::now() >= wait.deadline;
}

bool Core::wait_receiver(const Wait& wait) {
  receiver_waiting_ = true;
  bool timed_out = false;
  if (wait.kind == Wait::forever) {
    receiver_cv_.wait(mu_);
  } else {
    timed_out = receiver_cv_.wait_until(mu_, wait.deadline);
  }
  receiver_waiting_ = false;
  return timed_out;
}

bool Core::wait_for_page(const Wait& wait, Clock::time_point until) {
  if (wait.kind == Wait::never) {
    arm_wait_handle();  // the page being written wakes it when it is there
    return false;
  }
  if (wait.kind == Wait::until) {
    if (Clock::now() >= wait.deadline) return false;
    until = std::min(until, wait.deadline);
  }
  receiver_waiting_ = true;
  if (until == Clock::time_point::max()) {
    receiver_cv_.wait(mu_);
  } else {
    (void)receiver_cv_.wait_until(mu_, until);
  }
  receiver_waiting_ = false;
  return true;
}

// ---- the wait handle ----------------------------------------------------------------------

Result<int> Core::wait_handle() {
  MutexLock lk(mu_);
  if (const int fd = wait_fd_.load(std::memory_order_relaxed); fd >= 0) return fd;
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Status::IoError("eventfd for the receiver's wait handle", opt_.directory.string(), errno);
  // Readable at first: whatever is queued now was never announced on it.
  const std::uint64_t one = 1;
  (void)!::write(fd, &one, sizeof one);
  wait_fd_.store(fd, std::memory_order_release);
  return fd;
}

void Core::signal_wait_handle() noexcept {
  const std::uint64_t one = 1;
  // Cannot fail but for a counter at 2^64-2, which one write per arming never reaches.
  (void)!::write(wait_fd_.load(std::memory_order_acquire), &one, sizeof one);
}

void Core::arm_wait_handle_now() {
  std::uint64_t count = 0;
  (void)!::read(wait_fd_.load(std::memory_order_relaxed), &count, sizeof count);  // EAGAIN: already empty
  handle_armed_ = true;
}

// ---- stats ------------------------------------------------------------------------------------

std::vector<std::string> Core::damage_report() const {
  MutexLock lk(mu_);
  return rooms_->damage;
}

Stats Core::stats(std::uint64_t memory_oldest_ms, const LaneFigures& lane) const {
  const std::uint64_t now = now_ms();
  const Rooms& r = *rooms_;
  Stats s;
  // The oldest item waiting: the one the receiver reads from a page, else the next page in
  // the chain, else memory's oldest. Items are accepted in number order, so the first
  // known of these is the oldest; 0 (unknown) for version 1 pages.
  std::uint64_t oldest = reading_ms_.load(std::memory_order_relaxed);
  if (oldest == 0) oldest = r.pipeline.oldest_waiting_ms();
  if (oldest == 0) oldest = r.page.base_ms();
  if (oldest == 0 || (memory_oldest_ms != 0 && memory_oldest_ms < oldest)) oldest = memory_oldest_ms;
  s.oldest_item_age_ms = oldest != 0 && now > oldest ? now - oldest : 0;
  s.memory_capacity_bytes = opt_.max_memory_bytes;
  s.disk_capacity_bytes = opt_.max_disk_bytes;
  s.items_expired = expired_items_.load(std::memory_order_relaxed);
  s.bytes_expired = expired_bytes_.load(std::memory_order_relaxed);
  s.memory_items = memory_items_ + lane.items;
  s.memory_bytes = memory_bytes_ + lane.bytes;
  const std::uint64_t out = disk_out_.load(std::memory_order_relaxed);
  s.disk_items = r.disk_in > out ? r.disk_in - out : 0;
  s.disk_bytes = r.segments.physical_bytes();
  s.segments = r.segments.count();
  s.items_sent = items_sent_ + lane.sent;
  s.items_received = lane.received ? *lane.received : received_.load(std::memory_order_relaxed);
  s.items_spilled = r.spilled;
  s.items_recovered = r.recovered;
  s.pages_written = r.pipeline.pages_written();
  s.pages_compressed_ahead = r.pipeline.pages_compressed_ahead();
  s.bytes_uncompressed = r.pipeline.bytes_uncompressed();
  s.bytes_compressed = r.pipeline.bytes_compressed();
  s.syncs = r.pipeline.syncs();
  s.commits = r.commits;
  s.items_dropped = items_dropped_;
  s.corrupt_pages = r.corrupt_pages;
  s.corrupt_items = corrupt_items_.load(std::memory_order_relaxed);
  s.torn_bytes = r.torn_bytes;
  s.items_missing = r.missing;
  s.pages_unreadable = r.pages_unreadable;
  s.items_unreadable = r.items_unreadable;
  s.write_errors = r.pipeline.write_errors();
  s.sync_errors = r.pipeline.sync_errors();
  s.read_errors = r.read_errors;
  s.remove_errors = r.segments.remove_errors();
  return s;
}

// ---- shutdown ---------------------------------------------------------------------------------

std::string& Core::begin_shutdown_item(std::uint64_t seq, std::uint64_t at_ms) {
  return read_->begin_shutdown_item(seq, at_ms);
}
void Core::end_shutdown_item(std::uint64_t at_ms) { read_->end_shutdown_item(at_ms); }

Status Core::persist() {
  Status first;
  std::vector<RawPage> pages;
  // The rest of a page the receiver took from RAM exists nowhere else.
  if (std::optional<RawPage> rest = read_->unread_ram_items()) pages.push_back(std::move(*rest));
  for (RawPage& p : read_->take_shutdown_pages()) pages.push_back(std::move(p));
  // Items handed out but not committed come back after the restart (manual_commit).
  for (RawPage& p : read_->take_held()) pages.push_back(std::move(p));
  std::uint64_t cursor = 0, end = 0;
  {
    MutexLock lk(mu_);
    // An active segment read to the end and kept for more appends has no more coming: it
    // goes now, so a clean shutdown of a drained queue leaves no file.
    (void)reclaim_read_active();
    // Unlinks that failed get one more try, back-off or not.
    rooms_->segments.retry_all_at(Clock::now());
    (void)retry_removals();
    rooms_->segments.close_read_file();
    // Sealed pages a failed write left behind get one more attempt.
    for (RawPage& p : rooms_->pipeline.take_pending()) pages.push_back(std::move(p));
    // Every item numbered below the cursor was handed out (and, with manual_commit,
    // committed).
    cursor = opt_.manual_commit ? rooms_->segments.committed() : read_->position();
    end = next_seq_;
    if (!take_writer_token()) {
      HOPPER_ASSERT(false, "shutdown found the writer token taken");
      return Status(Errc::io_error, "internal error: a page was being written at shutdown");
    }
  }
  bool disk_dead = false;
  for (const RawPage& p : pages) {
    if (p.count == 0) continue;
    for (std::size_t i = 0;; ++i) {
      AppendOutcome r = writer_->append(p.items(), p.raw);
      keep_first(first, r.closed_sync);
      if (shutdown_retry(i, r.status, disk_dead)) continue;
      keep_first(first, r.status);
      break;
    }
  }
  keep_first(first, writer_->close());
  for (std::size_t i = 0;; ++i) {
    Status s = write_cursor(*fs_, opt_.directory, cursor, end, true);
    if (shutdown_retry(i, s, disk_dead)) continue;
    keep_first(first, s);
    break;
  }
  MutexLock lk(mu_);
  give_writer_token();
  return first;
}

}  // namespace hopper::detail

namespace hopper::detail {

[[noreturn]] void assertion_failed(const char* condition, const char* message, const char* file, int line) noexcept {
  std::fprintf(stderr, "%s:%d: hopper invariant broken: %s (%s)\n", file, line, message, condition);
  std::abort();
}

}  // namespace hopper::detail
