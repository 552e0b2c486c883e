// Real crashes: a forked child uses a queue and reports, through a pipe, each thing the
// queue promised (an acknowledged send, a successful commit). The parent SIGKILLs it at a
// random moment, reopens the directory and checks every promise was kept.
//
// Trials per test: 200 (50 in sanitizer builds), or HOPPER_CRASH_TRIALS for a long run.
// The seed is printed; HOPPER_CRASH_SEED replays it. Queues live under the build directory
// (or HOPPER_CRASH_DIR) on the real disk, never tmpfs, so the fdatasyncs are real ones.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <iostream>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hopper/hopper.hpp>

#include "tagged.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

namespace fs = std::filesystem;

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}

// Sanitizer builds run the same trials four times slower or worse; their job is to watch
// the code paths, which a quarter of the trials covers. The release build runs all 200.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HOPPER_CRASH_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(HOPPER_CRASH_SANITIZED)
constexpr std::uint64_t kDefaultTrials = 50;
#else
constexpr std::uint64_t kDefaultTrials = 200;
#endif

std::uint64_t trials() { return env_u64("HOPPER_CRASH_TRIALS", kDefaultTrials); }

std::uint64_t base_seed() {
  static const std::uint64_t seed = env_u64(
      "HOPPER_CRASH_SEED", static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  return seed;
}

// A directory for one test's queue on the real disk, removed when destroyed. Refuses
// tmpfs: there fdatasync is a no-op and the trials would prove nothing about it.
class DiskDir {
 public:
  DiskDir() {
    const char* over = std::getenv("HOPPER_CRASH_DIR");
    const fs::path base = over != nullptr && *over != '\0' ? fs::path(over) : fs::path(HOPPER_DURABILITY_SCRATCH);
    fs::create_directories(base);
    struct statfs st {};
    if (::statfs(base.c_str(), &st) != 0) throw std::runtime_error("statfs " + base.native() + ": " + std::strerror(errno));
    on_tmpfs_ = st.f_type == TMPFS_MAGIC;
    static int counter = 0;
    path_ = base / ("crash-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~DiskDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  DiskDir(const DiskDir&) = delete;
  DiskDir& operator=(const DiskDir&) = delete;
  const fs::path& path() const { return path_; }
  bool on_tmpfs() const { return on_tmpfs_; }

 private:
  fs::path path_;
  bool on_tmpfs_ = false;
};

// One report from the child: fixed size, well under PIPE_BUF, so that writes from several
// threads never interleave.
struct Record {
  enum Kind : std::uint32_t { acked = 1, commit_intent = 2, committed = 3, failed = 4, finished = 5 };
  std::uint32_t kind = 0;
  std::uint32_t producer = 0;
  std::uint64_t value = 0;
};
static_assert(sizeof(Record) == 16);

void report(int fd, Record r) {
  // The parent reads until EOF; a failed write here means the parent is gone.
  const char* p = reinterpret_cast<const char*>(&r);
  std::size_t left = sizeof r;
  while (left > 0) {
    const ssize_t w = ::write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) ::_exit(9);
    p += w;
    left -= static_cast<std::size_t>(w);
  }
}

// A forked child running `body(write_fd)`; the parent reads its records as they come.
class Child {
 public:
  template <class Body>
  explicit Child(Body body) {
    std::cout.flush();  // or the child would inherit, and maybe repeat, what is buffered
    std::fflush(nullptr);
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      ::close(fds[0]);
      body(fds[1]);
      ::_exit(0);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0) kill_and_reap();
    if (fd_ >= 0) ::close(fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // The next record, or nullopt at EOF (the child is gone) or after `timeout` of silence
  // (then timed_out() is true).
  std::optional<Record> next(std::chrono::milliseconds timeout) {
    Record r;
    char* p = reinterpret_cast<char*>(&r);
    std::size_t got = 0;
    while (got < sizeof r) {
      pollfd pfd{fd_, POLLIN, 0};
      const int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) {
        timed_out_ = true;
        return std::nullopt;
      }
      const ssize_t k = ::read(fd_, p + got, sizeof r - got);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return std::nullopt;
      got += static_cast<std::size_t>(k);
    }
    return r;
  }
  bool timed_out() const { return timed_out_; }

  // SIGKILL (harmless if it already exited) and wait: returns the wait status.
  int kill_and_reap() {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  bool timed_out_ = false;
};

// ---- producers with SyncPolicy::always ----------------------------------------------

Options always_options(const fs::path& dir) {
  Options o;
  o.directory = dir;
  o.sync = SyncPolicy::always;
  o.max_memory_bytes = 4 << 10;
  o.max_disk_bytes = 8 << 20;
  o.segment_bytes = 8 << 10;  // small: rotations (new files, directory syncs) happen often
  o.page_bytes = 1 << 10;
  return o;
}

// The child: `producers` threads send until killed, reporting each acknowledged item.
[[noreturn]] void run_producers(int fd, const fs::path& dir, std::uint64_t trial, std::uint32_t producers) {
  auto ch = channel<std::string>(always_options(dir));
  if (!ch.ok()) {
    report(fd, {Record::failed, 0, static_cast<std::uint64_t>(ch.status().code())});
    ::_exit(3);
  }
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p, sender = ch->sender] {
      Sender<std::string> s = sender;
      for (std::uint32_t i = 0;; ++i) {
        Status st = s.send(tagged_in_run(trial, p, i, i % 37));
        if (!st.ok()) {
          report(fd, {Record::failed, p, static_cast<std::uint64_t>(st.code())});
          ::_exit(4);
        }
        report(fd, {Record::acked, p, i});
      }
    });
  }
  for (auto& t : threads) t.join();
  ::_exit(0);
}

