// HookFileSystem: a FileSystem that forwards every call to another one, first asking a
// hook, which may fail the call, hold it at a Gate, or let it through. Lets a regression
// test put a fault or a pause exactly where the bug needs one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <hopper/file_system.hpp>

#include "forwarding_fs.hpp"
#include "sim_fs.hpp"

namespace hopper::test {

// Thread-safe: the hook may be replaced while calls run (each call reads it under a lock,
// then runs it without), and must itself be thread-safe.
class HookFileSystem final : public ForwardingFileSystem {
 public:
  // Called before the call it names, with the path and, for append and read, the byte
  // count. A non-ok Status is returned instead of making the call.
  using Hook = std::function<Status(SimOp, const std::filesystem::path&, std::size_t bytes)>;

  explicit HookFileSystem(std::shared_ptr<FileSystem> base) : ForwardingFileSystem(std::move(base)) {}

  void set_hook(Hook hook) {
    std::lock_guard lk(mu_);
    hook_ = std::make_shared<const Hook>(std::move(hook));
  }

  Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) override {
    if (Status s = ask(SimOp::open, path, 0); !s.ok()) return s;
    return open_wrapped<HookFile>(path, mode, *this);
  }
  Status rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    if (Status s = ask(SimOp::rename, from, 0); !s.ok()) return s;
    return ForwardingFileSystem::rename(from, to);
  }
  Status remove(const std::filesystem::path& path) override {
    if (Status s = ask(SimOp::remove, path, 0); !s.ok()) return s;
    return ForwardingFileSystem::remove(path);
  }
  Result<std::vector<std::string>> list(const std::filesystem::path& dir) override {
    if (Status s = ask(SimOp::list, dir, 0); !s.ok()) return s;
    return ForwardingFileSystem::list(dir);
  }
  Status create_directories(const std::filesystem::path& dir) override {
    if (Status s = ask(SimOp::mkdir, dir, 0); !s.ok()) return s;
    return ForwardingFileSystem::create_directories(dir);
  }
  Status sync_directory(const std::filesystem::path& dir) override {
    if (Status s = ask(SimOp::dir_sync, dir, 0); !s.ok()) return s;
    return ForwardingFileSystem::sync_directory(dir);
  }
  Result<std::unique_ptr<FileLock>> lock(const std::filesystem::path& path) override {
    if (Status s = ask(SimOp::lock, path, 0); !s.ok()) return s;
    return ForwardingFileSystem::lock(path);
  }

 private:
  class HookFile final : public ForwardingFile {
   public:
    HookFile(std::unique_ptr<File> f, HookFileSystem& fs) : ForwardingFile(std::move(f)), fs_(fs) {}
    Status append(const void* data, std::size_t n) override {
      if (Status s = fs_.ask(SimOp::append, path(), n); !s.ok()) return s;
      return ForwardingFile::append(data, n);
    }
    Result<std::size_t> read_at(std::uint64_t offset, void* data, std::size_t n) override {
      if (Status s = fs_.ask(SimOp::read, path(), n); !s.ok()) return s;
      return ForwardingFile::read_at(offset, data, n);
    }
    Status sync() override {
      if (Status s = fs_.ask(SimOp::sync, path(), 0); !s.ok()) return s;
      return ForwardingFile::sync();
    }
    Status truncate(std::uint64_t size) override {
      if (Status s = fs_.ask(SimOp::truncate, path(), 0); !s.ok()) return s;
      return ForwardingFile::truncate(size);
    }

   private:
    HookFileSystem& fs_;
  };

  Status ask(SimOp op, const std::filesystem::path& path, std::size_t bytes) {
    std::shared_ptr<const Hook> hook;
    {
      std::lock_guard lk(mu_);
      hook = hook_;
    }
    return hook && *hook ? (*hook)(op, path, bytes) : Status();
  }

  std::mutex mu_;
  std::shared_ptr<const Hook> hook_;
};

// A place where a thread can be held until the test lets it go: hold() blocks the caller,
// entered() tells the test it is there. Thread-safe. Release before destroying.
class Gate {
 public:
  void hold() {
    std::unique_lock lk(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lk, [&] { return released_; });
  }
  // Waits until `n` threads have entered; false if they did not within `limit`.
  bool wait_entered(int n = 1, std::chrono::seconds limit = std::chrono::seconds(30)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, limit, [&] { return entered_ >= n; });
  }
  void release() {
    std::lock_guard lk(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool released_ = false;
};

}  // namespace hopper::test
