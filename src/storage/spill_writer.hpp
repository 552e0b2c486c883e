// SpillWriter: compresses sealed pages and appends them to rotating segment files;
// Compressor: the compression alone, for pages compressed outside the writer token.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <zstd.h>

#include <hopper/file_system.hpp>
#include <hopper/status.hpp>

#include "storage/format.hpp"

struct ZSTD_CCtx_s;

namespace hopper::detail {

// Where a written page landed.
struct AppendedPage {
  std::uint64_t segment = 0;        // file the page went to
  std::uint64_t offset = 0;         // offset of its header in that file
  std::uint64_t bytes = 0;          // header + payload
  std::uint64_t raw_bytes = 0;      // uncompressed payload
};

// What one append did: the page's own fate, and what happened to the segment it was
// appended to before (rotation, or an abandoned file) — reported even when the page
// itself failed, because whoever waits for that segment's pages must hear of it.
struct AppendOutcome {
  Status status;       // ok: `page` says where it went; else the page was not written
  AppendedPage page;
  // The writer stopped appending to this segment: rotation (the file was full) or a
  // failed append whose bytes could not be cut back. Its fdatasync's result is in
  // `closed_sync`: ok means every page in it is durable; a failure means the pages written
  // since its last successful sync may be lost in a power loss.
  std::optional<std::uint64_t> closed_segment;
  Status closed_sync;
  // A segment file this call created (its header written), whether or not the page then
  // went into it: the caller counts it from now on, so that no file is unaccounted for.
  std::optional<std::uint64_t> opened_segment;
  std::uint64_t opened_bytes = 0;
  // Room the closed segment kept reserved past its pages (its cut failed), else 0.
  std::uint64_t closed_slack = 0;
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
  // syncing (SyncPolicy interval and always): fsync the directory after creating a segment,
  // so the new file's name is as durable as its bytes; and reserve room ahead of the
  // appends (File::preallocate, kReserveStep at a time, never past segment_bytes), so that
  // an fdatasync need not record a new file size — the room not used is cut when the
  // segment is closed (a crash leaves it as zeros after the last page: a torn tail, cut at
  // the next open).
  SpillWriter(std::shared_ptr<FileSystem> fs, std::filesystem::path dir, std::uint64_t segment_bytes,
              int compression_level, std::uint64_t next_segment, bool syncing);
  ~SpillWriter();
  SpillWriter(const SpillWriter&) = delete;
  SpillWriter& operator=(const SpillWriter&) = delete;

  // Compresses `raw` (count length-prefixed items, the first numbered first_seq) into one
  // zstd frame and appends it as a page, first rotating to a new segment if the current
  // one would grow past segment_bytes (the full one is fdatasync'ed and closed, whatever
  // that sync says: a file whose sync failed is never appended to again). On failure
  // nothing is left half-written: the file is truncated back, and if that fails too the
  // file is closed for appends (its tail is cut at the next open). The caller still owns
  // the page.
  AppendOutcome append(const format::PageItems& items, std::string_view raw);
  // The same for a page a Compressor made (`page`: header room, then the frame of
  // `raw_len` bytes); the header is filled in place.
  AppendOutcome append_compressed(const format::PageItems& items, std::uint64_t raw_len, std::string& page);

  // The segment being appended to, if any.
  std::optional<std::uint64_t> active() const;
  // How far past the end of the next page room may be reserved (syncing): the disk budget's
  // room, which the caller knows. Reserved room is disk in use; it never exceeds this.
  void set_reserve_room(std::uint64_t bytes) noexcept { room_ = bytes; }
  // The room reserved past the active segment's last page (0 without one).
  std::uint64_t slack() const noexcept { return file_ && reserved_ > file_size_ ? reserved_ - file_size_ : 0; }
  // Forgets the active segment without syncing (the receiver is about to delete it, or
  // it is gone). The file stays; the caller removes it.
  void abandon();
  // fdatasyncs and closes the active segment (shutdown).
  Status close();
  // fdatasyncs the active segment (pages in earlier segments were synced when closed).
  // A failure closes it for appends: the next page starts a new segment.
  Status sync();

  // Upper bound of the bytes append() adds for `raw_bytes` of payload, segment header included.
  // Inline: the disk budget's admission rule asks it three times per spilled item.
  static std::uint64_t bound(std::uint64_t raw_bytes) {
    return format::kSegmentHeaderSize + format::kPageHeaderSize + ZSTD_COMPRESSBOUND(raw_bytes);
  }

  // How far ahead of its appends a syncing writer reserves room (measured: an fdatasync
  // per 280-byte append ran at 1.27x the rate of appends that grow the file, whether the
  // room came at once or a mebibyte at a time; docs/performance.md, "Durable writes").
  static constexpr std::uint64_t kReserveStep = 256 * 1024;

 private:
  Status open_segment();
  // Reserves room for `bytes` more at the end (syncing only); a file that refuses goes on
  // without.
  void reserve(std::uint64_t bytes);
  // Cuts the room reserved past the last page, before the file is closed.
  void trim();

  std::shared_ptr<FileSystem> fs_;
  std::filesystem::path dir_;
  std::uint64_t segment_bytes_;
  int level_;
  std::uint64_t next_segment_;
  bool syncing_;
  std::unique_ptr<File> file_;
  std::uint64_t file_number_ = 0;
  std::uint64_t file_size_ = 0;
  std::uint64_t reserved_ = 0;  // the file's size with its reserved room (>= file_size_)
  bool reserving_ = false;      // the file takes preallocate()
  std::uint64_t room_ = 0;      // set_reserve_room
  bool reserved_any_ = false;   // preallocate() was called on this file: cut it at close
  std::string buffer_;  // header + compressed payload of the page being written
  Compressor compressor_;
};

}  // namespace hopper::detail
