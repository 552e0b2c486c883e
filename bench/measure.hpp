// Measuring tools shared by the benchmark programs: clocks, medians, process resources
// (resident memory, open files) and scratch directories.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace hopper::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median, minimum and maximum of a set of repetitions.
struct Spread {
  double median = 0;
  double min = 0;
  double max = 0;
  // (max - min) / median: how much the repetitions disagreed.
  double relative() const { return median > 0 ? (max - min) / median : 0; }
};
Spread spread_of(std::vector<double> values);

// Resident memory of this process, from /proc/self/status.
std::uint64_t rss_bytes();
std::uint64_t peak_rss_bytes();
// Restarts the peak (VmHWM) from the current RSS, so a run's own peak can be read after it.
// False where the kernel does not allow it (then peaks include what came before).
bool reset_peak_rss();
// Gives freed heap pages back to the kernel, so RSS baselines are not inflated by what
// earlier runs freed.
void trim_heap();
// Entries in /proc/self/fd.
int open_files();
// Bytes of the regular files under `dir` (recursively).
std::uint64_t directory_bytes(const std::filesystem::path& dir);

// Samples open_files() every few milliseconds on a thread of its own and keeps the
// maximum. Thread-safe: start and stop from one thread; max() after stop().
class FileCountSampler {
 public:
  FileCountSampler();
  ~FileCountSampler();
  FileCountSampler(const FileCountSampler&) = delete;
  FileCountSampler& operator=(const FileCountSampler&) = delete;
  // The largest count seen, the sampler's own directory handle excluded.
  int stop();

 private:
  // Relaxed is enough: stop() joins the sampler thread before reading max_, and the join
  // orders every store the thread made before it.
  std::atomic<bool> stop_{false};
  std::atomic<int> max_{0};
  std::thread thread_;
};

// A fresh directory under `parent`, removed with everything in it when destroyed.
// Not thread-safe (one owner).
class ScratchDir {
 public:
  ScratchDir(const std::filesystem::path& parent, const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// CPU seconds used so far by the whole machine (all cores, from /proc/stat) and by this
// process (getrusage): the difference over an interval is what others used meanwhile.
double machine_cpu_seconds();
double process_cpu_seconds();

// Cores other processes kept busy over `seconds`, from the machine's and this process's CPU
// seconds over the same interval; clamped to [0, cores] (the clock ticks are 10 ms, so very
// short intervals are rough).
double others_cores(double machine_cpu, double own_cpu, double seconds);

// Measures how many cores other processes keep busy, over `window`.
double others_busy_cores(std::chrono::milliseconds window);

// Waits (up to `max_wait`) until other processes use less than `threshold` cores, so a run
// does not start in the middle of someone else's build. Returns the last reading.
double wait_for_quiet(double threshold, std::chrono::seconds max_wait);

// How long a cache line takes to go from one core to another, one way, in ns: two threads
// pinned to the first two CPUs hand a counter back and forth. Every shared write of a
// queue (a lock, a ticket) pays it whenever the other core wrote last; on a virtual
// machine it depends on where the host placed the vCPUs (measured 157 ns on the second
// machine one day, when the lane ran at a third of its rate of the session before). 0 with
// fewer than two CPUs or when pinning is refused.
double core_to_core_ns();

// "1.23 M", "456 k": figures for a table.
std::string human(double value);

}  // namespace hopper::bench
