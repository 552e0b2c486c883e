#include "explorer.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iomanip>
#include <mutex>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <hopper/hopper.hpp>

#include "storage/format.hpp"
#include "sim_fs.hpp"
#include "tagged.hpp"
#include "test_util.hpp"

namespace hopper::explore {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::SimFault;
using test::SimFileSystem;
using test::SimOp;
using test::Tag;
using test::tag_text;
using test::tagged;
using test::parse_tag;
using test::Unsynced;

const fs::path kDir = "/q";

// ---- what a run did ----------------------------------------------------------------------

// Everything the oracle needs, recorded as the run goes. Thread-safe (one mutex).
struct Log {
  std::mutex mu;
  std::map<Tag, Errc> sent;                  // each send's answer
  std::set<Tag> acked_before_cut;            // acknowledged while the machine still ran
  struct Delivery {
    int epoch;
    Tag tag;
    std::uint64_t position = 0;  // Receiver::position() just after it; 0 inside a batch
  };
  std::vector<Delivery> delivered;
  // Items delivered before a commit() that returned ok, with the length of `delivered`
  // then: a delivery after that point is a committed item coming back.
  std::map<Tag, std::size_t> committed;
  std::vector<std::string> violations;
  std::uint64_t counted_losses = 0;          // dropped, unreadable, corrupt, missing: all epochs
  std::uint64_t counted_dropped_unreadable = 0;  // of those, dropped and unreadable
  std::uint64_t counted_missing = 0;             // of those, missing at an open
  std::set<int> crash_epochs;                // epochs that began after a power cut
  std::set<int> dirty_epochs;                // epochs that began after a close a fault hit
  std::set<int> cursor_lost_epochs;          // epochs whose open could not read CURSOR (it
                                             // says so): delivery restarts at the oldest page
  bool lossy = false;                        // the schedule may lose acknowledged items

  void violation(std::string v) {
    std::lock_guard lk(mu);
    if (violations.size() < 20) violations.push_back(std::move(v));
  }
};

// A queue and its handles for one epoch (open to close).
struct Open {
  std::optional<Channel<std::string>> ch;
  std::vector<Sender<std::string>> senders;
};

class Runner {
 public:
  struct Wait {
    std::chrono::milliseconds timeout;
  };

  Runner(const Workload& w, const Schedule& s, bool trace)
      : w_(w), s_(s), sim_(SimFileSystem::create(s.seed)) {
    trace_ = trace;
    o_ = w.options;
    o_.directory = kDir;
    o_.file_system = sim_;
    // Concurrent workloads: the simulator pauses before some calls (by the seed), so that
    // each seed interleaves the threads differently.
    if (w.threaded) sim_->perturb(0.2);
    if (trace)
      sim_->set_trace([this](SimOp op, const fs::path& p, std::uint64_t n, bool failed) {
        std::fprintf(stderr, "    [epoch %d] %s #%llu %s%s\n", epoch_, std::string(test::to_string(op)).c_str(),
                     static_cast<unsigned long long>(n), p.c_str(), failed ? "  FAILED" : "");
      });
  }

  RunResult go();

 private:
  // Opens the directory; false (recorded) when it cannot be opened now.
  bool open_epoch();
  void close_epoch();
  void check_stats(const Stats& st, const char* where);
  void record_delivery(const std::string& item, bool last_of_batch = true);
  void send_one(Sender<std::string>& s, int producer, std::uint32_t index, std::size_t pad, Wait wait);
  // through_middle: commit(position) through the middle of what this open received.
  void commit(bool through_middle = false);
  void run_steps();
  void run_threaded();
  void final_phase();
  void resume(int p, std::uint32_t n, const char* where);
  void check_files(const char* where);
  void check_log();
  void arm();
  bool dead() const { return sim_->frozen(); }

