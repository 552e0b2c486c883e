// Sender, Receiver, Channel and channel(): the handles of a hopper queue.
#pragma once

#include <chrono>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <hopper/detail/queue.hpp>
#include <hopper/options.hpp>
#include <hopper/stats.hpp>
#include <hopper/status.hpp>

namespace hopper {

template <class T>
struct Channel;
template <class T>
Result<Channel<T>> channel(const Options& options);

// A producer handle. Copy it to get another producer; each copy counts until it is
// closed or destroyed. Thread-safe: send, try_send, send_for and flush may be called on
// one Sender from many threads at once; close, assignment and destruction must not race
// with them (give each thread its own copy).
template <class T>
class Sender {
 public:
  Sender(const Sender& o) : q_(o.q_), policy_(o.policy_), drop_(o.drop_) {
    if (q_) q_->add_sender();
  }
  Sender(Sender&& o) noexcept = default;
  Sender& operator=(const Sender& o) {
    if (this != &o) {
      close();
      q_ = o.q_;
      policy_ = o.policy_;
      drop_ = o.drop_;
      if (q_) q_->add_sender();
    }
    return *this;
  }
  Sender& operator=(Sender&& o) noexcept {
    if (this != &o) {
      close();
      q_ = std::move(o.q_);
      policy_ = o.policy_;
      drop_ = o.drop_;
    }
    return *this;
  }
  ~Sender() { close(); }

  // Sends under Options::when_full: block waits for room, fail returns Errc::full,
  // drop_oldest discards the oldest data to make room. Under SyncPolicy::always it returns
  // ok only once the item is fdatasync'ed, and io_error when the page holding it could not
  // be written or synced (the item may still be delivered if its page reached the file).
  // too_large only for an item that can be stored nowhere. While the disk refuses writes
  // (none, interval), items go on into RAM pages while there is room, then the policy
  // applies as for a full queue. On a non-ok Status `item` is untouched. Thread-safe.
  Status send(T&& item) { return q_ ? q_->send(item, detail::Wait::always(), policy_) : closed(); }
  Status send(const T& item) {
    T copy(item);
    return send(std::move(copy));
  }
  // Never waits for room: Errc::full when there is none (FullPolicy::drop_oldest still
  // drops). It may do spill work itself (compress and append a page), or wait for other
  // senders' page writes when too many sealed pages are queued for the disk (never for the
  // receiver), and under SyncPolicy::always it waits for its item's fdatasync. Thread-safe.
  Status try_send(T&& item) {
    return q_ ? q_->send(item, detail::Wait::none(), drop_ ? FullPolicy::drop_oldest : FullPolicy::fail) : closed();
  }
  // Waits at most `timeout` for room, unless Options::when_full is drop_oldest:
  // Errc::timeout.
  Status send_for(T&& item, std::chrono::milliseconds timeout) {
    return q_ ? q_->send(item, detail::Wait::for_(timeout), drop_ ? FullPolicy::drop_oldest : FullPolicy::block)
              : closed();
  }
  // Sends several items in order, as send() would one after another, but under one lock
  // acquisition, one clock read and one wake-up of the receiver, and under
  // SyncPolicy::always with one fdatasync wait for all of them (a group commit) instead of
  // one each. `accepted` says how many were taken, always a prefix of `items` (those may
  // have been moved from). Returns ok when all were taken; otherwise the status of the first
  // item not taken (as send() would return for it: full, timeout, too_large, closed), and
  // it and every later one are untouched. Under SyncPolicy::always, io_error when the group
  // commit failed: the `accepted` items are in the queue but not known to be on disk (they
  // may still be delivered). Items of other senders may come between these only where
  // this call waits (for room, or for the disk). Thread-safe.
  Status send_many(std::span<T> items, std::size_t& accepted) {
    accepted = 0;
    return q_ ? q_->send_many(items, accepted, detail::Wait::always(), policy_) : closed();
  }
  // send_many without waiting for room, as try_send: takes the prefix that fits now and
  // returns Errc::full for the first item that does not.
  Status try_send_many(std::span<T> items, std::size_t& accepted) {
    accepted = 0;
    return q_ ? q_->send_many(items, accepted, detail::Wait::none(), drop_ ? FullPolicy::drop_oldest : FullPolicy::fail)
              : closed();
  }
  // Everything sent so far is readable, and every spilled item is written to its segment
  // file (handed to the OS; not fsync'ed). Each page waiting for the disk is tried once now,
  // whatever the retry back-off says; the first write error is returned (the pages stay in
  // RAM, retried later). Thread-safe.
  Status flush() { return q_ ? q_->flush() : closed(); }
  // This handle stops producing. Idempotent. Once every handle is closed, the receiver
  // drains what is left and then gets Errc::closed.
  void close() {
    if (q_) {
      q_->drop_sender();
      q_.reset();
    }
  }

