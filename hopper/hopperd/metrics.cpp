#include "hopperd/metrics.hpp"

#include <array>
#include <chrono>
#include <sstream>

#include <nlohmann/json.hpp>

namespace hopperd {

namespace {

// Builds the exposition text: per family HELP, TYPE, then its samples. Not thread-safe
// (one per rendering).
class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    name_ = name;
  }
  void sample(const std::string& labels, std::uint64_t value) {
    out_ << name_;
    if (!labels.empty()) out_ << '{' << labels << '}';
    out_ << ' ' << value << '\n';
  }
  void sample(const std::string& labels, double value) {
    out_ << name_;
    if (!labels.empty()) out_ << '{' << labels << '}';
    out_ << ' ' << value << '\n';
  }
  // A family of one sample without labels.
  void single(const char* name, const char* type, const char* help, std::uint64_t value) {
    family(name, type, help);
    sample("", value);
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::string name_;
};

// Output names are checked at config time (no quotes, backslashes or newlines), so they
// can stand in a label value as they are.
std::string output_label(const Output& o) { return "output=\"" + o.config().name + "\""; }

}  // namespace

std::string render_metrics(const IngestCounters& in, const std::vector<Output*>& outputs) {
  Exposition e;
  e.family("hopperd_lines_received_total", "counter", "Lines accepted from clients, before fan-out.");
  e.sample("transport=\"tcp\"", read(in.tcp_lines));
  e.sample("transport=\"udp\"", read(in.udp_lines));
  e.family("hopperd_lines_dropped_total", "counter", "Input lines dropped before queueing, by reason.");
  for (std::size_t r = 0; r < static_cast<std::size_t>(DropReason::count); ++r) {
    const std::string reason = to_string(static_cast<DropReason>(r));
    e.sample("transport=\"tcp\",reason=\"" + reason + "\"", read(in.tcp_dropped[r]));
    e.sample("transport=\"udp\",reason=\"" + reason + "\"", read(in.udp_dropped[r]));
  }
  e.family("hopperd_bytes_received_total", "counter", "Bytes read from clients.");
  e.sample("transport=\"tcp\"", read(in.tcp_bytes));
  e.sample("transport=\"udp\"", read(in.udp_bytes));
  e.single("hopperd_udp_datagrams_total", "counter", "UDP datagrams received.", read(in.udp_datagrams));
  e.single("hopperd_tcp_connections", "gauge", "TCP client connections open.", read(in.connections_open));
  e.single("hopperd_tcp_connections_total", "counter",
           "TCP client connections accepted.",
           read(in.connections_total));
  e.family("hopperd_tcp_connections_rejected_total", "counter",
           "TCP clients accepted and closed at once: over input.max_tcp_clients, or out of file descriptors.");
  e.sample("reason=\"max_tcp_clients\"", read(in.connections_rejected));
  e.sample("reason=\"out_of_descriptors\"", read(in.connections_rejected_fd));
  e.single("hopperd_tcp_accept_errors_total", "counter",
           "accept() calls that failed (EMFILE, ENFILE, ECONNABORTED...).",
           read(in.accept_errors));
  e.single("hopperd_tcp_accept_pauses_total", "counter",
           "Times hopperd ran out of file descriptors and paused accepting (once per episode).",
           read(in.accept_pauses));
  e.single("hopperd_tcp_idle_closed_total", "counter",
           "TCP connections closed after input.idle_timeout_ms of silence.",
           read(in.idle_closed));
  e.single("hopperd_tls_handshake_failures_total", "counter",
           "TLS clients refused during the handshake.",
           read(in.tls_handshake_failures));
  e.single("hopperd_config_reloads_total", "counter", "SIGHUP reloads that took effect.", read(in.reloads));
  e.single("hopperd_config_reload_failures_total", "counter",
           "SIGHUP reloads refused (the running config stays).",
           read(in.reload_failures));
  e.single("hopperd_config_last_reload_successful", "gauge",
           "1 when the last reload (or the start) worked.",
           read(in.last_reload_ok));
  e.single("hopperd_backpressure_pauses_total", "counter",
           "Times a TCP connection stopped reading because a queue under when_full = block was full.",
           read(in.backpressure_pauses));
  e.single("hopperd_input_read_errors_total", "counter", "Failed reads on client sockets.", read(in.read_errors));

  std::vector<hopper::Stats> stats;
  for (const Output* o : outputs) stats.push_back(o->stats());
  std::vector<double> ages;
  const auto now = std::chrono::steady_clock::now();
  for (Output* o : outputs) ages.push_back(o->backlog_age_seconds(now));
  auto per_output = [&](const char* name, const char* type, const char* help, auto value) {
    e.family(name, type, help);
    for (std::size_t i = 0; i < outputs.size(); ++i) e.sample(output_label(*outputs[i]), value(*outputs[i], stats[i]));
  };
  using S = const hopper::Stats&;
  using O = const Output&;
  per_output("hopperd_output_queue_memory_items", "gauge", "Lines held in memory by the output's queue.",
             [](O, S s) { return s.memory_items; });
  per_output("hopperd_output_queue_memory_bytes", "gauge", "Memory footprint of those lines (bounded by max_memory_bytes).",
             [](O, S s) { return s.memory_bytes; });
  per_output("hopperd_output_queue_disk_items", "gauge", "Lines waiting in the output's segment files.",
             [](O, S s) { return s.disk_items; });
  per_output("hopperd_output_queue_disk_bytes", "gauge", "Bytes of the output's segment files (bounded by max_disk_bytes).",
             [](O, S s) { return s.disk_bytes; });
  per_output("hopperd_output_queue_segments", "gauge", "Segment files of the output's queue.",
             [](O, S s) { return s.segments; });
  e.family("hopperd_output_queue_capacity_bytes", "gauge",
           "The output queue's budgets: max_memory_bytes (tier memory), max_disk_bytes (tier disk).");
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    e.sample(output_label(*outputs[i]) + ",tier=\"memory\"", stats[i].memory_capacity_bytes);
    e.sample(output_label(*outputs[i]) + ",tier=\"disk\"", stats[i].disk_capacity_bytes);
  }
  e.family("hopperd_output_queue_oldest_item_age_seconds", "gauge",
           "How long the oldest line still in the output's queue (not yet taken by the output) has waited (0 when none).");
  for (std::size_t i = 0; i < outputs.size(); ++i)
    e.sample(output_label(*outputs[i]), static_cast<double>(stats[i].oldest_item_age_ms) / 1000.0);
  per_output("hopperd_output_queue_expired_total", "counter",
             "Lines not delivered because they were older than max_age_ms when their turn came.",
             [](O o, S s) { return s.items_expired + read(o.counters.expired_held); });
  per_output("hopperd_output_queue_expired_bytes_total", "counter",
             "Their bytes (in the queue: footprint in memory, encoding on disk; taken by the output: the line).",
             [](O o, S s) { return s.bytes_expired + read(o.counters.expired_held_bytes); });
  per_output("hopperd_output_queued_total", "counter", "Lines accepted into the output's queue.",
             [](O, S s) { return s.items_sent; });
  per_output("hopperd_output_spilled_total", "counter", "Lines that went to disk because memory was full.",
             [](O, S s) { return s.items_spilled; });
  per_output("hopperd_output_recovered_lines", "gauge", "Lines found on disk at start, delivered first.",
             [](O, S s) { return s.items_recovered; });
  per_output("hopperd_output_corrupt_pages_total", "counter", "Damaged queue pages skipped (their lines are lost).",
             [](O, S s) { return s.corrupt_pages; });
  per_output("hopperd_output_corrupt_lines_total", "counter", "Lines lost with damaged pages.",
             [](O, S s) { return s.corrupt_items; });
  per_output("hopperd_output_queue_dropped_total", "counter", "Lines discarded by when_full = drop_oldest.",
             [](O, S s) { return s.items_dropped; });
  per_output("hopperd_output_queue_syncs_total", "counter",
             "fdatasync calls on the output queue's segment files (sync = \"always\": one per group commit).",
             [](O, S s) { return s.syncs; });
  per_output("hopperd_output_queue_sync_errors_total", "counter",
             "Failed fdatasync or directory fsync calls of the output queue's segments.",
             [](O, S s) { return s.sync_errors; });
  per_output("hopperd_output_delivered_total", "counter", "Lines written to the downstream (committed).",
             [](O o, S) { return read(o.counters.delivered); });
  per_output("hopperd_output_bytes_written_total", "counter", "Bytes written to the downstream (replays excluded).",
             [](O o, S) { return read(o.counters.bytes_written); });
  per_output("hopperd_output_batches_total", "counter", "Batches written.",
             [](O o, S) { return read(o.counters.batches); });
  e.family("hopperd_output_backlog_age_seconds", "gauge",
           "Age of the oldest line queued and not yet delivered (0 when none; to the second).");
  for (std::size_t i = 0; i < outputs.size(); ++i) e.sample(output_label(*outputs[i]), ages[i]);
  per_output("hopperd_output_connected", "gauge", "1 while connected to the downstream.",
             [](O o, S) { return read(o.counters.connected); });
  per_output("hopperd_output_reconnects_total", "counter", "Connections established after the first.",
             [](O o, S) { return read(o.counters.reconnects); });
  per_output("hopperd_output_connect_failures_total", "counter", "Failed connection attempts.",
             [](O o, S) { return read(o.counters.connect_failures); });
  per_output("hopperd_output_write_errors_total", "counter", "Writes that failed, timed out or were cut by the downstream.",
             [](O o, S) { return read(o.counters.write_errors); });
  per_output("hopperd_output_replayed_lines_total", "counter", "Lines written again after a reconnect (replay window).",
             [](O o, S) { return read(o.counters.replayed_lines); });
  per_output("hopperd_output_commits_total", "counter", "Delivery positions persisted.",
             [](O o, S) { return read(o.counters.commits); });
  per_output("hopperd_output_commit_errors_total", "counter", "Delivery positions that could not be persisted.",
             [](O o, S) { return read(o.counters.commit_errors); });
  per_output("hopperd_output_receive_errors_total", "counter", "Queue pages that could not be read (I/O), retried.",
             [](O o, S) { return read(o.counters.receive_errors); });
  per_output("hopperd_output_dropped_total", "counter",
             "Lines not queued for this output: full (UDP, or when_full = fail) or refused.",
             [](O o, S) { return read(o.counters.dropped_full) + read(o.counters.dropped_error); });

  // Kafka outputs only.
  std::vector<const Output*> kafka;
  for (const Output* o : outputs)
    if (o->kafka()) kafka.push_back(o);
  if (kafka.empty()) return e.str();
  auto per_kafka = [&](const char* name, const char* type, const char* help, auto value) {
    e.family(name, type, help);
    for (const Output* o : kafka) e.sample(output_label(*o), value(*o));
  };
  per_kafka("hopperd_output_in_flight", "gauge", "Lines handed to the Kafka producer, not yet acknowledged or rejected.",
            [](O o) { return read(o.counters.in_flight); });
  per_kafka("hopperd_output_oldest_unacked_seconds", "gauge",
            "Age of the oldest line handed to the producer and not yet acknowledged (0 when none).", [](O o) {
              const std::uint64_t since = read(o.counters.oldest_unacked_since);
              if (since == 0) return 0.0;
              const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch()).count();
              return now > static_cast<std::int64_t>(since) ? static_cast<double>(now - static_cast<std::int64_t>(since)) / 1e9
                                                            : 0.0;
            });
  per_kafka("hopperd_output_retried_total", "counter", "Lines produced again after a failed delivery.",
            [](O o) { return read(o.counters.retried); });
  per_kafka("hopperd_output_rejected_total", "counter",
            "Lines the brokers will never take (too large, topic unknown or not authorized).",
            [](O o) { return read(o.counters.rejected); });
  per_kafka("hopperd_output_dead_lettered_total", "counter", "Rejected lines kept in the dead-letter queue.",
            [](O o) { return read(o.counters.dead_lettered); });
  per_kafka("hopperd_output_dead_letter_failures_total", "counter",
            "Rejected lines the dead-letter queue refused (full or I/O error): lost.",
            [](O o) { return read(o.counters.dead_letter_failures); });
  per_kafka("hopperd_output_producer_restarts_total", "counter",
            "Times the Kafka producer failed for good and was replaced.",
            [](O o) { return read(o.counters.producer_restarts); });
  per_kafka("hopperd_kafka_brokers_up", "gauge", "Brokers the producer is connected to.",
            [](O o) { return read(o.counters.brokers_up); });
  per_kafka("hopperd_kafka_producer_queue_messages", "gauge",
            "Messages in librdkafka's queue (bounded by queue.buffering.max.messages).",
            [](O o) { return read(o.counters.lib_queue_messages); });
  per_kafka("hopperd_kafka_producer_queue_bytes", "gauge",
            "Bytes of messages in librdkafka's queue (bounded by queue.buffering.max.kbytes).",
            [](O o) { return read(o.counters.lib_queue_bytes); });
  per_kafka("hopperd_kafka_requests_total", "counter", "Requests sent to brokers.",
            [](O o) { return read(o.counters.lib_requests); });
  per_kafka("hopperd_kafka_request_errors_total", "counter", "Requests to brokers that failed.",
            [](O o) { return read(o.counters.lib_request_errors); });
  per_kafka("hopperd_kafka_request_retries_total", "counter", "Requests librdkafka sent again.",
            [](O o) { return read(o.counters.lib_request_retries); });
  per_kafka("hopperd_kafka_request_timeouts_total", "counter", "Requests to brokers that timed out.",
            [](O o) { return read(o.counters.lib_request_timeouts); });
  per_kafka("hopperd_kafka_rtt_seconds", "gauge", "The largest of the brokers' average round-trip times.",
            [](O o) { return static_cast<double>(read(o.counters.lib_rtt_us)) / 1e6; });
  return e.str();
}