  const Workload& w_;
  const Schedule& s_;
  std::shared_ptr<SimFileSystem> sim_;
  Options o_;
  Open q_;
  Log log_;
  int epoch_ = 0;
  std::uint64_t disk_allowance_ = 0;  // disk_bytes at open, when a shutdown wrote past the budget
  std::vector<std::uint32_t> next_index_;
  bool cut_ = false;  // the power was cut (the machine rebooted since)
  int idle_ = 0;
  std::uint64_t commits_made_ = 0;  // threaded: commits so far (every other one is a commit_at)      // threaded: receives that found nothing once the senders were done
  std::uint64_t mutating_at_close_ = 0;
  bool trace_ = false;
};

void Runner::arm() {
  auto fault = [&](SimOp op, int err, bool partial = false, std::string path = {}) {
    sim_->arm(SimFault{op, s_.k, s_.times, err, partial, std::move(path)});
  };
  switch (s_.kind) {
    case FaultKind::none:
    case FaultKind::vanish: break;
    case FaultKind::append_enospc: fault(SimOp::append, ENOSPC); break;
    case FaultKind::append_eio: fault(SimOp::append, EIO); break;
    case FaultKind::append_short: fault(SimOp::append, ENOSPC, true); break;
    case FaultKind::sync_eio: fault(SimOp::sync, EIO); break;
    case FaultKind::dir_sync_eio: fault(SimOp::dir_sync, EIO); break;
    case FaultKind::open_enoent: fault(SimOp::open, ENOENT); break;
    case FaultKind::open_eio: fault(SimOp::open, EIO); break;
    case FaultKind::read_eio: fault(SimOp::read, EIO); break;
    case FaultKind::remove_eio: fault(SimOp::remove, EIO); break;
    case FaultKind::rename_eio: fault(SimOp::rename, EIO); break;
    case FaultKind::truncate_eio: fault(SimOp::truncate, EIO); break;
    case FaultKind::short_then_truncate_eio:
      fault(SimOp::append, ENOSPC, true);
      sim_->arm(SimFault{SimOp::truncate, 1, s_.times, EIO, false, {}});
      break;
    case FaultKind::power_cut:
    case FaultKind::power_cut_torn: sim_->power_cut_after(s_.k); break;
  }
}

bool Runner::open_epoch() {
  Result<Channel<std::string>> ch = Status(Errc::invalid_argument, "not opened");
  try {
    ch = channel<std::string>(o_);
  } catch (const std::exception& e) {
    log_.violation(std::string("channel() threw: ") + e.what());
    return false;
  }
  if (!ch.ok()) {
    // The faults explored are on files, never on listing, locking or creating the
    // directory: an open must get past every one of them (a segment or cursor it cannot
    // read is reported and skipped), unless the machine has stopped.
    if (!dead()) log_.violation("channel() failed: " + ch.status().message());
    return false;
  }
  ++epoch_;
  q_.ch.emplace(std::move(*ch));
  q_.senders.clear();
  for (int p = 0; p < w_.producers; ++p) q_.senders.push_back(q_.ch->sender);
  const Stats st = q_.ch->receiver.stats();
  bool cursor_lost = false;
  for (const std::string& line : q_.ch->receiver.damage_report())
    if (line.find(std::string("/") + format::kCursorFileName + ":") != std::string::npos) cursor_lost = true;
  {
    std::lock_guard lk(log_.mu);
    log_.counted_losses += st.items_missing;
    log_.counted_missing += st.items_missing;
    if (cursor_lost) log_.cursor_lost_epochs.insert(epoch_);
  }
  disk_allowance_ = st.disk_bytes;
  return true;
}

void Runner::close_epoch() {
  if (!q_.ch) return;
  const Stats st = q_.ch->receiver.stats();
  {
    std::lock_guard lk(log_.mu);
    log_.counted_losses += st.items_dropped + st.items_unreadable + st.corrupt_items;
    log_.counted_dropped_unreadable += st.items_dropped + st.items_unreadable;
  }
  const std::uint64_t before = sim_->faults_injected();
  const bool was_dead = dead();
  q_.senders.clear();
  q_.ch.reset();  // the last handle: the queue writes what it holds
  // A close the fault hit (or a dead machine) is no clean shutdown: redelivery and loss of
  // what was only in memory are possible, and must be counted at the next open.
  if (sim_->faults_injected() != before || was_dead) log_.dirty_epochs.insert(epoch_ + 1);
}

void Runner::check_stats(const Stats& st, const char* where) {
  if (st.memory_bytes > o_.max_memory_bytes)
    log_.violation(std::string(where) + ": memory_bytes " + std::to_string(st.memory_bytes) + " over the budget");
  const std::uint64_t disk_limit = std::max(o_.max_disk_bytes, disk_allowance_);
  if (st.disk_bytes > disk_limit)
    log_.violation(std::string(where) + ": disk_bytes " + std::to_string(st.disk_bytes) + " over " +
                   std::to_string(disk_limit));
}

void Runner::record_delivery(const std::string& item, bool last_of_batch) {
  auto t = parse_tag(item);
  if (!t) {
    log_.violation("received an item nobody sent: \"" + item.substr(0, 40) + "\"");
    return;
  }
  if (trace_) std::fprintf(stderr, "  delivered %s in epoch %d\n", tag_text(*t).c_str(), epoch_);
  const std::uint64_t position = last_of_batch ? q_.ch->receiver.position() : 0;
  std::lock_guard lk(log_.mu);
  log_.delivered.push_back({epoch_, *t, position});
}

void Runner::send_one(Sender<std::string>& s, int producer, std::uint32_t index, std::size_t pad, Wait wait) {
  Status st;
  try {
    st = s.send_for(tagged(producer, index, pad), wait.timeout);
  } catch (const std::exception& e) {
    log_.violation(std::string("send threw: ") + e.what());
    return;
  }
  const bool dead_now = dead();
  std::lock_guard lk(log_.mu);
  const Tag tag{static_cast<std::uint32_t>(producer), index};
  log_.sent[tag] = st.code();
  if (st.ok() && !dead_now && !cut_) log_.acked_before_cut.insert(tag);
  switch (st.code()) {
    case Errc::ok:
    case Errc::full:
    case Errc::timeout:
    case Errc::io_error: break;
    default:
      if (log_.violations.size() < 20) log_.violations.push_back("send answered " + st.message());
  }
}

void Runner::commit(bool through_middle) {
  // What this handle has received in this epoch is committed (items of earlier epochs that
  // were not delivered again yet are not: they come back first) — or, through the middle,
  // only the first half of it: the rest stays received and not committed.
  std::vector<Tag> so_far;
  std::vector<std::uint64_t> positions;
  {
    std::lock_guard lk(log_.mu);
    for (const auto& d : log_.delivered)
      if (d.epoch == epoch_) {
        so_far.push_back(d.tag);
        positions.push_back(d.position);
      }
  }
  std::size_t upto = so_far.size();
  Status st;
  if (through_middle) {
    upto = so_far.size() / 2;
    while (upto > 0 && positions[upto - 1] == 0) --upto;  // a position known: a batch's last
    if (upto == 0) return;
    st = q_.ch->receiver.commit(positions[upto - 1]);
  } else {
    st = q_.ch->receiver.commit();
  }
  if (st.ok() && !dead()) {
    if (trace_) std::fprintf(stderr, "  committed %zu items of epoch %d\n", upto, epoch_);
    std::lock_guard lk(log_.mu);
    for (std::size_t i = 0; i < upto; ++i) log_.committed.emplace(so_far[i], log_.delivered.size());
  } else if (st.code() == Errc::invalid_argument) {
    log_.violation("commit(position) refused a position the receiver gave: " + st.message());
  }
}

void Runner::run_steps() {
  for (std::size_t i = 0; i < w_.steps.size(); ++i) {
    if (dead()) return;  // the machine stopped: nothing more runs
    if (s_.kind == FaultKind::vanish && s_.k == i + 1) {
      // An operator or a cleaner deletes the oldest segment file.
      auto files = sim_->files(kDir);
      for (const auto& [name, size] : files) {
        if (format::parse_segment_file_name(name)) {
          sim_->vanish(kDir / name);
          break;
        }
      }
    }
    const Step& step = w_.steps[i];
    if (!q_.ch) {
      if (step.kind != StepKind::reopen) continue;
      if (!open_epoch()) continue;
    }
    try {
      switch (step.kind) {
        case StepKind::send:
          for (int n = 0; n < step.count; ++n)
            send_one(q_.senders[static_cast<std::size_t>(step.producer)], step.producer,
                     next_index_[static_cast<std::size_t>(step.producer)]++, step.pad, Wait{100ms});
          break;
        case StepKind::recv:
          for (int n = 0; n < step.count; ++n) {
            std::string v;
            Status st = q_.ch->receiver.recv_for(v, 20ms);
            if (!st.ok()) break;
            record_delivery(v);
          }
          break;
        case StepKind::recv_many: {
          std::vector<std::string> got;
          if (q_.ch->receiver.try_recv_many(got, static_cast<std::size_t>(step.count)).ok())
            for (std::size_t k = 0; k < got.size(); ++k) record_delivery(got[k], k + 1 == got.size());
          break;
        }
        case StepKind::flush: (void)q_.senders[0].flush(); break;
        case StepKind::commit: commit(); break;
        case StepKind::commit_at: commit(true); break;
        case StepKind::reopen:
          close_epoch();
          if (dead()) return;
          (void)open_epoch();
          break;
      }
    } catch (const std::exception& e) {
      log_.violation(std::string("step threw: ") + e.what());
    }
    if (q_.ch) check_stats(q_.ch->receiver.stats(), "after a step");
  }
}

void Runner::run_threaded() {
  if (!q_.ch) return;
  std::atomic<int> running{w_.producers};
  std::vector<std::thread> threads;
  for (int p = 0; p < w_.producers; ++p) {
    threads.emplace_back([this, p, &running, s = std::move(q_.senders[static_cast<std::size_t>(p)])]() mutable {
      for (std::uint32_t i = 0; i < w_.items_per_producer && !dead(); ++i) send_one(s, p, i, 30 + i % 50, Wait{2s});
      s.close();
      --running;
    });
  }
  q_.senders.clear();
  q_.ch->sender.close();  // only the producers' copies remain
  // The receiver, concurrently: until every sender is gone and all is read (closed), or
  // the machine stopped and nothing more comes.
  std::uint32_t since_commit = 0;
  if (!w_.receive_while_sending) {
    for (auto& t : threads) t.join();
    return;  // the final phase receives
  }
  for (;;) {
    std::string v;
    Status st = q_.ch->receiver.recv_for(v, 50ms);
    if (st.ok()) {
      record_delivery(v);
      if (w_.commit_every > 0 && ++since_commit >= w_.commit_every) {
        since_commit = 0;
        commit(w_.commit_at_positions && (commits_made_++ % 2 == 1));
      }
      check_stats(q_.ch->receiver.stats(), "while receiving");
      continue;
    }
    if (st.code() == Errc::closed) break;
    if (running == 0 && (dead() || st.code() == Errc::timeout)) {
      // Senders are done; the rest is what the final phase takes.
      if (dead()) break;
      static constexpr int kIdleRounds = 40;  // 2 s with nothing coming
      if (++idle_ >= kIdleRounds) break;
    }
  }
  for (auto& t : threads) t.join();
}

// Drains everything due, waiting for retries as needed (no manual call), then sends `n`
// new items as producer `p` and receives them: progress once the disk is healthy.
void Runner::resume(int p, std::uint32_t n, const char* where) {
  Receiver<std::string>& r = q_.ch->receiver;
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    std::string v;
    Status st = r.recv_for(v, 20ms);
    if (st.ok()) {
      record_delivery(v);
      continue;
    }
    const Stats now = r.stats();
    if (now.memory_items == 0 && now.disk_items == 0) break;
    if (std::chrono::steady_clock::now() > give_up) {
      log_.violation(std::string(where) + ": " + std::to_string(now.memory_items + now.disk_items) +
                     " items due, not delivered within 10 s (" + st.message() + ")");
      return;
    }
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    Status st = q_.senders[0].send_for(tagged(p, i, 20), 5s);
    if (!st.ok()) {
      log_.violation(std::string(where) + ", send " + std::to_string(i) + ": " + st.message());
      return;
    }
    std::lock_guard lk(log_.mu);
    const Tag tag{static_cast<std::uint32_t>(p), i};
    log_.sent[tag] = Errc::ok;
    log_.acked_before_cut.insert(tag);
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    std::string v;
    Status st = r.recv_for(v, 5s);
    if (!st.ok()) {
      log_.violation(std::string(where) + ", receive " + std::to_string(i) + ": " + st.message());
      return;
    }
    record_delivery(v);
    if (v != tagged(p, i, 20))
      log_.violation(std::string(where) + ", received " + v.substr(0, 30) + " for " + std::to_string(p) + "." +
                     std::to_string(i));
  }
  if (!r.commit().ok()) log_.violation(std::string(where) + ": commit on a healthy disk failed");
}

