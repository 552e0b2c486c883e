#include "hopperd/ingest.hpp"

#include <algorithm>
#include <array>
#include <span>
#include <utility>
#include <optional>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hopperd/tls.hpp"

namespace hopperd {

using hopper::Errc;
using hopper::Status;
using Clock = std::chrono::steady_clock;

// ---- FanOut ---------------------------------------------------------------------------

FanOut::FanOut(std::vector<Output*> outputs, std::shared_ptr<spdlog::logger> log)
    : outputs_(std::move(outputs)), log_(std::move(log)) {}

bool FanOut::offer(LineBatch& batch, Transport transport) {
  const std::size_t n = batch.lines.size();
  batch.done.resize(outputs_.size(), 0);
  const Clock::time_point now = Clock::now();
  bool all_done = true;
  for (std::size_t i = 0; i < outputs_.size(); ++i) {
    std::size_t& done = batch.done[i];
    if (done == n) continue;
    Output& out = *outputs_[i];
    bool last = true;  // every other output is done with the batch: this one may move the lines
    for (std::size_t j = 0; j < outputs_.size() && last; ++j) last = j == i || batch.done[j] == n;
    std::span<std::string> rest(batch.lines.data() + done, n - done);
    if (!last) {
      copy_.assign(rest.begin(), rest.end());
      rest = copy_;
    }
    std::size_t off = 0;  // of `rest`, taken or dropped
    std::uint64_t taken_all = 0;
    while (off < rest.size()) {
      std::size_t taken = 0;
      const Status s = out.try_send_many(rest.subspan(off), taken);
      off += taken;
      taken_all += taken;
      if (s.ok()) break;
      if (off == rest.size()) {  // sync = "always": queued, but the fdatasync failed
        not_durable(out, s);
        break;
      }
      if (s.code() == Errc::full && transport == Transport::tcp &&
          out.config().queue.when_full == hopper::FullPolicy::block) {
        all_done = false;  // back-pressure: the connection waits for room
        break;
      }
      // Full (not blocking): the rest of the batch goes too; anything else is about this line.
      const std::size_t lost = s.code() == Errc::full ? rest.size() - off : 1;
      dropped(out, s, lost, transport);
      off += lost;
    }
    if (taken_all > 0) out.backlog().accepted(taken_all, now);
    done += off;
  }
  return all_done;
}

// Counted by the queue (hopperd_output_queue_sync_errors_total); the lines stay queued.
void FanOut::not_durable(Output& out, const Status& s) {
  std::uint64_t held = 0;
  if (error_warning_.allow(held))
    log_->warn("output {}: lines queued, but not known to be on disk: {}{}", out.config().name, s.message(),
               held ? fmt::format(" ({} more not logged)", held) : std::string());
}

void FanOut::dropped(Output& out, const Status& s, std::uint64_t lines, Transport transport) {
  std::uint64_t held = 0;
  if (s.code() == Errc::full) {
    bump(out.counters.dropped_full, lines);
    if (full_warning_.allow(held))
      log_->warn("output {}: queue full (memory and disk budgets), {} {} dropped{}", out.config().name, lines,
                 transport == Transport::udp ? "UDP line(s)" : "TCP line(s)",
                 held ? fmt::format(" ({} more drops not logged)", held) : std::string());
  } else {
    bump(out.counters.dropped_error, lines);
    if (error_warning_.allow(held))
      log_->warn("output {}: line not queued: {}{}", out.config().name, s.message(),
                 held ? fmt::format(" ({} more not logged)", held) : std::string());
  }
}

// ---- TcpSession -----------------------------------------------------------------------

// One client connection, plain or TLS: reads, cuts lines, offers them; stops reading while
// a queue under `block` is full (the kernel's buffers then fill and the client is pushed
// back). Lives on the I/O thread only; kept alive by its pending handlers and by Ingest's
// list.
class TcpSession : public std::enable_shared_from_this<TcpSession> {
 public:
  TcpSession(Ingest& in, asio::ip::tcp::socket socket, std::shared_ptr<asio::ssl::context> tls)
      : in_(in), timer_(socket.get_executor()), framer_(in.config().max_line_bytes), tls_context_(std::move(tls)) {
    asio::error_code ec;
    const auto peer = socket.remote_endpoint(ec);
    if (!ec) peer_ = peer.address().to_string() + ":" + std::to_string(peer.port());
    if (tls_context_) tls_.emplace(std::move(socket), *tls_context_);
    else plain_.emplace(std::move(socket));
    last_activity_ = Clock::now();
  }

