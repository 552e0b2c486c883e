// The POSIX implementation of the FileSystem seam.
#include <hopper/file_system.hpp>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hopper {
namespace {

namespace fs = std::filesystem;

// Owns one descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

class PosixFile final : public File {
 public:
  PosixFile(Fd fd, fs::path path) : fd_(std::move(fd)), path_(std::move(path)) {}

  Status append(const void* data, std::size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      // O_APPEND until preallocate(): then at end_, the end of what was appended.
      ssize_t w = end_ ? ::pwrite(fd_.get(), p, n, static_cast<off_t>(*end_)) : ::write(fd_.get(), p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::IoError("write", path_.native(), errno);
      }
      p += w;
      n -= static_cast<std::size_t>(w);
      if (end_) *end_ += static_cast<std::uint64_t>(w);
    }
    return Status();
  }

  Status preallocate(std::uint64_t size) override {
    if (!end_) {
      // From now on this file writes at an offset of its own: O_APPEND would write past
      // the reserved room.
      struct stat st {};
      if (::fstat(fd_.get(), &st) != 0) return Status::IoError("stat", path_.native(), errno);
      const int flags = ::fcntl(fd_.get(), F_GETFL);
      if (flags < 0 || ::fcntl(fd_.get(), F_SETFL, flags & ~O_APPEND) != 0)
        return Status::IoError("fcntl", path_.native(), errno);
      end_ = static_cast<std::uint64_t>(st.st_size);
    }
    if (size <= *end_) return Status();
#if defined(__linux__)
    while (::fallocate(fd_.get(), 0, static_cast<off_t>(*end_), static_cast<off_t>(size - *end_)) != 0) {
      if (errno != EINTR) return Status::IoError("fallocate", path_.native(), errno);
    }
    return Status();
#else
    return Status::IoError("fallocate", path_.native(), EOPNOTSUPP);
#endif
  }

  Result<std::size_t> read_at(std::uint64_t offset, void* data, std::size_t n) override {
    char* p = static_cast<char*>(data);
    std::size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd_.get(), p + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::IoError("read", path_.native(), errno);
      }
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

  Status sync() override {
    while (::fdatasync(fd_.get()) != 0) {
      if (errno != EINTR) return Status::IoError("fdatasync", path_.native(), errno);
    }
    return Status();
  }

  Status truncate(std::uint64_t size) override {
    while (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      if (errno != EINTR) return Status::IoError("truncate", path_.native(), errno);
    }
    if (end_) end_ = size;
    return Status();
  }

  Result<std::uint64_t> size() override {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return Status::IoError("stat", path_.native(), errno);
    return static_cast<std::uint64_t>(st.st_size);
  }

  const fs::path& path() const noexcept override { return path_; }

 private:
  Fd fd_;
  fs::path path_;
  // Where append() writes once preallocate() was called (until then O_APPEND decides).
  std::optional<std::uint64_t> end_;
};

class PosixLock final : public FileLock {
 public:
  explicit PosixLock(Fd fd) : fd_(std::move(fd)) {}
  ~PosixLock() override { ::flock(fd_.get(), LOCK_UN); }

 private:
  Fd fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  Result<std::unique_ptr<File>> open(const fs::path& path, OpenMode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::read: flags |= O_RDONLY; break;
      case OpenMode::append: flags |= O_RDWR | O_CREAT | O_APPEND; break;
      case OpenMode::truncate: flags |= O_RDWR | O_CREAT | O_APPEND | O_TRUNC; break;
    }
    int fd;
    do {
      fd = ::open(path.c_str(), flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return Status::FromErrno("open", path.native(), errno);
    return std::unique_ptr<File>(std::make_unique<PosixFile>(Fd(fd), path));
  }

  Status rename(const fs::path& from, const fs::path& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      return Status::FromErrno("rename to " + to.native() + " from", from.native(), errno);
    return Status();
  }

  Status remove(const fs::path& path) override {
    if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink", path.native(), errno);
    return Status();
  }

  Result<std::vector<std::string>> list(const fs::path& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Status::FromErrno("opendir", dir.native(), errno);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
      std::string_view n(e->d_name);
      if (n != "." && n != "..") names.emplace_back(n);
      errno = 0;
    }
    const int err = errno;
    ::closedir(d);
    if (err != 0) return Status::IoError("readdir", dir.native(), err);
    return names;
  }

  Status create_directories(const fs::path& dir) override {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Status::IoError("mkdir", dir.native(), ec.value());
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return Status::IoError("stat", dir.native(), errno);
    if (!S_ISDIR(st.st_mode)) return Status::IoError("mkdir", dir.native(), ENOTDIR);
    return Status();
  }

  Status sync_directory(const fs::path& dir) override {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) return Status::IoError("open directory", dir.native(), errno);
    if (::fsync(fd.get()) != 0) return Status::IoError("fsync directory", dir.native(), errno);
    return Status();
  }

  Result<std::unique_ptr<FileLock>> lock(const fs::path& path) override {
    Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.get() < 0) return Status::IoError("open", path.native(), errno);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK)
        return Status(Errc::locked, path.native() + " is held by another process or handle");
      return Status::IoError("flock", path.native(), errno);
    }
    // The holder's pid, for operators (hopper inspect). Informational only: the flock is
    // what excludes, so a failure to write it is not an error.
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd.get(), 0) == 0) (void)!::pwrite(fd.get(), pid.data(), pid.size(), 0);
    return std::unique_ptr<FileLock>(std::make_unique<PosixLock>(std::move(fd)));
  }
};

}  // namespace

std::shared_ptr<FileSystem> FileSystem::posix() {
  static const std::shared_ptr<FileSystem> instance = std::make_shared<PosixFileSystem>();
  return instance;
}

}  // namespace hopper
