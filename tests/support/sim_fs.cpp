#include "sim_fs.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

namespace hopper::test {

namespace fs = std::filesystem;

namespace {

// Keys of the path maps: lexically normal, no trailing separator, "." for the empty
// relative path, so that `dir / name` and "dir/" agree on their parent.
std::string key(const fs::path& p) {
  std::string k = p.lexically_normal().generic_string();
  while (k.size() > 1 && k.back() == '/') k.pop_back();
  return k.empty() ? "." : k;
}

std::string parent_key(const std::string& k) { return key(fs::path(k).parent_path()); }

bool is_root(const std::string& k) { return k == "/" || k == "."; }

std::string name_of(const std::string& k) { return fs::path(k).filename().string(); }

}  // namespace

std::string_view to_string(SimOp op) noexcept {
  switch (op) {
    case SimOp::open: return "open";
    case SimOp::append: return "append";
    case SimOp::read: return "read";
    case SimOp::sync: return "sync";
    case SimOp::truncate: return "truncate";
    case SimOp::size: return "size";
    case SimOp::rename: return "rename";
    case SimOp::remove: return "remove";
    case SimOp::list: return "list";
    case SimOp::mkdir: return "mkdir";
    case SimOp::dir_sync: return "dir_sync";
    case SimOp::lock: return "lock";
  }
  return "unknown";
}

// One file's identity: its bytes now, and what a power loss would leave of them. Guarded
// by the owning SimFileSystem's mutex.
struct SimFileSystem::Inode {
  std::string data;     // what reads see now
  std::string durable;  // as of the last successful sync, lost writebacks zeroed
  // Lowest offset changed (appended to, or truncated at) since the last successful sync:
  // data[0, dirty_from) equals durable[0, dirty_from), and dirty_from <= durable.size().
  std::uint64_t dirty_from = 0;
  // Byte ranges whose writeback failed: whatever a later sync says, they are zeros on the
  // disk (the pages were dropped, never written). Cut back by truncation, since bytes
  // written again past the cut are new pages.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> holes;

  void set_durable(std::string bytes) {
    data = bytes;
    durable = std::move(bytes);
    dirty_from = durable.size();
    holes.clear();
  }
  void append(const void* p, std::size_t n) {
    dirty_from = std::min<std::uint64_t>(dirty_from, data.size());
    data.append(static_cast<const char*>(p), n);
  }
  void truncate(std::uint64_t size) {
    dirty_from = std::min<std::uint64_t>({dirty_from, data.size(), size});
    data.resize(size, '\0');
    for (auto& [from, to] : holes) to = std::min(to, std::max(from, size));
    std::erase_if(holes, [](const auto& h) { return h.first >= h.second; });
  }
  // `bytes` as they would reach the disk from offset `at`: lost writebacks are zeros.
  std::string on_disk(std::string bytes, std::uint64_t at) const {
    for (const auto& [from, to] : holes) {
      for (std::uint64_t i = std::max(from, at); i < to && i - at < bytes.size(); ++i) bytes[i - at] = '\0';
    }
    return bytes;
  }
  void sync_ok() {
    durable = on_disk(data, 0);
    dirty_from = data.size();
  }
  void sync_failed() {
    // The dirty pages are dropped: they never reach the disk, even through a later sync.
    if (dirty_from < data.size()) holes.emplace_back(dirty_from, data.size());
  }
};

// One call in progress: perturbed and counted when made, then decided under the lock,
// then traced once the lock is released. Lives on the calling thread's stack; never shared.
class SimFileSystem::Call {
 public:
  Call(SimFileSystem& sim, SimOp op, const fs::path& path) : sim_(sim), op_(op), path_(path) {
    pause_maybe();
    lk_ = std::unique_lock(sim_.mu_);
    ordinal_ = ++sim_.counts_[static_cast<std::size_t>(op_)];
  }

