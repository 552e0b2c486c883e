// Multi-threaded round trips through one queue, with random budgets, repeated many times:
// 1-8 producers (some closing early), a receiver that runs alongside them or starts late,
// or leaves early so that a reopen must deliver the rest. Every round checks that each
// producer's items arrive in the order it sent them and that what arrives is exactly the
// multiset of what was accepted: nothing lost, nothing invented, nothing twice. A monitor
// thread reads Stats meanwhile and checks the budgets.
//
// Knobs (environment): HOPPER_CONCURRENCY_ROUNDS=N rounds per test (default 200; CI runs
// fewer under ThreadSanitizer), HOPPER_STRESS_SCALE=N multiplies them (long mode),
// HOPPER_SEED=S replays a run (the seed is printed at the start of each test).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "storage/spill_writer.hpp"
#include "forwarding_fs.hpp"
#include "test_util.hpp"

namespace hopper {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::uint64_t rounds() {
  return test::env_scale("HOPPER_CONCURRENCY_ROUNDS", 200) * test::env_scale("HOPPER_STRESS_SCALE");
}

std::uint64_t seed_for(const char* test) {
  std::uint64_t seed = test::env_scale("HOPPER_SEED", 0);
  if (seed == 0) seed = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32);
  std::printf("%s: HOPPER_SEED=%llu\n", test, static_cast<unsigned long long>(seed));
  return seed;
}

// ---- items ------------------------------------------------------------------------------
// An item names its producer and its index, and carries padding whose bytes follow from
// both, so a damaged or mixed-up item is recognised.

std::string make_item(std::uint32_t producer, std::uint64_t index, std::size_t pad) {
  std::string s(12 + pad, '\0');
  format::put_u32(s.data(), producer);
  format::put_u64(s.data() + 4, index);
  for (std::size_t k = 0; k < pad; ++k) s[12 + k] = static_cast<char>(producer * 31 + index * 7 + k);
  return s;
}

struct ItemId {
  std::uint32_t producer = 0;
  std::uint64_t index = 0;
};

std::optional<ItemId> parse_item(const std::string& s) {
  if (s.size() < 12) return std::nullopt;
  ItemId id{format::get_u32(s.data()), format::get_u64(s.data() + 4)};
  for (std::size_t k = 12; k < s.size(); ++k)
    if (s[k] != static_cast<char>(id.producer * 31 + id.index * 7 + (k - 12))) return std::nullopt;
  return id;
}

// ---- one round ----------------------------------------------------------------------------

enum class SendMode { send, try_send, send_for };
enum class RecvMode { recv, try_recv, recv_for, recv_many, mixed };
enum class Start { alongside, late };

// One round's draw. Plain data, made and read by the test's main thread.
struct Round {
  Options options;
  std::vector<std::uint64_t> quota;  // items per producer; small quotas close early
  std::vector<SendMode> send_modes;
  RecvMode recv_mode = RecvMode::recv;
  Start start = Start::alongside;
  std::chrono::milliseconds late_by{0};
  std::size_t max_pad = 0;
  std::uint64_t commit_every = 0;  // manual_commit: the receiver commits this often
  std::uint64_t page_worst = 0;    // what one page may add to the disk beyond its budget

  std::string describe() const {
    std::ostringstream os;
    os << "memory " << options.max_memory_bytes << ", disk " << options.max_disk_bytes << ", segment "
       << options.segment_bytes << ", page " << options.page_bytes << ", policy "
       << static_cast<int>(options.when_full) << ", sync " << static_cast<int>(options.sync)
       << (options.manual_commit ? ", manual commit" : "") << ", producers " << quota.size() << " (quotas";
    for (auto q : quota) os << ' ' << q;
    os << "), recv mode " << static_cast<int>(recv_mode) << (start == Start::late ? ", late receiver" : "")
       << ", max pad " << max_pad;
    return os.str();
  }
};