Health judge_health(const HealthConfig& config, const std::vector<Output*>& outputs, bool serving,
                    const std::string& extra_json) {
  Health h;
  const auto now = std::chrono::steady_clock::now();
  nlohmann::json list = nlohmann::json::array();
  std::size_t delivering = 0;
  std::string first_problem;
  for (Output* o : outputs) {
    const hopper::Stats s = o->stats();
    // In the queue, and taken from it but not yet written (TCP) or acknowledged (Kafka).
    const std::uint64_t waiting = s.memory_items + s.disk_items + read(o->counters.in_flight);
    const bool connected = read(o->counters.connected) > 0;
    const double age = o->backlog_age_seconds(now);
    const std::string type = o->kafka() ? "kafka" : "tcp";
    std::string why;
    bool ok = true;
    if (!connected && waiting > 0) {
      ok = false;
      why = o->kafka() ? "no Kafka broker reachable; " + std::to_string(waiting) + " lines wait"
                       : "not connected to " + o->config().address.text() + "; " + std::to_string(waiting) +
                             " lines wait";
    } else if (config.max_backlog_age.count() > 0 &&
               age * 1000 > static_cast<double>(config.max_backlog_age.count())) {
      ok = false;
      why = "the oldest undelivered line is " + std::to_string(static_cast<std::uint64_t>(age)) +
            " s old (health.max_backlog_age_ms = " + std::to_string(config.max_backlog_age.count()) + ")";
    } else if (connected) {
      why = "delivering";
    } else {
      why = "idle: nothing to deliver; " + (o->kafka() ? o->kafka()->health() : "not connected (it connects when lines come)");
    }
    if (ok) ++delivering;
    else if (first_problem.empty()) first_problem = "output " + o->config().name + ": " + why;
    list.push_back({{"name", o->config().name},
                    {"type", type},
                    {"delivering", ok},
                    {"connected", connected},
                    {"backlog_lines", waiting},
                    {"backlog_age_seconds", age},
                    {"reason", why}});
    if (o->kafka()) {
      h.brokers_body += o->kafka()->health() + "\n";
      if (!o->kafka()->brokers_reachable()) h.brokers_ok = false;
    }
  }
  std::string reason;
  const char* mode = "any";
  switch (config.mode) {
    case HealthMode::serving:
      mode = "serving";
      h.healthy = true;
      reason = "serving (health.ready = \"serving\": outputs are not judged)";
      break;
    case HealthMode::any:
      h.healthy = delivering > 0 || outputs.empty();
      reason = h.healthy ? std::to_string(delivering) + " of " + std::to_string(outputs.size()) + " outputs deliver"
                         : "no output delivers; " + first_problem;
      break;
    case HealthMode::all:
      mode = "all";
      h.healthy = delivering == outputs.size();
      reason = h.healthy ? "every output delivers" : first_problem;
      break;
  }
  if (!serving) {
    h.healthy = false;
    h.brokers_ok = false;
    reason = "stopping";
  }
  nlohmann::json body = {{"status", h.healthy ? "ok" : "unhealthy"}, {"ready", mode}, {"reason", reason},
                         {"outputs", std::move(list)}};
  if (!extra_json.empty()) {
    const nlohmann::json extra = nlohmann::json::parse(extra_json, nullptr, false);
    if (extra.is_object()) body.update(extra);
  }
  h.body = body.dump(2) + "\n";
  if (h.brokers_body.empty()) h.brokers_body = "ok\n";
  return h;
}

