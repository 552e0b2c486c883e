#include "hopperd/kafka.hpp"

#include <algorithm>
#include <thread>

#include <librdkafka/rdkafka.h>
#include <nlohmann/json.hpp>

namespace hopperd {

using hopper::Errc;
using hopper::Status;
using Clock = std::chrono::steady_clock;

// ---- keys -------------------------------------------------------------------------------

std::optional<std::string_view> line_key(std::string_view line, unsigned field) noexcept {
  if (field == 0) return std::nullopt;
  std::size_t i = 0;
  for (unsigned n = 1;; ++n) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) return std::nullopt;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (n == field) return line.substr(i, j - i);
    i = j;
  }
}

// ---- AckWindow --------------------------------------------------------------------------

AckWindow::Id AckWindow::push(std::uint64_t end, std::string line, Clock::time_point now, State state) {
  entries_.push_back(Entry{end, std::move(line), now, state});
  if (state == State::sent) ++sent_;
  if (state == State::retry) ++retry_;
  return first_ + entries_.size() - 1;
}

std::string AckWindow::pop_back(Id id) noexcept {
  if (entries_.empty() || id != first_ + entries_.size() - 1) return {};
  Entry& e = entries_.back();
  if (e.state == State::sent) --sent_;
  if (e.state == State::retry) --retry_;
  std::string line = std::move(e.line);
  entries_.pop_back();
  return line;
}

AckWindow::Entry* AckWindow::find(Id id) noexcept {
  if (id < first_ || id - first_ >= entries_.size()) return nullptr;
  return &entries_[static_cast<std::size_t>(id - first_)];
}

bool AckWindow::settle(Id id, State to) noexcept {
  Entry* e = find(id);
  if (!e) return false;
  if (e->state != State::sent || to == State::sent) return true;
  e->state = to;
  --sent_;
  if (to == State::retry) ++retry_;
  return true;
}

void AckWindow::fail_outstanding() noexcept {
  for (Entry& e : entries_)
    if (e.state == State::sent) e.state = State::retry;
  retry_ += sent_;
  sent_ = 0;
}

std::optional<std::uint64_t> AckWindow::pop_settled() noexcept {
  std::optional<std::uint64_t> through;
  while (!entries_.empty() && entries_.front().state == State::done) {
    through = entries_.front().end;
    entries_.pop_front();
    ++first_;
  }
  return through;
}

std::optional<AckWindow::Id> AckWindow::next_retry(Id from) const noexcept {
  for (Id id = std::max(from, first_); id - first_ < entries_.size(); ++id)
    if (entries_[static_cast<std::size_t>(id - first_)].state == State::retry) return id;
  return std::nullopt;
}

void AckWindow::resend(Id id) noexcept {
  Entry* e = find(id);
  if (!e || e->state != State::retry) return;
  e->state = State::sent;
  --retry_;
  ++sent_;
}

// ---- KafkaEgress ------------------------------------------------------------------------

