// cpu_at_rate: what receiving costs in CPU when the senders are slower than the receiver —
// the usual state of a telemetry agent's queue, where throughput benchmarks say nothing.
//
// One producer sends u64 items at a fixed rate (in bursts of --burst, sleeping between
// them) for --seconds; one receiver takes them as they come. For each rate it reports the
// CPU time (user + system, per thread, getrusage RUSAGE_THREAD) of the receiver and of the
// producer as a share of one core, and their sum per item, for hopper's recv(), hopper's
// recv_many(256) and the mutex+condvar+deque queue of bench/classic_queue.hpp (same byte
// capacity). Rates alternate between contenders, --runs times; the table shows medians.
//
//   hopper_cpu_at_rate [--seconds S] [--runs R] [--burst B] [--rates 10000,100000,...]
//                      [--contenders "hopper recv,mutex+condvar+deque"] [--dir PATH] [--smoke]
//                      [--slow-receiver] [--budget BYTES]
//
// --slow-receiver turns it round: the receiver takes items at the rate (sleeping between
// them) and the producer sends as fast as the queue takes them, so it waits for room for
// every item once the memory budget (--budget, default 1 MiB; 4096 makes room for 512 u64
// items) is full: what a sender waiting for room costs when downstream is slow.
//
// --contenders keeps only the named ones (for a profile of one: perf stat, perf record).
//
// --smoke (= --seconds 0.2 --runs 1) proves it runs. Every run checks that each item
// arrives once, in order, and stops with an error otherwise.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "classic_queue.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "hopper_cpu_at_rate: %s\n", what.c_str());
  std::exit(1);
}

double thread_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Shape {
  double rate = 0;  // items per second
  int burst = 1;
  double seconds = 1;
  bool slow_receiver = false;  // the receiver keeps to the rate; the producer sends at once
  std::uint64_t budget = 1 << 20;
};

struct Cost {
  double receiver = 0;  // share of one core
  double producer = 0;
  double ns_per_item = 0;  // receiver + producer CPU per item
};

// Sends `shape` through `send(v)` on a thread of its own while the caller receives with
// `recv(v)` (false at the end, after close() was called by the producer). Checks order.
template <class Send, class Close, class Recv>
Cost run(const Shape& shape, Send send, Close close, Recv recv) {
  const auto n = static_cast<std::uint64_t>(shape.rate * shape.seconds);
  double producer_cpu = 0;
  const Clock::time_point start = Clock::now();
  auto due = [&](std::uint64_t i) {  // when item i is due at the rate
    return start + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(static_cast<double>(i) / shape.rate));
  };
  std::thread producer([&] {
    const double cpu0 = thread_cpu_seconds();
    for (std::uint64_t i = 0; i < n;) {
      for (int b = 0; b < shape.burst && i < n; ++b, ++i) send(i);
      if (!shape.slow_receiver) std::this_thread::sleep_until(due(i));
    }
    producer_cpu = thread_cpu_seconds() - cpu0;
    close();
  });
  const double cpu0 = thread_cpu_seconds();
  std::uint64_t expected = 0;
  std::uint64_t v = 0;
  for (;;) {
    if (shape.slow_receiver && expected % shape.burst == 0) std::this_thread::sleep_until(due(expected));
    if (!recv(v)) break;
    if (v != expected) die("item " + std::to_string(v) + " arrived, expected " + std::to_string(expected));
    ++expected;
  }
  const double receiver_cpu = thread_cpu_seconds() - cpu0;
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  producer.join();
  if (expected != n) die(std::to_string(expected) + " of " + std::to_string(n) + " items arrived");
  return {receiver_cpu / wall, producer_cpu / wall, 1e9 * (receiver_cpu + producer_cpu) / static_cast<double>(n)};
}

