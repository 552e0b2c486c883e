// Properties, checked on random items, budgets and schedules (rapidcheck):
//   (a) one sender, any items and budgets: what is received equals what was accepted, in
//       order, and the budgets hold after every operation;
//   (b) 1..8 sender threads and a concurrent receiver: no loss, no duplicate, each
//       producer's order kept;
//   (c) send k, close everything, reopen, send m: k then m, in order;
//   (d) random damage to a closed queue's segment files: the reopen succeeds and what
//       comes back is an order-preserving subsequence of what was queued, nothing
//       invented or duplicated, and lost items are reported.
//
// Run counts: 50 cases per property unless RC_PARAMS says otherwise (e.g.
// RC_PARAMS="max_success=2000" for a long run; a failure prints the seed to reproduce it).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "test_util.hpp"

namespace hopper {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

// rapidcheck reads RC_PARAMS once, lazily, when the first property runs: a default set
// here, before main, keeps CI runs short and still yields to the caller's RC_PARAMS.
const bool kModestDefaults = [] {
  if (std::getenv("RC_PARAMS") == nullptr) ::setenv("RC_PARAMS", "max_success=50", 0);
  return true;
}();

// Random but valid sizes, from the smallest the items allow up to a few pages; spilling
// is off in some cases (then memory holds at least `min_memory`). `largest_item` is the
// largest encoding any item will have.
Options gen_options(const std::filesystem::path& dir, std::uint64_t largest_item, bool allow_no_disk,
                    std::uint64_t min_memory = 1) {
  Options o;
  o.directory = dir;
  o.max_memory_bytes = *rc::gen::oneOf(rc::gen::inRange<std::uint64_t>(1, 16), rc::gen::inRange<std::uint64_t>(16, 4096));
  o.page_bytes = *rc::gen::oneOf(rc::gen::just<std::uint32_t>(1), rc::gen::inRange<std::uint32_t>(1, 128),
                                 rc::gen::inRange<std::uint32_t>(128, 8192));
  const std::uint64_t min_segment =
      std::max(test::min_segment_for_page(o.page_bytes), test::min_segment_for_item(largest_item));
  o.segment_bytes = min_segment + *rc::gen::oneOf(rc::gen::just<std::uint64_t>(0), rc::gen::inRange<std::uint64_t>(0, 8192));
  o.max_disk_bytes = o.segment_bytes * *rc::gen::inRange<std::uint64_t>(1, 5) +
                     *rc::gen::oneOf(rc::gen::just<std::uint64_t>(0), rc::gen::inRange<std::uint64_t>(0, 2048));
  if (allow_no_disk && *rc::gen::inRange(0, 6) == 0) {
    o.max_disk_bytes = 0;
    o.max_memory_bytes = std::max(o.max_memory_bytes, min_memory);
  }
  o.compression_level = *rc::gen::element(-7, 1, 3);
  // Tiny segments rotate on almost every page, and each rotation fdatasyncs: the cases
  // would wait on the disk, not test the queue. Durability is tested elsewhere.
  o.file_system = test::unsynced_file_system();
  return o;
}

std::string describe(const Options& o) {
  return "memory " + std::to_string(o.max_memory_bytes) + ", disk " + std::to_string(o.max_disk_bytes) + ", segment " +
         std::to_string(o.segment_bytes) + ", page " + std::to_string(o.page_bytes) + ", level " +
         std::to_string(o.compression_level);
}

template <class T>
void check_budgets(const Receiver<T>& r, const Options& o) {
  const Stats st = r.stats();
  RC_ASSERT(st.memory_bytes <= o.max_memory_bytes);
  if (o.max_disk_bytes > 0) {
    RC_ASSERT(st.disk_bytes <= o.max_disk_bytes);
    RC_ASSERT(test::segment_bytes_on_disk(o.directory) <= o.max_disk_bytes);
  }
}

// (a) for any item type: a single thread sends with try_send, receives when the queue is
// full and at random otherwise, and flushes at random.
template <class T>
void single_sender_round_trip(const std::vector<T>& items, std::uint64_t largest_encoding) {
  TempDir dir;
  const Options o = gen_options(dir.path(), largest_encoding, true);
  RC_TAG(o.max_disk_bytes == 0 ? "memory only" : "spilling");
  auto ch = channel<T>(o);
  RC_ASSERT(ch.ok());
  std::vector<T> accepted, received;
  T out{};
  for (const T& item : items) {
    for (;;) {
      T copy = item;
      Status s = ch->sender.try_send(std::move(copy));
      if (s.ok()) {
        accepted.push_back(item);
        break;
      }
      if (s.code() == Errc::too_large) {
        // Only without spilling can a valid item be too large: its footprint exceeds memory.
        RC_ASSERT(o.max_disk_bytes == 0);
        RC_ASSERT(footprint(item) > o.max_memory_bytes);
        break;
      }
      RC_ASSERT(s.code() == Errc::full);
      // Full means something is queued: the receiver must be able to take it.
      Status r = ch->receiver.try_recv(out);
      RC_ASSERT(r.ok());
      received.push_back(out);
      check_budgets(ch->receiver, o);
    }
    check_budgets(ch->receiver, o);
    // Sometimes receive a little, one at a time or in bulk.
    const int after = *rc::gen::inRange(0, 4);
    if (after > 1 && *rc::gen::arbitrary<bool>()) {
      const std::size_t before = received.size();
      Status r = ch->receiver.try_recv_many(received, static_cast<std::size_t>(after));
      RC_ASSERT(r.ok() || r.code() == Errc::empty);
      RC_ASSERT(received.size() - before <= static_cast<std::size_t>(after));
    } else {
      for (int i = 0; i < after - 1; ++i) {
        if (!ch->receiver.try_recv(out).ok()) break;
        received.push_back(out);
      }
    }
    if (*rc::gen::inRange(0, 20) == 0) RC_ASSERT(ch->sender.flush().ok());
    check_budgets(ch->receiver, o);
  }
  ch->sender.close();
  Status end;
  for (T& x : test::recv_until_closed(ch->receiver, &end)) received.push_back(std::move(x));
  RC_ASSERT(end.code() == Errc::closed);
  RC_ASSERT(received == accepted);
  const Stats st = ch->receiver.stats();
  RC_ASSERT(st.items_sent == accepted.size());
  RC_ASSERT(st.items_received == accepted.size());
  RC_ASSERT(st.memory_bytes == 0u);
  RC_ASSERT(st.disk_items == 0u);
}

RC_GTEST_PROP(Property, SingleSenderU32ReceivedEqualsSentInOrder, (const std::vector<std::uint32_t>& items)) {
  single_sender_round_trip(items, sizeof(std::uint32_t));
}

std::vector<std::string> gen_strings() {
  // Short random text, empty strings, and longer patterned ones (past the short-string
  // buffer, and past small pages).
  return *rc::gen::container<std::vector<std::string>>(rc::gen::oneOf(
      rc::gen::string<std::string>(), rc::gen::just(std::string()),
      rc::gen::map(rc::gen::inRange(0, 700), [](int n) {
        std::string s(static_cast<std::size_t>(n), 'p');
        for (std::size_t i = 0; i < s.size(); i += 7) s[i] = static_cast<char>('a' + i % 26);
        return s;
      })));
}

std::uint64_t largest_encoding(const std::vector<std::string>& items) {
  std::uint64_t n = 0;
  for (const auto& s : items) n = std::max<std::uint64_t>(n, 8 + s.size());  // cereal: u64 size + bytes
  return n;
}

RC_GTEST_PROP(Property, SingleSenderStringsReceivedEqualsSentInOrder, ()) {
  const auto items = gen_strings();
  single_sender_round_trip(items, largest_encoding(items));
}

// (b) ---------------------------------------------------------------------------------

RC_GTEST_PROP(Property, ManySendersNoLossNoDuplicateProducerOrderKept, ()) {
  const int producers = *rc::gen::inRange(1, 9);
  const auto counts = *rc::gen::container<std::vector<std::uint32_t>>(static_cast<std::size_t>(producers),
                                                                      rc::gen::inRange<std::uint32_t>(0, 400));
  TempDir dir;
  Options o = gen_options(dir.path(), sizeof(std::uint64_t), true, sizeof(std::uint64_t));
  o.when_full = *rc::gen::element(FullPolicy::block, FullPolicy::fail);
  RC_TAG(producers);
  test::Watchdog watchdog(120s, "ManySenders with " + describe(o));
  auto ch = channel<std::uint64_t>(o);
  RC_ASSERT(ch.ok());

  // Each producer uses one way of sending, retrying where the call may refuse.
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int p = 0; p < producers; ++p) {
    const int how = *rc::gen::inRange(0, 3);
    threads.emplace_back([s = ch->sender, p, n = counts[static_cast<std::size_t>(p)], how, &failures]() mutable {
      for (std::uint32_t i = 0; i < n; ++i) {
        const std::uint64_t v = std::uint64_t(p) << 32 | i;
        for (;;) {
          Status st = how == 0   ? s.send(std::uint64_t{v})
                      : how == 1 ? s.try_send(std::uint64_t{v})
                                 : s.send_for(std::uint64_t{v}, 1ms);
          if (st.ok()) break;
          if (st.code() != Errc::full && st.code() != Errc::timeout) {
            ++failures;
            return;
          }
          std::this_thread::yield();
        }
      }
    });
  }
  ch->sender.close();

