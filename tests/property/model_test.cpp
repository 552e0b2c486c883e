// Model-based test of a queue through its public API: rapidcheck draws budgets and a
// sequence of commands — sends from several producers, receives of every kind, flushes,
// commits (of everything received, or through a position), closes, reopens, and reopens after damaging one byte of a segment — and every
// outcome is checked against a plain std::deque of the items that must come out next.
//
// The run is single-threaded, so a call that could wait forever is issued only when it
// cannot: a blocking send only when the item fits in memory (or is certain to be too
// large), a blocking recv only when the model says an item (or `closed`) is due. Should
// such a call block anyway, a watchdog unblocks it and the property fails.
//
// CI runs 1,000 sequences (RC_PARAMS=max_success=1000, set in CMakeLists.txt); the long
// mode is the same binary with a larger RC_PARAMS, see docs/testing.md.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <future>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <hopper/hopper.hpp>

#include "fault_fs.hpp"
#include "storage/format.hpp"
#include "storage/spill_writer.hpp"
#include "test_util.hpp"

namespace hopper {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Raw bytes of one item in a page: its frame (docs/format.md) + cereal's u64 size + the characters.
constexpr std::uint64_t kItemOverhead = format::kItemPrefixSize + 8;
// A call the model says cannot block is declared hung after this long. Generous: it only
// matters when the library is wrong, and a correct call returns in microseconds.
constexpr auto kHangLimit = 5s;

std::uint64_t page_bound(std::uint64_t raw) { return detail::SpillWriter::bound(raw); }

// Budgets and layout of one run, drawn by rapidcheck down to the smallest valid values.
struct Config {
  std::uint64_t max_memory_bytes = 0;
  std::uint64_t max_disk_bytes = 0;
  std::uint64_t segment_bytes = 0;
  std::uint32_t page_bytes = 0;
  int compression_level = 1;
  FullPolicy when_full = FullPolicy::block;
  SyncPolicy sync = SyncPolicy::none;
  bool manual_commit = false;
  int producers = 1;

  bool spill() const { return max_disk_bytes > 0; }
  bool sync_always() const { return sync == SyncPolicy::always; }
  // Longest string whose page (alone, with both headers) still fits in a segment.
  std::uint64_t max_disk_item() const {
    if (page_bound(kItemOverhead) > segment_bytes) return 0;
    std::uint64_t lo = 0, hi = segment_bytes;
    while (lo < hi) {
      const std::uint64_t mid = (lo + hi + 1) / 2;
      if (page_bound(kItemOverhead + mid) <= segment_bytes) lo = mid; else hi = mid - 1;
    }
    return lo;
  }
  Options options(const fs::path& dir) const {
    Options o;
    o.directory = dir;
    o.max_memory_bytes = max_memory_bytes;
    o.max_disk_bytes = max_disk_bytes;
    o.segment_bytes = segment_bytes;
    o.page_bytes = page_bytes;
    o.compression_level = compression_level;
    o.when_full = when_full;
    o.sync = sync;
    o.sync_interval = 1ms;
    o.manual_commit = manual_commit;
    return o;
  }
};

std::ostream& operator<<(std::ostream& os, const Config& c) {
  static const char* syncs[] = {"none", "interval", "always"};
  return os << "{memory " << c.max_memory_bytes << ", disk " << c.max_disk_bytes << ", segment "
            << c.segment_bytes << ", page " << c.page_bytes << ", level " << c.compression_level << ", "
            << (c.when_full == FullPolicy::block ? "block" : "fail") << ", sync "
            << syncs[static_cast<int>(c.sync)] << (c.manual_commit ? ", manual commit" : "") << ", producers "
            << c.producers << "}";
}

rc::Gen<Config> gen_config() {
  return rc::gen::exec([] {
    Config c;
    c.page_bytes = *rc::gen::weightedOneOf<std::uint32_t>({
        {1, rc::gen::just<std::uint32_t>(1)},
        {3, rc::gen::inRange<std::uint32_t>(1, 128)},
        {3, rc::gen::inRange<std::uint32_t>(128, 4096)},
        {1, rc::gen::inRange<std::uint32_t>(4096, 32768)},
    });
    const std::uint64_t min_segment = page_bound(c.page_bytes);
    if (*rc::gen::weightedElement<bool>({{17, true}, {3, false}})) {  // spilling on
      c.segment_bytes = min_segment + *rc::gen::weightedOneOf<std::uint64_t>({
                                          {1, rc::gen::just<std::uint64_t>(0)},
                                          {2, rc::gen::inRange<std::uint64_t>(0, 3 * min_segment)},
                                      });
      c.max_disk_bytes = c.segment_bytes * *rc::gen::inRange<std::uint64_t>(1, 5) +
                         *rc::gen::weightedOneOf<std::uint64_t>({
                             {1, rc::gen::just<std::uint64_t>(0)},
                             {2, rc::gen::inRange<std::uint64_t>(0, c.segment_bytes)},
                         });
    } else {
      // Spilling off: the segment size only shapes the pages written at shutdown.
      c.segment_bytes = *rc::gen::inRange<std::uint64_t>(1, 4 * min_segment);
      c.max_disk_bytes = 0;
    }
    c.max_memory_bytes = *rc::gen::weightedOneOf<std::uint64_t>({
        {1, rc::gen::just<std::uint64_t>(1)},
        {2, rc::gen::inRange<std::uint64_t>(1, 100)},
        {3, rc::gen::inRange<std::uint64_t>(100, 4096)},
        {1, rc::gen::inRange<std::uint64_t>(4096, 65536)},
    });
    c.compression_level = *rc::gen::element(-7, -1, 1, 3);
    c.when_full = *rc::gen::element(FullPolicy::block, FullPolicy::fail);
    c.sync = *rc::gen::weightedOneOf<SyncPolicy>({
        {6, rc::gen::just(SyncPolicy::none)},
        {2, rc::gen::just(SyncPolicy::interval)},
        {2, rc::gen::just(c.spill() ? SyncPolicy::always : SyncPolicy::none)},
    });
    c.manual_commit = *rc::gen::weightedElement<bool>({{1, true}, {3, false}});
    c.producers = *rc::gen::inRange(1, 5);
    return c;
  });
}

// How one item is made: its length and how its bytes are filled. The bytes themselves are
// made when the command runs, so that every item of 8 bytes or more is distinct.
struct ItemSpec {
  std::uint64_t size = 0;
  bool random_bytes = false;  // incompressible, so pages reach their worst-case size
  std::uint32_t seed = 0;
};

std::ostream& operator<<(std::ostream& os, const ItemSpec& s) {
  return os << s.size << " bytes" << (s.random_bytes ? " random" : "");
}

rc::Gen<ItemSpec> gen_item(const Config& c) {
  return rc::gen::exec([c] {
    const auto near = [](std::int64_t centre) {
      return rc::gen::map(rc::gen::inRange<std::int64_t>(-3, 4), [centre](std::int64_t d) {
        return static_cast<std::uint64_t>(std::max<std::int64_t>(0, centre + d));
      });
    };
    ItemSpec s;
    s.size = *rc::gen::weightedOneOf<std::uint64_t>({
        {2, rc::gen::just<std::uint64_t>(0)},
        {4, rc::gen::inRange<std::uint64_t>(1, 17)},  // around the short-string boundary
        {4, rc::gen::inRange<std::uint64_t>(17, 300)},
        {2, near(static_cast<std::int64_t>(c.page_bytes) - static_cast<std::int64_t>(kItemOverhead))},
        {1, near(static_cast<std::int64_t>(c.max_disk_item()))},        // the too_large boundary
        {1, near(static_cast<std::int64_t>(c.max_memory_bytes) - 33)},  // footprint near the budget
    });
    s.random_bytes = *rc::gen::arbitrary<bool>();
    s.seed = *rc::gen::arbitrary<std::uint32_t>();
    return s;
  });
}

// Runs `call`, which the model says cannot block, on a thread of its own. If it is still
// blocked after kHangLimit, `unblock` (run here) releases it and the property fails.
template <class Call, class Unblock>
Status without_hanging(Call call, Unblock unblock, const std::string& what) {
  std::promise<Status> done;
  std::future<Status> result = done.get_future();
  std::thread t([&] { done.set_value(call()); });
  if (result.wait_for(kHangLimit) == std::future_status::timeout) {
    unblock();
    t.join();
    RC_FAIL(what + " blocked, although the model says it cannot wait");
  }
  t.join();
  return result.get();
}

// The queue, its handles and the model of what it must deliver. Not thread-safe.
class QueueUnderTest {
 public:
  // `faults`: the queue runs on it, and the fault commands (ArmFault, Heal, PowerCut) may
  // be used; the model then allows what faults allow (below).
  QueueUnderTest(const Config& c, const fs::path& dir, std::shared_ptr<test::FaultFileSystem> faults = nullptr)
      : config_(c), options_(c.options(dir)), dir_(dir), ffs_(std::move(faults)) {
    options_.file_system = ffs_;
    RC_ASSERT(validate(options_).ok());
    // One page at its worst: sealed at page_bytes, so it holds less than that plus its last
    // item, and it can never outgrow a segment.
    page_worst_ = c.spill() ? std::min(c.segment_bytes, page_bound(c.page_bytes + kItemOverhead + c.max_disk_item())) : 0;
    open();
  }

