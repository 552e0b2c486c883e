// Telemetry-like test data for the benchmarks: 256-byte lines in InfluxDB line protocol.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hopper::bench {

// A deterministic pool of telemetry lines, every one exactly kLineBytes long (newline
// included): a measurement, tags (host, region, service, ...), fields whose values follow
// random walks per series, and a nanosecond timestamp that advances. They compress the way
// an agent's traffic does — repeated names and tags, changing numbers — rather than like
// random bytes or one constant line. Immutable once built, so any thread may read it.
class TelemetryPool {
 public:
  static constexpr std::size_t kLineBytes = 256;

  // `lines` lines from a fixed seed: the same arguments give the same bytes on every run.
  explicit TelemetryPool(std::size_t lines, std::uint64_t seed = 20240601);

  std::size_t size() const noexcept { return lines_.size(); }
  // Line `i` of an endless stream that cycles through the pool.
  const std::string& line(std::size_t i) const noexcept { return lines_[i % lines_.size()]; }
  // The whole pool as one contiguous run of bytes (what the zstd limit compresses).
  std::string_view bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::string> lines_;
  std::string bytes_;
};

}  // namespace hopper::bench
