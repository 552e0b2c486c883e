// Ingest: hopperd's TCP, TLS and UDP listeners, and the fan-out of every accepted line to
// every output's queue.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <spdlog/logger.h>

#include <hopper/status.hpp>

#include "hopperd/config.hpp"
#include "hopperd/counters.hpp"
#include "hopperd/egress.hpp"
#include "hopperd/logging.hpp"

namespace hopperd {

// Lines cut from one read (or datagram), offered to every output together: each output
// takes them with one try_send_many (one lock of its queue, one clock read, and under
// sync = "always" one fdatasync for all of them instead of one per line).
struct LineBatch {
  std::vector<std::string> lines;
  std::vector<std::size_t> done;  // per output: how many of `lines` it took or dropped
  bool empty() const noexcept { return lines.empty(); }
  void clear() noexcept {
    lines.clear();
    done.clear();
  }
};

// Offers batches of lines to every output. An output whose queue is full under
// FullPolicy::block keeps its place in the batch (the caller offers it again later and
// stops reading meanwhile); any other refusal is counted as a drop for that output (on
// `full`, of the rest of the batch). Used on the I/O thread only (the outputs'
// try_send_many is thread-safe; their backlog clocks are the I/O thread's).
class FanOut {
 public:
  explicit FanOut(std::vector<Output*> outputs, std::shared_ptr<spdlog::logger> log);
  // True when every output is done with every line of `batch` (clear it then). The last
  // output still owed the lines takes them by move, the others a copy.
  bool offer(LineBatch& batch, Transport transport);
  const std::vector<Output*>& outputs() const noexcept { return outputs_; }

 private:
  // `out` did not take `lines` (refused with `s`): counted and logged, rate-limited.
  void dropped(Output& out, const hopper::Status& s, std::uint64_t lines, Transport transport);
  // `out` took the lines but could not make them durable (sync = "always"): logged.
  void not_durable(Output& out, const hopper::Status& s);

  std::vector<Output*> outputs_;
  std::vector<std::string> copy_;  // the lines for an output that may not move them
  std::shared_ptr<spdlog::logger> log_;
  RateLimit full_warning_;
  RateLimit error_warning_;
};

class TcpSession;

// The listeners. Runs on one asio::io_context (one thread): all members are touched only
// from that thread after bind().
class Ingest {
 public:
  Ingest(asio::io_context& io, const Config& config, FanOut& fan_out, IngestCounters& counters,
         std::shared_ptr<spdlog::logger> log);
  ~Ingest();

  // Binds every listener now, so that a port in use is an error at start. The message
  // names the address, the config key and line, and the errno text. Also loads the TLS
  // listeners' certificate.
  hopper::Status bind();
  // Starts accepting and receiving.
  void start();
  // Closes the listeners and every connection (lines read but not yet queued are lost to
  // a clean stop only if their queue is full; see docs/operations.md).
  void stop();

  // A reload, in two steps. prepare() binds the listeners `next` adds and loads its TLS
  // certificate; nothing changes yet, and on error what it bound is closed again.
  // commit() then closes the listeners `next` no longer has (connections already accepted
  // stay open), starts the new ones and uses `next` from now on. `next` must outlive us
  // (or the next commit). Listeners are matched by kind and host:port as written.
  hopper::Status prepare(const Config& next);
  void commit(const Config& next);
  void abandon();  // drops what prepare() bound
  // The outputs changed: `fan_out` replaces the old one, and `remap[i]` is the new index of
  // old output i (-1: removed), for lines a connection still holds.
  void set_fan_out(FanOut& fan_out, const std::vector<int>& remap);

  std::vector<std::string> tcp_addresses() const;  // as bound ("127.0.0.1:41234"), plain TCP
  std::vector<std::string> tls_addresses() const;
  std::vector<std::string> udp_addresses() const;

  // For sessions.
  const Config& config() const noexcept { return *config_; }
  FanOut& fan_out() noexcept { return *fan_out_; }
  IngestCounters& counters() noexcept { return counters_; }
  spdlog::logger& log() noexcept { return *log_; }
  void drop(DropReason reason, Transport transport);
  void session_closed(TcpSession* s);
  void handshake_failed(const std::string& peer, const std::string& why);

 private:
  struct Listener {
    std::string key;  // "tcp 127.0.0.1:2003" as configured
    bool tls = false;
    asio::ip::tcp::acceptor acceptor;
    asio::steady_timer pause;  // accepting paused: out of file descriptors
    std::chrono::milliseconds backoff{0};
    bool paused = false;
    bool started = false;
  };
  struct UdpListener {
    std::string key;
    asio::ip::udp::socket socket;
    asio::ip::udp::endpoint peer;
    std::vector<char> buffer;
    bool started = false;
  };
  hopper::Status bind_all(const Config& config, std::vector<std::unique_ptr<Listener>>& tcp,
                          std::vector<std::unique_ptr<UdpListener>>& udp,
                          std::shared_ptr<asio::ssl::context>& tls) const;
  void accept(Listener& l);
  void accept_failed(Listener& l, const asio::error_code& ec);
  void receive(UdpListener& u);
  void sweep();  // closes idle connections
  std::vector<std::string> addresses(bool tls) const;

  asio::io_context& io_;
  const Config* config_;
  FanOut* fan_out_;
  LineBatch udp_batch_;  // the lines of the datagram being offered
  IngestCounters& counters_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<asio::ssl::context> tls_;  // the TLS listeners' (sessions hold theirs)
  std::vector<std::unique_ptr<Listener>> acceptors_;
  std::vector<std::unique_ptr<UdpListener>> udp_;
  // What prepare() bound for a reload, until commit() or abandon().
  std::vector<std::unique_ptr<Listener>> next_tcp_;
  std::vector<std::unique_ptr<UdpListener>> next_udp_;
  std::shared_ptr<asio::ssl::context> next_tls_;
  // Listeners a reload closed: kept (closed) until we go, because a completion already
  // queued for one may still refer to it. A few bytes per reload.
  std::vector<std::unique_ptr<Listener>> retired_tcp_;
  std::vector<std::unique_ptr<UdpListener>> retired_udp_;
  std::list<std::shared_ptr<TcpSession>> sessions_;
  asio::steady_timer sweeper_;
  // A descriptor kept open for the moment accept() fails with EMFILE: closing it lets the
  // waiting client be accepted and closed at once (refused, visibly), instead of being
  // left in the backlog where it believes it is sending.
  int spare_fd_ = -1;
  bool fd_episode_ = false;  // accepting failed for lack of descriptors, not yet recovered
  std::uint64_t episode_refused_ = 0;
  std::chrono::steady_clock::time_point episode_start_{};
  bool stopping_ = false;
  RateLimit drop_warning_;
  RateLimit reject_warning_;
  RateLimit idle_warning_;
  RateLimit tls_warning_;
};

// How many file descriptors hopperd needs beyond its TCP clients (listeners, queues,
// downstream connections, logs, librdkafka's sockets and pipes).
std::size_t reserved_descriptors(const Config& config);

// Raises the soft RLIMIT_NOFILE towards what `config` needs (max_tcp_clients plus the
// reserve), up to the hard limit, and warns when even that is short. Returns the limit in
// force.
std::uint64_t fit_descriptor_limit(const Config& config, spdlog::logger& log);

}  // namespace hopperd
