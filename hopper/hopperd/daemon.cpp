#include "hopperd/daemon.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <systemd/sd-daemon.h>

#include <hopper/inspect.hpp>

#include "hopperd/egress.hpp"
#include "hopperd/ingest.hpp"
#include "hopperd/logging.hpp"
#include "hopperd/metrics.hpp"
#include "hopperd/tls.hpp"

namespace hopperd {

using hopper::Errc;
using hopper::Status;
using Clock = std::chrono::steady_clock;

namespace {

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

// systemd's notification socket (Type=notify); a no-op without NOTIFY_SOCKET.
void notify(const std::string& state) { (void)sd_notify(0, state.c_str()); }

// The queue directories a config uses, each with the key that names it.
std::vector<std::pair<std::filesystem::path, std::string>> queue_dirs(const Config& c) {
  std::vector<std::pair<std::filesystem::path, std::string>> out;
  for (const OutputConfig& o : c.outputs) {
    out.emplace_back(o.queue.directory, o.queue_origin);
    if (o.type == OutputType::kafka && o.kafka.on_reject == OnReject::dead_letter)
      out.emplace_back(o.kafka.dead_letter.directory, o.kafka.dead_letter_origin);
  }
  return out;
}

// A queue directory hopperd could open now: an existing directory it may write in, whose
// LOCK nobody holds, or one it could create (the nearest existing parent is a writable
// directory). Read-only: nothing is created, and the LOCK is taken only for an instant.
Status check_queue_dir(const std::filesystem::path& dir, const std::string& origin) {
  std::error_code ec;
  const std::string shown = "\"" + dir.string() + "\"";
  if (std::filesystem::exists(dir, ec)) {
    if (!std::filesystem::is_directory(dir, ec))
      return Status(Errc::invalid_argument, origin + ": " + shown + " exists and is not a directory");
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      return Status(Errc::invalid_argument, origin + ": " + shown + " is not writable: " + std::strerror(errno));
    const std::filesystem::path lock = dir / "LOCK";
    const int fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        std::string holder;
        char buf[32] = {};
        if (::pread(fd, buf, sizeof buf - 1, 0) > 0) holder = std::string(" (pid ") + buf + ")";
        while (!holder.empty() && (holder[holder.size() - 2] == '\n')) holder.erase(holder.size() - 2, 1);
        ::close(fd);
        return Status(Errc::invalid_argument, origin + ": " + shown + " is locked: another process" + holder +
                                                  " has this queue open");
      }
      ::flock(fd, LOCK_UN);
      ::close(fd);
    }
    return Status();
  }
  std::filesystem::path parent = dir;
  while (parent.has_parent_path() && parent != parent.root_path()) {
    parent = parent.parent_path();
    if (std::filesystem::exists(parent, ec)) break;
  }
  if (parent.empty()) parent = ".";
  if (!std::filesystem::is_directory(parent, ec))
    return Status(Errc::invalid_argument,
                  origin + ": " + shown + " cannot be created: \"" + parent.string() + "\" is not a directory");
  if (::access(parent.c_str(), W_OK | X_OK) != 0)
    return Status(Errc::invalid_argument, origin + ": " + shown + " cannot be created: \"" + parent.string() +
                                              "\" is not writable: " + std::strerror(errno));
  return Status();
}

