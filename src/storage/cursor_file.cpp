#include "storage/cursor_file.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <thread>

namespace hopper::detail {

namespace {
// Attempts at reading a cursor file before it counts as unreadable, and the pauses between
// them (as recovery reads segments: a transient fault gets a second chance).
constexpr int kReadAttempts = 3;
constexpr std::array<std::chrono::milliseconds, kReadAttempts - 1> kReadPauses{std::chrono::milliseconds(1),
                                                                               std::chrono::milliseconds(10)};
}  // namespace

namespace {

// `bytes` into `tmp`, synced when `sync`, then renamed over `cur`.
Status replace_file(FileSystem& fs, const std::filesystem::path& tmp, const std::filesystem::path& cur,
                    const std::string& bytes, bool sync) {
  auto f = fs.open(tmp, OpenMode::truncate);
  if (!f.ok()) return f.status();
  Status s = (*f)->append(bytes.data(), bytes.size());
  if (s.ok() && sync) s = (*f)->sync();
  f->reset();
  if (s.ok()) s = fs.rename(tmp, cur);
  return s;
}

}  // namespace

Status write_cursor(FileSystem& fs, const std::filesystem::path& dir, std::uint64_t position, std::uint64_t end,
                    bool durable) {
  const auto tmp = dir / (durable ? format::kCursorTempName : format::kReadCursorTempName);
  const auto cur = dir / (durable ? format::kCursorFileName : format::kReadCursorFileName);
  if (!durable) return replace_file(fs, tmp, cur, format::encode_cursor(position, end), false);
  // What CURSOR holds now (nullopt: none), to be put back if the replacement is not made
  // durable: a failed commit must leave the position where it was, and a new CURSOR left
  // in place would become durable with the next directory sync that succeeds (a new
  // segment's), after the caller was told it failed. Unknown (unreadable): fail now,
  // before anything changes.
  std::optional<std::string> previous;
  if (auto old = fs.open(cur, OpenMode::read); old.ok()) {
    std::string b(format::kCursorV2Size + 1, '\0');
    auto got = (*old)->read_at(0, b.data(), b.size());
    if (!got.ok()) return got.status();
    b.resize(*got);
    previous = std::move(b);
  } else if (old.status().code() != Errc::not_found) {
    return old.status();
  }
  Status s = replace_file(fs, tmp, cur, format::encode_cursor(position, end), true);
  if (!s.ok()) return s;  // CURSOR is as it was: a rename replaces it whole or not at all
  s = fs.sync_directory(dir);  // the rename itself must survive
  if (s.ok()) return s;
  const Status back = previous ? replace_file(fs, tmp, cur, *previous, true) : fs.remove(cur);
  if (back.ok()) return s;
  return Status(s.code(), s.message() + "; the previous position could not be put back either (" + back.message() +
                              "): after a power loss the new one may stand");
}

std::optional<format::CursorRecord> read_cursor_file(FileSystem& fs, const std::filesystem::path& path, bool listed,
                                                     std::string& problem, std::uint64_t* read_errors) {
  problem.clear();
  bool absent = false;
  Result<std::string> bytes = Status(Errc::io_error, "not read");
  for (int i = 0;; ++i) {
    bytes = [&]() -> Result<std::string> {
      auto f = fs.open(path, OpenMode::read);
      if (!f.ok()) {
        if (f.status().code() == Errc::not_found && !listed) {
          absent = true;
          return std::string();  // absent is an answer, not a failure
        }
        return f.status();
      }
      std::string b(format::kCursorV2Size + 1, '\0');
      auto got = (*f)->read_at(0, b.data(), b.size());
      if (!got.ok()) return got.status();
      b.resize(*got);
      return b;
    }();
    if (bytes.ok()) break;
    if (read_errors) ++*read_errors;
    if (i + 1 == kReadAttempts) break;
    std::this_thread::sleep_for(kReadPauses[static_cast<std::size_t>(i)]);
  }
  if (!bytes.ok()) {
    problem = bytes.status().message() + " (unreadable after " + std::to_string(kReadAttempts) + " attempts)";
    return std::nullopt;
  }
  if (absent) return std::nullopt;
  auto c = format::decode_cursor_record(*bytes);
  if (!c) problem = "damaged";
  return c;
}

DeliveryPosition combine_cursors(const std::optional<format::CursorRecord>& durable,
                                 const std::optional<format::CursorRecord>& advisory) {
  DeliveryPosition p;
  for (const auto* c : {&durable, &advisory}) {
    if (!*c) continue;
    p.position = std::max(p.position.value_or(0), (*c)->position);
    p.end = std::max(p.end, (*c)->end.value_or(0));
  }
  return p;
}

}  // namespace hopper::detail