// The accounting equals the directory, and a drained, committed queue holds no segment
// file beyond the one a syncing writer keeps for more appends — within a few retries'
// time of the disk being healthy (a failed unlink is retried by later calls).
void Runner::check_files(const char* where) {
  Receiver<std::string>& r = q_.ch->receiver;
  // Files the open could not read are left in place and counted (their size, if the open
  // could learn it); the damage report names them.
  std::set<std::string> held;
  for (const std::string& line : r.damage_report()) {
    if (line.find("left in place") == std::string::npos) continue;
    const std::string path = line.substr(0, line.find(": "));
    held.insert(fs::path(path).filename().native());
  }
  const std::uint64_t kept = o_.sync == SyncPolicy::none ? 0 : 1;
  const auto give_up = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    std::string v;
    if (r.try_recv(v).ok()) record_delivery(v);  // calls that retry what failed
    const Stats st = r.stats();
    std::uint64_t on_disk = 0, files = 0, held_bytes = 0;
    for (const auto& [name, size] : sim_->files(kDir)) {
      if (!format::parse_segment_file_name(name)) continue;
      if (held.count(name)) {
        held_bytes += size;
        continue;
      }
      on_disk += size, ++files;
    }
    const bool accounted = st.segments == files + held.size() && st.disk_bytes >= on_disk &&
                           st.disk_bytes <= on_disk + held_bytes;
    if (accounted && files <= kept) return;
    if (std::chrono::steady_clock::now() > give_up) {
      log_.violation(std::string(where) + ": Stats says " + std::to_string(st.segments) + " segments of " +
                     std::to_string(st.disk_bytes) + " bytes; the directory holds " + std::to_string(files) +
                     " of " + std::to_string(on_disk) + " (at most " + std::to_string(kept) + " expected, drained)");
      return;
    }
    std::this_thread::sleep_for(5ms);
  }
}

