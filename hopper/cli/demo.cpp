// hopper demo: the spill-and-recover story in one process, in under a minute.
//
//   generator (25,000 lines/s) --> hopper queue (256 KiB memory, 64 MiB disk) --> downstream
//
// The downstream keeps up, then stalls, then goes away (and the relay restarts meanwhile:
// the queue is closed and reopened), then comes back. A live status line shows memory and
// disk use; the summary checks every sequence number: nothing lost, nothing out of order.
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <hopper/hopper.hpp>

#include "cli/commands.hpp"
#include "cli/output.hpp"

namespace hopper::cli {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

enum class Phase { flowing, stalled, gone, back, draining, done };

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::flowing: return "flowing";
    case Phase::stalled: return "STALLED";
    case Phase::gone: return "GONE";
    case Phase::back: return "back";
    case Phase::draining: return "draining";
    case Phase::done: return "done";
  }
  return "?";
}

constexpr std::uint64_t kRate = 25000;         // generated lines per second
constexpr std::uint64_t kStalledRate = 2500;   // what a stalled downstream still takes
constexpr std::uint64_t kMemory = 256 << 10;
constexpr std::uint64_t kDisk = 64 << 20;

std::string make_line(std::uint64_t seq) {
  char buf[96];
  const int n = std::snprintf(buf, sizeof buf, "demo.web%02llu.requests.count %llu %llu",
                              static_cast<unsigned long long>(seq % 16), static_cast<unsigned long long>(seq),
                              1700000000ull + seq / kRate);
  return std::string(buf, static_cast<std::size_t>(n));
}

// The sequence number a line carries (its value field).
std::optional<std::uint64_t> seq_of(const std::string& line) {
  const auto a = line.find(' ');
  const auto b = line.find(' ', a + 1);
  if (a == std::string::npos || b == std::string::npos) return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(line.data() + a + 1, line.data() + b, v);
  if (ec != std::errc() || p != line.data() + b) return std::nullopt;
  return v;
}

// The queue and its two handles, replaced as a whole when the relay "restarts". Guarded by
// `mu` during the swap; generator and downstream each use their handle from their own
// thread and hand it over (pause) before a swap.
struct Relay {
  std::mutex mu;
  std::optional<Channel<std::string>> ch;
};

// What the downstream saw. Written by the downstream thread, read by the status thread:
// each is an independent relaxed tally, read only for display.
struct Seen {
  std::atomic<std::uint64_t> delivered{0}, duplicates{0}, missing{0}, out_of_order{0};
};

// Highest occupancy seen, and spills counted before the restart. Main thread only.
struct Peaks {
  std::uint64_t memory = 0, disk = 0, spilled_before_restart = 0;
};

}  // namespace