Cost run_hopper(const Shape& shape, const fs::path& dir, bool many, bool lane = false) {
  // The lane (docs/architecture.md), off by default: on for this queue only.
  struct LaneChoice {
    bool was;
    explicit LaneChoice(bool on) : was(hopper::detail::lane_by_default().exchange(on)) {}
    ~LaneChoice() { hopper::detail::lane_by_default() = was; }
  } choice(lane);
  hopper::Options o;
  o.directory = dir;
  o.max_memory_bytes = shape.budget;
  o.max_disk_bytes = 0;
  auto ch = hopper::channel<std::uint64_t>(o);
  if (!ch.ok()) die("channel: " + ch.status().message());
  hopper::Sender<std::uint64_t> sender = std::move(ch->sender);
  hopper::Receiver<std::uint64_t>& receiver = ch->receiver;
  std::vector<std::uint64_t> buffer;
  std::size_t pos = 0;
  Cost c = run(
      shape,
      [&](std::uint64_t i) {
        if (hopper::Status s = sender.send(std::uint64_t{i}); !s.ok()) die("send: " + s.message());
      },
      [&] { sender.close(); },
      [&](std::uint64_t& v) {
        if (!many) return receiver.recv(v).ok();
        if (pos == buffer.size()) {
          buffer.clear();
          pos = 0;
          if (!receiver.recv_many(buffer, 256).ok()) return false;
        }
        v = buffer[pos++];
        return true;
      });
  return c;
}

Cost run_classic(const Shape& shape) {
  hopper::bench::ClassicQueue<std::uint64_t> q(shape.budget);
  q.open_producer();
  return run(
      shape, [&](std::uint64_t i) { q.push(std::uint64_t{i}); }, [&] { q.close_producer(); },
      [&](std::uint64_t& v) { return q.pop(v); });
}

