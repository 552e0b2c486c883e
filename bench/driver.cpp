// hopper_bench: every workload of issue 5 against every contender that takes part, each
// contender run alternately several times in one process; prints a table as it goes, and
// writes medians, spreads, same-run ratios, targets and the backlog timeline as JSON.
//
//   hopper_bench [--smoke] [--reps N] [--backlog-mib N] [--backlog-reps N] [--cold-reopen]
//                [--only ID[,ID...]] [--contenders NAME[,NAME...]] [--scale F] [--pace N] [--quiet-wait S]
//                [--dir PATH] [--json PATH] [--label TEXT] [--max-age-ms N] [--list]
//
// bench/run builds it, runs it and draws the charts; see docs/performance.md.
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "measure.hpp"
#include "workloads.hpp"

namespace hb = hopper::bench;

namespace {

struct Config {
  bool smoke = false;
  int reps = 5;
  int backlog_reps = 3;
  std::uint64_t backlog_mib = 2048;
  bool cold_reopen = false;  // the backlog's files out of the page cache before its reopen
  std::vector<std::string> only;
  std::vector<std::string> who;  // contenders to run (all when empty)
  double scale = 1;              // item counts multiplied by this (profiling runs)
  double pace = 20000;           // spill workloads: the paced receiver's items/s (0 = free)
  int quiet_wait = 3;            // seconds to wait before a run for other processes to calm down
  std::string dir = "/var/tmp";
  std::string json = "hopper-bench.json";
  std::string label;
  bool list = false;
  std::string command;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--smoke] [--reps N] [--backlog-mib N] [--backlog-reps N] [--cold-reopen] [--only ID[,ID...]]\n"
               "          [--contenders NAME[,NAME...]] [--scale F] [--pace N] [--quiet-wait S]\n"
               "          [--dir PATH] [--json PATH] [--label TEXT] [--max-age-ms N] [--list]\n"
               "  --only: workloads whose id contains one of the IDs; --contenders: only these (exact names);\n"
               "  --scale: multiply item counts (not the backlog) by F, e.g. 0.05 under valgrind\n"
               "  --pace: items/s the spill workloads' receiver takes while producers send (0 = no limit)\n"
               "  --quiet-wait: before each run wait up to S seconds for other processes to use < 0.3 cores\n"
               "  --max-age-ms: Options::max_age of hopper's queues (0, the default: off)\n",
               argv0);
  std::exit(2);
}

Config parse(int argc, char** argv) {
  Config c;
  c.command = argv[0];
  for (int i = 1; i < argc; ++i) c.command += std::string(" ") + argv[i];
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--smoke") {
      c.smoke = true;
    } else if (a == "--reps") {
      c.reps = std::stoi(next());
    } else if (a == "--backlog-reps") {
      c.backlog_reps = std::stoi(next());
    } else if (a == "--backlog-mib") {
      c.backlog_mib = std::stoull(next());
    } else if (a == "--only") {
      std::stringstream ss(next());
      for (std::string id; std::getline(ss, id, ',');) c.only.push_back(id);
    } else if (a == "--contenders") {
      std::stringstream ss(next());
      for (std::string id; std::getline(ss, id, ',');) c.who.push_back(id);
    } else if (a == "--quiet-wait") {
      c.quiet_wait = std::stoi(next());
    } else if (a == "--pace") {
      c.pace = std::stod(next());
    } else if (a == "--scale") {
      c.scale = std::stod(next());
    } else if (a == "--dir") {
      c.dir = next();
    } else if (a == "--json") {
      c.json = next();
    } else if (a == "--cold-reopen") {
      c.cold_reopen = true;
    } else if (a == "--max-age-ms") {
      hb::set_max_age(std::chrono::milliseconds(std::stoll(next())));
    } else if (a == "--label") {
      c.label = next();
    } else if (a == "--list") {
      c.list = true;
    } else {
      usage(argv[0]);
    }
  }
  if (c.smoke) {
    c.reps = 1;
    c.backlog_reps = 1;
    c.backlog_mib = 16;
    c.quiet_wait = 0;
  }
  if (c.reps < 1 || c.backlog_reps < 1 || c.backlog_mib < 1 || !(c.scale > 0)) usage(argv[0]);
  return c;
}