// ---- the HTTP side --------------------------------------------------------------------

namespace {

// One request, one response, then close. Reads at most 8 KiB of request head within 5 s.
// Lives on the I/O thread, kept alive by its pending handlers.
class HttpExchange : public std::enable_shared_from_this<HttpExchange> {
 public:
  HttpExchange(asio::ip::tcp::socket s, const std::function<std::string()>& metrics, const std::function<Health()>& health)
      : socket_(std::move(s)), timer_(socket_.get_executor()), metrics_(metrics), health_(health), head_(8192) {}
  void start() {
    timer_.expires_after(std::chrono::seconds(5));
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) {
        asio::error_code ignored;
        self->socket_.close(ignored);
      }
    });
    asio::async_read_until(socket_, head_, "\r\n\r\n",
                           [self = shared_from_this()](const asio::error_code& ec, std::size_t) { self->on_head(ec); });
  }

 private:
  void on_head(const asio::error_code& ec) {
    if (ec && ec != asio::error::not_found) return finish();
    std::istream in(&head_);
    std::string method, target;
    in >> method >> target;
    if (ec == asio::error::not_found) {
      respond(431, "text/plain", "request head too large\n");
    } else if (method != "GET" && method != "HEAD") {
      respond(405, "text/plain", "only GET\n");
    } else if (target == "/metrics") {
      respond(200, "text/plain; version=0.0.4; charset=utf-8", metrics_(), method == "HEAD");
    } else if (target == "/healthz") {
      // 200 or 503 by health.ready, with a JSON body that says why, output by output.
      const Health h = health_();
      respond(h.healthy ? 200 : 503, "application/json", h.body, method == "HEAD");
    } else if (target == "/healthz/brokers") {
      // 503 while any Kafka output reaches no broker; one line per Kafka output.
      const Health h = health_();
      respond(h.brokers_ok ? 200 : 503, "text/plain", h.brokers_body, method == "HEAD");
    } else {
      respond(404, "text/plain", "not found: try /metrics, /healthz or /healthz/brokers\n");
    }
  }
  void respond(int code, const char* type, std::string body, bool head_only = false) {
    const char* reason = code == 200 ? "OK" : code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed"
                                          : code == 503 ? "Service Unavailable" : "Request Header Fields Too Large";
    out_ = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (!head_only) out_ += body;
    asio::async_write(socket_, asio::buffer(out_),
                      [self = shared_from_this()](const asio::error_code&, std::size_t) { self->finish(); });
  }
  void finish() {
    asio::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    timer_.cancel();
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  const std::function<std::string()>& metrics_;
  const std::function<Health()>& health_;
  asio::streambuf head_;
  std::string out_;
};

}  // namespace