void Runner::final_phase() {
  if (q_.ch && !dead() && !s_.cut_at_end) {
    // The disk is healthy again: the same handles go on, with no manual call and no reopen.
    sim_->clear_faults();
    if (!w_.threaded) {
      resume(w_.producers, 5, "after the faults, without a reopen");
      check_files("after the faults, without a reopen");
    }
  }
  close_epoch();
  mutating_at_close_ = sim_->mutating_ops();  // the last shutdown belongs to the workload
  cut_ = cut_ || dead();  // a cut may also come during that last shutdown
  if (cut_) {
    // Power loss and reboot: what was durable stays.
    sim_->reboot(s_.kind == FaultKind::power_cut_torn ? Unsynced::random_prefix : Unsynced::dropped);
    log_.crash_epochs.insert(epoch_ + 1);
  }
  sim_->clear_faults();  // the disk is healthy again
  if (!open_epoch()) {
    log_.violation("the directory cannot be opened once the disk is healthy");
    return;
  }
  resume(w_.producers + 1, 5, "after a reopen");
  check_files("after a reopen");
  close_epoch();
  // Drained and committed: a clean reopen finds nothing, and no segment file is left.
  if (!open_epoch()) {
    log_.violation("the drained directory cannot be reopened");
    return;
  }
  std::string v;
  if (q_.ch->receiver.try_recv(v).ok()) log_.violation("a drained, committed queue delivered " + v.substr(0, 30));
  q_.senders.clear();
  q_.ch.reset();
  for (const auto& [name, size] : sim_->files(kDir))
    if (format::parse_segment_file_name(name)) log_.violation("after a full drain " + name + " is still there");
}

