#include "storage/cursor_file.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <thread>

namespace hopper::detail {

namespace {
// Attempts at reading a cursor file before it counts as unreadable, and the pauses between
// them (as recovery reads segments: a transient fault gets a second chance).
constexpr int kReadAttempts = 3;
constexpr std::array<std::chrono::milliseconds, kReadAttempts - 1> kReadPauses{std::chrono::milliseconds(1),
                                                                               std::chrono::milliseconds(10)};
}  // namespace

Status write_cursor(FileSystem& fs, const std::filesystem::path& dir, std::uint64_t position, std::uint64_t end,
                    bool durable) {
  const auto tmp = dir / (durable ? format::kCursorTempName : format::kReadCursorTempName);
  const auto cur = dir / (durable ? format::kCursorFileName : format::kReadCursorFileName);
  auto f = fs.open(tmp, OpenMode::truncate);
  if (!f.ok()) return f.status();
  const std::string bytes = format::encode_cursor(position, end);
  Status s = (*f)->append(bytes.data(), bytes.size());
  if (s.ok() && durable) s = (*f)->sync();
  f->reset();
  if (s.ok()) s = fs.rename(tmp, cur);
  if (s.ok() && durable) s = fs.sync_directory(dir);  // the rename itself must survive
  return s;
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
