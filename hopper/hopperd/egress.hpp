// Output: one downstream of hopperd — its hopper queue of lines and the egress thread that
// drains the queue, in order, to a TCP connection or (kafka.hpp) a Kafka topic.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include <spdlog/logger.h>

#include "hopperd/queue_item.hpp"

#include "hopperd/config.hpp"
#include "hopperd/counters.hpp"
#include "hopperd/kafka.hpp"
#include "hopperd/tls.hpp"

namespace hopperd {

// A TCP client connection with deadlines on every step (the egress thread must notice a
// stop request while a downstream hangs). Not thread-safe: owned by one egress thread.
class Connection {
 public:
  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { close(); }

  // Connects within `timeout` (the TLS handshake included, when `tls` is not null); gives
  // up early when `stop` becomes true.
  hopper::Status connect(const Endpoint& to, std::chrono::milliseconds timeout, const std::atomic<bool>& stop,
                         asio::ssl::context* tls = nullptr, const std::string& server_name = "", bool verify = true);
  // Writes all of `bytes` before `deadline`. Fails on any error, on the peer closing
  // (whatever it sends back is read and ignored) or when `give_up()` says so.
  hopper::Status write_all(std::string_view bytes, std::chrono::steady_clock::time_point deadline,
                           const std::function<bool()>& give_up);
  // Waits until `until` (or `give_up()`) and says whether the peer is still there: false
  // when it closed or reset the connection.
  bool still_open(std::chrono::steady_clock::time_point until, const std::function<bool()>& give_up);
  bool connected() const noexcept { return fd_ >= 0; }
  std::chrono::steady_clock::time_point since() const noexcept { return since_; }
  void close() noexcept;

 private:
  // Reads and discards what the peer sent; false if it closed or failed.
  bool drain_input();
  int fd_ = -1;
  std::unique_ptr<TlsSession> tls_;
  std::chrono::steady_clock::time_point since_{};
};

// Thread-safety: try_send, stats and counters may be used from any thread; start, stop and
// destruction from the thread that owns the Output.
class Output {
 public:
  // Opens (or recovers) the queue. The error names the queue directory and the config key.
  // `counters` carries the output's counts across a reload that replaces it (null: new).
  static hopper::Result<std::unique_ptr<Output>> open(const OutputConfig& config, std::shared_ptr<spdlog::logger> log,
                                                      std::shared_ptr<OutputCounters> counters = nullptr);
  ~Output();
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  const OutputConfig& config() const noexcept { return config_; }
  // Takes a prefix of `lines` (those may be moved from) without waiting for room; see
  // Sender::try_send_many. Thread-safe.
  hopper::Status try_send_many(std::span<std::string> lines, std::size_t& taken) {
    return sender_.try_send_many(lines, taken);
  }
  hopper::Stats stats() const { return receiver_.stats(); }
  std::shared_ptr<OutputCounters> shared_counters() const { return counters_; }
  BacklogClock& backlog() noexcept { return backlog_; }
  // Seconds since the oldest line not yet delivered (or rejected, or dropped) was queued;
  // 0 when none waits. On the I/O thread only (the backlog clock is its).
  double backlog_age_seconds(std::chrono::steady_clock::time_point now);
  // The Kafka side of a type = "kafka" output, null for TCP. Its health() and counters
  // may be read from any thread.
  const KafkaEgress* kafka() const noexcept { return kafka_.get(); }

  // Starts the egress thread.
  void start();
  // No more lines will be sent (listeners are closed).
  void close_input() { sender_.close(); }
  // Asks the egress thread to stop: a write in progress may finish until `hard_deadline`;
  // nothing not yet written is committed. Does not wait.
  void request_stop(std::chrono::steady_clock::time_point hard_deadline);
  // Waits for the egress thread, then closes the queue: what is left is written to disk
  // and found again by the next start.
  void finish();

 private:
  Output(const OutputConfig& config, std::shared_ptr<spdlog::logger> log, hopper::Channel<std::string> ch,
         std::shared_ptr<OutputCounters> counters);
  void run();
  bool collect(std::string& batch, std::uint64_t& lines, std::chrono::steady_clock::time_point& oldest);
  void commit();
  // Sleeps up to `d`, returning early on a stop request.
  void pause(std::chrono::milliseconds d);
  std::chrono::milliseconds next_backoff();

  OutputConfig config_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<OutputCounters> counters_;

 public:
  OutputCounters& counters;  // *counters_, bumped by the egress thread and by ingest

 private:
  std::shared_ptr<asio::ssl::context> tls_;  // tls = true
  BacklogClock backlog_;                      // [I/O thread]
  std::uint64_t done_base_ = 0;               // delivered + rejected when this Output opened
  hopper::Sender<std::string> sender_;
  hopper::Receiver<std::string> receiver_;  // [egress thread] after start()
  std::unique_ptr<KafkaEgress> kafka_;      // runs on the egress thread
  std::thread thread_;

  // stop_ is a flag and hard_deadline_ a time: the egress thread re-checks them and what
  // it does next depends on no other data written before they were set, so no ordering
  // is needed (seq_cst for simplicity). stop_mu_/stop_cv_ wake it from its sleeps.
  std::atomic<bool> stop_{false};
  std::atomic<std::chrono::steady_clock::rep> hard_deadline_{0};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;

  // [egress thread]
  std::chrono::milliseconds backoff_{0};
  std::uint64_t rng_ = 0;
  bool uncommitted_ = false;
  std::chrono::steady_clock::time_point last_commit_{};
};

}  // namespace hopperd
