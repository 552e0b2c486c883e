// SpillPipeline: sealed pages on their way to disk, compress-ahead, the back-off of a
// failed write, and group commit's answers — without threads, files or a queue around it.
#include <gtest/gtest.h>

#include <chrono>

#include "engine/spill_pipeline.hpp"

namespace hopper::detail {
namespace {

using namespace std::chrono_literals;

Options options(SyncPolicy sync = SyncPolicy::none) {
  Options o;
  o.directory = "/nowhere";
  o.sync = sync;
  return o;
}

RawPage page(std::uint64_t first_seq, std::uint32_t count) {
  RawPage p(first_seq, 0, std::string());
  for (std::uint32_t i = 0; i < count; ++i) {
    p.begin_item() += "item";
    p.end_item(1000 + i);
  }
  return p;
}

AppendedPage where(std::uint64_t segment) {
  AppendedPage a;
  a.segment = segment;
  a.bytes = 100;
  return a;
}

// Sealed pages may wait in RAM up to a mebibyte of them (4 to 16 pages); with compression
// helpers, 16 whatever their size. Full exactly there.
TEST(SpillPipeline, SealedPagesWaitUpToAMebibyteOfThem) {
  const std::pair<std::uint32_t, std::size_t> cases[] = {
      {4 << 10, 16}, {64 << 10, 16}, {128 << 10, 8}, {256 << 10, 4}, {1 << 20, 4}, {8 << 20, 4}};
  for (const auto& [page_bytes, want] : cases) {
    Options o = options();
    o.page_bytes = page_bytes;
    o.max_disk_bytes = 1 << 30;
    SpillPipeline p(o, 0);
    EXPECT_EQ(p.max_pending(), want) << page_bytes;
    for (std::size_t i = 0; i < want; ++i) {
      EXPECT_FALSE(p.full()) << page_bytes << " page " << i;
      p.push(page(i, 1));
    }
    EXPECT_TRUE(p.full()) << page_bytes;
    o.compression_threads = 1;
    EXPECT_EQ(SpillPipeline(o, 0).max_pending(), SpillPipeline::kMaxPendingHelped) << page_bytes;
  }
}

// Found by the durability property under ThreadSanitizer (see AlwaysRegression in
// tests/queue/sync.cpp): a failed range must be kept until each of its senders has been told.
TEST(SpillPipeline, AFailedRangeIsAnsweredOncePerItemHoweverManyFailAfterIt) {
  SpillPipeline p(options(SyncPolicy::always), 0);
  p.set_writing(true);
  for (std::uint64_t i = 0; i < 100; ++i) {
    p.push(page(i, 1));
    p.page_failed(p.start_append(), Status(Errc::io_error, "EIO"));
  }
  for (std::uint64_t seq = 0; seq < 100; ++seq) {
    Status why;
    ASSERT_EQ(p.durability(seq, why), Durability::failed) << seq;
    EXPECT_EQ(why.code(), Errc::io_error);
  }
  Status why;
  EXPECT_EQ(p.durability(0, why), Durability::waiting) << "told once, then forgotten";
  EXPECT_EQ(p.write_errors(), 100u);
}

TEST(SpillPipeline, ItemsWrittenSinceTheLastGoodSyncAreAnsweredFailedWhenItFails) {
  SpillPipeline p(options(SyncPolicy::always), 0);
  p.set_writing(true);
  p.push(page(0, 2));
  p.page_written(p.start_append(), where(1));
  p.push(page(2, 3));
  p.page_written(p.start_append(), where(1));
  EXPECT_EQ(p.segment_closed(Status(Errc::io_error, "fdatasync: EIO"), true), 5u);
  EXPECT_EQ(p.sync_errors(), 1u);
  Status why;
  p.durable_below(5);
  EXPECT_EQ(p.durability(0, why), Durability::failed) << "a failed answer comes before a durable one";
  EXPECT_EQ(why.code(), Errc::io_error);
  EXPECT_EQ(p.durability(1, why), Durability::failed);
  EXPECT_EQ(p.durability(0, why), Durability::durable) << "each of the page's two senders was told once";
}

TEST(SpillPipeline, AClaimedPageIsNeitherAppendedNorReadFromRam) {
  SpillPipeline p(options(), 0);
  p.push(page(0, 1));
  p.push(page(1, 1));
  SealedPage* claimed = p.claim();
  ASSERT_NE(claimed, nullptr);
  EXPECT_EQ(claimed->page.first_seq, 0u);
  EXPECT_TRUE(p.front_being_compressed());
  EXPECT_FALSE(p.may_append(Clock::now()));
  EXPECT_FALSE(p.readable_from_ram());
  EXPECT_EQ(p.claim()->page.first_seq, 1u) << "the next claimant takes the next page";
  EXPECT_FALSE(p.claimable());
  p.compressed(*claimed, Status(), "frame");
  EXPECT_TRUE(p.may_append(Clock::now()));
  EXPECT_TRUE(p.readable_from_ram());
  EXPECT_EQ(p.pages_compressed_ahead(), 1u);
}

TEST(SpillPipeline, APageKeptAfterAFailedWriteWaitsForItsBackOff) {
  SpillPipeline p(options(), 0);
  const std::uint64_t bound = [&] {
    p.push(page(0, 1));
    return p.pending_bound();
  }();
  p.set_writing(true);
  const Clock::time_point t0 = Clock::now();
  p.page_kept(p.start_append(), Status(Errc::io_error, "ENOSPC"), t0);
  p.set_writing(false);
  EXPECT_EQ(p.pending_bound(), bound) << "still in RAM, still counted";
  EXPECT_FALSE(p.write_error().ok());
  EXPECT_FALSE(p.may_append(t0));
  EXPECT_EQ(p.next_retry(), t0 + 1ms);
  EXPECT_TRUE(p.may_append(t0 + 1ms));
  EXPECT_TRUE(p.readable_from_ram()) << "the receiver may take it from RAM meanwhile";
  RawPage back = p.take_for_reading();
  EXPECT_EQ(back.first_seq, 0u);
  EXPECT_TRUE(p.write_error().ok()) << "nothing is left to retry";
  EXPECT_EQ(p.pending_bound(), 0u);
}

TEST(SpillPipeline, AWrittenPageJoinsTheChainTheMomentItLeavesFlight) {
  SpillPipeline p(options(), 0);
  p.push(page(0, 2));
  p.set_writing(true);
  SealedPage s = p.start_append();
  EXPECT_TRUE(p.in_flight());
  EXPECT_FALSE(p.has_unread());
  p.page_written(std::move(s), where(7));
  EXPECT_FALSE(p.in_flight());
  ASSERT_TRUE(p.has_unread());
  EXPECT_EQ(p.next_unread().ref.segment, 7u);
  EXPECT_EQ(p.next_unread().ref.count, 2u);
  EXPECT_EQ(p.discard_segment(7), (std::pair<std::uint64_t, std::uint64_t>{1, 2}));
  EXPECT_TRUE(p.next_unread().discarded);
}

TEST(SpillPipeline, DropOldestTakesTheFrontPageOnlyWhileNoWriterHoldsIt) {
  SpillPipeline p(options(), 0);
  p.push(page(0, 3));
  p.set_writing(true);
  EXPECT_FALSE(p.drop_front());
  p.set_writing(false);
  EXPECT_EQ(p.drop_front(), 3u);
  ASSERT_TRUE(p.has_unread());
  EXPECT_TRUE(p.next_unread().discarded);
  EXPECT_FALSE(p.has_pending());
}

}  // namespace
}  // namespace hopper::detail