// The comma-separated words of `list` ("a,b" -> a, b; "" -> one empty word).
std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at <= list.size();) {
    const std::size_t comma = std::min(list.find(',', at), list.size());
    out.push_back(list.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

std::vector<double> parse_rates(const std::string& list) {
  std::vector<double> out;
  for (const std::string& word : split_commas(list)) {
    char* end = nullptr;
    const double r = std::strtod(word.c_str(), &end);
    if (word.empty() || *end != '\0' || r <= 0) die("--rates: expected positive numbers separated by commas, got \"" + list + "\"");
    out.push_back(r);
  }
  return out;
}

double number(const char* option, const char* text) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (*end != '\0' || v <= 0) die(std::string(option) + ": expected a positive number, got \"" + text + "\"");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  int runs = 3;
  int burst = 1;
  bool slow_receiver = false;
  std::uint64_t budget = 1 << 20;
  std::vector<double> rates{10e3, 100e3, 300e3, 1e6};
  fs::path dir = fs::temp_directory_path() / ("hopper-cpu-at-rate-" + std::to_string(getpid()));
  std::string only;  // comma-separated contender names; empty: all
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--seconds") {
      seconds = number("--seconds", value());
    } else if (a == "--runs") {
      runs = static_cast<int>(number("--runs", value()));
    } else if (a == "--burst") {
      burst = static_cast<int>(number("--burst", value()));
    } else if (a == "--rates") {
      rates = parse_rates(value());
    } else if (a == "--contenders") {
      only = value();
    } else if (a == "--dir") {
      dir = value();
    } else if (a == "--slow-receiver") {
      slow_receiver = true;
    } else if (a == "--budget") {
      const double b = number("--budget", value());
      if (b < 64 || b > 1e15) die("--budget: expected bytes between 64 and 10^15");
      budget = static_cast<std::uint64_t>(b);
    } else if (a == "--smoke") {
      seconds = 0.2;
      runs = 1;
    } else {
      die("unknown option " + a + " (see the comment at the top of bench/cpu_at_rate.cpp)");
    }
  }
  if (runs < 1 || burst < 1) die("--runs and --burst must be at least 1");

  struct Contender {
    const char* name;
    std::function<Cost(const Shape&)> run;
  };
  int round = 0;
  std::vector<Contender> contenders{
      {"hopper recv", [&](const Shape& s) { return run_hopper(s, dir / ("q" + std::to_string(round++)), false); }},
      {"hopper recv_many", [&](const Shape& s) { return run_hopper(s, dir / ("q" + std::to_string(round++)), true); }},
      {"hopper lane recv", [&](const Shape& s) { return run_hopper(s, dir / ("q" + std::to_string(round++)), false, true); }},
      {"hopper lane recv_many",
       [&](const Shape& s) { return run_hopper(s, dir / ("q" + std::to_string(round++)), true, true); }},
      {"mutex+condvar+deque", [&](const Shape& s) { return run_classic(s); }},
  };
  if (!only.empty()) {
    std::vector<Contender> chosen;
    for (const std::string& name : split_commas(only)) {
      auto it = std::find_if(contenders.begin(), contenders.end(), [&](const Contender& c) { return name == c.name; });
      if (it == contenders.end()) die("--contenders: no contender named \"" + name + "\"");
      chosen.push_back(*it);
    }
    contenders = chosen;
  }
  std::printf("hopper_cpu_at_rate: 1 producer, 1 receiver, u64, bursts of %d, %.1f s per run, %d runs (medians)%s, "
              "budget %llu bytes\n",
              burst, seconds, runs, slow_receiver ? ", the receiver at the rate (--slow-receiver)" : "",
              static_cast<unsigned long long>(budget));
  std::printf("%12s  %-20s %10s %10s %14s\n", "items/s", "contender", "receiver", "producer", "CPU ns/item");
  // Issue 13's target: hopper's CPU per item (the default path, either receive call) at most
  // the classic queue's, as the median of the ratios of runs side by side.
  struct Verdict {
    double rate;
    const char* name;
    double ratio, lo, hi;
  };
  std::vector<Verdict> verdicts;
  for (double rate : rates) {
    const Shape shape{rate, burst, seconds, slow_receiver, budget};
    std::map<std::string, std::vector<Cost>> costs;
    for (int r = 0; r < runs; ++r)
      for (std::size_t k = 0; k < contenders.size(); ++k) {
        const Contender& c = contenders[(k + static_cast<std::size_t>(r)) % contenders.size()];
        costs[c.name].push_back(c.run(shape));
      }
    for (const Contender& c : contenders) {
      std::vector<double> rx, px, ns;
      for (const Cost& x : costs[c.name]) {
        rx.push_back(x.receiver);
        px.push_back(x.producer);
        ns.push_back(x.ns_per_item);
      }
      std::printf("%12.0f  %-20s %9.1f%% %9.1f%% %14.0f\n", rate, c.name, 100 * median(rx), 100 * median(px), median(ns));
    }
    const std::vector<Cost>& classic = costs["mutex+condvar+deque"];
    for (const char* name : {"hopper recv", "hopper recv_many"}) {
      if (costs[name].size() != classic.size()) continue;  // one of the two not chosen
      std::vector<double> ratios;
      for (std::size_t r = 0; r < classic.size(); ++r)
        if (classic[r].ns_per_item > 0) ratios.push_back(costs[name][r].ns_per_item / classic[r].ns_per_item);
      if (ratios.empty()) continue;
      verdicts.push_back({rate, name, median(ratios), *std::min_element(ratios.begin(), ratios.end()),
                          *std::max_element(ratios.begin(), ratios.end())});
    }
  }
  // Issue 13's target is the shape where the sender is the slow one; the other way round
  // the ratios are printed for comparison only.
  if (slow_receiver)
    std::printf("\nthe receiver at the rate: not a target, for comparison (median of the same-run ratios of CPU per "
                "item, hopper / mutex+condvar+deque):\n");
  else
    std::printf("\ntargets (median of the same-run ratios of CPU per item, hopper / mutex+condvar+deque):\n");
  for (const Verdict& v : verdicts)
    std::printf("  %-6s %8.0f items/s  %-18s <= 1.0x the classic queue's CPU per item   %.2fx (%.2f-%.2f)\n",
                slow_receiver ? "n/a" : v.ratio <= 1.0 ? "MET" : "MISSED", v.rate, v.name, v.ratio, v.lo, v.hi);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