void Runner::check_log() {
  std::lock_guard lk(log_.mu);
  auto bad = [&](std::string v) {
    if (log_.violations.size() < 20) log_.violations.push_back(std::move(v));
  };
  // Per epoch: no duplicates, each producer's items in increasing order.
  std::map<std::pair<int, int>, std::uint32_t> last;  // (epoch, producer) -> last index + 1
  std::map<Tag, int> first_epoch;                     // first delivery of each item
  for (std::size_t i = 0; i < log_.delivered.size(); ++i) {
    const auto& d = log_.delivered[i];
    auto sent = log_.sent.find(d.tag);
    if (sent == log_.sent.end()) {
      bad("delivered " + tag_text(d.tag) + ", which was never sent");
      continue;
    }
    auto& l = last[{d.epoch, d.tag.producer}];
    if (l > d.tag.index) bad("epoch " + std::to_string(d.epoch) + ": " + tag_text(d.tag) + " out of order or twice");
    l = d.tag.index + 1;
    // (Across epochs an item may first come after later ones: a page skipped as unreadable
    // comes back after a restart that can read it, with the other uncommitted items.)
    auto [it, fresh] = first_epoch.emplace(d.tag, d.epoch);
    if (fresh) continue;
    // Delivered again, in a later epoch: only across a crash, a close a fault hit, or
    // (manual_commit) when it was not committed; never once committed — unless an open
    // could not read CURSOR at all (it says so, and delivers from the oldest page).
    bool cursor_lost = false;
    for (int e = it->second + 1; e <= d.epoch; ++e) cursor_lost |= log_.cursor_lost_epochs.count(e) > 0;
    if (auto c = log_.committed.find(d.tag); c != log_.committed.end() && c->second <= i && !cursor_lost)
      bad(tag_text(d.tag) + " was committed, and came back");
    bool excused = w_.options.manual_commit || cursor_lost;
    for (int e = it->second + 1; e <= d.epoch; ++e)
      if (log_.crash_epochs.count(e) || log_.dirty_epochs.count(e)) excused = true;
    if (!excused) bad(tag_text(d.tag) + " delivered again after a clean restart");
  }
  // Loss: every acknowledged item is delivered, unless the schedule may lose it and the
  // queue counted a loss for it.
  std::uint64_t lost = 0;
  std::string example;
  const bool always = w_.options.sync == SyncPolicy::always;
  for (const auto& [tag, code] : log_.sent) {
    if (code != Errc::ok || first_epoch.count(tag)) continue;
    // After a power cut, only SyncPolicy::always promised anything, and only for items
    // acknowledged before it.
    if (cut_ && (!always || !log_.acked_before_cut.count(tag))) continue;
    ++lost;
    if (example.empty()) example = tag_text(tag);
  }
  if (lost > 0 && always) {
    // Under SyncPolicy::always an acknowledged item is on stable storage: a power cut, a
    // failed write or sync, a close under faults lose none of them. Only what the queue
    // could not help — a segment deleted behind its back, reads failing past the retries,
    // drop_oldest — and counted as dropped or unreadable (a vanished segment: missing at
    // the next open) may be gone. Pages the disk zeroed after a failed sync are no excuse:
    // their senders must have been told.
    const bool drops = w_.options.when_full == FullPolicy::drop_oldest;
    // (A segment skipped at open is counted missing there.)
    const std::uint64_t allowed = (log_.lossy || drops ? log_.counted_dropped_unreadable : 0) +
                                  (log_.lossy ? log_.counted_missing : 0);
    if (lost > allowed)
      bad(std::to_string(lost) + " items acknowledged under SyncPolicy::always lost (e.g. " + example + "); " +
          std::to_string(allowed) + " may be, counted as dropped or unreadable");
  } else if (lost > 0) {
    const bool may_lose = log_.lossy || !log_.dirty_epochs.empty() || w_.options.when_full == FullPolicy::drop_oldest;
    if (!may_lose) {
      bad(std::to_string(lost) + " acknowledged items lost (e.g. " + example + ") though the schedule may lose none");
    } else if (lost > log_.counted_losses) {
      bad(std::to_string(lost) + " acknowledged items lost (e.g. " + example + "), but only " +
          std::to_string(log_.counted_losses) + " counted as dropped, unreadable, corrupt or missing");
    }
  }
}

