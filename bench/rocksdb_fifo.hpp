// RocksFifo: RocksDB used as a persistent FIFO — what a user builds for a disk-backed
// queue without hopper.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rocksdb {
class DB;
}

namespace hopper::bench {

// Keys are big-endian sequence numbers (so RocksDB's byte order is FIFO order), values
// the items' bytes. The write-ahead log is on; writes are not synced (hopper's default
// guarantee), or, with `sync`, each Put waits for its WAL fdatasync (RocksDB groups
// concurrent writers into one sync, as hopper's SyncPolicy::always does). The reader takes
// up to kBatch consecutive keys per iterator and, when it comes back for more, deletes the
// keys it handed out with one DeleteRange. Thread-safe: push() from any threads; pop() from
// one thread.
class RocksFifo {
 public:
  static constexpr std::size_t kBatch = 1024;

  // Opens (creating, or reopening a backlog in) `dir`. Throws std::runtime_error with
  // RocksDB's message on failure.
  explicit RocksFifo(const std::filesystem::path& dir, bool sync = false);
  ~RocksFifo();
  RocksFifo(const RocksFifo&) = delete;
  RocksFifo& operator=(const RocksFifo&) = delete;

  // Appends `value` under the next sequence number. Thread-safe.
  void push(std::string_view value);
  // The next value in order. When nothing is there it polls (RocksDB cannot wake a
  // reader), and gives up — returning false — once `finished()` says no more will come
  // and the next key is still missing. Receiving thread only.
  bool pop(std::string& out, const std::function<bool()>& finished);

  std::uint64_t backlog() const noexcept { return next_write_.load(std::memory_order_relaxed) - next_read_; }

 private:
  void fetch();

  std::unique_ptr<rocksdb::DB> db_;
  bool sync_;
  std::atomic<std::uint64_t> next_write_{0};  // only a counter: RocksDB orders the data
  std::uint64_t next_read_ = 0;               // [receiver] first key not yet handed out
  std::uint64_t batch_first_ = 0;             // [receiver] first key of the current batch
  std::vector<std::string> batch_;            // [receiver]
  std::size_t batch_pos_ = 0;                 // [receiver]
};

// RocksFifo under the run_mpsc() harness, for items of type T (u64 or std::string).
// Thread-safety as HopperContender: producer handles on their own threads, recv() on the
// receiving thread only.
template <class T>
class RocksContender {
 public:
  explicit RocksContender(const std::filesystem::path& dir, bool sync = false) : fifo_(dir, sync) {}

  class Producer {
   public:
    explicit Producer(RocksContender* c) : c_(c) { c_->live_.fetch_add(1, std::memory_order_relaxed); }
    Producer(Producer&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Producer& operator=(Producer&&) = delete;
    // Release: this producer's pushes happen before the receiver sees it gone.
    ~Producer() {
      if (c_) c_->live_.fetch_sub(1, std::memory_order_release);
    }
    void send(T&& item) {
      if constexpr (std::is_same_v<T, std::string>) {
        c_->fifo_.push(item);
      } else {
        c_->fifo_.push(std::string_view(reinterpret_cast<const char*>(&item), sizeof item));
      }
    }

   private:
    RocksContender* c_;
  };

  Producer producer() { return Producer(this); }
  void ready() {}
  void recv(T& out) {
    auto finished = [this] { return live_.load(std::memory_order_acquire) == 0; };
    if (!fifo_.pop(value_, finished)) throw std::runtime_error("every producer closed before all items arrived");
    if constexpr (std::is_same_v<T, std::string>) {
      out = value_;
    } else {
      if (value_.size() != sizeof out) throw std::runtime_error("rocksdb value of the wrong size");
      std::memcpy(&out, value_.data(), sizeof out);
    }
  }
  RocksFifo& fifo() noexcept { return fifo_; }

 private:
  RocksFifo fifo_;
  std::atomic<int> live_{0};
  std::string value_;
};

}  // namespace hopper::bench
