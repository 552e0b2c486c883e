/* The C API from C: compiled as C11, linked against the library. Every check names what it
 * expected; the program exits nonzero on the first failure, and prints a summary line. */
#define _POSIX_C_SOURCE 200809L

#include <hopper/hopper.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int checks = 0;

#define CHECK(cond)                                                                          \
  do {                                                                                       \
    ++checks;                                                                                \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              hopper_last_error());                                                          \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

#define CHECK_CODE(call, want)                                                                       \
  do {                                                                                               \
    hopper_code got_ = (call);                                                                       \
    ++checks;                                                                                        \
    if (got_ != (want)) {                                                                            \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, __LINE__, #call, \
              hopper_code_name(got_), hopper_code_name(want), hopper_last_error());                  \
      exit(1);                                                                                       \
    }                                                                                                \
  } while (0)

static char base[4096];

static void make_dir(char* out, size_t size, const char* name) {
  snprintf(out, size, "%s/%s", base, name);
}

static int same(const void* data, size_t size, const char* want) {
  return size == strlen(want) && memcmp(data, want, size) == 0;
}

static void count_line(const char* text, void* context) {
  (void)text;
  ++*(int*)context;
}

/* Send, receive in order, stats, close: the receiver sees closed once the senders are gone. */
static void round_trip(void) {
  char dir[4200];
  make_dir(dir, sizeof dir, "round_trip");
  hopper_options* o = hopper_options_new(dir);
  CHECK(o != NULL);
  hopper_sender* tx = NULL;
  hopper_receiver* rx = NULL;
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_OK);
  hopper_options_free(o);
  CHECK(tx != NULL && rx != NULL);

  const void* item = NULL;
  size_t size = 0;
  CHECK_CODE(hopper_try_recv(rx, &item, &size), HOPPER_EMPTY);
  CHECK_CODE(hopper_recv_for(rx, &item, &size, 10), HOPPER_TIMEOUT);

  CHECK_CODE(hopper_send(tx, "one", 3), HOPPER_OK);
  CHECK_CODE(hopper_try_send(tx, "two", 3), HOPPER_OK);
  CHECK_CODE(hopper_send_for(tx, "", 0, 100), HOPPER_OK); /* an empty item is an item */
  CHECK_CODE(hopper_send(tx, NULL, 0), HOPPER_OK);
  const char binary[4] = {'a', '\0', 'b', '\0'};
  CHECK_CODE(hopper_send(tx, binary, sizeof binary), HOPPER_OK); /* bytes, not C strings */
  CHECK_CODE(hopper_flush(tx), HOPPER_OK);

  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
  CHECK(same(item, size, "one"));
  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
  CHECK(same(item, size, "two"));
  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
  CHECK(size == 0);
  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
  CHECK(size == 0);
  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
  CHECK(size == 4 && memcmp(item, binary, 4) == 0);
  CHECK(hopper_position(rx) == 5);

  hopper_stats st;
  CHECK_CODE(hopper_receiver_stats(rx, &st, sizeof st), HOPPER_OK);
  CHECK(st.items_sent == 5 && st.items_received == 5 && st.memory_items == 0);
  int lines = 0;
  CHECK(hopper_receiver_damage(rx, count_line, &lines) == 0 && lines == 0);

  /* The wait handle: quiet after an empty receive, readable once something arrives. */
  int fd = -1;
  CHECK_CODE(hopper_receiver_wait_handle(rx, &fd), HOPPER_OK);
  CHECK(fd >= 0);
  CHECK_CODE(hopper_try_recv(rx, &item, &size), HOPPER_EMPTY);
  struct pollfd p = {fd, POLLIN, 0};
  CHECK(poll(&p, 1, 0) == 0);
  CHECK_CODE(hopper_send(tx, "polled", 6), HOPPER_OK);
  CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLIN));
  CHECK_CODE(hopper_try_recv(rx, &item, &size), HOPPER_OK);
  CHECK(same(item, size, "polled"));
  CHECK_CODE(hopper_receiver_wait_handle(NULL, &fd), HOPPER_INVALID_ARGUMENT);

  /* A second producer keeps the queue open until it is closed too. */
  hopper_sender* tx2 = hopper_sender_clone(tx);
  CHECK(tx2 != NULL);
  hopper_sender_close(tx);
  CHECK_CODE(hopper_send(tx2, "three", 5), HOPPER_OK);
  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
  CHECK(same(item, size, "three"));
  hopper_sender_close(tx2);
  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_CLOSED);
  hopper_receiver_close(rx);
}

/* Items beyond the memory budget spill to disk and come back in order; with manual commit a
 * reopen resumes right after the last committed item. */