RunResult Runner::go() {
  RunResult result;
  next_index_.assign(static_cast<std::size_t>(w_.producers), 0);
  // Losses the schedule permits (counted): a segment deleted behind the queue's back, and
  // reads failing past the retries.
  log_.lossy = s_.kind == FaultKind::vanish || (s_.kind == FaultKind::read_eio && s_.times >= 3) ||
               (s_.kind == FaultKind::open_enoent && s_.times >= 3) || (s_.kind == FaultKind::open_eio && s_.times >= 3);
  arm();
  if (open_epoch()) {
    if (w_.threaded) {
      run_threaded();
    } else {
      run_steps();
    }
  }
  if (s_.cut_at_end && !dead()) sim_->power_cut_now();
  cut_ = dead();
  result.fault_fired = sim_->faults_injected() > 0 || cut_ ||
                       (s_.kind == FaultKind::vanish && s_.k <= w_.steps.size());
  for (std::size_t k = 0; k < test::kSimOpKinds; ++k) {
    result.ops[std::string(test::to_string(static_cast<SimOp>(k)))] = sim_->counts()[k];
  }
  final_phase();
  result.mutating_ops = mutating_at_close_;
  check_log();
  result.violations = log_.violations;
  return result;
}

}  // namespace

const char* to_string(FaultKind kind) noexcept {
  switch (kind) {
    case FaultKind::none: return "none";
    case FaultKind::append_enospc: return "append ENOSPC";
    case FaultKind::append_eio: return "append EIO";
    case FaultKind::append_short: return "append short";
    case FaultKind::sync_eio: return "fdatasync EIO";
    case FaultKind::dir_sync_eio: return "dir fsync EIO";
    case FaultKind::open_enoent: return "open ENOENT";
    case FaultKind::open_eio: return "open EIO";
    case FaultKind::read_eio: return "read EIO";
    case FaultKind::remove_eio: return "unlink EIO";
    case FaultKind::rename_eio: return "rename EIO";
    case FaultKind::truncate_eio: return "truncate EIO";
    case FaultKind::short_then_truncate_eio: return "short, cut fails";
    case FaultKind::power_cut: return "power cut";
    case FaultKind::power_cut_torn: return "power cut, torn";
    case FaultKind::vanish: return "segment vanishes";
  }
  return "?";
}

