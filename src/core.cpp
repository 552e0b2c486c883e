// Core: budgets, the open page, the writer token, segment bookkeeping and the receiver's
// read path. See include/hopper/detail/core.hpp for the locking rules.
#include <hopper/detail/core.hpp>

#include <algorithm>
#include <deque>
#include <map>

#include <hopper/file_system.hpp>

#include "format.hpp"
#include "recovery.hpp"
#include "segment_reader.hpp"
#include "spill_writer.hpp"

namespace hopper::detail {

namespace {
// Sealed pages may wait for the writer, holding their raw bytes in RAM, up to this many;
// past it a spilling sender waits (or writes them itself). Bounds the spill path's memory
// to roughly (kMaxPending + 2) pages.
constexpr std::size_t kMaxPending = 4;
}  // namespace

struct SealedPage {
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::string raw;
  std::uint64_t bound = 0;  // what it may add to the disk once written
};

struct SegmentState {
  std::uint64_t bytes = 0;   // file size
  std::uint64_t unread = 0;  // pages in it the receiver has not finished
  bool active = false;       // the writer may still append to it
};

struct DiskState {
  DiskState(std::shared_ptr<FileSystem> f, const Options& o, std::uint64_t next_segment)
      : fs(std::move(f)),
        dir(o.directory),
        writer(fs, dir, o.segment_bytes, o.compression_level, next_segment),
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

  // [mu] Segment files present and their bytes.
  std::map<std::uint64_t, SegmentState> segments;
  std::uint64_t disk_bytes = 0;

  // [mu] Totals.
  std::uint64_t disk_in = 0;  // items that went into pages (spilled + recovered)
  std::uint64_t spilled = 0;
  std::uint64_t recovered = 0;
  std::uint64_t pages_written = 0;
  std::uint64_t bytes_uncompressed = 0;
  std::uint64_t bytes_compressed = 0;
  std::uint64_t corrupt_pages = 0;
  std::uint64_t torn_bytes = 0;
  std::uint64_t cursor_at_open = 0;
  std::vector<std::uint64_t> recovered_counts;

  // Items that left the disk side (handed out or skipped as damaged), and items that
  // failed validation. Written by the receiver, read by stats() for reporting only:
  // relaxed is enough, nothing is ordered by them.
  std::atomic<std::uint64_t> disk_out{0};
  std::atomic<std::uint64_t> corrupt_items{0};

  SpillWriter writer;    // [writer token]
  SegmentReader reader;  // [receiver]
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
  if (o.when_full != FullPolicy::block && o.when_full != FullPolicy::fail)
    return bad("Options::when_full is not a FullPolicy value");
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
  auto rec = recover(*fs, options.directory);
  if (!rec.ok()) return rec.status();

  std::unique_ptr<Core> core(new Core(options));
  core->d_ = std::make_unique<DiskState>(fs, options, rec->next_segment);
  DiskState& d = *core->d_;
  d.lock = std::move(*lock);
  for (const auto& s : rec->segments) {
    d.segments[s.number] = SegmentState{s.bytes, s.pages, false};
    d.disk_bytes += s.bytes;
  }
  for (const auto& p : rec->pages) {
    d.unread.push_back(p);
    d.recovered_counts.push_back(p.count - p.skip);
  }
  d.recovered = d.disk_in = rec->items;
  d.corrupt_pages = rec->corrupt_pages;
  d.torn_bytes = rec->torn_bytes;
  d.cursor_at_open = rec->cursor;
  core->next_seq = rec->next_seq;
  core->deliver_seq_ = rec->cursor;
  core->page_.reserve(options.page_bytes + 4096);
  return core;
}

std::vector<std::uint64_t> Core::recovered_pages() const { return d_->recovered_counts; }

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
  if (!spill_error_.ok()) {
    // Retry the disk once the pages a failed write left behind are gone (read back from
    // RAM by the receiver, or written by a later attempt).
    if (!d_->pending.empty() || d_->writing) return refuse(SpillVerdict::failed);
    spill_error_ = Status();
  }
  if (item - format::kItemPrefixSize > 0xffffffffull || SpillWriter::bound(item) > opt_.segment_bytes)
    return refuse(SpillVerdict::too_large);
  if (page_items_ > 0 && SpillWriter::bound(page_.size()) > opt_.segment_bytes)
    return refuse(SpillVerdict::need_seal);
  if (d_->pending.size() >= kMaxPending) return refuse(SpillVerdict::full);
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
// Removes a segment file the receiver has finished. Releases `lk` for the unlink; the
// bytes stay counted until the file is gone, so the budget is never overrun.
void remove_segment(DiskState& d, Status& spill_error, std::condition_variable& sender_cv,
                    int senders_waiting, std::unique_lock<std::mutex>& lk, std::uint64_t number) {
  auto it = d.segments.find(number);
  if (it == d.segments.end()) return;
  const std::uint64_t bytes = it->second.bytes;
  d.segments.erase(it);
  lk.unlock();
  Status s = d.fs->remove(d.dir / format::segment_file_name(number));
  lk.lock();
  if (!s.ok()) {
    // The file stays, and so do its bytes in the budget; a reopen removes it.
    spill_error = s;
    return;
  }
  d.disk_bytes -= bytes;
  if (senders_waiting > 0) sender_cv.notify_all();
}
}  // namespace

