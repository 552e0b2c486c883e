// Fuzz target api_sequence: the input decodes into budgets and a single-threaded sequence
// of sends, receives, flushes, commits, closes, clean reopens and simulated crashes, run
// against a queue on an in-memory file system and checked against a std::deque model.
//
// Input: a 9-byte header, then operations (one opcode byte and its arguments each):
//   memory:u16   max_memory_bytes = 1 + memory % 8192
//   page:u16     page_bytes = 1 + page % 4096
//   extra:u16    segment_bytes = SpillWriter::bound(page_bytes) + extra % 4096
//   disk:u8      max_disk_bytes = segment_bytes * (1 + disk % 4) + disk (0 when bit 0 of flags)
//   flags:u8     bit 0: no spilling; 1: manual_commit; 2: SyncPolicy::always (when spilling);
//                3: FullPolicy::fail (else block); 4-5: producers - 1; 6-7: compression level (1, -7, 3, 6)
//   level:u8     (unused but for the shape; keeps older corpora valid)
//
// Oracles (besides the sanitizers): every item received is the one the model says is next;
// a refused send leaves its item untouched and is refused for a reason the model can
// confirm (full only when memory has no room, too_large only when it cannot fit anywhere);
// Stats never shows memory above its budget or disk above its budget plus one page (plus
// what a shutdown legitimately wrote); the counts in Stats match the model and the files;
// after a drain nothing is left; a clean reopen gives back exactly what was due; after a
// crash, what comes back is in order, holds every item known to have been written to a
// file and not delivered (or, with manual_commit, not committed), and nothing committed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "byte_source.hpp"
#include "check.hpp"
#include "storage/format.hpp"
#include "memory_file_system.hpp"
#include "storage/spill_writer.hpp"

namespace {

using namespace hopper;
using namespace std::chrono_literals;

constexpr std::uint64_t kItemOverhead = format::kItemPrefixSize + 8;  // frame + cereal's string size
constexpr std::size_t kMaxOps = 400;
const std::filesystem::path kDir = "/queue";

std::uint64_t page_bound(std::uint64_t raw) { return detail::SpillWriter::bound(raw); }

// What the model knows of one accepted item. Its id is its index in Model::items.
struct Item {
  std::string bytes;
  bool spilled = false;          // accepted into a page, not into memory
  std::uint64_t spill_epoch = 0;  // receive operations before it was spilled
  bool written = false;          // known to be in a segment file (survives a process crash)
  bool committed = false;        // received before a commit: must never come back
};

// The queue under test with its model. Not thread-safe (the harness is single-threaded).
class Harness {
 public:
  explicit Harness(fuzz::ByteSource& in) : in_(in) {
    const std::uint16_t memory = in.u16(), page = in.u16(), extra = in.u16();
    const std::uint8_t disk = in.u8(), flags = in.u8();
    (void)in.u8();
    o_.directory = kDir;
    o_.file_system = mfs_;
    o_.max_memory_bytes = 1 + memory % 8192;
    o_.page_bytes = 1 + page % 4096;
    o_.segment_bytes = page_bound(o_.page_bytes) + extra % 4096;
    o_.max_disk_bytes = (flags & 1) ? 0 : o_.segment_bytes * (1 + disk % 4) + disk;
    o_.manual_commit = (flags & 2) != 0;
    o_.sync = (flags & 4) && o_.max_disk_bytes > 0 ? SyncPolicy::always : SyncPolicy::none;
    o_.when_full = (flags & 8) ? FullPolicy::fail : FullPolicy::block;
    producers_ = 1 + ((flags >> 4) & 3);
    static constexpr int kLevels[] = {1, -7, 3, 6};
    o_.compression_level = kLevels[flags >> 6];
    HOPPER_FUZZ_CHECK(validate(o_).ok(), validate(o_).message());
    max_disk_item_ = largest_disk_item();
    page_worst_ = spill() ? std::min(o_.segment_bytes, page_bound(o_.page_bytes + kItemOverhead + max_disk_item_)) : 0;
    open();
  }

