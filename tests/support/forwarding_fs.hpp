// ForwardingFileSystem and ForwardingFile: a FileSystem (and a File) that passes every call
// to an inner one. A fake that changes a few calls derives from them and overrides just
// those; everything else reaches the inner file system unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <hopper/file_system.hpp>

namespace hopper::test {

// As thread-safe as the file it wraps (a queue uses each File from one thread at a time).
class ForwardingFile : public File {
 public:
  explicit ForwardingFile(std::unique_ptr<File> inner) : inner_(std::move(inner)) {}

  Status append(const void* data, std::size_t n) override { return inner_->append(data, n); }
  Result<std::size_t> read_at(std::uint64_t offset, void* data, std::size_t n) override {
    return inner_->read_at(offset, data, n);
  }
  Status sync() override { return inner_->sync(); }
  Status truncate(std::uint64_t size) override { return inner_->truncate(size); }
  Result<std::uint64_t> size() override { return inner_->size(); }
  Status preallocate(std::uint64_t size) override { return inner_->preallocate(size); }
  const std::filesystem::path& path() const noexcept override { return inner_->path(); }

 private:
  std::unique_ptr<File> inner_;
};

// As thread-safe as the inner file system (the POSIX one by default), plus whatever a
// derived class adds.
class ForwardingFileSystem : public FileSystem {
 public:
  explicit ForwardingFileSystem(std::shared_ptr<FileSystem> inner = FileSystem::posix()) : inner_(std::move(inner)) {}

  Result<std::unique_ptr<File>> open(const std::filesystem::path& path, OpenMode mode) override {
    return inner_->open(path, mode);
  }
  Status rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    return inner_->rename(from, to);
  }
  Status remove(const std::filesystem::path& path) override { return inner_->remove(path); }
  Result<std::vector<std::string>> list(const std::filesystem::path& dir) override { return inner_->list(dir); }
  Status create_directories(const std::filesystem::path& dir) override { return inner_->create_directories(dir); }
  Status sync_directory(const std::filesystem::path& dir) override { return inner_->sync_directory(dir); }
  Result<std::unique_ptr<FileLock>> lock(const std::filesystem::path& path) override { return inner_->lock(path); }

 protected:
  // open() of the inner file system with each file wrapped as `Wrapper(file, args...)`:
  // for fakes that change what a file does.
  template <class Wrapper, class... Args>
  Result<std::unique_ptr<File>> open_wrapped(const std::filesystem::path& path, OpenMode mode, Args&&... args) {
    auto f = inner_->open(path, mode);
    if (!f.ok()) return f.status();
    return std::unique_ptr<File>(std::make_unique<Wrapper>(std::move(*f), std::forward<Args>(args)...));
  }

 private:
  std::shared_ptr<FileSystem> inner_;
};

}  // namespace hopper::test
