#include "spill_writer.hpp"

#include <zstd.h>

#include "format.hpp"

namespace hopper::detail {

void SpillWriter::CCtxFree::operator()(ZSTD_CCtx_s* c) const noexcept { ZSTD_freeCCtx(c); }

SpillWriter::SpillWriter(std::shared_ptr<FileSystem> fs, std::filesystem::path dir,
                         std::uint64_t segment_bytes, int compression_level,
                         std::uint64_t next_segment, bool sync_directory_on_create)
    : fs_(std::move(fs)),
      dir_(std::move(dir)),
      segment_bytes_(segment_bytes),
      level_(compression_level),
      next_segment_(next_segment),
      sync_directory_on_create_(sync_directory_on_create),
      cctx_(ZSTD_createCCtx()) {}

SpillWriter::~SpillWriter() = default;

std::uint64_t SpillWriter::bound(std::uint64_t raw_bytes) {
  return format::kSegmentHeaderSize + format::kPageHeaderSize + ZSTD_COMPRESSBOUND(raw_bytes);
}

std::optional<std::uint64_t> SpillWriter::active() const {
  if (!file_) return std::nullopt;
  return file_number_;
}

void SpillWriter::abandon() {
  // A file never announced holds only its header and is known to no one: remove it.
  if (file_ && !announced_) (void)fs_->remove(file_->path());
  file_.reset();
}

Status SpillWriter::close() {
  if (!file_) return Status();
  Status s = file_->sync();
  file_.reset();
  return s;
}

Status SpillWriter::sync() {
  if (!file_) return Status();
  return file_->sync();
}

Status SpillWriter::open_segment() {
  const std::uint64_t number = next_segment_;
  auto path = dir_ / format::segment_file_name(number);
  auto f = fs_->open(path, OpenMode::truncate);
  if (!f.ok()) return f.status();
  char header[format::kSegmentHeaderSize];
  format::encode_segment_header({format::kVersion, number}, header);
  Status s = (*f)->append(header, sizeof header);
  if (s.ok() && sync_directory_on_create_) s = fs_->sync_directory(dir_);
  if (!s.ok()) {
    (void)fs_->remove(path);  // nothing of ours is in it yet
    return s;
  }
  ++next_segment_;
  file_ = std::move(*f);
  file_number_ = number;
  file_size_ = sizeof header;
  return Status();
}

Result<AppendedPage> SpillWriter::append(std::uint64_t first_seq, std::uint32_t count,
                                         std::string_view raw) {
  if (raw.size() > format::kMaxRawPage)
    return Status(Errc::too_large, "page of " + std::to_string(raw.size()) + " bytes");
  // Compress straight into the write buffer, behind room for the header.
  const std::size_t cap = ZSTD_compressBound(raw.size());
  buffer_.resize(format::kPageHeaderSize + cap);
  const std::size_t n = ZSTD_compressCCtx(cctx_.get(), buffer_.data() + format::kPageHeaderSize, cap,
                                          raw.data(), raw.size(), level_);
  if (ZSTD_isError(n))
    return Status(Errc::io_error, std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  buffer_.resize(format::kPageHeaderSize + n);
  const std::uint64_t page_bytes = buffer_.size();

  AppendedPage out;
  if (file_ && file_size_ + page_bytes > segment_bytes_ && file_size_ > format::kSegmentHeaderSize) {
    // Rotation: the full segment is synced so a closed segment is durable on its own.
    Status s = file_->sync();
    if (!s.ok()) return s;
    out.closed_segment = file_number_;
    file_.reset();
  }
  if (!file_) {
    Status s = open_segment();
    if (!s.ok()) return s;
    announced_ = false;
  }

  format::PageHeader h;
  h.payload_len = static_cast<std::uint32_t>(n);
  h.raw_len = static_cast<std::uint32_t>(raw.size());
  h.item_count = count;
  h.first_seq = first_seq;
  h.segment = file_number_;
  format::encode_page_header(h, std::string_view(buffer_).substr(format::kPageHeaderSize),
                             buffer_.data());

  Status s = file_->append(buffer_.data(), buffer_.size());
  if (!s.ok()) {
    // Cut what a failed write may have left, so the file stays a clean sequence of pages.
    (void)file_->truncate(file_size_);
    return s;
  }
  if (!announced_) {
    out.opened_segment = true;
    out.segment_header_bytes = format::kSegmentHeaderSize;
    announced_ = true;
  }
  out.segment = file_number_;
  out.offset = file_size_;
  out.bytes = page_bytes;
  out.raw_bytes = raw.size();
  file_size_ += page_bytes;
  return out;
}

}  // namespace hopper::detail