TEST(Crash, EveryAcknowledgedSendSurvivesSigkill) {
  DiskDir dir;
  ASSERT_FALSE(dir.on_tmpfs()) << dir.path() << " is on tmpfs, where fdatasync means nothing; set HOPPER_CRASH_DIR";
  const std::uint64_t n = trials();
  const std::uint64_t seed = base_seed();
  std::cout << "[ seed     ] HOPPER_CRASH_SEED=" << seed << " trials=" << n << "\n";
  std::mt19937_64 rng(seed);
  std::uint64_t total_acked = 0, total_back = 0, killed_mid_open = 0;
  for (std::uint64_t trial = 0; trial < n; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + " of HOPPER_CRASH_SEED=" + std::to_string(seed));
    const auto producers = static_cast<std::uint32_t>(std::uniform_int_distribution<int>(1, 4)(rng));
    // One trial in eight is killed early, while the queue may still be opening (recovering).
    const bool early = rng() % 8 == 0;
    const auto kill_after = early ? 0 : std::uniform_int_distribution<std::uint64_t>(1, 400)(rng);
    const auto extra_us = std::uniform_int_distribution<int>(0, early ? 1500 : 3000)(rng);

    std::map<std::uint32_t, std::int64_t> acked;  // producer -> highest acknowledged index
    std::uint64_t acks = 0;
    {
      Child child([&](int fd) { run_producers(fd, dir.path(), trial, producers); });
      while (acks < kill_after) {
        auto r = child.next(std::chrono::seconds(30));
        if (!r) break;
        ASSERT_EQ(r->kind, Record::acked) << "child failed: producer " << r->producer << " got "
                                          << to_string(static_cast<Errc>(r->value));
        ASSERT_EQ(static_cast<std::int64_t>(r->value), (acked.count(r->producer) ? acked[r->producer] : -1) + 1)
            << "one producer's acknowledgements out of order";
        acked[r->producer] = static_cast<std::int64_t>(r->value);
        ++acks;
      }
      ASSERT_FALSE(child.timed_out()) << "no acknowledgement for 30 s: the child is stuck";
      std::this_thread::sleep_for(std::chrono::microseconds(extra_us));
      const int status = child.kill_and_reap();
      ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child ended on its own: " << status;
      // What it reported before dying counts too.
      while (auto r = child.next(std::chrono::seconds(5))) {
        ASSERT_EQ(r->kind, Record::acked) << "child failed: " << to_string(static_cast<Errc>(r->value));
        ASSERT_EQ(static_cast<std::int64_t>(r->value), (acked.count(r->producer) ? acked[r->producer] : -1) + 1);
        acked[r->producer] = static_cast<std::int64_t>(r->value);
        ++acks;
      }
    }
    if (acks == 0) ++killed_mid_open;
    total_acked += acks;

    auto ch = channel<std::string>(always_options(dir.path()));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    ch->sender.close();
    Status end;
    const std::vector<std::string> back = recv_until_closed(ch->receiver, &end);
    ASSERT_EQ(end.code(), Errc::closed) << end.message();
    std::map<std::uint32_t, std::int64_t> seen;  // producer -> last index received
    for (const std::string& s : back) {
      auto item = parse_run_tag(s);
      ASSERT_TRUE(item.has_value()) << "an item nobody sent: \"" << s << "\"";
      ASSERT_EQ(item->run, trial) << "an item of an earlier trial came back: \"" << s << "\"";
      ASSERT_LT(item->tag.producer, producers) << s;
      // A producer's items were synced one after the other: whatever survives is a prefix.
      const std::int64_t want = (seen.count(item->tag.producer) ? seen[item->tag.producer] : -1) + 1;
      ASSERT_EQ(static_cast<std::int64_t>(item->tag.index), want)
          << "producer " << item->tag.producer << ": a gap, a duplicate or a reordering";
      seen[item->tag.producer] = item->tag.index;
    }
    for (const auto& [p, last] : acked) {
      const std::int64_t got = seen.count(p) ? seen[p] : -1;
      ASSERT_GE(got, last) << "producer " << p << ": acknowledged up to " << last << " but only " << got
                           << " came back";
    }
    const Stats st = ch->receiver.stats();
    EXPECT_EQ(st.corrupt_pages, 0u) << "a SIGKILL tears at most a tail, it damages nothing";
    EXPECT_EQ(st.corrupt_items, 0u);
    EXPECT_EQ(st.items_missing, 0u) << "pages are written in order: a kill leaves no gap";
    EXPECT_EQ(st.items_recovered, back.size());
    total_back += back.size();
  }
  std::cout << "[ trials   ] " << n << " kills, " << total_acked << " items acknowledged, " << total_back
            << " came back, " << killed_mid_open << " killed before any acknowledgement\n";
}

