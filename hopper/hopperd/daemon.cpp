#include "hopperd/daemon.hpp"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <unistd.h>

#include "hopperd/egress.hpp"
#include "hopperd/ingest.hpp"
#include "hopperd/logging.hpp"
#include "hopperd/metrics.hpp"

namespace hopperd {

using hopper::Status;

namespace {

std::string json_list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", \"" : "\"") + v[i] + "\"";
  return s + "]";
}

// Written to a temporary name and renamed, so a reader never sees half of it.
bool write_ready_file(const std::string& path, const std::string& json) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << json;
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Start-up failures go to the log and, when the log is a file, to stderr as well: whoever
// started hopperd by hand should not have to look for them.
void startup_error(spdlog::logger& log, const std::string& config_file, const std::string& message) {
  log.error("{}", message);
  if (!config_file.empty()) std::cerr << "hopperd: " << message << "\n";
}

}  // namespace

int run_daemon(const Config& config, const RunOptions& options) {
  auto made = make_logger(config.log_file, options.log_level.empty() ? config.log_level : options.log_level);
  if (!made.ok()) {
    std::cerr << "hopperd: " << made.status().message() << "\n";
    return 1;
  }
  std::shared_ptr<spdlog::logger> log = *made;
  std::signal(SIGPIPE, SIG_IGN);  // a downstream that vanishes is an error code, not a signal
  log->info("hopperd starting: config {}, {} output(s), pid {}", config.path, config.outputs.size(), ::getpid());

  // Queues first: an unwritable or locked queue directory is a start-up error.
  std::vector<std::unique_ptr<Output>> outputs;
  for (const OutputConfig& oc : config.outputs) {
    auto out = Output::open(oc, log);
    if (!out.ok()) {
      startup_error(*log, config.log_file, out.status().message());
      return 1;
    }
    outputs.push_back(std::move(*out));
  }
  std::vector<Output*> raw;
  for (auto& o : outputs) raw.push_back(o.get());

  // Declared first so that it is destroyed last: everything below holds its services.
  asio::io_context io;
  IngestCounters counters;
  FanOut fan_out(raw, log);
  Ingest ingest(io, config, fan_out, counters, log);
  if (Status s = ingest.bind(); !s.ok()) {
    startup_error(*log, config.log_file, s.message());
    return 1;
  }
  bool stopping = false;
  MetricsServer metrics(
      io, [&] { return render_metrics(counters, raw); },
      [&] {
        Health h;
        h.serving = !stopping;
        h.body = render_health(raw, h.brokers_ok);
        return h;
      },
      log);
  if (config.metrics) {
    if (Status s = metrics.bind(*config.metrics); !s.ok()) {
      startup_error(*log, config.log_file, s.message());
      return 1;
    }
  }

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const asio::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reopen_log(*log);
        log->info("SIGHUP: log file reopened");
        wait_signal();
        return;
      }
      log->info("{}: stopping (listeners close, queues are persisted)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      stopping = true;
      ingest.stop();
      metrics.stop();
      io.stop();
    });
  };
  wait_signal();

  for (auto& o : outputs) o->start();
  ingest.start();
  if (config.metrics) metrics.start();
  if (!options.ready_file.empty()) {
    const std::string json = "{\"pid\": " + std::to_string(::getpid()) + ", \"tcp\": " +
                             json_list(ingest.tcp_addresses()) + ", \"udp\": " + json_list(ingest.udp_addresses()) +
                             ", \"metrics\": \"" + (config.metrics ? metrics.address() : std::string()) + "\"}\n";
    if (!write_ready_file(options.ready_file, json))
      log->warn("cannot write the ready file {}", options.ready_file);
  }
  log->info("hopperd ready");

  io.run();

  // Stop in order: no more input; every egress finishes the write it is in (bounded by
  // daemon.shutdown_timeout_ms) and commits what was written; then each queue writes what
  // it still holds to disk, for the next start.
  const auto started = std::chrono::steady_clock::now();
  const auto hard_deadline = started + config.shutdown_timeout;
  for (auto& o : outputs) o->close_input();
  for (auto& o : outputs) o->request_stop(hard_deadline);
  std::uint64_t delivered = 0;
  for (auto& o : outputs) {
    o->finish();  // joins the egress thread, then the queue is persisted
    delivered += read(o->counters.delivered);
  }
  outputs.clear();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  log->info("hopperd stopped in {} ms: {} lines received, {} delivered this run; queues persisted",
            took.count(), read(counters.tcp_lines) + read(counters.udp_lines), delivered);
  log->flush();
  return 0;
}

int check_config(const std::string& path) {
  auto c = load_config(path);
  if (!c.ok()) {
    std::cerr << "hopperd: " << c.status().message() << "\n";
    return 2;
  }
  std::cout << path << ": ok\n";
  for (const Endpoint& e : c->tcp) std::cout << "  input tcp " << e.text() << "\n";
  for (const Endpoint& e : c->udp) std::cout << "  input udp " << e.text() << "\n";
  if (c->metrics) std::cout << "  metrics http://" << c->metrics->text() << "/metrics\n";
  for (const OutputConfig& o : c->outputs) {
    const char* policy = o.queue.when_full == hopper::FullPolicy::block ? "block"
                         : o.queue.when_full == hopper::FullPolicy::fail ? "fail"
                                                                         : "drop_oldest";
    const std::string to = o.type == OutputType::kafka ? "kafka " + o.kafka.brokers + " topic " + o.kafka.topic
                                                       : o.address.text();
    std::cout << "  output " << o.name << " -> " << to << ", queue " << o.queue.directory.string()
              << " (memory " << o.queue.max_memory_bytes << " B, disk " << o.queue.max_disk_bytes
              << " B, when_full " << policy << ")\n";
    if (o.type != OutputType::kafka) continue;
    std::cout << "    key " << (o.kafka.key_field ? "field:" + std::to_string(o.kafka.key_field) : std::string("none"))
              << ", on_reject "
              << (o.kafka.on_reject == OnReject::drop ? std::string("drop")
                                                      : "dead_letter -> " + o.kafka.dead_letter.directory.string())
              << "\n    librdkafka:";
    for (const auto& [name, value] : o.kafka.properties) std::cout << " " << name << "=" << value;
    std::cout << "\n";
  }
  return 0;
}

}  // namespace hopperd
