// The first measurement (issue 2), in one run:
//  (a) the spill path: 256-byte telemetry lines, 64 KiB pages, a 4 KiB memory budget so
//      everything spills, one producer and a concurrent receiver — against one thread
//      compressing the same bytes with zstd level 1 in 64 KiB chunks (the limit);
//      target: hopper >= 0.5x the limit;
//  (b) the in-memory path (nothing spills): hopper — receiving with recv() one item at a
//      time, and with recv_many() — against a std::mutex + std::condition_variable +
//      std::deque queue of the same byte capacity, one producer and one receiver;
//      target: >= 1.0x.
// Each contender runs alternately, several times; medians and same-run ratios are printed.
//
//   hopper_first_measurement [--reps N] [--lines N] [--u64 N] [--dir PATH] [--smoke]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "contenders.hpp"
#include "measure.hpp"
#include "mpsc_run.hpp"
#include "rounds.hpp"
#include "telemetry.hpp"

namespace hb = hopper::bench;

namespace {

struct Config {
  int reps = 7;
  std::uint64_t lines = 1'000'000;  // spill and in-memory line runs
  std::uint64_t u64 = 4'000'000;    // in-memory u64 runs
  std::string dir = "/var/tmp";
  // While the producer sends, the paced receiver takes this many items per second, so
  // pages really go to disk and come back (a slow downstream); then it drains.
  double pace = 20'000;
};

hopper::Options spill_options(const std::filesystem::path& dir) {
  hopper::Options o;
  o.directory = dir;
  o.max_memory_bytes = 4 << 10;  // ~14 lines: everything spills
  o.max_disk_bytes = 8ull << 30;
  o.page_bytes = 64 << 10;
  o.compression_level = 1;
  return o;
}

template <class T>
hb::Sample finish(const hb::MpscTimes& t, std::uint64_t items, bool use_send_time) {
  hb::Sample s;
  s.error = t.error;
  const double secs = use_send_time ? t.send_seconds : t.total_seconds;
  s.items_per_s = items / secs;
  s.mb_per_s = items * hb::ItemSource<T>::kRawBytes / secs / 1e6;
  s.extra["send_s"] = t.send_seconds;
  s.extra["total_s"] = t.total_seconds;
  return s;
}

void add_spill_stats(hb::Sample& s, const hopper::Stats& st) {
  s.extra["spilled_fraction"] = st.items_sent ? double(st.items_spilled) / st.items_sent : 0;
  s.extra["pages_written"] = double(st.pages_written);
  s.extra["disk_vs_raw"] = st.bytes_uncompressed ? double(st.bytes_compressed) / st.bytes_uncompressed : 0;
}

void report(const char* title, const std::map<std::string, std::vector<hb::Sample>>& runs, const std::string& subject,
            const std::string& baseline, double target) {
  std::printf("\n%s\n", title);
  std::printf("  %-30s %14s %12s %22s   %s\n", "contender", "items/s", "MB/s", "spread (min..max)",
              "others' CPU (cores, median)");
  for (const auto& [name, samples] : runs) {
    auto r = hb::spread_of(hb::rates(samples));
    std::vector<double> mb;
    for (const auto& s : samples)
      if (s.error.empty()) mb.push_back(s.mb_per_s);
    std::vector<double> others;
    for (const auto& s : samples) others.push_back(s.extra.at("others_busy_cores"));
    std::printf("  %-30s %14s %12.1f %10s..%-10s  (%zu/%zu ok)  %.2f\n", name.c_str(), hb::human(r.median).c_str(),
                hb::spread_of(mb).median, hb::human(r.min).c_str(), hb::human(r.max).c_str(), hb::rates(samples).size(),
                samples.size(), hb::spread_of(others).median);
    for (const auto& s : samples)
      if (!s.error.empty()) std::printf("    FAILED: %s\n", s.error.c_str());
  }
  auto ratio = hb::spread_of(hb::same_run_ratios(runs.at(subject), runs.at(baseline)));
  const bool met = ratio.median >= target;
  std::printf("  same-run ratio %s / %s: median %.2fx (min %.2f, max %.2f) -> target >= %.2fx %s\n", subject.c_str(),
              baseline.c_str(), ratio.median, ratio.min, ratio.max, target, met ? "MET" : "MISSED");
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--reps") {
      cfg.reps = std::atoi(next());
    } else if (a == "--lines") {
      cfg.lines = std::strtoull(next(), nullptr, 10);
    } else if (a == "--u64") {
      cfg.u64 = std::strtoull(next(), nullptr, 10);
    } else if (a == "--dir") {
      cfg.dir = next();
    } else if (a == "--smoke") {
      cfg.reps = 1;
      cfg.lines = 20'000;
      cfg.u64 = 100'000;
      cfg.pace = 100'000;
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--lines N] [--u64 N] [--dir PATH] [--smoke]\n", argv[0]);
      return 2;
    }
  }

  const hb::TelemetryPool pool(1 << 16);  // 16 MiB of distinct lines, cycled
  const hb::ItemSource<std::string> lines{&pool};
  const hb::ItemSource<std::uint64_t> numbers{};
  const std::filesystem::path work = cfg.dir;
  std::printf("hopper first measurement: %d rounds, %llu lines (%s MB), %llu u64; scratch in %s\n", cfg.reps,
              static_cast<unsigned long long>(cfg.lines), hb::human(cfg.lines * 256 / 1e6).c_str(),
              static_cast<unsigned long long>(cfg.u64), work.c_str());
  auto progress = [](int rep, const std::string& name, const hb::Sample& s) {
    std::printf("  round %d  %-30s %12s items/s %9.1f MB/s  others %.2f cores%s\n", rep + 1, name.c_str(),
                hb::human(s.items_per_s).c_str(), s.mb_per_s, s.extra.at("others_busy_cores"),
                s.error.empty() ? "" : ("  FAILED: " + s.error).c_str());
    std::fflush(stdout);
  };

  // (a) the spill path.
  const hb::MpscShape paced{1, cfg.lines, cfg.pace};
  const hb::MpscShape free_receiver{1, cfg.lines, 0};
  std::vector<hb::Entrant> spill = {
      {"zstd-1 limit (1 thread)",
       [&] {
         std::uint64_t compressed = 0;
         const double secs = hb::zstd_limit_seconds(pool.bytes(), cfg.lines * 256, 64 << 10, 1, compressed);
         hb::Sample s;
         s.items_per_s = cfg.lines / secs;
         s.mb_per_s = cfg.lines * 256 / secs / 1e6;
         s.extra["disk_vs_raw"] = double(compressed) / (cfg.lines * 256.0);
         return s;
       }},
      {"hopper spill, paced receiver",
       [&] {
         hb::ScratchDir dir(work, "hopper-first");
         hb::HopperContender<std::string> q(spill_options(dir.path()));
         auto t = hb::run_mpsc(q, paced, lines);
         auto s = finish<std::string>(t, cfg.lines, true);
         add_spill_stats(s, q.stats());
         return s;
       }},
      {"hopper spill, free receiver",
       [&] {
         hb::ScratchDir dir(work, "hopper-first");
         hb::HopperContender<std::string> q(spill_options(dir.path()));
         auto t = hb::run_mpsc(q, free_receiver, lines);
         auto s = finish<std::string>(t, cfg.lines, false);
         add_spill_stats(s, q.stats());
         return s;
       }},
  };
  std::printf("\n(a) spill path: %llu lines of 256 bytes, 1 producer, memory budget 4 KiB, 64 KiB pages, zstd 1\n",
              static_cast<unsigned long long>(cfg.lines));
  std::printf("    paced receiver: %.0f items/s while the producer sends, then drains; rate = items / send time\n",
              cfg.pace);
  std::printf("    free receiver: as fast as it can; rate = items / time until the last item was received\n");
  auto spill_runs = hb::run_alternately(hb::with_noise_probe(spill), cfg.reps, progress);
  for (const char* name : {"hopper spill, paced receiver", "hopper spill, free receiver"}) {
    const auto& v = spill_runs.at(name);
    std::vector<double> frac, pages, ratio;
    for (const auto& s : v) {
      frac.push_back(s.extra.at("spilled_fraction"));
      pages.push_back(s.extra.at("pages_written"));
      ratio.push_back(s.extra.at("disk_vs_raw"));
    }
    std::printf("  %s: spilled %.1f%% of items; pages written to disk (median) %.0f; disk/raw %.3f\n", name,
                100 * hb::spread_of(frac).median, hb::spread_of(pages).median, hb::spread_of(ratio).median);
  }

  // (b) the in-memory path.
  auto memory_options = [](const std::filesystem::path& dir) {
    hopper::Options o;
    o.directory = dir;
    o.max_memory_bytes = 1 << 20;
    o.max_disk_bytes = 0;  // never spill
    return o;
  };
  auto memory_entrants = [&](auto tag, std::uint64_t items, const auto& source) {
    using T = decltype(tag);
    const hb::MpscShape shape{1, items, 0};
    return std::vector<hb::Entrant>{
        {"hopper in-memory, recv",
         [&, shape] {
           hb::ScratchDir dir(work, "hopper-first");
           hb::HopperContender<T> q(memory_options(dir.path()), 1);
           return finish<T>(hb::run_mpsc(q, shape, source), items, false);
         }},
        {"hopper in-memory, recv_many",
         [&, shape] {
           hb::ScratchDir dir(work, "hopper-first");
           hb::HopperContender<T> q(memory_options(dir.path()), 256);
           return finish<T>(hb::run_mpsc(q, shape, source), items, false);
         }},
        {"mutex+condvar+deque",
         [&, shape] {
           hb::ClassicContender<T> q(1 << 20);
           return finish<T>(hb::run_mpsc(q, shape, source), items, false);
         }},
    };
  };
  std::printf("\n(b) in-memory path: 1 producer, 1 receiver, capacity 1 MiB of footprint in both\n");
  std::printf("  u64 items (%llu):\n", static_cast<unsigned long long>(cfg.u64));
  auto mem_u64 = hb::run_alternately(hb::with_noise_probe(memory_entrants(std::uint64_t{}, cfg.u64, numbers)), cfg.reps, progress);
  std::printf("  256-byte lines (%llu):\n", static_cast<unsigned long long>(cfg.lines));
  auto mem_lines = hb::run_alternately(hb::with_noise_probe(memory_entrants(std::string{}, cfg.lines, lines)), cfg.reps, progress);

  std::printf("\n==== results (medians of %d alternating rounds; same-run ratios per round) ====\n", cfg.reps);
  std::map<std::string, std::vector<hb::Sample>> paced_runs{{"hopper spill, paced receiver", spill_runs.at("hopper spill, paced receiver")},
                                                           {"zstd-1 limit (1 thread)", spill_runs.at("zstd-1 limit (1 thread)")}};
  std::map<std::string, std::vector<hb::Sample>> free_runs{{"hopper spill, free receiver", spill_runs.at("hopper spill, free receiver")},
                                                          {"zstd-1 limit (1 thread)", spill_runs.at("zstd-1 limit (1 thread)")}};
  report("(a) spill path, paced receiver (everything goes through disk)", paced_runs, "hopper spill, paced receiver",
         "zstd-1 limit (1 thread)", 0.5);
  report("(a') spill path, free receiver (end to end)", free_runs, "hopper spill, free receiver", "zstd-1 limit (1 thread)",
         0.5);
  for (const char* subject : {"hopper in-memory, recv", "hopper in-memory, recv_many"}) {
    auto pair = [&](const std::map<std::string, std::vector<hb::Sample>>& all) {
      return std::map<std::string, std::vector<hb::Sample>>{{subject, all.at(subject)},
                                                            {"mutex+condvar+deque", all.at("mutex+condvar+deque")}};
    };
    report("(b) in-memory path, u64", pair(mem_u64), subject, "mutex+condvar+deque", 1.0);
    report("(b') in-memory path, 256-byte lines", pair(mem_lines), subject, "mutex+condvar+deque", 1.0);
  }

  bool failed = false;
  for (const auto* runs : {&spill_runs, &mem_u64, &mem_lines})
    for (const auto& [name, samples] : *runs)
      for (const auto& s : samples) failed |= !s.error.empty();
  return failed ? 1 : 0;
}
