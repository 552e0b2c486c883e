// Core's compression helpers (Options::compression_threads): threads of the queue's own
// that take sealed pages off the senders' threads — compressing them and appending them,
// in order, through the same writer token and compress-ahead claims the senders use
// (core_spill.cpp). Off by default: without them no thread of the queue's own exists.
#include <hopper/detail/core.hpp>

#include <string>
#include <system_error>
#include <thread>

#include "engine/core_rooms.hpp"
#include "engine/spill_pipeline.hpp"

namespace hopper::detail {

Status Core::start_helpers() {
  const std::uint32_t count = compression_helpers(opt_);
  if (count == 0) return Status();
  helpers_ = std::make_unique<Helpers>();
  {
    MutexLock lk(mu_);
    helping_ = true;
  }
  for (std::uint32_t i = 0; i < count; ++i) {
    try {
      helpers_->threads.emplace_back([this] { help(); });
    } catch (const std::system_error& e) {
      stop_helpers();
      return Status(Errc::io_error, "Options::compression_threads is " + std::to_string(opt_.compression_threads) +
                                        ": thread " + std::to_string(i + 1) + " could not be started: " + e.what());
    }
  }
  return Status();
}

void Core::stop_helpers() {
  if (!helpers_) return;
  {
    MutexLock lk(mu_);
    helping_ = false;
    helper_cv_.notify_all();
  }
  for (std::thread& t : helpers_->threads) t.join();
  helpers_->threads.clear();
}

void Core::help() {
  MutexLock lk(mu_);
  while (helping_) {
    if (write_sealed()) continue;
    // Nothing this thread can do now: no sealed page, or every one claimed and the token
    // taken, or a failed write's back-off running — then until its retry is due.
    ++helpers_idle_;
    const Clock::time_point retry = rooms_->pipeline.next_retry();
    if (retry == Clock::time_point::max()) {
      helper_cv_.wait(mu_);
    } else {
      (void)helper_cv_.wait_until(mu_, retry);
    }
    --helpers_idle_;
  }
}

}  // namespace hopper::detail
