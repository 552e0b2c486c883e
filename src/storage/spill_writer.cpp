#include "storage/spill_writer.hpp"

#include <zstd.h>

#include <algorithm>

#include "storage/format.hpp"

namespace hopper::detail {

void Compressor::CCtxFree::operator()(ZSTD_CCtx_s* c) const noexcept { ZSTD_freeCCtx(c); }

Compressor::Compressor() : cctx_(ZSTD_createCCtx()) {}
Compressor::~Compressor() = default;

Status Compressor::compress(std::string_view raw, int level, std::string& out) {
  if (raw.size() > format::kMaxRawPage)
    return Status(Errc::too_large, "page of " + std::to_string(raw.size()) + " bytes");
  if (!cctx_) return Status(Errc::io_error, "zstd: cannot create a compression context (out of memory)");
  const std::size_t cap = ZSTD_compressBound(raw.size());
  out.resize(format::kPageHeaderSize + cap);
  const std::size_t n =
      ZSTD_compressCCtx(cctx_.get(), out.data() + format::kPageHeaderSize, cap, raw.data(), raw.size(), level);
  if (ZSTD_isError(n)) return Status(Errc::io_error, std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  out.resize(format::kPageHeaderSize + n);
  return Status();
}

SpillWriter::SpillWriter(std::shared_ptr<FileSystem> fs, std::filesystem::path dir,
                         std::uint64_t segment_bytes, int compression_level,
                         std::uint64_t next_segment, bool syncing)
    : fs_(std::move(fs)),
      dir_(std::move(dir)),
      segment_bytes_(segment_bytes),
      level_(compression_level),
      next_segment_(next_segment),
      syncing_(syncing) {}

SpillWriter::~SpillWriter() = default;

std::optional<std::uint64_t> SpillWriter::active() const {
  if (!file_) return std::nullopt;
  return file_number_;
}

void SpillWriter::abandon() { file_.reset(); }

void SpillWriter::reserve(std::uint64_t bytes) {
  if (!reserving_ || file_size_ + bytes <= reserved_) return;
  // A step ahead, never past the segment's size or the disk budget's room; nothing when
  // the budget leaves no room past this page (the append then grows the file).
  const std::uint64_t ahead = std::min(std::max(reserved_, file_size_) + kReserveStep, segment_bytes_);
  const std::uint64_t want = std::min(std::max(file_size_ + bytes, ahead), file_size_ + bytes + room_);
  if (want <= file_size_ + bytes) return;
  reserved_any_ = true;
  if (file_->preallocate(want).ok()) {
    reserved_ = want;
  } else {
    // Not supported, or no room: appends grow the file as they would without. A refusal
    // may still have reserved part of it: the file's size says.
    reserving_ = false;
    auto size = file_->size();
    reserved_ = std::max(reserved_, size.ok() ? *size : file_size_);
  }
}

void SpillWriter::trim() {
  if (!reserved_any_) return;
  // A failure leaves zeros after the last page: the next open cuts them as a torn tail.
  if (file_->truncate(file_size_).ok()) reserved_ = file_size_;
}

Status SpillWriter::close() {
  if (!file_) return Status();
  trim();
  Status s = file_->sync();
  file_.reset();
  return s;
}

Status SpillWriter::sync() {
  if (!file_) return Status();
  Status s = file_->sync();
  // After a failed fdatasync the kernel may have dropped the dirty pages while marking them
  // clean: a later sync of this file would succeed without making them durable. So the
  // file is done with; nothing more is trusted to it.
  if (!s.ok()) file_.reset();
  return s;
}

Status SpillWriter::open_segment() {
  const std::uint64_t number = next_segment_;
  auto path = dir_ / format::segment_file_name(number);
  auto f = fs_->open(path, OpenMode::truncate);
  if (!f.ok()) return f.status();
  char header[format::kSegmentHeaderSize];
  format::encode_segment_header({format::kVersion, number}, header);
  Status s = (*f)->append(header, sizeof header);
  if (s.ok() && syncing_) s = fs_->sync_directory(dir_);
  if (!s.ok()) {
    (void)fs_->remove(path);  // nothing of ours is in it yet
    return s;
  }
  ++next_segment_;
  file_ = std::move(*f);
  file_number_ = number;
  file_size_ = sizeof header;
  reserved_ = file_size_;
  reserving_ = syncing_;
  reserved_any_ = false;
  return Status();
}

AppendOutcome SpillWriter::append(const format::PageItems& items, std::string_view raw) {
  // Compressed straight into the write buffer, behind room for the header.
  if (Status s = compressor_.compress(raw, level_, buffer_); !s.ok()) {
    AppendOutcome out;
    out.status = std::move(s);
    return out;
  }
  return append_compressed(items, raw.size(), buffer_);
}

AppendOutcome SpillWriter::append_compressed(const format::PageItems& items, std::uint64_t raw_len,
                                             std::string& page) {
  AppendOutcome result;
  if (page.size() < format::kPageHeaderSize || raw_len > format::kMaxRawPage) {
    result.status = Status(Errc::invalid_argument, "internal error: not a compressed page");
    return result;
  }
  const std::uint64_t page_bytes = page.size();
  const std::uint64_t n = page_bytes - format::kPageHeaderSize;

  AppendedPage& out = result.page;
  if (file_ && file_size_ + page_bytes > segment_bytes_ && file_size_ > format::kSegmentHeaderSize) {
    // Rotation: the full segment is synced so a closed segment is durable on its own. A
    // failed sync is the caller's to judge (it knows which pages waited for it); the file
    // is closed either way and this page goes to a new one.
    result.closed_segment = file_number_;
    trim();
    result.closed_slack = reserved_ > file_size_ ? reserved_ - file_size_ : 0;
    result.closed_sync = file_->sync();
    file_.reset();
  }
  if (!file_) {
    Status s = open_segment();
    if (!s.ok()) {
      result.status = std::move(s);
      return result;
    }
    result.opened_segment = file_number_;
    result.opened_bytes = format::kSegmentHeaderSize;
  }

  format::PageHeader h;
  h.payload_len = static_cast<std::uint32_t>(n);
  h.raw_len = static_cast<std::uint32_t>(raw_len);
  h.item_count = items.count;
  h.first_seq = items.first_seq;
  h.segment = file_number_;
  h.base_ms = items.base_ms;
  h.newest_ms = items.newest_ms;
  format::encode_page_header(h, std::string_view(page).substr(format::kPageHeaderSize), page.data());

  reserve(page_bytes);
  Status s = file_->append(page.data(), page.size());
  if (!s.ok()) {
    result.status = std::move(s);
    // Cut what a failed write may have left, so the file stays a clean sequence of pages
    // (and the room reserved past it: the next append reserves again).
    reserved_ = file_size_;
    if (!file_->truncate(file_size_).ok()) {
      // Bytes of unknown length stay at the end: appending after them would put the next
      // page somewhere other than where it is recorded. The file is closed for appends
      // (synced, so the pages before the junk are as durable as the caller needs); the
      // next open cuts the junk as a torn tail.
      result.closed_segment = file_number_;
      result.closed_sync = file_->sync();
      file_.reset();
    }
    return result;
  }
  out.segment = file_number_;
  out.offset = file_size_;
  out.bytes = page_bytes;
  out.raw_bytes = raw_len;
  file_size_ += page_bytes;
  return result;
}

}  // namespace hopper::detail