  const Config& config() const { return config_; }
  // An item acknowledged (required: it must come back), or one that may or may not (its
  // send failed after its page reached the file; or a power loss or a close under faults
  // may have lost it).
  void accepted(const std::string& item) { model_.push_back({item, false}); }
  void maybe_accepted(const std::string& item) { model_.push_back({item, true}); }
  // A fault was armed since the last clean reopen: answers of io_error, full and timeout
  // are then allowed where the disk's refusal explains them, and nothing due is lost.
  bool disturbed() const { return disturbed_; }
  test::FaultFileSystem* faults() const { return ffs_.get(); }
  void disturb() {
    disturbed_ = true;
    damaged_ever_ = true;  // a failed sync leaves holes the next open may cut
  }
  Stats stats() const { return receiver_->stats(); }
  Sender<std::string>& sender(int i) { return senders_[static_cast<std::size_t>(i)]; }
  bool sender_open(int i) const { return open_[static_cast<std::size_t>(i)]; }
  void close_sender(int i) {
    senders_[static_cast<std::size_t>(i)].close();
    open_[static_cast<std::size_t>(i)] = false;
  }
  void close_all_senders() {
    for (int i = 0; i < config_.producers; ++i) close_sender(i);
  }
  bool all_senders_closed() const { return std::none_of(open_.begin(), open_.end(), [](bool b) { return b; }); }
  Receiver<std::string>& receiver() { return *receiver_; }

  std::string make_item(const ItemSpec& s) {
    const std::uint64_t serial = ++serial_;
    // Under faults an item may or may not come back, so every item must be told apart:
    // none shorter than its serial number.
    std::string item(ffs_ ? std::max<std::uint64_t>(s.size, 8) : s.size, static_cast<char>('a' + s.seed % 26));
    if (s.random_bytes) {
      std::uint64_t x = (static_cast<std::uint64_t>(s.seed) << 1 | 1) * 0x9e3779b97f4a7c15ull ^ serial;
      for (char& ch : item) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ch = static_cast<char>(x);
      }
    }
    if (item.size() >= 8)
      for (int b = 0; b < 8; ++b) item[static_cast<std::size_t>(b)] = static_cast<char>(serial >> (8 * b));
    return item;
  }

  // A receive returned `got`: the next required item, or a "maybe" item before it.
  // `position`: Receiver::position() just past it, when known.
  void received(const std::string& got, std::optional<std::uint64_t> position) {
    // "maybe" entries before it did not come (under faults every item is distinct).
    while (!model_.empty() && model_.front().maybe && model_.front().item != got) model_.pop_front();
    RC_ASSERT(!model_.empty());
    RC_ASSERT(got == model_.front().item);
    if (model_.front().maybe) received_unacknowledged_.insert(got);
    model_.pop_front();
    if (config_.manual_commit) {
      uncommitted_.push_back(got);
      uncommitted_at_.push_back(position);
    }
    if (since_durable_set_.insert(got).second) {
      since_durable_.push_back(got);
      since_durable_at_.push_back(position);
    }
  }

