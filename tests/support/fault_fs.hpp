// FaultFileSystem: a FileSystem for tests that wraps the POSIX one, remembers what each
// fsync made durable, simulates power loss, and injects write and sync failures.
#pragma once

#include <cstdint>
#include <filesystem>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <hopper/file_system.hpp>
#include <hopper/options.hpp>

namespace hopper::test {

// What survives a simulated power loss of the bytes that were written but not synced.
enum class Unsynced {
  dropped,        // all of it is lost (leveldb's FaultInjectionTestEnv)
  random_prefix,  // each file keeps a random prefix of its unsynced tail (torn writes)
};

// Counts of what the file system was asked to do. Plain values: a snapshot.
struct FaultCounters {
  std::uint64_t appends = 0;          // successful File::append calls
  std::uint64_t bytes_appended = 0;
  std::uint64_t syncs = 0;            // successful File::sync calls
  std::uint64_t failed_syncs = 0;     // File::sync calls failed on purpose
  std::uint64_t dir_syncs = 0;        // successful sync_directory calls
  std::uint64_t failed_writes = 0;    // File::append calls failed on purpose
  std::uint64_t renames = 0;
  std::uint64_t removes = 0;
  std::uint64_t refused_frozen = 0;   // mutations refused after freeze()
};

// The model, as in leveldb's FaultInjectionTestEnv but with directory entries too:
//   - a file's contents are durable up to what its last successful sync() saw;
//   - a directory entry (a creation, a rename, a removal) is durable once
//     sync_directory() of its directory returned ok after it;
//   - files that existed before this object first touched them count as durable.
// crash() turns the real directories into exactly the durable state (or, with
// Unsynced::random_prefix, keeps a random part of each unsynced tail). Directories
// themselves, and files never touched through this object, are left alone.
//
// A sync that fails on purpose does not make anything durable, and the file's unsynced
// bytes stay lost for good: later syncs of that file succeed without making them durable
// (Linux drops the dirty pages after a writeback error and reports it once). A library
// that trusts a later successful sync therefore loses acknowledged data in a crash test.
//
// Thread-safe: every operation runs under one mutex (the real call included), so a crash
// point is a clean cut between operations. Files opened through it may outlive it.
class FaultFileSystem final : public FileSystem, public std::enable_shared_from_this<FaultFileSystem> {
 public:
  static std::shared_ptr<FaultFileSystem> create(std::uint64_t seed = 1);

  // FileSystem
  Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) override;
  Status rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  Status remove(const std::filesystem::path& path) override;
  Result<std::vector<std::string>> list(const std::filesystem::path& dir) override;
  Status create_directories(const std::filesystem::path& dir) override;
  Status sync_directory(const std::filesystem::path& dir) override;
  Result<std::unique_ptr<FileLock>> lock(const std::filesystem::path& path) override;

  // ---- power loss ----
  // The machine stops: from now on every mutating call fails with EIO and changes nothing
  // (reads still work), so handles destroyed afterwards cannot write a clean shutdown.
  void freeze();
  // Freezes after `n` more mutating calls have been let through (0 = at once).
  void freeze_after(std::uint64_t n);
  bool frozen() const;
  // Power loss and reboot: every touched path is reset to its durable state, then the file
  // system works again. Call it once the handles using this object are gone (or frozen).
  void crash(Unsynced unsynced = Unsynced::dropped);

  // ---- faults ----
  // The next `n` appends fail with `err` (ENOSPC, EIO, ...); with `partial`, each first
  // writes a prefix of what it was given (a short write), as a real full disk does.
  void fail_writes(std::uint64_t n, int err, bool partial = false);
  // Appends beyond `bytes` more (over all files) write what fits and fail with ENOSPC;
  // nullopt = unlimited. Truncation and removal give space back.
  void set_free_space(std::optional<std::uint64_t> bytes);
  // The next `n` File::sync calls fail with EIO (and lose the file's unsynced bytes).
  void fail_syncs(std::uint64_t n);
  // The next `n` sync_directory calls fail with EIO.
  void fail_dir_syncs(std::uint64_t n);
  // While held, File::sync calls wait (without blocking other calls) until released: lets
  // a test line up several senders behind one sync, to see them share the next one.
  void hold_syncs();
  void release_syncs();
  std::uint64_t syncs_waiting() const;
  // Clears every pending fault and the free-space limit, and releases held syncs.
  void heal();

  FaultCounters counters() const;
  // Bytes of `path` that would survive a crash now (nullopt: the file would not exist).
  std::optional<std::string> durable_contents(const std::filesystem::path& path) const;

  // Internal: used by the File and FileLock objects this hands out.
  struct Node;
  class FaultFile;

 private:
  explicit FaultFileSystem(std::uint64_t seed);
  Status refuse_if_frozen_locked(const char* what, const std::filesystem::path& path);
  void adopt_locked(const std::filesystem::path& path);
  std::uint64_t random_locked(std::uint64_t bound);  // uniform in [0, bound]

  std::shared_ptr<FileSystem> posix_;
  mutable std::mutex mu_;
  // Path -> node, as the directory is now, and as it would be after a crash.
  std::map<std::filesystem::path, std::shared_ptr<Node>> live_;
  std::map<std::filesystem::path, std::shared_ptr<Node>> durable_;
  bool frozen_ = false;
  std::optional<std::uint64_t> freeze_countdown_;
  std::uint64_t write_failures_ = 0;
  int write_errno_ = 0;
  bool write_partial_ = false;
  std::optional<std::uint64_t> free_space_;
  std::uint64_t sync_failures_ = 0;
  std::uint64_t dir_sync_failures_ = 0;
  bool hold_syncs_ = false;
  std::uint64_t syncs_waiting_ = 0;
  std::condition_variable sync_cv_;
  std::uint64_t rng_;
  FaultCounters counters_;
};

// Options on `ffs` with small sizes (1 KiB of memory, 512-byte pages, 8 KiB segments, 1 MiB
// of disk) and FullPolicy::fail, for tests of what the disk's faults do.
Options fault_options(const std::filesystem::path& dir, std::shared_ptr<FaultFileSystem> ffs);

}  // namespace hopper::test
