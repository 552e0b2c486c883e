// Behaviour of the queue through its public API: order, budgets, modes, closing.
#include <gtest/gtest.h>

#include <hopper/hopper.hpp>

#include "test_util.hpp"

namespace hopper {
namespace {

using test::TempDir;

TEST(Queue, MemoryOnlyRoundTrip) {
  TempDir dir;
  auto ch = channel<std::uint32_t>(test::small_options(dir.path()));
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  for (std::uint32_t i = 0; i < 100; ++i) ASSERT_TRUE(ch->sender.send(std::uint32_t{i}).ok());
  std::uint32_t v = 0;
  for (std::uint32_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(ch->receiver.recv(v).ok());
    ASSERT_EQ(v, i);
  }
}

}  // namespace
}  // namespace hopper