  void start() {
    if (!tls_) return read();
    handshaking_ = true;
    tls_->async_handshake(asio::ssl::stream_base::server, [self = shared_from_this()](const asio::error_code& ec) {
      if (self->closed_) return;
      self->handshaking_ = false;
      self->last_activity_ = Clock::now();
      if (ec) {
        self->in_.handshake_failed(self->peer_, ec.message());
        self->close();
        self->in_.session_closed(self.get());
        return;
      }
      self->read();
    });
  }
  // Lines read but not yet queued everywhere (a queue was full under `block`): how many
  // some output has not taken.
  std::size_t held_lines() const noexcept {
    if (batch_.empty()) return 0;
    std::size_t least = batch_.lines.size();
    for (std::size_t d : batch_.done) least = std::min(least, d);
    return batch_.lines.size() - least;
  }
  LineBatch& batch() noexcept { return batch_; }
  // Waiting for the client (not for a full queue) for at least `limit`.
  bool idle_for(Clock::time_point now, std::chrono::milliseconds limit) const noexcept {
    if (closed_ || paused_) return false;
    if (handshaking_)  // a TLS handshake gets at most kHandshakeLimit, even with no idle limit
      return now - last_activity_ >= (limit.count() > 0 ? std::min(limit, kHandshakeLimit) : kHandshakeLimit);
    return limit.count() > 0 && now - last_activity_ >= limit;
  }
  const std::string& peer() const noexcept { return peer_; }
  void close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ec;
    socket().close(ec);
    timer_.cancel();
  }
  std::list<std::shared_ptr<TcpSession>>::iterator where;
  static constexpr std::chrono::milliseconds kHandshakeLimit{10000};

