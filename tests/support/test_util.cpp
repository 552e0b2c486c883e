#include "test_util.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <unistd.h>
#include <zstd.h>

#include "forwarding_fs.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("hopper-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  // A test may have made parts read-only; give them back so removal succeeds.
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.native());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.native());
}

std::vector<std::filesystem::path> segment_files(const std::filesystem::path& dir) {
  std::vector<std::pair<std::uint64_t, std::filesystem::path>> found;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (auto n = format::parse_segment_file_name(e.path().filename().native())) found.emplace_back(*n, e.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::filesystem::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::uint64_t segment_bytes_on_disk(const std::filesystem::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!format::parse_segment_file_name(it->path().filename().native())) continue;
    std::error_code size_ec;
    const auto n = std::filesystem::file_size(it->path(), size_ec);
    if (!size_ec) total += n;
  }
  return total;
}

std::vector<std::string> dir_entries(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().native());
  std::sort(out.begin(), out.end());
  return out;
}

void flip_byte(std::string& b, std::uint64_t offset) {
  if (offset >= b.size()) throw std::runtime_error("flip_byte past the end of an image");
  b[offset] = static_cast<char>(~static_cast<unsigned char>(b[offset]));
}

void flip_byte(const std::filesystem::path& p, std::uint64_t offset) {
  std::string b = read_file(p);
  if (offset >= b.size()) throw std::runtime_error("flip_byte past the end of " + p.native());
  flip_byte(b, offset);
  write_file(p, b);
}

void truncate_file(const std::filesystem::path& p, std::uint64_t size) { std::filesystem::resize_file(p, size); }

void fix_page_checksum(std::string& b, std::uint64_t offset) {
  auto h = format::parse_page_header(std::string_view(b).substr(offset));
  if (!h) throw std::runtime_error("no page header at that offset");
  std::string_view payload = std::string_view(b).substr(offset + h->header_size(), h->payload_len);
  format::encode_page_header(*h, payload, b.data() + offset);
}

void fix_page_checksum(const std::filesystem::path& p, std::uint64_t offset) {
  std::string b = read_file(p);
  fix_page_checksum(b, offset);
  write_file(p, b);
}

std::vector<PageInfo> pages_in(std::string_view b) {
  std::vector<PageInfo> out;
  std::uint64_t off = format::kSegmentHeaderSize;
  while (off + format::kPageHeaderSizeV1 <= b.size()) {
    auto h = format::parse_page_header(b.substr(off));
    if (!h || h->payload_len > b.size() - off - h->header_size()) break;
    out.push_back(PageInfo{off, h->header_size() + h->payload_len, h->first_seq, h->item_count, h->segment});
    off += h->header_size() + h->payload_len;
  }
  return out;
}

std::vector<PageInfo> pages_of(const std::filesystem::path& p) {
  const std::string b = read_file(p);
  return pages_in(b);
}

std::vector<std::uint64_t> page_offsets(const std::filesystem::path& p) {
  std::vector<std::uint64_t> out;
  for (const PageInfo& i : pages_of(p)) out.push_back(i.offset);
  return out;
}

std::string raw_payload(const std::vector<std::string>& items, std::uint32_t version) {
  std::string raw;
  for (const std::string& item : items) {
    char prefix[8] = {};
    format::put_u32(prefix, static_cast<std::uint32_t>(item.size()));  // time offset 0
    raw.append(prefix, format::item_prefix_size(version));
    raw += item;
  }
  return raw;
}

std::string zstd_frame(std::string_view raw, int level) {
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  const std::size_t n = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string page_image(format::PageHeader h, std::string_view payload) {
  std::string out(h.header_size(), '\0');
  format::encode_page_header(h, payload, out.data());
  out.append(payload);
  return out;
}

std::string page_image(std::uint64_t segment, std::uint64_t first_seq, const std::vector<std::string>& items,
                       std::uint32_t version, std::uint64_t at_ms) {
  const std::string raw = raw_payload(items, version);
  const std::string frame = zstd_frame(raw);
  format::PageHeader h;
  h.version = version;
  if (version != format::kVersion1) h.base_ms = h.newest_ms = at_ms;
  h.payload_len = static_cast<std::uint32_t>(frame.size());
  h.raw_len = static_cast<std::uint32_t>(raw.size());
  h.item_count = static_cast<std::uint32_t>(items.size());
  h.first_seq = first_seq;
  h.segment = segment;
  return page_image(h, frame);
}

std::string segment_header_image(std::uint64_t number, std::uint32_t version) {
  std::string out(format::kSegmentHeaderSize, '\0');
  format::encode_segment_header(format::SegmentHeader{version, number}, out.data());
  return out;
}

Options small_options(const std::filesystem::path& dir) {
  Options o;
  o.directory = dir;
  o.max_memory_bytes = 1024;
  o.max_disk_bytes = 1 << 20;
  o.segment_bytes = 64 << 10;
  o.page_bytes = 4096;
  return o;
}

std::uint64_t min_segment_for_item(std::uint64_t item_encoding_bytes) {
  return detail::SpillWriter::bound(format::kItemPrefixSize + item_encoding_bytes);
}

std::uint64_t min_segment_for_page(std::uint32_t page_bytes) { return detail::SpillWriter::bound(page_bytes); }

Options tiny_options(const std::filesystem::path& dir, std::uint64_t segments_of_disk) {
  Options o;
  o.directory = dir;
  o.max_memory_bytes = 8;
  o.page_bytes = 1;
  o.segment_bytes = std::max(min_segment_for_page(1), min_segment_for_item(sizeof(std::uint32_t)));
  o.max_disk_bytes = o.segment_bytes * segments_of_disk;
  return o;
}

std::vector<std::uint32_t> iota_u32(std::uint32_t n, std::uint32_t from) {
  std::vector<std::uint32_t> v(n);
  for (std::uint32_t i = 0; i < n; ++i) v[i] = from + i;
  return v;
}

Watchdog::Watchdog(std::chrono::seconds limit, std::string what) {
  thread_ = std::thread([this, limit, what = std::move(what)] {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, limit, [this] { return done_; })) {
      std::fprintf(stderr, "watchdog: %s did not finish within %llds (deadlock?)\n", what.c_str(),
                   static_cast<long long>(limit.count()));
      std::fflush(stderr);
      std::abort();
    }
  });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lk(mu_);
    done_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

namespace {

// Forwards everything to a POSIX file, except sync.
class UnsyncedFile final : public ForwardingFile {
 public:
  using ForwardingFile::ForwardingFile;
  Status sync() override { return Status(); }
};

class UnsyncedFileSystem final : public ForwardingFileSystem {
 public:
  Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) override {
    return open_wrapped<UnsyncedFile>(path, mode);
  }
  Status sync_directory(const std::filesystem::path&) override { return Status(); }
};

}  // namespace

std::shared_ptr<FileSystem> unsynced_file_system() {
  static const std::shared_ptr<FileSystem> instance = std::make_shared<UnsyncedFileSystem>();
  return instance;
}

std::uint64_t env_scale(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (end == v || *end != '\0' || n == 0) return fallback;
  return n;
}

}  // namespace hopper::test