// Every address of `c` can be bound now (then released at once).
Status check_addresses(const Config& c) {
  asio::io_context io;
  auto try_bind = [&](const Endpoint& e, bool udp) -> Status {
    asio::error_code ec;
    if (udp) {
      asio::ip::udp::resolver r(io);
      auto res = r.resolve(e.host, std::to_string(e.port), asio::ip::udp::resolver::passive, ec);
      if (ec || res.empty()) return Status(Errc::invalid_argument, e.origin + ": cannot resolve " + e.text());
      asio::ip::udp::socket s(io);
      s.open(res.begin()->endpoint().protocol(), ec);
      if (!ec) s.bind(res.begin()->endpoint(), ec);
      if (ec) return Status(Errc::invalid_argument, e.origin + ": cannot listen on udp " + e.text() + ": " + ec.message());
      return Status();
    }
    asio::ip::tcp::resolver r(io);
    auto res = r.resolve(e.host, std::to_string(e.port), asio::ip::tcp::resolver::passive, ec);
    if (ec || res.empty()) return Status(Errc::invalid_argument, e.origin + ": cannot resolve " + e.text());
    asio::ip::tcp::acceptor a(io);
    a.open(res.begin()->endpoint().protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a.bind(res.begin()->endpoint(), ec);
    if (!ec) a.listen(1, ec);
    if (ec) return Status(Errc::invalid_argument, e.origin + ": cannot listen on tcp " + e.text() + ": " + ec.message());
    return Status();
  };
  for (const Endpoint& e : c.tcp)
    if (Status s = try_bind(e, false); !s.ok()) return s;
  for (const Endpoint& e : c.tls)
    if (Status s = try_bind(e, false); !s.ok()) return s;
  for (const Endpoint& e : c.udp)
    if (Status s = try_bind(e, true); !s.ok()) return s;
  if (c.metrics)
    if (Status s = try_bind(*c.metrics, false); !s.ok()) return s;
  return Status();
}

// The TLS files of `c` load and match (certificate and key).
Status check_tls(const Config& c) {
  if (!c.tls.empty())
    if (auto ctx = make_server_context(c.tls_server); !ctx.ok()) return ctx.status();
  for (const OutputConfig& o : c.outputs)
    if (o.type == OutputType::tcp && o.tls.enabled)
      if (auto ctx = make_client_context(o.tls, o.tls.origin); !ctx.ok()) return ctx.status();
  return Status();
}

// A removed output's queue, left on disk.
struct LeftQueue {
  std::filesystem::path directory;
  std::uint64_t lines = 0;
};

// The running daemon: one I/O thread (listeners, sessions, metrics, signals, reloads) and
// one egress thread per output. Everything here is touched on the I/O thread only.
class Daemon {
 public:
  Daemon(const Config& config, const RunOptions& options, std::shared_ptr<spdlog::logger> log)
      : config_(std::make_unique<Config>(config)),
        options_(options),
        log_(std::move(log)),
        fan_out_(std::make_unique<FanOut>(std::vector<Output*>{}, log_)),
        ingest_(io_, *config_, *fan_out_, counters_, log_),
        metrics_(
            io_, [this] { return render_metrics(counters_, raw_outputs()); },
            [this] { return judge_health(config_->health, raw_outputs(), !stopping_, state_json()); }, log_),
        signals_(io_, SIGINT, SIGTERM, SIGHUP),
        watchdog_(io_) {}

  int run();

 private:
  std::vector<Output*> raw_outputs() const {
    std::vector<Output*> raw;
    for (const auto& o : outputs_) raw.push_back(o.get());
    return raw;
  }
  std::shared_ptr<OutputCounters> counters_for(const std::string& name) {
    auto& c = output_counters_[name];
    if (!c) c = std::make_shared<OutputCounters>();
    return c;
  }
  void startup_error(const Status& s) {
    // One line, as a config error is: "hopperd: FILE:LINE: KEY: why". The log has it too
    // when it is a file (under systemd the journal takes stderr).
    std::cerr << "hopperd: " << plain(s) << "\n";
    if (!config_->log_file.empty()) log_->error("cannot start: {}", plain(s));
    notify("STATUS=cannot start: " + plain(s));
  }
  void wait_signal();
  void reload();
  Status apply(std::unique_ptr<Config> next);
  void write_ready();
  std::string state_json() const;
  void start_watchdog();

  asio::io_context io_;  // first: destroyed last, everything below holds its services
  std::unique_ptr<Config> config_;
  RunOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  IngestCounters counters_;
  std::map<std::string, std::shared_ptr<OutputCounters>> output_counters_;  // by output name, across reloads
  std::vector<std::unique_ptr<Output>> outputs_;
  std::unique_ptr<FanOut> fan_out_;
  Ingest ingest_;
  MetricsServer metrics_;
  asio::signal_set signals_;
  asio::steady_timer watchdog_;
  std::chrono::microseconds watchdog_every_{0};
  std::map<std::string, LeftQueue> left_;  // removed outputs whose queue holds lines
  std::string last_reload_error_;
  bool metrics_started_ = false;
  bool stopping_ = false;
};

std::string Daemon::state_json() const {
  nlohmann::json left = nlohmann::json::array();
  for (const auto& [name, q] : left_)
    left.push_back({{"name", name}, {"queue_dir", q.directory.string()}, {"lines", q.lines}});
  nlohmann::json j = {{"config", {{"file", config_->path},
                                  {"reloads", read(counters_.reloads)},
                                  {"last_reload_ok", read(counters_.last_reload_ok) == 1},
                                  {"last_reload_error", last_reload_error_}}},
                      {"removed_outputs", std::move(left)}};
  return j.dump();
}

void Daemon::write_ready() {
  if (options_.ready_file.empty()) return;
  const nlohmann::json j = {{"pid", ::getpid()},
                            {"tcp", ingest_.tcp_addresses()},
                            {"tls", ingest_.tls_addresses()},
                            {"udp", ingest_.udp_addresses()},
                            {"metrics", config_->metrics ? metrics_.address() : std::string()}};
  if (!write_ready_file(options_.ready_file, j.dump() + "\n"))
    log_->warn("cannot write the ready file {}: {}", options_.ready_file, std::strerror(errno));
}

void Daemon::start_watchdog() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  // Twice per period, as sd_watchdog_enabled(3) advises: a missed ping is not a restart.
  watchdog_every_ = std::chrono::microseconds(usec / 2);
  log_->info("systemd watchdog: pinging every {} ms", watchdog_every_.count() / 1000);
  auto ping = std::make_shared<std::function<void()>>();
  *ping = [this, ping] {
    notify("WATCHDOG=1");
    watchdog_.expires_after(watchdog_every_);
    watchdog_.async_wait([ping](const asio::error_code& ec) {
      if (!ec) (*ping)();
    });
  };
  (*ping)();
}

