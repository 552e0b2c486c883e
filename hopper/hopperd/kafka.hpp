// The Kafka output's egress: lines from the output's hopper queue to a Kafka topic through
// librdkafka's idempotent producer, committed in the queue only once the brokers have
// acknowledged them (at least once, from the socket to the broker).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "hopperd/queue_item.hpp"

#include "hopperd/config.hpp"
#include "hopperd/counters.hpp"
#include "hopperd/logging.hpp"

struct rd_kafka_s;
struct rd_kafka_topic_s;
struct rd_kafka_message_s;

namespace hopperd {

// The key of `line` for key = "field:N": its N-th field (1-based), fields separated by
// runs of spaces or tabs; nullopt when the line has fewer fields, or field is 0.
std::optional<std::string_view> line_key(std::string_view line, unsigned field) noexcept;

// The lines handed to the producer and not yet settled, in queue order, each with its queue
// position. Delivery reports arrive out of order (several partitions); the queue may only
// be committed through the first line not yet settled. Not thread-safe: one egress thread.
class AckWindow {
 public:
  using Id = std::uint64_t;  // stable for a line while it is in the window
  enum class State : std::uint8_t {
    sent,   // produced, no delivery report yet
    done,   // acknowledged, or rejected for good and dealt with
    retry,  // failed in a way that may pass later: to be produced again, in order
  };
  struct Entry {
    std::uint64_t end;  // the queue position just past this line
    std::string line;
    std::chrono::steady_clock::time_point since;  // first produced
    State state = State::sent;
  };

  // The id the next push gets (librdkafka carries it in the message, so it is known first).
  Id next_id() const noexcept { return first_ + entries_.size(); }
  Id push(std::uint64_t end, std::string line, std::chrono::steady_clock::time_point now, State state = State::sent);
  // Takes back the line just pushed (librdkafka did not take it). `id` must be the last.
  std::string pop_back(Id id) noexcept;
  // nullptr when `id` is not (or no longer) in the window. An entry's line does not move
  // while it is in the window (std::deque keeps elements in place when its ends change):
  // librdkafka reads it from there until its delivery report.
  Entry* find(Id id) noexcept;
  // A delivery report: ok, retry or done (rejected). Reports for a line that is not `sent`
  // are ignored (a purge after a report, say). Returns false for an unknown id.
  bool settle(Id id, State to) noexcept;
  // Every line still `sent` becomes `retry` (the producer that had them is gone).
  void fail_outstanding() noexcept;
  // Drops the settled lines at the front; returns the queue position through which
  // everything is settled, if that moved.
  std::optional<std::uint64_t> pop_settled() noexcept;

  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }
  std::size_t outstanding() const noexcept { return sent_; }
  std::size_t retries() const noexcept { return retry_; }
  Id first_id() const noexcept { return first_; }
  // The oldest line not settled (the front, once pop_settled ran).
  const Entry* oldest() const noexcept { return entries_.empty() ? nullptr : &entries_.front(); }
  // For producing again: the next `retry` line at or after `from`, in order.
  std::optional<Id> next_retry(Id from) const noexcept;
  // `id` (a `retry` line) is being produced again.
  void resend(Id id) noexcept;

 private:
  std::deque<Entry> entries_;
  Id first_ = 0;        // id of entries_.front()
  std::size_t sent_ = 0;
  std::size_t retry_ = 0;
};

// Thread-safety: run() on one thread (the output's); health() and the counters from any.
class KafkaEgress {
 public:
  // Builds the producer (librdkafka checks the properties again, e.g. that TLS files
  // exist) and opens the dead-letter queue. The error names the output and config key.
  static hopper::Result<std::unique_ptr<KafkaEgress>> create(const OutputConfig& config, OutputCounters& counters,
                                                             std::shared_ptr<spdlog::logger> log);
  ~KafkaEgress();
  KafkaEgress(const KafkaEgress&) = delete;
  KafkaEgress& operator=(const KafkaEgress&) = delete;

  // Drains `receiver` into the topic until `stopping()`; then waits for the lines in flight
  // (while a broker is reachable, until `hard_deadline()`), commits what was acknowledged
  // and purges the rest, which stays uncommitted and comes back on the next start.
  void run(hopper::Receiver<std::string>& receiver, const std::function<bool()>& stopping,
           const std::function<std::chrono::steady_clock::time_point()>& hard_deadline);

  // One line for /healthz: whether the brokers are reachable.
  std::string health() const;
  bool brokers_reachable() const noexcept { return read(counters_.connected) > 0; }

 private:
  KafkaEgress(const OutputConfig& config, OutputCounters& counters, std::shared_ptr<spdlog::logger> log);
  hopper::Status start_producer();
  void stop_producer();
  // Serves delivery reports, errors and statistics for up to `wait`.
  void serve(std::chrono::milliseconds wait);
  enum class Produced { ok, queue_full, rejected, failed };
  Produced produce(AckWindow::Id id, const std::string& line);
  void reject(const std::string& line, const std::string& why);
  void commit(hopper::Receiver<std::string>& receiver, bool force);
  void update_gauges();

  static void on_delivery(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque);
  static void on_error(rd_kafka_s* rk, int err, const char* reason, void* opaque);
  static int on_statistics(rd_kafka_s* rk, char* json, std::size_t len, void* opaque);
  void delivery(const rd_kafka_message_s& msg);
  void statistics(std::string_view json);

  OutputConfig config_;
  OutputCounters& counters_;
  std::shared_ptr<spdlog::logger> log_;
  std::optional<hopper::Channel<std::string>> dead_letter_;

  // [egress thread]
  rd_kafka_s* rk_ = nullptr;
  rd_kafka_topic_s* topic_ = nullptr;
  AckWindow window_;
  bool fatal_ = false;        // the producer hit a fatal error: replace it
  bool need_rewind_ = false;  // a line must be produced again: nothing new until it is
  bool purge_queued_ = false;  // ... and the lines librdkafka holds unsent must not overtake it
  bool rewinding_ = false;    // producing the `retry` lines again, in order
  AckWindow::Id rewind_at_ = 0;
  std::uint64_t acked_end_ = 0;      // everything before this queue position is settled
  std::uint64_t committed_end_ = 0;  // ... and committed
  std::uint64_t acked_bytes_ = 0;    // settled since the last commit
  std::uint64_t delivered_unpublished_ = 0;  // acknowledged, not yet in counters_.delivered
  std::chrono::steady_clock::time_point last_commit_{};
  bool reachable_logged_ = false;  // what the log last said about the brokers
  std::chrono::steady_clock::time_point unreachable_at_{};
  RateLimit error_log_;
  RateLimit reject_log_;

  // Written by the egress thread, read by health(): relaxed, reporting only.
  std::atomic<std::chrono::steady_clock::rep> unreachable_since_{0};
};

}  // namespace hopperd