std::string Schedule::describe() const {
  std::ostringstream os;
  os << to_string(kind);
  if (kind != FaultKind::none) os << " at " << (kind == FaultKind::vanish ? "step " : "op ") << k;
  if (times > 1) os << " x" << times;
  if (cut_at_end) os << ", then power cut";
  os << " seed " << seed;
  return os.str();
}

std::string Schedule::label() const { return std::string(to_string(kind)) + (cut_at_end ? ", then power cut" : ""); }

std::string Workload::describe() const {
  std::ostringstream os;
  os << name << " {memory " << options.max_memory_bytes << ", disk " << options.max_disk_bytes << ", segment "
     << options.segment_bytes << ", page " << options.page_bytes << ", sync "
     << (options.sync == SyncPolicy::none ? "none" : options.sync == SyncPolicy::interval ? "interval" : "always")
     << ", " << (options.when_full == FullPolicy::block ? "block" : options.when_full == FullPolicy::fail ? "fail" : "drop_oldest")
     << (options.manual_commit ? ", manual commit" : "") << ", " << producers << " producer(s)}";
  return os.str();
}

RunResult run(const Workload& w, const Schedule& s, bool trace) {
  // A run that hangs is a violation too: this names it and stops the process.
  test::Watchdog dog(std::chrono::seconds(120), "fault explorer: " + w.name + " | " + s.describe());
  Runner r(w, s, trace);
  return r.go();
}

std::optional<FaultKind> fault_kind(const std::string& name) {
  for (int k = 0; k < kFaultKinds; ++k)
    if (name == to_string(static_cast<FaultKind>(k))) return static_cast<FaultKind>(k);
  return std::nullopt;
}

std::uint64_t Summary::schedules() const {
  std::uint64_t n = 0;
  for (const auto& [k, t] : by_kind) n += t.schedules;
  return n;
}
std::uint64_t Summary::violations() const {
  std::uint64_t n = 0;
  for (const auto& [k, t] : by_kind) n += t.violations;
  return n;
}
void Summary::add(const Summary& o) {
  for (const auto& [k, t] : o.by_kind) {
    by_kind[k].schedules += t.schedules;
    by_kind[k].fired += t.fired;
    by_kind[k].violations += t.violations;
  }
  for (const auto& f : o.failures)
    if (failures.size() < 50) failures.push_back(f);
}

namespace {

void tally(Summary& sum, const Workload& w, const Schedule& s, const RunResult& r) {
  Tally& t = sum.by_kind[s.label()];
  ++t.schedules;
  t.fired += r.fault_fired ? 1 : 0;
  if (!r.violations.empty()) {
    ++t.violations;
    if (sum.failures.size() < 50) sum.failures.push_back(w.name + " | " + s.describe() + " | " + r.violations.front());
  }
}

bool durability_fault(FaultKind k) {
  return k == FaultKind::append_enospc || k == FaultKind::append_eio || k == FaultKind::append_short ||
         k == FaultKind::short_then_truncate_eio || k == FaultKind::sync_eio || k == FaultKind::dir_sync_eio;
}

struct KindOp {
  FaultKind kind;
  const char* op;  // the simulator's name of the counted kind
};
const KindOp kCounted[] = {
    {FaultKind::append_enospc, "append"}, {FaultKind::append_eio, "append"},   {FaultKind::append_short, "append"},
    {FaultKind::sync_eio, "sync"},        {FaultKind::dir_sync_eio, "dir_sync"}, {FaultKind::open_enoent, "open"},
    {FaultKind::open_eio, "open"},        {FaultKind::read_eio, "read"},       {FaultKind::remove_eio, "remove"},
    {FaultKind::rename_eio, "rename"},    {FaultKind::truncate_eio, "truncate"},
    {FaultKind::short_then_truncate_eio, "append"},
};

}  // namespace