  void committed() {
    uncommitted_.clear();
    uncommitted_at_.clear();
    since_durable_.clear();
    since_durable_at_.clear();
    since_durable_set_.clear();
    last_commit_ = receiver_->position();
    if (model_.empty() && !disturbed_) no_files_left();
  }

  // commit(position) returned ok: the items received before `position` are committed (it
  // is just past one of them, see commit_positions), those after it are not.
  void committed_through(std::uint64_t position) {
    // Positions grow in the order of receipt: everything up to the last item known to lie
    // before the position goes, items of unknown position before it included.
    std::size_t n = 0;
    for (std::size_t k = 0; k < uncommitted_.size(); ++k)
      if (uncommitted_at_[k] && *uncommitted_at_[k] <= position) n = k + 1;
    uncommitted_.erase(uncommitted_.begin(), uncommitted_.begin() + static_cast<std::ptrdiff_t>(n));
    uncommitted_at_.erase(uncommitted_at_.begin(), uncommitted_at_.begin() + static_cast<std::ptrdiff_t>(n));
    // The position is durable now: what lies before it never comes again. (Only as far as
    // positions are known: leaving an item here only lets it come again.)
    while (!since_durable_.empty() && since_durable_at_.front() && *since_durable_at_.front() <= position) {
      since_durable_set_.erase(since_durable_.front());
      since_durable_.pop_front();
      since_durable_at_.pop_front();
    }
    last_commit_ = position;
    // Nothing due and nothing held: nothing may stay charged against the memory budget.
    if (model_.empty() && uncommitted_.empty()) RC_ASSERT(stats().memory_bytes == 0u);
  }
  // Positions a commit may go through: just past each item received and not committed
  // (manual_commit), or received since the position was last durable (without), where
  // known, and the receiver's position (everything received).
  // Not below the last commit (that one is the `stale` kind of CommitAt).
  std::vector<std::uint64_t> commit_positions() const {
    std::vector<std::uint64_t> at;
    for (const auto& p : config_.manual_commit ? uncommitted_at_ : since_durable_at_)
      if (p && *p >= last_commit_.value_or(0)) at.push_back(*p);
    at.push_back(receiver_->position());
    return at;
  }
  // The position of the last successful commit since the queue was opened.
  std::optional<std::uint64_t> last_commit() const { return last_commit_; }

  // A receive reported that nothing is due (empty, timeout or closed): the model must
  // agree, and nothing may be left behind, in memory or on disk.
  void drained() {
    drop_maybes();
    RC_ASSERT(model_.empty());
    const Stats st = stats();
    RC_ASSERT(st.memory_items == 0u);
    RC_ASSERT(st.disk_items == 0u);
    // With manual_commit, what was received stays charged, and on disk, until committed.
    if (uncommitted_.empty() && !disturbed_) no_files_left();
  }
  std::size_t required() const {
    return static_cast<std::size_t>(std::count_if(model_.begin(), model_.end(), [](const Entry& e) { return !e.maybe; }));
  }

  // Every handle goes: the queue writes what it holds to disk.
  void close_all() {
    const Stats st = stats();
    // Shutdown may write every undelivered (or uncommitted) item as a page of its own, on
    // top of what is on disk now.
    std::uint64_t persisted = 0;
    for (const Entry& e : model_) persisted += page_bound(kItemOverhead + e.item.size());
    for (const std::string& item : uncommitted_) persisted += page_bound(kItemOverhead + item.size());
    disk_carry_ = st.disk_bytes + persisted;
    // The next open may number items anew (what a failed shutdown lost): positions of this
    // run are not compared with the next one's.
    for (auto& p : since_durable_at_) p.reset();
    senders_.clear();
    open_.clear();
    receiver_.reset();
    if (disturbed_ && !healed_) {
      // A shutdown under faults may fail to write what was in memory, or the position: what
      // was due may be gone, and what was received since the last durable position may
      // come again — now, or after a later power cut (so it is remembered).
      for (Entry& e : model_) e.maybe = true;
      std::deque<std::string>& again = config_.manual_commit ? uncommitted_ : since_durable_;
      for (auto it = again.rbegin(); it != again.rend(); ++it) model_.push_front({*it, true});
    } else {
      // Received but not committed: delivered again, first. The position is durable.
      for (auto it = uncommitted_.rbegin(); it != uncommitted_.rend(); ++it) model_.push_front({*it, false});
      since_durable_.clear();
      since_durable_at_.clear();
      since_durable_set_.clear();
    }
    uncommitted_.clear();
    uncommitted_at_.clear();
  }

  // The machine stops (every handle goes, nothing more reaches the disk) and reboots with
  // only what was synced. Under SyncPolicy::always what was acknowledged (and, with
  // manual_commit, received but not committed) must come back; anything else may.
  void power_cut() {
    ffs_->freeze();
    senders_.clear();
    open_.clear();
    receiver_.reset();
    ffs_->crash(test::Unsynced::dropped);
    const bool always = config_.sync_always();
    // An item received while its send had not been acknowledged (its page's fdatasync
    // failed, say) carries no promise, even once a clean restart made it due again: its
    // bytes may be lost for good (docs/durability.md, a failed fdatasync). Seen: received,
    // not committed, a clean reopen delivered it again, then a power cut lost it.
    for (Entry& e : model_) e.maybe = e.maybe || !always || received_unacknowledged_.count(e.item) > 0;
    if (config_.manual_commit) {
      // Under always an item received but not committed comes back if it was acknowledged;
      // one whose send failed (its page's fdatasync failed, say) may have been lost.
      for (auto it = uncommitted_.rbegin(); it != uncommitted_.rend(); ++it)
        model_.push_front({*it, !always || received_unacknowledged_.count(*it) > 0});
    } else {
      for (auto it = since_durable_.rbegin(); it != since_durable_.rend(); ++it) model_.push_front({*it, true});
    }
    uncommitted_.clear();
    uncommitted_at_.clear();
    since_durable_.clear();
    since_durable_at_.clear();
    since_durable_set_.clear();
    damaged_ever_ = true;
    disk_carry_ = ~std::uint64_t{0} / 2;  // whatever the shutdown before the cut wrote
    open();
    disk_carry_ = stats().disk_bytes;
  }

