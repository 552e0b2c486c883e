// What the tests of tests/queue/ share: options sized in items, a channel opened or the
// test stopped, the budgets checked against Stats and the directory, and a queue filled
// until it refuses.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>

#include <hopper/hopper.hpp>

#include "test_util.hpp"

namespace hopper::test {

inline constexpr std::uint64_t kU32 = sizeof(std::uint32_t);

// Memory for exactly `items` u32 items; disk large.
inline Options u32_options(const std::filesystem::path& dir, std::uint64_t items) {
  Options o = small_options(dir);
  o.max_memory_bytes = items * kU32;
  return o;
}

template <class T>
Channel<T> open(const Options& o) {
  auto ch = channel<T>(o);
  if (!ch.ok()) throw std::runtime_error("channel(): " + ch.status().message());
  return std::move(*ch);
}

inline Status send_u32(Sender<std::uint32_t>& s, std::uint32_t v) { return s.send(std::uint32_t{v}); }

inline void expect_budgets(const Stats& st, const Options& o, const char* where) {
  EXPECT_LE(st.memory_bytes, o.max_memory_bytes) << where;
  if (o.max_disk_bytes > 0) {
    EXPECT_LE(st.disk_bytes, o.max_disk_bytes) << where;
    EXPECT_LE(segment_bytes_on_disk(o.directory), o.max_disk_bytes) << where;
  }
}

inline constexpr std::uint64_t kU64 = sizeof(std::uint64_t);

// Memory for exactly `items` u64, nothing spilled.
inline Options u64_memory_only(const std::filesystem::path& dir, std::uint64_t items, FullPolicy when_full) {
  Options o = small_options(dir);
  o.max_memory_bytes = items * kU64;
  o.max_disk_bytes = 0;
  o.when_full = when_full;
  return o;
}

// Sends until the queue refuses; returns how many were accepted.
template <class T, class Make>
int fill(Sender<T>& s, Make make) {
  for (int n = 0; n < 1000000; ++n) {
    Status st = s.try_send(make(n));
    if (!st.ok()) {
      EXPECT_EQ(st.code(), Errc::full) << st.message();
      return n;
    }
  }
  ADD_FAILURE() << "the queue never became full";
  return -1;
}

inline Options fillable_options(const std::filesystem::path& dir, FullPolicy policy) {
  Options o = small_options(dir);
  o.max_memory_bytes = 100;
  o.page_bytes = 128;
  o.segment_bytes = min_segment_for_page(128);
  o.max_disk_bytes = o.segment_bytes * 2;
  o.when_full = policy;
  return o;
}

}  // namespace hopper::test