void Core::write_sealed(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  if (d.writing || d.pending.empty()) return;
  d.writing = true;
  while (!d.pending.empty()) {
    SealedPage p = std::move(d.pending.front());
    d.pending.pop_front();
    d.in_flight = true;
    lk.unlock();  // compression and the append run without the queue lock
    auto r = d.writer.append(p.first_seq, p.count, p.raw);
    lk.lock();
    d.in_flight = false;
    if (!r.ok()) {
      spill_error_ = r.status();
      d.pending.push_front(std::move(p));  // still ours, still in order: nothing is lost
      break;
    }
    d.pending_bound -= p.bound;
    const AppendedPage& a = *r;
    if (a.closed_segment) {
      auto it = d.segments.find(*a.closed_segment);
      if (it != d.segments.end()) {
        it->second.active = false;
        if (it->second.unread == 0) remove_segment(d, spill_error_, sender_cv, senders_waiting, lk, *a.closed_segment);
      }
    }
    SegmentState& seg = d.segments[a.segment];
    if (a.opened_segment) {
      seg.active = true;
      seg.bytes += a.segment_header_bytes;
      d.disk_bytes += a.segment_header_bytes;
    }
    seg.bytes += a.bytes;
    ++seg.unread;
    d.disk_bytes += a.bytes;
    d.unread.push_back(PageRef{a.segment, a.offset, a.bytes, p.first_seq, p.count, 0});
    ++d.pages_written;
    d.bytes_uncompressed += a.raw_bytes;
    d.bytes_compressed += a.bytes;
    if (receiver_waiting) receiver_cv.notify_one();
  }
  d.writing = false;
  if (senders_waiting > 0) sender_cv.notify_all();
}

Status Core::write_all(std::unique_lock<std::mutex>& lk) {
  DiskState& d = *d_;
  while (!d.pending.empty() || d.writing) {
    if (!d.writing) {
      write_sealed(lk);
      if (!spill_error_.ok()) return spill_error_;
      continue;
    }
    ++senders_waiting;
    sender_cv.wait(lk);
    --senders_waiting;
  }
  return spill_error_;
}

bool Core::writer_idle_with_work() const noexcept { return !d_->writing && !d_->pending.empty(); }

Status Core::load_page() {
  DiskState& d = *d_;
  std::unique_lock lk(mu);
  for (;;) {
    if (!d.unread.empty()) {
      PageRef ref = d.unread.front();
      d.unread.pop_front();
      lk.unlock();
      Status s = d.reader.read(ref, read_raw_);
      if (s.code() == Errc::io_error) {
        lk.lock();
        d.unread.push_front(ref);  // retried by the next recv
        return s;
      }
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
        lk.lock();
        ++d.corrupt_pages;
        lk.unlock();
        deliver_seq_ = std::max(deliver_seq_, ref.first_seq + ref.count);
        read_left_ = 0;
        finish_page();
        return Status();
      }
      for (std::uint32_t i = 0; i < ref.skip; ++i) {
        read_pos_ += format::kItemPrefixSize + format::get_u32(read_raw_.data() + read_pos_);
        ++read_index_;
      }
      read_left_ = ref.count - ref.skip;
      deliver_seq_ = std::max(deliver_seq_, ref.first_seq + ref.skip);
      return Status();
    }
    if (d.in_flight) {
      receiver_waiting = true;
      receiver_cv.wait(lk);
      receiver_waiting = false;
      continue;
    }
    if (!d.pending.empty()) {
      // Not written yet: read it straight from RAM, no disk round trip.
      SealedPage p = std::move(d.pending.front());
      d.pending.pop_front();
      d.pending_bound -= p.bound;
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
    page_due_ = false;
    return Status(Errc::corrupt, "internal error: a Disk marker without a page");
  }
}

