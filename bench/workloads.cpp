#include "workloads.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>

#include <hopper/hopper.hpp>

#include "contenders.hpp"
#include "measure.hpp"
#include "mpsc_run.hpp"
#ifdef HOPPER_BENCH_ROCKSDB
#include "rocksdb_fifo.hpp"
#endif

namespace hopper::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr std::uint64_t kMemoryBudget = 1 << 20;  // memory and seed-less workloads: 1 MiB
constexpr std::uint64_t kSpillMemory = 4 << 10;   // "tiny": about 14 lines
constexpr std::uint32_t kPage = 64 << 10;

// Runs `body` and adds what it cost the process: CPU seconds, peak RSS growth, open files.
template <class Body>
Sample measured(Body&& body) {
  trim_heap();
  const bool peak_ok = reset_peak_rss();
  const std::uint64_t rss0 = rss_bytes();
  const int files0 = open_files();
  const double cpu0 = process_cpu_seconds();
  const double machine0 = machine_cpu_seconds();
  const Clock::time_point t0 = Clock::now();
  Sample s;
  {
    FileCountSampler files;
    try {
      s = body();
    } catch (const std::exception& e) {
      s.error = e.what();
    }
    s.extra["open_files_growth"] = files.stop() - files0;
  }
  const double cpu = process_cpu_seconds() - cpu0;
  s.extra["cpu_s"] = cpu;
  // What other processes kept busy meanwhile, in cores: the noise this run suffered.
  s.extra["others_busy_cores"] = others_cores(machine_cpu_seconds() - machine0, cpu, seconds_since(t0));
  if (peak_ok && !s.extra.count("peak_rss_growth_mib"))
    s.extra["peak_rss_growth_mib"] = (double(peak_rss_bytes()) - double(rss0)) / kMiB;
  return s;
}

template <class T>
ItemSource<T> source_for(const Settings& st) {
  if constexpr (std::is_same_v<T, std::string>) {
    return ItemSource<std::string>{st.pool};
  } else {
    return ItemSource<std::uint64_t>{};
  }
}

template <class T>
Sample from_times(const MpscTimes& t, std::uint64_t items, double seconds) {
  Sample s;
  s.error = t.error;
  s.items_per_s = items / seconds;
  s.mb_per_s = items * double(ItemSource<T>::kRawBytes) / seconds / 1e6;
  s.extra["send_s"] = t.send_seconds;
  s.extra["total_s"] = t.total_seconds;
  s.extra["end_to_end_items_per_s"] = items / t.total_seconds;
  return s;
}

std::uint64_t rounded(const Workload& w) { return w.items / w.producers * w.producers; }

std::chrono::milliseconds g_max_age{0};  // --max-age-ms: Options::max_age of every hopper queue

Options memory_options(const std::filesystem::path& dir) {
  Options o;
  o.directory = dir;
  o.max_age = g_max_age;
  o.max_memory_bytes = kMemoryBudget;
  o.max_disk_bytes = 0;  // a plain bounded in-memory queue: nothing can spill
  return o;
}

Options spill_options(const std::filesystem::path& dir) {
  Options o;
  o.directory = dir;
  o.max_age = g_max_age;
  o.max_memory_bytes = kSpillMemory;
  o.max_disk_bytes = 8ull << 30;
  o.page_bytes = kPage;
  o.compression_level = 1;
  return o;
}

// ---- in-memory and spill workloads ----------------------------------------------------

