#include "measure.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

namespace hopper::bench {

Spread spread_of(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  s.median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.min = v.front();
  s.max = v.back();
  return s;
}

namespace {
std::uint64_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stoull(line.substr(prefix.size())) * 1024;
  }
  return 0;
}
}  // namespace

std::uint64_t rss_bytes() { return status_kib("VmRSS"); }
std::uint64_t peak_rss_bytes() { return status_kib("VmHWM"); }

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

void trim_heap() { malloc_trim(0); }

int open_files() {
  std::error_code ec;
  int n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

std::uint64_t directory_bytes(const std::filesystem::path& dir) {
  std::error_code ec;
  std::uint64_t total = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) total += it->file_size(e2);
  }
  return total;
}

FileCountSampler::FileCountSampler() {
  thread_ = std::thread([this] {
    while (!stop_.load(std::memory_order_relaxed)) {
      // -1: the directory handle the count itself holds open.
      const int n = open_files() - 1;
      if (n > max_.load(std::memory_order_relaxed)) max_.store(n, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
}

FileCountSampler::~FileCountSampler() { (void)stop(); }

int FileCountSampler::stop() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();  // join orders the sampler's stores before this load
  return max_.load(std::memory_order_relaxed);
}

ScratchDir::ScratchDir(const std::filesystem::path& parent, const std::string& prefix) {
  std::filesystem::create_directories(parent);
  std::string pattern = (parent / (prefix + "-XXXXXX")).native();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::system_error(errno, std::generic_category(), "mkdtemp under " + parent.native());
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

double machine_cpu_seconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  static const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return static_cast<double>(user + nice + system + irq + softirq) / tick;
}

double process_cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

double others_cores(double machine_cpu, double own_cpu, double seconds) {
  if (seconds <= 0) return 0;
  const double cores = std::max(1u, std::thread::hardware_concurrency());
  return std::clamp((machine_cpu - own_cpu) / seconds, 0.0, cores);
}

double others_busy_cores(std::chrono::milliseconds window) {
  const double m0 = machine_cpu_seconds();
  const double p0 = process_cpu_seconds();
  const Clock::time_point t0 = Clock::now();
  std::this_thread::sleep_for(window);
  return others_cores(machine_cpu_seconds() - m0, process_cpu_seconds() - p0, seconds_since(t0));
}

double wait_for_quiet(double threshold, std::chrono::seconds max_wait) {
  const Clock::time_point deadline = Clock::now() + max_wait;
  double busy = others_busy_cores(std::chrono::milliseconds(300));
  while (busy > threshold && Clock::now() < deadline) busy = others_busy_cores(std::chrono::milliseconds(500));
  return busy;
}

std::string human(double v) {
  char buf[32];
  const double a = v < 0 ? -v : v;
  if (a >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.2f G", v / 1e9);
  } else if (a >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2f M", v / 1e6);
  } else if (a >= 1e3) {
    std::snprintf(buf, sizeof buf, "%.1f k", v / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  }
  return buf;
}

namespace {
bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}
}  // namespace

double core_to_core_ns() {
  if (std::thread::hardware_concurrency() < 2) return 0;
  cpu_set_t before;
  if (pthread_getaffinity_np(pthread_self(), sizeof before, &before) != 0) return 0;
  constexpr int kRounds = 200000;
  alignas(64) std::atomic<int> turn{0};
  alignas(64) std::atomic<bool> pinned{true};
  std::thread other([&] {
    if (!pin_to(1)) pinned = false;
    for (int i = 0; i < kRounds; ++i) {
      for (unsigned spins = 1; turn.load(std::memory_order_acquire) != 2 * i + 1; ++spins)
        if (spins % 1024 == 0 && !pinned) return;
      turn.store(2 * i + 2, std::memory_order_release);
    }
  });
  double ns = 0;
  if (pin_to(0)) {
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < kRounds; ++i) {
      turn.store(2 * i + 1, std::memory_order_release);
      for (unsigned spins = 1; turn.load(std::memory_order_acquire) != 2 * i + 2; ++spins)
        if (spins % 1024 == 0 && !pinned) break;
      if (!pinned) break;
    }
    ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kRounds / 2;
    if (!pinned) ns = 0;  // the other thread could not be pinned: not a core-to-core figure
  }
  pinned = false;  // wherever the other thread is, it stops
  other.join();
  pthread_setaffinity_np(pthread_self(), sizeof before, &before);
  return ns;
}

}  // namespace hopper::bench