void Daemon::wait_signal() {
  signals_.async_wait([this](const asio::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      reload();
      wait_signal();
      return;
    }
    log_->info("{}: stopping (listeners close, queues are persisted)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    notify("STOPPING=1\nSTATUS=stopping: queues are being persisted");
    stopping_ = true;
    ingest_.stop();
    metrics_.stop();
    watchdog_.cancel();
    io_.stop();
  });
}

// SIGHUP: the log file is reopened (logrotate), then the config is read again and applied
// if it is valid and can be applied whole; otherwise the running config stays, and the
// error is logged, counted and shown in /healthz.
void Daemon::reload() {
  reopen_log(*log_);
  notify("RELOADING=1\nSTATUS=reloading " + config_->path);
  log_->info("SIGHUP: log file reopened; reloading {}", config_->path);
  auto next = load_config(config_->path);
  Status s = next.ok() ? apply(std::make_unique<Config>(std::move(*next))) : next.status();
  if (s.ok()) {
    bump(counters_.reloads);
    counters_.last_reload_ok.store(1, std::memory_order_relaxed);
    last_reload_error_.clear();
  } else {
    bump(counters_.reload_failures);
    counters_.last_reload_ok.store(0, std::memory_order_relaxed);
    last_reload_error_ = plain(s);
    log_->error("reload refused, the running config stays: {}", plain(s));
  }
  write_ready();
  notify("READY=1\nSTATUS=" + std::string(s.ok() ? "serving (config reloaded)" : "serving; reload refused: " + plain(s)));
}

