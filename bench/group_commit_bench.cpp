// group_commit_bench: what SyncPolicy::always costs, and what group commit buys.
//
// For 1, 4 and 16 producer threads it sends --items small items (64 bytes) through a queue
// with SyncPolicy::always (each send returns once its item is fdatasync'ed) and reports the
// items per second and the fdatasyncs per item. The baseline is the naive durable log: a
// loop of write(64 bytes) + fdatasync on one file. Each configuration runs --runs times,
// interleaved with the others so that they share the disk's mood; the table shows medians.
//
//   group_commit_bench [--items N] [--runs R] [--dir PATH] [--smoke]
//
// --smoke (= --items 200 --runs 1) proves it runs; the figures then mean little. Every
// run reads its items back afterwards (untimed) and stops with an error unless all of
// them arrive, each producer's in order.
//
// PATH (default: ./group-commit-bench-<pid>) must be on a real disk: on tmpfs fdatasync
// costs nothing and the comparison means nothing (the program says so and stops).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <hopper/hopper.hpp>

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kItemBytes = 64;

struct Run {
  double items_per_second = 0;
  double syncs_per_item = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "group_commit_bench: %s\n", what.c_str());
  std::exit(1);
}

// A kItemBytes item naming its producer and index.
std::string item(unsigned producer, std::uint64_t index) {
  std::string s = std::to_string(producer) + ":" + std::to_string(index) + ":";
  s.resize(kItemBytes, '.');
  return s;
}

// The baseline: one write and one fdatasync per item, as a naive durable log does.
Run fdatasync_per_item(const fs::path& dir, std::uint64_t items) {
  const fs::path file = dir / "baseline.log";
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) die("open " + file.native() + ": " + std::strerror(errno));
  const std::string item(kItemBytes, 'x');
  const auto start = Clock::now();
  for (std::uint64_t i = 0; i < items; ++i) {
    if (::write(fd, item.data(), item.size()) != static_cast<ssize_t>(item.size()))
      die("write " + file.native() + ": " + std::strerror(errno));
    if (::fdatasync(fd) != 0) die("fdatasync " + file.native() + ": " + std::strerror(errno));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  fs::remove(file);
  return Run{static_cast<double>(items) / seconds, 1.0};
}

// `producers` threads share `items` sends through one queue with SyncPolicy::always.
Run group_commit(const fs::path& dir, std::uint64_t items, unsigned producers) {
  const fs::path qdir = dir / ("queue-" + std::to_string(producers));
  fs::remove_all(qdir);
  hopper::Options o;
  o.directory = qdir;
  o.sync = hopper::SyncPolicy::always;
  o.max_memory_bytes = 1 << 20;
  o.max_disk_bytes = 1ull << 30;
  o.segment_bytes = 64 << 20;
  auto ch = hopper::channel<std::string>(o);
  if (!ch.ok()) die(ch.status().message());
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  const std::uint64_t each = items / producers;
  for (unsigned p = 0; p < producers; ++p) {
    threads.emplace_back([&, p, s = ch->sender]() mutable {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (std::uint64_t i = 0; i < each; ++i) {
        hopper::Status st = s.send(item(p, i));
        if (!st.ok()) die("send: " + st.message());
      }
    });
  }
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const hopper::Stats st = ch->receiver.stats();
  const std::uint64_t sent = each * producers;
  ch->sender.close();
  // Not timed: every item arrives, each producer's in order, or the run does not count.
  std::vector<std::uint64_t> next(producers, 0);
  std::string got;
  std::uint64_t received = 0;
  hopper::Status rs;
  while ((rs = ch->receiver.recv(got)).ok()) {
    unsigned p = 0;
    unsigned long long i = 0;
    if (std::sscanf(got.c_str(), "%u:%llu:", &p, &i) != 2 || p >= producers || i != next[p] || got != item(p, i))
      die("received \"" + got + "\" out of order or garbled");
    ++next[p];
    ++received;
  }
  if (rs.code() != hopper::Errc::closed) die("recv: " + rs.message());
  if (received != sent) die("sent " + std::to_string(sent) + " items, received " + std::to_string(received));
  ch->receiver.close();  // the last handle: the queue shuts down here, before its directory goes
  const Run r{static_cast<double>(sent) / seconds, static_cast<double>(st.syncs) / static_cast<double>(sent)};
  fs::remove_all(qdir);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t items = 5000;
  int runs = 5;
  fs::path dir = fs::current_path() / ("group-commit-bench-" + std::to_string(::getpid()));
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--items" && i + 1 < argc) {
      items = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (a == "--smoke") {
      items = 200;
      runs = 1;
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--items N] [--runs R] [--dir PATH] [--smoke]\n", argv[0]);
      return 2;
    }
  }
  if (items < 16 || runs < 1) die("--items must be at least 16 and --runs at least 1");
  fs::create_directories(dir);
  struct statfs sfs {};
  if (::statfs(dir.c_str(), &sfs) != 0) die("statfs " + dir.native() + ": " + std::strerror(errno));
  if (sfs.f_type == TMPFS_MAGIC) die(dir.native() + " is on tmpfs, where fdatasync is free; use --dir on a real disk");

  const unsigned producer_counts[] = {1, 4, 16};
  std::vector<double> base;
  std::vector<std::vector<double>> rate(3), syncs(3);
  for (int r = 0; r < runs; ++r) {
    base.push_back(fdatasync_per_item(dir, items).items_per_second);
    for (int k = 0; k < 3; ++k) {
      const Run g = group_commit(dir, items, producer_counts[k]);
      rate[k].push_back(g.items_per_second);
      syncs[k].push_back(g.syncs_per_item);
    }
  }
  fs::remove_all(dir);

  const double b = median(base);
  std::printf("group commit: %llu items of %zu bytes per run, median of %d runs, in %s\n",
              static_cast<unsigned long long>(items), kItemBytes, runs, dir.parent_path().c_str());
  std::printf("%-34s %14s %16s %10s\n", "configuration", "items/s", "fdatasyncs/item", "vs base");
  std::printf("%-34s %14.0f %16.3f %9.2fx\n", "write+fdatasync per item (base)", b, 1.0, 1.0);
  for (int k = 0; k < 3; ++k) {
    const std::string name = "hopper always, " + std::to_string(producer_counts[k]) + " producer" +
                             (producer_counts[k] == 1 ? "" : "s");
    const double m = median(rate[k]);
    std::printf("%-34s %14.0f %16.3f %9.2fx\n", name.c_str(), m, median(syncs[k]), m / b);
  }
  return 0;
}