 private:
  friend Result<Channel<T>> channel<T>(const Options&);
  Sender(std::shared_ptr<detail::Queue<T>> q, FullPolicy policy)
      : q_(std::move(q)), policy_(policy), drop_(policy == FullPolicy::drop_oldest) {
    q_->add_sender();
  }
  static Status closed() { return Status(Errc::closed, "this sender is closed"); }

  std::shared_ptr<detail::Queue<T>> q_;
  FullPolicy policy_ = FullPolicy::block;
  bool drop_ = false;
};

// The one consumer. Move-only. Not thread-safe: use it from one thread at a time, except
// stats(), which any thread may call while the receiver is in use.
template <class T>
class Receiver {
 public:
  Receiver(Receiver&&) noexcept = default;
  Receiver& operator=(Receiver&& o) noexcept {
    if (this != &o) {
      close();
      q_ = std::move(o.q_);
      status_ = std::move(o.status_);
    }
    return *this;
  }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;
  ~Receiver() { close(); }

  // Waits for the next item in order. Errc::closed once every sender is gone and all is
  // read. A page the disk refuses to read is read again (twice, 1 and 10 ms apart), then
  // skipped and counted (Stats::items_unreadable); io_error only when a page must first be
  // written (manual_commit, SyncPolicy::always) and the disk refuses it now — call again.
  Status recv(T& out) { return q_ ? q_->recv(out, detail::Wait::always()) : closed(); }
  // Waits at most `timeout`: Errc::timeout (or the io_error of a read that waits for its
  // retry, if the deadline comes first).
  Status recv_for(T& out, std::chrono::milliseconds timeout) {
    return q_ ? q_->recv_for(out, timeout) : closed();
  }
  // Never waits for an item, nor for another thread's page write: Errc::empty. It may read
  // (or, under SyncPolicy::always or manual_commit, write) a page itself; io_error while a
  // failed read or write of the next page waits for its retry.
  Status try_recv(T& out) { return q_ ? q_->recv(out, detail::Wait::none()) : closed(); }
  // Bulk receive: appends up to `max` items to `out`, in order. Waits for the first as recv
  // does, then takes what is already there without waiting (many memory items per lock
  // acquisition). ok means at least one item was appended.
  Status recv_many(std::vector<T>& out, std::size_t max) {
    return q_ ? q_->recv_many(out, max, detail::Wait::always()) : closed();
  }
  Status recv_many_for(std::vector<T>& out, std::size_t max, std::chrono::milliseconds timeout) {
    return q_ ? q_->recv_many_for(out, max, timeout) : closed();
  }
  // Never waits: Errc::empty when nothing is there.
  Status try_recv_many(std::vector<T>& out, std::size_t max) {
    return q_ ? q_->recv_many(out, max, detail::Wait::none()) : closed();
  }
  // Everything received so far is done: the delivery position is persisted (atomically,
  // checksummed, fdatasync'ed), and segments wholly before it are deleted. With
  // Options::manual_commit this is the only way the position advances; without it, it
  // narrows what a crash may redeliver. io_error if the position could not be persisted
  // (it then stays where it was).
  Status commit() { return q_ ? q_->commit() : closed(); }
  // The position just past the last item this receiver handed out (recv, try_recv,
  // recv_for, recv_many...). Positions only grow; items skipped as damaged or dropped are
  // passed over. 0 once closed.
  std::uint64_t position() const { return q_ ? q_->position() : 0; }
  // Commits every item before `position` (a value position() returned): with
  // Options::manual_commit, items before it are never delivered again after a restart;
  // items at or after it that were received but not committed come back (and, in memory,
  // stay charged against the budget until committed). commit() == commit(position()).
  // A position below the last commit is ok and changes nothing; one beyond position() is
  // invalid_argument. io_error if it could not be persisted (the position stays where it
  // was).
  Status commit(std::uint64_t position) { return q_ ? q_->commit(position) : closed(); }
  // A file descriptor for event loops (epoll, poll, asio, libuv): readable whenever
  // try_recv / try_recv_many could return something — an item, or closed — so a loop can
  // wait for it instead of a blocked thread. Use it edge-style: once it is readable, call
  // try_recv until it returns empty; that empty call re-arms it, and the next arrival
  // makes it readable again (no arrival in between is missed). It may be readable with
  // nothing to take (try_recv then says empty). A failed page read or write waiting for
  // its retry (try_recv says io_error) is not announced on it: try again after a short
  // pause. The descriptor belongs to the queue — do not read, write or close it; it stays
  // valid until the queue closes (the receiver and every sender are gone), so remove it
  // from your loop before closing the receiver. io_error if no eventfd could be made.
  Result<int> wait_handle() { return q_ ? q_->wait_handle() : Result<int>(closed()); }
  // Occupancy and totals. Thread-safe.
  Stats stats() const { return q_ ? q_->stats() : Stats{}; }
  // One line per damage found since open — by recovery (damaged pages skipped, torn tails
  // cut, a damaged cursor) or while reading — naming the file and offset. Thread-safe.
  std::vector<std::string> damage_report() const { return q_ ? q_->damage_report() : std::vector<std::string>{}; }
  // The receiver goes away: senders get Errc::closed; what is queued stays, and is written
  // to disk when the last sender is gone too.
  void close() {
    if (q_) {
      q_->drop_receiver();
      q_.reset();
    }
  }

