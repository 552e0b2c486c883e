#include "storage/segment_reader.hpp"

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_decompressBound (exported by libzstd.so)
#include <zstd.h>

#include "storage/format.hpp"

namespace hopper::detail {

void PageDecoder::DCtxFree::operator()(ZSTD_DCtx_s* d) const noexcept { ZSTD_freeDCtx(d); }

PageDecoder::PageDecoder() : dctx_(ZSTD_createDCtx()) {}
PageDecoder::~PageDecoder() = default;

Status PageDecoder::decode(std::string_view page, std::uint64_t expected_segment, std::string& raw,
                           format::PageHeader* header) {
  auto h = format::parse_page_header(page);
  if (!h) return Status(Errc::corrupt, page.size() >= 4 && (format::get_u32(page.data()) == format::kPageMagic ||
                                                           format::get_u32(page.data()) == format::kPageMagicV1)
                                           ? "page shorter than its header"
                                           : "bad page magic");
  if (page.size() - h->header_size() != h->payload_len)
    return Status(Errc::corrupt, "page length does not match its header");
  std::string_view payload = page.substr(h->header_size());
  if (!format::page_checksum_ok(page, payload)) return Status(Errc::corrupt, "page checksum mismatch");
  // From here on the header is trusted.
  if (h->segment != expected_segment)
    return Status(Errc::corrupt, "page belongs to segment " + std::to_string(h->segment));
  if (h->raw_len > format::kMaxRawPage) return Status(Errc::corrupt, "page raw length too large");
  // Before allocating raw_len bytes, make sure the frame says so and can produce that much:
  // memory for a page is bounded by the page's bytes, never by a length field alone.
  const unsigned long long content = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (content != h->raw_len) return Status(Errc::corrupt, "zstd frame size does not match page header");
  const unsigned long long bound = ZSTD_decompressBound(payload.data(), payload.size());
  if (ZSTD_isError(bound) || bound == ZSTD_CONTENTSIZE_ERROR || bound < h->raw_len)
    return Status(Errc::corrupt, "zstd frame cannot decompress to the page's raw length");
  raw.resize(h->raw_len);
  const std::size_t n = ZSTD_decompressDCtx(dctx_.get(), raw.data(), raw.size(), payload.data(), payload.size());
  if (ZSTD_isError(n)) return Status(Errc::corrupt, std::string("zstd: ") + ZSTD_getErrorName(n));
  if (n != h->raw_len) return Status(Errc::corrupt, "zstd frame shorter than page header says");
  // The items must tile the raw bytes exactly.
  format::ItemCursor cur(raw, h->version);
  std::uint32_t items = 0;
  while (cur.next()) ++items;
  if (!cur.ok() || items != h->item_count) return Status(Errc::corrupt, "page items do not match its count");
  if (header != nullptr) *header = *h;
  return Status();
}

SegmentReader::SegmentReader(std::shared_ptr<FileSystem> fs, std::filesystem::path dir)
    : fs_(std::move(fs)), dir_(std::move(dir)) {}
SegmentReader::~SegmentReader() = default;

Status SegmentReader::read(const format::PageRef& ref, OpenSegment& open, std::string& raw) {
  if (!open.is(ref.segment)) {
    open.file.reset();
    auto f = fs_->open(dir_ / format::segment_file_name(ref.segment), OpenMode::read);
    if (!f.ok()) return f.status();
    open.file = std::move(*f);
    open.number = ref.segment;
  }
  File& file = *open.file;
  page_.resize(ref.bytes);
  auto got = file.read_at(ref.offset, page_.data(), page_.size());
  if (!got.ok()) return got.status();
  const std::string where = file.path().native() + " at offset " + std::to_string(ref.offset);
  if (*got != page_.size()) return Status(Errc::corrupt, where + ": page cut short");
  format::PageHeader h;
  Status s = decoder_.decode(page_, ref.segment, raw, &h);
  if (!s.ok()) return Status(Errc::corrupt, where + ": " + s.message());
  // The reader frames the items by ref.version: a page replaced by one of another
  // version since it was found is not the page the queue expects.
  if (h.version != ref.version || h.first_seq != ref.first_seq || h.item_count != ref.count)
    return Status(Errc::corrupt, where + ": not the page recorded there");
  return Status();
}

}  // namespace hopper::detail
