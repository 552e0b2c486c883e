// HOPPER_FUZZ_CHECK: an oracle's assertion. A failed check prints what was expected and
// aborts, which every fuzzer (and the replay main) reports as a crash with this input.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace hopper::fuzz {

[[noreturn]] inline void check_failed(const char* file, int line, const char* cond, const std::string& why) {
  std::fprintf(stderr, "%s:%d: oracle check failed: %s\n  %s\n", file, line, cond, why.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace hopper::fuzz

#define HOPPER_FUZZ_CHECK(cond, why)                                               \
  do {                                                                             \
    if (!(cond)) ::hopper::fuzz::check_failed(__FILE__, __LINE__, #cond, (why));   \
  } while (0)
