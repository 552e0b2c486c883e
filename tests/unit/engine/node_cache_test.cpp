// NodeCache and CachedAllocator: the blocks of the queue's deques of placements kept for
// reuse — which blocks are kept, by which list, how many, and that a deque through the
// allocator behaves as one (swaps between the locked deques and the receiver's included).
#include <gtest/gtest.h>

#include <hopper/detail/node_cache.hpp>

#include <cstdint>
#include <deque>
#include <set>
#include <string>

namespace hopper::detail {
namespace {

TEST(NodeCache, ABlockGivenBackIsTheNextOneTaken) {
  NodeCache cache(1 << 20);
  void* a = cache.take(512);
  cache.give_locked(a, 512);
  EXPECT_EQ(cache.shared_blocks(), 1u);
  EXPECT_EQ(cache.take(512), a);
  EXPECT_EQ(cache.shared_blocks(), 0u);
  cache.give_locked(a, 512);
}

TEST(NodeCache, TheReceiversBlocksAreTakenOnlyOncePublished) {
  NodeCache cache(1 << 20);
  void* a = cache.take(512);
  cache.give_receivers(a, 512);
  EXPECT_EQ(cache.receivers_blocks(), 1u);
  EXPECT_EQ(cache.shared_blocks(), 0u);
  void* b = cache.take(512);  // senders do not see the receiver's list
  EXPECT_NE(b, a);
  cache.publish();
  EXPECT_EQ(cache.receivers_blocks(), 0u);
  EXPECT_EQ(cache.shared_blocks(), 1u);
  EXPECT_EQ(cache.take(512), a);
  cache.give_locked(a, 512);
  cache.give_locked(b, 512);
}

TEST(NodeCache, PublishingKeepsBothListsBlocksInOrder) {
  NodeCache cache(1 << 20);
  void* a = cache.take(512);
  void* b = cache.take(512);
  void* c = cache.take(512);
  cache.give_locked(a, 512);
  cache.give_receivers(b, 512);
  cache.give_receivers(c, 512);
  cache.publish();
  EXPECT_EQ(cache.shared_blocks(), 3u);
  std::set<void*> taken{cache.take(512), cache.take(512), cache.take(512)};
  EXPECT_EQ(taken, (std::set<void*>{a, b, c}));
  EXPECT_EQ(cache.shared_blocks(), 0u);
  cache.publish();  // nothing to publish: nothing changes
  EXPECT_EQ(cache.shared_blocks(), 0u);
  for (void* p : taken) cache.give_locked(p, 512);
}

TEST(NodeCache, EachListKeepsAtMostItsCap) {
  NodeCache cache(3 * 512);  // three blocks a list
  std::set<void*> blocks;
  for (int i = 0; i < 10; ++i) blocks.insert(cache.take(512));
  int n = 0;
  for (void* p : blocks) (n++ % 2 == 0 ? cache.give_locked(p, 512) : cache.give_receivers(p, 512));
  EXPECT_EQ(cache.shared_blocks(), 3u);
  EXPECT_EQ(cache.receivers_blocks(), 3u);  // the rest went back to operator delete
  cache.publish();
  EXPECT_EQ(cache.shared_blocks(), 6u);  // at most twice the cap, until taken
}

TEST(NodeCache, BlocksOfAnotherSizePassThrough) {
  NodeCache cache(1 << 20);
  void* a = cache.take(512);  // the first size asked for is the one kept
  void* odd = cache.take(64);
  cache.give_locked(odd, 64);
  EXPECT_EQ(cache.shared_blocks(), 0u);
  cache.give_locked(a, 512);
  EXPECT_EQ(cache.shared_blocks(), 1u);
}

TEST(NodeCache, NothingIsKeptWithoutRoom) {
  NodeCache cache(100);  // less than one block
  void* a = cache.take(512);
  cache.give_locked(a, 512);
  cache.give_receivers(cache.take(512), 512);
  EXPECT_EQ(cache.shared_blocks(), 0u);
  EXPECT_EQ(cache.receivers_blocks(), 0u);
}

// The queue's pattern: a locked deque filled, swapped into the batch, the batch swapped into
// the receiver's deque and cleared there; the next fill reuses those blocks.
TEST(CachedAllocator, DequesSwapAndReuseTheirBlocks) {
  using Item = std::string;
  using Alloc = CachedAllocator<Item, Item>;
  NodeCache cache(1 << 20);
  std::deque<Item, Alloc> queue{Alloc(&cache, false)};
  std::deque<Item, Alloc> batch{Alloc(&cache, false)};
  std::deque<Item, Alloc> retired{Alloc(&cache, true)};
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 1000; ++i) queue.push_back(std::to_string(round * 1000 + i));
    batch.swap(queue);
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(batch[static_cast<std::size_t>(i)], std::to_string(round * 1000 + i));
    retired.swap(batch);
    retired.clear();  // the receiver, without the lock: its own list
    EXPECT_GT(cache.receivers_blocks(), 0u);
    cache.publish();  // then under the lock
    EXPECT_EQ(cache.receivers_blocks(), 0u);
    EXPECT_GT(cache.shared_blocks(), 0u);
  }
  // The next fill takes the kept blocks instead of new ones.
  const std::size_t kept = cache.shared_blocks();
  for (int i = 0; i < 100; ++i) queue.push_back("x");
  EXPECT_LT(cache.shared_blocks(), kept);
  while (!queue.empty()) queue.pop_front();  // under the lock: the shared list
  EXPECT_GE(cache.shared_blocks(), kept - 1);
}

// An item aligned past operator new's guarantee gets blocks aligned for it (they bypass the
// cache).
struct alignas(64) Wide {
  std::uint64_t v = 0;
};

TEST(CachedAllocator, OverAlignedItemsAreAligned) {
  using Alloc = CachedAllocator<Wide, Wide>;
  static_assert(Alloc::kOverAligned);
  NodeCache cache(1 << 20);
  std::deque<Wide, Alloc> queue{Alloc(&cache, false)};
  for (std::uint64_t i = 0; i < 100; ++i) queue.push_back(Wide{i});
  for (const Wide& w : queue) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&w) % 64, 0u);
  while (!queue.empty()) queue.pop_front();
  EXPECT_EQ(cache.shared_blocks(), 0u);
}

}  // namespace
}  // namespace hopper::detail
