#include "hopperd/ingest.hpp"

#include <array>

namespace hopperd {

using hopper::Errc;
using hopper::Status;

// ---- FanOut ---------------------------------------------------------------------------

FanOut::FanOut(std::vector<Output*> outputs, std::shared_ptr<spdlog::logger> log)
    : outputs_(std::move(outputs)), log_(std::move(log)) {
  for (std::size_t i = 0; i < outputs_.size() && i < 32; ++i) all_ |= 1u << i;
}

bool FanOut::offer(std::string& line, std::uint32_t& pending, Transport transport) {
  for (std::size_t i = 0; i < outputs_.size() && pending != 0; ++i) {
    const std::uint32_t bit = 1u << i;
    if (!(pending & bit)) continue;
    Output& out = *outputs_[i];
    // The last output still owed the line gets it by move; a refused item is untouched.
    const Status s = pending == bit ? out.try_send(std::move(line)) : out.try_send(std::string(line));
    if (s.ok()) {
      pending &= ~bit;
      continue;
    }
    if (s.code() == Errc::full && transport == Transport::tcp &&
        out.config().queue.when_full == hopper::FullPolicy::block)
      continue;  // back-pressure: the connection waits for room
    pending &= ~bit;
    std::uint64_t held = 0;
    if (s.code() == Errc::full) {
      bump(out.counters.dropped_full);
      if (full_warning_.allow(held))
        log_->warn("output {}: queue full (memory and disk budgets), {} line dropped{}", out.config().name,
                   transport == Transport::udp ? "UDP" : "TCP",
                   held ? fmt::format(" ({} more drops not logged)", held) : std::string());
    } else {
      bump(out.counters.dropped_error);
      if (error_warning_.allow(held))
        log_->warn("output {}: line not queued: {}{}", out.config().name, s.message(),
                   held ? fmt::format(" ({} more not logged)", held) : std::string());
    }
  }
  return pending == 0;
}

// ---- TcpSession -----------------------------------------------------------------------

// One client connection: reads, cuts lines, offers them; stops reading while a queue under
// `block` is full (the kernel's buffers then fill and the client is pushed back). Lives on
// the I/O thread only; kept alive by its pending handlers and by Ingest's list.
class TcpSession : public std::enable_shared_from_this<TcpSession> {
 public:
  TcpSession(Ingest& in, asio::ip::tcp::socket socket)
      : in_(in), socket_(std::move(socket)), timer_(socket_.get_executor()), framer_(in.config().max_line_bytes) {}

  void start() { read(); }
  // A line read but not yet queued everywhere (its queue was full under `block`).
  bool holds_line() const noexcept { return pending_ != 0; }
  void close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    socket_.close(ec);
    timer_.cancel();
  }
  std::list<std::shared_ptr<TcpSession>>::iterator where;

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
      self->on_read(ec, n);
    });
  }
  void on_read(const asio::error_code& ec, std::size_t n) {
    if (closed_) return;
    if (ec) {
      eof_ = true;
      if (ec == asio::error::eof) {
        framer_.finish();  // a clean end: an unterminated last line still counts
      } else if (ec != asio::error::connection_reset) {
        bump(in_.counters().read_errors);  // a reset or error: a partial last line is not trusted
      }
    } else {
      bump(in_.counters().tcp_bytes, n);
      framer_.append(std::string_view(buf_.data(), n));
    }
    process();
  }
  void process() {
    if (closed_) return;
    FanOut& fan = in_.fan_out();
    if (pending_ != 0 && !fan.offer(line_, pending_, Transport::tcp)) return wait();
    paused_ = false;
    for (;;) {
      const LineFramer::Event ev = framer_.next();
      if (ev.kind == LineFramer::Event::need_more) break;
      if (ev.kind == LineFramer::Event::dropped) {
        in_.drop(ev.reason, Transport::tcp);
        continue;
      }
      bump(in_.counters().tcp_lines);
      line_.assign(ev.line);
      pending_ = fan.all();
      if (!fan.offer(line_, pending_, Transport::tcp)) return wait();
    }
    if (eof_) {
      close();
      in_.session_closed(this);
      return;
    }
    read();
  }
  // A queue is full: try again shortly, without reading meanwhile.
  void wait() {
    if (!paused_) {
      paused_ = true;
      bump(in_.counters().backpressure_pauses);
    }
    timer_.expires_after(std::chrono::milliseconds(10));
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) self->process();
    });
  }

  Ingest& in_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  LineFramer framer_;
  std::array<char, 32 * 1024> buf_;  // per connection: 1,024 clients cost 32 MiB
  std::string line_;            // the line being offered
  std::uint32_t pending_ = 0;   // outputs that still owe it a place
  bool paused_ = false;
  bool eof_ = false;
  bool closed_ = false;
};