// ---- a consumer with manual_commit ----------------------------------------------------

std::uint64_t consumer_item(std::uint64_t trial, std::uint64_t index) { return trial << 32 | index; }

Options commit_options(const fs::path& dir) {
  Options o;
  o.directory = dir;
  o.manual_commit = true;
  o.max_memory_bytes = 256;  // small: most of the backlog is in pages of several segments
  o.max_disk_bytes = 8 << 20;
  o.segment_bytes = 2 << 10;
  o.page_bytes = 256;
  return o;
}

// The child: receives in order, commits every 1..7 items, reports each commit's intent
// before it and its success after it.
[[noreturn]] void run_consumer(int fd, const fs::path& dir, std::uint64_t trial, std::uint64_t first,
                               std::uint64_t seed) {
  auto ch = channel<std::uint64_t>(commit_options(dir));
  if (!ch.ok()) {
    report(fd, {Record::failed, 0, static_cast<std::uint64_t>(ch.status().code())});
    ::_exit(3);
  }
  ch->sender.close();
  std::mt19937_64 rng(seed);
  std::uint64_t expect = first;
  std::uint64_t until_commit = std::uniform_int_distribution<int>(1, 7)(rng);
  std::uint64_t item = 0;
  Status s;
  while ((s = ch->receiver.recv(item)).ok()) {
    if (item != consumer_item(trial, expect)) {
      report(fd, {Record::failed, 1, item});
      ::_exit(5);
    }
    if (--until_commit == 0) {
      report(fd, {Record::commit_intent, 0, expect});
      Status c = ch->receiver.commit();
      if (!c.ok()) {
        report(fd, {Record::failed, 2, static_cast<std::uint64_t>(c.code())});
        ::_exit(6);
      }
      report(fd, {Record::committed, 0, expect});
      until_commit = std::uniform_int_distribution<int>(1, 7)(rng);
    }
    ++expect;
  }
  if (s.code() != Errc::closed) {
    report(fd, {Record::failed, 3, static_cast<std::uint64_t>(s.code())});
    ::_exit(7);
  }
  report(fd, {Record::finished, 0, expect});
  ::_exit(0);
}