namespace {

// Errors after which the same line will never be taken: it is rejected (dropped or
// dead-lettered) rather than retried forever, so that it cannot wedge the output.
// Everything else (timeouts, purges, transport, leader changes...) is produced again.
bool permanent(rd_kafka_resp_err_t err) noexcept {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

constexpr std::chrono::milliseconds kIdleWait{100};  // recv_for with nothing in flight
constexpr std::chrono::milliseconds kBusyWait{5};    // each of poll and recv while lines are in flight
constexpr std::uint32_t kBurst = 256;                // lines between two polls when busy
constexpr std::size_t kBatch = 256;                  // lines taken from the queue at once

}  // namespace

hopper::Result<std::unique_ptr<KafkaEgress>> KafkaEgress::create(const OutputConfig& config, OutputCounters& counters,
                                                                 std::shared_ptr<spdlog::logger> log) {
  std::unique_ptr<KafkaEgress> k(new KafkaEgress(config, counters, std::move(log)));
  if (config.kafka.on_reject == OnReject::dead_letter) {
    auto ch = hopper::channel<std::string>(config.kafka.dead_letter);
    if (!ch.ok())
      return Status(ch.status().code(), config.kafka.dead_letter_origin + ": output \"" + config.name +
                                            "\" cannot open its dead-letter queue: " + plain(ch.status()));
    k->dead_letter_.emplace(std::move(*ch));
  }
  if (Status s = k->start_producer(); !s.ok()) return s;
  return k;
}

KafkaEgress::KafkaEgress(const OutputConfig& config, OutputCounters& counters, std::shared_ptr<spdlog::logger> log)
    : config_(config), counters_(counters), log_(std::move(log)) {}

KafkaEgress::~KafkaEgress() { stop_producer(); }

Status KafkaEgress::start_producer() {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [name, value] : config_.kafka.properties) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status(Errc::invalid_argument, config_.kafka.origin + ": librdkafka: " + name + ": " + err);
    }
  }
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(conf, &KafkaEgress::on_delivery);
  rd_kafka_conf_set_error_cb(conf, &KafkaEgress::on_error);
  rd_kafka_conf_set_stats_cb(conf, &KafkaEgress::on_statistics);
  // librdkafka's own log lines (from its threads; spdlog is thread-safe) at debug: what
  // an operator needs is in the error callback, rate-limited, and in the metrics.
  rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
    auto* self = static_cast<KafkaEgress*>(rd_kafka_opaque(rk));
    if (self) self->log_->debug("output {}: librdkafka {} {}: {}", self->config_.name, level, fac, buf);
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);  // owns conf on success
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return Status(Errc::invalid_argument,
                  "output \"" + config_.name + "\": cannot create the Kafka producer (" + config_.kafka.origin + "): " + err);
  }
  rd_kafka_topic_t* topic = rd_kafka_topic_new(rk, config_.kafka.topic.c_str(), nullptr);
  if (!topic) {
    const std::string why = rd_kafka_err2str(rd_kafka_last_error());
    rd_kafka_destroy(rk);
    return Status(Errc::invalid_argument, "output \"" + config_.name + "\": topic " + config_.kafka.topic + ": " + why);
  }
  rk_ = rk;
  topic_ = topic;
  fatal_ = false;
  purge_queued_ = false;  // the old producer's queues are gone with it
  return Status();
}

void KafkaEgress::stop_producer() {
  if (!rk_) return;
  rd_kafka_topic_destroy(topic_);
  rd_kafka_destroy(rk_);
  topic_ = nullptr;
  rk_ = nullptr;
}

void KafkaEgress::serve(std::chrono::milliseconds wait) {
  if (rk_) {
    rd_kafka_poll(rk_, static_cast<int>(wait.count()));
    if (purge_queued_) {
      // A line failed while later ones wait in librdkafka's queues, unsent (it times out
      // lines in order, the earliest first): left there, they would reach the brokers as
      // soon as one is back, ahead of the failed line produced again. Purged, they fail
      // too (their reports come with the next poll) and are produced again behind it.
      // Lines already in a request to a broker cannot be taken back; their reports are
      // waited for before the rewind.
      purge_queued_ = false;
      rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE);
    }
  } else {
    std::this_thread::sleep_for(wait);
  }
  update_gauges();
}