// ---- Ingest ---------------------------------------------------------------------------

Ingest::Ingest(asio::io_context& io, const Config& config, FanOut& fan_out, IngestCounters& counters,
               std::shared_ptr<spdlog::logger> log)
    : io_(io), config_(config), fan_out_(fan_out), counters_(counters), log_(std::move(log)) {}

Ingest::~Ingest() { stop(); }

namespace {

template <class Protocol>
hopper::Result<typename Protocol::endpoint> resolve(asio::io_context& io, const Endpoint& e, const char* kind) {
  asio::error_code ec;
  typename Protocol::resolver r(io);
  auto results = r.resolve(e.host, std::to_string(e.port), Protocol::resolver::passive, ec);
  if (ec || results.empty())
    return Status(Errc::invalid_argument, std::string("cannot resolve ") + kind + " " + e.text() + " (" + e.origin +
                                              "): " + (ec ? ec.message() : "no address"));
  return results.begin()->endpoint();
}

std::string text_of(const asio::ip::address& a, unsigned short port) {
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(port);
}

}  // namespace

Status Ingest::bind() {
  for (const Endpoint& e : config_.tcp) {
    auto ep = resolve<asio::ip::tcp>(io_, e, "tcp");
    if (!ep.ok()) return ep.status();
    auto a = std::make_unique<asio::ip::tcp::acceptor>(io_);
    asio::error_code ec;
    a->open(ep->protocol(), ec);
    if (!ec) a->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a->bind(*ep, ec);
    if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return Status(Errc::io_error, "cannot listen on tcp " + e.text() + " (" + e.origin + "): " + ec.message());
    acceptors_.push_back(std::move(a));
  }
  for (const Endpoint& e : config_.udp) {
    auto ep = resolve<asio::ip::udp>(io_, e, "udp");
    if (!ep.ok()) return ep.status();
    auto u = std::make_unique<UdpListener>(UdpListener{asio::ip::udp::socket(io_), {}, std::vector<char>(65536)});
    asio::error_code ec;
    u->socket.open(ep->protocol(), ec);
    if (!ec) u->socket.bind(*ep, ec);
    if (ec) return Status(Errc::io_error, "cannot listen on udp " + e.text() + " (" + e.origin + "): " + ec.message());
    asio::error_code ignored;  // a smaller buffer than asked for only means earlier drops
    u->socket.set_option(asio::socket_base::receive_buffer_size(static_cast<int>(config_.udp_receive_buffer)), ignored);
    udp_.push_back(std::move(u));
  }
  return Status();
}

std::vector<std::string> Ingest::tcp_addresses() const {
  std::vector<std::string> out;
  for (const auto& a : acceptors_) {
    asio::error_code ec;
    const auto ep = a->local_endpoint(ec);
    if (!ec) out.push_back(text_of(ep.address(), ep.port()));
  }
  return out;
}

