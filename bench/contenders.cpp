#include "contenders.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include "classic_queue.hpp"

#include "measure.hpp"

namespace hopper::bench {

double zstd_limit_seconds(std::string_view pool, std::uint64_t total_bytes, std::size_t chunk_bytes, int level,
                          std::uint64_t& compressed) {
  if (pool.size() < chunk_bytes) throw std::invalid_argument("zstd limit: the pool is smaller than one chunk");
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  std::string out(ZSTD_compressBound(chunk_bytes), '\0');
  compressed = 0;
  std::size_t offset = 0;
  const Clock::time_point t0 = Clock::now();
  for (std::uint64_t done = 0; done < total_bytes;) {
    if (offset + chunk_bytes > pool.size()) offset = 0;
    const std::size_t n = std::min<std::uint64_t>(chunk_bytes, total_bytes - done);
    const std::size_t r = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), pool.data() + offset, n, level);
    if (ZSTD_isError(r)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(r));
    compressed += r;
    offset += n;
    done += n;
  }
  return seconds_since(t0);
}

double fdatasync_limit_seconds(const std::filesystem::path& dir, std::uint64_t items, std::size_t record_bytes,
                               bool preallocated, bool with_receiver) {
  const auto path = dir / "fdatasync-limit.dat";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path.native());
  // Preallocated: the whole file reserved first (outside the timing; fallocate, so the
  // file's size is already final and no fdatasync records a new one), then written in place.
  if (preallocated && ::fallocate(fd, 0, 0, static_cast<off_t>(items * record_bytes)) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), "fallocate " + path.native());
  }
  const std::string record(record_bytes, 'x');
  ClassicQueue<std::string> handed(std::uint64_t{1} << 30);
  std::uint64_t received = 0;
  std::thread receiver;
  if (with_receiver) {
    handed.open_producer();
    receiver = std::thread([&] {
      for (std::string r; handed.pop(r);) ++received;
    });
  }
  const Clock::time_point t0 = Clock::now();
  int err = 0;
  for (std::uint64_t i = 0; i < items && err == 0; ++i) {
    const off_t at = static_cast<off_t>(i * record_bytes);
    if (::pwrite(fd, record.data(), record.size(), at) != static_cast<ssize_t>(record.size()) || ::fdatasync(fd) != 0)
      err = errno;
    else if (with_receiver)
      handed.push(std::string(record));
  }
  const double secs = seconds_since(t0);
  if (with_receiver) {
    handed.close_producer();
    receiver.join();
    if (err == 0 && received != items) err = EIO;  // the receiver lost records: the bench is broken
  }
  ::close(fd);
  std::filesystem::remove(path);
  if (err != 0) throw std::system_error(err, std::generic_category(), "write+fdatasync " + path.native());
  return secs;
}

}  // namespace hopper::bench
