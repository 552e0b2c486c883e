#include "memory_file_system.hpp"

#include <cerrno>

namespace hopper::fuzz {

namespace fs = std::filesystem;

namespace {

std::string key(const fs::path& p) {
  std::string k = p.lexically_normal().generic_string();
  while (k.size() > 1 && k.back() == '/') k.pop_back();
  return k;
}

std::string parent_key(const std::string& k) { return key(fs::path(k).parent_path()); }

}  // namespace

struct MemoryFileSystem::State {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<std::string>> files;  // [mu] path -> contents
  std::set<std::string> dirs{"/"};                            // [mu]
  std::set<std::string> locked;                               // [mu]
};

namespace {

using State = MemoryFileSystem::State;

// One open file: its contents stay reachable after an unlink, as with a descriptor.
class MemoryFile final : public File {
 public:
  MemoryFile(std::shared_ptr<State> st, std::shared_ptr<std::string> bytes, fs::path path, bool writable)
      : st_(std::move(st)), bytes_(std::move(bytes)), path_(std::move(path)), writable_(writable) {}

  Status append(const void* data, std::size_t n) override {
    if (!writable_) return Status::FromErrno("write", path_.native(), EBADF);
    std::lock_guard lk(st_->mu);
    bytes_->append(static_cast<const char*>(data), n);
    return Status();
  }
  Result<std::size_t> read_at(std::uint64_t offset, void* data, std::size_t n) override {
    std::lock_guard lk(st_->mu);
    if (offset >= bytes_->size()) return std::size_t{0};
    const std::size_t got = std::min<std::uint64_t>(n, bytes_->size() - offset);
    bytes_->copy(static_cast<char*>(data), got, offset);
    return got;
  }
  Status sync() override { return Status(); }
  Status truncate(std::uint64_t size) override {
    if (!writable_) return Status::FromErrno("truncate", path_.native(), EINVAL);
    std::lock_guard lk(st_->mu);
    bytes_->resize(size, '\0');
    return Status();
  }
  Result<std::uint64_t> size() override {
    std::lock_guard lk(st_->mu);
    return static_cast<std::uint64_t>(bytes_->size());
  }
  const fs::path& path() const noexcept override { return path_; }

 private:
  std::shared_ptr<State> st_;
  std::shared_ptr<std::string> bytes_;
  fs::path path_;
  bool writable_;
};

class MemoryLock final : public FileLock {
 public:
  MemoryLock(std::shared_ptr<State> st, std::string k) : st_(std::move(st)), key_(std::move(k)) {}
  ~MemoryLock() override {
    std::lock_guard lk(st_->mu);
    st_->locked.erase(key_);
  }