  void heal() { ffs_->heal(); }

  void open() {
    auto ch = channel<std::string>(options_);
    RC_ASSERT(ch.ok());
    receiver_.emplace(std::move(ch->receiver));
    Sender<std::string> first = std::move(ch->sender);
    for (int i = 1; i < config_.producers; ++i) senders_.push_back(first);
    senders_.push_back(std::move(first));
    open_.assign(senders_.size(), true);
    last_commit_.reset();
  }

  void reopen() {
    close_all();
    open();
    const Stats st = stats();
    RC_ASSERT(st.memory_items == 0u);
    RC_ASSERT(st.items_recovered == st.disk_items);
    RC_ASSERT(st.disk_items >= required());
    RC_ASSERT(st.disk_items <= model_.size());
    if (!damaged_ever_) {
      RC_ASSERT(st.corrupt_pages == 0u);
      RC_ASSERT(st.torn_bytes == 0u);
    }
    // A clean restart with the faults healed: the position was written durably.
    if (ffs_ == nullptr || (!ffs_->frozen() && disturbed_ && healed_)) disturbed_ = false;
  }
  void set_healed(bool h) { healed_ = h; }

  // Flips the bits of `mask` in one byte of one segment file, opens again and receives
  // everything due. What comes back must be the model's items with at most one contiguous
  // run missing — the items of the one damaged page — nothing invented, nothing twice,
  // order kept; a missing run must show in Stats. The model becomes what came back.
  void corrupt_and_reopen(std::uint32_t file_pick, std::uint64_t offset_pick, unsigned char mask) {
    close_all();
    const auto files = test::segment_files(dir_);
    if (!files.empty()) {
      const fs::path& f = files[file_pick % files.size()];
      std::string bytes = test::read_file(f);
      if (!bytes.empty()) {
        bytes[offset_pick % bytes.size()] ^= static_cast<char>(mask);
        test::write_file(f, bytes);
        damaged_ever_ = true;
      }
    }
    open();
    const Stats st = stats();
    RC_ASSERT(st.memory_items == 0u);
    RC_ASSERT(st.items_recovered == st.disk_items);
    RC_ASSERT(st.disk_items <= model_.size());

    std::vector<std::string> got;
    std::vector<std::optional<std::uint64_t>> got_at;
    std::string out;
    Status s;
    while ((s = receiver_->try_recv(out)).ok()) {
      got.push_back(out);
      got_at.push_back(receiver_->position());
    }
    RC_ASSERT(s.code() == Errc::empty);
    RC_ASSERT(got.size() == st.disk_items);

    const std::size_t lost = model_.size() - got.size();
    std::size_t same = 0;  // the run starts at the first mismatch (sound for a single run)
    while (same < got.size() && got[same] == model_[same].item) ++same;
    for (std::size_t k = same; k < got.size(); ++k) RC_ASSERT(got[k] == model_[k + lost].item);
    if (lost > 0) {
      RC_ASSERT(st.corrupt_pages + st.torn_bytes > 0u);
      // No more than one page holds: a page is sealed once it reaches page_bytes, and
      // every item takes at least kItemOverhead raw bytes.
      RC_ASSERT(lost <= (config_.page_bytes + kItemOverhead - 1) / kItemOverhead + 1);
    }
    model_.clear();
    if (config_.manual_commit) {
      uncommitted_.assign(got.begin(), got.end());
      uncommitted_at_.assign(got_at.begin(), got_at.end());
    }
    drained();
  }

  // After every command.
  void check_invariants() {
    const Stats st = stats();
    RC_ASSERT(st.memory_bytes <= options_.max_memory_bytes);
    const std::uint64_t disk_limit = std::max(options_.max_disk_bytes + page_worst_, disk_carry_);
    RC_ASSERT(st.disk_bytes <= disk_limit);
    // A shutdown's excess stays allowed while its backlog is read; what is freed may not
    // be taken again beyond the budget.
    disk_carry_ = std::min(disk_carry_, st.disk_bytes);
    RC_ASSERT(st.memory_items + st.disk_items >= required());
    RC_ASSERT(st.memory_items + st.disk_items <= model_.size());
    if (!disturbed_ && required() == model_.size()) RC_ASSERT(st.memory_items + st.disk_items == model_.size());
    // The accounting matches the directory.
    const auto files = test::segment_files(dir_);
    std::uint64_t bytes = 0;
    for (const auto& f : files) bytes += fs::file_size(f);
    RC_ASSERT(st.segments == files.size());
    RC_ASSERT(st.disk_bytes == bytes);
  }

  // recv would wait for an item that is not there.
  bool recv_may_block() const { return (required() == 0 || disturbed_) && !all_senders_closed(); }

 private:
  struct Entry {
    std::string item;
    bool maybe = false;
  };
  void drop_maybes() {
    while (!model_.empty() && model_.front().maybe) model_.pop_front();
  }
  void no_files_left() {
    const Stats st = stats();
    RC_ASSERT(st.memory_bytes == 0u);
    const auto files = test::segment_files(dir_);
    if (options_.sync == SyncPolicy::none) {
      RC_ASSERT(files.empty());
    } else {
      // When syncing, a read segment the writer still appends to is kept for more appends
      // while it is small (a new one would cost a directory fsync): one file at most, its
      // pages under a quarter of segment_bytes (the room reserved past them, never past
      // segment_bytes, is counted in disk_bytes like the pages).
      RC_ASSERT(files.size() <= 1u);
      if (!files.empty()) {
        std::uint64_t pages_end = format::kSegmentHeaderSize;
        for (const test::PageInfo& p : test::pages_of(files.front())) pages_end = std::max(pages_end, p.offset + p.bytes);
        RC_ASSERT(pages_end < options_.segment_bytes / 4);
        RC_ASSERT(fs::file_size(files.front()) <= std::max<std::uint64_t>(pages_end, options_.segment_bytes));
        RC_ASSERT(st.disk_bytes == fs::file_size(files.front()));
      }
    }
  }