  // The power cut (for a mutating call), then the armed faults: the failure to report,
  // or ok to go ahead.
  Status admit(std::string_view what, bool mutating, const fs::path* other = nullptr) {
    if (mutating) {
      ++sim_.mutating_ops_;
      if (sim_.frozen_) {
        ++sim_.faults_injected_;
        return Status::FromErrno(std::string(what) + " (simulated power loss)", path_.native(), EIO);
      }
      // This call is let through; the machine stops right after the last one allowed.
      if (sim_.power_countdown_ && --*sim_.power_countdown_ == 0) {
        sim_.frozen_ = true;
        sim_.power_countdown_.reset();
      }
    }
    const SimFault* fired = nullptr;
    for (ArmedFault& a : sim_.faults_) {
      const SimFault& f = a.fault;
      if (f.op != op_) continue;
      if (!f.path_contains.empty() && path_.native().find(f.path_contains) == std::string::npos &&
          (other == nullptr || other->native().find(f.path_contains) == std::string::npos))
        continue;
      ++a.seen;
      if (fired == nullptr && a.seen >= f.nth && a.seen - f.nth < f.times) fired = &f;
    }
    if (fired == nullptr) return Status();
    ++sim_.faults_injected_;
    faulted_ = true;
    partial_ = fired->partial;
    Status s = Status::FromErrno(std::string(what) + " (injected fault)", path_.native(), fired->err);
    std::erase_if(sim_.faults_, [](const ArmedFault& a) {
      return a.seen >= a.fault.nth && a.seen - a.fault.nth >= a.fault.times - 1;
    });
    return s;
  }
  // The call failed by a fault (not by the power cut).
  bool faulted() const { return faulted_; }
  // The fault that failed it asks for a short write.
  bool partial() const { return partial_; }

  // Releases the lock and reports the call to the trace hook; returns `r`.
  template <class R>
  R done(R r) {
    const bool failed = !r.ok();
    std::shared_ptr<const Trace> trace = sim_.trace_;
    lk_.unlock();
    if (trace && *trace) (*trace)(op_, path_, ordinal_, failed);
    return r;
  }

 private:
  void pause_maybe() {
    const double p = sim_.perturb_p_.load(std::memory_order_relaxed);
    if (p <= 0) return;
    std::uint64_t draw = 0, pause = 0;
    {
      std::lock_guard lk(sim_.mu_);
      draw = sim_.random_locked(sim_.perturb_rng_, UINT64_MAX);
      pause = sim_.random_locked(sim_.perturb_rng_, 51);
    }
    if (static_cast<double>(draw >> 11) * 0x1.0p-53 >= p) return;
    if (pause == 51) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(pause));
    }
  }

  SimFileSystem& sim_;
  SimOp op_;
  const fs::path& path_;
  std::unique_lock<std::mutex> lk_;
  std::uint64_t ordinal_ = 0;
  bool faulted_ = false;
  bool partial_ = false;
};

// A File on one inode. Not thread-safe, as File; every call goes through the owner's lock.
class SimFileSystem::SimFile final : public File {
 public:
  SimFile(std::shared_ptr<SimFileSystem> owner, std::shared_ptr<Inode> inode, fs::path path, bool writable,
          std::uint64_t boot)
      : owner_(std::move(owner)), inode_(std::move(inode)), path_(std::move(path)), writable_(writable), boot_(boot) {}

  Status append(const void* data, std::size_t n) override {
    Call call(*owner_, SimOp::append, path_);
    return call.done([&]() -> Status {
      if (dead()) return dead_error("write");
      if (Status s = call.admit("write", true); !s.ok()) {
        if (call.partial() && writable_) inode_->append(data, n / 2);
        return s;
      }
      if (!writable_) return Status::FromErrno("write", path_.native(), EBADF);
      inode_->append(data, n);
      return Status();
    }());
  }

  Result<std::size_t> read_at(std::uint64_t offset, void* data, std::size_t n) override {
    Call call(*owner_, SimOp::read, path_);
    return call.done([&]() -> Result<std::size_t> {
      if (dead()) return dead_error("read");
      if (Status s = call.admit("read", false); !s.ok()) return s;
      const std::string& bytes = inode_->data;
      if (offset >= bytes.size()) return std::size_t{0};
      const std::size_t got = static_cast<std::size_t>(std::min<std::uint64_t>(n, bytes.size() - offset));
      bytes.copy(static_cast<char*>(data), got, static_cast<std::size_t>(offset));
      return got;
    }());
  }

  Status sync() override {
    Call call(*owner_, SimOp::sync, path_);
    return call.done([&]() -> Status {
      if (dead()) return dead_error("fdatasync");
      if (Status s = call.admit("fdatasync", true); !s.ok()) {
        if (call.faulted()) inode_->sync_failed();
        return s;
      }
      inode_->sync_ok();
      return Status();
    }());
  }

  Status truncate(std::uint64_t size) override {
    Call call(*owner_, SimOp::truncate, path_);
    return call.done([&]() -> Status {
      if (dead()) return dead_error("truncate");
      if (Status s = call.admit("truncate", true); !s.ok()) return s;
      if (!writable_) return Status::FromErrno("truncate", path_.native(), EINVAL);
      inode_->truncate(size);
      return Status();
    }());
  }

