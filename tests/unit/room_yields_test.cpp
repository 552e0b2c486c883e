// RoomYields (include/hopper/detail/room_yields.hpp): the number of yields a sender
// without room allows itself before it sleeps doubles when yielding found room, halves when
// the sender slept anyway, and stays within [kLeast, kMost].
#include <gtest/gtest.h>

#include <hopper/detail/room_yields.hpp>

namespace hopper::detail {
namespace {

TEST(RoomYields, StartsAtTheLeast) { EXPECT_EQ(RoomYields().limit(), RoomYields::kLeast); }

TEST(RoomYields, DoublesWhenYieldingFoundRoomUpToTheMost) {
  RoomYields y;
  y.found_room();
  EXPECT_EQ(y.limit(), 2 * RoomYields::kLeast);
  for (int i = 0; i < 20; ++i) y.found_room();
  EXPECT_EQ(y.limit(), RoomYields::kMost);
}

TEST(RoomYields, HalvesWhenTheSenderSleptAnywayDownToTheLeast) {
  RoomYields y;
  for (int i = 0; i < 20; ++i) y.found_room();
  y.slept();
  EXPECT_EQ(y.limit(), RoomYields::kMost / 2);
  for (int i = 0; i < 20; ++i) y.slept();
  EXPECT_EQ(y.limit(), RoomYields::kLeast);
}

// A slow receiver: every send sleeps, so the yields stay at the least whatever an
// occasional lucky send found before.
TEST(RoomYields, ASlowReceiverKeepsThemAtTheLeast) {
  RoomYields y;
  y.found_room();
  y.found_room();
  for (int i = 0; i < 4; ++i) y.slept();
  EXPECT_EQ(y.limit(), RoomYields::kLeast);
}

}  // namespace
}  // namespace hopper::detail