  // The receiver takes one at a time, or in batches of up to `bulk`.
  const std::size_t bulk = *rc::gen::element<std::size_t>(1, 1, 3, 64);
  std::vector<std::uint32_t> next(static_cast<std::size_t>(producers), 0);
  std::vector<std::uint64_t> batch;
  std::uint64_t total = 0;
  Status s;
  bool ok_so_far = true;  // order and budgets, checked as items arrive
  for (;;) {
    batch.clear();
    if (bulk == 1) {
      std::uint64_t v = 0;
      s = ch->receiver.recv(v);
      if (s.ok()) batch.push_back(v);
    } else {
      s = ch->receiver.recv_many(batch, bulk);
      if (batch.size() > bulk) ok_so_far = false;
    }
    if (!s.ok()) break;
    for (std::uint64_t v : batch) {
      const auto p = static_cast<std::size_t>(v >> 32);
      const auto i = static_cast<std::uint32_t>(v);
      if (p >= next.size() || i != next[p]) ok_so_far = false;
      else ++next[p];
      if (++total % 64 == 0) {
        const Stats st = ch->receiver.stats();
        if (st.memory_bytes > o.max_memory_bytes) ok_so_far = false;
        if (o.max_disk_bytes > 0 && st.disk_bytes > o.max_disk_bytes) ok_so_far = false;
      }
    }
  }
  for (auto& t : threads) t.join();
  RC_ASSERT(failures.load() == 0);
  RC_ASSERT(s.code() == Errc::closed);
  RC_ASSERT(ok_so_far);
  RC_ASSERT(next == counts);
}

