// Helpers shared by the tests: scratch directories, byte-level file surgery, page and
// segment images built by hand, and small checks on what a queue handed back.
#pragma once

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "storage/format.hpp"

namespace hopper {
// GoogleTest prints an Errc by name ("full", not "4-byte object <01-00 00-00>").
inline void PrintTo(Errc code, std::ostream* os) { *os << to_string(code); }
}  // namespace hopper

namespace hopper::test {

// A fresh directory under the system temp dir, removed when destroyed. Not thread-safe
// (one owner), but distinct instances may be made from any thread.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& bytes);
// Segment files of a queue directory, sorted by number.
std::vector<std::filesystem::path> segment_files(const std::filesystem::path& dir);
// Sum of the sizes of the segment files in `dir` (files vanishing meanwhile count 0).
std::uint64_t segment_bytes_on_disk(const std::filesystem::path& dir);
// Names of every entry of `dir`, sorted.
std::vector<std::string> dir_entries(const std::filesystem::path& dir);

// ---- byte mutation, on files ----
// Flips the bits of one byte at `offset`.
void flip_byte(const std::filesystem::path& p, std::uint64_t offset);
void truncate_file(const std::filesystem::path& p, std::uint64_t size);
// Recomputes the checksum of the page whose header starts at `offset` (after a mutation
// made on purpose to reach past the checksum).
void fix_page_checksum(const std::filesystem::path& p, std::uint64_t offset);
// Offsets of the page headers in a segment file, walking valid lengths.
std::vector<std::uint64_t> page_offsets(const std::filesystem::path& p);

// ---- byte mutation, on images in memory ----
void flip_byte(std::string& image, std::uint64_t offset);
void fix_page_checksum(std::string& image, std::uint64_t offset);

// What a page header in a segment file says (walking lengths, not checking checksums).
struct PageInfo {
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;  // header + payload
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::uint64_t segment = 0;
};
std::vector<PageInfo> pages_of(const std::filesystem::path& segment_file);
std::vector<PageInfo> pages_in(std::string_view image);

// ---- images built by hand, as the writer would make them ----
// A page's raw payload: each item framed as `version` frames it (docs/format.md): a u32
// little-endian length, in version 2 a u32 time offset (0), and its bytes.
std::string raw_payload(const std::vector<std::string>& items, std::uint32_t version = format::kVersion);
// One zstd frame of `raw` (with its content size, as SpillWriter writes it).
std::string zstd_frame(std::string_view raw, int level = 1);
// A page (header + payload) whose header fields are taken from `h` as given, checksum
// computed over them: lets a test make a page that lies behind a valid checksum.
std::string page_image(format::PageHeader h, std::string_view payload);
// A well-formed page of `items` (cereal-free: the items are opaque bytes here), of format
// `version`; in version 2 every item's time is `at_ms` (the default: unknown, never expires).
std::string page_image(std::uint64_t segment, std::uint64_t first_seq, const std::vector<std::string>& items,
                       std::uint32_t version = format::kVersion, std::uint64_t at_ms = 0);
// A segment header.
std::string segment_header_image(std::uint64_t number, std::uint32_t version = format::kVersion);

// ---- options ----
// Options with small, valid sizes for tests.
Options small_options(const std::filesystem::path& dir);
// The smallest sizes that still carry u32 items: one item per page, a segment just big
// enough for one page of one u32, 8 bytes of memory (two u32), a disk budget of
// `segments_of_disk` segments.
Options tiny_options(const std::filesystem::path& dir, std::uint64_t segments_of_disk = 2);
// Smallest segment_bytes for which a single item of `item_encoding_bytes` is not too_large.
std::uint64_t min_segment_for_item(std::uint64_t item_encoding_bytes);
// Smallest segment_bytes that validate() accepts with this page_bytes.
std::uint64_t min_segment_for_page(std::uint32_t page_bytes);

// ---- receiving ----
// Drains a receiver with try_recv until empty/closed.
template <class T>
std::vector<T> drain(Receiver<T>& r) {
  std::vector<T> out;
  T item{};
  while (r.try_recv(item).ok()) out.push_back(item);
  return out;
}

// Receives with recv until a non-ok status (closed, when every sender is gone); the final
// status is stored in `end` when given.
template <class T>
std::vector<T> recv_until_closed(Receiver<T>& r, Status* end = nullptr) {
  std::vector<T> out;
  T item{};
  Status s;
  while ((s = r.recv(item)).ok()) out.push_back(item);
  if (end) *end = s;
  return out;
}

// Receives until a non-ok status, never waiting more than 10 s for one item: a queue that
// is stuck ends with Errc::timeout instead of hanging the test. The senders must be closed.
template <class T>
Status receive_all(Receiver<T>& r, std::vector<T>& out) {
  T v{};
  for (;;) {
    Status s = r.recv_for(v, std::chrono::seconds(10));
    if (!s.ok()) return s;
    out.push_back(std::move(v));
  }
}

// channel() as an optional, so that a test can close it (reset) and open it again.
template <class T>
std::optional<Channel<T>> open_channel(const Options& o) {
  auto r = channel<T>(o);
  if (!r.ok()) {
    std::cerr << "channel(" << o.directory << "): " << r.status().message() << "\n";
    return std::nullopt;
  }
  return std::move(*r);
}

// "ok", or the status's message.
inline std::string describe(const Status& s) { return s.ok() ? "ok" : s.message(); }

// poll(2) on a descriptor (a receiver's wait handle): true when readable within `ms`.
inline bool readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  int r;
  do {
    r = ::poll(&p, 1, ms);
  } while (r < 0 && errno == EINTR);
  return r > 0 && (p.revents & POLLIN);
}

// True when `sub` is an order-preserving subsequence of `all` using each element of `all`
// at most once (so nothing invented, nothing duplicated, nothing reordered).
template <class T>
bool is_subsequence(const std::vector<T>& sub, const std::vector<T>& all) {
  std::size_t j = 0;
  for (const T& x : sub) {
    while (j < all.size() && !(all[j] == x)) ++j;
    if (j == all.size()) return false;
    ++j;
  }
  return true;
}

// 0, 1, ..., n-1 as u32.
std::vector<std::uint32_t> iota_u32(std::uint32_t n, std::uint32_t from = 0);

// Aborts the process with a message if not disarmed (destroyed) within `limit`: turns a
// deadlock into a failure with a name instead of a silent hang until the ctest timeout.
// Thread-safe to construct and destroy from one thread.
class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, std::string what);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// The POSIX file system with sync() and sync_directory() as no-ops, for tests that open
// and close thousands of queues to test concurrency, where fdatasync proves nothing and
// costs milliseconds. Thread-safe, as the POSIX one is.
std::shared_ptr<FileSystem> unsynced_file_system();

// Reads a positive integer from environment variable `name`, else `fallback`.
std::uint64_t env_scale(const char* name, std::uint64_t fallback = 1);

}  // namespace hopper::test