void KafkaEgress::update_gauges() {
  if (delivered_unpublished_ > 0) {
    bump(counters_.delivered, delivered_unpublished_);
    delivered_unpublished_ = 0;
    counters_.connected.store(1, std::memory_order_relaxed);  // a broker answered
  }
  if (auto through = window_.pop_settled()) acked_end_ = *through;  // the front is now unsettled
  // The transitions, once each, in hopperd's words (librdkafka's own messages are
  // rate-limited above, and it suppresses repeated ones itself).
  const bool reachable = brokers_reachable();
  if (reachable != reachable_logged_) {
    if (!reachable) {
      unreachable_at_ = Clock::now();
      log_->warn("output {}: no Kafka broker reachable; lines wait in the queue ({} in flight)", config_.name,
                 window_.outstanding());
    } else if (unreachable_at_ != Clock::time_point{}) {
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - unreachable_at_).count();
      log_->info("output {}: Kafka brokers reachable again after {} s ({} up)", config_.name, secs,
                 read(counters_.brokers_up));
    } else {
      log_->info("output {}: connected to Kafka ({} up)", config_.name, read(counters_.brokers_up));
    }
    reachable_logged_ = reachable;
  }
  const AckWindow::Entry* oldest = window_.oldest();
  counters_.in_flight.store(window_.outstanding() + window_.retries(), std::memory_order_relaxed);
  counters_.oldest_unacked_since.store(
      oldest ? static_cast<std::uint64_t>(
                   std::chrono::duration_cast<std::chrono::nanoseconds>(oldest->since.time_since_epoch()).count())
             : 0,
      std::memory_order_relaxed);
}

KafkaEgress::Produced KafkaEgress::produce(AckWindow::Id id, const std::string& line) {
  const std::optional<std::string_view> key = line_key(line, config_.kafka.key_field);
  // No copy: `line` is the window's, which keeps it in place until the delivery report
  // (and for a retry or the dead-letter queue). The key is copied by librdkafka always.
  const int rc = rd_kafka_produce(topic_, RD_KAFKA_PARTITION_UA, 0, const_cast<char*>(line.data()),
                                  line.size(), key ? key->data() : nullptr, key ? key->size() : 0,
                                  reinterpret_cast<void*>(static_cast<std::uintptr_t>(id)));
  if (rc == 0) return Produced::ok;
  const rd_kafka_resp_err_t err = rd_kafka_last_error();
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return Produced::queue_full;
  if (permanent(err)) {
    reject(line, rd_kafka_err2str(err));
    return Produced::rejected;
  }
  if (err == RD_KAFKA_RESP_ERR__FATAL) fatal_ = true;
  std::uint64_t held = 0;
  if (error_log_.allow(held))
    log_->warn("output {}: cannot hand a line to the producer: {} (retrying){}", config_.name, rd_kafka_err2str(err),
               held ? fmt::format(" ({} more errors not logged)", held) : std::string());
  return Produced::failed;
}

// Counted once dealt with: whoever sees the count finds the line in the dead-letter queue.
void KafkaEgress::reject(const std::string& line, const std::string& why) {
  std::string kept = "dropped";
  if (dead_letter_) {
    Status s = dead_letter_->sender.try_send(std::string(line));
    if (s.ok()) s = dead_letter_->sender.flush();  // on disk now: `hopper dump` shows it
    if (s.ok()) {
      bump(counters_.dead_lettered);
      kept = "kept in " + config_.kafka.dead_letter.directory.string();
    } else {
      bump(counters_.dead_letter_failures);
      kept = "LOST: the dead-letter queue refused it: " + s.message();
    }
  }
  bump(counters_.rejected);
  std::uint64_t held = 0;
  if (reject_log_.allow(held))
    log_->warn("output {}: a line of {} bytes was rejected for good ({}); {}{}", config_.name, line.size(), why, kept,
               held ? fmt::format(" ({} more rejections not logged)", held) : std::string());
}

void KafkaEgress::on_delivery(rd_kafka_s* rk, const rd_kafka_message_s* msg, void* opaque) {
  (void)rk;
  static_cast<KafkaEgress*>(opaque)->delivery(*msg);
}

