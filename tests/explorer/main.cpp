// fault_explorer: the full enumeration (scripts/explore-faults runs it). Every fault point
// of every kind for the small workloads, and random schedules for the concurrent ones;
// prints schedules and violations per fault kind, and exits 1 if any promise broke.
//
//   fault_explorer [--stride N] [--random RUNS] [--seed S] [--only SUBSTRING] [--verbose]
//   fault_explorer --only SUBSTRING --kind "open ENOENT" --k 6 [--times 3] [--cut-at-end] [--seed S] [--trace]
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "explorer.hpp"

int main(int argc, char** argv) {
  using namespace hopper::explore;
  std::uint64_t stride = 1, random_runs = 300, seed = 1;
  std::string only;
  bool verbose = false;
  bool trace = false;
  Schedule one;  // --kind/--k/--times: replay this one schedule on the workloads --only picks
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--stride") stride = std::stoull(next());
    else if (a == "--random") random_runs = std::stoull(next());
    else if (a == "--seed") seed = std::stoull(next());
    else if (a == "--only") only = next();
    else if (a == "--verbose") verbose = true;
    else if (a == "--kind") {
      auto k = fault_kind(next());
      if (!k) {
        std::cerr << "unknown fault kind\n";
        return 2;
      }
      one.kind = *k;
    } else if (a == "--k") one.k = std::stoull(next());
    else if (a == "--times") one.times = std::stoull(next());
    else if (a == "--trace") trace = true;
    else if (a == "--cut-at-end") one.cut_at_end = true;
    else {
      std::cerr << "usage: fault_explorer [--stride N] [--random RUNS] [--seed S] [--only SUBSTRING] [--verbose]\n";
      return 2;
    }
  }
  if (one.kind != FaultKind::none || trace || one.cut_at_end) {
    one.seed = seed;
    int bad = 0;
    auto replay = [&](const Workload& w) {
      if (!only.empty() && w.name.find(only) == std::string::npos) return;
      std::cout << "== " << w.describe() << ": " << one.describe() << "\n" << std::flush;
      RunResult r = run(w, one, trace);
      std::cout << (r.fault_fired ? "   fault fired" : "   fault not reached") << "\n";
      for (const auto& v : r.violations) std::cout << "   VIOLATION: " << v << "\n";
      bad += r.violations.empty() ? 0 : 1;
    };
    for (const Workload& w : small_workloads()) replay(w);
    for (const Workload& w : concurrent_workloads()) replay(w);
    return bad == 0 ? 0 : 1;
  }
  const auto start = std::chrono::steady_clock::now();
  auto progress = [&](const Schedule& s, const RunResult& r) {
    if (verbose || !r.violations.empty()) {
      std::cout << "  " << s.describe() << (r.fault_fired ? "" : " (not reached)");
      for (const auto& v : r.violations) std::cout << "\n    VIOLATION: " << v;
      std::cout << "\n";
    }
  };
  Summary total;
  for (const Workload& w : small_workloads()) {
    if (!only.empty() && w.name.find(only) == std::string::npos) continue;
    std::cout << "== " << w.describe() << ": every fault point, stride " << stride << "\n" << std::flush;
    Summary s = explore_exhaustive(w, stride, progress);
    std::cout << "   " << s.schedules() << " schedules, " << s.violations() << " violations\n" << std::flush;
    total.add(s);
  }
  for (const Workload& w : concurrent_workloads()) {
    if (!only.empty() && w.name.find(only) == std::string::npos) continue;
    std::cout << "== " << w.describe() << ": " << random_runs << " random schedules, seed " << seed << "\n"
              << std::flush;
    Summary s = explore_random(w, random_runs, seed, progress);
    std::cout << "   " << s.schedules() << " schedules, " << s.violations() << " violations\n" << std::flush;
    total.add(s);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "\n";
  print_summary(std::cout, total);
  std::cout << "explored " << total.schedules() << " schedules in " << static_cast<long>(secs) << " s, "
            << total.violations() << " violations\n";
  return total.violations() == 0 ? 0 : 1;
}
