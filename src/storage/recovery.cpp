#include "storage/recovery.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>

#include "storage/cursor_file.hpp"
#include "storage/format.hpp"

namespace hopper::detail {
namespace {

// Attempts at reading one file at open before it counts as unreadable, and the pauses
// between them: a transient fault (a busy device, a retried I/O) gets a second chance,
// a dead file costs the open about 11 ms.
constexpr int kReadAttempts = 3;
constexpr std::array<std::chrono::milliseconds, kReadAttempts - 1> kReadPauses{std::chrono::milliseconds(1),
                                                                               std::chrono::milliseconds(10)};
// Bytes a scan of a file holds at once (pages larger than this are checksummed piecewise).
constexpr std::size_t kWindow = 1 << 20;

// What a scan reads: bytes [off, off + n) of a segment, through a view valid until the
// next call. Shorter only at the end of the source.
class ScanSource {
 public:
  virtual ~ScanSource() = default;
  virtual std::uint64_t size() const noexcept = 0;
  virtual Result<std::string_view> view(std::uint64_t off, std::size_t n) = 0;
};

class ImageSource final : public ScanSource {
 public:
  explicit ImageSource(std::string_view image) : image_(image) {}
  std::uint64_t size() const noexcept override { return image_.size(); }
  Result<std::string_view> view(std::uint64_t off, std::size_t n) override {
    if (off >= image_.size()) return std::string_view();
    return image_.substr(off, n);
  }

 private:
  std::string_view image_;
};

// A file through one window of kWindow bytes (or the request, if larger: never more than
// one page header or one piece of a payload, both bounded by the callers).
class FileSource final : public ScanSource {
 public:
  FileSource(File& file, std::uint64_t size) : file_(file), size_(size) {}
  std::uint64_t size() const noexcept override { return size_; }
  Result<std::string_view> view(std::uint64_t off, std::size_t n) override {
    if (off >= size_) return std::string_view();
    n = static_cast<std::size_t>(std::min<std::uint64_t>(n, size_ - off));
    if (off < start_ || off + n > start_ + window_.size()) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(std::max(n, kWindow), size_ - off));
      window_.resize(want);
      auto got = file_.read_at(off, window_.data(), want);
      if (!got.ok()) {
        window_.clear();
        return got.status();
      }
      window_.resize(*got);
      start_ = off;
    }
    return std::string_view(window_).substr(static_cast<std::size_t>(off - start_), n);
  }

 private:
  File& file_;
  std::uint64_t size_;
  std::string window_;
  std::uint64_t start_ = 0;
};

// A page at `off` is valid when its header parses, its lengths fit the source, its
// checksum matches and it belongs to this segment. Only then is payload_len trusted.
using format::PageRef;

Result<std::optional<PageRef>> valid_page_at(ScanSource& src, std::uint64_t off, std::uint64_t number) {
  if (src.size() - off < format::kPageHeaderSizeV1) return std::optional<PageRef>();
  const std::size_t have = static_cast<std::size_t>(std::min<std::uint64_t>(format::kPageHeaderSize, src.size() - off));
  auto hv = src.view(off, have);
  if (!hv.ok()) return hv.status();
  char header[format::kPageHeaderSize];
  std::memcpy(header, hv->data(), hv->size());  // the view dies with the next read
  auto h = format::parse_page_header(std::string_view(header, hv->size()));
  if (!h) return std::optional<PageRef>();
  const std::uint64_t header_size = h->header_size();
  const std::string_view hs(header, header_size);
  if (h->payload_len > src.size() - off - header_size) return std::optional<PageRef>();
  format::PageChecksum sum(hs);
  for (std::uint64_t at = 0; at < h->payload_len;) {
    auto piece = src.view(off + header_size + at,
                          static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, h->payload_len - at)));
    if (!piece.ok()) return piece.status();
    if (piece->empty()) return std::optional<PageRef>();
    sum.update(*piece);
    at += piece->size();
  }
  if (!sum.matches()) return std::optional<PageRef>();
  if (h->segment != number || h->raw_len > format::kMaxRawPage) return std::optional<PageRef>();
  PageRef ref;
  ref.segment = number;
  ref.offset = off;
  ref.bytes = header_size + h->payload_len;
  ref.first_seq = h->first_seq;
  ref.count = h->item_count;
  ref.version = h->version;
  ref.raw_len = h->raw_len;
  ref.base_ms = h->base_ms;
  ref.newest_ms = h->newest_ms;
  return std::optional<PageRef>(ref);
}