  Config config_;
  Options options_;
  fs::path dir_;
  std::uint64_t page_worst_ = 0;
  std::uint64_t disk_carry_ = 0;
  std::uint64_t serial_ = 0;
  bool damaged_ever_ = false;
  std::vector<Sender<std::string>> senders_;
  std::vector<bool> open_;
  std::optional<Receiver<std::string>> receiver_;
  std::shared_ptr<test::FaultFileSystem> ffs_;
  bool disturbed_ = false;
  bool healed_ = true;
  std::deque<Entry> model_;                // due, in order
  std::deque<std::string> uncommitted_;    // manual_commit: received since the last commit
  std::deque<std::string> since_durable_;  // received since the position was last durable
  std::set<std::string> since_durable_set_;
  std::set<std::string> received_unacknowledged_;  // received while a "maybe" (faults: all distinct)
  // Receiver::position() just past each item of uncommitted_ and since_durable_, where known.
  std::deque<std::optional<std::uint64_t>> uncommitted_at_;
  std::deque<std::optional<std::uint64_t>> since_durable_at_;
  std::optional<std::uint64_t> last_commit_;
};

// The commands. Each is an immutable value drawn by rapidcheck (its constructor draws its
// arguments); run() acts on the queue and checks the outcome against the model.
using Command = rc::state::Command<Config, QueueUnderTest>;

// ---- sends ----------------------------------------------------------------------------

enum class SendKind { send_move, send_copy, try_send, send_for };

struct Send : Command {
  int handle = 0;
  ItemSpec spec;
  SendKind kind = SendKind::send_move;

  explicit Send(const Config& c)
      : handle(*rc::gen::inRange(0, c.producers)),
        spec(*gen_item(c)),
        kind(*rc::gen::element(SendKind::send_move, SendKind::send_copy, SendKind::try_send, SendKind::send_for)) {}

  void run(const Config& c, QueueUnderTest& q) const override {
    std::string item = q.make_item(spec);
    const std::string original = item;
    const Stats before = q.stats();
    const std::uint64_t fp = footprint(item);
    // Memory is not used under SyncPolicy::always.
    const bool fits = !c.sync_always() && before.memory_bytes + fp <= c.max_memory_bytes;
    const bool too_big_for_disk = page_bound(kItemOverhead + item.size()) > c.segment_bytes;
    // Spilling, an item too big for a segment still fits the memory budget (it waits for
    // room there) unless its footprint exceeds it, or memory is not used (always).
    const bool certainly_too_large = c.spill() ? (too_big_for_disk && (c.sync_always() || fp > c.max_memory_bytes))
                                               : fp > c.max_memory_bytes;
    // Under FullPolicy::block a send could wait forever here. It cannot when the item fits
    // in memory (it goes there, or to the open page) or is certain to be too large.
    SendKind k = kind;
    if ((k == SendKind::send_move || k == SendKind::send_copy) && c.when_full == FullPolicy::block && !fits &&
        !certainly_too_large)
      k = SendKind::try_send;

    Sender<std::string>& s = q.sender(handle);
    Status st;
    switch (k) {
      case SendKind::send_move:
        st = without_hanging([&] { return s.send(std::move(item)); }, [&] { q.receiver().close(); }, "send");
        break;
      case SendKind::send_copy:
        st = without_hanging([&] { return s.send(item); }, [&] { q.receiver().close(); }, "send(const&)");
        break;
      case SendKind::try_send: st = s.try_send(std::move(item)); break;
      case SendKind::send_for: st = s.send_for(std::move(item), 0ms); break;
    }
    if (!st.ok()) RC_ASSERT(item == original);  // a refused item is untouched

    if (!q.sender_open(handle)) {
      RC_ASSERT(st.code() == Errc::closed);
      return;
    }
    if (q.disturbed()) {
      // The disk may refuse: io_error is about this item (under always its page may still
      // have reached the file: it may come), full and timeout when RAM for refused pages
      // is used up. Never anything else.
      switch (st.code()) {
        case Errc::ok: q.accepted(original); return;
        case Errc::io_error: q.maybe_accepted(original); return;
        case Errc::full:
        case Errc::timeout:
        case Errc::too_large: return;
        default: RC_FAIL("unexpected send status under faults: " + st.message());
      }
    }
    // Room is certain when memory has room and no spilled backlog keeps senders on disk,
    // or (spilling) when the disk is empty, so that the item's own page fits the budget.
    const bool memory_certain = fits && before.disk_items == 0 &&
                                (!c.spill() || before.memory_bytes == 0 || before.memory_bytes + fp <= c.max_memory_bytes / 2);
    const bool disk_certain = c.spill() && !too_big_for_disk && before.disk_items == 0 && before.disk_bytes == 0;
    switch (st.code()) {
      case Errc::ok:
        q.accepted(original);
        break;
      case Errc::full:
      case Errc::timeout:
        RC_ASSERT(st.code() == (k == SendKind::send_for ? Errc::timeout : Errc::full));
        RC_ASSERT(k == SendKind::try_send || k == SendKind::send_for || c.when_full == FullPolicy::fail);
        // `full` only when memory has no room for it, and (spilling) the disk has none either.
        RC_ASSERT(!fits);
        RC_ASSERT(!memory_certain);
        RC_ASSERT(!disk_certain);
        RC_ASSERT(!certainly_too_large);
        break;
      case Errc::too_large:
        if (c.spill()) {
          RC_ASSERT(too_big_for_disk);
          RC_ASSERT(c.sync_always() || fp > c.max_memory_bytes);
        } else {
          RC_ASSERT(fp > c.max_memory_bytes);
        }
        RC_ASSERT(!memory_certain);
        break;
      default:
        RC_FAIL("unexpected send status " + st.message());
    }
    if (certainly_too_large) RC_ASSERT(st.code() == Errc::too_large);
    if (!c.spill() && fits) RC_ASSERT(st.ok());
  }

  void show(std::ostream& os) const override {
    static const char* names[] = {"send", "send(const&)", "try_send", "send_for(0ms)"};
    os << names[static_cast<int>(kind)] << " on sender " << handle << ": " << spec;
  }
};

