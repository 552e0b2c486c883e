// The driver's workloads (issue 5) and the contenders that take part in them.
//
// To add a contender, append a Contender to contenders() in workloads.cpp: a name, which
// workloads it takes part in, and how one repetition runs. The driver, the table, the JSON
// and the charts pick it up without other changes. (SyncPolicy::always came that way: the
// durable workloads, with RocksDB's synced writes and the fdatasync limit beside it.)
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "contenders.hpp"
#include "json.hpp"
#include "rounds.hpp"
#include "telemetry.hpp"

namespace hopper::bench {

enum class Kind {
  memory,   // nothing spills: hopper's memory path against in-memory queues
  spill,    // sustained spill: tiny memory budget, a receiver slower than the producers
  seed,     // the seed's benchmark shape: 4 senders, 8,192 u64, 4,096 u64 of memory
  backlog,  // write a multi-GiB backlog, close, reopen: open time, first item, drain, resources
  durable,  // every item on stable storage before send returns: SyncPolicy::always
  matrix,   // in memory, every shape: memory budget x receive style x item x producers
};

// A pass/fail line in the report. The subject (hopper) is compared with `versus` as a
// same-run ratio of items/s, or, when `versus` is empty, `metric` of the subject's median
// is compared with `bound` directly.
struct Target {
  std::string text;
  std::string versus;
  std::string metric = "items_per_s";
  double bound = 0;
  bool at_most = false;  // pass when value <= bound (else value >= bound)
  std::string subject{};  // the contender measured; empty: hopper (kSubject)
};

struct Workload {
  std::string id;     // "spill/line/4p"
  std::string title;  // one line for people
  Kind kind;
  bool lines;         // 256-byte telemetry lines, else u64
  int producers;
  std::uint64_t items;  // per repetition (per iteration for the seed shape)
  int reps;
  std::vector<Target> targets;
  // The matrix: hopper's memory budget (and the classic queue's capacity), and how hopper's
  // receiver takes items (0: the default budget; recv_many).
  std::uint64_t memory_budget = 0;
  Receive receive = Receive::many;
};

// What every run needs besides its workload.
struct Settings {
  const TelemetryPool* pool = nullptr;
  std::filesystem::path scratch;  // parent of every queue directory
  double pace = 20000;            // paced receiver, items/s (spill workloads)
  int seed_iterations = 25;       // channels opened per repetition of the seed shape
  // Before each run, wait up to quiet_wait for other processes to use less than
  // quiet_cores (the machine is shared); 0 s = do not wait.
  double quiet_cores = 0.3;
  int quiet_wait_s = 0;
  // The backlog: the queue's files are dropped from the page cache before the reopen
  // (fdatasync'ed, then POSIX_FADV_DONTNEED), so that recovery reads them from the disk.
  bool cold_reopen = false;
  // Called with a (label, fraction done) now and then during long runs (the backlog).
  std::function<void(const std::string&, double)> progress;
};

struct Contender {
  std::string name;
  std::string what;  // legend line
  std::function<bool(const Workload&)> takes_part;
  // One repetition. Throws nothing: failures come back in Sample::error. Extra figures go
  // to Sample::extra; series (the backlog timeline) to `series` when not null.
  std::function<Sample(const Workload&, const Settings&, Json* series)> run;
};

inline const char* kSubject = "hopper";
inline const char* kHelped = "hopper +1 compression thread";  // Options::compression_threads = 1

// full = the documented run; otherwise the seconds-long smoke mode for CI.
std::vector<Workload> workloads(bool full, std::uint64_t backlog_bytes, int reps, int backlog_reps);
std::vector<Contender> contenders();
// Options::max_age of every hopper queue the workloads open (--max-age-ms; 0: off).
void set_max_age(std::chrono::milliseconds age);

}  // namespace hopper::bench