// (c) ---------------------------------------------------------------------------------

RC_GTEST_PROP(Property, SendCloseReopenSendDeliversBothInOrder, ()) {
  const auto k = *rc::gen::inRange<std::uint32_t>(0, 300);
  const auto m = *rc::gen::inRange<std::uint32_t>(0, 300);
  TempDir dir;
  const Options o = gen_options(dir.path(), sizeof(std::uint32_t), true, sizeof(std::uint32_t));
  std::vector<std::uint32_t> received;
  std::uint32_t v = 0;
  {
    auto ch = channel<std::uint32_t>(o);
    RC_ASSERT(ch.ok());
    for (std::uint32_t i = 0; i < k; ++i) {
      Status s = ch->sender.try_send(std::uint32_t{i});
      while (s.code() == Errc::full) {  // make room, keeping what comes out
        RC_ASSERT(ch->receiver.try_recv(v).ok());
        received.push_back(v);
        s = ch->sender.try_send(std::uint32_t{i});
      }
      RC_ASSERT(s.ok());
    }
    const auto take = *rc::gen::inRange<std::uint32_t>(0, k + 1);
    for (std::uint32_t i = 0; i < take && ch->receiver.try_recv(v).ok(); ++i) received.push_back(v);
  }
  {
    auto ch = channel<std::uint32_t>(o);
    RC_ASSERT(ch.ok());
    RC_ASSERT(ch->receiver.stats().items_recovered == k - received.size());
    for (std::uint32_t i = k; i < k + m; ++i) {
      Status s = ch->sender.try_send(std::uint32_t{i});
      while (s.code() == Errc::full) {
        RC_ASSERT(ch->receiver.try_recv(v).ok());
        received.push_back(v);
        s = ch->sender.try_send(std::uint32_t{i});
      }
      RC_ASSERT(s.ok());
    }
  }
  {
    auto ch = channel<std::uint32_t>(o);
    RC_ASSERT(ch.ok());
    ch->sender.close();
    for (auto x : test::recv_until_closed(ch->receiver)) received.push_back(x);
  }
  RC_ASSERT(received == test::iota_u32(k + m));
}