constexpr std::uint64_t kNone = std::numeric_limits<std::uint64_t>::max();

// Next offset in [from, end) where a valid page starts, or kNone.
Result<std::uint64_t> resync(ScanSource& src, std::uint64_t from, std::uint64_t end, std::uint64_t number) {
  // Both page magics, "HPG1" and "HPG2", begin with these three bytes; valid_page_at
  // tells them (and anything else) apart.
  static_assert((format::kPageMagic & 0xffffffu) == (format::kPageMagicV1 & 0xffffffu));
  char magic[4];
  format::put_u32(magic, format::kPageMagic);
  const std::string_view m(magic, 3);
  std::uint64_t at = from;
  while (at < end) {
    // A window overlapping the previous one by all but one byte of the magic, so no magic
    // is split and every window moves on.
    constexpr std::size_t kOverlap = 2;
    static_assert(kOverlap + 1 == 3, "the searched prefix is three bytes");
    auto v = src.view(at, static_cast<std::size_t>(std::min<std::uint64_t>(kWindow, end - at + kOverlap)));
    if (!v.ok()) return v.status();
    if (v->size() < m.size()) return kNone;
    const std::size_t hit = v->find(m);
    if (hit == std::string_view::npos || at + hit >= end) {
      at += v->size() - kOverlap;
      continue;
    }
    const std::uint64_t candidate = at + hit;
    auto page = valid_page_at(src, candidate, number);
    if (!page.ok()) return page.status();
    if (page->has_value()) return candidate;
    at = candidate + 1;
  }
  return kNone;
}

// Where the zeros that end the file begin: the offset just past the last non-zero byte in
// [from, size), or `from` when there is none.
Result<std::uint64_t> zeros_from(ScanSource& src, std::uint64_t from) {
  std::uint64_t end = from;
  for (std::uint64_t at = from; at < src.size();) {
    auto v = src.view(at, kWindow);
    if (!v.ok()) return v.status();
    if (v->empty()) break;
    if (const std::size_t last = v->find_last_not_of('\0'); last != std::string_view::npos) end = at + last + 1;
    at += v->size();
  }
  return end;
}

// The kernel copies a write() into the page cache a page at a time and stops between pages
// when the writer is killed: a cut-short append ends at a multiple of this in the file.
constexpr std::uint64_t kCopyUnit = 4096;

