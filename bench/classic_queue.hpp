// ClassicQueue: the bounded queue a C++ programmer writes without hopper — one std::mutex,
// two std::condition_variables and a std::deque — bounded in bytes like hopper's memory
// budget, so the two can be compared with the same capacity.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <utility>

#include <hopper/footprint.hpp>

namespace hopper::bench {

// A blocking MPSC (in fact MPMC) queue whose capacity is a byte budget, each item charged
// hopper::footprint() — exactly what hopper charges — so "the same byte capacity" means
// the same number of items in both. One item per lock acquisition on both sides, notify
// after unlock: the textbook shape. Thread-safe: push from any threads, pop from any.
template <class T>
class ClassicQueue {
 public:
  explicit ClassicQueue(std::uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // Waits for room. An item larger than the whole capacity is let into an empty queue
  // rather than blocking forever. Thread-safe.
  void push(T&& item) {
    const std::uint64_t fp = footprint(item);
    {
      std::unique_lock lk(mu_);
      not_full_.wait(lk, [&] { return bytes_ == 0 || bytes_ + fp <= capacity_; });
      items_.push_back(Entry{std::move(item), fp});
      bytes_ += fp;
    }
    not_empty_.notify_one();
  }

  // Waits for an item; false once close_producer() was called by every producer and the
  // queue is empty. Thread-safe.
  bool pop(T& out) {
    {
      std::unique_lock lk(mu_);
      not_empty_.wait(lk, [&] { return !items_.empty() || producers_ == 0; });
      if (items_.empty()) return false;
      out = std::move(items_.front().item);
      bytes_ -= items_.front().footprint;
      items_.pop_front();
    }
    not_full_.notify_one();
    return true;
  }

  // Producer bookkeeping, so pop() can report the end. Thread-safe.
  void open_producer() {
    std::lock_guard lk(mu_);
    ++producers_;
  }
  void close_producer() {
    {
      std::lock_guard lk(mu_);
      --producers_;
    }
    not_empty_.notify_all();
  }

 private:
  struct Entry {
    T item;
    std::uint64_t footprint;
  };
  const std::uint64_t capacity_;
  std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<Entry> items_;   // [mu_]
  std::uint64_t bytes_ = 0;   // [mu_]
  int producers_ = 0;         // [mu_]
};

}  // namespace hopper::bench
