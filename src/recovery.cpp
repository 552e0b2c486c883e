#include "recovery.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "format.hpp"

namespace hopper::detail {
namespace {

// A page at `off` is valid when its header parses, its lengths fit the image, its
// checksum matches and it belongs to this segment. Only then is payload_len trusted.
std::optional<PageRef> valid_page_at(std::string_view image, std::uint64_t off, std::uint64_t number) {
  if (image.size() - off < format::kPageHeaderSize) return std::nullopt;
  auto h = format::parse_page_header(image.substr(off, format::kPageHeaderSize));
  if (!h) return std::nullopt;
  if (h->payload_len > image.size() - off - format::kPageHeaderSize) return std::nullopt;
  std::string_view header = image.substr(off, format::kPageHeaderSize);
  std::string_view payload = image.substr(off + format::kPageHeaderSize, h->payload_len);
  if (!format::page_checksum_ok(header, payload)) return std::nullopt;
  if (h->segment != number || h->raw_len > format::kMaxRawPage) return std::nullopt;
  PageRef ref;
  ref.segment = number;
  ref.offset = off;
  ref.bytes = format::kPageHeaderSize + h->payload_len;
  ref.first_seq = h->first_seq;
  ref.count = h->item_count;
  return ref;
}

// Next offset after `from` where a valid page starts, or npos.
std::uint64_t resync(std::string_view image, std::uint64_t from, std::uint64_t number) {
  char magic[4];
  format::put_u32(magic, format::kPageMagic);
  std::string_view m(magic, 4);
  for (std::size_t p = image.find(m, from); p != std::string_view::npos; p = image.find(m, p + 1)) {
    if (valid_page_at(image, p, number)) return p;
  }
  return std::string_view::npos;
}

}  // namespace

SegmentScan scan_segment(std::string_view image, std::uint64_t number) {
  SegmentScan scan;
  auto header = format::decode_segment_header(image);
  scan.header_ok = header.has_value() && header->segment == number;
  scan.version = header ? header->version : 0;
  if (!scan.header_ok)
    scan.problems.push_back(image.size() < format::kSegmentHeaderSize ? "segment header cut short"
                                                                      : "segment header damaged");
  if (image.size() < format::kSegmentHeaderSize) {
    scan.cut = 0;
    scan.torn_bytes = image.size();
    return scan;
  }
  std::uint64_t off = format::kSegmentHeaderSize;
  scan.cut = image.size();
  while (off < image.size()) {
    if (auto page = valid_page_at(image, off, number)) {
      scan.pages.push_back(*page);
      off += page->bytes;
      continue;
    }
    // Damage at `off`: look for the next page that proves itself by its checksum.
    const std::uint64_t next = resync(image, off + 1, number);
    if (next == std::string_view::npos) {
      // Nothing valid follows: a tail. It is torn if it is an incomplete page (the writer
      // died mid-append), damaged otherwise; either way it is cut.
      auto h = format::parse_page_header(image.substr(off));
      const std::string_view tail = image.substr(off);
      // Zeros are what a file system leaves when a crash extended the file but not its
      // data: as torn as a short page.
      const bool zeros = tail.find_first_not_of('\0') == std::string_view::npos;
      const bool incomplete =
          zeros || image.size() - off < format::kPageHeaderSize ||
          (h && h->payload_len > image.size() - off - format::kPageHeaderSize);
      if (incomplete) {
        scan.torn_bytes += image.size() - off;
        scan.problems.push_back("torn tail of " + std::to_string(image.size() - off) +
                                " bytes at offset " + std::to_string(off) + " cut");
      } else {
        ++scan.corrupt_pages;
        scan.problems.push_back("damaged page at offset " + std::to_string(off) + " (" +
                                std::to_string(image.size() - off) + " bytes to the end) cut");
      }
      scan.cut = off;
      break;
    }
    ++scan.corrupt_pages;
    scan.problems.push_back("damaged bytes " + std::to_string(off) + ".." + std::to_string(next) +
                            " skipped");
    off = next;
  }
  return scan;
}

Result<Recovery> recover(FileSystem& fs, const std::filesystem::path& dir) {
  Recovery rec;
  auto names = fs.list(dir);
  if (!names.ok()) return names.status();

  std::uint64_t cursor = 0;
  std::vector<std::uint64_t> numbers;
  for (const std::string& name : *names) {
    if (auto n = format::parse_segment_file_name(name)) numbers.push_back(*n);
    if (name == format::kCursorTempName) (void)fs.remove(dir / name);  // an interrupted replace
  }
  std::sort(numbers.begin(), numbers.end());

  {
    const auto path = dir / format::kCursorFileName;
    auto f = fs.open(path, OpenMode::read);
    if (f.ok()) {
      std::string bytes(format::kCursorSize + 1, '\0');
      auto got = (*f)->read_at(0, bytes.data(), bytes.size());
      if (!got.ok()) return got.status();
      bytes.resize(*got);
      if (auto c = format::decode_cursor(bytes)) {
        cursor = *c;
      } else {
        // Without a trustworthy cursor, delivered items may come again: redelivery, not loss.
        rec.problems.push_back(path.native() + ": damaged; delivering from the oldest page");
      }
    }
  }

  std::vector<PageRef> all;
  std::vector<RecoveredSegment> found;
  // One buffer for every segment's image, replaced (not grown) when a larger file comes:
  // growing a string would double its capacity and keep two images alive at once.
  std::unique_ptr<char[]> buffer;
  std::uint64_t buffer_size = 0;
  for (std::uint64_t number : numbers) {
    const auto path = dir / format::segment_file_name(number);
    auto f = fs.open(path, OpenMode::append);
    if (!f.ok()) return f.status();
    auto size = (*f)->size();
    if (!size.ok()) return size.status();
    if (*size > buffer_size) {
      buffer.reset();
      buffer = std::make_unique_for_overwrite<char[]>(*size);
      buffer_size = *size;
    }
    auto got = (*f)->read_at(0, buffer.get(), *size);
    if (!got.ok()) return got.status();
    const std::string_view image(buffer.get(), *got);
    SegmentScan scan = scan_segment(image, number);
    if (scan.header_ok && scan.version != format::kVersion)
      return Status(Errc::corrupt, path.native() + ": written by format version " +
                                       std::to_string(scan.version) + ", this build reads version " +
                                       std::to_string(format::kVersion) + "; left untouched");
    for (auto& p : scan.problems) rec.problems.push_back(path.native() + ": " + p);
    rec.corrupt_pages += scan.corrupt_pages;
    rec.torn_bytes += scan.torn_bytes;
    if (scan.cut < image.size() && !scan.pages.empty()) {
      Status s = (*f)->truncate(scan.cut);
      if (!s.ok()) return s;
    }
    for (auto& p : scan.pages) all.push_back(p);
    found.push_back({number, scan.pages.empty() ? 0 : scan.cut, 0});
  }

  // Order is by sequence number, not file position (items persisted at shutdown come
  // from a later file but precede what spilled before them).
  std::stable_sort(all.begin(), all.end(),
                   [](const PageRef& a, const PageRef& b) { return a.first_seq < b.first_seq; });
  std::uint64_t expect = cursor;
  std::uint64_t max_end = cursor;
  for (PageRef& p : all) {
    const std::uint64_t end = p.first_seq + p.count;
    max_end = std::max(max_end, end);
    if (p.count == 0 || end <= expect) continue;  // delivered already, or a duplicate
    if (p.first_seq > expect) {
      // Numbers are handed out without holes, so a hole means items that are gone.
      const std::uint64_t gap = p.first_seq - expect;
      rec.missing += gap;
      rec.problems.push_back(dir.native() + ": items " + std::to_string(expect) + ".." +
                             std::to_string(p.first_seq - 1) + " (" + std::to_string(gap) +
                             ") are not on disk: lost with damaged or removed segment data, dropped "
                             "(drop_oldest), or, after a crash, items that were only in memory "
                             "(delivered or not)");
    }
    p.skip = static_cast<std::uint32_t>(expect > p.first_seq ? expect - p.first_seq : 0);
    expect = end;
    rec.items += p.count - p.skip;
    rec.pages.push_back(p);
    // `found` is in segment-number order: a binary search, not a scan per page.
    auto seg = std::lower_bound(found.begin(), found.end(), p.segment,
                                [](const RecoveredSegment& s, std::uint64_t n) { return s.number < n; });
    if (seg != found.end() && seg->number == p.segment) ++seg->pages;
  }
  rec.next_seq = max_end;
  rec.cursor = cursor;

  for (const auto& s : found) {
    if (s.pages > 0) {
      // New segments are numbered after every kept one (removed ones may be reused).
      if (s.number == std::numeric_limits<std::uint64_t>::max())
        return Status(Errc::corrupt, (dir / format::segment_file_name(s.number)).native() +
                                         ": segment numbers are exhausted; drain the queue into a new directory");
      rec.next_segment = std::max(rec.next_segment, s.number + 1);
      rec.segments.push_back(s);
    } else {
      // Fully delivered, empty, or nothing valid left in it.
      Status st = fs.remove(dir / format::segment_file_name(s.number));
      if (!st.ok()) return st;
    }
  }
  return rec;
}

}  // namespace hopper::detail