// (d) ---------------------------------------------------------------------------------

std::string item_for(std::uint32_t i) {
  return std::to_string(i) + ":" + std::string(i % 37, static_cast<char>('a' + i % 26));
}

RC_GTEST_PROP(Property, RandomDamageOfAClosedQueueYieldsAnOrderedSubsequence, ()) {
  const auto n = *rc::gen::inRange<std::uint32_t>(1, 400);
  TempDir dir;
  Options o = gen_options(dir.path(), 8 + item_for(n).size() + 40, false);
  o.max_disk_bytes = std::max<std::uint64_t>(o.max_disk_bytes, 1 << 20);  // room for every item
  std::vector<std::string> all;
  for (std::uint32_t i = 0; i < n; ++i) all.push_back(item_for(i));
  std::uint32_t consumed = 0;
  {
    auto ch = channel<std::string>(o);
    RC_ASSERT(ch.ok());
    for (const auto& s : all) RC_ASSERT(ch->sender.send(s).ok());
    if (*rc::gen::arbitrary<bool>()) RC_ASSERT(ch->sender.flush().ok());
    consumed = *rc::gen::inRange<std::uint32_t>(0, n / 2 + 1);
    std::string out;
    for (std::uint32_t i = 0; i < consumed; ++i) {
      RC_ASSERT(ch->receiver.try_recv(out).ok());
      RC_ASSERT(out == all[i]);
    }
  }
  const std::vector<std::string> rest(all.begin() + consumed, all.end());

  auto files = test::segment_files(dir.path());
  bool truncated = false;
  if (!files.empty()) {
    const int mutations = *rc::gen::inRange(1, 6);
    for (int i = 0; i < mutations; ++i) {
      const auto& f = files[*rc::gen::inRange<std::size_t>(0, files.size())];
      const auto size = std::filesystem::file_size(f);
      if (size == 0) continue;
      if (*rc::gen::inRange(0, 4) == 0) {
        test::truncate_file(f, *rc::gen::inRange<std::uint64_t>(0, size));
        truncated = true;
      } else {
        test::flip_byte(f, *rc::gen::inRange<std::uint64_t>(0, size));
      }
    }
  }
  RC_TAG(truncated ? "flips and truncation" : "flips");

  std::vector<std::string> got;
  Stats st;
  {
    auto ch = channel<std::string>(o);
    RC_ASSERT(ch.ok());
    ch->sender.close();
    Status end;
    got = test::recv_until_closed(ch->receiver, &end);
    RC_ASSERT(end.code() == Errc::closed);
    st = ch->receiver.stats();
  }
  RC_ASSERT(test::is_subsequence(got, rest));
  if (!truncated && got.size() < rest.size()) {
    // A flipped byte never loses items silently: some damage was counted.
    RC_ASSERT(st.corrupt_pages + st.corrupt_items + st.torn_bytes > 0u);
  }
  // Everything readable was delivered and consumed: nothing comes back a second time.
  {
    auto ch = channel<std::string>(o);
    RC_ASSERT(ch.ok());
    ch->sender.close();
    RC_ASSERT(test::recv_until_closed(ch->receiver).empty());
  }
}

}  // namespace
}  // namespace hopper