// What the parent learnt from a consumer child (run_consumer, run_position_consumer) that
// it killed `extra_us` after its `kill_after`-th reported commit (or that finished first).
struct KilledConsumer {
  std::optional<std::uint64_t> last_committed;  // the last commit reported done
  std::optional<std::uint64_t> pending_intent;  // a commit begun and not reported done
  bool done = false;                            // the child finished before the kill
  std::uint64_t finished_at = 0;                // Record::finished's value
  std::uint64_t commits = 0;
};

template <class Body>
void kill_consumer(Body body, std::uint64_t kill_after, int extra_us, KilledConsumer& k) {
  Child child(std::move(body));
  auto take = [&](const Record& r) {
    switch (r.kind) {
      case Record::commit_intent: k.pending_intent = r.value; break;
      case Record::committed:
        EXPECT_EQ(k.pending_intent, std::optional<std::uint64_t>(r.value));
        k.last_committed = r.value;
        k.pending_intent.reset();
        ++k.commits;
        break;
      case Record::finished:
        k.done = true;
        k.finished_at = r.value;
        break;
      default:
        ADD_FAILURE() << "child failed (" << r.producer << "): " << r.value;
    }
  };
  while (k.commits < kill_after && !k.done) {
    auto r = child.next(std::chrono::seconds(30));
    if (!r) break;
    take(*r);
  }
  ASSERT_FALSE(child.timed_out()) << "no commit for 30 s: the child is stuck";
  std::this_thread::sleep_for(std::chrono::microseconds(extra_us));
  child.kill_and_reap();
  while (auto r = child.next(std::chrono::seconds(5))) take(*r);
}

// Delivery resumed at `resumed`: right after the last reported commit (`start` if none), or
// after the one in flight at the kill, if it reached the disk before its report did.
void expect_resumed_after_last_commit(const KilledConsumer& k, std::uint64_t start, std::uint64_t resumed) {
  if (k.pending_intent && resumed == *k.pending_intent + 1) return;  // the commit in flight made it
  const std::uint64_t after_reported = k.last_committed ? *k.last_committed + 1 : start;
  EXPECT_EQ(resumed, after_reported) << "last reported commit: "
                                     << (k.last_committed ? std::to_string(*k.last_committed) : "none")
                                     << ", commit in flight: "
                                     << (k.pending_intent ? std::to_string(*k.pending_intent) : "none");
}