std::string first_line_with(const char* path, const std::string& key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      std::string v = colon == std::string::npos ? line : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string filesystem_type(const std::string& dir) {
  struct statfs s {};
  if (::statfs(dir.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(s.f_type));
      return buf;
    }
  }
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

hb::Json machine(const Config& cfg) {
  hb::Json m;
  m["cpu"] = first_line_with("/proc/cpuinfo", "model name");
  m["cores"] = static_cast<int>(std::thread::hardware_concurrency());
  m["memory"] = first_line_with("/proc/meminfo", "MemTotal");
  utsname u{};
  uname(&u);
  m["kernel"] = std::string(u.sysname) + " " + u.release;
  m["compiler"] = std::string("g++/clang ") + __VERSION__;
#ifdef HOPPER_BENCH_BUILD_TYPE
  m["build_type"] = HOPPER_BENCH_BUILD_TYPE;
#endif
  m["scratch_dir"] = cfg.dir;
  m["scratch_filesystem"] = filesystem_type(cfg.dir);
  m["shared"] = "2 cores shared with other engineers' builds and tests; see load averages";
  // Measured at the start: it moves between sessions on a virtual machine.
  m["core_to_core_ns"] = hb::core_to_core_ns();
  return m;
}

hb::Json spread_json(const std::vector<double>& v) {
  const hb::Spread s = hb::spread_of(v);
  hb::Json j;
  j["median"] = s.median;
  j["min"] = s.min;
  j["max"] = s.max;
  hb::Json runs = hb::Json::array();
  for (double x : v) runs.push_back(x);
  j["runs"] = runs;
  return j;
}

std::vector<double> extra_values(const std::vector<hb::Sample>& samples, const std::string& key) {
  std::vector<double> v;
  for (const auto& s : samples)
    if (s.error.empty()) {
      auto it = s.extra.find(key);
      if (it != s.extra.end()) v.push_back(it->second);
    }
  return v;
}

std::string ratio_text(const std::vector<double>& r) {
  if (r.empty()) return "";
  const hb::Spread s = hb::spread_of(r);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2fx (%.2f-%.2f)", s.median, s.min, s.max);
  return buf;
}

// One line of the summary table.
struct Row {
  std::string workload, contender, rate, mb, spread, ratio;
};

void print_rows(const std::vector<Row>& rows) {
  std::printf("%-18s %-28s %12s %10s %22s %24s\n", "workload", "contender", "items/s", "MB/s", "spread (min-max)",
              "hopper / this (same run)");
  for (const Row& r : rows)
    std::printf("%-18s %-28s %12s %10s %22s %24s\n", r.workload.c_str(), r.contender.c_str(), r.rate.c_str(),
                r.mb.c_str(), r.spread.c_str(), r.ratio.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const Config cfg = parse(argc, argv);
  auto all = hb::workloads(!cfg.smoke, cfg.backlog_mib << 20, cfg.reps, cfg.backlog_reps);
  auto contenders = hb::contenders();
  if (!cfg.who.empty()) {
    std::erase_if(contenders, [&](const hb::Contender& c) {
      return std::find(cfg.who.begin(), cfg.who.end(), c.name) == cfg.who.end();
    });
  }
  if (cfg.list) {
    for (const auto& w : all) std::printf("%-18s %s\n", w.id.c_str(), w.title.c_str());
    for (const auto& c : contenders) std::printf("contender %-28s %s\n", c.name.c_str(), c.what.c_str());
    return 0;
  }
  std::vector<hb::Workload> chosen;
  for (auto w : all) {
    bool pick = cfg.only.empty();
    for (const auto& id : cfg.only) pick |= w.id.find(id) != std::string::npos;
    if (w.kind != hb::Kind::backlog && w.kind != hb::Kind::seed)
      w.items = std::max<std::uint64_t>(w.producers, static_cast<std::uint64_t>(w.items * cfg.scale));
    if (pick) chosen.push_back(w);
  }
  std::filesystem::create_directories(cfg.dir);

  hb::Json out;
  out["command"] = cfg.command;
  out["label"] = cfg.label;
  out["started"] = now_utc();
  out["load_average_before"] = load_average();
  out["machine"] = machine(cfg);
  if (const double c2c = out["machine"]["core_to_core_ns"].get<double>(); c2c > 0)
    std::printf("a cache line passes between cores 0 and 1 in %.0f ns (one way)\n", c2c);
  out["mode"] = cfg.smoke ? "smoke" : "full";
  out["receiver_pace"] = cfg.pace;
  out["quiet_wait_s"] = cfg.quiet_wait;
  hb::Json legend;
  for (const auto& c : contenders) legend[c.name] = c.what;
  out["contenders"] = legend;

  int total_runs = 0;
  for (const auto& w : chosen)
    for (const auto& c : contenders)
      if (c.takes_part(w)) total_runs += w.reps;
  std::printf("hopper_bench (%s): %zu workloads, %d runs; scratch %s (%s); load %s\n", cfg.smoke ? "smoke" : "full",
              chosen.size(), total_runs, cfg.dir.c_str(), filesystem_type(cfg.dir).c_str(), load_average().c_str());
  std::fflush(stdout);

  // 16 MiB of distinct lines, cycled; built only when a chosen workload carries lines.
  std::optional<hb::TelemetryPool> pool;
  if (std::any_of(chosen.begin(), chosen.end(), [](const hb::Workload& w) { return w.lines; })) pool.emplace(1 << 16);
  hb::Settings st;
  st.pool = pool ? &*pool : nullptr;
  st.scratch = cfg.dir;
  st.seed_iterations = cfg.smoke ? 2 : 25;
  st.pace = cfg.pace;
  st.cold_reopen = cfg.cold_reopen;
  st.quiet_wait_s = cfg.quiet_wait;
  // Long runs report progress: on a terminal a line that rewrites itself, in a log a line
  // per quarter.
  int last_percent = -1;
  const bool tty = ::isatty(2) != 0;
  st.progress = [&](const std::string& what, double f) {
    const int pct = static_cast<int>(f * 100);
    const int shown = tty ? pct : pct / 25 * 25;
    if (shown == last_percent) return;
    last_percent = shown;
    if (tty) {
      std::fprintf(stderr, "\r      %-24s %3d%%", what.c_str(), pct);
      if (pct >= 100) std::fprintf(stderr, "\r%50s\r", "");
    } else {
      std::fprintf(stderr, "      %-24s %3d%%\n", what.c_str(), shown);
    }
    std::fflush(stderr);
  };

  std::vector<Row> rows;
  std::vector<std::string> target_lines;
  hb::Json workloads_json = hb::Json::array();
  hb::Json targets_json = hb::Json::array();
  int done = 0;
  bool any_error = false;
  const hb::Clock::time_point start = hb::Clock::now();
  for (const auto& w : chosen) {
    std::vector<hb::Entrant> entrants;
    std::map<std::string, hb::Json> series;  // contender -> array of per-run series
    for (const auto& c : contenders) {
      if (!c.takes_part(w)) continue;
      entrants.push_back({c.name, [&, c] {
                            hb::Json one;
                            const double before =
                                st.quiet_wait_s > 0
                                    ? hb::wait_for_quiet(st.quiet_cores, std::chrono::seconds(st.quiet_wait_s))
                                    : 0;
                            // Where the host put the vCPUs moves within minutes (26-162 ns
                            // one way on the second machine): the in-memory shapes follow it.
                            const double c2c = hb::core_to_core_ns();
                            hb::Sample s = c.run(w, st, &one);
                            s.extra["others_busy_cores_before"] = before;
                            s.extra["core_to_core_ns"] = c2c;
                            series[c.name].push_back(one);
                            return s;
                          }});
    }
    std::printf("\n== %s: %s (%llu items, %d rounds)\n", w.id.c_str(), w.title.c_str(),
                static_cast<unsigned long long>(w.items), w.reps);
    std::fflush(stdout);
    auto runs = hb::run_alternately(entrants, w.reps, [&](int rep, const std::string& name, const hb::Sample& s) {
      ++done;
      last_percent = -1;
      auto others = s.extra.find("others_busy_cores");
      auto c2c = s.extra.find("core_to_core_ns");
      std::printf("  [%3d/%d %5.0fs] round %d  %-28s %12s items/s %9.1f MB/s  others %.2f cores  c2c %3.0f ns%s%s\n",
                  done, total_runs, hb::seconds_since(start), rep + 1, name.c_str(), hb::human(s.items_per_s).c_str(),
                  s.mb_per_s, others == s.extra.end() ? 0.0 : others->second, c2c == s.extra.end() ? 0.0 : c2c->second,
                  s.error.empty() ? "" : "  FAILED: ", s.error.c_str());
      std::fflush(stdout);
    });

    hb::Json wj;
    wj["id"] = w.id;
    wj["title"] = w.title;
    wj["item"] = w.lines ? "line" : "u64";
    wj["producers"] = w.producers;
    wj["items"] = w.items;
    wj["reps"] = w.reps;
    hb::Json cj;
    std::vector<Row> section;
    const bool has_subject = runs.count(hb::kSubject) > 0;
    for (const auto& e : entrants) {
      const auto& samples = runs.at(e.name);
      hb::Json one;
      one["items_per_s"] = spread_json(hb::rates(samples));
      std::vector<double> mb;
      std::set<std::string> keys;
      hb::Json errors = hb::Json::array();
      for (const auto& s : samples) {
        if (s.error.empty()) {
          mb.push_back(s.mb_per_s);
        } else {
          errors.push_back(s.error);
          any_error = true;
        }
        for (const auto& [k, v] : s.extra) keys.insert(k);
      }
      one["mb_per_s"] = spread_json(mb);
      for (const auto& k : keys) one["extra"][k] = spread_json(extra_values(samples, k));
      one["errors"] = errors;
      one["series"] = series[e.name];
      std::vector<double> ratio;
      if (has_subject && e.name != hb::kSubject) {
        ratio = hb::same_run_ratios(runs.at(hb::kSubject), samples);
        wj["ratios"][e.name] = spread_json(ratio);
      }
      cj[e.name] = one;
      const hb::Spread r = hb::spread_of(hb::rates(samples));
      section.push_back({w.id, e.name, hb::human(r.median), hb::human(hb::spread_of(mb).median),
                         hb::human(r.min) + "-" + hb::human(r.max), ratio_text(ratio)});
    }
    wj["contenders"] = cj;

    // Targets.
    hb::Json tj = hb::Json::array();
    for (const auto& t : w.targets) {
      std::vector<double> values;  // per round: same-run ratios, or the subject's own figure
      const std::string subject = t.subject.empty() ? std::string(hb::kSubject) : t.subject;
      const bool measured = runs.count(subject) > 0;
      if (measured && !t.versus.empty() && runs.count(t.versus)) {
        values = hb::same_run_ratios(runs.at(subject), runs.at(t.versus));
      } else if (measured && t.versus.empty()) {
        values = t.metric == "items_per_s" ? hb::rates(runs.at(subject)) : extra_values(runs.at(subject), t.metric);
      }
      const bool known = !values.empty();
      const hb::Spread v = hb::spread_of(values);
      const bool met = known && (t.at_most ? v.median <= t.bound : v.median >= t.bound);
      hb::Json one;
      one["workload"] = w.id;
      one["text"] = t.text;
      one["versus"] = t.versus;
      one["metric"] = t.metric;
      one["bound"] = t.bound;
      one["at_most"] = t.at_most;
      one["subject"] = subject;
      one["value"] = known ? hb::Json(v.median) : hb::Json();
      one["min"] = known ? hb::Json(v.min) : hb::Json();
      one["max"] = known ? hb::Json(v.max) : hb::Json();
      one["met"] = met;
      tj.push_back(one);
      targets_json.push_back(one);
      std::string shown = "-";
      if (known && !t.versus.empty()) {
        shown = ratio_text(values);
      } else if (known) {
        char buf[80];
        if (t.metric == "items_per_s") {
          std::snprintf(buf, sizeof buf, "%s/s (%s-%s)", hb::human(v.median).c_str(), hb::human(v.min).c_str(),
                        hb::human(v.max).c_str());
        } else {
          std::snprintf(buf, sizeof buf, "%.3g (%.3g-%.3g)", v.median, v.min, v.max);
        }
        shown = buf;
      }
      char line[256];
      std::snprintf(line, sizeof line, "  %-6s %-16s %-50s %s", !known ? "n/a" : met ? "MET" : "MISSED", w.id.c_str(),
                    t.text.c_str(), shown.c_str());
      target_lines.push_back(line);
      std::printf("%s\n", line);
    }
    wj["targets"] = tj;
    workloads_json.push_back(wj);

    std::printf("\n");
    print_rows(section);
    if (w.kind == hb::Kind::backlog) {
      for (const auto& e : entrants) {
        const auto& s = runs.at(e.name);
        auto med = [&](const char* k) { return hb::spread_of(extra_values(s, k)).median; };
        std::printf("  %-14s write %.1f s, open %.3f s, first item %.3f s (%.2f%% of write), drain %s items/s, "
                    "disk/raw %.3f, peak RSS +%.1f MiB, open files +%.0f\n",
                    e.name.c_str(), med("write_s"), med("open_s"), med("first_item_s"),
                    100 * med("reopen_first_fraction"), hb::human(med("drain_items_per_s")).c_str(),
                    med("disk_vs_raw"), med("peak_rss_growth_mib"), med("open_files_growth"));
      }
    }
    rows.insert(rows.end(), section.begin(), section.end());
  }
  out["workloads"] = workloads_json;
  out["targets"] = targets_json;
  out["load_average_after"] = load_average();
  out["seconds"] = hb::seconds_since(start);

  std::printf("\n==== summary: medians of alternating rounds; ratios are hopper / contender per round ====\n");
  print_rows(rows);
  std::printf("\ntargets (median of the same-run ratios, or of hopper's own figure):\n");
  for (const auto& l : target_lines) std::printf("%s\n", l.c_str());
  std::ofstream(cfg.json) << out.dump(1) << "\n";
  std::printf("JSON written to %s (%.0f s in all; load average now %s)\n", cfg.json.c_str(), hb::seconds_since(start),
              load_average().c_str());
  return any_error ? 1 : 0;
}
