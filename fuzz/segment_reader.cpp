// Fuzz target segment_reader: arbitrary bytes as one or more segment files (and maybe a
// CURSOR) in a fresh queue directory; channel<std::string>() opens it, recovers, and the
// receiver drains it. It must never crash, hang or leak, and every item it returns must be
// one that is validly encoded in a page whose checksum holds.
//
// Input:
//   flags:u8   bits 0-1: segment files - 1;  bit 2: CURSOR from the next 24 bytes as they are;
//              bit 3: a valid CURSOR whose position is the next u64;  bit 4: the first segment
//              number is 1 + the next u16 (else 1);  bit 5: small pages and budgets;
//              bit 6: manual_commit;  bit 7: send new items after the backlog
//   then each file but the last: length:u16, bytes;  the last file: everything left.
//
// Oracles, besides the sanitizers:
//   - open fails only with Errc::corrupt, and exactly when a file holds a valid segment
//     header of another format version;
//   - every item received is, as a multiset, among the items of the pages that
//     page_oracle.cpp finds valid (anywhere in the files), decoded as std::string;
//   - items_recovered == received + corrupt_items; after the drain nothing is held in
//     memory or on disk, and no segment file is left;
//   - items sent after the open come after the backlog, intact and in order;
//   - a clean reopen after the drain delivers nothing (no redelivery).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <xxhash.h>

#include <hopper/hopper.hpp>

#include "byte_source.hpp"
#include "check.hpp"
#include "storage/format.hpp"
#include "memory_file_system.hpp"
#include "page_oracle.hpp"

namespace {

using namespace hopper;

const std::filesystem::path kDir = "/queue";

// A valid segment header (magic, checksum) for `number` with a version this build does not
// read (neither 1 nor 2).
bool foreign_version(const std::string& image, std::uint64_t number) {
  if (image.size() < format::kSegmentHeaderSize) return false;
  if (format::get_u64(image.data()) != format::kSegmentMagic) return false;
  if (format::get_u64(image.data() + 24) != XXH3_64bits(image.data(), 24)) return false;
  return format::get_u64(image.data() + 16) == number && !format::known_segment_version(format::get_u32(image.data() + 8));
}

std::size_t segment_files_left(const fuzz::MemoryFileSystem& mfs) {
  std::size_t n = 0;
  for (const auto& name : mfs.file_names(kDir))
    if (format::parse_segment_file_name(name)) ++n;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::ByteSource in(data, size);
  const std::uint8_t flags = in.u8();
  const int files = 1 + (flags & 3);
  std::string cursor;
  if (flags & 4) cursor = in.bytes(format::kCursorSize);
  if (flags & 8) cursor = format::encode_cursor(in.u64());
  const std::uint64_t first_number = (flags & 16) ? 1 + std::uint64_t{in.u16()} : 1;

  auto mfs = std::make_shared<fuzz::MemoryFileSystem>();
  std::map<std::string, std::size_t> valid;  // item -> times it is validly encoded
  bool expect_corrupt = false;
  for (int f = 0; f < files; ++f) {
    const std::string image = f + 1 < files ? in.bytes(in.u16()) : in.rest();
    const std::uint64_t number = first_number + static_cast<std::uint64_t>(f);
    for (const auto& page : fuzz::oracle_pages_anywhere(image, number)) {
      for (const auto& item : page.items) {
        std::string s;
        if (detail::decode(item, s)) ++valid[s];
      }
    }
    expect_corrupt = expect_corrupt || foreign_version(image, number);
    mfs->put(kDir / format::segment_file_name(number), image);
  }
  if (flags & (4 | 8)) mfs->put(kDir / format::kCursorFileName, cursor);

  Options o;
  o.directory = kDir;
  o.file_system = mfs;
  o.max_memory_bytes = (flags & 32) ? 64 : 1 << 16;
  o.page_bytes = (flags & 32) ? 16 : 4096;
  o.segment_bytes = 1 << 16;
  o.max_disk_bytes = 1 << 20;
  o.manual_commit = (flags & 64) != 0;

  std::size_t received = 0;
  {
    auto ch = channel<std::string>(o);
    if (!ch.ok()) {
      HOPPER_FUZZ_CHECK(ch.status().code() == Errc::corrupt && expect_corrupt,
                        "open failed: " + ch.status().message());
      return 0;
    }
    HOPPER_FUZZ_CHECK(!expect_corrupt, "a segment of another format version was accepted");
    const Stats at_open = ch->receiver.stats();

    std::string item;
    Status s;
    while ((s = ch->receiver.try_recv(item)).ok()) {
      auto it = valid.find(item);
      HOPPER_FUZZ_CHECK(it != valid.end() && it->second > 0,
                        "received an item of " + std::to_string(item.size()) +
                            " bytes that no valid page holds (or more often than pages hold it)");
      --it->second;
      ++received;
    }
    HOPPER_FUZZ_CHECK(s.code() == Errc::empty, "drain ended with " + s.message());
    const Stats st = ch->receiver.stats();
    HOPPER_FUZZ_CHECK(st.items_recovered == at_open.disk_items, "items_recovered differs from disk_items at open");
    HOPPER_FUZZ_CHECK(st.items_recovered == received + st.corrupt_items,
                      "recovered " + std::to_string(st.items_recovered) + " items, received " +
                          std::to_string(received) + ", " + std::to_string(st.corrupt_items) + " undecodable");
    HOPPER_FUZZ_CHECK(st.memory_items == 0 && st.disk_items == 0, "the drained queue still holds items");
    if (o.manual_commit) HOPPER_FUZZ_CHECK(ch->receiver.commit().ok(), "commit failed");
    HOPPER_FUZZ_CHECK(segment_files_left(*mfs) == 0, "segment files are left after the drain");

    if (flags & 128) {
      // New items follow the backlog, intact and in order.
      std::vector<std::string> sent;
      for (int k = 0; k < 8 && !in.empty(); ++k) {
        std::string fresh = "new-" + std::to_string(k) + in.bytes(in.u8());
        Status st2 = ch->sender.try_send(std::string(fresh));
        HOPPER_FUZZ_CHECK(st2.ok() || st2.code() == Errc::full, "send after recovery: " + st2.message());
        if (st2.ok()) sent.push_back(fresh);
      }
      for (const std::string& want : sent) {
        Status r = ch->receiver.try_recv(item);
        HOPPER_FUZZ_CHECK(r.ok() && item == want, "an item sent after recovery came back wrong: " + r.message());
      }
      if (o.manual_commit) HOPPER_FUZZ_CHECK(ch->receiver.commit().ok(), "commit failed");
    }
  }

  // Everything was delivered (and committed): a clean reopen has nothing to give.
  auto again = channel<std::string>(o);
  HOPPER_FUZZ_CHECK(again.ok(), "reopen failed: " + again.status().message());
  std::string item;
  const Status s = again->receiver.try_recv(item);
  HOPPER_FUZZ_CHECK(s.code() == Errc::empty, "a clean reopen after a full drain delivered again: " + s.message());
  return 0;
}