Summary explore_exhaustive(const Workload& w, std::uint64_t stride,
                           const std::function<void(const Schedule&, const RunResult&)>& progress) {
  Summary sum;
  stride = std::max<std::uint64_t>(stride, 1);
  auto one = [&](const Schedule& s) {
    RunResult r = run(w, s);
    tally(sum, w, s, r);
    if (progress) progress(s, r);
  };
  // The fault-free run counts the operations of each kind.
  const Schedule base;
  const RunResult baseline = run(w, base);
  tally(sum, w, base, baseline);
  if (progress) progress(base, baseline);
  for (const KindOp& ko : kCounted) {
    const std::uint64_t n = baseline.ops.at(ko.op);
    for (std::uint64_t times : {1, 3}) {
      for (std::uint64_t k = 1; k <= n; k += stride) one(Schedule{ko.kind, k, times, k});
    }
    // A failed write or sync whose consequence only a power loss shows: once more each,
    // with the power cut when the steps are done.
    if (durability_fault(ko.kind))
      for (std::uint64_t k = 1; k <= n; k += stride) one(Schedule{ko.kind, k, 1, k, true});
  }
  for (std::uint64_t k = 1; k <= baseline.mutating_ops; k += stride) {
    one(Schedule{FaultKind::power_cut, k, 1, k});
    one(Schedule{FaultKind::power_cut_torn, k, 1, k * 7919 + 1});
  }
  if (!w.threaded)
    for (std::uint64_t step = 1; step <= w.steps.size(); step += stride) one(Schedule{FaultKind::vanish, step, 1, step});
  return sum;
}

Summary explore_random(const Workload& w, std::uint64_t runs, std::uint64_t seed,
                       const std::function<void(const Schedule&, const RunResult&)>& progress) {
  Summary sum;
  std::mt19937_64 rng(seed);
  const Schedule base{FaultKind::none, 0, 1, seed};
  const RunResult baseline = run(w, base);
  tally(sum, w, base, baseline);
  if (progress) progress(base, baseline);
  for (std::uint64_t i = 0; i < runs; ++i) {
    Schedule s;
    s.seed = rng();
    const int pick = static_cast<int>(rng() % (std::size(kCounted) + 2));
    if (pick < static_cast<int>(std::size(kCounted))) {
      const KindOp& ko = kCounted[pick];
      const std::uint64_t n = std::max<std::uint64_t>(baseline.ops.at(ko.op), 1);
      s.kind = ko.kind;
      s.k = 1 + rng() % (n + n / 4 + 1);
      s.times = rng() % 4 == 0 ? 3 : 1;
      // A workload that keeps every item on disk exists to be cut: always, after such a fault.
      s.cut_at_end = durability_fault(s.kind) && (!w.receive_while_sending || rng() % 2 == 0);
    } else {
      s.kind = pick == static_cast<int>(std::size(kCounted)) ? FaultKind::power_cut : FaultKind::power_cut_torn;
      s.k = 1 + rng() % std::max<std::uint64_t>(baseline.mutating_ops, 1);
    }
    RunResult r = run(w, s);
    tally(sum, w, s, r);
    if (progress) progress(s, r);
  }
  return sum;
}

void print_summary(std::ostream& os, const Summary& s) {
  os << std::left << std::setw(32) << "fault" << std::right << std::setw(11) << "schedules" << std::setw(9)
     << "fired" << std::setw(12) << "violations" << "\n";
  for (const auto& [label, t] : s.by_kind)
    os << std::left << std::setw(32) << label << std::right << std::setw(11) << t.schedules
       << std::setw(9) << t.fired << std::setw(12) << t.violations << "\n";
  os << std::left << std::setw(32) << "total" << std::right << std::setw(11) << s.schedules() << std::setw(9) << ""
     << std::setw(12) << s.violations() << "\n";
  for (const auto& f : s.failures) os << "  violation: " << f << "\n";
}

}  // namespace hopper::explore
