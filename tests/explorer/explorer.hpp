// The fault-schedule explorer: runs small queue workloads on tests/support/sim_fs under one fault
// each — the k-th operation of a kind fails (ENOSPC, EIO, a short write, ENOENT), the power
// is cut at the k-th mutating operation, or a segment file vanishes — and checks the
// queue's promises after every run (docs/testing.md, "The fault explorer"). k is
// enumerated exhaustively for the small single-threaded workloads (whose operations are
// counted by a fault-free run first) and drawn at random, with thread interleavings
// perturbed, for the concurrent ones.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <hopper/options.hpp>

namespace hopper::explore {

// One fault per run.
enum class FaultKind {
  none,
  append_enospc,   // a page or segment-header write fails, nothing written
  append_eio,
  append_short,    // half the bytes are written, then ENOSPC
  sync_eio,        // fdatasync of a file (a segment, the cursor)
  dir_sync_eio,    // fsync of the directory
  open_enoent,     // open says the file is not there
  open_eio,
  read_eio,
  remove_eio,      // unlink
  rename_eio,      // the cursor's replace
  truncate_eio,    // cutting back a failed write, or a torn tail at open
  short_then_truncate_eio,  // a short append whose cut-back fails too: the file is left
  power_cut,       // the machine stops after the k-th mutating call; unsynced bytes are lost
  power_cut_torn,  // the same, each file keeping a random prefix of its unsynced bytes
  vanish,          // before step k, the oldest segment file is deleted behind the queue's back
};
inline constexpr int kFaultKinds = 16;
const char* to_string(FaultKind kind) noexcept;

struct Schedule {
  FaultKind kind = FaultKind::none;
  std::uint64_t k = 0;      // which operation (1-based), or step for vanish
  std::uint64_t times = 1;  // consecutive operations of the kind that fail (a burst)
  std::uint64_t seed = 1;   // the simulator's seed: torn prefixes, perturbation
  // Then, once the workload's steps are done, the power is cut (before the queue is
  // closed): what the fault made of durability shows — an item acknowledged under
  // SyncPolicy::always whose write or sync had in fact failed is gone after the reboot.
  bool cut_at_end = false;
  std::string describe() const;
  std::string label() const;  // the kind, and ", then power cut" if so: a row of the tally
};

// What a single-threaded workload does, step by step.
// commit_at: commit(position) through the middle of what this open received (manual_commit).
enum class StepKind { send, recv, recv_many, flush, commit, commit_at, reopen };
struct Step {
  StepKind kind = StepKind::send;
  int producer = 0;   // send: which producer handle
  int count = 1;      // items sent, or received at most
  std::size_t pad = 40;
};

struct Workload {
  std::string name;
  Options options;  // directory and file_system are the explorer's
  int producers = 1;
  bool threaded = false;
  std::vector<Step> steps;                // single-threaded
  std::uint32_t items_per_producer = 0;   // threaded: each producer sends this many,
  std::uint32_t commit_every = 0;         // a concurrent receiver takes them (commits)
  bool commit_at_positions = false;       // threaded: every other commit is a commit_at
  // threaded: false, nobody receives until the senders are done, so every acknowledged item
  // is still on disk when the steps end (and a power cut then shows one that was not durable).
  bool receive_while_sending = true;
  std::string describe() const;
};

// The small workloads (single-threaded, exhaustive) and the larger ones (threaded, random).
std::vector<Workload> small_workloads();
std::vector<Workload> concurrent_workloads();

struct RunResult {
  std::vector<std::string> violations;  // empty: every promise held
  bool fault_fired = false;             // the schedule's fault happened
  std::map<std::string, std::uint64_t> ops;  // fault-free runs: operations by kind
  std::uint64_t mutating_ops = 0;
};

// Runs `w` once under `s` and checks it. `trace`: every file-system call is printed to
// stderr (for replaying one schedule).
RunResult run(const Workload& w, const Schedule& s, bool trace = false);
// The kind named `name` (as to_string says it, or its enumerator name), if any.
std::optional<FaultKind> fault_kind(const std::string& name);

// Counts per fault kind: schedules run, those whose fault fired, and violations.
struct Tally {
  std::uint64_t schedules = 0, fired = 0, violations = 0;
};
struct Summary {
  std::map<std::string, Tally> by_kind;  // by Schedule::label()
  std::vector<std::string> failures;  // "workload | schedule | violation", the first ones
  std::uint64_t schedules() const;
  std::uint64_t violations() const;
  void add(const Summary& other);
};

// Every schedule of every kind for `w`: each k up to the fault-free run's count of that
// kind, for bursts of 1 and 3 (3 outlasts the read retries), every power-cut point (both
// modes), a vanish before every step. `stride` > 1 takes every stride-th k only (a
// bounded slice); `progress` is told each run.
Summary explore_exhaustive(const Workload& w, std::uint64_t stride,
                           const std::function<void(const Schedule&, const RunResult&)>& progress = {});
// `runs` random schedules for `w` (kinds, k and seeds drawn from `seed`), with the
// simulator perturbing thread interleavings.
Summary explore_random(const Workload& w, std::uint64_t runs, std::uint64_t seed,
                       const std::function<void(const Schedule&, const RunResult&)>& progress = {});

// The table docs/testing.md shows: schedules and violations per fault kind.
void print_summary(std::ostream& os, const Summary& s);

}  // namespace hopper::explore
