#include "engine/read_path.hpp"

#include <algorithm>

namespace hopper::detail {

namespace {
// The pauses between reads of one page: a transient fault (a busy device, a retried I/O)
// gets another chance, a dead file costs the receiver about 11 ms before it moves on.
constexpr std::chrono::milliseconds kReadPauses[ReadPath::kReadAttempts - 1] = {std::chrono::milliseconds(1),
                                                                                std::chrono::milliseconds(10)};
}  // namespace

ReadPath::ReadPath(std::shared_ptr<FileSystem> fs, std::filesystem::path dir, const Options& o,
                   std::uint64_t position)
    : page_bytes_(o.page_bytes), deliver_seq_(position), reader_(std::move(fs), std::move(dir)) {}

bool ReadPath::next_item(std::string_view& out, bool& finished, std::uint64_t& at_ms) {
  if (left_ == 0) return false;
  std::optional<std::string_view> item = items_->next();
  HOPPER_ASSERT(item.has_value(), "a validated page ran out of items before its count");
  out = *item;
  at_ms = timed_ ? base_ms_ + items_->time_offset() : 0;
  --left_;
  // Sequence continuity: delivery only moves forward.
  HOPPER_ASSERT(first_seq_ + index_ + 1 >= deliver_seq_, "the delivery position moved back");
  deliver_seq_ = first_seq_ + index_ + 1;
  ++index_;
  finished = left_ == 0;
  return true;
}

bool ReadPath::read_failed(const Status& why, Clock::time_point now) {
  error_ = why;
  if (++attempts_ < kReadAttempts) {
    retry_at_ = now + kReadPauses[attempts_ - 1];
    return true;
  }
  attempts_ = 0;  // unreadable: skipped and counted, never returned; the receiver moves on
  return false;
}

void ReadPath::skip(const UnreadPage& page, bool from_file) {
  HOPPER_ASSERT(due_ && left_ == 0, "a page skipped while another was being read");
  due_ = false;
  left_ = 0;
  attempts_ = 0;
  from_file_ = from_file;
  segment_ = page.ref.segment;
  deliver_seq_ = std::max(deliver_seq_, page.ref.first_seq + page.ref.count);
}

void ReadPath::start(const UnreadPage& page) {
  HOPPER_ASSERT(due_ && left_ == 0, "a page started while another was being read");
  attempts_ = 0;
  due_ = false;
  from_file_ = true;
  segment_ = page.ref.segment;
  first_seq_ = page.ref.first_seq;
  base_ms_ = page.ref.base_ms;
  newest_ms_ = page.ref.newest_ms;
  timed_ = page.ref.version != format::kVersion1;
  index_ = 0;
  items_.emplace(raw_, page.ref.version);
  for (std::uint32_t i = 0; i < page.skip; ++i) {
    (void)items_->next();
    ++index_;
  }
  left_ = page.ref.count - page.skip;
  deliver_seq_ = std::max(deliver_seq_, page.ref.first_seq + page.skip);
}

void ReadPath::start(RawPage page) {
  HOPPER_ASSERT(due_ && left_ == 0, "a page started while another was being read");
  due_ = false;
  raw_ = std::move(page.raw);
  from_file_ = false;
  first_seq_ = page.first_seq;
  base_ms_ = page.base_ms;
  newest_ms_ = page.newest_ms;
  timed_ = true;
  index_ = 0;
  items_.emplace(raw_);
  left_ = page.count;
  deliver_seq_ = std::max(deliver_seq_, page.first_seq);
}

std::optional<std::uint64_t> ReadPath::finish() {
  if (!from_file_) return std::nullopt;  // read from RAM: nothing on disk to release
  from_file_ = false;
  return segment_;
}

std::string& ReadPath::begin_held(std::uint64_t footprint, std::uint64_t at_ms) {
  held_footprints_.push_back(footprint);
  // deliver_seq_ is the number of the item about to be handed out.
  if (held_.empty() || held_.back().end_seq() != deliver_seq_ || held_.back().raw.size() >= page_bytes_ ||
      !held_.back().time_fits(at_ms)) {
    held_.emplace_back(deliver_seq_, 0, std::string());
    // Room for the page at once: grown by appends, it would be copied again at each
    // doubling (as much copying as the items themselves, per held item). At most 1 MiB:
    // a page can be as large as a segment, and may hold a single item.
    held_.back().raw.reserve(std::min<std::size_t>(page_bytes_, 1 << 20));
  }
  return held_.back().begin_item();
}

void ReadPath::end_held(std::uint64_t at_ms) { held_.back().end_item(at_ms); }

std::uint64_t ReadPath::release_held(std::uint64_t position) {
  // held_ holds its items in number order, held_footprints_ one footprint per item in the
  // same order: the first `items` of both go.
  std::size_t items = 0;
  std::size_t pages = 0;
  for (RawPage& p : held_) {
    if (p.first_seq >= position) break;
    if (p.end_seq() <= position) {
      items += p.count;
      ++pages;
      continue;
    }
    const auto n = static_cast<std::uint32_t>(position - p.first_seq);
    p.drop_front(n);  // partly below the position: the rest stays held
    items += n;
    break;
  }
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(pages));
  HOPPER_ASSERT(items <= held_footprints_.size(), "more held items than footprints");
  std::uint64_t released = 0;
  for (std::size_t i = 0; i < items; ++i) released += held_footprints_[i];
  held_footprints_.erase(held_footprints_.begin(), held_footprints_.begin() + static_cast<std::ptrdiff_t>(items));
  return released;
}

std::string& ReadPath::begin_shutdown_item(std::uint64_t seq, std::uint64_t at_ms) {
  // A new page after a Disk marker (its items take the numbers between) or once one holds
  // page_bytes: pages as the open page would have made them.
  if (shutdown_.empty() || shutdown_.back().end_seq() != seq || shutdown_.back().raw.size() >= page_bytes_ ||
      !shutdown_.back().time_fits(at_ms))
    shutdown_.emplace_back(seq, 0, std::string());
  return shutdown_.back().begin_item();
}

std::optional<RawPage> ReadPath::unread_ram_items() const {
  if (from_file_ || left_ == 0) return std::nullopt;
  return RawPage(first_seq_ + index_, left_, raw_.substr(items_->offset()), base_ms_, newest_ms_);
}

}  // namespace hopper::detail
