// FileSystem: the seam through which a queue touches files, so tests can inject faults.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <hopper/status.hpp>

namespace hopper {

// One open file. Not thread-safe: a queue uses each File from one thread at a time.
class File {
 public:
  virtual ~File() = default;
  // Appends `n` bytes at the end of the file (the end of what was appended: room that
  // preallocate() reserved past it is written over, not skipped). A failed append may have
  // written a prefix; the caller truncates back to the size it knew.
  virtual Status append(const void* data, std::size_t n) = 0;
  // Reads up to `n` bytes at `offset`; the result is the count read (short at EOF).
  virtual Result<std::size_t> read_at(std::uint64_t offset, void* data, std::size_t n) = 0;
  // fdatasync: what was appended so far survives a power loss once this returns ok.
  virtual Status sync() = 0;
  // Cuts (or extends with zeros) the file to `size` bytes; appends go on from there.
  virtual Status truncate(std::uint64_t size) = 0;
  // The file's size, including room preallocate() reserved.
  virtual Result<std::uint64_t> size() = 0;
  // Reserves disk blocks so that the file is at least `size` bytes long, the new bytes
  // reading as zeros (fallocate), without moving where append() writes. Optional: a file
  // system that cannot says so with any error, and a queue then appends without it. A queue
  // that syncs (SyncPolicy interval, always) reserves a little ahead of its appends, since an
  // fdatasync that need not record a new file size is cheaper (docs/performance.md,
  // "Durable writes"), and cuts the room it did not use when it closes the segment.
  virtual Status preallocate(std::uint64_t size) {
    (void)size;
    return Status(Errc::io_error, "preallocation is not supported by this file system: " + path().native());
  }
  virtual const std::filesystem::path& path() const noexcept = 0;
};

// An exclusive advisory lock on a file, released when destroyed (and by the kernel if
// the holder dies).
class FileLock {
 public:
  virtual ~FileLock() = default;
};

enum class OpenMode {
  read,        // existing file, read only
  append,      // read and append; created if missing, existing bytes kept
  truncate,    // read and append; created if missing, emptied if present
};

// The operations a queue needs from a file system. Implementations must be thread-safe
// (different files from different threads). Every error names the path and the errno text.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  virtual Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) = 0;
  virtual Status rename(const std::filesystem::path& from, const std::filesystem::path& to) = 0;
  virtual Status remove(const std::filesystem::path& path) = 0;
  // Names (not paths) of the entries of `dir`, unordered.
  virtual Result<std::vector<std::string>> list(const std::filesystem::path& dir) = 0;
  virtual Status create_directories(const std::filesystem::path& dir) = 0;
  // fsync on the directory, so that created, renamed and removed entries are durable.
  virtual Status sync_directory(const std::filesystem::path& dir) = 0;
  // flock(LOCK_EX | LOCK_NB) on `path` (created if missing); Errc::locked if held.
  virtual Result<std::unique_ptr<FileLock>> lock(const std::filesystem::path& path) = 0;

  // The real thing: POSIX calls, one instance shared by everyone.
  static std::shared_ptr<FileSystem> posix();
};

}  // namespace hopper