  void run() {
    for (std::size_t n = 0; n < kMaxOps && !in_.empty(); ++n) {
      switch (in_.u8() % 13) {
        case 0: send(Kind::send); break;
        case 1: send(Kind::try_send); break;
        case 2: send(Kind::send_for); break;
        case 3: recv_one(Kind::try_recv); break;
        case 4: recv_one(Kind::recv_for); break;
        case 5: recv_one(Kind::recv); break;
        case 6: recv_many(); break;
        case 7: flush(); break;
        case 8: commit(); break;
        case 9: close_sender(); break;
        case 10: reopen(); break;
        case 11: crash(); break;
        case 12: drain(); break;
      }
      check_invariants();
    }
    drain();
    close_all();
  }

 private:
  enum class Kind { send, try_send, send_for, try_recv, recv_for, recv };

  bool spill() const { return o_.max_disk_bytes > 0; }
  bool always() const { return o_.sync == SyncPolicy::always; }
  bool all_closed() const { return std::none_of(open_.begin(), open_.end(), [](bool b) { return b; }); }
  Stats stats() const { return receiver_->stats(); }

  std::uint64_t largest_disk_item() const {
    if (page_bound(kItemOverhead) > o_.segment_bytes) return 0;
    std::uint64_t lo = 0, hi = o_.segment_bytes;
    while (lo < hi) {
      const std::uint64_t mid = (lo + hi + 1) / 2;
      if (page_bound(kItemOverhead + mid) <= o_.segment_bytes) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  void open() {
    auto ch = channel<std::string>(o_);
    HOPPER_FUZZ_CHECK(ch.ok(), "open: " + ch.status().message());
    receiver_.emplace(std::move(ch->receiver));
    Sender<std::string> first = std::move(ch->sender);
    for (int i = 1; i < producers_; ++i) senders_.push_back(first);
    senders_.push_back(std::move(first));
    open_.assign(senders_.size(), true);
  }

  void close_all() {
    senders_.clear();
    open_.clear();
    receiver_.reset();
  }

  // ---- sends ----
  std::string make_item() {
    const std::uint8_t sel = in_.u8();
    std::int64_t len;
    if (sel < 128) len = sel;
    else if (sel < 192) len = static_cast<std::int64_t>(o_.page_bytes) - 12 + (sel & 15) - 8;
    else if (sel < 224) len = static_cast<std::int64_t>(max_disk_item_) + (sel & 7) - 4;
    else len = in_.u16();
    len = std::clamp<std::int64_t>(len - 8, 0, 1 << 17);  // the id takes 8
    const char fill = static_cast<char>(in_.u8());
    std::string s(8 + static_cast<std::size_t>(len), fill);
    const std::uint64_t id = items_.size();
    for (int b = 0; b < 8; ++b) s[static_cast<std::size_t>(b)] = static_cast<char>(id >> (8 * b));
    return s;
  }

  void send(Kind kind) {
    const int h = in_.u8() % producers_;
    std::string item = make_item();
    const std::string original = item;
    const Stats before = stats();
    const std::uint64_t fp = footprint(item);
    const bool fits = !always() && before.memory_bytes + fp <= o_.max_memory_bytes;
    const bool too_big_for_disk = page_bound(kItemOverhead + item.size()) > o_.segment_bytes;
    // Spilling, an item too big for a segment waits for room in memory unless its
    // footprint exceeds the memory budget (or memory is not used: always).
    const bool certainly_too_large =
        spill() ? (too_big_for_disk && (o_.sync == SyncPolicy::always || fp > o_.max_memory_bytes))
                : fp > o_.max_memory_bytes;
    // A blocking send could wait forever here (one thread): only when it cannot.
    if (kind == Kind::send && o_.when_full == FullPolicy::block && !fits && !certainly_too_large) kind = Kind::try_send;
    Status st;
    switch (kind) {
      case Kind::send: st = senders_[h].send(std::move(item)); break;
      case Kind::try_send: st = senders_[h].try_send(std::move(item)); break;
      default: st = senders_[h].send_for(std::move(item), 0ms); break;
    }
    if (!st.ok()) HOPPER_FUZZ_CHECK(item == original, "a refused send changed its item");
    if (!open_[h]) {
      HOPPER_FUZZ_CHECK(st.code() == Errc::closed, "send on a closed sender: " + st.message());
      return;
    }
    const bool memory_certain = fits && before.disk_items == 0 &&
                                (!spill() || before.memory_bytes == 0 || before.memory_bytes + fp <= o_.max_memory_bytes / 2);
    const bool disk_certain = spill() && !too_big_for_disk && before.disk_items == 0 && before.disk_bytes == 0;
    switch (st.code()) {
      case Errc::ok: {
        const Stats after = stats();
        const bool spilled = after.items_spilled > before.items_spilled;
        items_.push_back(Item{original, spilled, receive_epoch_, always(), false});
        due_.push_back(items_.size() - 1);
        break;
      }
      case Errc::full:
      case Errc::timeout:
        HOPPER_FUZZ_CHECK(st.code() == (kind == Kind::send_for ? Errc::timeout : Errc::full), "wrong refusal: " + st.message());
        HOPPER_FUZZ_CHECK(kind != Kind::send || o_.when_full == FullPolicy::fail, "a blocking send returned " + st.message());
        HOPPER_FUZZ_CHECK(!fits, "full although the item fits in memory");
        HOPPER_FUZZ_CHECK(!memory_certain && !disk_certain, "full although there is certainly room");
        HOPPER_FUZZ_CHECK(!certainly_too_large, "full for an item that can never fit");
        break;
      case Errc::too_large:
        HOPPER_FUZZ_CHECK(spill() ? too_big_for_disk && (o_.sync == SyncPolicy::always || fp > o_.max_memory_bytes)
                                  : fp > o_.max_memory_bytes,
                          "too_large for an item that fits");
        HOPPER_FUZZ_CHECK(!memory_certain, "too_large although memory has room");
        break;
      default:
        HOPPER_FUZZ_CHECK(false, "unexpected send status " + st.message());
    }
    if (certainly_too_large) HOPPER_FUZZ_CHECK(st.code() == Errc::too_large, "expected too_large, got " + st.message());
    if (!spill() && fits) HOPPER_FUZZ_CHECK(st.ok(), "memory-only send with room refused: " + st.message());
  }

  // ---- receives ----
  void received(const std::string& got) {
    HOPPER_FUZZ_CHECK(!due_.empty(), "received an item when none was due");
    Item& want = items_[due_.front()];
    HOPPER_FUZZ_CHECK(got == want.bytes, "received item differs from the one due (id " + std::to_string(due_.front()) + ")");
    // With manual_commit a spilled item is only ever read from its file.
    if (o_.manual_commit && want.spilled) want.written = true;
    if (o_.manual_commit) uncommitted_.push_back(due_.front());
    else delivered_since_commit_.push_back(due_.front());
    due_.pop_front();
  }

  void nothing_due(const Status& st, Kind kind) {
    switch (st.code()) {
      case Errc::closed: HOPPER_FUZZ_CHECK(all_closed(), "closed while a sender is open"); break;
      case Errc::empty: HOPPER_FUZZ_CHECK(kind == Kind::try_recv && !all_closed(), "empty: " + st.message()); break;
      case Errc::timeout: HOPPER_FUZZ_CHECK(kind == Kind::recv_for && !all_closed(), "timeout: " + st.message()); break;
      default: HOPPER_FUZZ_CHECK(false, "unexpected receive status " + st.message());
    }
    drained();
  }

  void drained() {
    HOPPER_FUZZ_CHECK(due_.empty(), std::to_string(due_.size()) + " items due, but the queue says none");
    const Stats st = stats();
    HOPPER_FUZZ_CHECK(st.memory_items == 0 && st.disk_items == 0, "a drained queue holds items");
    if (uncommitted_.empty()) nothing_left();
  }

  // No segment is left once everything is received — except that, when syncing, a read
  // segment the writer still appends to is kept for more appends while it holds less than a
  // quarter of segment_bytes (Core::keep_read_active): then at most that one.
  void nothing_left() {
    HOPPER_FUZZ_CHECK(stats().memory_bytes == 0, "memory still charged with nothing held");
    std::size_t kept = 0;
    for (const auto& name : mfs_->file_names(kDir)) {
      if (!format::parse_segment_file_name(name)) continue;
      std::string bytes;
      const bool small = mfs_->get(std::filesystem::path(kDir) / name, bytes) && bytes.size() < o_.segment_bytes / 4;
      HOPPER_FUZZ_CHECK(o_.sync != SyncPolicy::none && small && ++kept == 1,
                        "segment " + name + " (" + std::to_string(bytes.size()) + " bytes) left with nothing due");
    }
  }

  // A receive may take a sealed page from RAM (it is then never written): items spilled
  // before it are not known to reach a file by a later flush.
  void before_receive() { ++receive_epoch_; }

  void recv_one(Kind kind) {
    before_receive();
    if (kind == Kind::recv && due_.empty() && !all_closed()) kind = Kind::try_recv;
    std::string out;
    Status st;
    switch (kind) {
      case Kind::recv: st = receiver_->recv(out); break;
      case Kind::recv_for: st = receiver_->recv_for(out, 0ms); break;
      default: st = receiver_->try_recv(out); break;
    }
    if (st.ok()) return received(out);
    nothing_due(st, kind);
  }

  void recv_many() {
    before_receive();
    const std::size_t max = in_.u8() % 8;
    std::vector<std::string> out;
    const Status st = receiver_->try_recv_many(out, max);
    HOPPER_FUZZ_CHECK(out.size() <= max, "recv_many returned more than asked");
    if (max == 0) {
      HOPPER_FUZZ_CHECK(st.ok() && out.empty(), "recv_many(0): " + st.message());
      return;
    }
    if (!st.ok()) {
      HOPPER_FUZZ_CHECK(out.empty(), "a failed recv_many returned items");
      return nothing_due(st, Kind::try_recv);
    }
    HOPPER_FUZZ_CHECK(!out.empty(), "recv_many ok with nothing");
    for (const auto& s : out) received(s);
  }

  void drain() {
    before_receive();
    std::string out;
    for (;;) {
      const Status st = receiver_->try_recv(out);
      if (!st.ok()) return nothing_due(st, Kind::try_recv);
      received(out);
    }
  }

  // ---- the rest ----
  void flush() {
    const int h = in_.u8() % producers_;
    const Status st = senders_[h].flush();
    HOPPER_FUZZ_CHECK(st.code() == (open_[h] ? Errc::ok : Errc::closed), "flush: " + st.message());
    if (!st.ok()) return;
    // Spilled since the last receive: in the open or a sealed page, which flush wrote.
    // Earlier ones may sit in a page the receiver took from RAM, except with manual_commit
    // or SyncPolicy::always, where the receiver never reads from RAM.
    const bool ram_reads = !o_.manual_commit && !always();
    for (std::uint64_t id : due_) {
      Item& it = items_[id];
      if (it.spilled && (!ram_reads || it.spill_epoch == receive_epoch_)) it.written = true;
    }
  }

  void commit() {
    HOPPER_FUZZ_CHECK(receiver_->commit().ok(), "commit failed");
    for (std::uint64_t id : uncommitted_) items_[id].committed = true;
    for (std::uint64_t id : delivered_since_commit_) items_[id].committed = true;
    uncommitted_.clear();
    delivered_since_commit_.clear();
    if (due_.empty()) nothing_left();
  }

  void close_sender() {
    const int h = in_.u8() % producers_;
    senders_[h].close();
    open_[h] = false;
  }

  void reopen() {
    std::uint64_t persisted = 0;
    for (std::uint64_t id : due_) persisted += page_bound(kItemOverhead + items_[id].bytes.size());
    for (std::uint64_t id : uncommitted_) persisted += page_bound(kItemOverhead + items_[id].bytes.size());
    disk_carry_ = stats().disk_bytes + persisted;
    close_all();
    // What was received and not committed is due again, first; a clean shutdown wrote
    // everything.
    due_.insert(due_.begin(), uncommitted_.begin(), uncommitted_.end());
    uncommitted_.clear();
    for (std::uint64_t id : due_) items_[id].written = true;
    // The shutdown's cursor covers everything delivered (without manual_commit).
    for (std::uint64_t id : delivered_since_commit_) items_[id].committed = true;
    delivered_since_commit_.clear();
    open();
    const Stats st = stats();
    HOPPER_FUZZ_CHECK(st.memory_items == 0 && st.disk_items == due_.size(),
                      "a clean reopen holds " + std::to_string(st.disk_items) + " items, " +
                          std::to_string(due_.size()) + " were due");
    HOPPER_FUZZ_CHECK(st.corrupt_pages == 0 && st.torn_bytes == 0, "a clean reopen found damage");
  }

  // The process dies between two calls: the files are what they were; nothing a shutdown
  // would write is written.
  void crash() {
    const fuzz::MemoryFileSystem::Snapshot files = mfs_->snapshot();
    disk_carry_ = stats().disk_bytes;
    close_all();
    mfs_->restore(files);
    open();
    const Stats at_open = stats();
    std::vector<std::uint64_t> back;
    std::string out;
    Status st;
    while ((st = receiver_->try_recv(out)).ok()) {
      HOPPER_FUZZ_CHECK(out.size() >= 8, "an item without an id came back after a crash");
      std::uint64_t id = 0;
      for (int b = 0; b < 8; ++b) id |= std::uint64_t(static_cast<unsigned char>(out[static_cast<std::size_t>(b)])) << (8 * b);
      HOPPER_FUZZ_CHECK(id < items_.size() && items_[id].bytes == out, "an item that was never accepted came back");
      HOPPER_FUZZ_CHECK(back.empty() || id > back.back(), "items came back out of order or twice after a crash");
      HOPPER_FUZZ_CHECK(!items_[id].committed, "a committed item came back after a crash");
      back.push_back(id);
    }
    HOPPER_FUZZ_CHECK(st.code() == Errc::empty, "drain after a crash: " + st.message());
    HOPPER_FUZZ_CHECK(at_open.items_recovered == back.size(), "recovered count differs from what came back");
    // Everything written to a file and still owed comes back.
    auto owed = [&](std::uint64_t id) {
      if (items_[id].written)
        HOPPER_FUZZ_CHECK(std::binary_search(back.begin(), back.end(), id),
                          "item " + std::to_string(id) + " was written to a file and lost in a crash");
    };
    for (std::uint64_t id : due_) owed(id);
    for (std::uint64_t id : uncommitted_) owed(id);
    due_.clear();
    uncommitted_.clear();
    delivered_since_commit_.clear();
    for (std::uint64_t id : back) {
      items_[id].written = true;
      if (o_.manual_commit) uncommitted_.push_back(id);
      else delivered_since_commit_.push_back(id);
    }
    drained();
  }

  void check_invariants() {
    const Stats st = stats();
    HOPPER_FUZZ_CHECK(st.memory_bytes <= o_.max_memory_bytes, "memory above its budget: " + std::to_string(st.memory_bytes));
    const std::uint64_t limit = std::max(o_.max_disk_bytes + page_worst_, disk_carry_);
    HOPPER_FUZZ_CHECK(st.disk_bytes <= limit, "disk above its budget: " + std::to_string(st.disk_bytes));
    disk_carry_ = std::min(disk_carry_, st.disk_bytes);
    HOPPER_FUZZ_CHECK(st.memory_items + st.disk_items == due_.size(),
                      "Stats count " + std::to_string(st.memory_items + st.disk_items) + " items, the model " +
                          std::to_string(due_.size()));
    std::uint64_t files = 0, bytes = 0;
    for (const auto& name : mfs_->file_names(kDir)) {
      if (!format::parse_segment_file_name(name)) continue;
      std::string b;
      (void)mfs_->get(kDir / name, b);
      ++files;
      bytes += b.size();
    }
    HOPPER_FUZZ_CHECK(st.segments == files && st.disk_bytes == bytes, "Stats disagree with the segment files");
  }

  fuzz::ByteSource& in_;
  std::shared_ptr<fuzz::MemoryFileSystem> mfs_ = std::make_shared<fuzz::MemoryFileSystem>();
  Options o_;
  int producers_ = 1;
  std::uint64_t max_disk_item_ = 0;
  std::uint64_t page_worst_ = 0;
  std::uint64_t disk_carry_ = 0;
  std::vector<Sender<std::string>> senders_;
  std::vector<bool> open_;
  std::optional<Receiver<std::string>> receiver_;
  std::vector<Item> items_;                        // every accepted item, by id
  std::deque<std::uint64_t> due_;                  // ids, in the order they must come out
  std::deque<std::uint64_t> uncommitted_;          // manual_commit: received, not committed
  std::vector<std::uint64_t> delivered_since_commit_;  // without manual_commit
  std::uint64_t receive_epoch_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::ByteSource in(data, size);
  Harness h(in);
  h.run();
  return 0;
}
