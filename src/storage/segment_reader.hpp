// SegmentReader: reads one page back from a segment file, validated and decompressed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <hopper/file_system.hpp>
#include <hopper/status.hpp>

#include "storage/format.hpp"

struct ZSTD_DCtx_s;

namespace hopper::detail {

// Decompresses one page payload; checks that the frame yields exactly raw_len bytes.
// Reusable (keeps its zstd context). Not thread-safe.
class PageDecoder {
 public:
  PageDecoder();
  ~PageDecoder();
  // `page` is header + payload; the checksum, lengths and frame are all verified.
  // Errc::corrupt on any mismatch, with what failed in the message. `header`, when given,
  // receives the page's header (its version says how `raw`'s items are framed).
  Status decode(std::string_view page, std::uint64_t expected_segment, std::string& raw,
                format::PageHeader* header = nullptr);

 private:
  struct DCtxFree {
    void operator()(ZSTD_DCtx_s* d) const noexcept;
  };
  std::unique_ptr<ZSTD_DCtx_s, DCtxFree> dctx_;
};

// A segment file kept open between pages by whoever reads them. Whoever removes the
// segment closes it too, so an open descriptor never keeps a deleted file's space.
struct OpenSegment {
  std::unique_ptr<File> file;
  std::uint64_t number = 0;
  bool is(std::uint64_t segment) const noexcept { return file != nullptr && number == segment; }
};

// Used by the receiver only. Not thread-safe.
class SegmentReader {
 public:
  SegmentReader(std::shared_ptr<FileSystem> fs, std::filesystem::path dir);
  ~SegmentReader();

  // Reads and decodes the page at `ref` into `raw`, through `open` when it is open on
  // ref.segment (else the file is opened into it, for the next page). io_error or
  // not_found if the file cannot be opened or read (the page may be retried), corrupt if
  // it is damaged (it never will be readable).
  Status read(const format::PageRef& ref, OpenSegment& open, std::string& raw);

 private:
  std::shared_ptr<FileSystem> fs_;
  std::filesystem::path dir_;
  std::string page_;
  PageDecoder decoder_;
};

}  // namespace hopper::detail
