#include "telemetry.hpp"

#include <array>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace hopper::bench {
namespace {

// splitmix64: small, fast, and the same sequence everywhere.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : s_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_;
};

struct Measurement {
  const char* name;
  std::array<const char*, 6> fields;  // null-terminated early when fewer
  bool counters;                      // monotonically growing integers, else gauges
  double scale;                       // typical magnitude
};

constexpr std::array<Measurement, 8> kMeasurements{{
    {"cpu", {"usage_user", "usage_system", "usage_idle", "usage_iowait", "usage_steal", "usage_irq"}, false, 100},
    {"mem", {"used_percent", "available_percent", "swap_percent", "cached_percent", nullptr, nullptr}, false, 100},
    {"disk_io", {"reads", "writes", "read_bytes", "write_bytes", "io_time", "weighted_io_time"}, true, 1e9},
    {"net", {"bytes_recv", "bytes_sent", "packets_recv", "packets_sent", "err_in", "drop_in"}, true, 1e10},
    {"http_requests", {"count", "p50_ms", "p99_ms", "status_5xx", "status_4xx", nullptr}, false, 500},
    {"kafka_consumer", {"lag", "offset", "partitions", "fetch_rate", nullptr, nullptr}, true, 1e7},
    {"jvm_gc", {"pause_ms", "collections", "heap_used_mb", "heap_max_mb", "threads", nullptr}, false, 4096},
    {"postgres", {"connections", "xact_commit", "xact_rollback", "tup_fetched", "deadlocks", nullptr}, true, 1e8},
}};
constexpr std::array<const char*, 5> kRegions{"us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"};
constexpr std::array<const char*, 6> kServices{"checkout", "search", "auth", "payments", "inventory", "gateway"};
constexpr std::array<const char*, 3> kSuffixes{"", "_avg1m", "_avg5m"};
constexpr int kHosts = 200;
constexpr std::size_t kMinPad = 7;  // ",seq=0i"

}  // namespace

TelemetryPool::TelemetryPool(std::size_t lines, std::uint64_t seed) {
  if (lines == 0) throw std::invalid_argument("TelemetryPool needs at least one line");
  Rng rng(seed);
  // Per series (host x measurement): the current value of each field.
  std::vector<std::array<double, 6>> state(kHosts * kMeasurements.size());
  for (std::size_t s = 0; s < state.size(); ++s) {
    const Measurement& m = kMeasurements[s % kMeasurements.size()];
    for (double& v : state[s]) v = m.scale * (0.1 + 0.8 * rng.unit());
  }
  std::uint64_t ts = 1717200000000000000ull;  // 2024-06-01, nanoseconds
  lines_.reserve(lines);
  bytes_.reserve(lines * kLineBytes);
  char num[64];
  for (std::size_t i = 0; i < lines; ++i) {
    const int host = static_cast<int>(rng.below(kHosts));
    const std::size_t mi = rng.below(kMeasurements.size());
    const Measurement& m = kMeasurements[mi];
    auto& values = state[host * kMeasurements.size() + mi];
    ts += 100000 + rng.below(2000000);  // 0.1 to 2.1 ms between lines

    std::string line = m.name;
    std::snprintf(num, sizeof num, ",host=%s-%03d", host < 150 ? "web" : "db", host);
    line += num;
    line += ",region=";
    line += kRegions[host % kRegions.size()];
    line += ",service=";
    line += kServices[(host / 7) % kServices.size()];
    line += host % 10 == 0 ? ",env=staging" : ",env=prod";
    std::snprintf(num, sizeof num, ",version=2.%d.%d", 10 + host % 5, host % 3);
    line += num;

    std::snprintf(num, sizeof num, " %llu\n", static_cast<unsigned long long>(ts));
    const std::string tail = num;
    char sep = ' ';
    bool full = false;
    for (const char* suffix : kSuffixes) {
      for (std::size_t f = 0; f < m.fields.size() && m.fields[f] != nullptr && !full; ++f) {
        double& v = values[f];
        if (*suffix == '\0') {
          v = m.counters ? v + rng.below(1000) : std::fabs(v + m.scale * 0.02 * (rng.unit() - 0.5));
        }
        const double shown = *suffix == '\0' ? v : v * (0.97 + 0.06 * rng.unit());
        std::string field(1, sep);
        field += m.fields[f];
        field += suffix;
        if (m.counters) {
          std::snprintf(num, sizeof num, "=%llui", static_cast<unsigned long long>(shown));
        } else {
          std::snprintf(num, sizeof num, "=%.2f", shown);
        }
        field += num;
        if (line.size() + field.size() + tail.size() + kMinPad > kLineBytes) {
          full = true;
          break;
        }
        line += field;
        sep = ',';
      }
    }
    // A sequence field fills the line to exactly kLineBytes.
    const std::size_t width = kLineBytes - line.size() - tail.size() - (kMinPad - 1);
    std::uint64_t modulus = 1;
    for (std::size_t d = 0; d < width && modulus < 1000000000000000000ull; ++d) modulus *= 10;
    std::snprintf(num, sizeof num, ",seq=%0*llui", static_cast<int>(width), static_cast<unsigned long long>(i % modulus));
    line += num;
    line += tail;
    if (line.size() != kLineBytes) throw std::logic_error("telemetry line is not 256 bytes: " + line);
    bytes_ += line;
    lines_.push_back(std::move(line));
  }
}

}  // namespace hopper::bench