void KafkaEgress::delivery(const rd_kafka_message_t& msg) {
  const auto id = static_cast<AckWindow::Id>(reinterpret_cast<std::uintptr_t>(msg._private));
  AckWindow::Entry* e = window_.find(id);
  if (!e || e->state != AckWindow::State::sent) return;
  if (msg.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    window_.settle(id, AckWindow::State::done);
    ++delivered_unpublished_;  // published once per poll (update_gauges), not per line
    acked_bytes_ += e->line.size();
    return;
  }
  if (permanent(msg.err)) {
    reject(e->line, rd_kafka_err2str(msg.err));
    window_.settle(id, AckWindow::State::done);
    return;
  }
  // Not delivered, maybe later: this line and every later one not yet acknowledged are
  // produced again, in order, once nothing is in flight any more.
  window_.settle(id, AckWindow::State::retry);
  need_rewind_ = true;
  rewinding_ = false;
  if (msg.err == RD_KAFKA_RESP_ERR__FATAL) fatal_ = true;
  const bool purged = msg.err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || msg.err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
  if (!purged) purge_queued_ = true;  // after this poll (serve): not from inside librdkafka's callback
  std::uint64_t held = 0;
  if (!purged && error_log_.allow(held))
    log_->warn("output {}: a line was not delivered: {}; it is produced again{}", config_.name,
               rd_kafka_err2str(msg.err), held ? fmt::format(" ({} more errors not logged)", held) : std::string());
}

void KafkaEgress::on_error(rd_kafka_s* rk, int err, const char* reason, void* opaque) {
  auto* self = static_cast<KafkaEgress*>(opaque);
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_fatal_error(rk, why, sizeof why);
    self->log_->error("output {}: the Kafka producer failed for good ({}); replacing it, unacknowledged lines are "
                      "produced again", self->config_.name, why);
    self->fatal_ = true;
    return;
  }
  if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    self->counters_.connected.store(0, std::memory_order_relaxed);
    self->counters_.brokers_up.store(0, std::memory_order_relaxed);
    if (self->unreachable_since_.load(std::memory_order_relaxed) == 0)
      self->unreachable_since_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }
  std::uint64_t held = 0;
  if (self->error_log_.allow(held))
    self->log_->warn("output {}: kafka: {} (lines wait in the queue){}", self->config_.name, reason,
                     held ? fmt::format(" ({} more errors not logged)", held) : std::string());
}

int KafkaEgress::on_statistics(rd_kafka_s* rk, char* json, std::size_t len, void* opaque) {
  (void)rk;
  static_cast<KafkaEgress*>(opaque)->statistics(std::string_view(json, len));
  return 0;  // librdkafka frees `json`
}

// Fields as documented in librdkafka's STATISTICS.md; a missing one reads as 0.
void KafkaEgress::statistics(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  auto num = [](const nlohmann::json& o, const char* key) -> std::uint64_t {
    auto it = o.find(key);
    if (it == o.end() || !it->is_number()) return 0;
    const double v = it->get<double>();
    return v > 0 ? static_cast<std::uint64_t>(v) : 0;
  };
  counters_.lib_queue_messages.store(num(j, "msg_cnt"), std::memory_order_relaxed);
  counters_.lib_queue_bytes.store(num(j, "msg_size"), std::memory_order_relaxed);
  std::uint64_t up = 0, tx = 0, txerrs = 0, txretries = 0, timeouts = 0, rtt = 0;
  if (auto b = j.find("brokers"); b != j.end() && b->is_object()) {
    for (const auto& [name, broker] : b->items()) {
      if (!broker.is_object()) continue;
      const std::string source = broker.value("source", "");
      if (source == "internal" || source == "logical") continue;
      if (broker.value("state", "") == "UP") ++up;
      tx += num(broker, "tx");
      txerrs += num(broker, "txerrs");
      txretries += num(broker, "txretries");
      timeouts += num(broker, "req_timeouts");
      if (auto r = broker.find("rtt"); r != broker.end() && r->is_object()) rtt = std::max(rtt, num(*r, "avg"));
    }
  }
  counters_.brokers_up.store(up, std::memory_order_relaxed);
  counters_.connected.store(up > 0 ? 1 : 0, std::memory_order_relaxed);
  if (up > 0) unreachable_since_.store(0, std::memory_order_relaxed);
  else if (unreachable_since_.load(std::memory_order_relaxed) == 0)
    unreachable_since_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  counters_.lib_requests.store(tx, std::memory_order_relaxed);
  counters_.lib_request_errors.store(txerrs, std::memory_order_relaxed);
  counters_.lib_request_retries.store(txretries, std::memory_order_relaxed);
  counters_.lib_request_timeouts.store(timeouts, std::memory_order_relaxed);
  counters_.lib_rtt_us.store(rtt, std::memory_order_relaxed);
}

