// Writes the seed corpora of the fuzz targets, from queues made by the library itself:
//   fuzz_corpus_generator OUT_DIR    ->  OUT_DIR/{api_sequence,segment_reader,page_decode}/*
// Deterministic (fixed contents, an in-memory file system), so regenerating changes nothing
// unless the format or the input layouts do. Run by fuzz/make-corpus.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "storage/format.hpp"
#include "memory_file_system.hpp"
#include "storage/spill_writer.hpp"

namespace {

using namespace hopper;
namespace fs = std::filesystem;

const fs::path kDir = "/queue";

void write(const fs::path& file, const std::string& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", file.c_str());
    std::exit(1);
  }
}

void put_u16(std::string& s, std::uint16_t v) {
  s.push_back(static_cast<char>(v));
  s.push_back(static_cast<char>(v >> 8));
}

// A queue directory as a shut-down queue leaves it: `items` sent, the first `received`
// of them received, then every handle closed.
struct Layout {
  std::uint32_t page_bytes;
  std::uint64_t segment_bytes;
  std::uint64_t memory;
  int items;
  int item_size;
  int received;
};

std::vector<std::string> queue_segments(const Layout& l, std::string* cursor) {
  auto mfs = std::make_shared<fuzz::MemoryFileSystem>();
  Options o;
  o.directory = kDir;
  o.file_system = mfs;
  o.page_bytes = l.page_bytes;
  o.segment_bytes = l.segment_bytes;
  o.max_disk_bytes = l.segment_bytes * 64;
  o.max_memory_bytes = l.memory;
  o.when_full = FullPolicy::fail;
  {
    auto ch = channel<std::string>(o);
    if (!ch.ok()) {
      std::fprintf(stderr, "open: %s\n", ch.status().message().c_str());
      std::exit(1);
    }
    for (int i = 0; i < l.items; ++i) {
      std::string item = "item " + std::to_string(i) + " " + std::string(static_cast<std::size_t>(l.item_size), 'a' + i % 26);
      (void)ch->sender.send(std::move(item));
    }
    std::string out;
    for (int i = 0; i < l.received; ++i) (void)ch->receiver.try_recv(out);
  }
  std::vector<std::string> files;
  for (std::uint64_t n = 1; n < 64; ++n) {
    std::string bytes;
    if (mfs->get(kDir / format::segment_file_name(n), bytes)) files.push_back(bytes);
  }
  if (cursor) (void)mfs->get(kDir / format::kCursorFileName, *cursor);
  return files;
}

// segment_reader input: flags, then files (all but the last length-prefixed). The files
// are renumbered from 1, so the pages inside must carry those numbers: only layouts whose
// segments start at 1 are used.
std::string segment_reader_input(std::uint8_t extra_flags, const std::vector<std::string>& files,
                                 const std::string& cursor_bytes = {}) {
  std::string in;
  const std::size_t n = std::min<std::size_t>(files.size(), 4);
  in.push_back(static_cast<char>((n - 1) | extra_flags));
  if (extra_flags & 4) in += cursor_bytes;
  for (std::size_t f = 0; f < n; ++f) {
    if (f + 1 < n) put_u16(in, static_cast<std::uint16_t>(files[f].size()));
    in += files[f];
  }
  return in;
}

// api_sequence input: the 9-byte header, then operations.
std::string api_header(std::uint16_t memory, std::uint16_t page, std::uint16_t extra, std::uint8_t disk,
                       std::uint8_t flags) {
  std::string h;
  put_u16(h, memory);
  put_u16(h, page);
  put_u16(h, extra);
  h.push_back(static_cast<char>(disk));
  h.push_back(static_cast<char>(flags));
  h.push_back(0);
  return h;
}

enum Op : std::uint8_t { kSend, kTrySend, kSendFor, kTryRecv, kRecvFor, kRecv, kRecvMany, kFlush, kCommit, kClose,
                         kReopen, kCrash, kDrain };

