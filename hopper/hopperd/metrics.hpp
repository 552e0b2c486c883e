// Metrics: the Prometheus text exposition of hopperd's counters and queues, and the small
// HTTP server that serves it at /metrics (and /healthz).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>
#include <spdlog/logger.h>

#include <hopper/status.hpp>

#include "hopperd/config.hpp"
#include "hopperd/counters.hpp"
#include "hopperd/egress.hpp"

namespace hopperd {

// The Prometheus text format (version 0.0.4) of everything hopperd counts. Thread-safe
// (reads atomics and Receiver::stats).
std::string render_metrics(const IngestCounters& ingest, const std::vector<Output*>& outputs);

// What /healthz answers: `serving` (false once stopping), the body, and whether every
// Kafka output reaches a broker.
struct Health {
  bool serving = true;
  std::string body = "ok\n";
  bool brokers_ok = true;
};
// "ok" and one line per Kafka output; `brokers_ok` is false when one reaches no broker.
std::string render_health(const std::vector<Output*>& outputs, bool& brokers_ok);

// Serves GET /metrics and GET /healthz over HTTP/1.0-style one-request connections. Runs
// on the I/O thread's io_context; not thread-safe otherwise.
class MetricsServer {
 public:
  MetricsServer(asio::io_context& io, std::function<std::string()> metrics, std::function<Health()> health,
                std::shared_ptr<spdlog::logger> log);
  // Binds now (a port in use is a start-up error naming metrics.listen and its line).
  hopper::Status bind(const Endpoint& at);
  void start();
  void stop();
  std::string address() const;

 private:
  void accept();
  asio::io_context& io_;
  asio::ip::tcp::acceptor acceptor_;
  std::function<std::string()> metrics_;
  std::function<Health()> health_;
  std::shared_ptr<spdlog::logger> log_;
  bool stopping_ = false;
};

}  // namespace hopperd
