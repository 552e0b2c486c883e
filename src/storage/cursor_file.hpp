// CURSOR and CURSOR.read: where delivery stands, as files. The one place that writes them,
// reads them with retries, and says how the two combine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <hopper/file_system.hpp>
#include <hopper/status.hpp>

#include "storage/format.hpp"

namespace hopper::detail {

// Replaces CURSOR atomically: CURSOR.tmp, fdatasync, rename, fsync of the directory — a
// crash leaves the old or the new position, never a torn one. When that fsync fails the
// old CURSOR is put back (a first one removed): the position stays where it was, also
// after a later directory sync made by someone else. Not `durable`: the advisory
// CURSOR.read instead (CURSOR.read.tmp and rename, no sync), which never replaces CURSOR,
// so that an unsynced replacement (which a power loss may leave empty) never stands where
// a durable commit did. `end`: the number the next accepted item was to get (items below
// it were accepted).
Status write_cursor(FileSystem& fs, const std::filesystem::path& dir, std::uint64_t position, std::uint64_t end,
                    bool durable);

// Reads a cursor file: nullopt if it is absent, damaged (`problem` says which; empty when
// absent) or unreadable after a few attempts. `listed`: the directory listing showed it,
// so an open that says "not found" is a fault to retry, not an answer.
std::optional<format::CursorRecord> read_cursor_file(FileSystem& fs, const std::filesystem::path& path, bool listed,
                                                     std::string& problem, std::uint64_t* read_errors = nullptr);

// Where delivery stands, by both files: the larger position of the durable CURSOR and the
// advisory CURSOR.read, each where valid (none: nullopt), and the larger `end` (0 where a
// file has none: version 1).
struct DeliveryPosition {
  std::optional<std::uint64_t> position;
  std::uint64_t end = 0;
};
DeliveryPosition combine_cursors(const std::optional<format::CursorRecord>& durable,
                                 const std::optional<format::CursorRecord>& advisory);

}  // namespace hopper::detail