void op_send(std::string& s, Op kind, std::uint8_t handle, std::uint8_t size_selector, char fill) {
  s.push_back(static_cast<char>(kind));
  s.push_back(static_cast<char>(handle));
  s.push_back(static_cast<char>(size_selector));
  s.push_back(fill);
}
void op(std::string& s, Op o, int arg = -1) {
  s.push_back(static_cast<char>(o));
  if (arg >= 0) s.push_back(static_cast<char>(arg));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  int written = 0;
  auto emit = [&](const std::string& target, const std::string& name, const std::string& bytes) {
    write(out / target / name, bytes);
    ++written;
  };

  // ---- segment_reader and page_decode: from real queues ----
  const Layout layouts[] = {
      {256, 4096, 64, 12, 10, 0},      // several small pages in one segment
      {64, 512, 32, 20, 20, 5},        // several segments, some items received
      {4096, 8192, 1 << 20, 30, 50, 0},  // everything in memory, persisted at shutdown
      {1, 200, 1, 6, 0, 0},            // one item per page, tiny segments
      {512, 2048, 100, 40, 200, 35},   // most received: a cursor skips into a page
  };
  int li = 0;
  for (const Layout& l : layouts) {
    std::string cursor;
    const auto files = queue_segments(l, &cursor);
    if (files.empty()) continue;
    const std::string tag = "layout" + std::to_string(li++);
    emit("segment_reader", tag, segment_reader_input(0, files));
    emit("segment_reader", tag + "-small-new", segment_reader_input(32 | 128, files));
    emit("segment_reader", tag + "-manual", segment_reader_input(64, files));
    if (!cursor.empty()) emit("segment_reader", tag + "-cursor", segment_reader_input(4, files, cursor));
    // Damage: a flipped byte in the middle of the first file, and a torn tail.
    std::vector<std::string> damaged = files;
    damaged[0][damaged[0].size() / 2] ^= 0x5a;
    emit("segment_reader", tag + "-flipped", segment_reader_input(0, damaged));
    std::vector<std::string> torn = files;
    torn.back().resize(torn.back().size() - std::min<std::size_t>(torn.back().size(), 7));
    emit("segment_reader", tag + "-torn", segment_reader_input(0, torn));

    // Pages, one per page_decode input (selector 1: the header's own segment number).
    int pi = 0;
    for (std::size_t f = 0; f < files.size() && pi < 4; ++f) {
      const std::string& img = files[f];
      std::uint64_t off = format::kSegmentHeaderSize;
      while (off + format::kPageHeaderSize <= img.size() && pi < 4) {
        auto h = format::parse_page_header(std::string_view(img).substr(off));
        if (!h) break;
        const std::string page = img.substr(off, h->header_size() + h->payload_len);
        emit("page_decode", tag + "-page" + std::to_string(pi++), std::string(1, '\1') + page);
        off += page.size();
      }
    }
  }
  // page_decode: raw item encodings (selector 0, segment 0), including an empty string.
  for (const std::string& item : {std::string(), std::string("x"), std::string(40, 'q')}) {
    std::string enc;
    detail::encode(item, enc);
    emit("page_decode", "item-" + std::to_string(item.size()), std::string(9, '\0') + enc);
  }

  // ---- api_sequence: sequences over each operation and configuration ----
  struct Config {
    const char* name;
    std::uint16_t memory, page, extra;
    std::uint8_t disk, flags;
  };
  const Config configs[] = {
      {"spill", 200, 63, 300, 2, 0x08 | 0x10},        // fail, two producers
      {"tiny", 0, 0, 0, 0, 0x08},                     // 1-byte memory, 1-byte pages, minimal segment
      {"memory-only", 300, 100, 0, 0, 0x01 | 0x08},   // spilling off
      {"manual", 100, 31, 200, 3, 0x02 | 0x08 | 0x20},  // manual_commit, three producers
      {"always", 100, 127, 500, 1, 0x04 | 0x08},      // SyncPolicy::always
      {"block", 500, 255, 100, 2, 0x30},              // FullPolicy::block, four producers
  };
  for (const Config& c : configs) {
    std::string s = api_header(c.memory, c.page, c.extra, c.disk, c.flags);
    for (int i = 0; i < 12; ++i) op_send(s, static_cast<Op>(i % 3), static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i * 21), static_cast<char>('a' + i));
    op(s, kTryRecv);
    op(s, kRecvFor);
    op(s, kRecvMany, 3);
    op(s, kFlush, 0);
    op(s, kCommit);
    op(s, kReopen);
    op(s, kRecv);
    op_send(s, kSend, 1, 140, 'z');  // near the page size
    op_send(s, kSend, 0, 200, 'y');  // near the largest item a segment takes
    op(s, kCrash);
    for (int i = 0; i < 6; ++i) op_send(s, kTrySend, 0, static_cast<std::uint8_t>(9 + i), 'm');
    op(s, kFlush, 1);
    op(s, kCrash);
    op(s, kClose, 0);
    op(s, kDrain);
    op(s, kCommit);
    op(s, kReopen);
    emit("api_sequence", c.name, s);
  }
  std::printf("%d seed inputs written under %s\n", written, out.c_str());
  return 0;
}
