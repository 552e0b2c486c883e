// The queues the benchmarks compare, each behind the interface run_mpsc() expects
// (producer(), ready(), recv()), plus the compression limit.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <hopper/hopper.hpp>

#include "classic_queue.hpp"
#include "ticket_ring.hpp"

namespace hopper::bench {

// hopper itself. The receiver takes up to `batch` items per recv_many() call (many memory
// items per lock acquisition), or one per recv() call when batch is 1. Not thread-safe as a
// whole: producer() and ready() on the harness's thread; each producer handle on its own
// thread; recv() on the receiving thread.
// How the harness's receiver takes hopper's items: recv() per item, recv_for() per item
// (100 ms), a try_recv() loop that yields the core when it finds nothing, or recv_many()
// of up to `batch`.
enum class Receive { one, timed, poll, many };

template <class T>
class HopperContender {
 public:
  explicit HopperContender(const Options& options, std::size_t batch = 256, Receive mode = Receive::many)
      : batch_(batch), mode_(batch <= 1 && mode == Receive::many ? Receive::one : mode) {
    auto ch = channel<T>(options);
    if (!ch.ok()) throw std::runtime_error("hopper::channel: " + ch.status().message());
    sender_.emplace(std::move(ch->sender));
    receiver_.emplace(std::move(ch->receiver));
    buffer_.reserve(batch_);
  }

  class Producer {
   public:
    explicit Producer(Sender<T> s) : s_(std::move(s)) {}
    void send(T&& item) {
      if (Status st = s_.send(std::move(item)); !st.ok()) throw std::runtime_error(st.message());
    }

   private:
    Sender<T> s_;
  };

  Producer producer() { return Producer(*sender_); }
  void ready() { sender_.reset(); }
  void recv(T& out) {
    switch (mode_) {
      case Receive::one:
        if (Status st = receiver_->recv(out); !st.ok()) throw std::runtime_error(st.message());
        return;
      case Receive::timed:
        for (;;) {
          const Status st = receiver_->recv_for(out, std::chrono::milliseconds(100));
          if (st.ok()) return;
          if (st.code() != Errc::timeout) throw std::runtime_error(st.message());
        }
      case Receive::poll:
        for (;;) {
          const Status st = receiver_->try_recv(out);
          if (st.ok()) return;
          if (st.code() != Errc::empty) throw std::runtime_error(st.message());
          std::this_thread::yield();
        }
      case Receive::many:
        break;
    }
    if (pos_ == buffer_.size()) {
      buffer_.clear();
      pos_ = 0;
      if (Status st = receiver_->recv_many(buffer_, batch_); !st.ok()) throw std::runtime_error(st.message());
    }
    out = std::move(buffer_[pos_++]);
  }
  Stats stats() const { return receiver_->stats(); }
  // The last handle goes: hopper persists what is left and writes its cursor.
  void close() {
    sender_.reset();
    receiver_.reset();
  }

 private:
  std::optional<Sender<T>> sender_;
  std::optional<Receiver<T>> receiver_;
  std::size_t batch_;
  Receive mode_;
  std::vector<T> buffer_;
  std::size_t pos_ = 0;
};

// A queue with push(T&&), pop(T&) (false once every producer closed and it is empty) and
// open_producer()/close_producer() — ClassicQueue, TicketRing — under the harness. Same
// threading rules as HopperContender.
template <class T, class Q>
class CountedContender {
 public:
  explicit CountedContender(std::uint64_t capacity_bytes) : q_(capacity_bytes) {}

  class Producer {
   public:
    explicit Producer(Q* q) : q_(q) { q_->open_producer(); }
    Producer(Producer&& o) noexcept : q_(std::exchange(o.q_, nullptr)) {}
    Producer& operator=(Producer&&) = delete;
    ~Producer() {
      if (q_) q_->close_producer();
    }
    void send(T&& item) { q_->push(std::move(item)); }