// A batch through send_many / try_send_many: a prefix is taken, in order, the rest is
// untouched; the status is about the first item not taken.
struct SendMany : Command {
  int handle = 0;
  std::vector<ItemSpec> specs;
  bool waiting = false;  // send_many (may wait for room) rather than try_send_many

  explicit SendMany(const Config& c)
      : handle(*rc::gen::inRange(0, c.producers)),
        specs(*rc::gen::container<std::vector<ItemSpec>>(*rc::gen::inRange(1, 7), gen_item(c))),
        // Under FullPolicy::block, send_many could wait for ever here: the model has one thread.
        waiting(c.when_full != FullPolicy::block && *rc::gen::arbitrary<bool>()) {}

  void run(const Config& c, QueueUnderTest& q) const override {
    (void)c;
    std::vector<std::string> items;
    for (const ItemSpec& spec : specs) items.push_back(q.make_item(spec));
    const std::vector<std::string> originals = items;
    Sender<std::string>& s = q.sender(handle);
    std::size_t accepted = 99;
    const Status st = waiting ? without_hanging([&] { return s.send_many(items, accepted); },
                                                [&] { q.receiver().close(); }, "send_many")
                              : s.try_send_many(items, accepted);
    RC_ASSERT(accepted <= items.size());
    for (std::size_t i = accepted; i < items.size(); ++i) RC_ASSERT(items[i] == originals[i]);  // untouched
    if (!q.sender_open(handle)) {
      RC_ASSERT(st.code() == Errc::closed);
      RC_ASSERT(accepted == 0u);
      return;
    }
    if (st.ok()) RC_ASSERT(accepted == items.size());
    if (q.disturbed() && st.code() == Errc::io_error) {
      // Under always: the batch's group commit failed; what was taken may come.
      for (std::size_t i = 0; i < accepted; ++i) q.maybe_accepted(originals[i]);
      return;
    }
    for (std::size_t i = 0; i < accepted; ++i) q.accepted(originals[i]);
    if (st.ok()) return;
    RC_ASSERT(accepted < items.size());
    switch (st.code()) {
      case Errc::full:
        RC_ASSERT(q.disturbed() || !waiting || c.when_full == FullPolicy::fail);
        break;
      case Errc::too_large:
        break;
      case Errc::timeout:
        RC_ASSERT(q.disturbed());
        break;
      default:
        RC_FAIL("unexpected send_many status " + st.message());
    }
  }

  void show(std::ostream& os) const override {
    os << (waiting ? "send_many" : "try_send_many") << " on sender " << handle << ":";
    for (const ItemSpec& spec : specs) os << " " << spec;
  }
};

// ---- receives -------------------------------------------------------------------------

// A receive found nothing: which codes fit, and the model must be drained.
void nothing_due(QueueUnderTest& q, const Status& st, bool may_be_empty, bool may_time_out) {
  if (q.disturbed()) {
    // A page the receiver must write first may be refused (io_error), or wait for a
    // retry (empty, timeout): nothing is said about what is due.
    RC_ASSERT(st.code() == Errc::closed || st.code() == Errc::empty || st.code() == Errc::timeout ||
              st.code() == Errc::io_error);
    if (st.code() == Errc::closed) q.drained();
    return;
  }
  switch (st.code()) {
    case Errc::closed: RC_ASSERT(q.all_senders_closed()); break;
    case Errc::empty: RC_ASSERT(may_be_empty); RC_ASSERT(!q.all_senders_closed()); break;
    case Errc::timeout: RC_ASSERT(may_time_out); RC_ASSERT(!q.all_senders_closed()); break;
    default: RC_FAIL("unexpected receive status " + st.message());
  }
  q.drained();
}

enum class RecvKind { recv, try_recv, recv_for };

struct Recv : Command {
  RecvKind kind = *rc::gen::element(RecvKind::recv, RecvKind::try_recv, RecvKind::recv_for);

  void run(const Config&, QueueUnderTest& q) const override {
    RecvKind k = kind;
    if (k == RecvKind::recv && q.recv_may_block()) k = RecvKind::recv_for;
    std::string out;
    Status st;
    switch (k) {
      case RecvKind::recv:
        st = without_hanging([&] { return q.receiver().recv(out); }, [&] { q.close_all_senders(); }, "recv");
        break;
      case RecvKind::try_recv: st = q.receiver().try_recv(out); break;
      case RecvKind::recv_for: st = q.receiver().recv_for(out, 1ms); break;
    }
    if (st.ok()) return q.received(out, q.receiver().position());
    nothing_due(q, st, k == RecvKind::try_recv, k == RecvKind::recv_for);
  }

  void show(std::ostream& os) const override {
    static const char* names[] = {"recv", "try_recv", "recv_for(1ms)"};
    os << names[static_cast<int>(kind)];
  }
};

struct RecvMany : Command {
  RecvKind kind = *rc::gen::element(RecvKind::recv, RecvKind::try_recv, RecvKind::recv_for);
  std::size_t max = *rc::gen::inRange<std::size_t>(0, 20);

  void run(const Config&, QueueUnderTest& q) const override {
    RecvKind k = kind;
    if (k == RecvKind::recv && q.recv_may_block() && max > 0) k = RecvKind::recv_for;
    std::vector<std::string> out;
    const std::uint64_t before = q.receiver().position();
    Status st;
    switch (k) {
      case RecvKind::recv:
        st = without_hanging([&] { return q.receiver().recv_many(out, max); }, [&] { q.close_all_senders(); },
                             "recv_many");
        break;
      case RecvKind::try_recv: st = q.receiver().try_recv_many(out, max); break;
      case RecvKind::recv_for: st = q.receiver().recv_many_for(out, max, 1ms); break;
    }
    RC_ASSERT(out.size() <= max);
    if (max == 0) {
      RC_ASSERT(st.ok());
      RC_ASSERT(out.empty());
      return;
    }
    if (!st.ok()) {
      RC_ASSERT(out.empty());
      return nothing_due(q, st, k == RecvKind::try_recv, k == RecvKind::recv_for);
    }
    RC_ASSERT(!out.empty());
    // The position is just past the last item; items passed over in between (dropped,
    // damaged) leave the earlier items' positions unknown.
    const std::uint64_t after = q.receiver().position();
    RC_ASSERT(after >= before + out.size());
    const bool consecutive = after == before + out.size();
    for (std::size_t i = 0; i < out.size(); ++i) {
      const bool known = consecutive || i + 1 == out.size();
      q.received(out[i], known ? std::optional<std::uint64_t>(after - (out.size() - 1 - i)) : std::nullopt);
    }
  }

