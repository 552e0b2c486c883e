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
// On the I/O thread (the outputs' backlog clocks are its).
std::string render_metrics(const IngestCounters& ingest, const std::vector<Output*>& outputs);

// What /healthz and /healthz/brokers answer.
struct Health {
  bool healthy = true;      // /healthz: 200, else 503
  std::string body;         // /healthz: JSON saying why
  bool brokers_ok = true;   // /healthz/brokers: 200, else 503
  std::string brokers_body = "ok\n";  // one line per Kafka output
};
// Judges the outputs by `config` (docs/operations.md, "Health"). `serving` is false once
// stopping. `extra` is merged into the JSON body (the config's reload state). On the I/O
// thread.
Health judge_health(const HealthConfig& config, const std::vector<Output*>& outputs, bool serving,
                    const std::string& extra_json = "");

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
  asio::steady_timer pause_;
  std::function<std::string()> metrics_;
  std::function<Health()> health_;
  std::shared_ptr<spdlog::logger> log_;
  bool stopping_ = false;
};

}  // namespace hopperd