 private:
  asio::ip::tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }
  void read() {
    auto done = [self = shared_from_this()](const asio::error_code& ec, std::size_t n) { self->on_read(ec, n); };
    if (tls_) tls_->async_read_some(asio::buffer(buf_), std::move(done));
    else plain_->async_read_some(asio::buffer(buf_), std::move(done));
  }
  void on_read(const asio::error_code& ec, std::size_t n) {
    if (closed_) return;
    last_activity_ = Clock::now();
    if (ec) {
      eof_ = true;
      if (ec == asio::error::eof) {
        framer_.finish();  // a clean end: an unterminated last line still counts
      } else if (ec != asio::error::connection_reset && ec != asio::ssl::error::stream_truncated) {
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
    if (!batch_.empty()) {
      if (!fan.offer(batch_, Transport::tcp)) return wait();
      batch_.clear();
    }
    paused_ = false;
    std::uint64_t lines = 0;
    for (;;) {
      const LineFramer::Event ev = framer_.next();
      if (ev.kind == LineFramer::Event::need_more) break;
      if (ev.kind == LineFramer::Event::dropped) {
        in_.drop(ev.reason, Transport::tcp);
        continue;
      }
      ++lines;
      batch_.lines.emplace_back(ev.line);
      if (batch_.lines.size() == kBatchLines) {
        bump(in_.counters().tcp_lines, std::exchange(lines, 0));
        if (!fan.offer(batch_, Transport::tcp)) return wait();
        batch_.clear();
      }
    }
    bump(in_.counters().tcp_lines, lines);
    if (!batch_.empty()) {
      if (!fan.offer(batch_, Transport::tcp)) return wait();
      batch_.clear();
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
  asio::steady_timer timer_;
  LineFramer framer_;
  std::shared_ptr<asio::ssl::context> tls_context_;  // outlives tls_ (declared before it)
  std::optional<asio::ip::tcp::socket> plain_;
  std::optional<asio::ssl::stream<asio::ip::tcp::socket>> tls_;
  static constexpr std::size_t kBatchLines = 1024;  // offered at once, at most
  std::array<char, 32 * 1024> buf_;  // per connection: 1,024 clients cost 32 MiB
  LineBatch batch_;  // the lines being offered (some outputs may have taken them already)
  std::string peer_;
  Clock::time_point last_activity_;
  bool handshaking_ = false;
  bool paused_ = false;
  bool eof_ = false;
  bool closed_ = false;
};

// ---- Ingest ---------------------------------------------------------------------------

Ingest::Ingest(asio::io_context& io, const Config& config, FanOut& fan_out, IngestCounters& counters,
               std::shared_ptr<spdlog::logger> log)
    : io_(io), config_(&config), fan_out_(&fan_out), counters_(counters), log_(std::move(log)), sweeper_(io) {
  spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

Ingest::~Ingest() {
  stop();
  if (spare_fd_ >= 0) ::close(spare_fd_);
}

namespace {

template <class Protocol>
hopper::Result<typename Protocol::endpoint> resolve(asio::io_context& io, const Endpoint& e, const char* kind) {
  asio::error_code ec;
  typename Protocol::resolver r(io);
  auto results = r.resolve(e.host, std::to_string(e.port), Protocol::resolver::passive, ec);
  if (ec || results.empty())
    return Status(Errc::invalid_argument, e.origin + ": cannot resolve " + kind + " " + e.text() + ": " +
                                              (ec ? ec.message() : "no address"));
  return results.begin()->endpoint();
}

std::string text_of(const asio::ip::address& a, unsigned short port) {
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(port);
}

bool out_of_descriptors(const asio::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory;
}

}  // namespace

Status Ingest::bind_all(const Config& config, std::vector<std::unique_ptr<Listener>>& tcp,
                        std::vector<std::unique_ptr<UdpListener>>& udp, std::shared_ptr<asio::ssl::context>& tls) const {
  auto have = [&](const std::string& key) {
    for (const auto& l : acceptors_)
      if (l->key == key) return true;
    for (const auto& u : udp_)
      if (u->key == key) return true;
    return false;
  };
  if (!config.tls.empty()) {
    auto ctx = make_server_context(config.tls_server);
    if (!ctx.ok()) return ctx.status();
    tls = std::move(*ctx);
  }
  for (int pass = 0; pass < 2; ++pass) {
    const bool is_tls = pass == 1;
    for (const Endpoint& e : is_tls ? config.tls : config.tcp) {
      const std::string key = std::string(is_tls ? "tls " : "tcp ") + e.text();
      if (have(key)) continue;  // kept as it is (a reload)
      auto ep = resolve<asio::ip::tcp>(io_, e, is_tls ? "tls" : "tcp");
      if (!ep.ok()) return ep.status();
      auto l = std::make_unique<Listener>(Listener{key, is_tls, asio::ip::tcp::acceptor(io_), asio::steady_timer(io_)});
      asio::error_code ec;
      l->acceptor.open(ep->protocol(), ec);
      if (!ec) l->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) l->acceptor.bind(*ep, ec);
      if (!ec) l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
      if (!ec) l->acceptor.non_blocking(true, ec);  // refusing clients when out of descriptors
      if (ec)
        return Status(Errc::io_error, e.origin + ": cannot listen on " + (is_tls ? "tls " : "tcp ") + e.text() + ": " +
                                          ec.message());
      tcp.push_back(std::move(l));
    }
  }
  for (const Endpoint& e : config.udp) {
    const std::string key = "udp " + e.text();
    if (have(key)) continue;
    auto ep = resolve<asio::ip::udp>(io_, e, "udp");
    if (!ep.ok()) return ep.status();
    auto u = std::make_unique<UdpListener>(UdpListener{key, asio::ip::udp::socket(io_), {}, std::vector<char>(65536)});
    asio::error_code ec;
    u->socket.open(ep->protocol(), ec);
    if (!ec) u->socket.bind(*ep, ec);
    if (ec) return Status(Errc::io_error, e.origin + ": cannot listen on udp " + e.text() + ": " + ec.message());
    asio::error_code ignored;  // a smaller buffer than asked for only means earlier drops
    u->socket.set_option(asio::socket_base::receive_buffer_size(static_cast<int>(config.udp_receive_buffer)), ignored);
    udp.push_back(std::move(u));
  }
  return Status();
}

Status Ingest::bind() {
  std::vector<std::unique_ptr<Listener>> tcp;
  std::vector<std::unique_ptr<UdpListener>> udp;
  Status s = bind_all(*config_, tcp, udp, tls_);
  for (auto& l : tcp) acceptors_.push_back(std::move(l));
  for (auto& u : udp) udp_.push_back(std::move(u));
  return s;
}

Status Ingest::prepare(const Config& next) {
  abandon();
  Status s = bind_all(next, next_tcp_, next_udp_, next_tls_);
  if (!s.ok()) abandon();
  return s;
}

void Ingest::abandon() {
  next_tcp_.clear();
  next_udp_.clear();
  next_tls_.reset();
}

void Ingest::commit(const Config& next) {
  auto wanted = [&](const std::string& key) {
    for (const Endpoint& e : next.tcp)
      if (key == "tcp " + e.text()) return true;
    for (const Endpoint& e : next.tls)
      if (key == "tls " + e.text()) return true;
    for (const Endpoint& e : next.udp)
      if (key == "udp " + e.text()) return true;
    return false;
  };
  asio::error_code ec;
  for (auto it = acceptors_.begin(); it != acceptors_.end();) {
    if (wanted((*it)->key)) {
      ++it;
      continue;
    }
    log_->info("reload: no longer listening on {} (its open connections stay)", (*it)->key);
    (*it)->acceptor.close(ec);
    (*it)->pause.cancel();
    retired_tcp_.push_back(std::move(*it));  // a handler already queued may still refer to it
    it = acceptors_.erase(it);
  }
  for (auto it = udp_.begin(); it != udp_.end();) {
    if (wanted((*it)->key)) {
      ++it;
      continue;
    }
    log_->info("reload: no longer listening on {}", (*it)->key);
    (*it)->socket.close(ec);
    retired_udp_.push_back(std::move(*it));
    it = udp_.erase(it);
  }
  config_ = &next;
  tls_ = std::move(next_tls_);  // new TLS clients get the new certificate
  for (auto& l : next_tcp_) acceptors_.push_back(std::move(l));
  for (auto& u : next_udp_) udp_.push_back(std::move(u));
  abandon();
  if (!stopping_) start();
}

void Ingest::set_fan_out(FanOut& fan_out, const std::vector<int>& remap) {
  fan_out_ = &fan_out;
  // A batch held for a full queue keeps each output's place; an output added by the reload
  // does not get lines read before it existed.
  for (auto& s : sessions_) {
    LineBatch& b = s->batch();
    if (b.empty()) continue;
    std::vector<std::size_t> done(fan_out.outputs().size(), b.lines.size());
    for (std::size_t i = 0; i < remap.size() && i < b.done.size(); ++i)
      if (remap[i] >= 0) done[static_cast<std::size_t>(remap[i])] = b.done[i];
    b.done = std::move(done);
  }
}

std::vector<std::string> Ingest::addresses(bool tls) const {
  std::vector<std::string> out;
  for (const auto& l : acceptors_) {
    if (l->tls != tls) continue;
    asio::error_code ec;
    const auto ep = l->acceptor.local_endpoint(ec);
    if (!ec) out.push_back(text_of(ep.address(), ep.port()));
  }
  return out;
}

std::vector<std::string> Ingest::tcp_addresses() const { return addresses(false); }
std::vector<std::string> Ingest::tls_addresses() const { return addresses(true); }

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
  for (auto& l : acceptors_) {
    if (l->started) continue;
    l->started = true;
    accept(*l);
    asio::error_code ec;
    const auto ep = l->acceptor.local_endpoint(ec);
    if (!ec) log_->info("listening on {} {}", l->tls ? "tls" : "tcp", text_of(ep.address(), ep.port()));
  }
  for (auto& u : udp_) {
    if (u->started) continue;
    u->started = true;
    receive(*u);
    asio::error_code ec;
    const auto ep = u->socket.local_endpoint(ec);
    if (!ec) log_->info("listening on udp {}", text_of(ep.address(), ep.port()));
  }
  sweeper_.cancel();
  sweep();
}

void Ingest::sweep() {
  if (stopping_) return;
  const auto limit = config_->idle_timeout;
  const auto now = Clock::now();
  std::uint64_t closed = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    TcpSession& s = **it;
    if (!s.idle_for(now, limit)) {
      ++it;
      continue;
    }
    s.close();
    bump(counters_.idle_closed);
    counters_.connections_open.fetch_sub(1, std::memory_order_relaxed);
    ++closed;
    it = sessions_.erase(it);
  }
  if (closed > 0) {
    std::uint64_t held = 0;
    if (idle_warning_.allow(held))
      log_->info("closed {} TCP connection(s) idle for input.idle_timeout_ms ({} ms){}", closed, limit.count(),
                 held ? fmt::format(" ({} more such closes not logged)", held) : std::string());
  }
  // Often enough that a connection lives at most a quarter longer than the limit (and
  // every second for TLS handshakes when there is no limit).
  auto every = std::chrono::milliseconds(1000);
  if (limit.count() > 0) every = std::clamp<std::chrono::milliseconds>(limit / 4, std::chrono::milliseconds(20), every);
  sweeper_.expires_after(every);
  sweeper_.async_wait([this](const asio::error_code& ec) {
    if (!ec) sweep();
  });
}

void Ingest::accept(Listener& l) {
  l.acceptor.async_accept([this, &l](const asio::error_code& ec, asio::ip::tcp::socket socket) {
    // Closed: stopping, or by a reload (its completion may come after the close).
    if (stopping_ || ec == asio::error::operation_aborted || !l.acceptor.is_open()) return;
    if (ec) return accept_failed(l, ec);
    l.backoff = std::chrono::milliseconds(0);
    if (fd_episode_) {
      fd_episode_ = false;
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - episode_start_).count();
      log_->info("file descriptors available again after {} s: accepting TCP clients ({} refused meanwhile)", secs,
                 episode_refused_);
    }
    if (spare_fd_ < 0) spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (sessions_.size() >= config_->max_tcp_clients) {
      bump(counters_.connections_rejected);
      std::uint64_t held = 0;
      if (reject_warning_.allow(held))
        log_->warn("refusing a TCP client: input.max_tcp_clients ({}) reached{}", config_->max_tcp_clients,
                   held ? fmt::format(" ({} more refused)", held) : std::string());
      asio::error_code ignored;
      socket.close(ignored);
    } else {
      bump(counters_.connections_total);
      bump(counters_.connections_open);
      asio::error_code ignored;
      socket.non_blocking(true, ignored);
      auto s = std::make_shared<TcpSession>(*this, std::move(socket), l.tls ? tls_ : nullptr);
      sessions_.push_front(s);
      s->where = sessions_.begin();
      s->start();
    }
    accept(l);
  });
}

