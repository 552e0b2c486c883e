#include "engine/open_page.hpp"

#include <hopper/detail/sync.hpp>

#include "storage/format.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {

std::string& RawPage::begin_item() {
  mark_ = format::begin_item(raw);
  return raw;
}

void RawPage::end_item() {
  format::end_item(raw, mark_);
  ++count;
}

std::uint64_t RawPage::item_bytes() const noexcept { return format::item_bytes(raw, mark_); }

OpenPage::OpenPage(const Options& o)
    : page_bytes_(o.page_bytes), segment_bytes_(o.segment_bytes), max_disk_bytes_(o.max_disk_bytes) {
  page_.raw.reserve(page_bytes_ + 4096);
}

SpillVerdict OpenPage::end_item(std::uint64_t seq, bool sealed_full, std::uint64_t disk_in_use) {
  auto refuse = [&](SpillVerdict v) {
    page_.cancel_item();
    return v;
  };
  const std::uint64_t item = page_.item_bytes();
  if (item > format::kMaxItemBytes || SpillWriter::bound(format::kItemPrefixSize + item) > segment_bytes_)
    return refuse(SpillVerdict::too_large);
  if (open() && SpillWriter::bound(page_.raw.size()) > segment_bytes_) return refuse(SpillVerdict::need_seal);
  if (sealed_full) return refuse(SpillVerdict::behind);
  if (disk_in_use + SpillWriter::bound(page_.raw.size()) > max_disk_bytes_) return refuse(SpillVerdict::full);
  if (!open()) page_.first_seq = seq;
  // Sequence continuity: the items of a page are numbered one after the other (a sender
  // that leaves the page for memory seals it first).
  HOPPER_ASSERT(page_.end_seq() == seq, "an item numbered out of turn joined the open page");
  page_.end_item();
  return SpillVerdict::accepted;
}

RawPage OpenPage::seal() {
  HOPPER_ASSERT(open(), "sealing an empty page");
  RawPage sealed(page_.first_seq, page_.count, std::move(page_.raw));
  page_ = RawPage();
  page_.raw.reserve(page_bytes_ + 4096);
  return sealed;
}

}  // namespace hopper::detail