static void spill_commit_reopen(void) {
  char dir[4200];
  make_dir(dir, sizeof dir, "spill");
  hopper_options* o = hopper_options_new(dir);
  CHECK(o != NULL);
  hopper_options_set_max_memory_bytes(o, 4096);
  hopper_options_set_page_bytes(o, 4096);
  hopper_options_set_segment_bytes(o, 64 * 1024);
  hopper_options_set_max_disk_bytes(o, 16 * 1024 * 1024);
  hopper_options_set_manual_commit(o, 1);
  hopper_options_set_sync(o, HOPPER_SYNC_INTERVAL);
  hopper_options_set_sync_interval_ms(o, 50);
  hopper_options_set_compression_level(o, 3);
  hopper_options_set_compression_threads(o, 1);
  hopper_sender* tx = NULL;
  hopper_receiver* rx = NULL;
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_OK);

  enum { N = 2000 };
  char buf[64];
  for (int i = 0; i < N; ++i) {
    int n = snprintf(buf, sizeof buf, "item %06d", i);
    CHECK_CODE(hopper_send(tx, buf, (size_t)n), HOPPER_OK);
  }
  hopper_stats st;
  CHECK_CODE(hopper_receiver_stats(rx, &st, sizeof st), HOPPER_OK);
  CHECK(st.items_spilled > 0); /* the budget really was exceeded */
  CHECK(st.memory_capacity_bytes == 4096 && st.disk_capacity_bytes == 16 * 1024 * 1024);

  const void* item = NULL;
  size_t size = 0;
  uint64_t half = 0;
  for (int i = 0; i < N; ++i) {
    CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
    int n = snprintf(buf, sizeof buf, "item %06d", i);
    CHECK(size == (size_t)n && memcmp(item, buf, size) == 0);
    if (i == N / 2 - 1) half = hopper_position(rx);
  }
  CHECK_CODE(hopper_commit_position(rx, half), HOPPER_OK);
  CHECK_CODE(hopper_commit_position(rx, hopper_position(rx) + 1), HOPPER_INVALID_ARGUMENT);
  CHECK(strstr(hopper_last_error(), "invalid_argument") != NULL);
  hopper_sender_close(tx);
  hopper_receiver_close(rx);

  /* Everything from the commit position on comes back, in order. */
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_OK);
  for (int i = N / 2; i < N; ++i) {
    CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_OK);
    int n = snprintf(buf, sizeof buf, "item %06d", i);
    CHECK(size == (size_t)n && memcmp(item, buf, size) == 0);
  }
  CHECK_CODE(hopper_commit(rx), HOPPER_OK);
  CHECK_CODE(hopper_try_recv(rx, &item, &size), HOPPER_EMPTY);
  hopper_sender_close(tx);
  hopper_receiver_close(rx);

  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_OK);
  hopper_sender_close(tx);
  CHECK_CODE(hopper_recv(rx, &item, &size), HOPPER_CLOSED); /* all committed: nothing back */
  hopper_receiver_close(rx);
  hopper_options_free(o);
}

/* Bad input gets a code and a message that names what and why; nothing crashes. */
static void errors(void) {
  char dir[4200];
  make_dir(dir, sizeof dir, "errors");
  hopper_sender* tx = (hopper_sender*)1;
  hopper_receiver* rx = (hopper_receiver*)1;

  CHECK_CODE(hopper_open(NULL, &tx, &rx), HOPPER_INVALID_ARGUMENT);
  CHECK(tx == NULL && rx == NULL);
  CHECK_CODE(hopper_open(NULL, NULL, NULL), HOPPER_INVALID_ARGUMENT);

  hopper_options* o = hopper_options_new("");
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_INVALID_ARGUMENT); /* no directory */
  CHECK(strstr(hopper_last_error(), "directory") != NULL);
  hopper_options_free(o);

  o = hopper_options_new(dir);
  hopper_options_set_segment_bytes(o, 1); /* smaller than a page */
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_INVALID_ARGUMENT);
  CHECK(strstr(hopper_last_error(), "segment_bytes") != NULL);
  hopper_options_free(o);

  /* A directory that is a file: io_error naming the path. */
  char file[4300];
  snprintf(file, sizeof file, "%s/a-file", base);
  int fd = open(file, O_CREAT | O_WRONLY, 0644);
  CHECK(fd >= 0);
  close(fd);
  o = hopper_options_new(file);
  hopper_code c = hopper_open(o, &tx, &rx);
  CHECK(c == HOPPER_IO_ERROR || c == HOPPER_INVALID_ARGUMENT);
  CHECK(strstr(hopper_last_error(), "a-file") != NULL);
  hopper_options_free(o);

  /* The directory is held by one handle: a second open is locked. */
  o = hopper_options_new(dir);
  hopper_options_set_max_memory_bytes(o, 64);
  hopper_options_set_max_disk_bytes(o, 0);
  hopper_options_set_when_full(o, HOPPER_FULL_FAIL);
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_OK);
  hopper_sender* tx2 = NULL;
  hopper_receiver* rx2 = NULL;
  CHECK_CODE(hopper_open(o, &tx2, &rx2), HOPPER_LOCKED);
  CHECK(tx2 == NULL && rx2 == NULL);

  /* Memory only, 64 bytes, fail when full. */
  char big[200];
  memset(big, 'x', sizeof big);
  CHECK_CODE(hopper_send(tx, big, sizeof big), HOPPER_TOO_LARGE);
  CHECK_CODE(hopper_send(tx, big, 8), HOPPER_OK);
  hopper_code full = HOPPER_OK;
  for (int i = 0; i < 100 && full == HOPPER_OK; ++i) full = hopper_send(tx, big, 8);
  CHECK(full == HOPPER_FULL);
  CHECK(strncmp(hopper_last_error(), "full", 4) == 0);
  CHECK_CODE(hopper_send_for(tx, big, 8, 5), HOPPER_TIMEOUT); /* send_for waits, whatever the policy */

  /* NULL handles and pointers. */
  const void* item = NULL;
  size_t size = 0;
  CHECK_CODE(hopper_send(NULL, "x", 1), HOPPER_INVALID_ARGUMENT);
  CHECK_CODE(hopper_send(tx, NULL, 1), HOPPER_INVALID_ARGUMENT);
  CHECK_CODE(hopper_recv(NULL, &item, &size), HOPPER_INVALID_ARGUMENT);
  CHECK_CODE(hopper_recv(rx, NULL, &size), HOPPER_INVALID_ARGUMENT);
  CHECK_CODE(hopper_commit(NULL), HOPPER_INVALID_ARGUMENT);
  CHECK_CODE(hopper_receiver_stats(rx, NULL, 0), HOPPER_INVALID_ARGUMENT);
  CHECK(hopper_sender_clone(NULL) == NULL);
  CHECK(hopper_position(NULL) == 0);
  hopper_sender_close(NULL);
  hopper_receiver_close(NULL);

  /* A receiver gone: senders are told closed. */
  hopper_receiver_close(rx);
  CHECK_CODE(hopper_try_send(tx, "x", 1), HOPPER_CLOSED);
  hopper_sender_close(tx);
  hopper_options_free(o);

  CHECK(strcmp(hopper_code_name(HOPPER_NO_MEMORY), "no_memory") == 0);
  CHECK(strcmp(hopper_code_name((hopper_code)77), "unknown") == 0);
}