Result<SegmentScan> scan(ScanSource& src, std::uint64_t number, std::uint64_t resync_limit) {
  SegmentScan scan;
  const std::uint64_t size = src.size();
  auto hv = src.view(0, format::kSegmentHeaderSize);
  if (!hv.ok()) return hv.status();
  auto header = format::decode_segment_header(*hv);
  scan.header_ok = header.has_value() && header->segment == number;
  scan.version = header ? header->version : 0;
  if (!scan.header_ok)
    scan.problems.push_back(size < format::kSegmentHeaderSize ? "segment header cut short" : "segment header damaged");
  if (size < format::kSegmentHeaderSize) {
    scan.cut = 0;
    scan.torn_bytes = size;
    return scan;
  }
  std::uint64_t off = format::kSegmentHeaderSize;
  scan.cut = size;
  while (off < size) {
    auto page = valid_page_at(src, off, number);
    if (!page.ok()) return page.status();
    if (page->has_value()) {
      scan.pages.push_back(**page);
      off += (*page)->bytes;
      continue;
    }
    // Damage at `off`: look for the next page that proves itself by its checksum, but not
    // past the limit (a region that large is not something this queue writes).
    const std::uint64_t end = resync_limit >= size - off ? size : off + 1 + resync_limit;
    auto next = resync(src, off + 1, end, number);
    if (!next.ok()) return next.status();
    if (*next == kNone && end < size) {
      ++scan.corrupt_pages;
      scan.complete = false;
      scan.problems.push_back("no valid page in the " + std::to_string(end - off) + " bytes from offset " +
                              std::to_string(off) + "; the " + std::to_string(size - end) +
                              " bytes after them were not scanned and are left in place");
      break;
    }
    if (*next == kNone) {
      // Nothing valid follows: a tail. It is torn if it is an incomplete page (the writer
      // died mid-append), damaged otherwise; either way it is cut.
      auto tail_head =
          src.view(off, static_cast<std::size_t>(std::min<std::uint64_t>(format::kPageHeaderSize, size - off)));
      if (!tail_head.ok()) return tail_head.status();
      auto h = format::parse_page_header(*tail_head);
      // A page magic whose header is cut short: as torn as a short page.
      const bool cut_header = !h && tail_head->size() >= 4 && format::get_u32(tail_head->data()) == format::kPageMagic;
      // Zeros are what a file system leaves when a crash extended the file but not its
      // data: as torn as a short page. So is a page whose end lies in zeros that begin at
      // a copy unit inside it: an append killed part-way into room reserved ahead
      // (fallocate) — the file was already long enough for the page, the rest never came.
      auto zeros = zeros_from(src, off);
      if (!zeros.ok()) return zeros.status();
      const std::uint64_t data_end = (*zeros + kCopyUnit - 1) / kCopyUnit * kCopyUnit;
      const bool cut_in_room = h && h->payload_len <= size - off - h->header_size() &&
                               data_end < off + h->header_size() + h->payload_len;
      const bool incomplete = *zeros == off || size - off < format::kPageHeaderSizeV1 || cut_header ||
                              (h && h->payload_len > size - off - h->header_size()) || cut_in_room;
      if (incomplete) {
        scan.torn_bytes += size - off;
        scan.problems.push_back("torn tail of " + std::to_string(size - off) + " bytes at offset " +
                                std::to_string(off) + " cut");
      } else {
        ++scan.corrupt_pages;
        scan.problems.push_back("damaged page at offset " + std::to_string(off) + " (" +
                                std::to_string(size - off) + " bytes to the end) cut");
      }
      scan.cut = off;
      break;
    }
    ++scan.corrupt_pages;
    scan.problems.push_back("damaged bytes " + std::to_string(off) + ".." + std::to_string(*next) + " skipped");
    off = *next;
  }
  return scan;
}

// Runs `attempt` until it succeeds or kReadAttempts have failed, pausing between tries.
// Each failure is counted in `errors`.
template <class F>
auto with_retries(F attempt, std::uint64_t& errors) -> decltype(attempt()) {
  for (int i = 0;; ++i) {
    auto r = attempt();
    if (r.ok()) return r;
    ++errors;
    if (i + 1 == kReadAttempts) return r;
    std::this_thread::sleep_for(kReadPauses[static_cast<std::size_t>(i)]);
  }
}

}  // namespace

SegmentScan scan_segment(std::string_view image, std::uint64_t number) {
  ImageSource src(image);
  auto r = scan(src, number, kNone);
  return std::move(*r);  // an image never fails to read
}

Result<SegmentScan> scan_segment_file(File& file, std::uint64_t number, std::uint64_t resync_limit) {
  auto size = file.size();
  if (!size.ok()) return size.status();
  FileSource src(file, *size);
  return scan(src, number, resync_limit);
}

