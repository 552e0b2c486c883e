// The fault explorer's bounded slice, for CI: every 3rd fault point of every kind for the
// small workloads, and a few random schedules for each concurrent one. The whole
// enumeration is scripts/explore-faults. HOPPER_EXPLORER_STRIDE and HOPPER_EXPLORER_RUNS
// change the slice; a violation prints its workload and schedule, which `fault_explorer
// --only NAME --stride 1 --verbose` replays.
#include <gtest/gtest.h>

#include <iostream>

#include "explorer.hpp"
#include "test_util.hpp"

namespace hopper::explore {
namespace {

TEST(FaultExplorer, EveryFaultKindAtEveryThirdPointOfTheSmallWorkloads) {
  const std::uint64_t stride = test::env_scale("HOPPER_EXPLORER_STRIDE", 3);
  Summary total;
  for (const Workload& w : small_workloads()) {
    Summary s = explore_exhaustive(w, stride);
    std::cout << w.describe() << ": " << s.schedules() << " schedules, " << s.violations() << " violations\n";
    total.add(s);
  }
  print_summary(std::cout, total);
  EXPECT_EQ(total.violations(), 0u);
  for (const auto& f : total.failures) ADD_FAILURE() << f;
}

TEST(FaultExplorer, RandomSchedulesOfTheConcurrentWorkloads) {
  const std::uint64_t runs = test::env_scale("HOPPER_EXPLORER_RUNS", 25);
  Summary total;
  for (const Workload& w : concurrent_workloads()) {
    Summary s = explore_random(w, runs, 1);
    std::cout << w.describe() << ": " << s.schedules() << " schedules, " << s.violations() << " violations\n";
    total.add(s);
  }
  print_summary(std::cout, total);
  EXPECT_EQ(total.violations(), 0u);
  for (const auto& f : total.failures) ADD_FAILURE() << f;
}

}  // namespace
}  // namespace hopper::explore