/* A short stats struct (an older caller's) gets only the fields it knows. */
static void stats_prefix(void) {
  char dir[4200];
  make_dir(dir, sizeof dir, "stats");
  hopper_options* o = hopper_options_new(dir);
  /* A sync interval past the signed range means "very long", not an invalid option. */
  hopper_options_set_sync(o, HOPPER_SYNC_INTERVAL);
  hopper_options_set_sync_interval_ms(o, UINT64_MAX);
  hopper_sender* tx = NULL;
  hopper_receiver* rx = NULL;
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_OK);
  CHECK_CODE(hopper_send(tx, "a", 1), HOPPER_OK);
  uint64_t words[3] = {7, 7, 7};
  CHECK_CODE(hopper_receiver_stats(rx, (hopper_stats*)(void*)words, 2 * sizeof(uint64_t)), HOPPER_OK);
  CHECK(words[0] == 1 && words[2] == 7); /* memory_items written, nothing past the size */
  hopper_sender_close(tx);
  hopper_receiver_close(rx);
  hopper_options_free(o);
}

/* hopper_options_set_max_age_ms: items that waited past it are passed over and counted. */
static void max_age(void) {
  char dir[4200];
  make_dir(dir, sizeof dir, "age");
  hopper_options* o = hopper_options_new(dir);
  CHECK(o != NULL);
  hopper_options_set_max_age_ms(o, 100);
  hopper_sender* tx = NULL;
  hopper_receiver* rx = NULL;
  CHECK_CODE(hopper_open(o, &tx, &rx), HOPPER_OK);
  hopper_options_free(o);
  CHECK_CODE(hopper_send(tx, "old", 3), HOPPER_OK);
  struct timespec pause = {0, 400 * 1000 * 1000};
  nanosleep(&pause, NULL);
  hopper_stats st;
  CHECK_CODE(hopper_receiver_stats(rx, &st, sizeof st), HOPPER_OK);
  CHECK(st.oldest_item_age_ms >= 300);
  CHECK_CODE(hopper_send(tx, "new", 3), HOPPER_OK);
  const void* item = NULL;
  size_t size = 0;
  CHECK_CODE(hopper_try_recv(rx, &item, &size), HOPPER_OK);
  CHECK(same(item, size, "new"));
  CHECK_CODE(hopper_try_recv(rx, &item, &size), HOPPER_EMPTY);
  CHECK_CODE(hopper_receiver_stats(rx, &st, sizeof st), HOPPER_OK);
  CHECK(st.items_expired == 1 && st.bytes_expired > 0 && st.items_received == 1);
  hopper_sender_close(tx);
  hopper_receiver_close(rx);
}

int main(void) {
  const char* tmp = getenv("TMPDIR");
  snprintf(base, sizeof base, "%s/hopper-c-api-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(base) == NULL) {
    fprintf(stderr, "mkdtemp %s: %s\n", base, strerror(errno));
    return 1;
  }
  round_trip();
  spill_commit_reopen();
  max_age();
  errors();
  stats_prefix();
  printf("c_api_test: %d checks passed\n", checks);
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  return system(cmd) == 0 ? 0 : 1;
}