TEST(Crash, ManualCommitResumesRightAfterTheLastCommitAcrossSigkill) {
  DiskDir dir;
  ASSERT_FALSE(dir.on_tmpfs()) << dir.path() << " is on tmpfs, where fdatasync means nothing; set HOPPER_CRASH_DIR";
  const std::uint64_t n = trials();
  std::cout << "[ seed     ] HOPPER_CRASH_SEED=" << base_seed() << " trials=" << n << "\n";
  const std::uint64_t seed = base_seed() ^ 0x5bd1e995;  // not the producer test's sequence
  std::mt19937_64 rng(seed);
  std::uint64_t commits_seen = 0, ambiguous = 0, finished = 0;
  for (std::uint64_t trial = 0; trial < n; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + " of HOPPER_CRASH_SEED=" + std::to_string(base_seed()));
    const auto items = std::uniform_int_distribution<std::uint64_t>(50, 800)(rng);
    {  // A backlog left by a cleanly closed queue.
      auto ch = channel<std::uint64_t>(commit_options(dir.path()));
      ASSERT_TRUE(ch.ok()) << ch.status().message();
      for (std::uint64_t i = 0; i < items; ++i) ASSERT_TRUE(ch->sender.send(consumer_item(trial, i)).ok());
    }
    // Each trial may resume where the last one's check stopped: the checker commits only
    // part of what it verifies, so a child starts from a committed position mid-file.
    std::uint64_t start = 0;
    for (int round = 0; round < 3 && start < items; ++round) {
      const bool early = rng() % 8 == 0;  // killed while opening, or before a first commit
      const auto kill_after = early ? 0 : std::uniform_int_distribution<std::uint64_t>(1, 80)(rng);
      const auto extra_us = std::uniform_int_distribution<int>(0, early ? 1500 : 3000)(rng);
      const std::uint64_t child_seed = rng();
      KilledConsumer k;
      kill_consumer([&](int fd) { run_consumer(fd, dir.path(), trial, start, child_seed); }, kill_after, extra_us, k);
      ASSERT_FALSE(HasFailure());
      commits_seen += k.commits;
      if (k.done) ++finished;
      if (k.pending_intent) ++ambiguous;

      auto ch = channel<std::uint64_t>(commit_options(dir.path()));
      ASSERT_TRUE(ch.ok()) << ch.status().message();
      ch->sender.close();
      std::uint64_t v = 0;
      Status s = ch->receiver.recv(v);
      std::uint64_t resumed = items;  // nothing left: everything was committed
      if (s.ok()) {
        ASSERT_EQ(v >> 32, trial) << "an item of an earlier trial came back";
        resumed = v & 0xffffffffu;
      } else {
        ASSERT_EQ(s.code(), Errc::closed) << s.message();
      }
      expect_resumed_after_last_commit(k, start, resumed);
      ASSERT_FALSE(HasFailure());
      // Then everything after it, in order, nothing else; the check itself commits part of
      // it and closes cleanly, so the next round starts from there.
      const std::uint64_t check_until = std::uniform_int_distribution<std::uint64_t>(resumed, items)(rng);
      std::uint64_t expect = resumed;
      while (s.ok()) {
        ASSERT_EQ(v, consumer_item(trial, expect)) << "out of order after the resume point";
        ++expect;
        if (expect == check_until) {
          ASSERT_TRUE(ch->receiver.commit().ok());
        }
        if (expect == items) break;
        s = ch->receiver.recv(v);
        ASSERT_TRUE(s.ok()) << "item " << expect << " is missing: " << s.message();
      }
      ASSERT_EQ(expect, items) << "items after the resume point are missing";
      ASSERT_EQ(ch->receiver.recv(v).code(), Errc::closed);
      const Stats st = ch->receiver.stats();
      EXPECT_EQ(st.corrupt_pages, 0u);
      EXPECT_EQ(st.corrupt_items, 0u);
      EXPECT_EQ(st.items_missing, 0u) << "segments go only once committed: nothing can be missing";
      start = check_until;
    }
    // Leave the directory empty for the next trial: receive and commit what is left.
    auto ch = channel<std::uint64_t>(commit_options(dir.path()));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    ch->sender.close();
    const std::vector<std::uint64_t> rest = drain(ch->receiver);
    ASSERT_EQ(rest.size(), items - start);
    ASSERT_TRUE(ch->receiver.commit().ok());
  }
  std::cout << "[ trials   ] " << n << " backlogs, " << commits_seen << " commits reported before kills, "
            << ambiguous << " kills between a commit and its report, " << finished << " children finished first\n";
}

// ---- a consumer that commits through a position --------------------------------------

