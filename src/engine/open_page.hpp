// RawPage and OpenPage: items framed into pages, and the page senders are filling.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <hopper/detail/sync.hpp>
#include <hopper/detail/verdicts.hpp>
#include <hopper/options.hpp>

#include "storage/format.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {

// A run of consecutively numbered items, framed back to back as a page's payload holds
// them (docs/format.md, version 2: u32 length, u32 time offset, then the bytes): the open
// page, the items the receiver holds until commit, the pages a shutdown writes. The only
// writer of item framing. Thread-compatible.
struct RawPage {
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::string raw;
  // Its items' times (ms, the queue clock): base_ms plus each frame's offset. base_ms is
  // the first item's time; newest_ms the largest.
  std::uint64_t base_ms = 0;
  std::uint64_t newest_ms = 0;

  RawPage() = default;
  RawPage(std::uint64_t first, std::uint32_t n, std::string bytes, std::uint64_t base = 0, std::uint64_t newest = 0)
      : first_seq(first), count(n), raw(std::move(bytes)), base_ms(base), newest_ms(newest) {}

  // Appending one item: begin_item() reserves its frame and returns the buffer its
  // encoding is appended to; end_item() closes the frame, cancel_item() takes it back.
  std::string& begin_item() {
    mark_ = format::begin_item(raw);
    return raw;
  }
  // `at_ms`: when the item was accepted. A time before the page's base is framed as the
  // base (senders read the clock before they take the queue lock, so the order of their
  // times may differ from their numbers' by a few ms).
  void end_item(std::uint64_t at_ms) {
    if (count == 0) base_ms = newest_ms = at_ms;
    const std::uint64_t offset = at_ms > base_ms ? at_ms - base_ms : 0;
    format::end_item(raw, mark_, static_cast<std::uint32_t>(std::min(offset, format::kMaxTimeOffset)));
    newest_ms = std::max(newest_ms, at_ms);
    ++count;
  }
  // Whether an item accepted at `at_ms` can join: its offset from the base fits a frame.
  bool time_fits(std::uint64_t at_ms) const noexcept {
    return count == 0 || at_ms <= base_ms || at_ms - base_ms <= format::kMaxTimeOffset;
  }
  format::PageItems items() const noexcept { return {first_seq, count, base_ms, newest_ms}; }
  void cancel_item() { raw.resize(mark_); }
  // Bytes of the item being appended (without its frame).
  std::uint64_t item_bytes() const noexcept { return format::item_bytes(raw, mark_); }
  std::uint64_t end_seq() const noexcept { return first_seq + count; }
  // Lets go of its first `n` items (n < count): a commit through a position inside it.
  void drop_front(std::uint32_t n) {
    format::ItemCursor items(raw);
    for (std::uint32_t i = 0; i < n; ++i) {
      const bool framed = items.next().has_value();
      HOPPER_ASSERT(framed, "a held page shorter than its count");
    }
    raw.erase(0, items.offset());
    first_seq += n;
    count -= n;
  }

 private:
  std::size_t mark_ = 0;  // where the item being appended starts (its frame)
};

// The page spilling senders encode their items into, and the disk budget's rule for
// taking one more: an item is accepted only if its page, at its worst compressed size
// (SpillWriter::bound), still fits a segment and, with everything on disk and sealed, the
// disk budget. Sealing hands its bytes on, in order. Thread-compatible: Core holds it under
// the queue lock.
class OpenPage {
 public:
  explicit OpenPage(const Options& options);

  // The caller appends the item's encoding to the returned buffer, then calls end_item
  // (or cancel_item, if encoding threw).
  std::string& begin_item() { return page_.begin_item(); }
  void cancel_item() { page_.cancel_item(); }
  // The item just encoded, numbered `seq` and accepted at `at_ms`, is kept (accepted) or
  // taken back. `sealed_full`:
  // the sealed pages waiting for the writer are at their limit; `disk_in_use`: bytes of
  // segment files plus the worst-case size of every sealed page.
  // Inline: every spilled item passes here.
  SpillVerdict end_item(std::uint64_t seq, std::uint64_t at_ms, bool sealed_full, std::uint64_t disk_in_use) {
    const std::uint64_t item = page_.item_bytes();
    if (item > format::kMaxItemBytes || SpillWriter::bound(format::kItemPrefixSize + item) > segment_bytes_)
      return refuse(SpillVerdict::too_large);
    if (open() && (SpillWriter::bound(page_.raw.size()) > segment_bytes_ || !page_.time_fits(at_ms)))
      return refuse(SpillVerdict::need_seal);
    if (sealed_full) return refuse(SpillVerdict::behind);
    if (disk_in_use + SpillWriter::bound(page_.raw.size()) > max_disk_bytes_) return refuse(SpillVerdict::full);
    if (!open()) page_.first_seq = seq;
    // Sequence continuity: the items of a page are numbered one after the other (a sender
    // that leaves the page for memory seals it first).
    HOPPER_ASSERT(page_.end_seq() == seq, "an item numbered out of turn joined the open page");
    page_.end_item(at_ms);
    return SpillVerdict::accepted;
  }

  bool open() const noexcept { return page_.count > 0; }
  std::uint32_t count() const noexcept { return page_.count; }
  // When its first item was accepted (0: not open).
  std::uint64_t base_ms() const noexcept { return open() ? page_.base_ms : 0; }
  bool full() const noexcept { return page_.raw.size() >= page_bytes_; }
  // The page's items, in order; the open page starts empty again. Precondition: open().
  RawPage seal();
  // A written page's buffer, for a later page to fill: a page buffer the writer has just
  // read is warm in the cache, a new one costs page faults and cache misses on every item
  // encoded into it. At most kSpares are kept.
  void recycle(std::string buffer);

 private:
  SpillVerdict refuse(SpillVerdict v) {
    page_.cancel_item();
    return v;
  }

  static constexpr std::size_t kSpares = 2;
  std::vector<std::string> spares_;
  std::uint32_t page_bytes_;
  std::uint64_t segment_bytes_;
  std::uint64_t max_disk_bytes_;
  RawPage page_;
};

}  // namespace hopper::detail