  // `for (T& item : receiver)` yields items until closed; any other error ends the loop
  // and is kept in status().
  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    T& operator*() { return item_; }
    iterator& operator++() {
      Status s = r_->recv(item_);
      if (!s.ok()) {
        if (s.code() != Errc::closed) r_->status_ = s;
        r_ = nullptr;
      }
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return it.r_ == nullptr; }

   private:
    friend class Receiver;
    explicit iterator(Receiver* r) : r_(r) {}
    Receiver* r_ = nullptr;
    T item_{};
  };
  iterator begin() {
    iterator it(this);
    ++it;
    return it;
  }
  std::default_sentinel_t end() noexcept { return {}; }
  // The error that ended the last loop over this receiver (ok if it ended by `closed`).
  const Status& status() const noexcept { return status_; }

 private:
  friend Result<Channel<T>> channel<T>(const Options&);
  explicit Receiver(std::shared_ptr<detail::Queue<T>> q) : q_(std::move(q)) {}
  static Status closed() { return Status(Errc::closed, "this receiver is closed"); }

  std::shared_ptr<detail::Queue<T>> q_;
  Status status_;
};

template <class T>
struct Channel {
  Sender<T> sender;
  Receiver<T> receiver;
};

// Opens (creating or recovering) the queue in options.directory. Errors: invalid_argument
// (bad options, named), io_error (path and errno text), locked (another process or
// handle has the directory), corrupt (a segment of an unknown format version).
template <class T>
Result<Channel<T>> channel(const Options& options) {
  auto core = detail::Core::open(options);
  if (!core.ok()) return core.status();
  auto q = std::make_shared<detail::Queue<T>>(std::move(*core));
  return Channel<T>{Sender<T>(q, options.when_full), Receiver<T>(q)};
}

// Queues of std::string (the usual choice for lines and records) are compiled once, into
// the library (src/instances.cpp): a file that uses them parses these templates but does
// not instantiate or optimise them again, which is about a quarter of its compile time
// (docs/architecture.md, "Compile cost"). That instantiation charges the default
// Footprint<std::string>: a program that specializes it must define
// HOPPER_NO_EXTERN_STRING_QUEUE in every file (as a compile definition), so that its own
// instantiation, with its footprint, is the one used.
#ifndef HOPPER_NO_EXTERN_STRING_QUEUE
extern template class detail::Queue<std::string>;
extern template class Sender<std::string>;
extern template class Receiver<std::string>;
extern template Result<Channel<std::string>> channel<std::string>(const Options&);
#endif

}  // namespace hopper