MetricsServer::MetricsServer(asio::io_context& io, std::function<std::string()> metrics, std::function<Health()> health,
                             std::shared_ptr<spdlog::logger> log)
    : io_(io), acceptor_(io), pause_(io), metrics_(std::move(metrics)), health_(std::move(health)), log_(std::move(log)) {}

hopper::Status MetricsServer::bind(const Endpoint& at) {
  asio::error_code ec;
  asio::ip::tcp::resolver r(io_);
  auto results = r.resolve(at.host, std::to_string(at.port), asio::ip::tcp::resolver::passive, ec);
  if (ec || results.empty())
    return hopper::Status(hopper::Errc::invalid_argument,
                          "cannot resolve " + at.text() + " (" + at.origin + "): " + (ec ? ec.message() : "no address"));
  const auto ep = results.begin()->endpoint();
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(64, ec);
  if (ec)
    return hopper::Status(hopper::Errc::io_error,
                          "cannot listen for metrics on " + at.text() + " (" + at.origin + "): " + ec.message());
  return hopper::Status();
}

std::string MetricsServer::address() const {
  asio::error_code ec;
  const auto ep = acceptor_.local_endpoint(ec);
  if (ec) return "";
  return (ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string()) + ":" +
         std::to_string(ep.port());
}

void MetricsServer::start() {
  log_->info("metrics on http://{}/metrics", address());
  accept();
}

void MetricsServer::accept() {
  acceptor_.async_accept([this](const asio::error_code& ec, asio::ip::tcp::socket s) {
    if (stopping_ || ec == asio::error::operation_aborted) return;
    if (!ec) {
      std::make_shared<HttpExchange>(std::move(s), metrics_, health_)->start();
      return accept();
    }
    // Out of file descriptors (the clients' fault, or ours): a pause, not a busy loop.
    pause_.expires_after(std::chrono::milliseconds(100));
    pause_.async_wait([this](const asio::error_code& wec) {
      if (!wec && !stopping_) accept();
    });
  });
}

void MetricsServer::stop() {
  stopping_ = true;
  asio::error_code ec;
  acceptor_.close(ec);
  pause_.cancel();
}

}  // namespace hopperd
