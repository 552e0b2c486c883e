// Helpers shared by the tests: scratch directories and byte-level file surgery.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

namespace hopper::test {

// A fresh directory under the system temp dir, removed when destroyed.
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
// Flips the bits of one byte at `offset`.
void flip_byte(const std::filesystem::path& p, std::uint64_t offset);
void truncate_file(const std::filesystem::path& p, std::uint64_t size);
// Recomputes the checksum of the page whose header starts at `offset` (after a mutation
// made on purpose to reach past the checksum).
void fix_page_checksum(const std::filesystem::path& p, std::uint64_t offset);
// Offsets of the page headers in a segment file, walking valid lengths.
std::vector<std::uint64_t> page_offsets(const std::filesystem::path& p);

// Options with small, valid sizes for tests.
Options small_options(const std::filesystem::path& dir);

// Drains a receiver with try_recv until empty/closed.
template <class T>
std::vector<T> drain(Receiver<T>& r) {
  std::vector<T> out;
  T item{};
  while (r.try_recv(item).ok()) out.push_back(item);
  return out;
}

}  // namespace hopper::test