// batch: items per receive call (1 = recv(), else recv_many()).
template <class T>
Sample hopper_run(const Workload& w, const Settings& st, std::size_t batch, std::uint32_t helpers = 0) {
  ScratchDir dir(st.scratch, "hopper");
  const bool spill = w.kind == Kind::spill || w.kind == Kind::durable;
  Options o = spill ? spill_options(dir.path()) : memory_options(dir.path());
  if (w.kind == Kind::durable) o.sync = SyncPolicy::always;
  if (w.memory_budget > 0) o.max_memory_bytes = w.memory_budget;
  o.compression_threads = helpers;
  HopperContender<T> q(o, batch, w.kind == Kind::matrix ? w.receive : Receive::many);
  const MpscShape shape{w.producers, w.items, w.kind == Kind::spill ? st.pace : 0};
  const MpscTimes t = run_mpsc(q, shape, source_for<T>(st));
  const std::uint64_t n = rounded(w);
  // Spill: the rate at which the producers got rid of their items while the receiver
  // lagged (durable: while every send waited for its sync). In memory: items until the
  // last one was received.
  Sample s = from_times<T>(t, n, spill ? t.send_seconds : t.total_seconds);
  const Stats stats = q.stats();
  s.extra["spilled_fraction"] = stats.items_sent ? double(stats.items_spilled) / stats.items_sent : 0;
  if (spill) {
    s.extra["pages_written"] = double(stats.pages_written);
    s.extra["disk_vs_raw"] = double(stats.bytes_compressed) / (n * double(ItemSource<T>::kRawBytes));
  }
  return s;
}

template <class T>
Sample classic_run(const Workload& w, const Settings& st) {
  ClassicContender<T> q(w.memory_budget > 0 ? w.memory_budget : kMemoryBudget);
  const MpscTimes t = run_mpsc(q, MpscShape{w.producers, w.items, 0}, source_for<T>(st));
  return from_times<T>(t, rounded(w), t.total_seconds);
}

template <class T, bool kAdmitFirst>
Sample ticket_ring_run(const Workload& w, const Settings& st) {
  TicketRingContender<T, kAdmitFirst> q(w.memory_budget > 0 ? w.memory_budget : kMemoryBudget);
  const MpscTimes t = run_mpsc(q, MpscShape{w.producers, w.items, 0}, source_for<T>(st));
  return from_times<T>(t, rounded(w), t.total_seconds);
}

template <class T>
Sample moodycamel_run(const Workload& w, const Settings& st) {
  MoodycamelContender<T> q;
  const MpscTimes t = run_mpsc(q, MpscShape{w.producers, w.items, 0}, source_for<T>(st));
  return from_times<T>(t, rounded(w), t.total_seconds);
}

#ifdef HOPPER_BENCH_ROCKSDB
template <class T>
Sample rocks_run(const Workload& w, const Settings& st) {
  ScratchDir dir(st.scratch, "rocksdb");
  const bool durable = w.kind == Kind::durable;
  RocksContender<T> q(dir.path(), durable);
  const MpscTimes t = run_mpsc(q, MpscShape{w.producers, w.items, durable ? 0 : st.pace}, source_for<T>(st));
  return from_times<T>(t, rounded(w), t.send_seconds);
}
#endif

// The same bytes the items carry, compressed by one thread in page-sized chunks.
template <class T>
Sample zstd_run(const Workload& w, const Settings& st) {
  static const std::string u64_pool = [] {
    std::string b;
    const ItemSource<std::uint64_t> src;
    for (std::uint64_t i = 0; i < (1u << 18); ++i) {
      const std::uint64_t v = src.make(0, i);
      b.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    return b;
  }();
  const std::string_view pool = std::is_same_v<T, std::string> ? st.pool->bytes() : std::string_view(u64_pool);
  const std::uint64_t n = rounded(w);
  std::uint64_t compressed = 0;
  const double secs = zstd_limit_seconds(pool, n * ItemSource<T>::kRawBytes, kPage, 1, compressed);
  Sample s;
  s.items_per_s = n / secs;
  s.mb_per_s = n * double(ItemSource<T>::kRawBytes) / secs / 1e6;
  s.extra["disk_vs_raw"] = double(compressed) / (n * double(ItemSource<T>::kRawBytes));
  return s;
}

// ---- the seed's shape -----------------------------------------------------------------

// The Rust seed's criterion benchmark: per iteration a fresh queue, 4 senders of 2,048
// u64 each, 4,096 u64 of memory, 32,768 u64 per disk file. Reports items/s over the
// transfers, and with the open and close of each queue included.
template <class Make>
Sample seed_runs(const Workload& w, const Settings& st, Make make) {
  double transfer = 0;
  const Clock::time_point t0 = Clock::now();
  std::string error;
  for (int it = 0; it < st.seed_iterations && error.empty(); ++it) {
    ScratchDir dir(st.scratch, "seed");
    auto q = make(dir.path());
    const MpscTimes t = run_mpsc(*q, MpscShape{w.producers, w.items, 0}, ItemSource<std::uint64_t>{});
    transfer += t.total_seconds;
    error = t.error;
  }
  const double wall = seconds_since(t0);
  const double n = double(rounded(w)) * st.seed_iterations;
  Sample s;
  s.error = error;
  s.items_per_s = n / transfer;
  s.mb_per_s = n * 8 / transfer / 1e6;
  s.extra["with_open_close_items_per_s"] = n / wall;
  return s;
}

// ---- the backlog ----------------------------------------------------------------------

// How one contender writes a backlog, closes, reopens and reads it back.
struct BacklogSteps {
  std::function<void()> open_writer;
  std::function<void(std::string&&)> send;
  std::function<void()> close_writer;
  std::function<void()> reopen;
  std::function<void(std::string&)> recv;
  std::function<void()> close_reader;
};

// Every file under `dir` out of the page cache: synced first (dirty pages are not dropped),
// then dropped. Throws when a file cannot be opened or synced (the figure would be warm).
void evict_page_cache(const std::filesystem::path& dir) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("evicting " + e.path().string() + ": " + std::strerror(errno));
    const bool ok = ::fdatasync(fd) == 0 && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok) throw std::runtime_error("evicting " + e.path().string() + ": " + std::strerror(err));
  }
}