// The child: receives in batches of 1..16, and every 1..3 batches commits through the
// position just past one of the items received and not committed yet — never the last
// one, so that later items stay received but uncommitted. Reports the index of the item
// the commit goes through, before the commit and after its success.
[[noreturn]] void run_position_consumer(int fd, const fs::path& dir, std::uint64_t trial, std::uint64_t first,
                                        std::uint64_t seed) {
  auto ch = channel<std::uint64_t>(commit_options(dir));
  if (!ch.ok()) {
    report(fd, {Record::failed, 0, static_cast<std::uint64_t>(ch.status().code())});
    ::_exit(3);
  }
  ch->sender.close();
  Receiver<std::uint64_t>& r = ch->receiver;
  std::mt19937_64 rng(seed);
  std::uint64_t expect = first;
  struct Received {
    std::uint64_t index;
    std::uint64_t position;  // just past it
  };
  std::deque<Received> uncommitted;
  int until_commit = std::uniform_int_distribution<int>(1, 3)(rng);
  std::vector<std::uint64_t> batch;
  Status s;
  for (;;) {
    batch.clear();
    const std::uint64_t before = r.position();
    s = r.recv_many(batch, std::uniform_int_distribution<std::size_t>(1, 16)(rng));
    if (!s.ok()) break;
    // A backlog without damage: the items of a batch are numbered one after another.
    if (r.position() != before + batch.size()) {
      report(fd, {Record::failed, 4, r.position() - before});
      ::_exit(8);
    }
    for (std::size_t k = 0; k < batch.size(); ++k) {
      if (batch[k] != consumer_item(trial, expect)) {
        report(fd, {Record::failed, 1, batch[k]});
        ::_exit(5);
      }
      uncommitted.push_back({expect, before + k + 1});
      ++expect;
    }
    if (--until_commit > 0 || uncommitted.size() < 2) continue;
    const std::size_t k = std::uniform_int_distribution<std::size_t>(0, uncommitted.size() - 2)(rng);
    const Received through = uncommitted[k];
    report(fd, {Record::commit_intent, 0, through.index});
    Status c = r.commit(through.position);
    if (!c.ok()) {
      report(fd, {Record::failed, 2, static_cast<std::uint64_t>(c.code())});
      ::_exit(6);
    }
    report(fd, {Record::committed, 0, through.index});
    uncommitted.erase(uncommitted.begin(), uncommitted.begin() + static_cast<std::ptrdiff_t>(k + 1));
    until_commit = std::uniform_int_distribution<int>(1, 3)(rng);
  }
  if (s.code() != Errc::closed) {
    report(fd, {Record::failed, 3, static_cast<std::uint64_t>(s.code())});
    ::_exit(7);
  }
  report(fd, {Record::finished, 0, expect});
  ::_exit(0);
}

