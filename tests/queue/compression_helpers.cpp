// Options::compression_threads: threads of the queue's own that compress and write the
// pages senders seal. None unless asked; with them a spilling sender leaves its pages to
// them, nothing changes in what is delivered or kept, a failed write is retried by a helper
// with no call from anyone, and a shutdown mid-spill loses nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "fault_fs.hpp"
#include "forwarding_fs.hpp"
#include "tagged.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The threads of this process (/proc/self/task).
std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/task")) ++n;
  return n;
}

Options spilling(const fs::path& dir, std::uint32_t helpers) {
  Options o;
  o.directory = dir;
  o.max_memory_bytes = 1024;
  o.page_bytes = 4096;
  o.segment_bytes = 64u << 10;
  o.compression_threads = helpers;
  return o;
}

// Waits (at most 20 s) until `done` holds; false if it never did.
template <class F>
bool eventually(F done) {
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// Closes the senders and checks the receiver gives back tagged(0, 0..n-1, 40), in order.
void expect_all_back(Channel<std::string>& ch, int n) {
  ch.sender.close();
  const auto back = recv_until_closed(ch.receiver);
  ASSERT_EQ(back.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) ASSERT_EQ(back[i], tagged(0, i, 40));
}

// Segment files that record which threads appended to them.
class AppenderRecordingFileSystem : public ForwardingFileSystem {
 public:
  std::set<std::thread::id> appenders() const {
    std::lock_guard<std::mutex> lk(mu_);
    return appenders_;
  }

  Result<std::unique_ptr<File>> open(const fs::path& path, OpenMode mode) override {
    if (path.extension() != ".seg") return ForwardingFileSystem::open(path, mode);
    return open_wrapped<RecordingFile>(path, mode, this);
  }

 private:
  class RecordingFile : public ForwardingFile {
   public:
    RecordingFile(std::unique_ptr<File> inner, AppenderRecordingFileSystem* owner)
        : ForwardingFile(std::move(inner)), owner_(owner) {}
    Status append(const void* data, std::size_t n) override {
      {
        std::lock_guard<std::mutex> lk(owner_->mu_);
        owner_->appenders_.insert(std::this_thread::get_id());
      }
      return ForwardingFile::append(data, n);
    }

   private:
    AppenderRecordingFileSystem* owner_;
  };

  mutable std::mutex mu_;
  std::set<std::thread::id> appenders_;
};

TEST(CompressionHelpers, TheQueueStartsNoThreadUnlessAsked) {
  TempDir dir;
  const std::size_t before = thread_count();
  {
    auto ch = open_channel<std::string>(spilling(dir.path() / "none", 0));
    ASSERT_TRUE(ch);
    EXPECT_EQ(thread_count(), before);
  }
  {
    auto ch = open_channel<std::string>(spilling(dir.path() / "two", 2));
    ASSERT_TRUE(ch);
    EXPECT_EQ(thread_count(), before + 2);
  }
  EXPECT_EQ(thread_count(), before) << "the helpers outlived their queue";
  // Nothing to help with: no spilling, or every sender leads its own group commit.
  Options memory_only = spilling(dir.path() / "memory", 2);
  memory_only.max_disk_bytes = 0;
  Options always = spilling(dir.path() / "always", 2);
  always.sync = SyncPolicy::always;
  for (const Options& o : {memory_only, always}) {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch);
    EXPECT_EQ(thread_count(), before) << o.directory;
  }
}

TEST(CompressionHelpers, TooManyIsRefusedByName) {
  TempDir dir;
  auto ch = channel<std::string>(spilling(dir.path(), 17));
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::invalid_argument);
  EXPECT_NE(ch.status().message().find("compression_threads"), std::string::npos) << ch.status().message();
}

// The sender only seals its pages: a helper appends them (and the items come back in order).
TEST(CompressionHelpers, ASpillingSenderLeavesItsPagesToAHelper) {
  TempDir dir;
  auto recording = std::make_shared<AppenderRecordingFileSystem>();
  Options o = spilling(dir.path(), 1);
  o.file_system = recording;
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  // About ten pages: fewer than may wait sealed, so this sender never has to write one.
  const int n = 10 * 4096 / 60;
  for (int i = 0; i < n; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i, 40)).ok());
  ASSERT_GT(ch->receiver.stats().items_spilled, 0u);
  ASSERT_TRUE(eventually([&] { return ch->receiver.stats().pages_written >= 8; }))
      << "the helper wrote " << ch->receiver.stats().pages_written << " pages";
  const std::set<std::thread::id> appenders = recording->appenders();
  EXPECT_EQ(appenders.count(std::this_thread::get_id()), 0u) << "the sender appended pages itself";
  EXPECT_EQ(appenders.size(), 1u);
  expect_all_back(*ch, n);
}

// A page write fails while the disk is full: the page stays in RAM and a helper retries it
// once the back-off has passed, with nobody sending or receiving meanwhile.
TEST(CompressionHelpers, AHelperRetriesAFailedWriteByItself) {
  TempDir dir;
  auto ffs = FaultFileSystem::create();
  Options o = fault_options(dir.path(), ffs);
  o.compression_threads = 1;
  o.when_full = FullPolicy::block;
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  ffs->fail_writes(2, ENOSPC);
  const int n = 60;
  for (int i = 0; i < n; ++i) ASSERT_TRUE(ch->sender.send(tagged(0, i, 40)).ok());
  ASSERT_TRUE(eventually([&] { return ffs->counters().failed_writes >= 2; }));
  ASSERT_TRUE(eventually([&] {
    const Stats st = ch->receiver.stats();
    return st.pages_written > 0 && st.items_spilled > 0;
  })) << "no page was written after the failures";
  EXPECT_GE(ch->receiver.stats().write_errors, 2u);
  expect_all_back(*ch, n);
}

// Four senders, two helpers, a receiver that takes part, then a shutdown with pages sealed,
// being compressed and being written: after the reopen every sender's items come back once,
// in its order.
TEST(CompressionHelpers, AShutdownMidSpillLosesNothing) {
  TempDir dir;
  const Options o = spilling(dir.path(), 2);
  constexpr int kProducers = 4, kEach = 3000;
  std::vector<std::string> first;
  {
    auto ch = open_channel<std::string>(o);
    ASSERT_TRUE(ch);
    std::vector<std::thread> senders;
    for (int p = 0; p < kProducers; ++p) {
      senders.emplace_back([&, p, s = ch->sender]() mutable {
        for (int i = 0; i < kEach; ++i) ASSERT_TRUE(s.send(tagged(p, i, 30)).ok());
      });
    }
    std::string v;
    while (first.size() < kProducers * kEach / 3)
      if (ch->receiver.recv(v).ok()) first.push_back(v);
    for (auto& t : senders) t.join();
  }
  auto ch = open_channel<std::string>(o);
  ASSERT_TRUE(ch);
  ch->sender.close();
  std::vector<std::string> all = first;
  for (std::string& v : recv_until_closed(ch->receiver)) all.push_back(std::move(v));
  ASSERT_EQ(all.size(), static_cast<std::size_t>(kProducers * kEach));
  std::vector<int> next(kProducers, 0);
  for (const std::string& v : all) {
    const auto tag = parse_tag(v);
    ASSERT_TRUE(tag) << v;
    ASSERT_EQ(static_cast<int>(tag->index), next[tag->producer]) << "producer " << tag->producer;
    ++next[tag->producer];
  }
}

}  // namespace
}  // namespace hopper::test
