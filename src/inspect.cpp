// Inspection of a queue directory without taking its lock: segment scans (the same
// validation recovery uses), the CURSOR, the lock holder from /proc/locks, and a reader
// that walks stored items in sequence order.
#include <hopper/inspect.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "storage/format.hpp"
#include "storage/recovery.hpp"
#include "storage/segment_reader.hpp"

namespace hopper {
namespace {

namespace fs = std::filesystem;

// A read-only descriptor. Plain POSIX rather than the FileSystem seam: inspection must
// tell "deleted by the owner meanwhile" (ENOENT) from other failures. Not thread-safe.
class ReadOnlyFile {
 public:
  ReadOnlyFile() = default;
  ReadOnlyFile(ReadOnlyFile&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ReadOnlyFile& operator=(ReadOnlyFile&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~ReadOnlyFile() { close(); }

  // errno of the failure, 0 on success.
  int open(const fs::path& path) {
    close();
    do {
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd_ < 0 && errno == EINTR);
    return fd_ < 0 ? errno : 0;
  }
  bool is_open() const noexcept { return fd_ >= 0; }
  // Reads up to `n` bytes at `offset` into `out` (resized to what was read); errno or 0.
  int read_at(std::uint64_t offset, std::size_t n, std::string& out) {
    out.resize(n);
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::pread(fd_, out.data() + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    return 0;
  }
  // The whole file as it is now (appends racing with this read are not seen).
  int read_all(std::string& out) {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return errno;
    return read_at(0, static_cast<std::size_t>(st.st_size), out);
  }

 private:
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

std::string errno_text(int err) { return std::strerror(err); }

// Segment numbers present in `dir`, sorted.
Result<std::vector<std::uint64_t>> segment_numbers(const fs::path& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return Status::IoError("list directory", dir.native(), ec.value());
  std::vector<std::uint64_t> numbers;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (auto n = format::parse_segment_file_name(it->path().filename().native())) numbers.push_back(*n);
  }
  if (ec) return Status::IoError("list directory", dir.native(), ec.value());
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

struct CursorRead {
  std::optional<std::uint64_t> next_seq;
  bool damaged = false;
};

// The delivery position as recovery takes it: the larger of CURSOR and the advisory
// CURSOR.read (whose damage, expected after a power loss, is not reported).
CursorRead read_cursor(const fs::path& dir) {
  CursorRead c;
  for (const char* name : {format::kCursorFileName, format::kReadCursorFileName}) {
    const bool advisory = name == std::string_view(format::kReadCursorFileName);
    ReadOnlyFile f;
    if (f.open(dir / name) != 0) continue;
    std::string bytes;
    std::optional<std::uint64_t> position;
    if (f.read_at(0, format::kCursorV2Size + 1, bytes) == 0) position = format::decode_cursor(bytes);
    if (position) {
      c.next_seq = std::max(c.next_seq.value_or(0), *position);
    } else if (!advisory) {
      c.damaged = true;
    }
  }
  return c;
}

std::optional<long> parse_pid(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.empty() || text.size() > 18) return std::nullopt;
  long pid = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    pid = pid * 10 + (c - '0');
  }
  return pid > 0 ? std::optional<long>(pid) : std::nullopt;
}

// The flock on LOCK, looked up in /proc/locks by device and inode: seeing it does not
// disturb it (trying flock ourselves would, for an instant, refuse the owner's reopen).
LockHolder lock_holder(const fs::path& dir) {
  LockHolder h;
  const fs::path lock = dir / format::kLockFileName;
  {
    ReadOnlyFile f;
    std::string text;
    if (f.open(lock) == 0 && f.read_at(0, 32, text) == 0) h.recorded_pid = parse_pid(text);
  }
  struct stat st {};
  if (::stat(lock.c_str(), &st) != 0) {
    h.known = true;  // no LOCK file: nobody can hold it
    return h;
  }
  std::ifstream locks("/proc/locks");
  if (!locks) return h;
  h.known = true;
  char dev[64];
  std::snprintf(dev, sizeof dev, "%02x:%02x:%llu", major(st.st_dev), minor(st.st_dev),
                static_cast<unsigned long long>(st.st_ino));
  std::string line;
  while (std::getline(locks, line)) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters have "->" after the id.
    std::istringstream in(line);
    std::string id, kind, mode, access, pid, where;
    in >> id >> kind;
    if (kind == "->") continue;
    in >> mode >> access >> pid >> where;
    if (kind != "FLOCK" || where != dev) continue;
    h.held = true;
    if (auto p = parse_pid(pid)) h.pid = p;
    break;
  }
  if (h.held && !h.pid) h.pid = h.recorded_pid;
  return h;
}

// What one segment holds, from its image.
struct ScannedSegment {
  SegmentSummary summary;
  std::vector<detail::PageRef> pages;  // valid (and, when asked, decodable) pages
  std::vector<DamagedRange> damaged;
  std::vector<std::string> notes;
};

ScannedSegment scan(std::uint64_t number, const fs::path& path, std::string_view image, bool decode,
                    detail::PageDecoder& decoder, std::uint64_t& pages_decoded) {
  ScannedSegment out;
  SegmentSummary& s = out.summary;
  s.number = number;
  s.path = path;
  s.bytes = image.size();
  detail::SegmentScan sc = detail::scan_segment(image, number);
  s.header_ok = sc.header_ok;
  s.version = sc.version;
  if (image.size() < format::kSegmentHeaderSize) {
    s.tail_bytes = image.size();  // a file being created, or a torn one
    return out;
  }
  if (!sc.header_ok) {
    out.damaged.push_back({number, 0, format::kSegmentHeaderSize, "segment header damaged or of another segment"});
  } else if (sc.version != format::kVersion) {
    out.notes.push_back(path.native() + ": format version " + std::to_string(sc.version) +
                        ", this build reads version " + std::to_string(format::kVersion));
  }
  std::uint64_t end = format::kSegmentHeaderSize;
  std::string raw;
  for (const detail::PageRef& p : sc.pages) {
    if (p.offset > end) out.damaged.push_back({number, end, p.offset, "damaged bytes (no valid page)"});
    end = p.offset + p.bytes;
    std::string_view page = image.substr(p.offset, p.bytes);
    if (decode) {
      Status st = decoder.decode(page, number, raw);
      ++pages_decoded;
      if (!st.ok()) {
        out.damaged.push_back({number, p.offset, end, "page fails to decode: " + st.message()});
        continue;
      }
    }
    auto h = format::parse_page_header(page);
    out.pages.push_back(p);
    ++s.pages;
    s.items += p.count;
    s.raw_bytes += h ? h->raw_len : 0;
    if (p.count > 0) {
      const std::uint64_t last = p.first_seq + p.count - 1;
      s.first_seq = s.first_seq ? std::min(*s.first_seq, p.first_seq) : p.first_seq;
      s.last_seq = s.last_seq ? std::max(*s.last_seq, last) : last;
    }
  }
  if (end < image.size()) {
    if (sc.torn_bytes > 0) {
      s.tail_bytes = image.size() - end;
    } else {
      out.damaged.push_back({number, end, image.size(), "damaged tail (no valid page follows)"});
    }
  }
  s.corrupt_pages = static_cast<std::uint64_t>(std::count_if(
      out.damaged.begin(), out.damaged.end(), [](const DamagedRange& d) { return d.begin >= format::kSegmentHeaderSize; }));
  return out;
}

// Pages to deliver, in sequence order, each sequence number once, items before `from`
// skipped: the same rule recovery applies.
std::vector<detail::PageRef> delivery_order(std::vector<detail::PageRef> all, std::uint64_t from,
                                            std::uint64_t& items) {
  std::stable_sort(all.begin(), all.end(),
                   [](const detail::PageRef& a, const detail::PageRef& b) { return a.first_seq < b.first_seq; });
  std::vector<detail::PageRef> out;
  std::uint64_t expect = from;
  items = 0;
  for (detail::PageRef& p : all) {
    const std::uint64_t end = p.first_seq + p.count;
    if (p.count == 0 || end <= expect) continue;
    p.skip = static_cast<std::uint32_t>(expect > p.first_seq ? expect - p.first_seq : 0);
    expect = end;
    items += p.count - p.skip;
    out.push_back(p);
  }
  return out;
}

// Scans every segment of `dir`, calling `each` with what was found.
template <class Each>
Status scan_directory(const fs::path& dir, const InspectOptions& options, std::vector<std::string>& notes,
                      std::uint64_t& pages_decoded, Each&& each) {
  auto numbers = segment_numbers(dir);
  if (!numbers.ok()) return numbers.status();
  // Sizes first, for progress reporting.
  std::uint64_t total = 0;
  for (std::uint64_t n : *numbers) {
    std::error_code ec;
    const auto size = fs::file_size(dir / format::segment_file_name(n), ec);
    if (!ec) total += size;
  }
  std::uint64_t done = 0;
  detail::PageDecoder decoder;
  std::string image;
  for (std::uint64_t n : *numbers) {
    const fs::path path = dir / format::segment_file_name(n);
    ReadOnlyFile f;
    int err = f.open(path);
    if (err == 0) err = f.read_all(image);
    if (err == ENOENT) continue;  // consumed and deleted by the owner meanwhile
    if (err != 0) {
      notes.push_back(path.native() + ": cannot be read: " + errno_text(err));
      continue;
    }
    each(scan(n, path, image, options.decode_pages, decoder, pages_decoded));
    done += image.size();
    if (options.progress) options.progress(std::min(done, total), std::max(done, total));
  }
  return Status();
}

}  // namespace

bool Inspection::intact() const noexcept {
  if (!damaged.empty() || cursor_damaged) return false;
  for (const SegmentSummary& s : segments)
    if (s.bytes >= format::kSegmentHeaderSize && (!s.header_ok || s.version != format::kVersion)) return false;
  if (tail_bytes > 0 && !lock.held) return false;  // torn by a writer that is gone
  return true;
}

Result<Inspection> inspect(const fs::path& dir, const InspectOptions& options) {
  Inspection r;
  r.directory = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return Status(Errc::io_error, dir.native() + ": not a directory" + (ec ? ": " + ec.message() : std::string()));
  // The lock first: a holder seen now was there during the whole scan or arrived later;
  // either way an incomplete tail may be its write in progress.
  r.lock = lock_holder(dir);
  const CursorRead cursor = read_cursor(dir);
  r.cursor = cursor.next_seq;
  r.cursor_damaged = cursor.damaged;
  if (cursor.damaged) r.notes.push_back((dir / format::kCursorFileName).native() + ": damaged");

  std::vector<detail::PageRef> all;
  Status st = scan_directory(dir, options, r.notes, r.pages_decoded, [&](ScannedSegment seg) {
    const SegmentSummary& s = seg.summary;
    r.pages += s.pages;
    r.items += s.items;
    r.disk_bytes += s.bytes;
    r.raw_bytes += s.raw_bytes;
    r.corrupt_pages += s.corrupt_pages;
    r.tail_bytes += s.tail_bytes;
    if (s.first_seq) r.oldest_seq = r.oldest_seq ? std::min(*r.oldest_seq, *s.first_seq) : *s.first_seq;
    if (s.last_seq) r.newest_seq = r.newest_seq ? std::max(*r.newest_seq, *s.last_seq) : *s.last_seq;
    for (auto& d : seg.damaged) r.damaged.push_back(std::move(d));
    for (auto& n : seg.notes) r.notes.push_back(std::move(n));
    all.insert(all.end(), seg.pages.begin(), seg.pages.end());
    r.segments.push_back(std::move(seg.summary));
  });
  if (!st.ok()) return st;
  (void)delivery_order(std::move(all), r.cursor.value_or(0), r.undelivered_items);
  return r;
}

// ---- ItemReader -------------------------------------------------------------------------

namespace {
// A valid page at the same place may still be another one: segment numbers restart at 1
// when a queue is reopened with no segment left.
bool same_page(std::string_view page, const detail::PageRef& ref) {
  auto h = format::parse_page_header(page);
  return h && h->first_seq == ref.first_seq && h->item_count == ref.count;
}
}  // namespace

struct ItemReader::State {
  fs::path dir;
  std::vector<detail::PageRef> pages;
  std::size_t next_page = 0;
  std::uint64_t total = 0;
  std::uint64_t skipped = 0;
  Status status;

