// The C API (include/hopper/hopper.h) over hopper::channel<std::string>. Each entry point
// catches everything: no exception crosses into C.
#include <hopper/hopper.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include <hopper/hopper.hpp>

struct hopper_options {
  hopper::Options options;
};

struct hopper_sender {
  hopper::Sender<std::string> sender;
};

struct hopper_receiver {
  hopper::Receiver<std::string> receiver;
  std::string item;  // the bytes the last receive handed out
};

namespace {

// hopper_code and hopper::Errc agree value for value (the C header's promise).
static_assert(HOPPER_OK == static_cast<int>(hopper::Errc::ok));
static_assert(HOPPER_FULL == static_cast<int>(hopper::Errc::full));
static_assert(HOPPER_EMPTY == static_cast<int>(hopper::Errc::empty));
static_assert(HOPPER_TIMEOUT == static_cast<int>(hopper::Errc::timeout));
static_assert(HOPPER_CLOSED == static_cast<int>(hopper::Errc::closed));
static_assert(HOPPER_TOO_LARGE == static_cast<int>(hopper::Errc::too_large));
static_assert(HOPPER_INVALID_ARGUMENT == static_cast<int>(hopper::Errc::invalid_argument));
static_assert(HOPPER_LOCKED == static_cast<int>(hopper::Errc::locked));
static_assert(HOPPER_IO_ERROR == static_cast<int>(hopper::Errc::io_error));
static_assert(HOPPER_CORRUPT == static_cast<int>(hopper::Errc::corrupt));
static_assert(HOPPER_NOT_FOUND == static_cast<int>(hopper::Errc::not_found));

// Every Stats field has its hopper_stats field (stats_of copies them by name).
static_assert(sizeof(hopper_stats) == sizeof(hopper::Stats), "hopper_stats and hopper::Stats differ: add the field to both");

thread_local std::string last_error;  // hopper_last_error()

hopper_code fail(hopper_code code, const char* message) noexcept {
  try {
    last_error = message;
  } catch (...) {
    last_error.clear();  // keeps its capacity: cannot throw
  }
  return code;
}

hopper_code report(const hopper::Status& s) noexcept {
  if (s.ok()) return HOPPER_OK;
  const auto code = static_cast<hopper_code>(static_cast<int>(s.code()));
  try {
    last_error = s.message();
  } catch (...) {
    return fail(HOPPER_NO_MEMORY, "no_memory: the error message could not be stored");
  }
  return code;
}

// Runs `body` (which returns a hopper_code), turning any exception into a code.
template <class F>
hopper_code guarded(F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(HOPPER_NO_MEMORY, "no_memory: allocation failed");
  } catch (const std::exception& e) {
    try {
      return fail(HOPPER_IO_ERROR, (std::string("io_error: ") + e.what()).c_str());
    } catch (...) {
      return fail(HOPPER_NO_MEMORY, "no_memory: allocation failed");
    }
  } catch (...) {
    return fail(HOPPER_IO_ERROR, "io_error: an unknown exception");
  }
}

hopper_code null_argument(const char* what) noexcept { return fail(HOPPER_INVALID_ARGUMENT, what); }

hopper_code received(hopper_receiver* r, const hopper::Status& s, const void** data, size_t* size) noexcept {
  if (!s.ok()) return report(s);
  *data = r->item.data();
  *size = r->item.size();
  return HOPPER_OK;
}

hopper_stats stats_of(const hopper::Stats& s) noexcept {
  hopper_stats c{};
  c.memory_items = s.memory_items;
  c.memory_bytes = s.memory_bytes;
  c.disk_items = s.disk_items;
  c.disk_bytes = s.disk_bytes;
  c.segments = s.segments;
  c.items_sent = s.items_sent;
  c.items_received = s.items_received;
  c.items_spilled = s.items_spilled;
  c.items_recovered = s.items_recovered;
  c.pages_written = s.pages_written;
  c.pages_compressed_ahead = s.pages_compressed_ahead;
  c.bytes_uncompressed = s.bytes_uncompressed;
  c.bytes_compressed = s.bytes_compressed;
  c.syncs = s.syncs;
  c.commits = s.commits;
  c.items_dropped = s.items_dropped;
  c.corrupt_pages = s.corrupt_pages;
  c.corrupt_items = s.corrupt_items;
  c.torn_bytes = s.torn_bytes;
  c.items_missing = s.items_missing;
  c.pages_unreadable = s.pages_unreadable;
  c.items_unreadable = s.items_unreadable;
  c.write_errors = s.write_errors;
  c.sync_errors = s.sync_errors;
  c.read_errors = s.read_errors;
  c.remove_errors = s.remove_errors;
  c.oldest_item_age_ms = s.oldest_item_age_ms;
  c.memory_capacity_bytes = s.memory_capacity_bytes;
  c.disk_capacity_bytes = s.disk_capacity_bytes;
  c.items_expired = s.items_expired;
  c.bytes_expired = s.bytes_expired;
  return c;
}