Round draw_round(std::mt19937_64& rng, const fs::path& dir, bool allow_drop) {
  auto pick = [&](std::uint64_t lo, std::uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
  };
  Round r;
  Options& o = r.options;
  o.directory = dir;
  o.file_system = test::unsynced_file_system();  // what is tested is the hand-off, not fdatasync
  o.page_bytes = static_cast<std::uint32_t>(pick(0, 3) == 0 ? pick(1, 64) : pick(64, 8192));
  const std::uint64_t min_segment = detail::SpillWriter::bound(o.page_bytes);
  const bool spill = pick(0, 9) < 8;
  if (spill) {
    o.segment_bytes = min_segment + pick(0, 3 * min_segment);
    o.max_disk_bytes = o.segment_bytes * pick(1, 4) + pick(0, o.segment_bytes);
  } else {
    o.max_disk_bytes = 0;
    o.segment_bytes = min_segment;
  }
  o.max_memory_bytes = pick(0, 2) == 0 ? pick(8, 256) : pick(256, 65536);
  o.compression_level = pick(0, 1) ? 1 : -5;
  const std::uint64_t policy = pick(0, 9);
  o.when_full = policy < 6 ? FullPolicy::block : policy < 9 || !allow_drop ? FullPolicy::fail : FullPolicy::drop_oldest;
  const std::uint64_t sync = pick(0, 9);
  o.sync = sync < 7 || !spill ? SyncPolicy::none : sync < 9 ? SyncPolicy::interval : SyncPolicy::always;
  o.sync_interval = 1ms;
  o.manual_commit = pick(0, 4) == 0;
  r.commit_every = pick(1, 64);

  const std::size_t producers = pick(1, 8);
  for (std::size_t p = 0; p < producers; ++p) {
    // About one producer in four stops early (and closes its handle) while others go on.
    r.quota.push_back(pick(0, 3) == 0 ? pick(0, 20) : pick(100, 1500));
    r.send_modes.push_back(static_cast<SendMode>(pick(0, 2)));
  }
  r.recv_mode = static_cast<RecvMode>(pick(0, 4));
  r.start = pick(0, 2) == 0 ? Start::late : Start::alongside;
  r.late_by = std::chrono::milliseconds(pick(1, 30));
  r.max_pad = pick(0, 3) == 0 ? o.page_bytes : pick(0, 64);
  // An item must be able to go somewhere, or the round tests nothing but too_large.
  const std::uint64_t largest = 12 + r.max_pad;
  if (spill) {
    while (detail::SpillWriter::bound(format::kItemPrefixSize + 8 + largest) > o.segment_bytes) o.segment_bytes *= 2;
    o.max_disk_bytes = std::max(o.max_disk_bytes, o.segment_bytes);
  } else {
    o.max_memory_bytes = std::max<std::uint64_t>(o.max_memory_bytes, 2 * (32 + largest + 1));
  }
  if (o.sync == SyncPolicy::always)  // one fsync-group per send: keep such rounds short
    for (auto& q : r.quota) q = std::min<std::uint64_t>(q, 200);
  r.page_worst = spill ? std::min(o.segment_bytes, detail::SpillWriter::bound(o.page_bytes + 12 + largest)) : 0;
  EXPECT_TRUE(validate(o).ok()) << validate(o).message();
  return r;
}

// What one producer thread did; written by that thread, read after it is joined.
struct ProducerLog {
  std::vector<std::uint64_t> accepted;  // indices, in the order send returned ok
  std::string error;                    // an unexpected status, if any
};

