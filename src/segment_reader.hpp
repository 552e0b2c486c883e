// SegmentReader: reads one page back from a segment file, validated and decompressed.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <hopper/file_system.hpp>
#include <hopper/status.hpp>

struct ZSTD_DCtx_s;

namespace hopper::detail {

// Where a page is and what it claims to hold (from a header whose checksum passed).
struct PageRef {
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;       // header + payload
  std::uint64_t first_seq = 0;
  std::uint32_t count = 0;
  std::uint32_t skip = 0;        // leading items already delivered before a restart
  bool discarded = false;        // dropped (drop_oldest) or never written (failed under
                                 // SyncPolicy::always): the receiver skips its items
};

// Decompresses one page payload; checks that the frame yields exactly raw_len bytes.
// Reusable (keeps its zstd context). Not thread-safe.
class PageDecoder {
 public:
  PageDecoder();
  ~PageDecoder();
  // `page` is header + payload; the checksum, lengths and frame are all verified.
  // Errc::corrupt on any mismatch, with what failed in the message.
  Status decode(std::string_view page, std::uint64_t expected_segment, std::string& raw);

 private:
  struct DCtxFree {
    void operator()(ZSTD_DCtx_s* d) const noexcept;
  };
  std::unique_ptr<ZSTD_DCtx_s, DCtxFree> dctx_;
};

// Used by the receiver only. Keeps the last segment file open between pages.
class SegmentReader {
 public:
  SegmentReader(std::shared_ptr<FileSystem> fs, std::filesystem::path dir);
  ~SegmentReader();

  // Reads and decodes the page at `ref` into `raw`. io_error if the file cannot be read
  // (the page may be retried), corrupt if it is damaged (it never will be readable).
  Status read(const PageRef& ref, std::string& raw);
  // Drops the cached descriptor if it is for `segment` (a file removed or about to be).
  void forget(std::uint64_t segment);

 private:
  std::shared_ptr<FileSystem> fs_;
  std::filesystem::path dir_;
  std::unique_ptr<File> file_;
  std::uint64_t file_number_ = 0;
  std::string page_;
  PageDecoder decoder_;
};

}  // namespace hopper::detail
