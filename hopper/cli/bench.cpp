// hopper bench: how fast a hopper queue is on this machine and this disk, with the
// budgets and sync policy the user means to run. Not the project's benchmark suite
// (bench/run compares against other queues); this answers "what will I get here?".
//
//   fill     producers send every item while the receiver waits: all but the memory
//            budget spills (encode, compress, append)
//   reopen   every handle is closed (a clean shutdown) and the directory opened again:
//            recovery reads and checks every page
//   drain    the receiver takes the whole backlog (read, decompress, decode)
//   through  a fresh queue, producers and receiver at once: the steady state
//
// Every item carries its producer and index; each phase that receives checks that
// nothing was lost, duplicated or reordered, and the command fails (exit 1) if so.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "cli/commands.hpp"
#include "cli/output.hpp"

namespace hopper::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A telemetry-like line of `bytes` bytes (at least the prefix): "p<producer>.<index> "
// then a metric path, a value and a timestamp, padded with hex that compresses about as
// well as real metric names do.
std::string make_line(std::uint32_t producer, std::uint64_t index, std::uint64_t bytes) {
  char head[128];
  const int n = std::snprintf(head, sizeof head, "p%u.%llu host%02llu.cpu%llu.usage_%s %llu.%02llu %llu", producer,
                              static_cast<unsigned long long>(index), static_cast<unsigned long long>(index % 64),
                              static_cast<unsigned long long>(index % 8), (index % 3) ? "user" : "system",
                              static_cast<unsigned long long>(index * 7919 % 100), static_cast<unsigned long long>(index % 100),
                              1700000000ull + index / 1000);
  std::string line(head, static_cast<std::size_t>(n));
  std::uint64_t x = index * 0x9E3779B97F4A7C15ull + producer;
  static constexpr char kHex[] = "0123456789abcdef";
  if (line.size() < bytes) line += ' ';
  while (line.size() < bytes) {
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    line += kHex[(x >> 60) & 0x7];  // eight letters: compressible, not trivially
  }
  return line;
}

// Producer and index from a line's prefix.
std::optional<std::pair<std::uint32_t, std::uint64_t>> tag_of(const std::string& line) {
  if (line.size() < 4 || line[0] != 'p') return std::nullopt;
  const char* end = line.data() + line.size();
  std::uint32_t p = 0;
  auto [a, e1] = std::from_chars(line.data() + 1, end, p);
  if (e1 != std::errc() || a == end || *a != '.') return std::nullopt;
  std::uint64_t i = 0;
  auto [b, e2] = std::from_chars(a + 1, end, i);
  if (e2 != std::errc() || b == end || *b != ' ') return std::nullopt;
  return std::pair{p, i};
}

// Checks what a receiver gets against what the producers sent: per producer, indexes
// 0, 1, 2, ... with no gap, repeat or foreign line.
class Checker {
 public:
  explicit Checker(std::uint32_t producers) : next_(producers, 0) {}
  void see(const std::string& line) {
    auto t = tag_of(line);
    if (!t || t->first >= next_.size() || t->second != next_[t->first]) {
      if (problem_.empty()) {
        problem_ = "unexpected item \"" + line.substr(0, 40) + "\"";
        if (t && t->first < next_.size())
          problem_ += " (producer " + std::to_string(t->first) + " was due index " + std::to_string(next_[t->first]) + ")";
      }
      return;
    }
    ++next_[t->first];
  }
  // Empty when producer p delivered exactly `per[p]` items.
  std::string verdict(const std::vector<std::uint64_t>& per) const {
    if (!problem_.empty()) return problem_;
    for (std::size_t p = 0; p < per.size(); ++p)
      if (next_[p] != per[p])
        return "producer " + std::to_string(p) + ": " + std::to_string(next_[p]) + " of " + std::to_string(per[p]) +
               " items received";
    return "";
  }

 private:
  std::vector<std::uint64_t> next_;
  std::string problem_;
};

struct PhaseResult {
  std::string name;
  std::uint64_t items = 0;
  double seconds = 0;
  std::uint64_t raw_bytes = 0;
  std::string note;
};

