// SegmentSet, the bottom room: when a segment may go, the unlink's states and retries,
// and drop_oldest's choice — without threads, files or a queue around it.
#include <gtest/gtest.h>

#include <chrono>

#include "engine/segment_set.hpp"

namespace hopper::detail {
namespace {

using namespace std::chrono_literals;

Options options(bool manual_commit = false, SyncPolicy sync = SyncPolicy::none) {
  Options o;
  o.directory = "/nowhere";
  o.segment_bytes = 1000;
  o.manual_commit = manual_commit;
  o.sync = sync;
  return o;
}

TEST(SegmentSet, ASegmentGoesOnlyWhenReadToTheEndAndCommitted) {
  SegmentSet s("/nowhere", options(/*manual_commit=*/true));
  s.add(1, 300, 2);
  s.note_end(1, 10);
  EXPECT_EQ(s.release(1), SegmentSet::Release::not_yet);  // pages unread
  EXPECT_FALSE(s.page_read(1));
  EXPECT_FALSE(s.page_read(1)) << "read to the end, but its items are not committed";
  EXPECT_EQ(s.release(1), SegmentSet::Release::not_yet);
  s.commit(9);
  EXPECT_EQ(s.release(1), SegmentSet::Release::not_yet) << "item 9 is not committed";
  s.commit(10);
  EXPECT_EQ(s.release(1), SegmentSet::Release::remove);
  EXPECT_EQ(s.releasable(), std::vector<std::uint64_t>{1});
}

TEST(SegmentSet, WithoutManualCommitReadingIsCommitting) {
  SegmentSet s("/nowhere", options());
  s.add(1, 300, 1);
  s.note_end(1, 10);
  EXPECT_TRUE(s.page_read(1));
  EXPECT_EQ(s.release(1), SegmentSet::Release::remove);
}

TEST(SegmentSet, TheSegmentTheWriterAppendsToIsRetiredNotRemoved) {
  SegmentSet s("/nowhere", options());
  s.opened(1, 32);
  s.appended(1, 100, 5);
  EXPECT_EQ(s.bytes(), 132u);
  EXPECT_TRUE(s.page_read(1));
  EXPECT_EQ(s.release(1), SegmentSet::Release::retire);
  s.deactivate(1);
  EXPECT_EQ(s.release(1), SegmentSet::Release::remove);
}

TEST(SegmentSet, AReadActiveSegmentIsKeptForAppendsOnlyWhenSyncingSmallAndNobodyWaitsForRoom) {
  SegmentSet none("/nowhere", options(false, SyncPolicy::none));
  none.opened(1, 32);
  EXPECT_FALSE(none.keep_for_appends(1, 0)) << "without syncing a new segment costs nothing";
  SegmentSet syncing("/nowhere", options(false, SyncPolicy::always));
  syncing.opened(1, 32);
  EXPECT_TRUE(syncing.keep_for_appends(1, 0));
  EXPECT_FALSE(syncing.keep_for_appends(1, 1)) << "a sender waits for room";
  syncing.appended(1, 1000 / 4 - 32, 1);
  EXPECT_FALSE(syncing.keep_for_appends(1, 0)) << "a quarter of segment_bytes is reached";
}

TEST(SegmentSet, AFailedUnlinkStaysCountedAndIsRetriedAfterABackOff) {
  SegmentSet s("/nowhere", options());
  s.add(3, 500, 0);
  const Clock::time_point t0 = Clock::now();
  auto removal = s.begin_removal(3);
  ASSERT_TRUE(removal);
  EXPECT_EQ(removal->path, std::filesystem::path("/nowhere/hopper-00000000000000000003.seg"));
  EXPECT_FALSE(s.begin_removal(3)) << "one unlink at a time";
  EXPECT_FALSE(s.end_removal(3, Status(Errc::io_error, "EIO"), t0));
  EXPECT_EQ(s.bytes(), 500u) << "its bytes stay counted until the file is gone";
  EXPECT_EQ(s.remove_errors(), 1u);
  EXPECT_TRUE(s.removal_pending());
  EXPECT_TRUE(s.due_removals(t0).empty()) << "retried after a back-off, not at once";
  EXPECT_EQ(s.next_retry(), t0 + 1ms);
  EXPECT_EQ(s.due_removals(t0 + 1ms), std::vector<std::uint64_t>{3});
  EXPECT_EQ(s.oldest_live(), std::nullopt) << "drop_oldest does not pick a segment already going";
  ASSERT_TRUE(s.begin_removal(3));
  EXPECT_FALSE(s.end_removal(3, Status(Errc::io_error, "EIO"), t0));
  EXPECT_EQ(s.next_retry(), t0 + 2ms) << "the back-off doubles";
  ASSERT_TRUE(s.begin_removal(3));
  EXPECT_TRUE(s.end_removal(3, Status(), t0));
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(s.count(), 0u);
  EXPECT_FALSE(s.removal_pending());
}

TEST(SegmentSet, AnUnlinkAnsweredNotFoundIsARemoval) {
  SegmentSet s("/nowhere", options());
  s.add(1, 100, 0);
  ASSERT_TRUE(s.begin_removal(1));
  EXPECT_TRUE(s.end_removal(1, Status(Errc::not_found, "gone"), Clock::now()));
  EXPECT_EQ(s.bytes(), 0u);
  EXPECT_EQ(s.remove_errors(), 0u);
}

TEST(SegmentSet, ALostFileHasNothingLeftToReadAndIsUnlinkedLikeAnyOther) {
  SegmentSet s("/nowhere", options());
  s.add(1, 100, 2);
  s.note_end(1, 4);
  s.opened(2, 32);
  s.appended(2, 50, 6);
  bool was_active = true;
  ASSERT_TRUE(s.lose(1, was_active));
  EXPECT_FALSE(was_active);
  EXPECT_EQ(s.bytes(), 182u) << "counted until the unlink says it is gone";
  EXPECT_EQ(s.release(1), SegmentSet::Release::remove) << "none of its pages is left to read";
  ASSERT_TRUE(s.begin_removal(1));
  EXPECT_FALSE(s.lose(1, was_active)) << "being removed";
  EXPECT_TRUE(s.end_removal(1, Status(Errc::not_found, "gone"), Clock::now()));
  EXPECT_EQ(s.bytes(), 82u);
  EXPECT_FALSE(s.lose(1, was_active)) << "gone already";
  ASSERT_TRUE(s.lose(2, was_active));
  EXPECT_TRUE(was_active) << "the writer must leave it first";
}

TEST(SegmentSet, AHeldSegmentIsCountedButNeverReleasedDroppedOrRead) {
  SegmentSet s("/nowhere", options(/*manual_commit=*/true));
  s.add_held(1, 400);
  s.add(2, 100, 1);
  s.note_end(2, 3);
  EXPECT_EQ(s.bytes(), 500u);
  EXPECT_EQ(s.count(), 2u);
  EXPECT_EQ(s.release(1), SegmentSet::Release::not_yet);
  EXPECT_FALSE(s.page_read(1));
  EXPECT_EQ(s.oldest_live(), 2u) << "drop_oldest passes over it";
  s.commit(3);
  EXPECT_TRUE(s.page_read(2));
  EXPECT_EQ(s.releasable(), std::vector<std::uint64_t>{2});
}

}  // namespace
}  // namespace hopper::detail