Result<Recovery> recover(FileSystem& fs, const std::filesystem::path& dir, const RecoveryLimits& limits) {
  Recovery rec;
  auto names = fs.list(dir);
  if (!names.ok()) return names.status();

  std::vector<std::uint64_t> numbers;
  bool cursor_listed = false, read_cursor_listed = false;
  for (const std::string& name : *names) {
    cursor_listed |= name == format::kCursorFileName;
    read_cursor_listed |= name == format::kReadCursorFileName;
    if (auto n = format::parse_segment_file_name(name)) numbers.push_back(*n);
    // An interrupted replace: the file it was to replace is still there.
    if (name == format::kCursorTempName || name == format::kReadCursorTempName) (void)fs.remove(dir / name);
  }
  std::sort(numbers.begin(), numbers.end());

  // The delivery position: the larger of CURSOR (durable) and CURSOR.read (advisory).
  std::uint64_t cursor = 0;
  std::uint64_t end = 0;
  {
    std::string problem;
    const auto path = dir / format::kCursorFileName;
    const auto durable = read_cursor_file(fs, path, cursor_listed, problem, &rec.read_errors);
    // Without a trustworthy cursor, delivered items may come again: redelivery, not loss.
    if (!durable && !problem.empty())
      rec.problems.push_back(path.native() + ": " + problem + "; delivering from the oldest page");
    // The advisory one is never synced: damaged after a power loss is expected, and says
    // nothing worth reporting. Unreadable is a fault of the disk: that is reported.
    const auto read_path = dir / format::kReadCursorFileName;
    const auto advisory = read_cursor_file(fs, read_path, read_cursor_listed, problem, &rec.read_errors);
    if (!advisory && problem != "damaged" && !problem.empty())
      rec.problems.push_back(read_path.native() + ": " + problem + "; ignored");
    const DeliveryPosition position = combine_cursors(durable, advisory);
    cursor = position.position.value_or(0);
    end = position.end;
  }

  std::vector<PageRef> all;
  // Segments scanned, in number order; `unscanned`: not wholly scanned and nothing valid
  // found (not ours to delete).
  struct Found {
    RecoveredSegment segment;
    bool unscanned = false;
  };
  std::vector<Found> found;
  for (std::uint64_t number : numbers) {
    const auto path = dir / format::segment_file_name(number);
    std::unique_ptr<File> file;
    std::uint64_t size = 0;
    auto scanned = with_retries(
        [&]() -> Result<SegmentScan> {
          file.reset();
          auto f = fs.open(path, OpenMode::append);
          if (!f.ok()) return f.status();
          file = std::move(*f);
          auto sz = file->size();
          if (!sz.ok()) return sz.status();
          size = *sz;
          return scan_segment_file(*file, number, limits.resync_limit);
        },
        rec.read_errors);
    if (!scanned.ok()) {
      // Its items are not delivered now; the file stays as it is, for a later open (or an
      // operator) to read, counted against the budget meanwhile and numbered past. Later
      // items still are delivered: the gap is reported below.
      rec.problems.push_back(path.native() + ": unreadable (" + scanned.status().message() + ") after " +
                             std::to_string(kReadAttempts) + " attempts; left in place, its items are skipped");
      // Listed a moment ago, so even "not found" is a fault here. Its size counts if known.
      rec.held.push_back({number, size, 0});
      continue;
    }
    SegmentScan& scan = *scanned;
    if (scan.header_ok && !format::known_segment_version(scan.version))
      return Status(Errc::corrupt, path.native() + ": written by format version " + std::to_string(scan.version) +
                                       ", this build reads versions " + std::to_string(format::kVersion1) + " and " +
                                       std::to_string(format::kVersion) + "; left untouched");
    for (auto& p : scan.problems) rec.problems.push_back(path.native() + ": " + p);
    rec.corrupt_pages += scan.corrupt_pages;
    rec.torn_bytes += scan.torn_bytes;
    std::uint64_t bytes = size;
    if (scan.complete && scan.cut < size && !scan.pages.empty()) {
      Status s = file->truncate(scan.cut);
      if (s.ok()) {
        bytes = scan.cut;
      } else {
        // The tail stays; nothing will be appended to this file, and a later open cuts it.
        rec.problems.push_back(path.native() + ": could not cut the damaged tail (" + s.message() + ")");
      }
    }
    file.reset();
    for (auto& p : scan.pages) all.push_back(p);
    const bool unscanned = scan.pages.empty() && !scan.complete;
    found.push_back({{number, scan.pages.empty() && !unscanned ? 0 : bytes, 0}, unscanned});
  }

  // Order is by sequence number, not file position (items persisted at shutdown come
  // from a later file but precede what spilled before them).
  format::DeliveryOrder order = format::delivery_order(std::move(all), cursor);
  for (const auto& [begin, gap_end] : order.gaps) {
    const std::uint64_t gap = gap_end - begin;
    rec.missing += gap;
    rec.problems.push_back(dir.native() + ": items " + std::to_string(begin) + ".." + std::to_string(gap_end - 1) +
                           " (" + std::to_string(gap) +
                           ") are not on disk: lost with damaged, unreadable or removed segment data, "
                           "dropped (drop_oldest), or, after a crash, items that were only in memory "
                           "(delivered or not)");
  }
  for (const format::DuePage& p : order.pages) {
    // `found` is in segment-number order: a binary search, not a scan per page.
    auto seg = std::lower_bound(found.begin(), found.end(), p.ref.segment,
                                [](const Found& f, std::uint64_t n) { return f.segment.number < n; });
    if (seg != found.end() && seg->segment.number == p.ref.segment) ++seg->segment.pages;
  }
  rec.items = order.items;
  rec.pages = std::move(order.pages);
  const std::uint64_t expect = order.covered;
  const std::uint64_t max_end = order.max_end;
  // Items accepted before the cursor was written that no page holds, after the last page:
  // no later page shows this gap, the recorded end does.
  if (end > expect) {
    const std::uint64_t gap = end - expect;
    rec.missing += gap;
    rec.problems.push_back(dir.native() + ": items " + std::to_string(expect) + ".." + std::to_string(end - 1) + " (" +
                           std::to_string(gap) +
                           ") are not on disk: lost with a removed or unreadable segment, or, after a crash, "
                           "items that were only in memory");
  }
  rec.next_seq = std::max(max_end, end);
  rec.cursor = cursor;
  rec.end = end;

  for (const Found& f : found) {
    const RecoveredSegment& s = f.segment;
    const auto path = dir / format::segment_file_name(s.number);
    if (f.unscanned) {  // left in place, reported above
      rec.held.push_back({s.number, s.bytes, 0});
      continue;
    }
    if (s.pages > 0) {
      // New segments are numbered after every kept one (removed ones may be reused).
      if (s.number == std::numeric_limits<std::uint64_t>::max())
        return Status(Errc::corrupt, path.native() + ": segment numbers are exhausted; drain the queue into a new directory");
      rec.next_segment = std::max(rec.next_segment, s.number + 1);
      rec.segments.push_back(s);
      continue;
    }
    // Fully delivered, empty, or nothing valid left in it.
    Status st = fs.remove(path);
    if (!st.ok() && st.code() != Errc::not_found) {
      ++rec.remove_errors;
      rec.next_segment = std::max(rec.next_segment, s.number + 1);
      rec.stale.push_back(s);
    }
  }
  // A segment left unread keeps its number: new files are numbered past it too.
  if (!numbers.empty() && numbers.back() != std::numeric_limits<std::uint64_t>::max())
    rec.next_segment = std::max(rec.next_segment, numbers.back() + 1);
  return rec;
}

}  // namespace hopper::detail