// Sends `quota` items under `mode`, retrying full/timeout, until done or the receiver is
// gone; then closes its handle.
void produce(Sender<std::string> s, std::uint32_t id, std::uint64_t quota, SendMode mode, std::size_t max_pad,
             std::uint64_t seed, ProducerLog& log) {
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = 0; i < quota; ++i) {
    const std::size_t pad = std::uniform_int_distribution<std::size_t>(0, max_pad)(rng);
    for (;;) {
      std::string item = make_item(id, i, pad);
      Status st;
      switch (mode) {
        case SendMode::send: st = s.send(std::move(item)); break;
        case SendMode::try_send: st = s.try_send(std::move(item)); break;
        case SendMode::send_for: st = s.send_for(std::move(item), 1ms); break;
      }
      if (st.ok()) {
        log.accepted.push_back(i);
        break;
      }
      if (st.code() == Errc::closed) return;  // the receiver left
      if (st.code() == Errc::full || st.code() == Errc::timeout) {
        std::this_thread::yield();
        continue;
      }
      log.error = "producer " + std::to_string(id) + ", item " + std::to_string(i) + ": " + st.message();
      return;
    }
    if (i % 97 == 96 && !s.flush().ok()) {
      log.error = "producer " + std::to_string(id) + ": flush failed";
      return;
    }
  }
  s.close();
}

// What the receiver did; written by the receiving thread, read after it is joined.
struct ReceiverLog {
  std::vector<std::string> items;
  std::size_t committed = 0;  // items covered by the last successful commit
  Status end;
};

// Receives until closed (or until `stop_after` items), committing as the round says.
void consume(Receiver<std::string>& r, const Round& round, std::uint64_t stop_after, std::uint64_t seed,
             ReceiverLog& log) {
  std::mt19937_64 rng(seed);
  auto commit = [&] {
    if (Status s = r.commit(); s.ok()) log.committed = log.items.size();
    else log.end = s;
  };
  while (log.items.size() < stop_after) {
    RecvMode mode = round.recv_mode;
    if (mode == RecvMode::mixed) mode = static_cast<RecvMode>(rng() % 4);
    std::string item;
    Status st;
    if (round.options.manual_commit && log.items.size() > log.committed) {
      // Uncommitted items hold budget: commit before waiting, or the senders could be
      // waiting for room that only this receiver can give back.
      st = r.try_recv(item);
      if (st.ok()) {
        log.items.push_back(std::move(item));
        if (log.items.size() - log.committed >= round.commit_every) commit();
        continue;
      }
      if (st.code() != Errc::empty) {
        log.end = st;
        break;
      }
      commit();
    }
    switch (mode) {
      case RecvMode::recv: st = r.recv(item); break;
      case RecvMode::try_recv:
        st = r.try_recv(item);
        if (st.code() == Errc::empty) {
          std::this_thread::yield();
          continue;
        }
        break;
      case RecvMode::recv_for:
        st = r.recv_for(item, 1ms);
        if (st.code() == Errc::timeout) continue;
        break;
      case RecvMode::recv_many:
      case RecvMode::mixed: {
        std::vector<std::string> batch;
        st = r.recv_many(batch, std::min<std::uint64_t>(1 + rng() % 32, stop_after - log.items.size()));
        for (auto& b : batch) log.items.push_back(std::move(b));
        if (st.ok()) {
          if (round.options.manual_commit && log.items.size() - log.committed >= round.commit_every) commit();
          continue;
        }
        break;
      }
    }
    if (!st.ok()) {
      log.end = st;
      break;
    }
    log.items.push_back(std::move(item));
    if (round.options.manual_commit && log.items.size() - log.committed >= round.commit_every) commit();
  }
  if (round.options.manual_commit && log.end.code() == Errc::closed) commit();
}

// Per producer: the indices received, in order, must be exactly those accepted.
void check_delivery(const std::vector<std::string>& received, const std::vector<ProducerLog>& producers,
                    const std::string& where) {
  std::vector<std::vector<std::uint64_t>> per(producers.size());
  for (const std::string& item : received) {
    auto id = parse_item(item);
    ASSERT_TRUE(id.has_value()) << where << ": an item that no producer made (" << item.size() << " bytes)";
    ASSERT_LT(id->producer, producers.size()) << where;
    per[id->producer].push_back(id->index);
  }
  for (std::size_t p = 0; p < producers.size(); ++p) {
    const auto& want = producers[p].accepted;
    std::size_t k = 0;
    while (k < per[p].size() && k < want.size() && per[p][k] == want[k]) ++k;
    ASSERT_EQ(per[p], want) << where << ": producer " << p << " (received vs accepted) first differ at position "
                            << k << ": received " << (k < per[p].size() ? std::to_string(per[p][k]) : "nothing")
                            << ", accepted " << (k < want.size() ? std::to_string(want[k]) : "nothing");
  }
}