int demo_command(const DemoOptions& options) {
  namespace fs = std::filesystem;
  const double speed = options.speed > 0 ? options.speed : 1.0;
  auto scaled = [&](double seconds) { return std::chrono::duration<double>(seconds / speed); };
  const auto t_stall = scaled(4), t_gone = scaled(9), t_restart = scaled(12), t_back = scaled(15), t_stop = scaled(18);
  std::ostream& status_out = options.json ? std::cerr : std::cout;
  const bool live = !options.plain && ::isatty(options.json ? STDERR_FILENO : STDOUT_FILENO);

  fs::path dir = options.dir;
  bool temporary = false;
  if (std::error_code ec; !dir.empty() && fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    // The checks count every line the demo sends: a queue left by something else would
    // deliver lines of its own first.
    std::cerr << "hopper demo: " << dir.string() << " is not empty; give a new or empty directory\n";
    return kError;
  }
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "hopper-demo-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "hopper demo: cannot create a temporary directory in " << fs::temp_directory_path() << "\n";
      return kError;
    }
    dir = tmpl;
    temporary = true;
  }
  struct Cleanup {
    fs::path dir;
    bool on;
    ~Cleanup() {
      std::error_code ec;
      if (on) fs::remove_all(dir, ec);
    }
  } cleanup{dir, temporary};

  Options o;
  o.directory = dir;
  o.max_memory_bytes = kMemory;
  o.max_disk_bytes = kDisk;
  o.segment_bytes = 1 << 20;
  o.page_bytes = 16 << 10;
  Relay relay;
  {
    auto ch = channel<std::string>(o);
    if (!ch.ok()) {
      std::cerr << "hopper demo: " << ch.status().message() << "\n";
      return kError;
    }
    relay.ch.emplace(std::move(*ch));
  }

  status_out << "hopper demo: a generator sends " << with_commas(kRate) << " telemetry lines/s through a hopper queue\n"
             << "  (memory budget " << human_bytes(kMemory) << ", disk budget " << human_bytes(kDisk) << ", in "
             << dir.string() << ") to a downstream that stalls, goes away, and comes back.\n\n";

  std::atomic<Phase> phase{Phase::flowing};
  std::atomic<bool> pause_generator{false};
  std::atomic<bool> generator_paused{false};
  std::atomic<std::uint64_t> sent{0};
  std::atomic<bool> generator_failed{false};
  Seen seen;
  const auto start = Clock::now();

  std::thread generator([&] {
    Sender<std::string>* s = &relay.ch->sender;
    std::uint64_t seq = 0;
    const auto stop_at = start + std::chrono::duration_cast<Clock::duration>(t_stop);
    while (Clock::now() < stop_at) {
      if (pause_generator) {
        generator_paused = true;
        while (pause_generator) std::this_thread::sleep_for(1ms);
        generator_paused = false;
        std::lock_guard lk(relay.mu);
        s = &relay.ch->sender;
      }
      // Keep to the rate: send what is due by now, then sleep a little.
      const auto elapsed = std::chrono::duration<double>(Clock::now() - start).count() * speed;
      const auto due = static_cast<std::uint64_t>(elapsed * kRate);
      while (seq < due) {
        if (!s->send(make_line(seq)).ok()) {
          generator_failed = true;
          return;
        }
        sent.store(++seq, std::memory_order_relaxed);
      }
      std::this_thread::sleep_for(2ms);
    }
    std::lock_guard lk(relay.mu);
    relay.ch->sender.close();
  });

  std::atomic<bool> downstream_paused{false};
  std::thread downstream([&] {
    std::uint64_t expect = 0;
    std::string line;
    Receiver<std::string>* r = &relay.ch->receiver;
    for (;;) {
      const Phase p = phase.load();
      if (p == Phase::gone) {
        downstream_paused = true;
        std::this_thread::sleep_for(5ms);
        continue;
      }
      if (downstream_paused) {
        std::lock_guard lk(relay.mu);  // the relay may have been restarted meanwhile
        r = &relay.ch->receiver;
        downstream_paused = false;
      }
      const int burst = p == Phase::stalled ? static_cast<int>(kStalledRate / 100) : 1 << 30;
      for (int i = 0; i < burst; ++i) {
        const Status st = r->recv_for(line, 20ms);
        if (st.code() == Errc::closed) return;
        if (!st.ok()) break;
        const auto q = seq_of(line);
        if (!q) {
          seen.missing.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        if (*q == expect) {
          ++expect;
        } else if (*q < expect) {
          seen.duplicates.fetch_add(1, std::memory_order_relaxed);
          continue;
        } else {
          seen.out_of_order.fetch_add(1, std::memory_order_relaxed);
          seen.missing.fetch_add(*q - expect, std::memory_order_relaxed);
          expect = *q + 1;
        }
        seen.delivered.fetch_add(1, std::memory_order_relaxed);
        if (phase.load() != p) break;
      }
      if (p == Phase::stalled) std::this_thread::sleep_for(10ms);  // kStalledRate lines/s
    }
  });

  Peaks peaks;
  std::uint64_t persisted = 0, recovered = 0;
  Stats st;
  auto sample = [&] {
    std::lock_guard lk(relay.mu);
    st = relay.ch->receiver.stats();
    peaks.memory = std::max(peaks.memory, st.memory_bytes);
    peaks.disk = std::max(peaks.disk, st.disk_bytes);
  };
  auto status_line = [&](double t) {
    const std::uint64_t s = sent.load(), d = seen.delivered.load();
    std::ostringstream line;
    const int filled = static_cast<int>(10 * st.memory_bytes / kMemory);
    line << std::fixed;
    line.precision(1);
    line << t << "s  " << phase_name(phase.load()) << std::string(9 - std::string(phase_name(phase.load())).size(), ' ')
         << "sent " << with_commas(s) << "  delivered " << with_commas(d) << "  backlog " << with_commas(s - std::min(s, d))
         << " | memory [" << std::string(filled, '#') << std::string(10 - filled, '.') << "] "
         << human_bytes(st.memory_bytes) << "  disk " << human_bytes(st.disk_bytes) << " ("
         << with_commas(st.disk_items) << " lines)  spilled " << with_commas(peaks.spilled_before_restart + st.items_spilled);
    return line.str();
  };
  auto narrate = [&](double t, const std::string& what) {
    if (live) status_out << "\r\033[K";
    std::ostringstream s;
    s << std::fixed;
    s.precision(1);
    s << "-> " << t << "s " << what << "\n";
    status_out << s.str();
  };

  bool restarted = false;
  double last_plain = -1;
  const auto drain_limit = start + std::chrono::duration_cast<Clock::duration>(t_stop) + 20s;
  for (;;) {
    std::this_thread::sleep_for(100ms);
    const auto now = Clock::now();
    const double t = std::chrono::duration<double>(now - start).count();
    const auto since = now - start;
    Phase p = phase.load();
    if (p == Phase::flowing && since >= t_stall) {
      phase = Phase::stalled;
      narrate(t, "the downstream stalls: it takes " + with_commas(kStalledRate) + " lines/s of " + with_commas(kRate) +
                     ". Memory fills to its budget, then pages spill to disk.");
    } else if (p == Phase::stalled && since >= t_gone) {
      phase = Phase::gone;
      narrate(t, "the downstream goes away. Nothing is delivered; every line goes to disk, in order.");
    } else if (p == Phase::gone && !restarted && since >= t_restart && downstream_paused) {
      // The relay restarts while its downstream is away: close (memory is written to
      // disk with the delivery position), reopen (recovered lines come first).
      pause_generator = true;
      while (!generator_paused) std::this_thread::sleep_for(1ms);
      {
        std::lock_guard lk(relay.mu);
        const Stats before = relay.ch->receiver.stats();
        persisted = before.memory_items + before.disk_items;
        peaks.spilled_before_restart = before.items_spilled;
        relay.ch.reset();
        auto ch = channel<std::string>(o);
        if (!ch.ok()) {
          std::cerr << "\nhopper demo: reopening the queue failed: " << ch.status().message() << "\n";
          std::_Exit(kError);
        }
        relay.ch.emplace(std::move(*ch));
        recovered = relay.ch->receiver.stats().items_recovered;
      }
      restarted = true;
      pause_generator = false;
      narrate(t, "the relay restarts: closed with " + with_commas(persisted) +
                     " lines queued (what was in memory is written to disk); reopened, " + with_commas(recovered) +
                     " recovered, to be delivered first.");
    } else if (p == Phase::gone && restarted && since >= t_back) {
      phase = Phase::back;
      narrate(t, "the downstream is back: the backlog drains from disk in order, then memory mode resumes.");
    } else if (p == Phase::back && since >= t_stop) {
      phase = Phase::draining;
      narrate(t, "the generator stops after " + with_commas(sent.load()) + " lines; draining what is left.");
    }
    sample();
    const std::string line = status_line(t);
    if (live) {
      status_out << "\r\033[K" << line << std::flush;
    } else if (t - last_plain >= 1.0) {
      status_out << line << "\n";
      last_plain = t;
    }
    if (phase.load() == Phase::draining && seen.delivered.load() + seen.duplicates.load() >= sent.load() &&
        st.memory_items == 0 && st.disk_items == 0)
      break;
    if (now > drain_limit || generator_failed) break;
  }
  generator.join();
  {
    // Every sender is closed: the downstream ends once all is read.
    std::lock_guard lk(relay.mu);
  }
  downstream.join();
  phase = Phase::done;
  if (live) status_out << "\r\033[K" << status_line(std::chrono::duration<double>(Clock::now() - start).count()) << "\n";
  const Stats last = relay.ch->receiver.stats();
  relay.ch.reset();

  const std::uint64_t s = sent.load(), d = seen.delivered.load();
  const std::uint64_t lost = s - std::min(s, d) + seen.missing.load();
  const bool ok = !generator_failed && lost == 0 && seen.out_of_order.load() == 0 && seen.duplicates.load() == 0 &&
                  d == s && peaks.memory <= kMemory && restarted;
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  const std::uint64_t spilled = peaks.spilled_before_restart + last.items_spilled;
  if (options.json) {
    const Json j = {{"sent", s},
                    {"delivered", d},
                    {"lost", lost},
                    {"duplicates", seen.duplicates.load()},
                    {"out_of_order", seen.out_of_order.load()},
                    {"spilled", spilled},
                    {"persisted_at_restart", persisted},
                    {"recovered_at_restart", recovered},
                    {"peak_memory_bytes", peaks.memory},
                    {"memory_budget_bytes", kMemory},
                    {"peak_disk_bytes", peaks.disk},
                    {"disk_budget_bytes", kDisk},
                    {"seconds", took},
                    {"ok", ok}};
    std::cout << j.dump() << "\n";
  } else {
    std::cout << "\nsummary (" << std::fixed;
    std::cout.precision(1);
    std::cout << took << " s)\n";
    std::cout << "  sent          " << with_commas(s) << " lines\n";
    std::cout << "  delivered     " << with_commas(d) << " lines: " << with_commas(lost) << " missing, "
              << with_commas(seen.duplicates.load()) << " duplicates, " << with_commas(seen.out_of_order.load())
              << " out of order (every sequence number checked)\n";
    std::cout << "  spilled       " << with_commas(spilled) << " lines went to disk while the downstream was slow or away\n";
    std::cout << "  restart       " << with_commas(persisted) << " queued lines persisted at close, " << with_commas(recovered)
              << " recovered on reopen\n";
    std::cout << "  peak memory   " << human_bytes(peaks.memory) << " of a " << human_bytes(kMemory) << " budget\n";
    std::cout << "  peak disk     " << human_bytes(peaks.disk) << " of a " << human_bytes(kDisk) << " budget\n";
    std::cout << "  result        "
              << (ok ? "OK: nothing lost, order kept, memory stayed within its budget"
                     : "FAILED: see the counts above")
              << "\n";
  }
  return ok ? kOk : kDamaged;
}

}  // namespace hopper::cli
