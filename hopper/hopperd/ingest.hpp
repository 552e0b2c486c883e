// Ingest: hopperd's TCP and UDP listeners, and the fan-out of every accepted line to every
// output's queue.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include <asio.hpp>
#include <spdlog/logger.h>

#include <hopper/status.hpp>

#include "hopperd/config.hpp"
#include "hopperd/counters.hpp"
#include "hopperd/egress.hpp"
#include "hopperd/logging.hpp"

namespace hopperd {

// Offers one line to every output. An output whose queue is full under FullPolicy::block
// keeps its bit in `pending` (the caller retries later and stops reading meanwhile); any
// other refusal is counted as a drop for that output. Thread-safe (outputs are).
class FanOut {
 public:
  explicit FanOut(std::vector<Output*> outputs, std::shared_ptr<spdlog::logger> log);
  std::uint32_t all() const noexcept { return all_; }
  // True when no output is left pending. `line` may be moved from only then.
  bool offer(std::string& line, std::uint32_t& pending, Transport transport);

 private:
  std::vector<Output*> outputs_;
  std::uint32_t all_ = 0;
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
  // names the address, the config key and line, and the errno text.
  hopper::Status bind();
  // Starts accepting and receiving.
  void start();
  // Closes the listeners and every connection (lines read but not yet queued are lost to
  // a clean stop only if their queue is full; see docs/operations.md).
  void stop();

  std::vector<std::string> tcp_addresses() const;  // as bound ("127.0.0.1:41234")
  std::vector<std::string> udp_addresses() const;

  // For sessions.
  const Config& config() const noexcept { return config_; }
  FanOut& fan_out() noexcept { return fan_out_; }
  IngestCounters& counters() noexcept { return counters_; }
  spdlog::logger& log() noexcept { return *log_; }
  void drop(DropReason reason, Transport transport);
  void session_closed(TcpSession* s);

 private:
  struct UdpListener {
    asio::ip::udp::socket socket;
    asio::ip::udp::endpoint peer;
    std::vector<char> buffer;
  };
  void accept(asio::ip::tcp::acceptor& a);
  void receive(UdpListener& u);

  asio::io_context& io_;
  const Config& config_;
  FanOut& fan_out_;
  IngestCounters& counters_;
  std::shared_ptr<spdlog::logger> log_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  std::vector<std::unique_ptr<UdpListener>> udp_;
  std::list<std::shared_ptr<TcpSession>> sessions_;
  bool stopping_ = false;
  RateLimit drop_warning_;
  RateLimit reject_warning_;
};

}  // namespace hopperd
