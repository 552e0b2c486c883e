// Logging for hopperd: one spdlog logger to stderr or to a file that SIGHUP reopens (for
// logrotate), and a limiter for warnings that bad input could otherwise repeat endlessly.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <spdlog/spdlog.h>

#include <hopper/status.hpp>

namespace hopperd {

// Builds the logger: `file` empty means stderr. io_error naming the file if it cannot be
// opened for appending; invalid_argument for an unknown level.
hopper::Result<std::shared_ptr<spdlog::logger>> make_logger(const std::string& file, const std::string& level);

// Closes and reopens the log file of `logger` (a no-op for stderr). Thread-safe.
void reopen_log(spdlog::logger& logger);

// Lets one warning through per interval and counts what it held back, so the next one can
// say "(N more since)". Thread-safe.
class RateLimit {
 public:
  explicit RateLimit(std::chrono::steady_clock::duration interval = std::chrono::seconds(10)) : interval_(interval) {}
  // True when this occurrence should be logged; `suppressed` is set to how many were not
  // logged since the last one that was.
  bool allow(std::uint64_t& suppressed);

 private:
  std::mutex mu_;
  std::chrono::steady_clock::duration interval_;
  std::chrono::steady_clock::time_point last_{};
  bool any_ = false;
  std::uint64_t held_ = 0;
};

}  // namespace hopperd
