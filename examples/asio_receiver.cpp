// A receiver inside an asio event loop, through Receiver::wait_handle(): no thread of its own
// blocks in recv. Producers send from threads; the loop sleeps in epoll until the handle is
// readable, takes everything with try_recv, and waits again. A timer on the same loop shows
// that the loop stays free for other work meanwhile.
//
//   asio_receiver_example [directory]      (default: a fresh directory under /tmp)
//
// Prints how many items arrived, in order, and how often the loop woke for them.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include <hopper/hopper.hpp>

namespace {

constexpr int kProducers = 4;
constexpr int kPerProducer = 50000;

class LoopReceiver {
 public:
  LoopReceiver(asio::io_context& io, hopper::Receiver<std::string>& rx, int fd)
      : rx_(rx), handle_(io, fd), next_(kProducers, 0) {}
  // The descriptor is the queue's: asio must not close it.
  ~LoopReceiver() { handle_.release(); }

  void start() { wait(); }
  bool done() const { return done_; }
  long received() const { return received_; }
  long wakeups() const { return wakeups_; }
  const std::string& error() const { return error_; }

 private:
  void wait() {
    handle_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const asio::error_code& ec) {
      if (ec) {
        error_ = "wait: " + ec.message();
        return;
      }
      ++wakeups_;
      drain();
    });
  }

  // Everything there is, then wait again: the empty try_recv re-arms the handle.
  void drain() {
    std::string item;
    for (;;) {
      const hopper::Status s = rx_.try_recv(item);
      if (s.ok()) {
        check(item);
        continue;
      }
      if (s == hopper::Errc::empty) return wait();
      if (s == hopper::Errc::closed) {
        done_ = true;
        return;
      }
      error_ = s.message();  // io_error: a read waiting for its retry; a real loop would retry later
      return;
    }
  }

  void check(const std::string& item) {
    const auto colon = item.find(':');
    const int p = std::stoi(item.substr(0, colon));
    const long i = std::stol(item.substr(colon + 1));
    if (i != next_[static_cast<std::size_t>(p)]) error_ = "out of order: " + item;
    ++next_[static_cast<std::size_t>(p)];
    ++received_;
  }

  hopper::Receiver<std::string>& rx_;
  asio::posix::stream_descriptor handle_;
  std::vector<long> next_;
  long received_ = 0;
  long wakeups_ = 0;
  bool done_ = false;
  std::string error_;
};

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir;
  if (argc > 1) {
    dir = argv[1];
  } else {
    char tmpl[] = "/tmp/hopper-asio-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return 1;
    dir = tmpl;
  }
  hopper::Options o;
  o.directory = dir;
  o.max_memory_bytes = 64 << 10;  // small: most items spill to disk and come back
  o.page_bytes = 16 << 10;
  auto ch = hopper::channel<std::string>(o);
  if (!ch.ok()) {
    std::fprintf(stderr, "%s\n", ch.status().message().c_str());
    return 1;
  }
  auto& tx = ch->sender;
  auto& rx = ch->receiver;
  auto fd = rx.wait_handle();
  if (!fd.ok()) {
    std::fprintf(stderr, "%s\n", fd.status().message().c_str());
    return 1;
  }

  asio::io_context io;
  LoopReceiver receiver(io, rx, *fd);
  receiver.start();
  long ticks = 0;
  asio::steady_timer timer(io);
  std::function<void()> tick = [&] {
    timer.expires_after(std::chrono::milliseconds(5));
    timer.async_wait([&](const asio::error_code& ec) {
      if (ec || receiver.done() || !receiver.error().empty()) return;
      ++ticks;
      tick();
    });
  };
  tick();

  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([s = tx, p]() mutable {
      for (long i = 0; i < kPerProducer; ++i)
        if (!s.send(std::to_string(p) + ":" + std::to_string(i) + ":cpu.load 0.42").ok()) return;
    });
  }
  tx.close();
  io.run();
  for (auto& t : producers) t.join();

  const long want = long{kProducers} * kPerProducer;
  std::printf("received %ld of %ld items in order, %ld wake-ups of the loop, %ld timer ticks meanwhile, %llu spilled\n",
              receiver.received(), want, receiver.wakeups(), ticks,
              static_cast<unsigned long long>(rx.stats().items_spilled));
  if (!receiver.error().empty()) std::fprintf(stderr, "error: %s\n", receiver.error().c_str());
  rx.close();
  if (argc <= 1) std::filesystem::remove_all(dir);
  return receiver.done() && receiver.error().empty() && receiver.received() == want ? 0 : 1;
}