  Result<std::uint64_t> size() override {
    Call call(*owner_, SimOp::size, path_);
    return call.done([&]() -> Result<std::uint64_t> {
      if (dead()) return dead_error("stat");
      if (Status s = call.admit("stat", false); !s.ok()) return s;
      return static_cast<std::uint64_t>(inode_->data.size());
    }());
  }

  const fs::path& path() const noexcept override { return path_; }

 private:
  bool dead() const { return boot_ != owner_->boot_; }  // under owner_->mu_
  Status dead_error(std::string_view what) const {
    return Status::FromErrno(std::string(what) + " (file opened before a reboot)", path_.native(), EIO);
  }

  std::shared_ptr<SimFileSystem> owner_;
  std::shared_ptr<Inode> inode_;
  fs::path path_;
  bool writable_;
  std::uint64_t boot_;
};

// A held lock() on one path; the token tells it apart from a later holder of the same
// path after a reboot released it. Thread-safe: its destructor takes the owner's lock.
class SimFileSystem::SimLock final : public FileLock {
 public:
  SimLock(std::shared_ptr<SimFileSystem> owner, std::string k, std::uint64_t token)
      : owner_(std::move(owner)), key_(std::move(k)), token_(token) {}
  ~SimLock() override {
    std::lock_guard lk(owner_->mu_);
    auto it = owner_->locks_.find(key_);
    if (it != owner_->locks_.end() && it->second == token_) owner_->locks_.erase(it);
  }

 private:
  std::shared_ptr<SimFileSystem> owner_;
  std::string key_;
  std::uint64_t token_;
};

std::shared_ptr<SimFileSystem> SimFileSystem::create(std::uint64_t seed) {
  return std::shared_ptr<SimFileSystem>(new SimFileSystem(seed));
}

SimFileSystem::SimFileSystem(std::uint64_t seed)
    : dirs_{"/", "."}, torn_rng_(seed), perturb_rng_(seed ^ 0x5851f42d4c957f2dull) {}

std::uint64_t SimFileSystem::random_locked(std::uint64_t& state, std::uint64_t bound) {
  // splitmix64: tiny, and every choice is reproducible from the seed.
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return bound == UINT64_MAX ? z : z % (bound + 1);
}

bool SimFileSystem::is_dir_locked(const std::string& k) const { return is_root(k) || dirs_.count(k) > 0; }

std::shared_ptr<SimFileSystem::Inode> SimFileSystem::find_live_locked(const std::string& k) const {
  auto it = live_.find(k);
  return it == live_.end() ? nullptr : it->second;
}

// What a torn power loss leaves of one inode: the durable bytes before the first change
// since the last sync, then a random prefix of what was written from there. A file cut
// below its durable size since then may also keep its durable image whole (the truncation
// never reached the journal).
std::string SimFileSystem::torn_image_locked(const Inode& inode) {
  const std::uint64_t from = inode.dirty_from;
  if (from < inode.durable.size() && random_locked(torn_rng_, 1) == 0) return inode.durable;
  const std::uint64_t keep = random_locked(torn_rng_, inode.data.size() - from);
  std::string image = inode.durable.substr(0, static_cast<std::size_t>(from));
  image += inode.on_disk(inode.data.substr(static_cast<std::size_t>(from), static_cast<std::size_t>(keep)), from);
  return image;
}

// ---- FileSystem -------------------------------------------------------------------------

Result<std::unique_ptr<File>> SimFileSystem::open(const fs::path& path, OpenMode mode) {
  Call call(*this, SimOp::open, path);
  return call.done([&]() -> Result<std::unique_ptr<File>> {
    const std::string k = key(path);
    std::shared_ptr<Inode> inode = find_live_locked(k);
    const bool mutating = mode == OpenMode::truncate || (mode == OpenMode::append && inode == nullptr);
    if (Status s = call.admit("open", mutating); !s.ok()) return s;
    if (is_dir_locked(k)) return Status::FromErrno("open", path.native(), EISDIR);
    if (inode == nullptr) {
      if (mode == OpenMode::read) return Status::FromErrno("open", path.native(), ENOENT);
      const std::string parent = parent_key(k);
      if (!is_dir_locked(parent)) return Status::FromErrno("open", path.native(), live_.count(parent) ? ENOTDIR : ENOENT);
      inode = std::make_shared<Inode>();
      live_[k] = inode;
    } else if (mode == OpenMode::truncate) {
      inode->truncate(0);
    }
    return std::unique_ptr<File>(
        std::make_unique<SimFile>(shared_from_this(), std::move(inode), path, mode != OpenMode::read, boot_));
  }());
}

