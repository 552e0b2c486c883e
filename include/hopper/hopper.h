/* hopper's C API: a queue of byte strings, for programs written in C (or in Go through
 * cgo, or anything else with a C FFI). It is the C++ API's hopper::channel<std::string>
 * underneath, so everything the C++ documentation says about budgets, spilling, order,
 * durability and recovery holds here too; docs/c-api.md has the details.
 *
 *   hopper_options* o = hopper_options_new("/var/spool/agent");
 *   hopper_options_set_max_memory_bytes(o, 1 << 20);
 *   hopper_sender* tx; hopper_receiver* rx;
 *   if (hopper_open(o, &tx, &rx) != HOPPER_OK) fprintf(stderr, "%s\n", hopper_last_error());
 *   hopper_options_free(o);
 *   hopper_send(tx, "cpu 0.5", 7);
 *   const void* item; size_t len;
 *   if (hopper_recv(rx, &item, &len) == HOPPER_OK) ...  (item valid until the next recv)
 *   hopper_sender_close(tx); hopper_receiver_close(rx);
 *
 * Errors: every call that can fail returns a hopper_code. HOPPER_OK is 0. After a call
 * returns anything else, hopper_last_error() gives its message on the same thread (the
 * code's name and what went wrong: the option, the path and the errno text). No C++
 * exception ever crosses this API: an allocation failure is HOPPER_NO_MEMORY.
 *
 * Threads: a hopper_sender may be used by many threads at once (hopper_sender_clone gives
 * another handle, e.g. one per thread); a hopper_receiver by one thread at a time, except
 * hopper_receiver_stats and hopper_receiver_damage, which any thread may call.
 */
#ifndef HOPPER_HOPPER_H
#define HOPPER_HOPPER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The C++ API's hopper::Errc, value for value, and one code of the C layer. */
typedef enum hopper_code {
  HOPPER_OK = 0,
  HOPPER_FULL = 1,             /* both budgets full and the call may not wait; item not taken */
  HOPPER_EMPTY = 2,            /* nothing to receive right now */
  HOPPER_TIMEOUT = 3,          /* a timed call ran out of time */
  HOPPER_CLOSED = 4,           /* the other side is gone (recv: every sender gone, all read) */
  HOPPER_TOO_LARGE = 5,        /* one item larger than the queue can ever hold */
  HOPPER_INVALID_ARGUMENT = 6, /* bad options or arguments; the message names which and why */
  HOPPER_LOCKED = 7,           /* another process (or handle) holds the queue directory */
  HOPPER_IO_ERROR = 8,         /* the operating system refused; the message names path, errno */
  HOPPER_CORRUPT = 9,          /* stored data failed validation */
  HOPPER_NOT_FOUND = 10,       /* a file or directory the call needed does not exist */
  HOPPER_NO_MEMORY = 100       /* the C layer could not allocate; nothing was changed */
} hopper_code;

/* "ok", "full", ... "no_memory"; "unknown" for a value that is not a hopper_code. */
const char* hopper_code_name(hopper_code code);

/* The message of the last call on this thread that did not return HOPPER_OK, e.g.
 * "io_error: open /q/LOCK: Permission denied"; "" if there was none. Valid until the next
 * failing call on this thread. */
const char* hopper_last_error(void);

/* ---- options: how one queue directory is budgeted and laid out (the C++ Options) ---- */

typedef struct hopper_options hopper_options;

typedef enum hopper_full_policy {
  HOPPER_FULL_BLOCK = 0,      /* hopper_send waits for room */
  HOPPER_FULL_FAIL = 1,       /* hopper_send returns HOPPER_FULL */
  HOPPER_FULL_DROP_OLDEST = 2 /* the oldest data is discarded (and counted) to make room */
} hopper_full_policy;

typedef enum hopper_sync_policy {
  HOPPER_SYNC_NONE = 0,     /* fdatasync when a segment closes and at shutdown */
  HOPPER_SYNC_INTERVAL = 1, /* and after a page write once the sync interval has passed */
  HOPPER_SYNC_ALWAYS = 2    /* hopper_send returns HOPPER_OK once the item is on stable storage */
} hopper_sync_policy;

/* NULL (and HOPPER_NO_MEMORY from hopper_last_error) if it cannot allocate. `directory` is
 * copied; it is created at open if missing. Defaults are the C++ Options' defaults. */
hopper_options* hopper_options_new(const char* directory);
void hopper_options_free(hopper_options* options); /* NULL is fine */
void hopper_options_set_max_memory_bytes(hopper_options* options, uint64_t bytes);
void hopper_options_set_max_disk_bytes(hopper_options* options, uint64_t bytes); /* 0: never spill */
void hopper_options_set_segment_bytes(hopper_options* options, uint64_t bytes);
void hopper_options_set_page_bytes(hopper_options* options, uint32_t bytes);
void hopper_options_set_compression_level(hopper_options* options, int level);
/* Threads of the queue's own that compress and write spilled pages (hopper::Options::
 * compression_threads): 0 (the default) starts none; at most 16. */
void hopper_options_set_compression_threads(hopper_options* options, uint32_t threads);
void hopper_options_set_when_full(hopper_options* options, hopper_full_policy policy);
void hopper_options_set_sync(hopper_options* options, hopper_sync_policy policy);
void hopper_options_set_sync_interval_ms(hopper_options* options, uint64_t milliseconds);
/* Nonzero: the delivery position moves only by hopper_commit / hopper_commit_position. */
void hopper_options_set_manual_commit(hopper_options* options, int manual);
/* Items older than this when their turn comes are passed over, counted in
 * hopper_stats.items_expired (hopper::Options::max_age). 0 (the default): never. */