// One producer writes w.items lines with nobody reading; everything is closed; the queue is
// reopened (cold: its files out of the page cache first), the first item timed, and the
// backlog drained. The timeline of the write
// (items, seconds, RSS) goes to `series`.
Sample backlog_run(const Workload& w, const Settings& st, Json* series, const std::string& who,
                   const std::filesystem::path& dir, BacklogSteps steps) {
  const std::uint64_t n = w.items;
  const ItemSource<std::string> src{st.pool};
  const std::uint64_t rss0 = rss_bytes();
  const std::uint64_t step = std::max<std::uint64_t>(1, n / 64);
  Json timeline;
  Sample s;

  const Clock::time_point t0 = Clock::now();
  steps.open_writer();
  for (std::uint64_t i = 0; i < n; ++i) {
    steps.send(src.make(0, i));
    if ((i + 1) % step == 0 || i + 1 == n) {
      timeline.push_back(Json::array({Json(i + 1), Json(seconds_since(t0)), Json(double(rss_bytes()) / kMiB)}));
      if (st.progress) st.progress(who + " writing", double(i + 1) / n);
    }
  }
  const double send_s = seconds_since(t0);
  steps.close_writer();
  const double write_s = seconds_since(t0);
  const double write_peak = (double(peak_rss_bytes()) - double(rss0)) / kMiB;
  const std::uint64_t disk = directory_bytes(dir);

  if (st.cold_reopen) evict_page_cache(dir);
  trim_heap();
  const bool peak_ok = reset_peak_rss();
  const std::uint64_t rss1 = rss_bytes();
  const Clock::time_point t1 = Clock::now();
  steps.reopen();
  const double open_s = seconds_since(t1);
  std::string line;
  ReceiveCheck<std::string> check(1);
  steps.recv(line);
  check(line);
  const double first_s = seconds_since(t1);
  const Clock::time_point t2 = Clock::now();
  for (std::uint64_t i = 1; i < n; ++i) {
    steps.recv(line);
    check(line);
    if (st.progress && (i + 1) % step == 0) st.progress(who + " draining", double(i + 1) / n);
  }
  const double drain_s = seconds_since(t2);
  steps.close_reader();
  const double read_peak = peak_ok ? (double(peak_rss_bytes()) - double(rss1)) / kMiB : 0;

  s.items_per_s = n / write_s;
  s.mb_per_s = n * 256.0 / write_s / 1e6;
  s.extra["send_s"] = send_s;
  s.extra["write_s"] = write_s;
  s.extra["close_s"] = write_s - send_s;
  s.extra["open_s"] = open_s;
  s.extra["first_item_s"] = first_s;
  s.extra["reopen_first_fraction"] = first_s / write_s;
  s.extra["drain_items_per_s"] = (n - 1) / drain_s;
  s.extra["disk_bytes"] = double(disk);
  s.extra["disk_vs_raw"] = double(disk) / (n * 256.0);
  s.extra["write_peak_rss_growth_mib"] = write_peak;
  s.extra["read_peak_rss_growth_mib"] = read_peak;
  s.extra["peak_rss_growth_mib"] = std::max(write_peak, read_peak);
  if (series) (*series)["timeline"] = timeline;
  return s;
}

