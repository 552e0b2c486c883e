#include "fault_fs.hpp"

#include <cerrno>
#include <fstream>
#include <set>
#include <system_error>
#include <utility>

namespace hopper::test {

namespace fs = std::filesystem;

namespace {

// Keys of the path maps: lexically normal, no trailing separator, so that `dir / name`
// and a directory given with a trailing slash agree on parent_path().
fs::path key(const fs::path& p) {
  fs::path n = p.lexically_normal();
  if (!n.has_filename() && n.has_parent_path()) n = n.parent_path();
  return n;
}

Result<std::string> read_all(File& f) {
  auto size = f.size();
  if (!size.ok()) return size.status();
  std::string bytes(*size, '\0');
  auto got = f.read_at(0, bytes.data(), bytes.size());
  if (!got.ok()) return got.status();
  bytes.resize(*got);
  return bytes;
}

std::optional<std::string> read_path(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

// One file's identity (an inode): what a crash would leave of it, and where it stands now.
struct FaultFileSystem::Node {
  std::string durable;            // contents as of the last successful sync (holes zeroed)
  std::uint64_t live_size = 0;    // size now, for free-space accounting
  // Byte ranges whose writeback failed: whatever a later sync says, they read as zeros
  // after a crash (the pages were dropped, the extents were never written).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> holes;
};

// A File whose mutations go through the owning FaultFileSystem's model. Not thread-safe,
// as File; the model it updates is guarded by the file system's mutex.
class FaultFileSystem::FaultFile final : public File {
 public:
  FaultFile(std::shared_ptr<FaultFileSystem> owner, std::unique_ptr<File> inner, std::shared_ptr<Node> node)
      : owner_(std::move(owner)), inner_(std::move(inner)), node_(std::move(node)) {}

  Status append(const void* data, std::size_t n) override {
    FaultFileSystem& o = *owner_;
    std::lock_guard lk(o.mu_);
    if (Status s = o.refuse_if_frozen_locked("write", path()); !s.ok()) return s;
    int err = 0;
    std::size_t writable = n;
    if (o.write_failures_ > 0) {
      --o.write_failures_;
      err = o.write_errno_;
      writable = o.write_partial_ ? n / 2 : 0;
    }
    if (o.free_space_ && writable > *o.free_space_) {
      err = ENOSPC;
      writable = static_cast<std::size_t>(*o.free_space_);
    }
    if (err != 0) {
      ++o.counters_.failed_writes;
      if (writable > 0 && inner_->append(data, writable).ok()) account_growth(writable);
      return Status::IoError("write", path().native(), err);
    }
    Status s = inner_->append(data, n);
    if (!s.ok()) return s;
    account_growth(n);
    ++o.counters_.appends;
    o.counters_.bytes_appended += n;
    return s;
  }

  Result<std::size_t> read_at(std::uint64_t offset, void* data, std::size_t n) override {
    return inner_->read_at(offset, data, n);
  }

  Status sync() override {
    FaultFileSystem& o = *owner_;
    std::unique_lock lk(o.mu_);
    if (o.hold_syncs_) {
      ++o.syncs_waiting_;
      o.sync_cv_.notify_all();
      o.sync_cv_.wait(lk, [&] { return !o.hold_syncs_; });
      --o.syncs_waiting_;
    }
    if (Status s = o.refuse_if_frozen_locked("fdatasync", path()); !s.ok()) return s;
    if (o.sync_failures_ > 0) {
      --o.sync_failures_;
      ++o.counters_.failed_syncs;
      // The dirty bytes are gone from the disk's point of view, for good.
      if (node_->live_size > node_->durable.size())
        node_->holes.emplace_back(node_->durable.size(), node_->live_size);
      return Status::IoError("fdatasync", path().native(), EIO);
    }
    // No real fdatasync: durability is what this model says, and the tests stay fast.
    auto bytes = read_all(*inner_);
    if (!bytes.ok()) return bytes.status();
    for (const auto& [from, to] : node_->holes) {
      for (std::uint64_t i = from; i < to && i < bytes->size(); ++i) (*bytes)[i] = '\0';
    }
    node_->durable = std::move(*bytes);
    ++o.counters_.syncs;
    return Status();
  }

  Status truncate(std::uint64_t size) override {
    FaultFileSystem& o = *owner_;
    std::lock_guard lk(o.mu_);
    if (Status s = o.refuse_if_frozen_locked("truncate", path()); !s.ok()) return s;
    Status s = inner_->truncate(size);
    if (!s.ok()) return s;
    if (size < node_->live_size && o.free_space_) *o.free_space_ += node_->live_size - size;
    node_->live_size = size;
    // Bytes written again past `size` are new pages: a lost writeback does not cover them.
    for (auto& [from, to] : node_->holes) to = std::min(to, std::max(from, size));
    return s;
  }

  Result<std::uint64_t> size() override { return inner_->size(); }
  const fs::path& path() const noexcept override { return inner_->path(); }

 private:
  void account_growth(std::uint64_t n) {
    node_->live_size += n;
    if (owner_->free_space_) *owner_->free_space_ -= std::min(n, *owner_->free_space_);
  }

  std::shared_ptr<FaultFileSystem> owner_;
  std::unique_ptr<File> inner_;
  std::shared_ptr<Node> node_;
};

std::shared_ptr<FaultFileSystem> FaultFileSystem::create(std::uint64_t seed) {
  return std::shared_ptr<FaultFileSystem>(new FaultFileSystem(seed));
}

FaultFileSystem::FaultFileSystem(std::uint64_t seed) : posix_(FileSystem::posix()), rng_(seed) {}

std::uint64_t FaultFileSystem::random_locked(std::uint64_t bound) {
  // splitmix64: small, and reproducible from the seed.
  std::uint64_t z = (rng_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return bound == UINT64_MAX ? z : z % (bound + 1);
}

Status FaultFileSystem::refuse_if_frozen_locked(const char* what, const fs::path& path) {
  if (!frozen_ && freeze_countdown_) {
    if (*freeze_countdown_ == 0) {
      frozen_ = true;
      freeze_countdown_.reset();
    } else {
      --*freeze_countdown_;
    }
  }
  if (!frozen_) return Status();
  ++counters_.refused_frozen;
  return Status::IoError(std::string(what) + " (simulated power loss)", path.native(), EIO);
}

// A file this object has not seen yet existed before it: it counts as durable as it is.
void FaultFileSystem::adopt_locked(const fs::path& path) {
  const fs::path k = key(path);
  if (live_.count(k) > 0) return;
  auto bytes = read_path(k);
  if (!bytes) return;  // not there (or unreadable): nothing to adopt
  auto node = std::make_shared<Node>();
  node->live_size = bytes->size();
  node->durable = std::move(*bytes);
  live_[k] = node;
  durable_[k] = node;
}

Result<std::unique_ptr<File>> FaultFileSystem::open(const fs::path& path, OpenMode mode) {
  std::lock_guard lk(mu_);
  const fs::path k = key(path);
  adopt_locked(k);
  auto it = live_.find(k);
  if (mode != OpenMode::read) {
    // Creating or emptying a file changes the disk.
    const bool mutates = it == live_.end() || mode == OpenMode::truncate;
    if (mutates) {
      if (Status s = refuse_if_frozen_locked("open", path); !s.ok()) return s;
    }
  }
  auto inner = posix_->open(path, mode);
  if (!inner.ok()) return inner.status();
  std::shared_ptr<Node> node;
  if (it != live_.end()) {
    node = it->second;
    if (mode == OpenMode::truncate) {
      if (free_space_) *free_space_ += node->live_size;
      node->live_size = 0;
      // As File::truncate(0): bytes written from now on are new pages, which a writeback
      // that failed before the truncation does not cover.
      node->holes.clear();
    }
  } else {
    node = std::make_shared<Node>();
    live_[k] = node;
  }
  return std::unique_ptr<File>(std::make_unique<FaultFile>(shared_from_this(), std::move(*inner), node));
}

Status FaultFileSystem::rename(const fs::path& from, const fs::path& to) {
  std::lock_guard lk(mu_);
  if (Status s = refuse_if_frozen_locked("rename", from); !s.ok()) return s;
  const fs::path kf = key(from), kt = key(to);
  adopt_locked(kf);
  adopt_locked(kt);
  Status s = posix_->rename(from, to);
  if (!s.ok()) return s;
  auto it = live_.find(kf);
  if (it != live_.end()) {
    auto old = live_.find(kt);
    if (old != live_.end() && old->second != it->second && free_space_) *free_space_ += old->second->live_size;
    live_[kt] = it->second;
    live_.erase(kf);
  }
  ++counters_.renames;
  return s;
}

Status FaultFileSystem::remove(const fs::path& path) {
  std::lock_guard lk(mu_);
  if (Status s = refuse_if_frozen_locked("unlink", path); !s.ok()) return s;
  const fs::path k = key(path);
  adopt_locked(k);
  Status s = posix_->remove(path);
  if (!s.ok()) return s;
  auto it = live_.find(k);
  if (it != live_.end()) {
    if (free_space_) *free_space_ += it->second->live_size;
    live_.erase(it);
  }
  ++counters_.removes;
  return s;
}

Result<std::vector<std::string>> FaultFileSystem::list(const fs::path& dir) { return posix_->list(dir); }

Status FaultFileSystem::create_directories(const fs::path& dir) {
  std::lock_guard lk(mu_);
  if (frozen_) return refuse_if_frozen_locked("mkdir", dir);
  return posix_->create_directories(dir);  // directories are not modelled: always durable
}

Status FaultFileSystem::sync_directory(const fs::path& dir) {
  std::lock_guard lk(mu_);
  if (Status s = refuse_if_frozen_locked("fsync directory", dir); !s.ok()) return s;
  if (dir_sync_failures_ > 0) {
    --dir_sync_failures_;
    return Status::IoError("fsync directory", dir.native(), EIO);
  }
  const fs::path d = key(dir);
  for (const auto& [p, node] : live_)
    if (p.parent_path() == d) durable_[p] = node;
  for (auto it = durable_.begin(); it != durable_.end();) {
    if (it->first.parent_path() == d && live_.count(it->first) == 0) {
      it = durable_.erase(it);
    } else {
      ++it;
    }
  }
  ++counters_.dir_syncs;
  return Status();
}

Result<std::unique_ptr<FileLock>> FaultFileSystem::lock(const fs::path& path) {
  std::lock_guard lk(mu_);
  if (frozen_) return refuse_if_frozen_locked("lock", path);
  return posix_->lock(path);  // the LOCK file is not modelled: its contents mean nothing
}

void FaultFileSystem::freeze() {
  std::lock_guard lk(mu_);
  frozen_ = true;
}

void FaultFileSystem::freeze_after(std::uint64_t n) {
  std::lock_guard lk(mu_);
  freeze_countdown_ = n;
}

bool FaultFileSystem::frozen() const {
  std::lock_guard lk(mu_);
  return frozen_;
}

void FaultFileSystem::crash(Unsynced unsynced) {
  std::lock_guard lk(mu_);
  // What each node holds now, for torn tails: read before anything is removed.
  std::map<Node*, std::string> now;
  if (unsynced == Unsynced::random_prefix) {
    for (const auto& [p, node] : live_)
      if (auto bytes = read_path(p)) now[node.get()] = std::move(*bytes);
  }
  std::set<fs::path> touched;
  for (const auto& e : live_) touched.insert(e.first);
  for (const auto& e : durable_) touched.insert(e.first);
  for (const fs::path& p : touched) {
    std::error_code ec;
    fs::remove(p, ec);
  }
  for (auto& [p, node] : durable_) {
    std::string bytes = node->durable;
    auto n = now.find(node.get());
    if (n != now.end() && n->second.size() > bytes.size() && n->second.compare(0, bytes.size(), bytes) == 0) {
      const std::uint64_t extra = random_locked(n->second.size() - bytes.size());
      bytes.append(n->second, bytes.size(), extra);
      node->durable = bytes;  // what reached the platter is durable from now on
    }
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    node->live_size = bytes.size();
    node->holes.clear();
  }
  live_ = durable_;
  frozen_ = false;
  freeze_countdown_.reset();
}

void FaultFileSystem::fail_writes(std::uint64_t n, int err, bool partial) {
  std::lock_guard lk(mu_);
  write_failures_ = n;
  write_errno_ = err;
  write_partial_ = partial;
}

void FaultFileSystem::set_free_space(std::optional<std::uint64_t> bytes) {
  std::lock_guard lk(mu_);
  free_space_ = bytes;
}

void FaultFileSystem::fail_syncs(std::uint64_t n) {
  std::lock_guard lk(mu_);
  sync_failures_ = n;
}

void FaultFileSystem::fail_dir_syncs(std::uint64_t n) {
  std::lock_guard lk(mu_);
  dir_sync_failures_ = n;
}

void FaultFileSystem::hold_syncs() {
  std::lock_guard lk(mu_);
  hold_syncs_ = true;
}

void FaultFileSystem::release_syncs() {
  std::lock_guard lk(mu_);
  hold_syncs_ = false;
  sync_cv_.notify_all();
}

std::uint64_t FaultFileSystem::syncs_waiting() const {
  std::lock_guard lk(mu_);
  return syncs_waiting_;
}

void FaultFileSystem::heal() {
  std::lock_guard lk(mu_);
  hold_syncs_ = false;
  sync_cv_.notify_all();
  write_failures_ = 0;
  free_space_.reset();
  sync_failures_ = 0;
  dir_sync_failures_ = 0;
}

FaultCounters FaultFileSystem::counters() const {
  std::lock_guard lk(mu_);
  return counters_;
}

std::optional<std::string> FaultFileSystem::durable_contents(const fs::path& path) const {
  std::lock_guard lk(mu_);
  auto it = durable_.find(key(path));
  if (it == durable_.end()) return std::nullopt;
  return it->second->durable;
}

Options fault_options(const std::filesystem::path& dir, std::shared_ptr<FaultFileSystem> ffs) {
  Options o;
  o.directory = dir;
  o.file_system = std::move(ffs);
  o.max_memory_bytes = 1024;
  o.max_disk_bytes = 1 << 20;
  o.segment_bytes = 8 << 10;
  o.page_bytes = 512;
  o.when_full = FullPolicy::fail;
  return o;
}

}  // namespace hopper::test
