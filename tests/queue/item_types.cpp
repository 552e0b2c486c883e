// Item types: serialization and footprint through members, a Footprint specialization
// winning over the member, the default footprint, and strings and vectors of every size
// through memory and disk.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "helpers.hpp"
#include "test_util.hpp"

// ---- item types for the customization points (at namespace scope, before any use) ----

// Serializable through a `serialize` member; footprint through a `hopper_footprint` member.
struct Reading {
  std::uint32_t sensor = 0;
  std::string label;
  std::vector<double> values;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(sensor, label, values);
  }
  std::uint64_t hopper_footprint() const noexcept { return 100; }
  bool operator==(const Reading&) const = default;
};

// Footprint through a Footprint specialization, which must win over its member.
struct Blob {
  std::string bytes;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(bytes);
  }
  std::uint64_t hopper_footprint() const noexcept { return 1; }  // ignored: specialized below
  bool operator==(const Blob&) const = default;
};

template <>
struct hopper::Footprint<Blob> {
  static std::uint64_t of(const Blob& b) noexcept { return 1000 + b.bytes.size(); }
};

namespace hopper::test {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- item types

TEST(Queue, UserTypeWithSerializeAndFootprintMembers) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 250;  // two Readings of footprint 100
  auto ch = open<Reading>(o);
  std::vector<Reading> sent;
  for (std::uint32_t i = 0; i < 6; ++i) {
    Reading r{i, "sensor-" + std::to_string(i) + std::string(i * 10, '+'), std::vector<double>(i, 0.5 * i)};
    sent.push_back(r);
    ASSERT_TRUE(ch.sender.send(std::move(r)).ok());
    if (i == 1) {
      EXPECT_EQ(ch.receiver.stats().memory_bytes, 200u);
      EXPECT_EQ(ch.receiver.stats().memory_items, 2u);
    }
  }
  EXPECT_EQ(ch.receiver.stats().memory_items, 2u);
  EXPECT_EQ(ch.receiver.stats().items_spilled, 4u);
  ASSERT_TRUE(ch.sender.flush().ok());  // through a real file, not only RAM
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), sent);
}

TEST(Queue, FootprintSpecializationWinsOverTheMember) {
  EXPECT_EQ(footprint(Blob{"abc"}), 1003u);
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 2100;  // two Blobs of ~1005
  auto ch = open<Blob>(o);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(ch.sender.send(Blob{"b" + std::to_string(i) + "x"}).ok());
  const Stats st = ch.receiver.stats();
  EXPECT_EQ(st.memory_items, 2u);
  EXPECT_EQ(st.memory_bytes, 2 * 1003u);
  EXPECT_EQ(st.items_spilled, 2u);
  ch.sender.close();
  auto got = test::recv_until_closed(ch.receiver);
  EXPECT_EQ(got, (std::vector<Blob>{{"b0x"}, {"b1x"}, {"b2x"}, {"b3x"}}));
}

TEST(Queue, DefaultFootprintCountsHeapBytes) {
  EXPECT_EQ(footprint(std::uint32_t{1}), 4u);
  EXPECT_EQ(footprint(std::string("short")), sizeof(std::string));
  std::string heap(100, 'h');
  EXPECT_EQ(footprint(heap), sizeof(std::string) + heap.capacity() + 1);
  std::vector<std::uint64_t> nums(10);
  EXPECT_EQ(footprint(nums), sizeof(nums) + nums.capacity() * 8);
  std::vector<std::string> strs{std::string(40, 'a'), "b"};
  EXPECT_EQ(footprint(strs), sizeof(strs) + strs.capacity() * sizeof(std::string) + strs[0].capacity() + 1);
}

TEST(Queue, VectorsOfStringsThroughMemoryAndDisk) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 400;
  auto ch = open<std::vector<std::string>>(o);
  std::vector<std::vector<std::string>> sent;
  for (int i = 0; i < 20; ++i) {
    std::vector<std::string> item;
    for (int j = 0; j < i % 4; ++j) item.push_back(std::string(static_cast<std::size_t>(i * j), 'a' + j));
    if (i % 5 == 0) item.push_back("");
    sent.push_back(item);
    const std::uint64_t fp = footprint(item);
    const std::uint64_t before = ch.receiver.stats().memory_bytes;
    const std::uint64_t spilled = ch.receiver.stats().items_spilled;
    ASSERT_TRUE(ch.sender.send(std::move(item)).ok());
    const Stats st = ch.receiver.stats();
    if (st.items_spilled == spilled) { EXPECT_EQ(st.memory_bytes, before + fp) << i; }
    EXPECT_LE(st.memory_bytes, o.max_memory_bytes);
  }
  EXPECT_GT(ch.receiver.stats().items_spilled, 0u);
  ASSERT_TRUE(ch.sender.flush().ok());
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), sent);
}

TEST(Queue, StringsOfEverySizeClassRoundTrip) {
  TempDir dir;
  Options o = test::small_options(dir.path());
  o.max_memory_bytes = 256;
  o.page_bytes = 1024;
  auto ch = open<std::string>(o);
  std::vector<std::string> sent;
  for (std::size_t len : {0u, 1u, 15u, 16u, 100u, 1000u, 5000u, 0u, 3u}) {
    sent.push_back(std::string(len, static_cast<char>('A' + len % 26)));
    ASSERT_TRUE(ch.sender.send(sent.back()).ok());
  }
  ch.sender.close();
  EXPECT_EQ(test::recv_until_closed(ch.receiver), sent);
}

}  // namespace
}  // namespace hopper::test
