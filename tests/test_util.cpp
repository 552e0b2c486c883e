#include "test_util.hpp"

#include <atomic>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

#include "format.hpp"

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

void flip_byte(const std::filesystem::path& p, std::uint64_t offset) {
  std::string b = read_file(p);
  if (offset >= b.size()) throw std::runtime_error("flip_byte past the end of " + p.native());
  b[offset] = static_cast<char>(~static_cast<unsigned char>(b[offset]));
  write_file(p, b);
}

void truncate_file(const std::filesystem::path& p, std::uint64_t size) { std::filesystem::resize_file(p, size); }

void fix_page_checksum(const std::filesystem::path& p, std::uint64_t offset) {
  std::string b = read_file(p);
  auto h = format::parse_page_header(std::string_view(b).substr(offset));
  if (!h) throw std::runtime_error("no page header at that offset");
  std::string_view payload = std::string_view(b).substr(offset + format::kPageHeaderSize, h->payload_len);
  format::encode_page_header(*h, payload, b.data() + offset);
  write_file(p, b);
}

std::vector<std::uint64_t> page_offsets(const std::filesystem::path& p) {
  std::string b = read_file(p);
  std::vector<std::uint64_t> out;
  std::uint64_t off = format::kSegmentHeaderSize;
  while (off + format::kPageHeaderSize <= b.size()) {
    auto h = format::parse_page_header(std::string_view(b).substr(off));
    if (!h) break;
    out.push_back(off);
    off += format::kPageHeaderSize + h->payload_len;
  }
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

}  // namespace hopper::test