Sample hopper_backlog(const Workload& w, const Settings& st, Json* series) {
  ScratchDir dir(st.scratch, "hopper-backlog");
  Options o;
  o.directory = dir.path();
  o.max_memory_bytes = kMemoryBudget;
  o.max_disk_bytes = w.items * 256 + (1ull << 30);
  o.page_bytes = kPage;
  std::optional<Sender<std::string>> tx;
  std::optional<Receiver<std::string>> rx;
  auto open = [&] {
    auto ch = channel<std::string>(o);
    if (!ch.ok()) throw std::runtime_error("hopper::channel: " + ch.status().message());
    tx.emplace(std::move(ch->sender));
    rx.emplace(std::move(ch->receiver));
  };
  BacklogSteps steps;
  steps.open_writer = open;
  steps.send = [&](std::string&& line) {
    if (Status s = tx->send(std::move(line)); !s.ok()) throw std::runtime_error("send: " + s.message());
  };
  steps.close_writer = [&] {
    tx.reset();
    rx.reset();
  };
  steps.reopen = [&] {
    open();
    tx.reset();  // no producer: the receiver ends with `closed` after the backlog
  };
  steps.recv = [&](std::string& out) {
    if (Status s = rx->recv(out); !s.ok()) throw std::runtime_error("recv: " + s.message());
  };
  steps.close_reader = [&] { rx.reset(); };
  return backlog_run(w, st, series, "hopper", dir.path(), steps);
}

#ifdef HOPPER_BENCH_ROCKSDB
Sample rocks_backlog(const Workload& w, const Settings& st, Json* series) {
  ScratchDir dir(st.scratch, "rocksdb-backlog");
  std::unique_ptr<RocksFifo> fifo;
  BacklogSteps steps;
  steps.open_writer = [&] { fifo = std::make_unique<RocksFifo>(dir.path()); };
  steps.send = [&](std::string&& line) { fifo->push(line); };
  steps.close_writer = [&] { fifo.reset(); };
  steps.reopen = [&] { fifo = std::make_unique<RocksFifo>(dir.path()); };
  steps.recv = [&](std::string& out) {
    if (!fifo->pop(out, [] { return true; })) throw std::runtime_error("rocksdb fifo ended early");
  };
  steps.close_reader = [&] { fifo.reset(); };
  return backlog_run(w, st, series, "rocksdb-fifo", dir.path(), steps);
}
#endif

// Calls f<T>() with T = the workload's item type.
template <class F>
Sample by_item(const Workload& w, F&& f) {
  return w.lines ? f(std::string{}) : f(std::uint64_t{});
}

}  // namespace

