// SimFileSystem: a FileSystem in RAM that models exactly what fsync made durable and fails
// the k-th operation of a kind, for explorers that replay a workload under thousands of
// fault schedules and power cuts.
#pragma once

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <hopper/file_system.hpp>

namespace hopper::test {

// The kinds of operation the simulator counts and can fail. File operations (append, read,
// sync, truncate, size) count against the file system that opened the File.
enum class SimOp : std::uint8_t { open, append, read, sync, truncate, size, rename, remove, list, mkdir, dir_sync, lock };
inline constexpr std::size_t kSimOpKinds = 12;
// "open", "append", ..., "dir_sync", "lock".
std::string_view to_string(SimOp op) noexcept;

// What a reboot keeps of the bytes written since each file's last successful sync.
enum class Unsynced : std::uint8_t {
  // All lost: a power loss with nothing in flight reaching the disk.
  dropped,
  // A torn power loss: each file keeps a random (seeded) prefix of what was written since
  // its last successful sync, lost writebacks reading as zeros. A file cut below its
  // durable size since then keeps, by a seeded coin flip, either its durable bytes whole
  // (the truncation never reached the journal) or the cut plus such a prefix. What is
  // kept is durable from then on. Directory entries are as with `dropped`.
  random_prefix,
  // A process crash: the kernel still has every page and entry, so everything stays as it
  // is, and what a later power loss would keep does not change.
  kept,
};

// One fault to inject: fail operations of kind `op`, counted from when the fault was armed.
struct SimFault {
  SimOp op = SimOp::append;
  std::uint64_t nth = 1;     // fail the nth matching operation (1 = the next one; 0 means 1)
  std::uint64_t times = 1;   // this many consecutive matching operations; UINT64_MAX = until cleared
  int err = EIO;             // reported as Status::IoError(what, path, err)
  bool partial = false;      // append only: write the first half of the bytes, then fail
  std::string path_contains; // empty = any path; else only operations on a path containing it count
};

// A FileSystem in RAM for fault-schedule exploration: every call is counted by kind and
// can be failed by count, the power can be cut after the k-th mutating call, and a reboot
// leaves exactly what was durable. Thread-safe (one mutex; see the end of this comment).
//
// The model (conservative Linux):
//   - A file's contents (an inode) are durable up to what its last successful File::sync
//     saw, truncations included.
//   - A directory entry (a creation, a rename, a removal) is durable only once
//     sync_directory() of its parent returned ok after it. Directories themselves are
//     always durable; they cannot be removed or renamed here (EISDIR).
//   - A failed sync makes nothing durable, and the bytes written since the last successful
//     sync are lost for good: after a reboot they read as zeros even if a later sync of the
//     file succeeded (Linux drops dirty pages on a writeback error and reports it once).
//     Until the reboot, reads still return them.
//   - An unlinked file stays readable and writable through Files already open; rename
//     replaces its target; lock() creates its file, as flock on an O_CREAT open does.
//
// Every call is counted in its kind, whether it fails or not. A call is mutating when it
// could change the disk: append, sync, truncate, rename, remove, mkdir, dir_sync, an open
// that creates or truncates, and a lock() that creates its file. Each call is decided in
// this order: a File from before a reboot fails (EIO, no fault or power-cut accounting);
// a mutating call after the power cut fails (EIO); then the armed faults; then the call
// itself, with POSIX errors (ENOENT, EISDIR, ...).
//
// Thread-safety: one mutex guards the whole model, so each call is atomic and a power cut
// falls cleanly between calls. Files and locks it hands out keep it alive and may outlive
// every other reference to it.
class SimFileSystem final : public FileSystem, public std::enable_shared_from_this<SimFileSystem> {
 public:
  // `seed` drives Unsynced::random_prefix and perturb(): same seed, same choices.
  static std::shared_ptr<SimFileSystem> create(std::uint64_t seed = 1);

  // ---- FileSystem ----
  Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) override;
  Status rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  Status remove(const std::filesystem::path& path) override;
  Result<std::vector<std::string>> list(const std::filesystem::path& dir) override;
  Status create_directories(const std::filesystem::path& dir) override;
  Status sync_directory(const std::filesystem::path& dir) override;
  Result<std::unique_ptr<FileLock>> lock(const std::filesystem::path& path) override;

  // ---- counting ----
  // Calls by kind since creation (failed and refused ones too), indexed by SimOp.
  std::array<std::uint64_t, kSimOpKinds> counts() const;
  std::uint64_t count(SimOp op) const;
  std::uint64_t total_ops() const;
  // Calls failed on purpose: by a fault, or refused after the power cut.
  std::uint64_t faults_injected() const;
  // Mutating calls so far (what power_cut_after counts), refused ones included.
  std::uint64_t mutating_ops() const;