TEST(Crash, CommitThroughAPositionResumesThereAcrossSigkill) {
  DiskDir dir;
  ASSERT_FALSE(dir.on_tmpfs()) << dir.path() << " is on tmpfs, where fdatasync means nothing; set HOPPER_CRASH_DIR";
  const std::uint64_t n = trials();
  std::cout << "[ seed     ] HOPPER_CRASH_SEED=" << base_seed() << " trials=" << n << "\n";
  const std::uint64_t seed = base_seed() ^ 0x27d4eb2f;  // not the other tests' sequences
  std::mt19937_64 rng(seed);
  std::uint64_t commits_seen = 0, ambiguous = 0, finished = 0, redelivered = 0;
  for (std::uint64_t trial = 0; trial < n; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + " of HOPPER_CRASH_SEED=" + std::to_string(base_seed()));
    const auto items = std::uniform_int_distribution<std::uint64_t>(50, 800)(rng);
    {  // A backlog left by a cleanly closed queue.
      auto ch = channel<std::uint64_t>(commit_options(dir.path()));
      ASSERT_TRUE(ch.ok()) << ch.status().message();
      for (std::uint64_t i = 0; i < items; ++i) ASSERT_TRUE(ch->sender.send(consumer_item(trial, i)).ok());
    }
    std::uint64_t start = 0;
    for (int round = 0; round < 3 && start < items; ++round) {
      const bool early = rng() % 8 == 0;  // killed while opening, or before a first commit
      const auto kill_after = early ? 0 : std::uniform_int_distribution<std::uint64_t>(1, 20)(rng);
      const auto extra_us = std::uniform_int_distribution<int>(0, early ? 1500 : 3000)(rng);
      const std::uint64_t child_seed = rng();
      KilledConsumer k;
      kill_consumer([&](int fd) { run_position_consumer(fd, dir.path(), trial, start, child_seed); }, kill_after,
                    extra_us, k);
      ASSERT_FALSE(HasFailure());
      commits_seen += k.commits;
      if (k.done) ++finished;
      if (k.pending_intent) ++ambiguous;

      // The items the child received after its last commit, never committed, come again.
      auto ch = channel<std::uint64_t>(commit_options(dir.path()));
      ASSERT_TRUE(ch.ok()) << ch.status().message();
      ch->sender.close();
      std::uint64_t v = 0;
      Status s = ch->receiver.recv(v);
      std::uint64_t resumed = items;
      if (s.ok()) {
        ASSERT_EQ(v >> 32, trial) << "an item of an earlier trial came back";
        resumed = v & 0xffffffffu;
      } else {
        ASSERT_EQ(s.code(), Errc::closed) << s.message();
      }
      expect_resumed_after_last_commit(k, start, resumed);
      ASSERT_FALSE(HasFailure());
      if (k.done) {
        ASSERT_EQ(k.finished_at, items);
        ASSERT_LT(resumed, items) << "the child never commits its last item: it must come again";
      }
      if (resumed < items) ++redelivered;
      // Then everything after it, in order, nothing else. The check receives it all but
      // commits only through a point in the middle, and closes cleanly: the next round
      // starts there, with the rest received and not committed.
      const std::uint64_t check_until = std::uniform_int_distribution<std::uint64_t>(resumed, items)(rng);
      std::optional<std::uint64_t> commit_at;  // just past item check_until - 1
      std::uint64_t expect = resumed;
      while (s.ok()) {
        ASSERT_EQ(v, consumer_item(trial, expect)) << "out of order after the resume point";
        ++expect;
        if (expect == check_until) commit_at = ch->receiver.position();
        if (expect == items) break;
        s = ch->receiver.recv(v);
        ASSERT_TRUE(s.ok()) << "item " << expect << " is missing: " << s.message();
      }
      ASSERT_EQ(expect, items) << "items after the resume point are missing";
      ASSERT_EQ(ch->receiver.recv(v).code(), Errc::closed);
      ASSERT_EQ(commit_at.has_value(), check_until > resumed);
      if (commit_at) { ASSERT_TRUE(ch->receiver.commit(*commit_at).ok()); }
      const Stats st = ch->receiver.stats();
      EXPECT_EQ(st.corrupt_pages, 0u);
      EXPECT_EQ(st.corrupt_items, 0u);
      EXPECT_EQ(st.items_missing, 0u) << "segments go only once committed: nothing can be missing";
      start = check_until;
    }
    // Leave the directory empty for the next trial: receive and commit what is left.
    auto ch = channel<std::uint64_t>(commit_options(dir.path()));
    ASSERT_TRUE(ch.ok()) << ch.status().message();
    ch->sender.close();
    const std::vector<std::uint64_t> rest = drain(ch->receiver);
    ASSERT_EQ(rest.size(), items - start);
    ASSERT_TRUE(ch->receiver.commit().ok());
  }
  std::cout << "[ trials   ] " << n << " backlogs, " << commits_seen << " commits reported before kills, "
            << ambiguous << " kills between a commit and its report, " << finished << " children finished first, "
            << redelivered << " resumed with received items coming again\n";
}

}  // namespace
}  // namespace hopper::test
