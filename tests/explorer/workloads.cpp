// The explorer's workloads: small enough that every fault point of every kind can be
// tried (single-threaded), and a few concurrent ones for random schedules. Between them
// they cover each SyncPolicy, manual and automatic commit, every FullPolicy, spilling
// and memory-only queues, flush, commit and reopen.
#include "explorer.hpp"

namespace hopper::explore {
namespace {

Options base() {
  Options o;
  o.max_memory_bytes = 600;  // a few items in memory, then spilling
  o.max_disk_bytes = 16 << 10;
  o.segment_bytes = 2 << 10;  // a few pages per segment: rotations happen
  o.page_bytes = 256;
  o.when_full = FullPolicy::fail;
  return o;
}

Step send(int n, int producer = 0, std::size_t pad = 40) { return Step{StepKind::send, producer, n, pad}; }
Step recv(int n) { return Step{StepKind::recv, 0, n, 0}; }
Step recv_many(int n) { return Step{StepKind::recv_many, 0, n, 0}; }
Step flush() { return Step{StepKind::flush, 0, 0, 0}; }
Step commit() { return Step{StepKind::commit, 0, 0, 0}; }
Step commit_at() { return Step{StepKind::commit_at, 0, 0, 0}; }
Step reopen() { return Step{StepKind::reopen, 0, 0, 0}; }

}  // namespace

std::vector<Workload> small_workloads() {
  std::vector<Workload> all;
  {
    Workload w{"spill, sync none", base(), 1};
    w.steps = {send(12), recv(4), send(12), flush(), recv_many(10), reopen(), send(8), recv(40)};
    all.push_back(w);
  }
  {
    Workload w{"always, 2 producers", base(), 2};
    w.options.sync = SyncPolicy::always;
    w.options.page_bytes = 64;
    w.options.segment_bytes = 1 << 10;
    // It ends with items not yet received: a power cut after the steps finds them on disk.
    w.steps = {send(3, 0), send(3, 1), recv(2), send(3, 0), recv(5), reopen(), send(2, 1), commit(), recv(10),
               send(3, 0), send(2, 1)};
    all.push_back(w);
  }
  {
    Workload w{"interval, manual commit", base(), 1};
    w.options.sync = SyncPolicy::interval;
    w.options.sync_interval = std::chrono::milliseconds(1);
    w.options.manual_commit = true;
    w.steps = {send(10), recv(3), commit(), send(10), recv(6), reopen(), recv(5), commit(), send(4), recv(20), commit()};
    all.push_back(w);
  }
  {
    // Commits through positions: items received after the position stay uncommitted, and
    // come back after a reopen; those before it never do.
    Workload w{"interval, commit through positions", base(), 1};
    w.options.sync = SyncPolicy::interval;
    w.options.sync_interval = std::chrono::milliseconds(1);
    w.options.manual_commit = true;
    w.steps = {send(12), recv(6), commit_at(), send(8), recv_many(6), recv(2), commit_at(), reopen(), recv(8),
               commit_at(), send(4), recv(20), commit_at(), commit()};
    all.push_back(w);
  }
  {
    Workload w{"always, manual commit", base(), 1};
    w.options.sync = SyncPolicy::always;
    w.options.manual_commit = true;
    w.options.page_bytes = 128;
    w.steps = {send(6), recv(2), commit(), send(4), recv(3), reopen(), recv(10), commit(), send(5), recv(2)};
    all.push_back(w);
  }
  {
    Workload w{"drop_oldest, small disk", base(), 1};
    w.options.when_full = FullPolicy::drop_oldest;
    w.options.max_disk_bytes = 3 * w.options.segment_bytes;
    w.steps = {send(40, 0, 60), recv(5), send(20, 0, 60), recv(100)};
    all.push_back(w);
  }
  {
    Workload w{"memory only, block", base(), 1};
    w.options.max_disk_bytes = 0;
    w.options.when_full = FullPolicy::block;
    w.steps = {send(6), recv(2), reopen(), send(3), recv(10)};
    all.push_back(w);
  }
  return all;
}

std::vector<Workload> concurrent_workloads() {
  std::vector<Workload> all;
  {
    Workload w{"always, 4 producers", base(), 4, true};
    w.options.sync = SyncPolicy::always;
    w.options.page_bytes = 128;
    w.items_per_producer = 40;
    all.push_back(w);
  }
  {
    // One item per page: every send is a page write and a group commit to join, so senders
    // race for the writer and for each other's syncs.
    Workload w{"always, 4 producers, a page per item", base(), 4, true};
    w.options.sync = SyncPolicy::always;
    w.options.page_bytes = 1;
    w.options.segment_bytes = 1 << 10;
    w.items_per_producer = 30;
    all.push_back(w);
  }
  {
    // The same, with nobody receiving until the senders are done: pages of one group commit
    // cross segment rotations while every acknowledged item stays on disk, so a failed sync
    // at rotation acknowledged by a later one shows after the power cut.
    Workload w{"always, 4 producers, a page per item, no receiver", base(), 4, true};
    w.options.sync = SyncPolicy::always;
    w.options.page_bytes = 1;
    w.options.segment_bytes = 1 << 10;
    w.items_per_producer = 30;
    w.receive_while_sending = false;
    all.push_back(w);
  }
  {
    Workload w{"spill, block, 4 producers", base(), 4, true};
    w.options.when_full = FullPolicy::block;
    w.options.max_disk_bytes = 64 << 10;
    w.items_per_producer = 150;
    all.push_back(w);
  }
  {
    Workload w{"interval, manual commit, 2 producers", base(), 2, true};
    w.options.sync = SyncPolicy::interval;
    w.options.sync_interval = std::chrono::milliseconds(2);
    w.options.manual_commit = true;
    w.options.when_full = FullPolicy::block;
    w.options.max_disk_bytes = 64 << 10;
    w.items_per_producer = 100;
    w.commit_every = 10;
    w.commit_at_positions = true;
    all.push_back(w);
  }
  {
    Workload w{"drop_oldest, 3 producers", base(), 3, true};
    w.options.when_full = FullPolicy::drop_oldest;
    w.options.max_disk_bytes = 3 * w.options.segment_bytes;
    w.items_per_producer = 120;
    all.push_back(w);
  }
  return all;
}

}  // namespace hopper::explore