  // ---- faults ----
  // Several faults may be armed at once; each counts the matching calls it sees. When two
  // fire on the same call, the one armed first decides the errno (and `partial`).
  void arm(SimFault fault);
  // Disarms every fault, and a power cut armed by power_cut_after that has not come yet.
  void clear_faults();
  std::size_t faults_armed() const;  // armed and not yet spent

  // ---- power loss ----
  // The machine stops once `n` more mutating calls have been let through (0 = now): from
  // then on every mutating call fails with EIO and changes nothing; reads still work.
  // frozen() turns true as the n-th call completes.
  void power_cut_after(std::uint64_t n);
  void power_cut_now();
  bool frozen() const;
  // Every entry and inode goes back to its durable state (per `unsynced`), locks are
  // released, faults and any pending power cut are cleared, and the machine runs again.
  // Files and locks from before stop working: every call on them fails with EIO.
  void reboot(Unsynced unsynced = Unsynced::dropped);

  // ---- the world outside the queue ----
  // Someone else unlinked `path` and the entry is gone durably. Files open on it keep
  // working on the inode. Not counted as a call. False if there was no such file.
  bool vanish(const std::filesystem::path& path);
  // A durable file with these bytes (parent directories created), replacing any other.
  void put(const std::filesystem::path& path, std::string bytes);

  // ---- scheduling noise ----
  // Before each call, with probability `p` (seeded), the calling thread yields or sleeps
  // 0-50 us before taking the lock, so that interleavings vary with the seed. 0 = off.
  void perturb(double p);

  // ---- introspection for oracles (not counted) ----
  // Live files of `dir` (not subdirectories): name -> size.
  std::map<std::string, std::uint64_t> files(const std::filesystem::path& dir) const;
  // What a reboot with Unsynced::dropped would leave at `path` (nullopt: no file there).
  std::optional<std::string> durable_contents(const std::filesystem::path& path) const;
  // What a read sees now (nullopt: no file there).
  std::optional<std::string> live_contents(const std::filesystem::path& path) const;

  // Called after each call, outside the lock, with its kind, path (for rename: `from`),
  // its ordinal in its kind (1-based: counts()[op] right after it, so that arming
  // SimFault{op, ordinal} on a fresh object replaying the same single-threaded workload
  // fails exactly that call) and whether it failed. Must not throw; may be empty.
  using Trace = std::function<void(SimOp, const std::filesystem::path&, std::uint64_t, bool)>;
  void set_trace(Trace trace);

  // Internal: the types the File and FileLock objects share with this object.
  struct Inode;
  class SimFile;
  class SimLock;
  class Call;

 private:
  explicit SimFileSystem(std::uint64_t seed);

  struct ArmedFault {
    SimFault fault;
    std::uint64_t seen = 0;  // matching calls since armed
  };

  bool is_dir_locked(const std::string& key) const;
  std::shared_ptr<Inode> find_live_locked(const std::string& key) const;
  std::uint64_t random_locked(std::uint64_t& state, std::uint64_t bound);  // uniform in [0, bound]
  std::string torn_image_locked(const Inode& inode);

  mutable std::mutex mu_;
  // Path keys (lexically normal, no trailing separator) -> inode: the namespace as it is,
  // and as a power loss would leave it. [mu_]
  std::map<std::string, std::shared_ptr<Inode>> live_;
  std::map<std::string, std::shared_ptr<Inode>> durable_;
  std::set<std::string> dirs_;                      // [mu_] always durable
  std::map<std::string, std::uint64_t> locks_;      // [mu_] path key -> holder's token
  std::uint64_t next_lock_token_ = 1;               // [mu_]
  std::uint64_t boot_ = 0;                          // [mu_] reboots so far; Files of an older boot are dead
  std::vector<ArmedFault> faults_;                  // [mu_] in arming order
  bool frozen_ = false;                             // [mu_]
  std::optional<std::uint64_t> power_countdown_;    // [mu_] mutating calls still let through
  std::array<std::uint64_t, kSimOpKinds> counts_{}; // [mu_]
  std::uint64_t faults_injected_ = 0;               // [mu_]
  std::uint64_t mutating_ops_ = 0;                  // [mu_]
  std::uint64_t torn_rng_;                          // [mu_] random_prefix choices
  std::uint64_t perturb_rng_;                       // [mu_] perturb() draws: its own stream, so
                                                    // that perturbing does not change torn tails
  std::shared_ptr<const Trace> trace_;              // [mu_] copied (the pointer) per call
  // Read before taking mu_ on every call. Relaxed: a knob; a call that sees the old value
  // is as valid a schedule as one that sees the new.
  std::atomic<double> perturb_p_{0.0};
};

}  // namespace hopper::test
