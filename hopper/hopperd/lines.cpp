#include "hopperd/lines.hpp"

#include <cstdint>

namespace hopperd {

const char* to_string(DropReason r) noexcept {
  switch (r) {
    case DropReason::too_long: return "too_long";
    case DropReason::empty: return "empty";
    case DropReason::invalid_utf8: return "invalid_utf8";
    case DropReason::count: break;
  }
  return "unknown";
}

bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // ASCII runs are the common case in telemetry: eight bytes at a time.
    while (end - p >= 8) {
      std::uint64_t w;
      __builtin_memcpy(&w, p, 8);
      if (w & 0x8080808080808080ull) break;
      p += 8;
    }
    if (p >= end) break;
    const unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte first, C0/C1 (overlong), or F5..FF
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      const unsigned cc = p[i];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    p += n + 1;
  }
  return true;
}

LineCheck check_line(std::string_view line, std::size_t max_line_bytes) noexcept {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > max_line_bytes) return {false, {}, DropReason::too_long};
  if (line.empty()) return {false, {}, DropReason::empty};
  if (!valid_utf8(line)) return {false, {}, DropReason::invalid_utf8};
  return {true, line, DropReason::count};
}

void LineFramer::append(std::string_view bytes) {
  if (pos_ > 0) {  // what was taken is no longer referenced: compact
    buf_.erase(0, pos_);
    scanned_ -= pos_;
    pos_ = 0;
  }
  buf_.append(bytes);
}

LineFramer::Event LineFramer::next() {
  for (;;) {
    const std::size_t nl = buf_.find('\n', scanned_);
    if (discarding_) {
      if (nl == std::string::npos) {
        pos_ = scanned_ = buf_.size();  // still inside the over-long line
        return {};
      }
      discarding_ = false;
      pos_ = scanned_ = nl + 1;
      continue;
    }
    if (nl == std::string::npos) {
      scanned_ = buf_.size();
      // +1: a '\r' before the newline does not count against the limit.
      if (buf_.size() - pos_ > max_ + 1) {
        discarding_ = true;
        pos_ = scanned_ = buf_.size();
        return {Event::dropped, {}, DropReason::too_long};
      }
      return {};
    }
    const std::string_view line(buf_.data() + pos_, nl - pos_);
    pos_ = scanned_ = nl + 1;
    const LineCheck c = check_line(line, max_);
    if (c.ok) return {Event::ready, c.line, DropReason::count};
    return {Event::dropped, {}, c.reason};
  }
}

void LineFramer::finish() {
  if (discarding_) {
    pos_ = scanned_ = buf_.size();
    discarding_ = false;
    return;
  }
  if (buffered() > 0) append("\n");
}

}  // namespace hopperd