Status SimFileSystem::rename(const fs::path& from, const fs::path& to) {
  Call call(*this, SimOp::rename, from);
  return call.done([&]() -> Status {
    const std::string what = "rename to " + to.native() + " from";
    if (Status s = call.admit(what, true, &to); !s.ok()) return s;
    const std::string kf = key(from), kt = key(to);
    if (is_dir_locked(kf)) return Status::FromErrno(what + " (directories are not renamed here)", from.native(), EISDIR);
    std::shared_ptr<Inode> inode = find_live_locked(kf);
    if (inode == nullptr) return Status::FromErrno(what, from.native(), ENOENT);
    const std::string parent = parent_key(kt);
    if (!is_dir_locked(parent)) return Status::FromErrno(what, from.native(), live_.count(parent) ? ENOTDIR : ENOENT);
    if (is_dir_locked(kt)) return Status::FromErrno(what, from.native(), EISDIR);
    if (kf == kt) return Status();
    live_[kt] = std::move(inode);
    live_.erase(kf);
    return Status();
  }());
}

Status SimFileSystem::remove(const fs::path& path) {
  Call call(*this, SimOp::remove, path);
  return call.done([&]() -> Status {
    if (Status s = call.admit("unlink", true); !s.ok()) return s;
    const std::string k = key(path);
    if (is_dir_locked(k)) return Status::FromErrno("unlink", path.native(), EISDIR);
    if (live_.erase(k) == 0) return Status::FromErrno("unlink", path.native(), ENOENT);
    return Status();
  }());
}

Result<std::vector<std::string>> SimFileSystem::list(const fs::path& dir) {
  Call call(*this, SimOp::list, dir);
  return call.done([&]() -> Result<std::vector<std::string>> {
    if (Status s = call.admit("opendir", false); !s.ok()) return s;
    const std::string d = key(dir);
    if (!is_dir_locked(d)) return Status::FromErrno("opendir", dir.native(), live_.count(d) ? ENOTDIR : ENOENT);
    std::vector<std::string> names;
    for (const auto& [k, inode] : live_)
      if (parent_key(k) == d) names.push_back(name_of(k));
    for (const std::string& k : dirs_)
      if (k != d && parent_key(k) == d) names.push_back(name_of(k));
    return names;
  }());
}

Status SimFileSystem::create_directories(const fs::path& dir) {
  Call call(*this, SimOp::mkdir, dir);
  return call.done([&]() -> Status {
    if (Status s = call.admit("mkdir", true); !s.ok()) return s;
    std::vector<std::string> missing;
    for (std::string k = key(dir); !is_dir_locked(k); k = parent_key(k)) {
      if (live_.count(k)) return Status::FromErrno("mkdir", dir.native(), ENOTDIR);
      missing.push_back(k);
    }
    dirs_.insert(missing.begin(), missing.end());
    return Status();
  }());
}

Status SimFileSystem::sync_directory(const fs::path& dir) {
  Call call(*this, SimOp::dir_sync, dir);
  return call.done([&]() -> Status {
    if (Status s = call.admit("fsync directory", true); !s.ok()) return s;
    const std::string d = key(dir);
    if (!is_dir_locked(d)) return Status::FromErrno("open directory", dir.native(), live_.count(d) ? ENOTDIR : ENOENT);
    std::erase_if(durable_, [&](const auto& e) { return parent_key(e.first) == d; });
    for (const auto& [k, inode] : live_)
      if (parent_key(k) == d) durable_[k] = inode;
    return Status();
  }());
}

Result<std::unique_ptr<FileLock>> SimFileSystem::lock(const fs::path& path) {
  Call call(*this, SimOp::lock, path);
  return call.done([&]() -> Result<std::unique_ptr<FileLock>> {
    const std::string k = key(path);
    const bool exists = live_.count(k) > 0;
    if (Status s = call.admit("lock", !exists && !is_dir_locked(k)); !s.ok()) return s;
    if (is_dir_locked(k)) return Status::FromErrno("open", path.native(), EISDIR);
    if (!exists) {
      const std::string parent = parent_key(k);
      if (!is_dir_locked(parent)) return Status::FromErrno("open", path.native(), live_.count(parent) ? ENOTDIR : ENOENT);
      live_[k] = std::make_shared<Inode>();
    }
    if (locks_.count(k)) return Status(Errc::locked, path.native() + " is held by another process or handle");
    const std::uint64_t token = next_lock_token_++;
    locks_[k] = token;
    return std::unique_ptr<FileLock>(std::make_unique<SimLock>(shared_from_this(), k, token));
  }());
}

// ---- counting, faults, power ------------------------------------------------------------

