// Inspection of a queue directory without taking its lock: segment scans (the same
// validation recovery uses), the CURSOR, the lock holder from /proc/locks, and a reader
// that walks stored items in the order recovery delivers them (format::delivery_order).
// Files are read through the FileSystem seam (the POSIX one); a file the owner deleted
// meanwhile is Errc::not_found, and skipped.
#include <hopper/inspect.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <hopper/file_system.hpp>

#include "storage/cursor_file.hpp"
#include "storage/format.hpp"
#include "storage/io_error.hpp"
#include "storage/recovery.hpp"
#include "storage/segment_reader.hpp"

namespace hopper {
namespace {

namespace fs = std::filesystem;

// Reads up to `n` bytes at `offset` of `file` into `out` (resized to what was read).
Status read_at(File& file, std::uint64_t offset, std::size_t n, std::string& out) {
  out.resize(n);
  auto got = file.read_at(offset, out.data(), n);
  if (!got.ok()) return got.status();
  out.resize(*got);
  return Status();
}

// The whole file as it is now (appends racing with this read are not seen).
Status read_all(File& file, std::string& out) {
  auto size = file.size();
  if (!size.ok()) return size.status();
  return read_at(file, 0, static_cast<std::size_t>(*size), out);
}

// Segment numbers present in `dir`, sorted.
Result<std::vector<std::uint64_t>> segment_numbers(FileSystem& fs, const fs::path& dir) {
  auto names = fs.list(dir);
  if (!names.ok()) return detail::as_io_error(names.status());
  std::vector<std::uint64_t> numbers;
  for (const std::string& name : *names)
    if (auto n = format::parse_segment_file_name(name)) numbers.push_back(*n);
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

struct CursorRead {
  std::optional<std::uint64_t> next_seq;
  bool damaged = false;
};

// The delivery position as recovery takes it (detail::combine_cursors), read once each,
// without retries: a CURSOR that cannot be opened is absent, one that cannot be read or
// decoded is damaged. Damage of the advisory CURSOR.read, expected after a power loss, is
// not reported.
CursorRead read_cursor(FileSystem& fs, const fs::path& dir) {
  auto read_one = [&](const char* name, bool& damaged) -> std::optional<format::CursorRecord> {
    auto f = fs.open(dir / name, OpenMode::read);
    if (!f.ok()) return std::nullopt;
    std::string bytes;
    std::optional<format::CursorRecord> c;
    if (read_at(**f, 0, format::kCursorV2Size + 1, bytes).ok()) c = format::decode_cursor_record(bytes);
    damaged = !c;
    return c;
  };
  CursorRead c;
  bool advisory_damaged = false;
  const auto durable = read_one(format::kCursorFileName, c.damaged);
  const auto advisory = read_one(format::kReadCursorFileName, advisory_damaged);
  c.next_seq = detail::combine_cursors(durable, advisory).position;
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
// (The LOCK file's pid is read through the FileSystem seam; its inode and /proc/locks are
// Linux's own, outside it.)
LockHolder lock_holder(FileSystem& files, const fs::path& dir) {
  LockHolder h;
  const fs::path lock = dir / format::kLockFileName;
  if (auto f = files.open(lock, OpenMode::read); f.ok()) {
    std::string text;
    if (read_at(**f, 0, 32, text).ok()) h.recorded_pid = parse_pid(text);
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
  std::vector<format::PageRef> pages;  // valid (and, when asked, decodable) pages
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
  } else if (!format::known_segment_version(sc.version)) {
    out.notes.push_back(path.native() + ": format version " + std::to_string(sc.version) +
                        ", this build reads versions " + std::to_string(format::kVersion1) + " and " +
                        std::to_string(format::kVersion));
  }
  std::uint64_t end = format::kSegmentHeaderSize;
  std::string raw;
  for (const format::PageRef& p : sc.pages) {
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

// Scans every segment of `dir`, calling `each` with what was found.
template <class Each>
Status scan_directory(FileSystem& files, const fs::path& dir, const InspectOptions& options,
                      std::vector<std::string>& notes, std::uint64_t& pages_decoded, Each&& each) {
  auto numbers = segment_numbers(files, dir);
  if (!numbers.ok()) return numbers.status();
  // Sizes first, for progress reporting.
  std::uint64_t total = 0;
  for (std::uint64_t n : *numbers) {
    auto f = files.open(dir / format::segment_file_name(n), OpenMode::read);
    if (!f.ok()) continue;
    if (auto size = (*f)->size(); size.ok()) total += *size;
  }
  std::uint64_t done = 0;
  detail::PageDecoder decoder;
  std::string image;
  for (std::uint64_t n : *numbers) {
    const fs::path path = dir / format::segment_file_name(n);
    auto f = files.open(path, OpenMode::read);
    Status read = f.ok() ? read_all(**f, image) : f.status();
    if (read.code() == Errc::not_found) continue;  // consumed and deleted by the owner meanwhile
    if (!read.ok()) {
      notes.push_back(path.native() + ": cannot be read: " + read.message());
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
    if (s.bytes >= format::kSegmentHeaderSize && (!s.header_ok || !format::known_segment_version(s.version))) return false;
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
  auto files = FileSystem::posix();
  r.lock = lock_holder(*files, dir);
  const CursorRead cursor = read_cursor(*files, dir);
  r.cursor = cursor.next_seq;
  r.cursor_damaged = cursor.damaged;
  if (cursor.damaged) r.notes.push_back((dir / format::kCursorFileName).native() + ": damaged");

  std::vector<format::PageRef> all;
  Status st = scan_directory(*files, dir, options, r.notes, r.pages_decoded, [&](ScannedSegment seg) {
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
  r.undelivered_items = format::delivery_order(std::move(all), r.cursor.value_or(0)).items;
  return r;
}

// ---- ItemReader -------------------------------------------------------------------------

namespace {
// A valid page at the same place may still be another one: segment numbers restart at 1
// when a queue is reopened with no segment left.
bool same_page(std::string_view page, const format::PageRef& ref) {
  auto h = format::parse_page_header(page);
  return h && h->first_seq == ref.first_seq && h->item_count == ref.count && h->version == ref.version;
}
}  // namespace

struct ItemReader::State {
  fs::path dir;
  std::shared_ptr<FileSystem> files = FileSystem::posix();
  std::vector<format::DuePage> pages;
  std::size_t next_page = 0;
  std::uint64_t total = 0;
  std::uint64_t skipped = 0;
  Status status;

  std::unique_ptr<File> file;
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
  if (options.from_cursor) from = read_cursor(*s->files, dir).next_seq.value_or(0);
  std::vector<format::PageRef> all;
  std::vector<std::string> notes;
  std::uint64_t decoded = 0;
  Status st = scan_directory(*s->files, dir, InspectOptions{}, notes, decoded, [&](ScannedSegment seg) {
    all.insert(all.end(), seg.pages.begin(), seg.pages.end());
  });
  if (!st.ok()) return st;
  format::DeliveryOrder order = format::delivery_order(std::move(all), from);
  s->pages = std::move(order.pages);
  s->total = order.items;
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
    const format::DuePage due = s.pages[s.next_page++];
    const format::PageRef& ref = due.ref;
    if (!s.file || s.file_number != ref.segment) {
      s.file.reset();
      auto f = s.files->open(s.dir / format::segment_file_name(ref.segment), OpenMode::read);
      if (f.status().code() == Errc::not_found) {
        ++s.skipped;  // consumed and deleted by the owner since open()
        continue;
      }
      if (!f.ok()) {
        s.status = f.status();
        return false;
      }
      s.file = std::move(*f);
      s.file_number = ref.segment;
    }
    if (Status read = read_at(*s.file, ref.offset, ref.bytes, s.page_bytes); !read.ok()) {
      s.status = read;
      return false;
    }
    if (s.page_bytes.size() != ref.bytes || !s.decoder.decode(s.page_bytes, ref.segment, s.raw).ok() ||
        !same_page(s.page_bytes, ref)) {
      ++s.skipped;  // deleted and its number reused, or damaged, since open()
      continue;
    }
    s.items.emplace(s.raw, ref.version);
    s.seq = ref.first_seq;
    for (std::uint32_t i = 0; i < due.skip; ++i) {
      (void)s.items->next();
      ++s.seq;
    }
  }
}

const Status& ItemReader::status() const noexcept { return s_->status; }
std::uint64_t ItemReader::skipped_pages() const noexcept { return s_->skipped; }
std::uint64_t ItemReader::total_items() const noexcept { return s_->total; }

}  // namespace hopper