 private:
  std::shared_ptr<State> st_;
  std::string key_;
};

}  // namespace

MemoryFileSystem::MemoryFileSystem() : state_(std::make_shared<State>()) {}
MemoryFileSystem::~MemoryFileSystem() = default;

Result<std::unique_ptr<File>> MemoryFileSystem::open(const fs::path& path, OpenMode mode) {
  const std::string k = key(path);
  std::lock_guard lk(state_->mu);
  if (state_->dirs.count(k)) return Status::FromErrno("open", path.native(), EISDIR);
  auto it = state_->files.find(k);
  if (it == state_->files.end()) {
    if (mode == OpenMode::read) return Status::FromErrno("open", path.native(), ENOENT);
    if (!state_->dirs.count(parent_key(k))) return Status::FromErrno("open", path.native(), ENOENT);
    it = state_->files.emplace(k, std::make_shared<std::string>()).first;
  } else if (mode == OpenMode::truncate) {
    it->second->clear();
  }
  return std::unique_ptr<File>(std::make_unique<MemoryFile>(state_, it->second, path, mode != OpenMode::read));
}

Status MemoryFileSystem::rename(const fs::path& from, const fs::path& to) {
  const std::string f = key(from), t = key(to);
  std::lock_guard lk(state_->mu);
  auto it = state_->files.find(f);
  if (it == state_->files.end()) return Status::FromErrno("rename to " + to.native() + " from", from.native(), ENOENT);
  if (!state_->dirs.count(parent_key(t))) return Status::FromErrno("rename to " + to.native() + " from", from.native(), ENOENT);
  auto bytes = it->second;
  state_->files.erase(it);
  state_->files[t] = std::move(bytes);
  return Status();
}

Status MemoryFileSystem::remove(const fs::path& path) {
  std::lock_guard lk(state_->mu);
  if (state_->files.erase(key(path)) == 0) return Status::FromErrno("unlink", path.native(), ENOENT);
  return Status();
}

Result<std::vector<std::string>> MemoryFileSystem::list(const fs::path& dir) {
  const std::string d = key(dir);
  std::lock_guard lk(state_->mu);
  if (!state_->dirs.count(d)) return Status::FromErrno("opendir", dir.native(), ENOENT);
  std::vector<std::string> names;
  for (const auto& [k, bytes] : state_->files)
    if (parent_key(k) == d) names.push_back(fs::path(k).filename().string());
  for (const auto& k : state_->dirs)
    if (k != d && parent_key(k) == d) names.push_back(fs::path(k).filename().string());
  return names;
}

Status MemoryFileSystem::create_directories(const fs::path& dir) {
  std::lock_guard lk(state_->mu);
  for (std::string k = key(dir);; k = parent_key(k)) {
    if (state_->files.count(k)) return Status::FromErrno("mkdir", dir.native(), ENOTDIR);
    state_->dirs.insert(k);
    if (k == "/" || k == "." || k.empty() || parent_key(k) == k) break;
  }
  return Status();
}

Status MemoryFileSystem::sync_directory(const fs::path& dir) {
  std::lock_guard lk(state_->mu);
  if (!state_->dirs.count(key(dir))) return Status::FromErrno("open directory", dir.native(), ENOENT);
  return Status();
}

Result<std::unique_ptr<FileLock>> MemoryFileSystem::lock(const fs::path& path) {
  const std::string k = key(path);
  std::lock_guard lk(state_->mu);
  if (!state_->files.count(k)) {
    if (!state_->dirs.count(parent_key(k))) return Status::FromErrno("open", path.native(), ENOENT);
    state_->files.emplace(k, std::make_shared<std::string>());
  }
  if (!state_->locked.insert(k).second) return Status(Errc::locked, path.native() + " is held by another handle");
  return std::unique_ptr<FileLock>(std::make_unique<MemoryLock>(state_, k));
}

void MemoryFileSystem::put(const fs::path& path, std::string bytes) {
  (void)create_directories(path.parent_path());
  std::lock_guard lk(state_->mu);
  state_->files[key(path)] = std::make_shared<std::string>(std::move(bytes));
}

bool MemoryFileSystem::get(const fs::path& path, std::string& bytes) const {
  std::lock_guard lk(state_->mu);
  auto it = state_->files.find(key(path));
  if (it == state_->files.end()) return false;
  bytes = *it->second;
  return true;
}

std::vector<std::string> MemoryFileSystem::file_names(const fs::path& dir) const {
  const std::string d = key(dir);
  std::lock_guard lk(state_->mu);
  std::vector<std::string> names;
  for (const auto& [k, bytes] : state_->files)
    if (parent_key(k) == d) names.push_back(fs::path(k).filename().string());
  return names;
}

MemoryFileSystem::Snapshot MemoryFileSystem::snapshot() const {
  std::lock_guard lk(state_->mu);
  Snapshot s;
  for (const auto& [k, bytes] : state_->files) s[k] = *bytes;
  return s;
}

void MemoryFileSystem::restore(const Snapshot& s) {
  std::lock_guard lk(state_->mu);
  state_->files.clear();
  for (const auto& [k, bytes] : s) state_->files[k] = std::make_shared<std::string>(bytes);
}

}  // namespace hopper::fuzz