   private:
    Q* q_;
  };

  Producer producer() { return Producer(&q_); }
  void ready() {}
  void recv(T& out) {
    if (!q_.pop(out)) throw std::runtime_error("every producer closed before all items arrived");
  }

 private:
  Q q_;
};

// The classic queue, and the ticket ring (ticket_ring.hpp): the lock-free bound of a
// queue with one order and a byte budget.
template <class T>
using ClassicContender = CountedContender<T, ClassicQueue<T>>;
template <class T, bool kAdmitFirst = false>
using TicketRingContender = CountedContender<T, TicketRing<T, kAdmitFirst>>;

// moodycamel::BlockingConcurrentQueue with a producer token per producer and a receiver
// that takes up to kBatch items per call (its fast path). Unbounded: it has no byte
// budget, so it is faster by not having to wait for room, and its memory grows with the
// backlog. Same threading rules as HopperContender.
template <class T>
class MoodycamelContender {
 public:
  static constexpr std::size_t kBatch = 256;

  MoodycamelContender() : ctok_(q_), batch_(kBatch) {}

  class Producer {
   public:
    explicit Producer(MoodycamelContender* c) : c_(c), tok_(c->q_) { c_->live_.fetch_add(1, std::memory_order_relaxed); }
    Producer(Producer&& o) noexcept : c_(std::exchange(o.c_, nullptr)), tok_(std::move(o.tok_)) {}
    Producer& operator=(Producer&&) = delete;
    // Release: this producer's enqueues happen before the receiver sees it gone.
    ~Producer() {
      if (c_) c_->live_.fetch_sub(1, std::memory_order_release);
    }
    void send(T&& item) {
      if (!c_->q_.enqueue(tok_, std::move(item))) throw std::runtime_error("moodycamel: allocation failed");
    }

   private:
    MoodycamelContender* c_;
    moodycamel::ProducerToken tok_;
  };

  Producer producer() { return Producer(this); }
  void ready() {}
  void recv(T& out) {
    while (pos_ == size_) {
      pos_ = 0;
      size_ = q_.wait_dequeue_bulk_timed(ctok_, batch_.begin(), kBatch, std::chrono::milliseconds(20));
      if (size_ == 0 && live_.load(std::memory_order_acquire) == 0) {
        size_ = q_.try_dequeue_bulk(ctok_, batch_.begin(), kBatch);
        if (size_ == 0) throw std::runtime_error("every producer closed before all items arrived");
      }
    }
    out = std::move(batch_[pos_++]);
  }

 private:
  moodycamel::BlockingConcurrentQueue<T> q_;
  moodycamel::ConsumerToken ctok_;
  std::vector<T> batch_;
  std::size_t pos_ = 0;
  std::size_t size_ = 0;
  std::atomic<int> live_{0};
};

// The durability limit: one thread appending `items` records of `record_bytes` to a file
// in `dir`, each followed by fdatasync — what one item per sync costs on this disk.
// `preallocated`: the file is fallocate'd to its final size first and written in place, so
// no fdatasync has a new file size to record. Returns the seconds taken.
// `with_receiver`: each record, once synced, is handed to a receiving thread through the
// mutex+condvar deque (ClassicQueue), as a queue with a consumer must: what a sleeping
// receiver's wake-up per item adds to the limit.
double fdatasync_limit_seconds(const std::filesystem::path& dir, std::uint64_t items, std::size_t record_bytes,
                               bool preallocated, bool with_receiver = false);

// The limit: one thread compressing `total_bytes` of `pool` (cycled) with zstd at `level`
// in chunks of `chunk_bytes`, each an independent frame as a hopper page is. Returns the
// seconds taken and sets `compressed` to the bytes produced.
double zstd_limit_seconds(std::string_view pool, std::uint64_t total_bytes, std::size_t chunk_bytes, int level,
                          std::uint64_t& compressed);

}  // namespace hopper::bench
