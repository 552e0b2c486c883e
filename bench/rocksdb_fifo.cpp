#include "rocksdb_fifo.hpp"

#include <chrono>
#include <thread>

#include <rocksdb/db.h>
#include <rocksdb/options.h>

namespace hopper::bench {
namespace {

std::string key_of(std::uint64_t seq) {
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) k[i] = static_cast<char>(seq >> (56 - 8 * i));
  return k;
}

std::uint64_t seq_of(const rocksdb::Slice& k) {
  if (k.size() != 8) throw std::runtime_error("rocksdb fifo: a key that is not 8 bytes");
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(k[i]);
  return v;
}

void check(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) throw std::runtime_error(std::string("rocksdb ") + what + ": " + s.ToString());
}

}  // namespace

RocksFifo::RocksFifo(const std::filesystem::path& dir, bool sync) : sync_(sync) {
  rocksdb::Options o;
  o.create_if_missing = true;
  // Both cores for flushes and compactions; otherwise RocksDB's defaults (Snappy for
  // the SST files, an uncompressed WAL), as a user would leave them.
  o.IncreaseParallelism(2);
  rocksdb::DB* raw = nullptr;
  check(rocksdb::DB::Open(o, dir.native(), &raw), "open");
  db_.reset(raw);
  // A reopened backlog: read from its first key, write after its last.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekToLast();
  if (it->Valid()) {
    next_write_ = seq_of(it->key()) + 1;
    it->SeekToFirst();
    next_read_ = seq_of(it->key());
  }
  check(it->status(), "scan at open");
  batch_first_ = next_read_;
}

RocksFifo::~RocksFifo() {
  if (db_) (void)db_->Close();
}

void RocksFifo::push(std::string_view value) {
  const std::uint64_t seq = next_write_.fetch_add(1, std::memory_order_relaxed);
  rocksdb::WriteOptions w;  // WAL on
  w.sync = sync_;
  check(db_->Put(w, key_of(seq), rocksdb::Slice(value.data(), value.size())), "put");
}

void RocksFifo::fetch() {
  // The keys handed out so far are consumed: one range delete for the whole batch.
  if (next_read_ > batch_first_) {
    check(db_->DeleteRange(rocksdb::WriteOptions(), db_->DefaultColumnFamily(), key_of(batch_first_), key_of(next_read_)),
          "delete range");
    batch_first_ = next_read_;
  }
  batch_.clear();
  batch_pos_ = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  std::uint64_t expect = next_read_;
  // Keys are taken only while consecutive: a producer may have claimed a number and not
  // yet written it, and the queue must not skip it.
  for (it->Seek(key_of(expect)); it->Valid() && batch_.size() < kBatch; it->Next()) {
    if (seq_of(it->key()) != expect) break;
    batch_.emplace_back(it->value().data(), it->value().size());
    ++expect;
  }
  check(it->status(), "iterate");
}

bool RocksFifo::pop(std::string& out, const std::function<bool()>& finished) {
  while (batch_pos_ == batch_.size()) {
    const bool last_chance = finished();
    fetch();
    if (!batch_.empty()) break;
    if (last_chance) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  out = std::move(batch_[batch_pos_++]);
  ++next_read_;
  return true;
}

}  // namespace hopper::bench