std::array<std::uint64_t, kSimOpKinds> SimFileSystem::counts() const {
  std::lock_guard lk(mu_);
  return counts_;
}

std::uint64_t SimFileSystem::count(SimOp op) const {
  std::lock_guard lk(mu_);
  return counts_[static_cast<std::size_t>(op)];
}

std::uint64_t SimFileSystem::total_ops() const {
  std::lock_guard lk(mu_);
  std::uint64_t total = 0;
  for (std::uint64_t c : counts_) total += c;
  return total;
}

std::uint64_t SimFileSystem::faults_injected() const {
  std::lock_guard lk(mu_);
  return faults_injected_;
}

std::uint64_t SimFileSystem::mutating_ops() const {
  std::lock_guard lk(mu_);
  return mutating_ops_;
}

void SimFileSystem::arm(SimFault fault) {
  if (fault.times == 0) return;  // fails nothing
  fault.nth = std::max<std::uint64_t>(fault.nth, 1);
  std::lock_guard lk(mu_);
  faults_.push_back(ArmedFault{std::move(fault), 0});
}

void SimFileSystem::clear_faults() {
  std::lock_guard lk(mu_);
  faults_.clear();
  power_countdown_.reset();  // a cut not yet come does not come
}

std::size_t SimFileSystem::faults_armed() const {
  std::lock_guard lk(mu_);
  return faults_.size();
}

void SimFileSystem::power_cut_after(std::uint64_t n) {
  std::lock_guard lk(mu_);
  if (n == 0) {
    frozen_ = true;
    power_countdown_.reset();
  } else {
    power_countdown_ = n;
  }
}

void SimFileSystem::power_cut_now() {
  std::lock_guard lk(mu_);
  frozen_ = true;
  power_countdown_.reset();
}

bool SimFileSystem::frozen() const {
  std::lock_guard lk(mu_);
  return frozen_;
}

void SimFileSystem::reboot(Unsynced unsynced) {
  std::lock_guard lk(mu_);
  ++boot_;
  locks_.clear();
  faults_.clear();
  frozen_ = false;
  power_countdown_.reset();
  // A process crash: the kernel still has every page and entry, and what was durable
  // before still is (a later power loss loses the same bytes).
  if (unsynced == Unsynced::kept) return;
  // Each inode once, in path order (an inode under two durable names is one inode), so
  // that the torn choices depend only on the seed and the call sequence.
  std::set<const Inode*> seen;
  for (auto& [k, inode] : durable_) {
    if (!seen.insert(inode.get()).second) continue;
    inode->set_durable(unsynced == Unsynced::dropped ? inode->durable : torn_image_locked(*inode));
  }
  live_ = durable_;
}

// ---- the world outside the queue --------------------------------------------------------

bool SimFileSystem::vanish(const fs::path& path) {
  std::lock_guard lk(mu_);
  const std::string k = key(path);
  durable_.erase(k);
  return live_.erase(k) > 0;
}

void SimFileSystem::put(const fs::path& path, std::string bytes) {
  std::lock_guard lk(mu_);
  const std::string k = key(path);
  for (std::string d = parent_key(k); !is_dir_locked(d); d = parent_key(d)) dirs_.insert(d);
  auto inode = std::make_shared<Inode>();
  inode->set_durable(std::move(bytes));
  live_[k] = inode;
  durable_[k] = std::move(inode);
}

void SimFileSystem::perturb(double p) { perturb_p_.store(p, std::memory_order_relaxed); }

// ---- introspection ----------------------------------------------------------------------

std::map<std::string, std::uint64_t> SimFileSystem::files(const fs::path& dir) const {
  std::lock_guard lk(mu_);
  const std::string d = key(dir);
  std::map<std::string, std::uint64_t> out;
  for (const auto& [k, inode] : live_)
    if (parent_key(k) == d) out[name_of(k)] = inode->data.size();
  return out;
}

std::optional<std::string> SimFileSystem::durable_contents(const fs::path& path) const {
  std::lock_guard lk(mu_);
  auto it = durable_.find(key(path));
  if (it == durable_.end()) return std::nullopt;
  return it->second->durable;
}

std::optional<std::string> SimFileSystem::live_contents(const fs::path& path) const {
  std::lock_guard lk(mu_);
  auto it = live_.find(key(path));
  if (it == live_.end()) return std::nullopt;
  return it->second->data;
}

void SimFileSystem::set_trace(Trace trace) {
  std::lock_guard lk(mu_);
  trace_ = trace ? std::make_shared<const Trace>(std::move(trace)) : nullptr;
}

}  // namespace hopper::test