void Ingest::accept_failed(Listener& l, const asio::error_code& ec) {
  bump(counters_.accept_errors);
  if (!out_of_descriptors(ec)) {
    // The connection that failed is gone (ECONNABORTED and the like): nothing is left
    // pending, so accepting again cannot spin.
    std::uint64_t held = 0;
    if (reject_warning_.allow(held)) log_->warn("accept on {} failed: {}", l.key, ec.message());
    return accept(l);
  }
  if (!fd_episode_) {
    fd_episode_ = true;
    episode_start_ = Clock::now();
    episode_refused_ = 0;
    bump(counters_.accept_pauses);
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    log_->warn("out of file descriptors ({}; RLIMIT_NOFILE {}, {} TCP connections open): new TCP clients are refused "
               "(closed at once) until descriptors free up",
               ec.message(), static_cast<std::uint64_t>(lim.rlim_cur), sessions_.size());
  }
  // The clients waiting in the listen backlog would sit there believing they are sending:
  // with the spare descriptor freed, each is accepted and closed at once.
  if (spare_fd_ >= 0) {
    ::close(spare_fd_);
    spare_fd_ = -1;
    for (int i = 0; i < 1024; ++i) {
      asio::error_code aec;
      asio::ip::tcp::socket s = l.acceptor.accept(aec);
      if (aec) break;  // would_block: none left waiting (or still out of descriptors)
      asio::error_code ignored;
      s.close(ignored);
      bump(counters_.connections_rejected_fd);
      ++episode_refused_;
    }
    spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  // Then a pause before accepting again, 10 ms doubling to 1 s: a descriptor shortage that
  // the spare cannot bridge (the whole system's, ENFILE) does not become a busy loop.
  l.backoff = l.backoff.count() == 0 ? std::chrono::milliseconds(10)
                                     : std::min<std::chrono::milliseconds>(l.backoff * 2, std::chrono::milliseconds(1000));
  l.paused = true;
  l.pause.expires_after(l.backoff);
  l.pause.async_wait([this, &l](const asio::error_code& wec) {
    if (wec || stopping_ || !l.acceptor.is_open()) return;
    l.paused = false;
    accept(l);
  });
}

void Ingest::receive(UdpListener& u) {
  u.socket.async_receive_from(asio::buffer(u.buffer), u.peer, [this, &u](const asio::error_code& ec, std::size_t n) {
    if (stopping_ || ec == asio::error::operation_aborted) return;
    if (!ec) {  // a datagram read before a reload closed its socket is still relayed
      bump(counters_.udp_datagrams);
      bump(counters_.udp_bytes, n);
      udp_batch_.clear();
      for_each_datagram_line(std::string_view(u.buffer.data(), n), config_->max_line_bytes, [&](const LineCheck& c) {
        if (!c.ok) return drop(c.reason, Transport::udp);
        udp_batch_.lines.emplace_back(c.line);
      });
      bump(counters_.udp_lines, udp_batch_.lines.size());
      (void)fan_out_->offer(udp_batch_, Transport::udp);  // UDP cannot wait: full is a drop
      udp_batch_.clear();
    } else {
      bump(counters_.read_errors);
    }
    if (u.socket.is_open()) receive(u);
  });
}

void Ingest::drop(DropReason reason, Transport transport) {
  auto& c = transport == Transport::tcp ? counters_.tcp_dropped : counters_.udp_dropped;
  bump(c[static_cast<std::size_t>(reason)]);
  std::uint64_t held = 0;
  if (drop_warning_.allow(held))
    log_->warn("dropped a {} line: {}{} (input.max_line_bytes = {})", transport == Transport::tcp ? "TCP" : "UDP",
               to_string(reason), held ? fmt::format("; {} more drops not logged", held) : std::string(),
               config_->max_line_bytes);
}

void Ingest::handshake_failed(const std::string& peer, const std::string& why) {
  bump(counters_.tls_handshake_failures);
  std::uint64_t held = 0;
  if (tls_warning_.allow(held))
    log_->warn("TLS client {} refused: {}{}", peer, why,
               held ? fmt::format(" ({} more handshake failures not logged)", held) : std::string());
}

void Ingest::session_closed(TcpSession* s) {
  if (stopping_) return;
  // A session the sweep already closed and removed does not come back here: its handlers
  // see it closed and return first.
  counters_.connections_open.fetch_sub(1, std::memory_order_relaxed);
  sessions_.erase(s->where);
}

void Ingest::stop() {
  if (stopping_) return;
  stopping_ = true;
  asio::error_code ec;
  sweeper_.cancel();
  for (auto& a : acceptors_) {
    a->acceptor.close(ec);
    a->pause.cancel();
  }
  for (auto& u : udp_) u->socket.close(ec);
  abandon();
  std::size_t held = 0;
  for (auto& s : sessions_) {
    held += s->held_lines();
    s->close();
  }
  if (held > 0)
    log_->warn("{} line(s) read from clients while their queue was full were not queued: lost at this stop", held);
  counters_.connections_open.store(0, std::memory_order_relaxed);
  sessions_.clear();
}

std::size_t reserved_descriptors(const Config& config) {
  // Per output: its queue (LOCK, a segment being written and one being read, the
  // directory), its downstream connection, and for Kafka librdkafka's sockets and pipes.
  std::size_t n = 32 + config.tcp.size() + config.tls.size() + config.udp.size();
  for (const OutputConfig& o : config.outputs) n += o.type == OutputType::kafka ? 64 : 8;
  return n;
}

std::uint64_t fit_descriptor_limit(const Config& config, spdlog::logger& log) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  const std::uint64_t need = config.max_tcp_clients + reserved_descriptors(config);
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need) {
    const rlim_t was = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? need : std::min<rlim_t>(lim.rlim_max, need);
    if (lim.rlim_cur > was && ::setrlimit(RLIMIT_NOFILE, &lim) == 0)
      log.info("raised the file descriptor limit (RLIMIT_NOFILE) from {} to {} for input.max_tcp_clients = {}",
               static_cast<std::uint64_t>(was), static_cast<std::uint64_t>(lim.rlim_cur), config.max_tcp_clients);
    else
      lim.rlim_cur = was;
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need) {
    const std::uint64_t fit = lim.rlim_cur > reserved_descriptors(config) ? lim.rlim_cur - reserved_descriptors(config) : 0;
    log.warn("{}input.max_tcp_clients = {} needs about {} file descriptors, but RLIMIT_NOFILE allows {} (hard limit "
             "{}): beyond about {} clients new ones are refused (closed at once); raise LimitNOFILE or lower "
             "max_tcp_clients",
             config.max_tcp_clients_origin.empty() ? "" : config.max_tcp_clients_origin + ": ", config.max_tcp_clients,
             need, static_cast<std::uint64_t>(lim.rlim_cur), static_cast<std::uint64_t>(lim.rlim_max), fit);
  }
  return lim.rlim_cur;
}

}  // namespace hopperd
