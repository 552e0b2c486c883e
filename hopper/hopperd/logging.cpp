#include "hopperd/logging.hpp"

#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace hopperd {
namespace {

// A file sink that can be reopened in place (spdlog's basic_file_sink cannot). Thread-safe
// through base_sink's mutex.
class ReopenableFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopenableFileSink(const std::string& path) { file_.open(path, false); }
  void reopen() {
    std::lock_guard<std::mutex> lk(mutex_);
    file_.reopen(false);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    file_.write(formatted);
    // Operators tail this file; warnings should not sit in a buffer.
    if (msg.level >= spdlog::level::warn) file_.flush();
  }
  void flush_() override { file_.flush(); }

 private:
  spdlog::details::file_helper file_;
};

}  // namespace

hopper::Result<std::shared_ptr<spdlog::logger>> make_logger(const std::string& file, const std::string& level) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    return hopper::Status(hopper::Errc::invalid_argument, "log level \"" + level + "\" is not a level");
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (file.empty() || file == "-") {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {
      sink = std::make_shared<ReopenableFileSink>(file);
    } catch (const spdlog::spdlog_ex& e) {
      return hopper::Status(hopper::Errc::io_error, "log file " + file + ": " + e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("hopperd", std::move(sink));
  logger->set_level(lvl);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  logger->flush_on(spdlog::level::info);
  return logger;
}

void reopen_log(spdlog::logger& logger) {
  for (auto& sink : logger.sinks()) {
    if (auto* f = dynamic_cast<ReopenableFileSink*>(sink.get())) {
      try {
        f->reopen();
      } catch (const spdlog::spdlog_ex& e) {
        // Keep logging to the old descriptor; say so where it still goes.
        logger.error("SIGHUP: cannot reopen the log file: {}", e.what());
      }
    }
  }
}

bool RateLimit::allow(std::uint64_t& suppressed) {
  std::lock_guard lk(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (any_ && now - last_ < interval_) {
    ++held_;
    return false;
  }
  any_ = true;
  last_ = now;
  suppressed = held_;
  held_ = 0;
  return true;
}

}  // namespace hopperd