std::string KafkaEgress::health() const {
  const std::string head = "output " + config_.name + ": kafka brokers ";
  if (brokers_reachable())
    return head + "reachable (" + std::to_string(read(counters_.brokers_up)) + " up)";
  const auto since = unreachable_since_.load(std::memory_order_relaxed);
  if (since == 0) return head + "not reached yet";
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch() -
                                                                     Clock::duration(since)).count();
  return head + "unreachable for " + std::to_string(secs) + " s; lines wait in the queue";
}

void KafkaEgress::commit(hopper::Receiver<std::string>& receiver, bool force) {
  if (auto through = window_.pop_settled()) acked_end_ = *through;
  if (acked_end_ <= committed_end_) return;
  const std::uint64_t commit_bytes = std::max<std::uint64_t>(config_.queue.max_memory_bytes / 4, 1);
  if (!force && Clock::now() - last_commit_ < config_.commit_interval && acked_bytes_ < commit_bytes) return;
  last_commit_ = Clock::now();
  const Status s = receiver.commit(acked_end_);
  if (!s.ok()) {
    bump(counters_.commit_errors);
    log_->error("output {}: cannot persist the delivery position: {}", config_.name, s.message());
    return;
  }
  bump(counters_.commits);
  committed_end_ = acked_end_;
  acked_bytes_ = 0;
}

