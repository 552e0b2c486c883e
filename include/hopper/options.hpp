// Options: how one queue directory is budgeted and laid out.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>

#include <hopper/status.hpp>

namespace hopper {

class FileSystem;

// What a send does when the memory and disk budgets are both full.
enum class FullPolicy {
  block,  // wait for room (send) or until the deadline (send_for)
  fail,   // return Errc::full at once; the caller still owns the item
  drop_oldest,  // discard the oldest whole segment (or, when not spilling, the oldest
                // items in memory) to make room; every dropped item is counted in Stats
};

// When spilled data is forced to stable storage (see docs/durability.md).
enum class SyncPolicy {
  none,      // pages reach the OS when written; segments are fdatasync'ed when closed and at
             // shutdown. Survives a process crash (what was written), not a power loss.
  interval,  // as none, plus an fdatasync after a page write when sync_interval has passed
             // since the last one. There is no timer: it bounds how often syncs happen, and
             // a page written just after a sync waits for the next write, rotation or shutdown
  always,    // send returns ok only once the item is on stable storage; items go to disk as
             // they are accepted and concurrent senders share each fdatasync (group commit)
};

struct Options {
  std::filesystem::path directory;              // required; created if missing
  std::uint64_t max_memory_bytes = 1 << 20;     // in-memory budget (sum of item footprints)
  std::uint64_t max_disk_bytes = 1ull << 30;    // on-disk budget; 0 = never spill
  std::uint64_t segment_bytes = 16 << 20;       // rotate queue files past this size
  std::uint32_t page_bytes = 64 << 10;          // items compressed together in one frame
  int compression_level = 1;                    // zstd level
  FullPolicy when_full = FullPolicy::block;
  SyncPolicy sync = SyncPolicy::none;
  std::chrono::milliseconds sync_interval{1000};  // for SyncPolicy::interval

  // false: the receiver commits implicitly as it goes (a crash may redeliver what was read
  // from segment files not yet deleted). true: the delivery position is persisted only by
  // Receiver::commit(); after any restart the receiver resumes right after the last
  // committed item, and items received but not committed come back.
  bool manual_commit = false;

  // Items older than this when their turn comes are passed over — counted in
  // Stats::items_expired, never returned — so that after a long outage the receiver gets
  // recent data first. Age counts from acceptance by send (the queue clock: monotonic
  // while open, the wall clock across restarts; docs/architecture.md, "Age"). Whole pages
  // past it are skipped by their header, unread; when the disk is full, its oldest segment
  // goes first if it is wholly past it and unread. Zero: items never expire.
  std::chrono::milliseconds max_age{0};

  // Threads of the queue's own that compress and write sealed pages, so that a sender that
  // spills only encodes its item into the open page (docs/architecture.md, "Compression
  // helpers"). 0 (the default): the queue starts no thread; senders compress and write the
  // pages they seal, and help one another. N: N helpers, started at open and joined at
  // close; a sender still helps when sealed pages pile up (SpillPipeline's limit). Worth
  // it only with a core to spare. No effect without spilling (max_disk_bytes = 0) or under
  // SyncPolicy::always (each sender leads its own group commit). At most 16.
  std::uint32_t compression_threads = 0;

  // The file system seam. Null means the real POSIX file system; tests pass one that
  // injects faults. Shared so that several queues (and a test) may hold the same one.
  std::shared_ptr<FileSystem> file_system;
};

// Checks `options` without touching the disk: ok, or invalid_argument naming the option
// and why. channel() calls this first.
Status validate(const Options& options);

}  // namespace hopper