// Sends items [0, per[p]) from each producer, in parallel. Returns the first error.
Status produce(Sender<std::string>& sender, const std::vector<std::uint64_t>& per, std::uint64_t bytes) {
  std::vector<Status> errors(per.size());
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < per.size(); ++p) {
    threads.emplace_back([&, p, s = sender]() mutable {
      for (std::uint64_t i = 0; i < per[p]; ++i) {
        if (Status st = s.send(make_line(p, i, bytes)); !st.ok()) {
          errors[p] = st;
          return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (!e.ok()) return e;
  return Status();
}

// Receives until `closed`, feeding the checker. Returns items and raw bytes.
Status consume(Receiver<std::string>& r, Checker& check, std::uint64_t& items, std::uint64_t& bytes) {
  std::vector<std::string> batch;
  for (;;) {
    batch.clear();
    Status s = r.recv_many(batch, 256);
    if (s.code() == Errc::closed) return Status();
    if (!s.ok()) return s;
    for (const std::string& line : batch) {
      check.see(line);
      bytes += line.size();
    }
    items += batch.size();
  }
}

std::string rate(double per_second) {
  char buf[32];
  if (per_second >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2f M", per_second / 1e6);
  } else if (per_second >= 1e3) {
    std::snprintf(buf, sizeof buf, "%.1f k", per_second / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f", per_second);
  }
  return buf;
}

std::string fixed(double v, int decimals) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

int bench_command(const BenchOptions& options) {
  if (options.producers < 1 || options.producers > 256) {
    std::cerr << "hopper bench: --producers " << options.producers << ": give 1 to 256\n";
    return kError;
  }
  SyncPolicy sync;
  if (options.sync == "none") {
    sync = SyncPolicy::none;
  } else if (options.sync == "interval") {
    sync = SyncPolicy::interval;
  } else if (options.sync == "always") {
    sync = SyncPolicy::always;
  } else {
    std::cerr << "hopper bench: --sync " << options.sync << ": give none, interval or always\n";
    return kError;
  }
  const std::uint64_t items = options.items ? options.items : (sync == SyncPolicy::always ? 10'000 : 1'000'000);
  const std::uint64_t bytes = std::max<std::uint64_t>(options.item_bytes, 48);

  fs::path parent = options.dir.empty() ? fs::temp_directory_path() : fs::path(options.dir);
  std::string tmpl = (parent / "hopper-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::cerr << "hopper bench: cannot create a directory in " << parent.string() << ": " << std::strerror(errno) << "\n";
    return kError;
  }
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{tmpl};

  Options o;
  o.max_memory_bytes = options.memory;
  o.max_disk_bytes = options.disk;
  o.page_bytes = static_cast<std::uint32_t>(std::min<std::uint64_t>(options.page, 0xffffffffu));
  o.segment_bytes = options.segment;
  o.compression_level = options.level;
  o.sync = sync;
  o.when_full = FullPolicy::fail;  // a benchmark that fills its budgets is told so, not stuck
  auto open = [&](const fs::path& dir) {
    Options x = o;
    x.directory = dir;
    return channel<std::string>(x);
  };
  const fs::path qdir = cleanup.dir / "q";
  {
    Options x = o;
    x.directory = qdir;
    if (Status s = validate(x); !s.ok()) {
      std::cerr << "hopper bench: " << s.message() << "\n";
      return kError;
    }
  }

  std::vector<std::uint64_t> per(static_cast<std::size_t>(options.producers), items / options.producers);
  per[0] += items % options.producers;
  const std::uint64_t raw_total = items * bytes;
  std::ostream& progress = options.json ? std::cerr : std::cout;
  std::vector<PhaseResult> results;
  Stats fill_stats{}, through_stats{};
  std::uint64_t disk_after_fill = 0;
  auto fail = [&](const std::string& what) {
    std::cerr << "hopper bench: " << what << "\n";
    return kDamaged;
  };

  progress << "hopper bench: " << with_commas(items) << " items of " << bytes << " bytes, " << options.producers
           << " producer(s), memory " << human_bytes(o.max_memory_bytes) << ", disk " << human_bytes(o.max_disk_bytes)
           << ", pages " << human_bytes(o.page_bytes) << ", segments " << human_bytes(o.segment_bytes) << ", zstd "
           << o.compression_level << ", sync " << options.sync << "\n  in " << qdir.string() << "\n"
           << std::flush;
  {
    auto ch = open(qdir);
    if (!ch.ok()) {
      std::cerr << "hopper bench: " << ch.status().message() << "\n";
      return kError;
    }
    progress << "  fill ..." << std::flush;
    const auto t = Clock::now();
    if (Status s = produce(ch->sender, per, bytes); !s.ok())
      return fail("fill: " + s.message() + " (raise --disk, or lower --items)");
    results.push_back({"fill", items, seconds_since(t), raw_total, "receiver idle: all beyond the memory budget spills"});
    fill_stats = ch->receiver.stats();
    disk_after_fill = fill_stats.disk_bytes;
    progress << " " << fixed(results.back().seconds, 2) << " s\n  reopen ..." << std::flush;
  }
  {
    const auto t = Clock::now();
    auto ch = open(qdir);
    if (!ch.ok()) return fail("reopen: " + ch.status().message());
    results.push_back({"reopen", 0, seconds_since(t), 0, "clean shutdown, then recovery checks every page"});
    progress << " " << fixed(results.back().seconds, 3) << " s\n  drain ..." << std::flush;
    ch->sender.close();
    Checker check(static_cast<std::uint32_t>(options.producers));
    std::uint64_t got = 0, got_bytes = 0;
    const auto t2 = Clock::now();
    if (Status s = consume(ch->receiver, check, got, got_bytes); !s.ok()) return fail("drain: " + s.message());
    results.push_back({"drain", got, seconds_since(t2), got_bytes, "the backlog, read back in order"});
    if (auto v = check.verdict(per); !v.empty()) return fail("drain: " + v);
    progress << " " << fixed(results.back().seconds, 2) << " s\n  through ..." << std::flush;
  }
  {
    fs::remove_all(qdir);
    auto ch = open(qdir);
    if (!ch.ok()) return fail("through: " + ch.status().message());
    Checker check(static_cast<std::uint32_t>(options.producers));
    std::uint64_t got = 0, got_bytes = 0;
    Status received;
    const auto t = Clock::now();
    std::thread receiver([&] { received = consume(ch->receiver, check, got, got_bytes); });
    Status sent = produce(ch->sender, per, bytes);
    ch->sender.close();
    receiver.join();
    if (!sent.ok()) return fail("through: " + sent.message());
    if (!received.ok()) return fail("through: " + received.message());
    results.push_back({"through", got, seconds_since(t), got_bytes, "producers and receiver at once"});
    through_stats = ch->receiver.stats();
    if (auto v = check.verdict(per); !v.empty()) return fail("through: " + v);
    progress << " " << fixed(results.back().seconds, 2) << " s\n" << std::flush;
  }

  const double disk_ratio = fill_stats.bytes_uncompressed ? double(fill_stats.bytes_compressed) / fill_stats.bytes_uncompressed : 0;
  const double through_spilled = items ? double(through_stats.items_spilled) / items : 0;
  if (options.json) {
    Json phases = Json::array();
    for (const auto& r : results)
      phases.push_back({{"name", r.name},
                        {"items", r.items},
                        {"seconds", r.seconds},
                        {"items_per_s", r.seconds > 0 ? r.items / r.seconds : 0.0},
                        {"mb_per_s", r.seconds > 0 ? r.raw_bytes / r.seconds / 1e6 : 0.0}});
    const Json j = {{"items", items},
                    {"item_bytes", bytes},
                    {"producers", options.producers},
                    {"sync", options.sync},
                    {"phases", std::move(phases)},
                    {"fill", {{"spilled", fill_stats.items_spilled},
                              {"pages", fill_stats.pages_written},
                              {"disk_bytes", disk_after_fill},
                              {"disk_over_raw", disk_ratio},
                              {"syncs", fill_stats.syncs}}},
                    {"through", {{"spilled_fraction", through_spilled}, {"syncs", through_stats.syncs}}},
                    {"ok", true}};
    std::cout << j.dump() << "\n";
    return kOk;
  }
  Table t({"phase", "items/s", "MB/s", "seconds", ""}, {false, true, true, true, false});
  for (const auto& r : results)
    t.row({r.name, r.items && r.seconds > 0 ? rate(r.items / r.seconds) : "-",
           r.raw_bytes && r.seconds > 0 ? fixed(r.raw_bytes / r.seconds / 1e6, 1) : "-", fixed(r.seconds, 3), r.note});
  std::cout << "\n";
  t.print(std::cout, "  ");
  std::cout << "\n  fill: " << with_commas(fill_stats.items_spilled) << " items spilled in " << with_commas(fill_stats.pages_written)
            << " pages; on disk " << human_bytes(disk_after_fill) << " = " << fixed(disk_ratio, 3) << " of the raw bytes";
  if (sync != SyncPolicy::none) std::cout << "; " << with_commas(fill_stats.syncs) << " fdatasyncs";
  std::cout << "\n  through: " << fixed(100 * through_spilled, 1) << "% of the items spilled"
            << "\n  every item arrived, once, in each producer's order\n";
  return kOk;
}

}  // namespace hopper::cli