void hopper_options_set_max_age_ms(hopper_options* options, uint64_t milliseconds);

/* ---- opening ---- */

typedef struct hopper_sender hopper_sender;
typedef struct hopper_receiver hopper_receiver;

/* Opens (creating or recovering) the queue in the options' directory and gives its first
 * sender and its receiver. On failure *sender and *receiver are set to NULL. Errors:
 * HOPPER_INVALID_ARGUMENT (bad options, named), HOPPER_IO_ERROR, HOPPER_LOCKED,
 * HOPPER_CORRUPT (a segment of an unknown format version). */
hopper_code hopper_open(const hopper_options* options, hopper_sender** sender, hopper_receiver** receiver);

/* ---- sending ---- */

/* Another producer handle for the same queue (NULL on allocation failure, or if `sender`
 * is NULL). The receiver sees HOPPER_CLOSED only once every sender handle is closed. */
hopper_sender* hopper_sender_clone(const hopper_sender* sender);
/* Sends `size` bytes (copied) under the options' full policy. `data` may be NULL when
 * `size` is 0. */
hopper_code hopper_send(hopper_sender* sender, const void* data, size_t size);
/* Never waits for room: HOPPER_FULL when there is none (drop_oldest still drops). */
hopper_code hopper_try_send(hopper_sender* sender, const void* data, size_t size);
/* Waits at most `timeout_ms` for room: HOPPER_TIMEOUT. */
hopper_code hopper_send_for(hopper_sender* sender, const void* data, size_t size, uint64_t timeout_ms);
/* Everything sent so far is readable and every spilled item handed to the OS. */
hopper_code hopper_flush(hopper_sender* sender);
/* Closes and frees the handle. NULL is fine. */
void hopper_sender_close(hopper_sender* sender);

/* ---- receiving ---- */

/* Waits for the next item in order. On HOPPER_OK, *data and *size describe its bytes,
 * which stay valid (owned by the receiver) until the next receive call or close.
 * HOPPER_CLOSED once every sender is closed and everything is read. */
hopper_code hopper_recv(hopper_receiver* receiver, const void** data, size_t* size);
/* Never waits: HOPPER_EMPTY. */
hopper_code hopper_try_recv(hopper_receiver* receiver, const void** data, size_t* size);
/* Waits at most `timeout_ms`: HOPPER_TIMEOUT. */
hopper_code hopper_recv_for(hopper_receiver* receiver, const void** data, size_t* size, uint64_t timeout_ms);
/* The position just past the last item handed out (0 once closed or for NULL). */
uint64_t hopper_position(const hopper_receiver* receiver);
/* Everything received so far is done: the position is persisted (fdatasync'ed). */
hopper_code hopper_commit(hopper_receiver* receiver);
/* Commits every item before `position` (a value hopper_position returned); items at or
 * after it that were received but not committed come back after a restart.
 * HOPPER_INVALID_ARGUMENT beyond hopper_position. */
hopper_code hopper_commit_position(hopper_receiver* receiver, uint64_t position);
/* A file descriptor for event loops (epoll, poll, libuv, Go's netpoller): readable whenever
 * hopper_try_recv could return something (an item, or HOPPER_CLOSED). Once it is readable,
 * call hopper_try_recv until HOPPER_EMPTY: that call re-arms it, and the next arrival makes
 * it readable again. It may be readable with nothing to take. A read or write waiting for
 * its retry (HOPPER_IO_ERROR) is not announced: try again after a short pause. The
 * descriptor belongs to the queue: do not read, write or close it, and remove it from your
 * loop before closing the receiver. */
hopper_code hopper_receiver_wait_handle(hopper_receiver* receiver, int* fd);
/* Closes and frees the handle: senders then get HOPPER_CLOSED; what is queued stays and is
 * written to disk once the last sender is closed too. NULL is fine. */
void hopper_receiver_close(hopper_receiver* receiver);

/* ---- observing ---- */

/* The C++ Stats, field for field (see include/hopper/stats.hpp for each one's meaning).
 * Fields are only ever added at the end: pass sizeof(hopper_stats) as you compiled it. */
typedef struct hopper_stats {
  uint64_t memory_items, memory_bytes, disk_items, disk_bytes, segments;
  uint64_t items_sent, items_received, items_spilled, items_recovered;
  uint64_t pages_written, pages_compressed_ahead, bytes_uncompressed, bytes_compressed;
  uint64_t syncs, commits, items_dropped;
  uint64_t corrupt_pages, corrupt_items, torn_bytes, items_missing;
  uint64_t pages_unreadable, items_unreadable;
  uint64_t write_errors, sync_errors, read_errors, remove_errors;
  uint64_t oldest_item_age_ms, memory_capacity_bytes, disk_capacity_bytes;
  uint64_t items_expired, bytes_expired;
} hopper_stats;

/* Fills the first `size` bytes of *out. HOPPER_INVALID_ARGUMENT for a NULL argument. */
hopper_code hopper_receiver_stats(const hopper_receiver* receiver, hopper_stats* out, size_t size);
/* The damage found since open (hopper::Receiver::damage_report): calls `line` once per
 * line, in order, with `context`. Returns the number of lines. */
size_t hopper_receiver_damage(const hopper_receiver* receiver, void (*line)(const char* text, void* context),
                              void* context);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HOPPER_HOPPER_H */
