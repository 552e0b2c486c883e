#include "hopperd/egress.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace hopperd {

using hopper::Errc;
using hopper::Status;
using Clock = std::chrono::steady_clock;

namespace {

// Poll in slices so that stop requests are seen within this long.
constexpr std::chrono::milliseconds kSlice{50};
// A new connection must stay open this long before what was written on it is committed: a
// downstream that accepts and at once closes (or dies on start) must not swallow lines.
constexpr std::chrono::milliseconds kSettle{250};

int poll_one(int fd, short events, Clock::time_point until) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
  const int ms = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, kSlice.count()));
  pollfd p{fd, events, 0};
  const int r = ::poll(&p, 1, ms);
  if (r < 0) return errno == EINTR ? 0 : -1;
  return r == 0 ? 0 : p.revents;
}

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

// jemalloc's control interface, when the process has it (hopperd is linked with it unless
// built with sanitizers): weak, so that the parts also link without it (the tests).
extern "C" int mallctl(const char* name, void* oldp, std::size_t* oldlenp, void* newp, std::size_t newlen)
    __attribute__((weak));

// Freed heap stays mapped for reuse; after a backlog has drained that is tens of megabytes
// the process no longer needs. With jemalloc: purge every arena's unused dirty pages now
// (4096 is MALLCTL_ARENAS_ALL) rather than over the next seconds of allocator activity;
// with glibc's malloc: malloc_trim returns the free pages of every arena to the kernel.
void give_back_memory() noexcept {
  if (mallctl != nullptr && mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0) == 0) return;
  ::malloc_trim(0);
}

// ---- Connection -----------------------------------------------------------------------

Status Connection::connect(const Endpoint& to, std::chrono::milliseconds timeout, const std::atomic<bool>& stop,
                           asio::ssl::context* tls, const std::string& server_name, bool verify) {
  close();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(to.port);
  if (int rc = ::getaddrinfo(to.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    return Status(Errc::io_error, "resolve " + to.text() + ": " + ::gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, &::freeaddrinfo);
  const auto deadline = Clock::now() + timeout;
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = "socket: " + errno_text(errno);
      continue;
    }
    const int one = 1;
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // we batch ourselves
    (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    int err = rc == 0 ? 0 : errno;
    while (err == EINPROGRESS || err == EINTR) {
      if (stop) {
        ::close(fd);
        return Status(Errc::closed, "stopping");
      }
      if (Clock::now() >= deadline) {
        err = ETIMEDOUT;
        break;
      }
      const int ev = poll_one(fd, POLLOUT, deadline);
      if (ev < 0) {
        err = errno;
        break;
      }
      if (ev == 0) continue;
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err == 0) {
      fd_ = fd;
      since_ = Clock::now();
      if (!tls) return Status();
      // The handshake shares the connect deadline; the peer's certificate (and name,
      // unless verify is off) is checked here.
      tls_ = std::make_unique<TlsSession>(*tls, fd_, server_name.empty() ? to.host : server_name, verify);
      for (;;) {
        TlsSession::Want want;
        Status s = tls_->handshake(want);
        if (s.ok() && want == TlsSession::Want::nothing) {
          since_ = Clock::now();
          return Status();
        }
        if (!s.ok()) {
          close();
          return Status(Errc::io_error, "TLS with " + to.text() + ": " + plain(s));
        }
        if (stop) {
          close();
          return Status(Errc::closed, "stopping");
        }
        if (Clock::now() >= deadline) {
          close();
          return Status(Errc::timeout, "TLS with " + to.text() + ": handshake timed out");
        }
        const int ev = poll_one(fd_, want == TlsSession::Want::read ? POLLIN : POLLOUT, deadline);
        if (ev < 0) {
          close();
          return Status(Errc::io_error, "TLS with " + to.text() + ": poll: " + errno_text(errno));
        }
      }
    }
    ::close(fd);
    last = errno_text(err);
  }
  return Status(Errc::io_error, "connect " + to.text() + ": " + last);
}

bool Connection::drain_input() {
  if (tls_) return tls_->drain();
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) continue;  // a downstream that talks back: ignored
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }
}