// The quiet form of check_delivery, for deciding whether to explain a failure.
bool delivered_exactly(const std::vector<std::string>& received, const std::vector<ProducerLog>& producers) {
  std::vector<std::vector<std::uint64_t>> per(producers.size());
  for (const std::string& item : received) {
    auto id = parse_item(item);
    if (!id || id->producer >= producers.size()) return false;
    per[id->producer].push_back(id->index);
  }
  for (std::size_t p = 0; p < producers.size(); ++p)
    if (per[p] != producers[p].accepted) return false;
  return true;
}

// Where an item of producer `p` with index `i` appears in `items` (npos if nowhere).
std::size_t position_of(const std::vector<std::string>& items, std::uint32_t p, std::uint64_t i) {
  for (std::size_t k = 0; k < items.size(); ++k) {
    auto id = parse_item(items[k]);
    if (id && id->producer == p && id->index == i) return k;
  }
  return std::string::npos;
}

// Watches Stats from a thread of its own while the round runs, and keeps the first budget
// it sees exceeded. stop() and violation() are for the thread that made it.
class BudgetMonitor {
 public:
  BudgetMonitor(const Receiver<std::string>& r, const Round& round) : r_(r), round_(round) {
    thread_ = std::thread([this] {
      while (!stop_.load(std::memory_order_acquire)) {
        const Stats st = r_.stats();
        if (st.memory_bytes > round_.options.max_memory_bytes) record("memory_bytes", st.memory_bytes);
        if (st.disk_bytes > round_.options.max_disk_bytes + round_.page_worst) record("disk_bytes", st.disk_bytes);
        std::this_thread::sleep_for(200us);
      }
    });
  }
  ~BudgetMonitor() { stop(); }
  void stop() {
    stop_.store(true, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
  }
  std::string violation() {
    std::lock_guard lk(mu_);
    return violation_;
  }

 private:
  void record(const char* what, std::uint64_t value) {
    std::lock_guard lk(mu_);
    if (violation_.empty()) violation_ = std::string(what) + " reached " + std::to_string(value);
  }
  const Receiver<std::string>& r_;
  const Round& round_;
  std::atomic<bool> stop_{false};  // release/acquire: the monitor sees stop() promptly; no data rides on it
  std::mutex mu_;
  std::string violation_;
  std::thread thread_;
};

// One round: producers and a receiver to the end (every sender closes), then the checks.
// With `receiver_leaves_after`, the receiver closes after that many items instead, the
// producers see `closed`, and a reopen must deliver exactly what was accepted and not
// received (plus, with manual commit, what was received but not committed).
void run_round(const Round& round, std::uint64_t seed, std::optional<std::uint64_t> receiver_leaves_after,
               const std::string& where) {
  const auto started = std::chrono::steady_clock::now();
  std::vector<ProducerLog> logs(round.quota.size());
  ReceiverLog rlog;
  std::string monitor_violation;
  Stats end_stats;
  std::vector<std::string> damage;
  {
    auto ch = channel<std::string>(round.options);
    ASSERT_TRUE(ch.ok()) << where << ": " << ch.status().message();
    std::optional<Receiver<std::string>> receiver(std::move(ch->receiver));
    std::vector<std::thread> producers;
    for (std::size_t p = 0; p < round.quota.size(); ++p) {
      Sender<std::string> s = ch->sender;  // each producer its own copy
      producers.emplace_back(produce, std::move(s), static_cast<std::uint32_t>(p), round.quota[p], round.send_modes[p],
                             round.max_pad, seed + 1 + p, std::ref(logs[p]));
    }
    ch->sender.close();
    if (round.start == Start::late) std::this_thread::sleep_for(round.late_by);
    std::optional<BudgetMonitor> monitor;
    if (!receiver_leaves_after) monitor.emplace(*receiver, round);
    std::thread consumer([&] {
      consume(*receiver, round, receiver_leaves_after.value_or(UINT64_MAX), seed, rlog);
      if (receiver_leaves_after) {
        end_stats = receiver->stats();
        damage = receiver->damage_report();
        receiver->close();
      }
    });
    consumer.join();
    for (auto& t : producers) t.join();
    if (monitor) {
      monitor->stop();
      monitor_violation = monitor->violation();
    }
    if (!receiver_leaves_after) {
      end_stats = receiver->stats();
      damage = receiver->damage_report();
    }
  }  // every handle is gone: what is left is written to disk

  for (const auto& l : logs) ASSERT_TRUE(l.error.empty()) << where << ": " << l.error;
  if (std::getenv("HOPPER_VERBOSE")) {
    std::uint64_t accepted = 0;
    for (const auto& l : logs) accepted += l.accepted.size();
    std::printf("%s: accepted %llu, received %zu, spilled %llu, dropped %llu, %lld ms\n", where.c_str(),
                static_cast<unsigned long long>(accepted), rlog.items.size(),
                static_cast<unsigned long long>(end_stats.items_spilled),
                static_cast<unsigned long long>(end_stats.items_dropped),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - started).count()));
    std::fflush(stdout);
  }
  EXPECT_TRUE(monitor_violation.empty()) << where << ": " << monitor_violation;

  if (!receiver_leaves_after) {
    ASSERT_EQ(rlog.end.code(), Errc::closed) << where << ": " << rlog.end.message();
    if (round.options.when_full == FullPolicy::drop_oldest) {
      // Dropped items are gone, the rest arrive in order, once each.
      std::vector<std::vector<std::uint64_t>> per(logs.size());
      for (const std::string& item : rlog.items) {
        auto id = parse_item(item);
        ASSERT_TRUE(id && id->producer < logs.size()) << where << ": an item no producer made";
        per[id->producer].push_back(id->index);
      }
      std::uint64_t accepted = 0;
      for (std::size_t p = 0; p < logs.size(); ++p) {
        ASSERT_TRUE(test::is_subsequence(per[p], logs[p].accepted)) << where << ": producer " << p;
        accepted += logs[p].accepted.size();
      }
      EXPECT_EQ(rlog.items.size() + end_stats.items_dropped, accepted) << where << ": received + dropped";
    } else {
      check_delivery(rlog.items, logs, where);
    }
    EXPECT_EQ(end_stats.memory_items, 0u) << where;
    EXPECT_EQ(end_stats.disk_items, 0u) << where;
    // Nothing was left to write at shutdown, and everything read was committed.
    EXPECT_TRUE(test::segment_files(round.options.directory).empty()) << where;
    return;
  }

  // The receiver left: a reopen delivers the rest.
  ReceiverLog after;
  {
    auto ch = channel<std::string>(round.options);
    ASSERT_TRUE(ch.ok()) << where << ": reopen: " << ch.status().message();
    ch->sender.close();
    consume(ch->receiver, round, UINT64_MAX, seed, after);
    ASSERT_EQ(after.end.code(), Errc::closed) << where << ": " << after.end.message();
  }
  if (std::getenv("HOPPER_VERBOSE")) {
    std::printf("  after the reopen: %zu items, %lld ms since the round started\n", after.items.size(),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           std::chrono::steady_clock::now() - started).count()));
    std::fflush(stdout);
  }
  std::vector<std::string> all(rlog.items.begin(), rlog.items.begin() + static_cast<std::ptrdiff_t>(
                                                                           round.options.manual_commit ? rlog.committed : rlog.items.size()));
  if (round.options.manual_commit) {
    // What was received and not committed comes back first.
    const std::size_t again = rlog.items.size() - rlog.committed;
    ASSERT_GE(after.items.size(), again) << where;
    for (std::size_t k = 0; k < again; ++k)
      ASSERT_EQ(after.items[k], rlog.items[rlog.committed + k]) << where << ": redelivered item " << k;
  }
  all.insert(all.end(), after.items.begin(), after.items.end());
  if (delivered_exactly(all, logs)) return;
  // Only on failure: say where the first missing item of each producer went.
  std::ostringstream story;
  story << where << " (before and after the reopen: received " << rlog.items.size() << ", committed "
        << rlog.committed << ", after the reopen " << after.items.size() << "; corrupt pages "
        << end_stats.corrupt_pages << ", corrupt items " << end_stats.corrupt_items << ", dropped "
        << end_stats.items_dropped << ", pages written " << end_stats.pages_written << ")";
  for (const auto& line : damage) story << "\n  damage: " << line;
  for (std::size_t p = 0; p < logs.size(); ++p) {
    for (std::uint64_t i : logs[p].accepted) {
      if (position_of(all, static_cast<std::uint32_t>(p), i) != std::string::npos) continue;
      story << "; producer " << p << " item " << i << " missing: received before at "
            << static_cast<std::ptrdiff_t>(position_of(rlog.items, static_cast<std::uint32_t>(p), i)) << ", after at "
            << static_cast<std::ptrdiff_t>(position_of(after.items, static_cast<std::uint32_t>(p), i))
            << "; the next, " << i + 1 << ", before at "
            << static_cast<std::ptrdiff_t>(position_of(rlog.items, static_cast<std::uint32_t>(p), i + 1)) << ", after at "
            << static_cast<std::ptrdiff_t>(position_of(after.items, static_cast<std::uint32_t>(p), i + 1))
            << "; the previous before at "
            << static_cast<std::ptrdiff_t>(position_of(rlog.items, static_cast<std::uint32_t>(p), i - 1)) << ", after at "
            << static_cast<std::ptrdiff_t>(position_of(after.items, static_cast<std::uint32_t>(p), i - 1));
      break;
    }
  }
  check_delivery(all, logs, story.str());
}

