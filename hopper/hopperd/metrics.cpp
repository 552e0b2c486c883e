#include "hopperd/metrics.hpp"

#include <array>
#include <chrono>
#include <sstream>

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
  e.family("hopperd_udp_datagrams_total", "counter", "UDP datagrams received.");
  e.sample("", read(in.udp_datagrams));
  e.family("hopperd_tcp_connections", "gauge", "TCP client connections open.");
  e.sample("", read(in.connections_open));
  e.family("hopperd_tcp_connections_total", "counter", "TCP client connections accepted.");
  e.sample("", read(in.connections_total));
  e.family("hopperd_tcp_connections_rejected_total", "counter", "TCP clients refused over input.max_tcp_clients.");
  e.sample("", read(in.connections_rejected));
  e.family("hopperd_backpressure_pauses_total", "counter",
           "Times a TCP connection stopped reading because a queue under when_full = block was full.");
  e.sample("", read(in.backpressure_pauses));
  e.family("hopperd_input_read_errors_total", "counter", "Failed reads on client sockets.");
  e.sample("", read(in.read_errors));

  std::vector<hopper::Stats> stats;
  for (const Output* o : outputs) stats.push_back(o->stats());
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
  per_output("hopperd_output_delivered_total", "counter", "Lines written to the downstream (committed).",
             [](O o, S) { return read(o.counters.delivered); });
  per_output("hopperd_output_bytes_written_total", "counter", "Bytes written to the downstream (replays excluded).",
             [](O o, S) { return read(o.counters.bytes_written); });
  per_output("hopperd_output_batches_total", "counter", "Batches written.",
             [](O o, S) { return read(o.counters.batches); });
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

std::string render_health(const std::vector<Output*>& outputs, bool& brokers_ok) {
  std::string body = "ok\n";
  brokers_ok = true;
  for (const Output* o : outputs) {
    if (!o->kafka()) continue;
    body += o->kafka()->health() + "\n";
    if (!o->kafka()->brokers_reachable()) brokers_ok = false;
  }
  return body;
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
    } else if (target == "/healthz" || target == "/healthz/brokers") {
      // /healthz: 200 while hopperd serves (an unreachable downstream is what its queues
      // are for); the body says, per Kafka output, whether its brokers are reachable.
      // /healthz/brokers: 503 as well while any Kafka output reaches no broker.
      const Health h = health_();
      const bool ok = h.serving && (target == "/healthz" || h.brokers_ok);
      respond(ok ? 200 : 503, "text/plain", h.serving ? h.body : "stopping\n", method == "HEAD");
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
    : io_(io), acceptor_(io), metrics_(std::move(metrics)), health_(std::move(health)), log_(std::move(log)) {}

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
    if (!ec) std::make_shared<HttpExchange>(std::move(s), metrics_, health_)->start();
    accept();
  });
}

void MetricsServer::stop() {
  stopping_ = true;
  asio::error_code ec;
  acceptor_.close(ec);
}

}  // namespace hopperd
