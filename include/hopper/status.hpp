// Status and Result: how every hopper call reports expected conditions.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace hopper {

// What went wrong, if anything. Expected conditions are values, never exceptions.
enum class Errc {
  ok,                // success
  full,              // both budgets are full and the call may not wait (item untouched)
  empty,             // nothing to receive right now
  timeout,           // a timed call ran out of time
  closed,            // the other side is gone (or, for recv, every sender is gone and all is read)
  too_large,         // one item is larger than the queue can ever hold
  invalid_argument,  // bad options or arguments; the message names which and why
  locked,            // another process (or handle) holds the queue directory
  io_error,          // the operating system refused; the message names the path and errno text
  corrupt,           // stored data failed validation
  not_found,         // a file or directory the call needed does not exist (ENOENT); the message
                     // names the path. Returned by FileSystem implementations; a queue treats
                     // it as an I/O fault of its own kind (a segment file that is gone)
};

// Short lower-case name of a code, e.g. "io_error".
std::string_view to_string(Errc code) noexcept;

// The outcome of an operation: ok, or a code with a message. An ok Status holds no
// allocation (the leveldb idiom: a null state means ok), so returning it is free.
// Thread-compatible: a const Status may be read from many threads.
class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(Errc code, std::string message);

  static Status Ok() noexcept { return Status(); }
  // An io_error naming `what` (an operation), `path` and the errno text of `err`.
  static Status IoError(std::string_view what, std::string_view path, int err);
  // The same, but not_found when `err` is ENOENT: what a FileSystem returns, so that a
  // queue can tell a file that is gone from one that cannot be read.
  static Status FromErrno(std::string_view what, std::string_view path, int err);

  bool ok() const noexcept { return state_ == nullptr; }
  Errc code() const noexcept { return state_ ? state_->code : Errc::ok; }
  // "ok", or "<code>: <message>", e.g. "io_error: open /q/LOCK: Permission denied".
  std::string message() const;

  friend bool operator==(const Status& a, Errc b) noexcept { return a.code() == b; }

 private:
  struct State {
    Errc code;
    std::string message;
  };
  std::shared_ptr<const State> state_;  // shared: copies are cheap and immutable
};

// A T or the non-ok Status that explains why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = Status(Errc::invalid_argument, "Result built from an ok Status without a value");
  }

  bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  const Status& status() const noexcept { return status_; }

  // Precondition: ok(). Accessing the value of a failed Result is a programming error.
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() { return *value_; }
  T* operator->() { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace hopper