std::vector<Workload> workloads(bool full, std::uint64_t backlog_bytes, int reps, int backlog_reps) {
  const std::uint64_t mem_u64 = full ? 4'000'000 : 100'000;
  const std::uint64_t mem_lines = full ? 1'000'000 : 20'000;
  const std::uint64_t spill_u64 = full ? 2'000'000 : 40'000;
  const std::uint64_t spill_lines = full ? 1'000'000 : 20'000;
  std::vector<Workload> v;
  const Target vs_classic{"in-memory >= 1.0x the classic queue", "mutex+condvar+deque", "items_per_s", 1.0};
  for (bool lines : {false, true}) {
    for (int p : {1, 4}) {
      const std::string item = lines ? "line" : "u64";
      Workload w{"memory/" + item + "/" + std::to_string(p) + "p",
                 std::string("in memory, ") + (lines ? "256-byte lines" : "u64") + ", " + std::to_string(p) +
                     " producer(s), 1 MiB budget",
                 Kind::memory, lines, p, lines ? mem_lines : mem_u64, reps, {vs_classic}};
      if (!lines && p == 4) {
        // Against a lock-free queue without one order or a budget (issue 13), for the default
        // send path and for the lane.
        w.targets.push_back({">= 0.5x moodycamel", "moodycamel", "items_per_s", 0.5});
        w.targets.push_back({"the lane: >= 0.5x moodycamel", "moodycamel", "items_per_s", 0.5, false, "hopper lane"});
      }
      v.push_back(std::move(w));
    }
  }
  // Every in-memory shape (issue 13): budget x receive style x item x producers, each against
  // the classic queue bounded by the same bytes. Three rounds each: 48 cells.
  const std::pair<std::uint64_t, const char*> budgets[] = {{4u << 10, "4k"}, {1u << 20, "1m"}, {256u << 20, "256m"}};
  const std::pair<Receive, const char*> styles[] = {
      {Receive::one, "recv"}, {Receive::timed, "recv_for"}, {Receive::poll, "try_recv"}, {Receive::many, "recv_many"}};
  for (const auto& [budget, bname] : budgets) {
    for (const auto& [style, sname] : styles) {
      for (bool lines : {false, true}) {
        for (int p : {1, 4}) {
          const std::string item = lines ? "line" : "u64";
          Workload w{"matrix/" + std::string(bname) + "/" + sname + "/" + item + "/" + std::to_string(p) + "p",
                     std::string("in memory, ") + bname + " budget, " + sname + ", " + item + ", " +
                         std::to_string(p) + " producer(s)",
                     Kind::matrix, lines, p, (lines ? mem_lines : mem_u64) / 4, std::min(reps, 3), {vs_classic}};
          w.memory_budget = budget;
          w.receive = style;
          v.push_back(std::move(w));
        }
      }
    }
  }
  for (bool lines : {true, false}) {
    for (int p : {1, 4}) {
      const std::string item = lines ? "line" : "u64";
      Workload w{"spill/" + item + "/" + std::to_string(p) + "p",
                 std::string("sustained spill, ") + (lines ? "256-byte lines" : "u64") + ", " + std::to_string(p) +
                     " producer(s), 4 KiB memory, paced receiver",
                 Kind::spill, lines, p, lines ? spill_lines : spill_u64, reps, {}};
      if (lines) {
        w.targets.push_back({p == 1 ? ">= 3x RocksDB-as-queue" : ">= 8x RocksDB-as-queue", "rocksdb-fifo", "items_per_s",
                             p == 1 ? 3.0 : 8.0});
        w.targets.push_back({">= 0.6x zstd-1 on the same bytes", "zstd-1 limit", "items_per_s", 0.6});
        if (p == 1)
          w.targets.push_back({"with compression_threads = 1: >= 1.2x zstd-1", "zstd-1 limit", "items_per_s", 1.2,
                               false, kHelped});
        if (p == 1) w.targets.push_back({">= 50x the Rust hopper (18 k lines/s): 900 k/s", "", "items_per_s", 900e3});
      } else if (p == 4) {
        w.targets.push_back({">= 50x the Rust hopper (6 k u64/s): 300 k/s", "", "items_per_s", 300e3});
      }
      v.push_back(w);
    }
  }
  for (int p : {1, 4}) {
    std::vector<Target> targets;
    if (p == 1) {
      targets.push_back({">= 1.0x RocksDB with sync = true", "rocksdb-fifo", "items_per_s", 1.0});
      targets.push_back({">= 0.9x preallocated append+fdatasync", "fallocated fdatasync limit", "items_per_s", 0.9});
    } else {
      targets.push_back({">= 1.5x RocksDB with sync = true", "rocksdb-fifo", "items_per_s", 1.5});
    }
    v.push_back({"durable/line/" + std::to_string(p) + "p",
                 "every send waits for stable storage (SyncPolicy::always), 256-byte lines, " + std::to_string(p) +
                     " producer(s)",
                 Kind::durable, true, p, full ? 10'000u : 400u, reps, std::move(targets)});
  }
  v.push_back({"seed/u64/4p", "the seed's shape: 4 senders, 8,192 u64, memory 4,096 u64, 32,768 u64 per file",
               Kind::seed, false, 4, 8192, reps, {}});
  v.push_back({"backlog/line/1p",
               "backlog of " + std::to_string(backlog_bytes >> 20) +
                   " MiB of lines written with nobody reading, closed, reopened, drained",
               Kind::backlog,
               true,
               1,
               backlog_bytes / 256,
               backlog_reps,
               {{"reopen + first item < 5% of the write time", "", "reopen_first_fraction", 0.05, true},
                {"peak RSS growth <= memory budget (1 MiB) + 32 MiB", "", "peak_rss_growth_mib", 33, true},
                {"disk bytes <= 0.25x raw", "", "disk_vs_raw", 0.25, true}}});
  return v;
}

std::vector<Contender> contenders() {
  auto kinds = [](std::initializer_list<Kind> ks) {
    std::vector<Kind> list(ks);
    return [list](const Workload& w) { return std::find(list.begin(), list.end(), w.kind) != list.end(); };
  };
  std::vector<Contender> v;
  v.push_back({kSubject,
               "hopper, receiving with recv_many(256); in memory: 1 MiB, max_disk_bytes = 0; spill: 4 KiB memory, "
               "64 KiB pages, zstd 1; durable: SyncPolicy::always",
               kinds({Kind::memory, Kind::spill, Kind::seed, Kind::backlog, Kind::durable, Kind::matrix}),
               [](const Workload& w, const Settings& st, Json* series) {
                 return measured([&] {
                   switch (w.kind) {
                     case Kind::matrix:
                       return by_item(w, [&](auto t) {
                         return hopper_run<decltype(t)>(w, st, w.receive == Receive::many ? 256 : 1);
                       });
                     case Kind::memory:
                     case Kind::spill:
                     case Kind::durable:
                       return by_item(w, [&](auto t) { return hopper_run<decltype(t)>(w, st, 256); });
                     case Kind::seed:
                       return seed_runs(w, st, [](const std::filesystem::path& dir) {
                         Options o;
                         o.directory = dir;
                         o.max_memory_bytes = 4096 * 8;
                         o.segment_bytes = 32768 * 8;
                         return std::make_unique<HopperContender<std::uint64_t>>(o);
                       });
                     case Kind::backlog:
                       return hopper_backlog(w, st, series);
                   }
                   throw std::logic_error("unknown workload kind");
                 });
               }});
  v.push_back({kHelped, "hopper as above with Options::compression_threads = 1", kinds({Kind::spill}),
               [](const Workload& w, const Settings& st, Json*) {
                 return measured([&] {
                   return by_item(w, [&](auto t) { return hopper_run<decltype(t)>(w, st, 256, 1); });
                 });
               }});
  v.push_back({"hopper 1-by-1", "hopper as above, receiving one item per recv() call", kinds({Kind::memory}),
               [](const Workload& w, const Settings& st, Json*) {
                 return measured([&] { return by_item(w, [&](auto t) { return hopper_run<decltype(t)>(w, st, 1); }); });
               }});
  // The lane (docs/architecture.md, "The lane"), off by default: the same queue with it on,
  // receiving as `hopper` (matrix cells: as the cell says) or one item per recv().
  for (const bool one_by_one : {false, true}) {
    v.push_back({one_by_one ? "hopper lane 1-by-1" : "hopper lane",
                 one_by_one ? "hopper lane, receiving one item per recv() call"
                            : "hopper with the lane on (sends without the lock in memory mode), receiving as hopper",
                 one_by_one ? kinds({Kind::memory}) : kinds({Kind::memory, Kind::matrix}),
                 [one_by_one](const Workload& w, const Settings& st, Json*) {
                   return measured([&] {
                     struct LaneOn {
                       bool was = hopper::detail::lane_by_default().exchange(true);
                       ~LaneOn() { hopper::detail::lane_by_default() = was; }
                     } on;
                     return by_item(w, [&](auto t) {
                       const std::size_t batch = one_by_one || (w.kind == Kind::matrix && w.receive != Receive::many) ? 1 : 256;
                       return hopper_run<decltype(t)>(w, st, batch);
                     });
                   });
                 }});
  }
  v.push_back({"mutex+condvar+deque", "std::mutex + 2 std::condition_variable + std::deque, same byte capacity",
               kinds({Kind::memory, Kind::seed, Kind::matrix}), [](const Workload& w, const Settings& st, Json*) {
                 return measured([&] {
                   if (w.kind == Kind::seed)
                     return seed_runs(w, st, [](const std::filesystem::path&) {
                       return std::make_unique<ClassicContender<std::uint64_t>>(4096 * 8);
                     });
                   return by_item(w, [&](auto t) { return classic_run<decltype(t)>(w, st); });
                 });
               }});
  v.push_back({"moodycamel", "moodycamel::BlockingConcurrentQueue, producer tokens, bulk dequeue; unbounded",
               kinds({Kind::memory}), [](const Workload& w, const Settings& st, Json*) {
                 return measured([&] { return by_item(w, [&](auto t) { return moodycamel_run<decltype(t)>(w, st); }); });
               }});
  for (const bool admit_first : {false, true}) {
    v.push_back({admit_first ? "ticket ring cas (bound)" : "ticket ring (bound)",
                 admit_first ? "the ticket ring, each item admitted by a compare-and-swap once the budget has room"
                             : "lock-free bound: one order (a shared ticket) and one byte budget (a shared counter), a "
                               "ring drained in ticket order; no spill (bench/ticket_ring.hpp)",
                 kinds({Kind::memory}), [admit_first](const Workload& w, const Settings& st, Json*) {
                   return measured([&] {
                     return by_item(w, [&](auto t) {
                       return admit_first ? ticket_ring_run<decltype(t), true>(w, st)
                                          : ticket_ring_run<decltype(t), false>(w, st);
                     });
                   });
                 }});
  }
#ifdef HOPPER_BENCH_ROCKSDB
  v.push_back({"rocksdb-fifo",
               "RocksDB 7.8 as a FIFO: big-endian keys, WAL on, no sync (durable: WriteOptions::sync), "
               "DeleteRange per 1,024-item batch",
               kinds({Kind::spill, Kind::backlog, Kind::durable}), [](const Workload& w, const Settings& st, Json* series) {
                 return measured([&] {
                   if (w.kind == Kind::backlog) return rocks_backlog(w, st, series);
                   return by_item(w, [&](auto t) { return rocks_run<decltype(t)>(w, st); });
                 });
               }});
#endif
  v.push_back({"zstd-1 limit", "one thread compressing the same bytes with zstd level 1 in 64 KiB chunks",
               kinds({Kind::spill}), [](const Workload& w, const Settings& st, Json*) {
                 return measured([&] { return by_item(w, [&](auto t) { return zstd_run<decltype(t)>(w, st); }); });
               }});
  struct Limit {
    const char* name;
    const char* what;
    bool pre;
    bool receiver;
  };
  for (const Limit l : {Limit{"fdatasync limit", "one thread: append one item's bytes, fdatasync, repeat", false, false},
                        Limit{"fallocated fdatasync limit",
                              "one thread: write one item's bytes in place in a file fallocate'd beforehand, fdatasync, repeat",
                              true, false},
                        Limit{"fallocated limit + receiver",
                              "the fallocated limit, each synced item then handed to a receiving thread through the "
                              "mutex+condvar deque",
                              true, true}}) {
    v.push_back({l.name, l.what, kinds({Kind::durable}), [l](const Workload& w, const Settings& st, Json*) {
                   return measured([&] {
                     ScratchDir dir(st.scratch, "fdatasync");
                     const std::uint64_t n = rounded(w);
                     const std::size_t bytes = w.lines ? TelemetryPool::kLineBytes : 8;
                     const double secs = fdatasync_limit_seconds(dir.path(), n, bytes, l.pre, l.receiver);
                     Sample s;
                     s.items_per_s = n / secs;
                     s.mb_per_s = n * double(bytes) / secs / 1e6;
                     return s;
                   });
                 }});
  }
  return v;
}

void set_max_age(std::chrono::milliseconds age) { g_max_age = age; }

}  // namespace hopper::bench
