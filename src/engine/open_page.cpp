#include "engine/open_page.hpp"

#include <hopper/detail/sync.hpp>

#include "storage/format.hpp"
#include "storage/spill_writer.hpp"

namespace hopper::detail {

OpenPage::OpenPage(const Options& o)
    : page_bytes_(o.page_bytes), segment_bytes_(o.segment_bytes), max_disk_bytes_(o.max_disk_bytes) {
  page_.raw.reserve(page_bytes_ + 4096);
}

RawPage OpenPage::seal() {
  HOPPER_ASSERT(open(), "sealing an empty page");
  RawPage sealed(page_.first_seq, page_.count, std::move(page_.raw), page_.base_ms, page_.newest_ms);
  page_ = RawPage();
  if (!spares_.empty()) {
    page_.raw = std::move(spares_.back());
    spares_.pop_back();
  }
  page_.raw.reserve(page_bytes_ + 4096);
  return sealed;
}

void OpenPage::recycle(std::string buffer) {
  if (spares_.size() >= kSpares || buffer.capacity() < page_bytes_ || buffer.capacity() > 2 * (page_bytes_ + 4096)) return;
  buffer.clear();
  spares_.push_back(std::move(buffer));
}

}  // namespace hopper::detail