TEST(Concurrency, ProducersAndReceiverRoundTrip) {
  std::mt19937_64 rng(seed_for("Concurrency.ProducersAndReceiverRoundTrip"));
  const std::uint64_t n = rounds();
  test::Watchdog watchdog(std::chrono::seconds(600 * test::env_scale("HOPPER_STRESS_SCALE")),
                          "Concurrency.ProducersAndReceiverRoundTrip");
  for (std::uint64_t i = 0; i < n; ++i) {
    test::TempDir dir;
    const Round round = draw_round(rng, dir.path(), false);
    run_round(round, rng(), std::nullopt, "round " + std::to_string(i) + " {" + round.describe() + "}");
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
}

TEST(Concurrency, DropOldestKeepsOrderAndCounts) {
  std::mt19937_64 rng(seed_for("Concurrency.DropOldestKeepsOrderAndCounts"));
  const std::uint64_t n = rounds();
  test::Watchdog watchdog(std::chrono::seconds(600 * test::env_scale("HOPPER_STRESS_SCALE")),
                          "Concurrency.DropOldestKeepsOrderAndCounts");
  for (std::uint64_t i = 0; i < n; ++i) {
    test::TempDir dir;
    Round round = draw_round(rng, dir.path(), true);
    round.options.when_full = FullPolicy::drop_oldest;
    round.options.manual_commit = false;
    round.options.sync = SyncPolicy::none;
    run_round(round, rng(), std::nullopt, "round " + std::to_string(i) + " {" + round.describe() + "}");
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
}

TEST(Concurrency, ReceiverLeavesAndReopenDeliversTheRest) {
  std::mt19937_64 rng(seed_for("Concurrency.ReceiverLeavesAndReopenDeliversTheRest"));
  const std::uint64_t n = rounds();
  test::Watchdog watchdog(std::chrono::seconds(600 * test::env_scale("HOPPER_STRESS_SCALE")),
                          "Concurrency.ReceiverLeavesAndReopenDeliversTheRest");
  for (std::uint64_t i = 0; i < n; ++i) {
    test::TempDir dir;
    const Round round = draw_round(rng, dir.path(), false);
    std::uint64_t total = 0;
    for (auto q : round.quota) total += q;
    const std::uint64_t leave_after = std::uniform_int_distribution<std::uint64_t>(0, total)(rng);
    run_round(round, rng(), leave_after,
              "round " + std::to_string(i) + " {" + round.describe() + ", receiver leaves after " +
                  std::to_string(leave_after) + "}");
    if (HasFatalFailure() || HasNonfatalFailure()) return;
  }
}

// ---- regressions found by the rounds above --------------------------------------------

// The POSIX file system, with a hook that runs before each remove(): lets a test act in the
// window where the queue has released its lock to unlink a segment. Thread-safe as POSIX is
// (the hook is set before the queue opens).
class RemoveHookFileSystem final : public test::ForwardingFileSystem {
 public:
  std::function<void(const fs::path&)> before_remove;

  Status remove(const fs::path& path) override {
    if (before_remove) before_remove(path);
    return ForwardingFileSystem::remove(path);
  }
};

// Found by ReceiverLeavesAndReopenDeliversTheRest with manual_commit: items accepted under
// FullPolicy::fail vanished from the live queue and were counted as "dropped". commit()
// picks the segments that are read and committed, then removes them one by one; each
// unlink runs with the queue lock released, and meanwhile a sender appended pages to the
// (then active, fully read) segment that was next on the list and rotated away from it.
// That segment was then deleted with unread pages in it. Here the sends happen inside the
// first unlink, deterministically.
TEST(ConcurrencyRegression, CommitDoesNotDeleteASegmentWrittenDuringItsUnlinks) {
  test::TempDir dir;
  auto rfs = std::make_shared<RemoveHookFileSystem>();
  Options o;
  o.directory = dir.path();
  o.file_system = rfs;
  o.max_memory_bytes = 1;  // every item spills
  o.max_disk_bytes = 1 << 20;
  o.page_bytes = 1;  // one item per page, written as it is sent
  o.segment_bytes = detail::SpillWriter::bound(o.page_bytes) + 80;  // a few pages per segment
  o.when_full = FullPolicy::fail;
  o.manual_commit = true;
  auto ch = channel<std::uint32_t>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  Sender<std::uint32_t>& sender = ch->sender;
  Receiver<std::uint32_t>& receiver = ch->receiver;

  // Fill segment 1 and start segment 2, then read everything: both are read, neither
  // committed.
  std::uint32_t sent = 0;
  while (test::segment_files(dir.path()).size() < 2) {
    ASSERT_LT(sent, 100u) << "no rotation";
    ASSERT_TRUE(sender.send(std::uint32_t{sent}).ok());
    ++sent;
  }
  std::vector<std::uint32_t> got = test::drain(receiver);
  ASSERT_EQ(got, test::iota_u32(sent));

  // commit() releases segments 1 and 2. While it unlinks segment 1, more items go to
  // segment 2 (still active) until the writer rotates to segment 3.
  bool hooked = false;
  rfs->before_remove = [&](const fs::path& path) {
    if (hooked || path.filename() != format::segment_file_name(1)) return;
    hooked = true;
    while (!fs::exists(dir.path() / format::segment_file_name(3)) && sent < 200) {
      if (!sender.try_send(std::uint32_t{sent}).ok()) break;
      ++sent;
    }
  };
  ASSERT_TRUE(receiver.commit().ok());
  rfs->before_remove = nullptr;
  ASSERT_TRUE(hooked);

  // Every item accepted while segment 1 was being unlinked is still delivered.
  std::vector<std::uint32_t> rest = test::drain(receiver);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(got, test::iota_u32(sent));
  EXPECT_EQ(receiver.stats().items_dropped, 0u) << "FullPolicy::fail never drops";
}

}  // namespace
}  // namespace hopper