template <class Send>
hopper_code send_bytes(hopper_sender* s, const void* data, size_t size, Send&& send) noexcept {
  if (s == nullptr) return null_argument("invalid_argument: send on a NULL sender");
  if (data == nullptr && size > 0) return null_argument("invalid_argument: send of NULL data with a nonzero size");
  return guarded([&] {
    std::string item(static_cast<const char*>(data), size);
    return report(send(s->sender, std::move(item)));
  });
}

template <class Recv>
hopper_code recv_bytes(hopper_receiver* r, const void** data, size_t* size, Recv&& recv) noexcept {
  if (r == nullptr || data == nullptr || size == nullptr)
    return null_argument("invalid_argument: receive needs a receiver and data and size pointers");
  return guarded([&] { return received(r, recv(r->receiver, r->item), data, size); });
}

}  // namespace

extern "C" {

const char* hopper_code_name(hopper_code code) {
  switch (code) {
    case HOPPER_OK: return "ok";
    case HOPPER_FULL: return "full";
    case HOPPER_EMPTY: return "empty";
    case HOPPER_TIMEOUT: return "timeout";
    case HOPPER_CLOSED: return "closed";
    case HOPPER_TOO_LARGE: return "too_large";
    case HOPPER_INVALID_ARGUMENT: return "invalid_argument";
    case HOPPER_LOCKED: return "locked";
    case HOPPER_IO_ERROR: return "io_error";
    case HOPPER_CORRUPT: return "corrupt";
    case HOPPER_NOT_FOUND: return "not_found";
    case HOPPER_NO_MEMORY: return "no_memory";
  }
  return "unknown";
}

const char* hopper_last_error(void) { return last_error.c_str(); }

hopper_options* hopper_options_new(const char* directory) {
  try {
    auto* o = new hopper_options;
    if (directory != nullptr) o->options.directory = directory;
    return o;
  } catch (...) {
    fail(HOPPER_NO_MEMORY, "no_memory: hopper_options_new could not allocate");
    return nullptr;
  }
}

void hopper_options_free(hopper_options* options) { delete options; }

void hopper_options_set_max_memory_bytes(hopper_options* o, uint64_t bytes) {
  if (o) o->options.max_memory_bytes = bytes;
}
void hopper_options_set_max_disk_bytes(hopper_options* o, uint64_t bytes) {
  if (o) o->options.max_disk_bytes = bytes;
}
void hopper_options_set_segment_bytes(hopper_options* o, uint64_t bytes) {
  if (o) o->options.segment_bytes = bytes;
}
void hopper_options_set_page_bytes(hopper_options* o, uint32_t bytes) {
  if (o) o->options.page_bytes = bytes;
}
void hopper_options_set_compression_level(hopper_options* o, int level) {
  if (o) o->options.compression_level = level;
}
void hopper_options_set_compression_threads(hopper_options* o, uint32_t threads) {
  if (o) o->options.compression_threads = threads;
}
void hopper_options_set_when_full(hopper_options* o, hopper_full_policy policy) {
  if (!o) return;
  switch (policy) {
    case HOPPER_FULL_FAIL: o->options.when_full = hopper::FullPolicy::fail; return;
    case HOPPER_FULL_DROP_OLDEST: o->options.when_full = hopper::FullPolicy::drop_oldest; return;
    case HOPPER_FULL_BLOCK: break;
  }
  o->options.when_full = hopper::FullPolicy::block;
}
void hopper_options_set_sync(hopper_options* o, hopper_sync_policy policy) {
  if (!o) return;
  switch (policy) {
    case HOPPER_SYNC_INTERVAL: o->options.sync = hopper::SyncPolicy::interval; return;
    case HOPPER_SYNC_ALWAYS: o->options.sync = hopper::SyncPolicy::always; return;
    case HOPPER_SYNC_NONE: break;
  }
  o->options.sync = hopper::SyncPolicy::none;
}
void hopper_options_set_sync_interval_ms(hopper_options* o, uint64_t milliseconds) {
  // Clamped like the timeouts: a value past the signed range would turn negative and be
  // refused as "not positive", which is not what was asked.
  if (o)
    o->options.sync_interval =
        std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(std::min<uint64_t>(milliseconds, uint64_t{1} << 62)));
}
void hopper_options_set_manual_commit(hopper_options* o, int manual) {
  if (o) o->options.manual_commit = manual != 0;
}
void hopper_options_set_max_age_ms(hopper_options* o, uint64_t milliseconds) {
  if (o)
    o->options.max_age =
        std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(std::min<uint64_t>(milliseconds, uint64_t{1} << 62)));
}

