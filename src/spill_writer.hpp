// SpillWriter: compresses sealed pages and appends them to rotating segment files;
// Compressor: the compression alone, for pages compressed outside the writer token.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <hopper/file_system.hpp>
#include <hopper/status.hpp>

struct ZSTD_CCtx_s;

namespace hopper::detail {

// Where a written page landed, and what happened to the segment files on the way.
struct AppendedPage {
  std::uint64_t segment = 0;        // file the page went to
  std::uint64_t offset = 0;         // offset of its header in that file
  std::uint64_t bytes = 0;          // header + payload
  std::uint64_t raw_bytes = 0;      // uncompressed payload
  bool opened_segment = false;      // `segment` was created for this page
  std::uint64_t segment_header_bytes = 0;
  std::optional<std::uint64_t> closed_segment;  // the previous one, synced and closed
};

// A zstd compression context and what it compresses pages with. Not thread-safe: one
// thread at a time (the queue keeps idle ones for senders that compress in parallel).
class Compressor {
 public:
  Compressor();
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;
  // `out` becomes room for a page header (format::kPageHeaderSize bytes) followed by the
  // zstd frame of `raw`: what SpillWriter::append_compressed takes.
  Status compress(std::string_view raw, int level, std::string& out);

 private:
  struct CCtxFree {
    void operator()(ZSTD_CCtx_s* c) const noexcept;
  };
  std::unique_ptr<ZSTD_CCtx_s, CCtxFree> cctx_;
};

// Not thread-safe: owned by whoever holds the queue's writer token (see Core).
class SpillWriter {
 public:
  // sync_directory_on_create: fsync the directory after creating a segment, so the new
  // file's name is as durable as its bytes (SyncPolicy interval and always).
  SpillWriter(std::shared_ptr<FileSystem> fs, std::filesystem::path dir, std::uint64_t segment_bytes,
              int compression_level, std::uint64_t next_segment, bool sync_directory_on_create);
  ~SpillWriter();
  SpillWriter(const SpillWriter&) = delete;
  SpillWriter& operator=(const SpillWriter&) = delete;

  // Compresses `raw` (count length-prefixed items, the first numbered first_seq) into one
  // zstd frame and appends it as a page, first rotating to a new segment if the current
  // one would grow past segment_bytes. On failure nothing is left half-written: the file
  // is truncated back (best effort) and the caller still owns the page.
  Result<AppendedPage> append(std::uint64_t first_seq, std::uint32_t count, std::string_view raw);
  // The same for a page a Compressor made (`page`: header room, then the frame of
  // `raw_len` bytes); the header is filled in place.
  Result<AppendedPage> append_compressed(std::uint64_t first_seq, std::uint32_t count, std::uint64_t raw_len,
                                         std::string& page);

  // The segment being appended to, if any.
  std::optional<std::uint64_t> active() const;
  // Forgets the active segment without syncing (the receiver is about to delete it).
  void abandon();
  // fdatasyncs and closes the active segment (shutdown).
  Status close();
  // fdatasyncs the active segment (pages in earlier segments were synced when closed).
  Status sync();

  // Upper bound of the bytes append() adds for `raw_bytes` of payload, segment header included.
  static std::uint64_t bound(std::uint64_t raw_bytes);

 private:
  Status open_segment();

  std::shared_ptr<FileSystem> fs_;
  std::filesystem::path dir_;
  std::uint64_t segment_bytes_;
  int level_;
  std::uint64_t next_segment_;
  bool sync_directory_on_create_;
  std::unique_ptr<File> file_;
  std::uint64_t file_number_ = 0;
  std::uint64_t file_size_ = 0;
  // The active file was reported (AppendedPage::opened_segment) with a written page. Until
  // then the queue does not know the file exists: a failed first page must not hide it.
  bool announced_ = false;
  std::string buffer_;  // header + compressed payload of the page being written
  Compressor compressor_;
};

}  // namespace hopper::detail