Status Daemon::apply(std::unique_ptr<Config> next) {
  // 1. What can fail is done first, changing nothing: TLS files, new listeners, a new
  //    metrics address, the queues of added outputs.
  if (Status s = check_tls(*next); !s.ok()) return s;
  if (Status s = ingest_.prepare(*next); !s.ok()) return s;
  const bool metrics_moved = next->metrics.has_value() != config_->metrics.has_value() ||
                             (next->metrics && !next->metrics->same(*config_->metrics));
  if (metrics_moved && next->metrics) {
    log_->warn("reload: metrics.listen changed to {}; it takes effect at the next start", next->metrics->text());
    next->metrics = config_->metrics;
  } else if (metrics_moved) {
    next->metrics = config_->metrics;
  }
  std::map<std::string, const OutputConfig*> old_by_name;
  for (const auto& o : outputs_) old_by_name[o->config().name] = &o->config();
  std::map<std::string, std::unique_ptr<Output>> added;
  for (const OutputConfig& oc : next->outputs) {
    if (old_by_name.count(oc.name)) continue;
    auto out = Output::open(oc, log_, counters_for(oc.name));
    if (!out.ok()) {
      ingest_.abandon();
      return out.status();  // `added` closes what it opened: its queues stay as they were
    }
    added[oc.name] = std::move(*out);
  }

  // 2. Outputs removed or changed stop: each egress finishes its write, commits what was
  //    written, and the queue is written to disk. A changed one is opened again at once
  //    from the same directory, so its backlog drains to the new downstream.
  const auto deadline = Clock::now() + next->shutdown_timeout;
  std::map<std::string, std::unique_ptr<Output>> kept;
  std::vector<std::unique_ptr<Output>> stopping;
  for (auto& o : outputs_) {
    const OutputConfig* wanted = nullptr;
    for (const OutputConfig& oc : next->outputs)
      if (oc.name == o->config().name) wanted = &oc;
    if (wanted && wanted->same_as(o->config())) {
      kept[o->config().name] = std::move(o);
      continue;
    }
    o->close_input();
    o->request_stop(deadline);
    stopping.push_back(std::move(o));
  }
  std::map<std::string, OutputConfig> previous;
  for (auto& o : stopping) {
    const OutputConfig before = o->config();
    o->finish();
    o.reset();
    previous[before.name] = before;
    bool still_wanted = false;
    for (const OutputConfig& oc : next->outputs) still_wanted |= oc.name == before.name;
    if (still_wanted) continue;
    auto info = hopper::inspect(before.queue.directory);
    const std::uint64_t lines = info.ok() ? info->undelivered_items : 0;
    if (lines > 0) left_[before.name] = LeftQueue{before.queue.directory, lines};
    log_->warn("reload: output {} removed; its queue {} keeps {} undelivered lines on disk ({}add the output back "
               "to deliver them)",
               before.name, before.queue.directory.string(), lines,
               lines ? "hopper dump shows them; " : "nothing is lost; ");
  }
  std::vector<std::unique_ptr<Output>> now;
  std::vector<std::string> problems;
  for (const OutputConfig& oc : next->outputs) {
    left_.erase(oc.name);
    if (auto it = kept.find(oc.name); it != kept.end()) {
      now.push_back(std::move(it->second));
      continue;
    }
    if (auto it = added.find(oc.name); it != added.end()) {
      log_->info("reload: output {} added", oc.name);
      now.push_back(std::move(it->second));
      now.back()->start();
      continue;
    }
    // Changed: the same queue directory (or a new one) with the new settings.
    if (const auto& before = previous[oc.name]; before.queue.directory != oc.queue.directory) {
      auto info = hopper::inspect(before.queue.directory);
      const std::uint64_t lines = info.ok() ? info->undelivered_items : 0;
      if (lines > 0) left_[oc.name + " (old queue_dir)"] = LeftQueue{before.queue.directory, lines};
      log_->warn("reload: output {} moves to queue_dir {}; the old queue {} keeps {} undelivered lines on disk",
                 oc.name, oc.queue.directory.string(), before.queue.directory.string(), lines);
    }
    auto out = Output::open(oc, log_, counters_for(oc.name));
    if (!out.ok() && previous.count(oc.name)) {
      problems.push_back(plain(out.status()));
      log_->error("reload: output {} cannot take its new settings ({}); it keeps the old ones", oc.name,
                  plain(out.status()));
      out = Output::open(previous[oc.name], log_, counters_for(oc.name));
    }
    if (!out.ok()) {
      problems.push_back(plain(out.status()));
      log_->error("reload: output {} cannot be opened again: {}; its lines stay on disk", oc.name, plain(out.status()));
      continue;
    }
    log_->info("reload: output {} changed; its queue ({} lines) continues to {}", oc.name,
               (*out)->stats().memory_items + (*out)->stats().disk_items,
               oc.type == OutputType::kafka ? "topic " + oc.kafka.topic : oc.address.text());
    now.push_back(std::move(*out));
    now.back()->start();
  }

  // 3. The fan-out follows the new list; a line a connection holds for an output keeps
  //    its place for that output (by name).
  std::vector<int> remap;
  for (Output* o : fan_out_->outputs()) {
    int to = -1;
    for (std::size_t j = 0; j < now.size(); ++j)
      if (now[j]->config().name == o->config().name) to = static_cast<int>(j);
    remap.push_back(to);
  }
  outputs_ = std::move(now);
  auto fan = std::make_unique<FanOut>(raw_outputs(), log_);
  ingest_.set_fan_out(*fan, remap);
  fan_out_ = std::move(fan);

  // 4. Listeners, limits, logging, health.
  if (next->log_file != config_->log_file)
    log_->warn("reload: log.file changed to \"{}\"; it takes effect at the next start", next->log_file);
  if (options_.log_level.empty() && next->log_level != config_->log_level)
    log_->set_level(spdlog::level::from_str(next->log_level));
  if (next->max_tcp_clients != config_->max_tcp_clients) fit_descriptor_limit(*next, *log_);
  ingest_.commit(*next);
  config_ = std::move(next);
  log_->info("reload: {} output(s), listening on {} tcp, {} tls, {} udp", outputs_.size(),
             ingest_.tcp_addresses().size(), ingest_.tls_addresses().size(), ingest_.udp_addresses().size());
  if (!problems.empty()) return Status(Errc::io_error, "applied, except: " + problems.front());
  return Status();
}

