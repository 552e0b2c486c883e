// What a line costs in an output's queue, and how old the oldest undelivered line is.
//
// Include this instead of <hopper/hopper.hpp> in hopperd: the footprint below must be seen
// before any queue of lines is instantiated.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include <hopper/footprint.hpp>

// Without it, the library's own Queue<std::string> (compiled with the default footprint)
// would be used, whatever this file says: lines charged 93 bytes for 144 of heap, and the
// budget held half as much again (found in the memory benchmark; hopper/CMakeLists.txt
// defines it for every file of hopperd).
#ifndef HOPPER_NO_EXTERN_STRING_QUEUE
#error "hopperd must be compiled with HOPPER_NO_EXTERN_STRING_QUEUE (see include/hopper/channel.hpp)"
#endif

namespace hopper {

// A line's footprint is what it really costs the process, not only its characters: the
// queue's slot for it (a std::variant of the string and two counters, in a std::deque's
// 512-byte blocks: 64 bytes with the blocks' share) and, for a line too long for the
// string's inline buffer (15 bytes in libstdc++), glibc's heap chunk (the capacity plus
// the terminating zero and an 8-byte header, rounded up to 16, at least 32). Measured
// against the heap: docs/operations.md, "Memory". With the library's default (the string
// object and its capacity) a 64 MiB budget held about 100 MiB of heap.
template <>
struct Footprint<std::string> {
  static constexpr std::uint64_t kSlot = 64;
  static std::uint64_t of(const std::string& s) noexcept {
    const auto* data = reinterpret_cast<const unsigned char*>(s.data());
    const auto* self = reinterpret_cast<const unsigned char*>(&s);
    if (data >= self && data < self + sizeof(s)) return kSlot;
    const std::uint64_t chunk = (s.capacity() + 1 + 8 + 15) & ~std::uint64_t{15};
    return kSlot + (chunk < 32 ? 32 : chunk);
  }
};

}  // namespace hopper

#include <hopper/hopper.hpp>

namespace hopperd {

// Returns the heap that freed memory left mapped to the kernel (after a backlog drained;
// egress.cpp).
void give_back_memory() noexcept;

// The age of an output's oldest undelivered line, from samples of how many lines had been
// accepted by when. Lines leave a queue in the order they came, so the oldest undelivered
// one is the first that the count of lines done with (delivered, rejected, dropped) has not
// passed. An over-estimate by at most the sampling interval (1 s); lines recovered from
// disk at start count as old as the start. Not thread-safe: the I/O thread queues lines
// and renders metrics and health.
class BacklogClock {
 public:
  using Clock = std::chrono::steady_clock;

  void start(std::uint64_t recovered, Clock::time_point now) {
    samples_.clear();
    accepted_ = recovered;
    if (recovered > 0) samples_.push_back({recovered, now});
  }
  void accepted(std::uint64_t lines, Clock::time_point now) {
    accepted_ += lines;
    if (!samples_.empty() && now - samples_.back().since < std::chrono::seconds(1)) {
      samples_.back().end = accepted_;
      return;
    }
    samples_.push_back({accepted_, now});
    if (samples_.size() > 8192) thin();
  }
  // Seconds since the oldest line not yet done with was accepted; 0 when there is none.
  double age(std::uint64_t done, Clock::time_point now) {
    while (!samples_.empty() && samples_.front().end <= done) samples_.pop_front();
    if (samples_.empty()) return 0;
    return std::chrono::duration<double>(now - samples_.front().since).count();
  }

 private:
  // Lines (previous end, end] were accepted from `since` on.
  struct Sample {
    std::uint64_t end;
    Clock::time_point since;
  };
  // A long outage: halve the resolution (each pair keeps its earlier time).
  void thin() {
    std::deque<Sample> out;
    for (std::size_t i = 0; i < samples_.size(); i += 2) {
      Sample s = samples_[i];
      if (i + 1 < samples_.size()) s.end = samples_[i + 1].end;
      out.push_back(s);
    }
    samples_.swap(out);
  }
  std::deque<Sample> samples_;
  std::uint64_t accepted_ = 0;
};

}  // namespace hopperd