  void show(std::ostream& os) const override {
    static const char* names[] = {"recv_many", "try_recv_many", "recv_many_for(1ms)"};
    os << names[static_cast<int>(kind)] << " up to " << max;
  }
};

// Receives until the queue says there is nothing left.
struct Drain : Command {
  void run(const Config&, QueueUnderTest& q) const override {
    std::string out;
    for (;;) {
      Status st = q.receiver().try_recv(out);
      if (!st.ok()) return nothing_due(q, st, true, false);
      q.received(out, q.receiver().position());
    }
  }
  void show(std::ostream& os) const override { os << "drain"; }
};

// ---- the rest -------------------------------------------------------------------------

struct Flush : Command {
  int handle = 0;
  explicit Flush(const Config& c) : handle(*rc::gen::inRange(0, c.producers)) {}
  void run(const Config&, QueueUnderTest& q) const override {
    const Status st = q.sender(handle).flush();
    if (q.disturbed() && q.sender_open(handle) && st.code() == Errc::io_error) return;
    RC_ASSERT(st.code() == (q.sender_open(handle) ? Errc::ok : Errc::closed));
  }
  void show(std::ostream& os) const override { os << "flush on sender " << handle; }
};

struct Commit : Command {
  void run(const Config&, QueueUnderTest& q) const override {
    const Status st = q.receiver().commit();
    if (q.disturbed() && st.code() == Errc::io_error) return;  // the position stays where it was
    RC_ASSERT(st.ok());
    q.committed();
  }
  void show(std::ostream& os) const override { os << "commit"; }
};

// Receiver::commit(position): through a position just past an item received (any of
// them, so that later ones stay uncommitted), at or below the last commit (nothing
// changes), or beyond the receiver's position (invalid_argument, nothing changes).
enum class CommitAtKind { through_received, stale, beyond };

struct CommitAt : Command {
  CommitAtKind kind = *rc::gen::weightedElement<CommitAtKind>(
      {{6, CommitAtKind::through_received}, {1, CommitAtKind::stale}, {1, CommitAtKind::beyond}});
  std::uint32_t pick = *rc::gen::arbitrary<std::uint32_t>();

  void run(const Config&, QueueUnderTest& q) const override {
    Receiver<std::string>& r = q.receiver();
    const std::uint64_t now = r.position();
    const std::uint64_t commits = q.stats().commits;
    switch (kind) {
      case CommitAtKind::beyond: {
        const Status st = r.commit(now + 1 + pick % 1000);
        RC_ASSERT(st.code() == Errc::invalid_argument);
        RC_ASSERT(r.position() == now);
        RC_ASSERT(q.stats().commits == commits);
        return;
      }
      case CommitAtKind::stale: {
        const std::uint64_t last = q.last_commit().value_or(0);
        const std::uint64_t p = last - pick % (last + 1);
        const Status st = r.commit(p);
        // At the last commit it is written again (and may fail under faults); below it,
        // nothing is written.
        if (q.disturbed() && p == last && st.code() == Errc::io_error) return;
        RC_ASSERT(st.ok());
        RC_ASSERT(r.position() == now);
        return;
      }
      case CommitAtKind::through_received: {
        const std::vector<std::uint64_t> at = q.commit_positions();
        const std::uint64_t p = at[pick % at.size()];
        const Status st = r.commit(p);
        if (q.disturbed() && st.code() == Errc::io_error) {  // the position stays where it was
          RC_ASSERT(q.stats().commits == commits);
          return;
        }
        RC_ASSERT(st.ok());
        RC_ASSERT(r.position() == now);
        RC_ASSERT(q.stats().commits == commits + 1);
        if (p == now) {
          q.committed();  // commit(position()) is commit()
        } else {
          q.committed_through(p);
        }
        return;
      }
    }
  }
  void show(std::ostream& os) const override {
    static const char* names[] = {"through a received item", "at or below the last commit",
                                  "beyond the position"};
    os << "commit at a position: " << names[static_cast<int>(kind)] << " (pick " << pick << ")";
  }
};

struct CloseSender : Command {
  int handle = 0;
  explicit CloseSender(const Config& c) : handle(*rc::gen::inRange(0, c.producers)) {}
  void run(const Config&, QueueUnderTest& q) const override { q.close_sender(handle); }
  void show(std::ostream& os) const override { os << "close sender " << handle; }
};

struct Reopen : Command {
  void run(const Config&, QueueUnderTest& q) const override { q.reopen(); }
  void show(std::ostream& os) const override { os << "reopen"; }
};

struct CorruptReopen : Command {
  std::uint32_t file_pick = *rc::gen::arbitrary<std::uint32_t>();
  std::uint64_t offset_pick = *rc::gen::arbitrary<std::uint64_t>();
  unsigned char mask = *rc::gen::inRange<int>(1, 256);
  void run(const Config&, QueueUnderTest& q) const override { q.corrupt_and_reopen(file_pick, offset_pick, mask); }
  void show(std::ostream& os) const override {
    os << "corrupt-then-reopen (file pick " << file_pick << ", offset pick " << offset_pick << ", mask "
       << int(mask) << ")";
  }
};

// ---- disk faults (the second property) -----------------------------------------------

enum class FaultCmd { write_enospc, write_eio, short_write, sync, dir_sync, no_space };

