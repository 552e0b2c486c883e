// Lines: how hopperd cuts byte streams and datagrams into records and decides which to drop.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace hopperd {

// Why a line was not relayed.
enum class DropReason { too_long, empty, invalid_utf8, count };
const char* to_string(DropReason r) noexcept;

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool valid_utf8(std::string_view s) noexcept;

// Checks one line (its terminator already removed; a trailing '\r' is stripped here).
// Returns the line to relay, or sets `reason` and returns an empty view.
struct LineCheck {
  bool ok;
  std::string_view line;
  DropReason reason;
};
LineCheck check_line(std::string_view line, std::size_t max_line_bytes) noexcept;

// Cuts a TCP byte stream into lines. A line longer than the maximum is dropped once and
// the rest of it, up to the next newline, is discarded without being buffered: memory per
// connection stays below max_line_bytes plus one read. Not thread-safe: one per connection.
class LineFramer {
 public:
  explicit LineFramer(std::size_t max_line_bytes) : max_(max_line_bytes) {}

  struct Event {
    enum Kind { need_more, ready, dropped } kind = need_more;
    std::string_view line;  // for `ready`: valid until the next append()
    DropReason reason = DropReason::count;
  };

  // Bytes received. Lines taken so far stay valid until this is called again.
  void append(std::string_view bytes);
  // The next line or drop; `need_more` when more bytes are needed.
  Event next();
  // The stream ended: an unterminated last line counts as a line. Call next() after it.
  void finish();
  std::size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  std::size_t max_;
  std::string buf_;
  std::size_t pos_ = 0;       // start of the first line not yet taken
  std::size_t scanned_ = 0;   // no newline in [pos_, scanned_)
  bool discarding_ = false;   // inside an over-long line
};

// Calls `each(LineCheck)` for every line of one datagram (an unterminated last line counts;
// a final newline does not make an empty line).
template <class Each>
void for_each_datagram_line(std::string_view datagram, std::size_t max_line_bytes, Each&& each) {
  while (!datagram.empty()) {
    const std::size_t nl = datagram.find('\n');
    const std::string_view line = datagram.substr(0, nl);
    each(check_line(line, max_line_bytes));
    if (nl == std::string_view::npos) break;
    datagram.remove_prefix(nl + 1);
  }
}

}  // namespace hopperd
