// Rounds: runs several contenders alternately, several times, and keeps every sample, so
// that medians and same-run ratios can be reported.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "measure.hpp"

namespace hopper::bench {

// One run of one contender.
struct Sample {
  double items_per_s = 0;
  double mb_per_s = 0;                  // raw item bytes (8 per u64, 256 per line)
  std::map<std::string, double> extra;  // anything else worth reporting (medians taken)
  std::string error;                    // non-empty: the run failed and counts for nothing
};

struct Entrant {
  std::string name;
  std::function<Sample()> run;
};

// Runs every entrant `reps` times, alternating: round r starts with entrant r mod n, so
// a slow drift of the (shared) machine does not always favour the same one. `progress`
// is told about each sample as it lands. Returns the samples per entrant, in round order.
inline std::map<std::string, std::vector<Sample>> run_alternately(
    const std::vector<Entrant>& entrants, int reps,
    const std::function<void(int rep, const std::string& name, const Sample&)>& progress) {
  std::map<std::string, std::vector<Sample>> out;
  const std::size_t n = entrants.size();
  for (int r = 0; r < reps; ++r) {
    for (std::size_t k = 0; k < n; ++k) {
      const Entrant& e = entrants[(r + k) % n];
      Sample s = e.run();
      if (progress) progress(r, e.name, s);
      out[e.name].push_back(std::move(s));
    }
  }
  return out;
}

// Wraps each entrant so that its samples record, as extra "others_busy_cores", how many
// cores other processes kept busy during the run: the noise a shared machine added.
inline std::vector<Entrant> with_noise_probe(std::vector<Entrant> entrants) {
  for (Entrant& e : entrants) {
    e.run = [inner = std::move(e.run)] {
      const double m0 = machine_cpu_seconds();
      const double p0 = process_cpu_seconds();
      const Clock::time_point t0 = Clock::now();
      Sample s = inner();
      s.extra["others_busy_cores"] =
          others_cores(machine_cpu_seconds() - m0, process_cpu_seconds() - p0, seconds_since(t0));
      return s;
    };
  }
  return entrants;
}

// items_per_s of each sample, failed ones left out.
inline std::vector<double> rates(const std::vector<Sample>& samples) {
  std::vector<double> v;
  for (const Sample& s : samples)
    if (s.error.empty()) v.push_back(s.items_per_s);
  return v;
}

// Per round a / b (items_per_s), rounds where either failed left out.
inline std::vector<double> same_run_ratios(const std::vector<Sample>& a, const std::vector<Sample>& b) {
  std::vector<double> v;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i)
    if (a[i].error.empty() && b[i].error.empty() && b[i].items_per_s > 0) v.push_back(a[i].items_per_s / b[i].items_per_s);
  return v;
}

}  // namespace hopper::bench
