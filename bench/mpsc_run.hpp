// The producers-and-one-receiver harness every queue contender runs under, and the items
// they carry.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "measure.hpp"
#include "telemetry.hpp"

namespace hopper::bench {

// What producer `p` sends as its `i`-th item. u64 items carry (producer << 48 | i), so the
// receiver can check each producer's order; lines come from the telemetry pool, each
// producer starting at a different place in it. Immutable: any thread may use one.
template <class T>
struct ItemSource;

template <>
struct ItemSource<std::uint64_t> {
  static constexpr std::size_t kRawBytes = 8;
  std::uint64_t make(int producer, std::uint64_t i) const noexcept {
    return (static_cast<std::uint64_t>(producer) << 48) | i;
  }
};

template <>
struct ItemSource<std::string> {
  static constexpr std::size_t kRawBytes = TelemetryPool::kLineBytes;
  const TelemetryPool* pool;
  std::string make(int producer, std::uint64_t i) const { return pool->line(producer * 7919 + i); }
};

// Checks what the receiver gets: u64 items in each producer's order, lines whole.
// Used by the receiving thread only.
template <class T>
class ReceiveCheck;

template <>
class ReceiveCheck<std::uint64_t> {
 public:
  explicit ReceiveCheck(int producers) : next_(producers, 0) {}
  void operator()(std::uint64_t v) {
    const std::size_t p = v >> 48;
    const std::uint64_t i = v & ((1ull << 48) - 1);
    if (p >= next_.size() || i != next_[p])
      throw std::runtime_error("order broken: producer " + std::to_string(p) + " item " + std::to_string(i) +
                               " arrived, expected item " + (p < next_.size() ? std::to_string(next_[p]) : "?"));
    ++next_[p];
  }

 private:
  std::vector<std::uint64_t> next_;
};

template <>
class ReceiveCheck<std::string> {
 public:
  explicit ReceiveCheck(int) {}
  void operator()(const std::string& s) {
    if (s.size() != TelemetryPool::kLineBytes || s.back() != '\n')
      throw std::runtime_error("a line arrived damaged (" + std::to_string(s.size()) + " bytes)");
  }
};

struct MpscShape {
  int producers = 1;
  std::uint64_t items = 0;  // in total, split evenly between the producers
  // Items per second the receiver takes while producers are still sending (it sleeps to
  // keep to it: a downstream that is slower than the producers); 0 = as fast as it can.
  // Once every producer is done it drains as fast as it can.
  double receiver_pace = 0;
};

struct MpscTimes {
  double send_seconds = 0;   // start until the last producer's last send returned
  double total_seconds = 0;  // start until the receiver had the last item
  double drain_seconds = 0;  // last send until the last item received
  std::string error;         // empty when every item arrived, in order
};

// Runs `shape` through `queue`, which provides:
//   auto producer();        a handle with send(T&&), made on this thread before any
//                           thread starts, closing itself when destroyed;
//   void ready();           every producer handle exists (drop any original handle);
//   void recv(T&);          the next item, blocking; throws when the queue failed or ended.
// Adapters report failures by throwing std::exception; they end up in MpscTimes::error.
template <class T, class Queue>
MpscTimes run_mpsc(Queue& queue, const MpscShape& shape, const ItemSource<T>& source) {
  using Producer = decltype(queue.producer());
  std::vector<Producer> handles;
  handles.reserve(shape.producers);
  for (int p = 0; p < shape.producers; ++p) handles.push_back(queue.producer());
  queue.ready();

  const std::uint64_t per = shape.items / shape.producers;
  const std::uint64_t total = per * shape.producers;
  std::atomic<bool> go{false};
  std::atomic<int> running{shape.producers};
  // Written by each producer before it decrements `running` (release); read after the
  // receiver saw `running` reach 0 or after join.
  std::vector<Clock::time_point> done(shape.producers);
  std::mutex error_mu;
  std::string error;

  std::vector<std::thread> threads;
  for (int p = 0; p < shape.producers; ++p) {
    threads.emplace_back([&, p, h = std::move(handles[p])]() mutable {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      try {
        for (std::uint64_t i = 0; i < per; ++i) h.send(source.make(p, i));
      } catch (const std::exception& e) {
        std::lock_guard lk(error_mu);
        if (error.empty()) error = std::string("send: ") + e.what();
      }
      done[p] = Clock::now();
      { Producer closing = std::move(h); }  // close this producer before signalling
      running.fetch_sub(1, std::memory_order_release);
    });
  }
  handles.clear();

  MpscTimes out;
  ReceiveCheck<T> check(shape.producers);
  T item{};
  const Clock::time_point t0 = Clock::now();
  go.store(true, std::memory_order_release);
  try {
    for (std::uint64_t n = 0; n < total; ++n) {
      if (shape.receiver_pace > 0 && running.load(std::memory_order_acquire) > 0) {
        while (static_cast<double>(n) > shape.receiver_pace * seconds_since(t0) &&
               running.load(std::memory_order_acquire) > 0)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      queue.recv(item);
      check(item);
    }
  } catch (const std::exception& e) {
    std::lock_guard lk(error_mu);
    out.error = std::string("recv: ") + e.what();
  }
  const Clock::time_point t_end = Clock::now();
  for (auto& t : threads) t.join();
  Clock::time_point last_send = t0;
  for (const auto& d : done) last_send = std::max(last_send, d);
  out.send_seconds = std::chrono::duration<double>(last_send - t0).count();
  out.total_seconds = std::chrono::duration<double>(t_end - t0).count();
  out.drain_seconds = std::chrono::duration<double>(t_end - last_send).count();
  if (!error.empty()) out.error = error + (out.error.empty() ? "" : "; " + out.error);
  return out;
}

}  // namespace hopper::bench
