// MemoryFileSystem: the FileSystem seam in RAM, for fuzz harnesses that open thousands of
// queues a second and simulate process crashes by snapshotting what was written.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <hopper/file_system.hpp>

namespace hopper::fuzz {

// A file system whose files live in a map. It behaves as the POSIX one does where a queue
// can tell: ENOENT for missing files and directories, an unlinked file stays readable
// through descriptors already open, rename replaces its target, a second lock on a path
// is Errc::locked. Appended bytes are "written" at once, as the page cache holds them
// after write(2): a snapshot taken between calls is what a process crash leaves behind.
// Thread-safe: one mutex guards every file, directory and lock.
class MemoryFileSystem final : public FileSystem {
 public:
  // Whole-file contents by path, as a crash would leave them.
  using Snapshot = std::map<std::string, std::string>;

  MemoryFileSystem();
  ~MemoryFileSystem() override;

  Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) override;
  Status rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  Status remove(const std::filesystem::path& path) override;
  Result<std::vector<std::string>> list(const std::filesystem::path& dir) override;
  Status create_directories(const std::filesystem::path& dir) override;
  Status sync_directory(const std::filesystem::path& dir) override;
  Result<std::unique_ptr<FileLock>> lock(const std::filesystem::path& path) override;

  // Test access, outside any queue.
  void put(const std::filesystem::path& path, std::string bytes);  // creates parent directories
  bool get(const std::filesystem::path& path, std::string& bytes) const;
  std::vector<std::string> file_names(const std::filesystem::path& dir) const;
  Snapshot snapshot() const;
  // Replaces every file by the snapshot's (directories stay). Open descriptors keep the
  // old contents, as after a crash nobody holds them any more.
  void restore(const Snapshot& s);

  struct State;  // defined in memory_file_system.cpp

 private:
  std::shared_ptr<State> state_;  // shared with open files and locks, which may outlive us
};

}  // namespace hopper::fuzz