hopper_code hopper_open(const hopper_options* options, hopper_sender** sender, hopper_receiver** receiver) {
  if (sender == nullptr || receiver == nullptr) return null_argument("invalid_argument: hopper_open needs sender and receiver pointers");
  *sender = nullptr;
  *receiver = nullptr;
  if (options == nullptr) return null_argument("invalid_argument: hopper_open needs options");
  return guarded([&] {
    auto ch = hopper::channel<std::string>(options->options);
    if (!ch.ok()) return report(ch.status());
    auto* tx = new hopper_sender{std::move(ch->sender)};
    try {
      *receiver = new hopper_receiver{std::move(ch->receiver), {}};
    } catch (...) {
      delete tx;
      throw;
    }
    *sender = tx;
    return HOPPER_OK;
  });
}

hopper_sender* hopper_sender_clone(const hopper_sender* sender) {
  if (sender == nullptr) {
    null_argument("invalid_argument: hopper_sender_clone of NULL");
    return nullptr;
  }
  try {
    return new hopper_sender{sender->sender};
  } catch (...) {
    fail(HOPPER_NO_MEMORY, "no_memory: hopper_sender_clone could not allocate");
    return nullptr;
  }
}


hopper_code hopper_send(hopper_sender* s, const void* data, size_t size) {
  return send_bytes(s, data, size, [](auto& tx, std::string&& item) { return tx.send(std::move(item)); });
}
hopper_code hopper_try_send(hopper_sender* s, const void* data, size_t size) {
  return send_bytes(s, data, size, [](auto& tx, std::string&& item) { return tx.try_send(std::move(item)); });
}
hopper_code hopper_send_for(hopper_sender* s, const void* data, size_t size, uint64_t timeout_ms) {
  const auto timeout = std::chrono::milliseconds(
      static_cast<std::chrono::milliseconds::rep>(std::min<uint64_t>(timeout_ms, uint64_t{1} << 62)));
  return send_bytes(s, data, size,
                    [&](auto& tx, std::string&& item) { return tx.send_for(std::move(item), timeout); });
}
hopper_code hopper_flush(hopper_sender* s) {
  if (s == nullptr) return null_argument("invalid_argument: hopper_flush of a NULL sender");
  return guarded([&] { return report(s->sender.flush()); });
}
void hopper_sender_close(hopper_sender* s) { delete s; }


hopper_code hopper_recv(hopper_receiver* r, const void** data, size_t* size) {
  return recv_bytes(r, data, size, [](auto& rx, std::string& out) { return rx.recv(out); });
}
hopper_code hopper_try_recv(hopper_receiver* r, const void** data, size_t* size) {
  return recv_bytes(r, data, size, [](auto& rx, std::string& out) { return rx.try_recv(out); });
}
hopper_code hopper_recv_for(hopper_receiver* r, const void** data, size_t* size, uint64_t timeout_ms) {
  const auto timeout = std::chrono::milliseconds(
      static_cast<std::chrono::milliseconds::rep>(std::min<uint64_t>(timeout_ms, uint64_t{1} << 62)));
  return recv_bytes(r, data, size, [&](auto& rx, std::string& out) { return rx.recv_for(out, timeout); });
}

uint64_t hopper_position(const hopper_receiver* r) {
  if (r == nullptr) return 0;
  try {
    return r->receiver.position();
  } catch (...) {
    return 0;
  }
}
hopper_code hopper_commit(hopper_receiver* r) {
  if (r == nullptr) return null_argument("invalid_argument: hopper_commit of a NULL receiver");
  return guarded([&] { return report(r->receiver.commit()); });
}
hopper_code hopper_commit_position(hopper_receiver* r, uint64_t position) {
  if (r == nullptr) return null_argument("invalid_argument: hopper_commit_position of a NULL receiver");
  return guarded([&] { return report(r->receiver.commit(position)); });
}
hopper_code hopper_receiver_wait_handle(hopper_receiver* r, int* fd) {
  if (r == nullptr || fd == nullptr) return null_argument("invalid_argument: hopper_receiver_wait_handle needs a receiver and an fd pointer");
  return guarded([&] {
    auto h = r->receiver.wait_handle();
    if (!h.ok()) return report(h.status());
    *fd = *h;
    return HOPPER_OK;
  });
}
void hopper_receiver_close(hopper_receiver* r) { delete r; }

hopper_code hopper_receiver_stats(const hopper_receiver* r, hopper_stats* out, size_t size) {
  if (r == nullptr || out == nullptr) return null_argument("invalid_argument: hopper_receiver_stats needs a receiver and an output");
  return guarded([&] {
    const hopper_stats s = stats_of(r->receiver.stats());
    std::memcpy(out, &s, std::min(size, sizeof s));
    return HOPPER_OK;
  });
}

size_t hopper_receiver_damage(const hopper_receiver* r, void (*line)(const char*, void*), void* context) {
  if (r == nullptr) return 0;
  try {
    const std::vector<std::string> lines = r->receiver.damage_report();
    if (line != nullptr)
      for (const std::string& l : lines) line(l.c_str(), context);
    return lines.size();
  } catch (...) {
    fail(HOPPER_NO_MEMORY, "no_memory: the damage report could not be built");
    return 0;
  }
}

}  // extern "C"
