// validate(): the options a queue accepts, checked before anything touches the disk.
#include <hopper/options.hpp>

#include <string>

#include "storage/format.hpp"
#include "storage/spill_writer.hpp"

namespace hopper {

Status validate(const Options& o) {
  auto bad = [](std::string what) { return Status(Errc::invalid_argument, std::move(what)); };
  if (o.directory.empty()) return bad("Options::directory is empty; a queue needs a directory of its own");
  if (o.max_memory_bytes == 0) return bad("Options::max_memory_bytes is 0; the memory budget must be at least one item");
  if (o.page_bytes == 0) return bad("Options::page_bytes is 0");
  if (o.page_bytes > format::kMaxRawPage / 2)
    return bad("Options::page_bytes is " + std::to_string(o.page_bytes) + "; at most " +
               std::to_string(format::kMaxRawPage / 2));
  if (o.compression_level < -7 || o.compression_level > 22)
    return bad("Options::compression_level is " + std::to_string(o.compression_level) +
               "; zstd levels run from -7 to 22");
  if (o.when_full != FullPolicy::block && o.when_full != FullPolicy::fail && o.when_full != FullPolicy::drop_oldest)
    return bad("Options::when_full is not a FullPolicy value");
  if (o.sync != SyncPolicy::none && o.sync != SyncPolicy::interval && o.sync != SyncPolicy::always)
    return bad("Options::sync is not a SyncPolicy value");
  if (o.sync == SyncPolicy::interval && o.sync_interval.count() <= 0)
    return bad("Options::sync_interval must be positive with SyncPolicy::interval");
  if (o.max_age.count() < 0)
    return bad("Options::max_age is negative (" + std::to_string(o.max_age.count()) +
               " ms); 0 means items never expire");
  if (o.compression_threads > 16)
    return bad("Options::compression_threads is " + std::to_string(o.compression_threads) +
               "; at most 16 (0: no thread of the queue's own)");
  if (o.sync == SyncPolicy::always && o.max_disk_bytes == 0)
    return bad("Options::sync is SyncPolicy::always but Options::max_disk_bytes is 0: items must go to disk");
  if (o.max_disk_bytes > 0) {
    const std::uint64_t page_need = detail::SpillWriter::bound(o.page_bytes);
    if (o.segment_bytes < page_need)
      return bad("Options::segment_bytes (" + std::to_string(o.segment_bytes) +
                 ") is smaller than one page of Options::page_bytes (" + std::to_string(o.page_bytes) +
                 ") with its headers: at least " + std::to_string(page_need));
    if (o.segment_bytes > o.max_disk_bytes)
      return bad("Options::segment_bytes (" + std::to_string(o.segment_bytes) +
                 ") is larger than Options::max_disk_bytes (" + std::to_string(o.max_disk_bytes) +
                 "); set max_disk_bytes = 0 to never spill");
  }
  return Status();
}

}  // namespace hopper
