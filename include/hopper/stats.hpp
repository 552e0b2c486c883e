// Stats: a snapshot of one queue's occupancy and lifetime totals.
#pragma once

#include <cstdint>

namespace hopper {

struct Stats {
  // Occupancy now.
  std::uint64_t memory_items = 0;   // items held in memory, waiting to be received
  std::uint64_t memory_bytes = 0;   // their footprint — plus, with manual_commit, that of
                                    // items received from memory but not yet committed
                                    // (they stay charged until commit()); never above
                                    // max_memory_bytes
  std::uint64_t disk_items = 0;     // items on disk or in pages not yet read back
  std::uint64_t disk_bytes = 0;     // bytes of segment files present
  std::uint64_t segments = 0;       // segment files present

  // Totals since this handle opened the directory.
  std::uint64_t items_sent = 0;       // accepted by send/try_send/send_for
  std::uint64_t items_received = 0;   // handed out by recv and friends
  std::uint64_t items_spilled = 0;    // accepted straight into a disk page
  std::uint64_t items_recovered = 0;  // found on disk at open, to be delivered first
  std::uint64_t pages_written = 0;    // pages appended to segment files
  std::uint64_t pages_compressed_ahead = 0;  // of those, compressed by a thread other than
                                             // the appender, in parallel with it
  std::uint64_t bytes_uncompressed = 0;  // page payload bytes before compression
  std::uint64_t bytes_compressed = 0;    // the same pages' bytes as written (headers included)
  std::uint64_t syncs = 0;             // fdatasync calls on segment files
  std::uint64_t commits = 0;           // delivery positions persisted (commit() and shutdown)
  std::uint64_t items_dropped = 0;     // discarded by FullPolicy::drop_oldest

  // Damage found, at open or while reading. Damaged data is skipped, never returned.
  std::uint64_t corrupt_pages = 0;  // pages whose checksum or frame failed, skipped
  std::uint64_t corrupt_items = 0;  // items lost with them, where the count was readable,
                                    // plus single items that failed to deserialize
  std::uint64_t torn_bytes = 0;     // bytes cut from the tails of segments at open
  std::uint64_t items_missing = 0;  // at open: sequence numbers after the delivery position
                                    // that no valid page holds — lost to damage, dropped,
                                    // or (after a crash) only ever in memory; see
                                    // damage_report() and docs/durability.md
  std::uint64_t pages_unreadable = 0;  // pages skipped because their segment file could not
                                       // be opened or read after retries, or is gone
  std::uint64_t items_unreadable = 0;  // items lost with them (never returned)

  // I/O faults met since open (docs/durability.md, "Disk faults"). Each is also answered
  // to the call it concerns, where there is one; these count them all, retries included.
  std::uint64_t write_errors = 0;   // page appends (or segment creations) the disk refused;
                                    // the page stays in RAM and is retried, or, under
                                    // SyncPolicy::always, its senders are told
  std::uint64_t sync_errors = 0;    // failed fdatasync (or directory fsync) of a segment: the
                                    // file is closed for appends; under SyncPolicy::always
                                    // the senders it was to acknowledge are told
  std::uint64_t read_errors = 0;    // page reads the disk refused (retried, then skipped:
                                    // pages_unreadable)
  std::uint64_t remove_errors = 0;  // segment unlinks that failed; the file stays counted in
                                    // disk_bytes until a retry removes it

  // Age and capacity (docs/architecture.md, "Age").
  std::uint64_t oldest_item_age_ms = 0;  // how long the oldest item not yet received has
                                         // waited since it was accepted (0 when nothing
                                         // waits; items of format version 1 have no time
                                         // and are left out)
  std::uint64_t memory_capacity_bytes = 0;  // Options::max_memory_bytes
  std::uint64_t disk_capacity_bytes = 0;    // Options::max_disk_bytes (0: never spills)
  std::uint64_t items_expired = 0;  // passed over unreturned, older than Options::max_age
  std::uint64_t bytes_expired = 0;  // their bytes: the footprint of those expired in memory,
                                    // the encoding of those expired on disk
};

}  // namespace hopper