std::vector<std::string> Ingest::udp_addresses() const {
  std::vector<std::string> out;
  for (const auto& u : udp_) {
    asio::error_code ec;
    const auto ep = u->socket.local_endpoint(ec);
    if (!ec) out.push_back(text_of(ep.address(), ep.port()));
  }
  return out;
}

void Ingest::start() {
  for (auto& a : acceptors_) accept(*a);
  for (auto& u : udp_) receive(*u);
  for (const auto& t : tcp_addresses()) log_->info("listening on tcp {}", t);
  for (const auto& u : udp_addresses()) log_->info("listening on udp {}", u);
}

void Ingest::accept(asio::ip::tcp::acceptor& a) {
  a.async_accept([this, &a](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    if (stopping_ || ec == asio::error::operation_aborted) return;
    if (!ec) {
      if (sessions_.size() >= config_.max_tcp_clients) {
        bump(counters_.connections_rejected);
        std::uint64_t held = 0;
        if (reject_warning_.allow(held))
          log_->warn("refusing a TCP client: input.max_tcp_clients ({}) reached{}", config_.max_tcp_clients,
                     held ? fmt::format(" ({} more refused)", held) : std::string());
        asio::error_code ignored;
        socket.close(ignored);
      } else {
        bump(counters_.connections_total);
        bump(counters_.connections_open);
        auto s = std::make_shared<TcpSession>(*this, std::move(socket));
        sessions_.push_front(s);
        s->where = sessions_.begin();
        s->start();
      }
    } else {
      // EMFILE and friends: say so, and keep accepting (after a pause, not in a spin).
      std::uint64_t held = 0;
      if (reject_warning_.allow(held)) log_->warn("accept on tcp failed: {}", ec.message());
    }
    accept(a);
  });
}

void Ingest::receive(UdpListener& u) {
  u.socket.async_receive_from(asio::buffer(u.buffer), u.peer, [this, &u](const asio::error_code& ec, std::size_t n) {
    if (stopping_ || ec == asio::error::operation_aborted) return;
    if (!ec) {
      bump(counters_.udp_datagrams);
      bump(counters_.udp_bytes, n);
      for_each_datagram_line(std::string_view(u.buffer.data(), n), config_.max_line_bytes, [&](const LineCheck& c) {
        if (!c.ok) return drop(c.reason, Transport::udp);
        bump(counters_.udp_lines);
        std::string line(c.line);
        std::uint32_t pending = fan_out_.all();
        (void)fan_out_.offer(line, pending, Transport::udp);  // UDP cannot wait: full is a drop
      });
    } else {
      bump(counters_.read_errors);
    }
    receive(u);
  });
}

void Ingest::drop(DropReason reason, Transport transport) {
  auto& c = transport == Transport::tcp ? counters_.tcp_dropped : counters_.udp_dropped;
  bump(c[static_cast<std::size_t>(reason)]);
  std::uint64_t held = 0;
  if (drop_warning_.allow(held))
    log_->warn("dropped a {} line: {}{} (input.max_line_bytes = {})", transport == Transport::tcp ? "TCP" : "UDP",
               to_string(reason), held ? fmt::format("; {} more drops not logged", held) : std::string(),
               config_.max_line_bytes);
}

void Ingest::session_closed(TcpSession* s) {
  if (stopping_) return;
  counters_.connections_open.fetch_sub(1, std::memory_order_relaxed);
  sessions_.erase(s->where);
}

void Ingest::stop() {
  if (stopping_) return;
  stopping_ = true;
  asio::error_code ec;
  for (auto& a : acceptors_) a->close(ec);
  for (auto& u : udp_) u->socket.close(ec);
  std::size_t held = 0;
  for (auto& s : sessions_) {
    if (s->holds_line()) ++held;
    s->close();
  }
  if (held > 0)
    log_->warn("{} line(s) read from clients while their queue was full were not queued: lost at this stop", held);
  counters_.connections_open.store(0, std::memory_order_relaxed);
  sessions_.clear();
}

}  // namespace hopperd