void KafkaEgress::run(hopper::Receiver<std::string>& receiver, const std::function<bool()>& stopping,
                      const std::function<Clock::time_point()>& hard_deadline) {
  committed_end_ = acked_end_ = receiver.position();
  last_commit_ = Clock::now();
  // Lines received, not yet in the window: batch[next...]. Each line's queue position is
  // exact when the batch has no gap (no damaged or dropped item passed over), else the
  // batch's start for all but its last line: committing less is always safe.
  std::vector<std::string> batch;
  std::size_t next = 0;
  std::uint64_t batch_start = 0, batch_end = 0;
  bool exact = true;
  std::uint64_t receive_failures = 0;
  bool trim_due = false;  // the queue held 4 MiB or more since memory was last given back
  std::uint64_t batches_since_check = 0;
  // Lines produced since the last service (poll, commit, clock): a busy output pays for
  // those once per kBurst lines, not per line.
  std::uint32_t burst = 0;
  Clock::time_point now = Clock::now();

  while (!stopping()) {
    if (burst > 0) goto take;  // the fast path: straight to the next line
    serve(std::chrono::milliseconds(0));
    now = Clock::now();
    if (fatal_) {
      // Whatever the old producer held is void: its lines are produced again, in order.
      if (rk_) {
        rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        serve(std::chrono::milliseconds(0));
        stop_producer();
      }
      window_.fail_outstanding();
      need_rewind_ = true;
      rewinding_ = false;
      bump(counters_.producer_restarts);
      if (Status s = start_producer(); !s.ok()) {
        log_->error("output {}: {} (retrying)", config_.name, s.message());
        serve(std::chrono::seconds(1));
        continue;
      }
    }
    commit(receiver, false);
    if (need_rewind_ && window_.outstanding() == 0) {
      need_rewind_ = false;
      rewinding_ = true;
      rewind_at_ = window_.first_id();
    }
    if (rewinding_) {
      const std::optional<AckWindow::Id> id = window_.next_retry(rewind_at_);
      if (!id) {
        rewinding_ = false;
        continue;
      }
      const Produced p = produce(*id, window_.find(*id)->line);
      if (p == Produced::ok) {
        window_.resend(*id);
        bump(counters_.retried);
        rewind_at_ = *id + 1;
      } else if (p == Produced::rejected) {
        window_.settle(*id, AckWindow::State::done);
      } else {
        serve(kIdleWait);
      }
      continue;
    }
    if (need_rewind_) {  // wait for every report of the lines still in flight
      serve(kBusyWait * 10);
      continue;
    }
  take:
    if (next == batch.size()) {
      batch.clear();
      next = 0;
      batch_start = receiver.position();
      Status s = receiver.try_recv_many(batch, kBatch);
      if (s.code() == Errc::empty) {
        if (burst > 0) {  // serve before waiting
          burst = 0;
          continue;
        }
        const bool busy = window_.outstanding() > 0;
        s = receiver.recv_many_for(batch, kBatch, busy ? kBusyWait : kIdleWait);
        now = Clock::now();
      }
      if (s.code() == Errc::timeout) {
        if (window_.outstanding() > 0) serve(kBusyWait);
        else {
          commit(receiver, true);  // idle: persist the position now
          if (trim_due) {  // a backlog has drained: give its heap back (egress.cpp)
            const hopper::Stats st = receiver.stats();
            if (st.memory_items == 0 && st.disk_items == 0) {
              give_back_memory();
              trim_due = false;
            }
          }
        }
        continue;
      }
      if (s.code() == Errc::closed) {
        burst = 0;
        serve(kIdleWait);  // senders gone: we are stopping
        continue;
      }
      if (!s.ok()) {
        burst = 0;
        bump(counters_.receive_errors);
        if (++receive_failures == 1 || receive_failures % 20 == 0)
          log_->warn("output {}: reading its queue: {} (retrying)", config_.name, s.message());
        serve(std::chrono::milliseconds(500));
        continue;
      }
      receive_failures = 0;
      batch_end = receiver.position();
      exact = batch_end - batch_start == batch.size();
      if (!trim_due && ++batches_since_check % 64 == 0) trim_due = receiver.stats().memory_bytes >= (4u << 20);
    }
    const std::uint64_t end = exact ? batch_start + next + 1 : next + 1 == batch.size() ? batch_end : batch_start;
    const AckWindow::Id id = window_.push(end, std::move(batch[next]), now);
    const Produced p = produce(id, window_.find(id)->line);
    if (p == Produced::ok || p == Produced::rejected) {
      if (p == Produced::rejected) window_.settle(id, AckWindow::State::done);  // the commit may pass it
      ++next;
      if (++burst == kBurst) burst = 0;
      continue;
    }
    batch[next] = window_.pop_back(id);
    // Not taken (librdkafka's queue is full, or an error): kept for the next round; the
    // reports of what is in flight make the room.
    burst = 0;
    serve(p == Produced::queue_full ? kBusyWait * 4 : kIdleWait);
  }

  // Stopping: nothing new. What is in flight may still be acknowledged while a broker is
  // reachable, until the hard deadline; then the rest is purged, uncommitted, and comes
  // back from the queue on the next start (with the lines received but not produced).
  const Clock::time_point deadline = hard_deadline();
  while (rk_ && window_.outstanding() > 0 && brokers_reachable() && !fatal_ && Clock::now() < deadline)
    serve(kBusyWait * 4);
  if (rk_ && window_.outstanding() > 0) {
    log_->info("output {}: {} lines in flight were not acknowledged before the stop; they stay in the queue and are "
               "produced again after the restart", config_.name, window_.outstanding());
    rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    const Clock::time_point until = Clock::now() + std::chrono::seconds(2);
    while (window_.outstanding() > 0 && Clock::now() < until) serve(kBusyWait * 4);
  }
  commit(receiver, true);
  stop_producer();
  counters_.connected.store(0, std::memory_order_relaxed);
  reachable_logged_ = false;  // stopping is not an outage
  update_gauges();
}

}  // namespace hopperd