Status Core::next_disk_item(std::string_view& out, bool& got) {
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
    if (Status s = load_page(); !s.ok()) return s;
  }
}

void Core::finish_page() {
  if (!read_from_file_) return;  // read from RAM: nothing on disk to release
  read_from_file_ = false;
  DiskState& d = *d_;
  std::unique_lock lk(mu);
  auto it = d.segments.find(read_segment_);
  if (it == d.segments.end() || --it->second.unread > 0) return;
  d.reader.forget(read_segment_);
  if (!it->second.active) {
    remove_segment(d, spill_error_, sender_cv, senders_waiting, lk, read_segment_);
    return;
  }
  // Everything written to the active segment is read. Retire it now, if the writer is not
  // using it, so its space comes back; the next page starts a new segment.
  if (d.writing) return;  // the writer is appending a page to it: it will be read, and retired then
  d.writing = true;
  d.writer.abandon();
  it->second.active = false;
  remove_segment(d, spill_error_, sender_cv, senders_waiting, lk, read_segment_);
  d.writing = false;
  if (senders_waiting > 0) sender_cv.notify_all();
}

void Core::delivered_memory_item() noexcept {
  ++deliver_seq_;
  received_.fetch_add(1, std::memory_order_relaxed);
}

void Core::delivered_disk_item() noexcept { received_.fetch_add(1, std::memory_order_relaxed); }

void Core::corrupt_item() noexcept {
  d_->corrupt_items.fetch_add(1, std::memory_order_relaxed);
}

Status Core::persist(std::vector<RawPage> memory_pages) {
  DiskState& d = *d_;
  Status first;
  auto keep = [&](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  // The rest of a page the receiver took from RAM exists nowhere else.
  if (!read_from_file_ && read_left_ > 0) {
    memory_pages.insert(memory_pages.begin(),
                        RawPage{read_first_seq_ + read_index_, read_left_, read_raw_.substr(read_pos_)});
  }
  // Sealed pages a failed write left behind get one more attempt.
  for (SealedPage& p : d.pending) memory_pages.push_back(RawPage{p.first_seq, p.count, std::move(p.raw)});
  d.pending.clear();
  for (const RawPage& p : memory_pages) {
    if (p.count == 0) continue;
    auto r = d.writer.append(p.first_seq, p.count, p.raw);
    keep(r.status());
  }
  keep(d.writer.close());
  // The cursor: every item numbered below deliver_seq_ was handed out. Replaced atomically.
  const auto tmp = d.dir / format::kCursorTempName;
  const auto cur = d.dir / format::kCursorFileName;
  if (auto f = d.fs->open(tmp, OpenMode::truncate); f.ok()) {
    const std::string bytes = format::encode_cursor(deliver_seq_);
    Status s = (*f)->append(bytes.data(), bytes.size());
    if (s.ok()) s = (*f)->sync();
    f->reset();
    if (s.ok()) s = d.fs->rename(tmp, cur);
    keep(s);
  } else {
    keep(f.status());
  }
  keep(d.fs->sync_directory(d.dir));
  return first;
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
  s.bytes_uncompressed = d.bytes_uncompressed;
  s.bytes_compressed = d.bytes_compressed;
  s.corrupt_pages = d.corrupt_pages;
  s.corrupt_items = d.corrupt_items.load(std::memory_order_relaxed);
  s.torn_bytes = d.torn_bytes;
  return s;
}

}  // namespace hopper::detail