Status Connection::write_all(std::string_view bytes, Clock::time_point deadline, const std::function<bool()>& give_up) {
  if (fd_ < 0) return Status(Errc::closed, "not connected");
  if (!drain_input()) return Status(Errc::closed, "the downstream closed the connection");
  while (!bytes.empty()) {
    short wait_for = POLLOUT;
    if (tls_) {
      std::size_t n = 0;
      TlsSession::Want want;
      if (Status s = tls_->write(bytes, n, want); !s.ok()) return s;
      if (n > 0) {
        bytes.remove_prefix(n);
        continue;
      }
      if (want == TlsSession::Want::read) wait_for = POLLIN;
    } else {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return Status(Errc::io_error, "write: " + errno_text(errno));
    }
    // The downstream is not reading fast enough: wait, but watch for it going away.
    for (;;) {
      if (give_up()) return Status(Errc::closed, "stopping");
      if (Clock::now() >= deadline) return Status(Errc::timeout, "write timed out: the downstream does not read");
      const int ev = poll_one(fd_, POLLOUT | POLLIN, deadline);
      if (ev < 0) return Status(Errc::io_error, "poll: " + errno_text(errno));
      if ((ev & POLLIN) && !drain_input()) return Status(Errc::closed, "the downstream closed the connection");
      if (ev & (POLLERR | POLLHUP)) return Status(Errc::io_error, "the connection failed");
      if (ev & wait_for) break;
    }
  }
  return Status();
}

bool Connection::still_open(Clock::time_point until, const std::function<bool()>& give_up) {
  if (fd_ < 0) return false;
  for (;;) {
    if (!drain_input()) return false;
    if (give_up() || Clock::now() >= until) return true;
    const int ev = poll_one(fd_, POLLIN, until);
    if (ev < 0) return false;
    if (ev & (POLLERR | POLLHUP)) return false;
  }
}