int Daemon::run() {
  std::signal(SIGPIPE, SIG_IGN);  // a downstream that vanishes is an error code, not a signal
  log_->info("hopperd starting: config {}, {} output(s), pid {}", config_->path, config_->outputs.size(), ::getpid());
  fit_descriptor_limit(*config_, *log_);

  // Queues first: an unwritable or locked queue directory is a start-up error.
  for (const OutputConfig& oc : config_->outputs) {
    auto out = Output::open(oc, log_, counters_for(oc.name));
    if (!out.ok()) {
      startup_error(out.status());
      return 1;
    }
    outputs_.push_back(std::move(*out));
  }
  fan_out_ = std::make_unique<FanOut>(raw_outputs(), log_);
  ingest_.set_fan_out(*fan_out_, {});
  if (Status s = ingest_.bind(); !s.ok()) {
    startup_error(s);
    return 1;
  }
  if (config_->metrics) {
    if (Status s = metrics_.bind(*config_->metrics); !s.ok()) {
      startup_error(s);
      return 1;
    }
  }
  wait_signal();
  for (auto& o : outputs_) o->start();
  ingest_.start();
  if (config_->metrics) metrics_.start();
  write_ready();
  notify("READY=1\nSTATUS=serving\nMAINPID=" + std::to_string(::getpid()));
  start_watchdog();
  log_->info("hopperd ready");

  io_.run();

  // Stop in order: no more input; every egress finishes the write it is in (bounded by
  // daemon.shutdown_timeout_ms) and commits what was written; then each queue writes what
  // it still holds to disk, for the next start.
  const auto started = Clock::now();
  const auto hard_deadline = started + config_->shutdown_timeout;
  for (auto& o : outputs_) o->close_input();
  for (auto& o : outputs_) o->request_stop(hard_deadline);
  std::uint64_t delivered = 0;
  for (auto& o : outputs_) {
    o->finish();  // joins the egress thread, then the queue is persisted
    delivered += read(o->counters.delivered);
  }
  outputs_.clear();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  log_->info("hopperd stopped in {} ms: {} lines received, {} delivered this run; queues persisted", took.count(),
             read(counters_.tcp_lines) + read(counters_.udp_lines), delivered);
  log_->flush();
  return 0;
}

}  // namespace

int run_daemon(const Config& config, const RunOptions& options) {
  auto made = make_logger(config.log_file, options.log_level.empty() ? config.log_level : options.log_level);
  if (!made.ok()) {
    std::cerr << "hopperd: " << (config.log_origin.empty() ? "" : config.log_origin + ": ") << plain(made.status())
              << "\n";
    return 1;
  }
  Daemon daemon(config, options, *made);
  return daemon.run();
}

int check_config(const std::string& path) {
  auto c = load_config(path);
  if (!c.ok()) {
    std::cerr << "hopperd: " << plain(c.status()) << "\n";
    return 2;
  }
  // What would stop a start now: TLS files, queue directories, addresses.
  Status s = check_tls(*c);
  for (const auto& [dir, origin] : queue_dirs(*c))
    if (s.ok()) s = check_queue_dir(dir, origin);
  if (s.ok()) s = check_addresses(*c);
  if (!s.ok()) {
    std::cerr << "hopperd: " << plain(s) << "\n";
    return 2;
  }
  std::cout << path << ": ok\n";
  for (const Endpoint& e : c->tcp) std::cout << "  input tcp " << e.text() << "\n";
  for (const Endpoint& e : c->tls)
    std::cout << "  input tls " << e.text()
              << (c->tls_server.client_ca_file.empty() ? "" : " (client certificates required)") << "\n";
  for (const Endpoint& e : c->udp) std::cout << "  input udp " << e.text() << "\n";
  if (c->metrics) std::cout << "  metrics http://" << c->metrics->text() << "/metrics\n";
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_max != RLIM_INFINITY &&
      lim.rlim_max < c->max_tcp_clients + reserved_descriptors(*c))
    std::cout << "  warning: input.max_tcp_clients = " << c->max_tcp_clients << " needs about "
              << c->max_tcp_clients + reserved_descriptors(*c) << " file descriptors; this shell allows "
              << lim.rlim_max << " (systemd: LimitNOFILE)\n";
  for (const OutputConfig& o : c->outputs) {
    const char* policy = o.queue.when_full == hopper::FullPolicy::block ? "block"
                         : o.queue.when_full == hopper::FullPolicy::fail ? "fail"
                                                                         : "drop_oldest";
    const std::string to = o.type == OutputType::kafka ? "kafka " + o.kafka.brokers + " topic " + o.kafka.topic
                                                       : o.address.text() + (o.tls.enabled ? " (tls)" : "");
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