struct ArmFault : Command {
  FaultCmd kind = *rc::gen::element(FaultCmd::write_enospc, FaultCmd::write_eio, FaultCmd::short_write,
                                    FaultCmd::sync, FaultCmd::dir_sync, FaultCmd::no_space);
  std::uint64_t n = *rc::gen::inRange<std::uint64_t>(1, 5);
  void run(const Config&, QueueUnderTest& q) const override {
    test::FaultFileSystem& f = *q.faults();
    switch (kind) {
      case FaultCmd::write_enospc: f.fail_writes(n, ENOSPC); break;
      case FaultCmd::write_eio: f.fail_writes(n, EIO); break;
      case FaultCmd::short_write: f.fail_writes(n, ENOSPC, true); break;
      case FaultCmd::sync: f.fail_syncs(n); break;
      case FaultCmd::dir_sync: f.fail_dir_syncs(n); break;
      case FaultCmd::no_space: f.set_free_space(n * 512); break;
    }
    q.disturb();
    q.set_healed(false);
  }
  void show(std::ostream& os) const override {
    static const char* names[] = {"the next writes fail ENOSPC", "the next writes fail EIO", "the next writes are short",
                                  "the next fdatasyncs fail", "the next directory fsyncs fail", "the disk has little room"};
    os << "arm fault: " << names[static_cast<int>(kind)] << " (" << n << ")";
  }
};

struct Heal : Command {
  void run(const Config&, QueueUnderTest& q) const override {
    q.heal();
    q.set_healed(true);
  }
  void show(std::ostream& os) const override { os << "heal the disk"; }
};

struct PowerCut : Command {
  void run(const Config&, QueueUnderTest& q) const override { q.power_cut(); }
  void show(std::ostream& os) const override { os << "power cut, reboot, reopen"; }
};

// Runs one command, then checks what holds after every command.
template <class C>
struct Checked : C {
  using C::C;
  void run(const Config& c, QueueUnderTest& q) const override {
    C::run(c, q);
    q.check_invariants();
  }
};

RC_GTEST_PROP(Model, RandomCommandSequencesMatchADeque, ()) {
  const Config config = *gen_config();
  RC_TAG(config.spill() ? "spilling" : "memory only");
  test::TempDir dir;
  QueueUnderTest q(config, dir.path());
  // Sends are the most frequent command; the others come often enough to interleave.
  rc::state::check(config, q,
                   rc::state::gen::execOneOfWithArgs<
                       Checked<Send>, Checked<Send>, Checked<Send>, Checked<Send>, Checked<Send>, Checked<SendMany>,
                       Checked<SendMany>, Checked<Recv>, Checked<Recv>, Checked<Recv>, Checked<RecvMany>, Checked<Drain>,
                       Checked<Flush>, Checked<Commit>, Checked<CommitAt>, Checked<CloseSender>,
                       Checked<Reopen>, Checked<CorruptReopen>>());
}

// The same model on a file system that fails writes, fdatasyncs and directory fsyncs on
// command, runs short of space, and loses power: sends are answered about their own item
// (io_error when it could not be stored, full when RAM for refused pages is used up),
// nothing acknowledged is lost unless the power went (then, under SyncPolicy::always,
// still nothing), nothing is invented or delivered twice within a run, order holds, and
// the budgets and the accounting of the directory stay exact.
RC_GTEST_PROP(Model, RandomCommandSequencesWithDiskFaults, ()) {
  const Config config = *gen_config();
  RC_TAG(config.spill() ? "spilling" : "memory only");
  test::TempDir dir;
  QueueUnderTest q(config, dir.path(), test::FaultFileSystem::create(*rc::gen::inRange<std::uint64_t>(1, 1u << 30)));
  rc::state::check(config, q,
                   rc::state::gen::execOneOfWithArgs<
                       Checked<Send>, Checked<Send>, Checked<Send>, Checked<Send>, Checked<Send>, Checked<SendMany>,
                       Checked<SendMany>, Checked<Recv>, Checked<Recv>, Checked<Recv>, Checked<RecvMany>, Checked<Drain>,
                       Checked<Flush>, Checked<Commit>, Checked<CommitAt>, Checked<CloseSender>,
                       Checked<Reopen>, Checked<ArmFault>, Checked<ArmFault>, Checked<Heal>, Checked<PowerCut>>());
}

// ---- regressions found by the model ---------------------------------------------------

// A copy of a Sender must apply Options::when_full as the original does. Found by the
// model: a copied sender under FullPolicy::fail blocked in send() instead of returning full.
TEST(ModelRegression, CopiedSenderKeepsFailPolicy) {
  test::TempDir dir;
  Options o;
  o.directory = dir.path();
  o.max_memory_bytes = 64;
  o.max_disk_bytes = 0;
  o.when_full = FullPolicy::fail;
  auto ch = channel<std::uint64_t>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  Sender<std::uint64_t> copy = ch->sender;
  std::uint64_t accepted = 0;
  while (ch->sender.send(std::uint64_t{accepted}).ok()) ++accepted;  // memory is now full
  ASSERT_GT(accepted, 0u);
  // The copy must fail at once as well. (If it blocks, the watchdog closes the receiver,
  // which releases it with `closed`.)
  auto result = std::async(std::launch::async, [&] { return copy.send(std::uint64_t{99}); });
  if (result.wait_for(kHangLimit) == std::future_status::timeout) ch->receiver.close();
  EXPECT_EQ(result.get().code(), Errc::full);
}

TEST(ModelRegression, CopiedSenderKeepsDropOldestPolicy) {
  test::TempDir dir;
  Options o;
  o.directory = dir.path();
  o.max_memory_bytes = 64;
  o.max_disk_bytes = 0;
  o.when_full = FullPolicy::drop_oldest;
  auto ch = channel<std::uint64_t>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  Sender<std::uint64_t> copy = ch->sender;
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(ch->sender.send(std::uint64_t{i}).ok());  // 8 x 8 bytes: full
  // drop_oldest: try_send on any handle discards the oldest item to make room.
  EXPECT_TRUE(copy.try_send(std::uint64_t{100}).ok());
  // Copy assignment too: a handle of another queue, under another policy, takes this
  // queue's policy along with the queue.
  test::TempDir other_dir;
  o.directory = other_dir.path();
  o.when_full = FullPolicy::fail;
  auto other = channel<std::uint64_t>(o);
  ASSERT_TRUE(other.ok()) << other.status().message();
  Sender<std::uint64_t> assigned = other->sender;
  assigned = ch->sender;
  EXPECT_TRUE(assigned.try_send(std::uint64_t{101}).ok());
}

}  // namespace
}  // namespace hopper