void Connection::close() noexcept {
  if (tls_) {
    tls_->shutdown();
    tls_.reset();
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// ---- Output ---------------------------------------------------------------------------

hopper::Result<std::unique_ptr<Output>> Output::open(const OutputConfig& config, std::shared_ptr<spdlog::logger> log,
                                                     std::shared_ptr<OutputCounters> counters) {
  std::shared_ptr<asio::ssl::context> tls;
  if (config.type == OutputType::tcp && config.tls.enabled) {
    auto ctx = make_client_context(config.tls, config.tls.origin);
    if (!ctx.ok()) return ctx.status();
    tls = std::move(*ctx);
  }
  hopper::Options o = config.queue;
  o.manual_commit = true;  // commit follows the socket, never the receive
  auto ch = hopper::channel<std::string>(o);
  if (!ch.ok())
    return Status(ch.status().code(), config.queue_origin + ": output \"" + config.name + "\" cannot open its queue: " +
                                          plain(ch.status()));
  if (!counters) counters = std::make_shared<OutputCounters>();
  std::unique_ptr<Output> out(new Output(config, log, std::move(*ch), std::move(counters)));
  out->tls_ = std::move(tls);
  if (config.type == OutputType::kafka) {
    auto k = KafkaEgress::create(config, out->counters, std::move(log));
    if (!k.ok()) return k.status();
    out->kafka_ = std::move(*k);
  }
  return out;
}

Output::Output(const OutputConfig& config, std::shared_ptr<spdlog::logger> log, hopper::Channel<std::string> ch,
               std::shared_ptr<OutputCounters> shared)
    : config_(config),
      log_(std::move(log)),
      counters_(std::move(shared)),
      counters(*counters_),
      sender_(std::move(ch.sender)),
      receiver_(std::move(ch.receiver)),
      rng_(std::random_device{}()) {
  const hopper::Stats s = receiver_.stats();
  backlog_.start(s.memory_items + s.disk_items, Clock::now());
  done_base_ = read(counters.delivered) + read(counters.rejected);
  if (s.items_recovered > 0 || s.corrupt_pages > 0 || s.torn_bytes > 0)
    log_->info("output {}: recovered {} lines from {} ({} damaged pages skipped, {} torn bytes cut)", config_.name,
               s.items_recovered, config_.queue.directory.string(), s.corrupt_pages, s.torn_bytes);
}

double Output::backlog_age_seconds(Clock::time_point now) {
  const hopper::Stats s = stats();
  const std::uint64_t done =
      read(counters.delivered) + read(counters.rejected) - done_base_ + s.items_dropped + s.corrupt_items;
  return backlog_.age(done, now);
}

Output::~Output() {
  request_stop(Clock::now());
  finish();
}

void Output::start() { thread_ = std::thread([this] { run(); }); }

void Output::request_stop(Clock::time_point hard_deadline) {
  hard_deadline_ = hard_deadline.time_since_epoch().count();
  {
    std::lock_guard lk(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
}

void Output::finish() {
  if (thread_.joinable()) thread_.join();
  sender_.close();
  receiver_.close();  // the last handle: the queue writes what it holds to disk
}

void Output::pause(std::chrono::milliseconds d) {
  std::unique_lock lk(stop_mu_);
  stop_cv_.wait_for(lk, d, [&] { return stop_.load(); });
}

std::chrono::milliseconds Output::next_backoff() {
  // Exponential, capped, with "equal jitter": half fixed, half random, so that many
  // hopperds that lost the same downstream do not come back in lockstep.
  backoff_ = backoff_.count() == 0 ? config_.backoff_initial : std::min(backoff_ * 2, config_.backoff_max);
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const auto half = backoff_.count() / 2;
  return std::chrono::milliseconds(half + static_cast<std::int64_t>(rng_ % static_cast<std::uint64_t>(half + 1)));
}

bool Output::collect(std::string& batch, std::uint64_t& lines, Clock::time_point& oldest) {
  std::string line;
  const bool aged = config_.queue.max_age.count() > 0;
  const std::uint64_t before_ms = aged ? receiver_.stats().oldest_item_age_ms : 0;  // the queue's oldest
  const Clock::time_point asked = Clock::now();
  Status s = receiver_.recv_for(line, std::chrono::milliseconds(100));
  if (s.code() == Errc::timeout) return false;
  if (s.code() == Errc::closed) {
    pause(std::chrono::milliseconds(100));  // senders gone: we are stopping
    return false;
  }
  if (!s.ok()) {
    bump(counters.receive_errors);
    log_->warn("output {}: reading its queue: {} (retrying)", config_.name, s.message());
    pause(std::chrono::milliseconds(500));
    return false;
  }
  if (aged) {
    // With max_age_ms, the batch is as old as its first line. (Timed from when it was taken
    // instead, a line that had waited almost max_age_ms in the queue could wait nearly as
    // long again in the batch, and be delivered.) The line now oldest in the queue came
    // after it: no older, so its age is the first line's at least. The queue's oldest
    // before the receive is the first line itself — unless that one was past max_age and
    // passed over: then the first line came after it, perhaps much later (fresh lines
    // behind expired ones), and is not taken for as old. Nothing older nor after: it
    // arrived during recv_for, or followed expired lines alone.
    const std::uint64_t after_ms = receiver_.stats().oldest_item_age_ms;
    const auto max_age_ms = static_cast<std::uint64_t>(config_.queue.max_age.count());
    if (after_ms > 0)
      oldest = Clock::now() - std::chrono::milliseconds(after_ms);
    else if (before_ms > 0 && before_ms <= max_age_ms)
      oldest = asked - std::chrono::milliseconds(before_ms);
    else
      oldest = Clock::now();
  }
  for (;;) {
    batch += line;
    batch += '\n';
    ++lines;
    if (batch.size() >= config_.batch_bytes) break;
    if (!receiver_.try_recv(line).ok()) break;  // send what there is now: no added latency
  }
  return true;
}

void Output::commit() {
  if (!uncommitted_) return;
  Status s = receiver_.commit();
  last_commit_ = Clock::now();
  if (s.ok()) {
    bump(counters.commits);
    uncommitted_ = false;
  } else {
    bump(counters.commit_errors);
    log_->error("output {}: cannot persist the delivery position: {}", config_.name, s.message());
  }
}

namespace {

// The replay window survives a restart in this file of the queue directory (the library
// leaves files that are not its own alone): lines written just before the downstream went
// away, and hopperd stopped before it came back, are written again first on the next start.
constexpr const char* kReplayFile = "hopperd-replay";

std::string read_replay_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  std::string bytes = s.str();
  // Only whole lines: a torn tail (crash while writing it) is cut.
  const auto last = bytes.rfind('\n');
  bytes.resize(last == std::string::npos ? 0 : last + 1);
  return bytes;
}

// Temporary name, fsync, rename, fsync of the directory: the old file or the new, whole.
Status write_replay_file(const std::filesystem::path& path, const std::string& bytes) {
  const std::string tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError("open", tmp, errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::IoError("write", tmp, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::IoError("fdatasync", tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::IoError("rename", tmp, errno);
  const int dfd = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return Status();
}

}  // namespace

void Output::run() {
  if (kafka_) {
    kafka_->run(receiver_, [this] { return stop_.load(); },
                [this] { return Clock::time_point(Clock::duration(hard_deadline_.load())); });
    return;
  }
  Connection conn;
  std::string batch;  // in flight: received, not yet written (resent until it is)
  std::uint64_t batch_lines = 0;
  Clock::time_point batch_oldest{};  // when the batch's first line was accepted (about)
  struct Written {
    std::string bytes;
    std::uint64_t lines;
  };
  std::deque<Written> replay;  // written recently: sent again after a reconnect
  std::uint64_t replay_size = 0;
  bool replay_due = false;
  const std::filesystem::path replay_path = config_.queue.directory / kReplayFile;
  if (std::string saved = read_replay_file(replay_path); !saved.empty()) {
    const auto lines = static_cast<std::uint64_t>(std::count(saved.begin(), saved.end(), '\n'));
    log_->info("output {}: {} lines written just before the last stop may not have reached the downstream; "
               "they are written again first", config_.name, lines);
    replay_size = saved.size();
    replay.push_back(Written{std::move(saved), lines});
    replay_due = true;
  }
  bool replay_on_disk = replay_due;
  std::uint64_t failures = 0;  // consecutive connect/write failures
  std::uint64_t since_commit = 0;
  // Lines written but not committed are held by the queue a second time (encoded, for a
  // restart), so they are committed after a sixteenth of the memory budget at the latest.
  const std::uint64_t commit_bytes = std::max<std::uint64_t>(config_.queue.max_memory_bytes / 16, 1);
  // A drained backlog leaves the heap it used free but mapped; it is given back (see
  // give_back_memory) once the queue is empty after holding at least this much.
  const std::uint64_t trim_after = 4 << 20;
  std::uint64_t peak_memory = 0;
  last_commit_ = Clock::now();
  // A write in progress when a stop is requested may finish until the hard deadline.
  const std::function<bool()> give_up = [this] {
    return stop_ && Clock::now().time_since_epoch().count() >= hard_deadline_.load();
  };

  auto fail = [&](const std::string& what, const Status& s) {
    conn.close();
    counters.connected.store(0, std::memory_order_relaxed);
    replay_due = true;
    ++failures;
    const auto wait = next_backoff();
    if (failures == 1 || failures % 20 == 0)
      log_->warn("output {}: {} {}: {} (attempt {}, next in {} ms; queued lines wait on disk)", config_.name, what,
                 config_.address.text(), plain(s), failures, wait.count());
    pause(wait);
  };

  while (!stop_) {
    if (batch.empty()) {
      if (uncommitted_ && (Clock::now() - last_commit_ >= config_.commit_interval || since_commit >= commit_bytes)) {
        commit();
        since_commit = 0;
      }
      if (!collect(batch, batch_lines, batch_oldest)) {
        commit();  // idle: persist the position now
        if (peak_memory >= trim_after) {
          const hopper::Stats st = receiver_.stats();
          if (st.memory_items == 0 && st.disk_items == 0) {
            give_back_memory();
            peak_memory = 0;
          }
        }
        continue;
      }
      peak_memory = std::max(peak_memory, receiver_.stats().memory_bytes);
      counters.in_flight.store(batch_lines, std::memory_order_relaxed);  // out of the queue, not yet written
    }
    if (config_.queue.max_age.count() > 0 && Clock::now() - batch_oldest > config_.queue.max_age) {
      // The downstream was away while this batch waited, and its first line is now past
      // max_age: the batch goes as the queue's own expired lines go (its later lines with
      // it: they were taken together, within batch_bytes). The position passes them at the
      // next commit.
      bump(counters.expired_held, batch_lines);
      bump(counters.expired_held_bytes, batch.size());
      log_->warn("output {}: {} lines taken from the queue waited past max_age_ms ({}) for the downstream; "
                 "not delivered", config_.name, batch_lines, config_.queue.max_age.count());
      uncommitted_ = true;
      batch.clear();
      batch_lines = 0;
      counters.in_flight.store(0, std::memory_order_relaxed);
      continue;
    }
    if (!conn.connected()) {
      Status s = conn.connect(config_.address, config_.connect_timeout, stop_, tls_.get(), config_.tls.server_name,
                              config_.tls.verify);
      if (!s.ok()) {
        if (s.code() == Errc::closed) break;
        bump(counters.connect_failures);
        fail("cannot connect to", s);
        continue;
      }
      bump(counters.connects);
      if (read(counters.connects) > 1) bump(counters.reconnects);
      counters.connected.store(1, std::memory_order_relaxed);
      if (failures > 0)
        log_->info("output {}: connected to {} after {} failed attempts", config_.name, config_.address.text(), failures);
      else
        log_->info("output {}: connected to {}", config_.name, config_.address.text());
    }
    const auto deadline = [&] { return Clock::now() + config_.write_timeout; };
    if (replay_due && !replay.empty()) {
      // Lines the old connection may have swallowed unread: in order, before the batch.
      std::uint64_t lines = 0;
      Status s;
      for (const Written& w : replay) {
        s = conn.write_all(w.bytes, deadline(), give_up);
        if (!s.ok()) break;
        lines += w.lines;
      }
      if (!s.ok()) {
        bump(counters.write_errors);
        fail("replaying to", s);
        continue;
      }
      bump(counters.replayed_lines, lines);
      log_->info("output {}: wrote the last {} lines again after reconnecting (replay window)", config_.name, lines);
    }
    replay_due = false;
    Status s = conn.write_all(batch, deadline(), give_up);
    // A young connection proves itself before anything written on it counts as delivered.
    if (s.ok() && Clock::now() - conn.since() < kSettle && !conn.still_open(conn.since() + kSettle, give_up))
      s = Status(Errc::closed, "the downstream closed the connection right after accepting it");
    if (!s.ok()) {
      if (give_up()) break;
      bump(counters.write_errors);
      fail("writing to", s);
      continue;
    }
    failures = 0;
    backoff_ = std::chrono::milliseconds(0);
    if (replay_on_disk) {  // what it held has been written again on a proven connection
      std::error_code ec;
      std::filesystem::remove(replay_path, ec);
      replay_on_disk = false;
    }
    bump(counters.delivered, batch_lines);
    bump(counters.bytes_written, batch.size());
    bump(counters.batches);
    since_commit += batch.size();
    uncommitted_ = true;
    if (batch.size() > config_.replay_bytes) {
      replay.clear();  // the window holds a contiguous run of lines or nothing
      replay_size = 0;
    } else {
      replay_size += batch.size();
      replay.push_back(Written{std::move(batch), batch_lines});
      while (replay_size > config_.replay_bytes) {
        replay_size -= replay.front().bytes.size();
        replay.pop_front();
      }
    }
    batch.clear();
    batch_lines = 0;
    counters.in_flight.store(0, std::memory_order_relaxed);
  }
  // Stopping. What was written is committed; an unwritten batch is not, so it comes back
  // on the next start (the queue keeps received-but-uncommitted lines).
  if (batch.empty()) commit();
  // Lines written since the downstream was last known to be reading may be lost with its
  // kernel buffers: keep them for the next start. A healthy connection is closed
  // normally instead, and the downstream reads to its end.
  const bool uncertain = replay_due || !conn.connected() || !conn.still_open(Clock::now(), give_up);
  if (uncertain && !replay.empty()) {
    std::string bytes;
    std::uint64_t lines = 0;
    for (const Written& w : replay) {
      bytes += w.bytes;
      lines += w.lines;
    }
    if (Status s = write_replay_file(replay_path, bytes); s.ok())
      log_->info("output {}: the downstream is away; the last {} lines written are kept to be written again "
                 "after the restart", config_.name, lines);
    else
      log_->error("output {}: cannot keep the replay window: {}", config_.name, s.message());
  } else if (replay_on_disk || (!uncertain && std::filesystem::exists(replay_path))) {
    std::error_code ec;
    std::filesystem::remove(replay_path, ec);
  }
  conn.close();
  counters.connected.store(0, std::memory_order_relaxed);
}

}  // namespace hopperd