  ReadOnlyFile file;
  std::uint64_t file_number = 0;
  std::string page_bytes;
  std::string raw;
  std::optional<format::ItemCursor> items;
  std::uint64_t seq = 0;  // of the next item `items` yields
  detail::PageDecoder decoder;
};

ItemReader::ItemReader(std::unique_ptr<State> state) : s_(std::move(state)) {}
ItemReader::ItemReader(ItemReader&&) noexcept = default;
ItemReader& ItemReader::operator=(ItemReader&&) noexcept = default;
ItemReader::~ItemReader() = default;

Result<ItemReader> ItemReader::open(const fs::path& dir, Options options) {
  auto s = std::make_unique<State>();
  s->dir = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return Status(Errc::io_error, dir.native() + ": not a directory" + (ec ? ": " + ec.message() : std::string()));
  std::uint64_t from = 0;
  if (options.from_cursor) from = read_cursor(dir).next_seq.value_or(0);
  std::vector<detail::PageRef> all;
  std::vector<std::string> notes;
  std::uint64_t decoded = 0;
  Status st = scan_directory(dir, InspectOptions{}, notes, decoded, [&](ScannedSegment seg) {
    all.insert(all.end(), seg.pages.begin(), seg.pages.end());
  });
  if (!st.ok()) return st;
  s->pages = delivery_order(std::move(all), from, s->total);
  return ItemReader(std::move(s));
}

bool ItemReader::next(StoredItem& item) {
  State& s = *s_;
  for (;;) {
    if (s.items) {
      if (auto bytes = s.items->next()) {
        item.seq = s.seq++;
        item.bytes = *bytes;
        return true;
      }
      s.items.reset();
    }
    if (s.next_page >= s.pages.size() || !s.status.ok()) return false;
    const detail::PageRef ref = s.pages[s.next_page++];
    if (!s.file.is_open() || s.file_number != ref.segment) {
      const fs::path path = s.dir / format::segment_file_name(ref.segment);
      const int err = s.file.open(path);
      if (err == ENOENT) {
        ++s.skipped;  // consumed and deleted by the owner since open()
        continue;
      }
      if (err != 0) {
        s.status = Status::IoError("open", path.native(), err);
        return false;
      }
      s.file_number = ref.segment;
    }
    if (const int err = s.file.read_at(ref.offset, ref.bytes, s.page_bytes); err != 0) {
      s.status = Status::IoError("read", (s.dir / format::segment_file_name(ref.segment)).native(), err);
      return false;
    }
    if (s.page_bytes.size() != ref.bytes || !s.decoder.decode(s.page_bytes, ref.segment, s.raw).ok() ||
        !same_page(s.page_bytes, ref)) {
      ++s.skipped;  // deleted and its number reused, or damaged, since open()
      continue;
    }
    s.items.emplace(s.raw);
    s.seq = ref.first_seq;
    for (std::uint32_t i = 0; i < ref.skip; ++i) {
      (void)s.items->next();
      ++s.seq;
    }
  }
}

const Status& ItemReader::status() const noexcept { return s_->status; }
std::uint64_t ItemReader::skipped_pages() const noexcept { return s_->skipped; }
std::uint64_t ItemReader::total_items() const noexcept { return s_->total; }

}  // namespace hopper
