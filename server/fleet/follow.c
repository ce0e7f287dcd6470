/* follow.c: the other nodes' changes, followed in the fleet's PostgreSQL
 * (see follow.h). */
#include "server/fleet/follow.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/file.h"
#include "lib/log.h"
#include "server/fleet/pg.h"

#define FETCH_ROWS 500
#define POLL_MS 1000 /* the catch-up poll, between notifications */
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 5000
#define CURSOR_FILE "fleet-follow"

struct pkid_follow {
  pkid_follow_options o;
  char conninfo[4096];
  char journal_dir[4096];
  char node_text[8];
  pthread_t thread;
  int thread_started;
  int wake[2]; /* a pipe: stop wakes the thread out of poll() */
  /* Under mu: the queue (a ring) and stop. */
  pthread_mutex_t mu;
  pthread_cond_t room;
  pkid_fleet_change *queue;
  size_t head, num;
  int stop;
  /* pkid_follow_retry's: read again from just after |rewind_to|, and
   * never save the cursor beyond |cap| in this run. */
  int rewind;
  uint64_t rewind_to, cap;
  /* The thread's. */
  PGconn *conn;
  uint64_t cursor; /* the last fleet_seq read */
  uint64_t last_error_ms;
  uint64_t saved; /* the cursor in JOURNAL/fleet-follow */
  _Atomic int read_all; /* a fetch found nothing more, once */
  /* The fleet_seq of the last change the loop took (under mu), and of the
   * last one known journaled (pkid_follow_applied), which the thread
   * saves. */
  uint64_t taken;
  _Atomic uint64_t applied;
};

/* cursor_path is JOURNAL/fleet-follow. */
static void cursor_path(const pkid_follow *f, char *out, size_t size) {
  snprintf(out, size, "%s/%s", f->o.journal_dir, CURSOR_FILE);
}

/* load_cursor starts from what the journal holds already: the saved
 * cursor, or 0 (no file, or one that does not read as a number). */
static void load_cursor(pkid_follow *f) {
  char path[4096];
  cursor_path(f, path, sizeof(path));
  uint8_t *data = NULL;
  size_t len = 0;
  pki_err err;
  if (!pki_file_read(&data, &len, path, 64, &err)) return;
  char *end = NULL;
  uint64_t v = strtoull((const char *)data, &end, 10);
  if (end != (char *)data && (*end == '\n' || *end == '\0')) f->cursor = f->saved = v;
  free(data);
}

/* save_cursor writes what the loop says is journaled, when it moved. A
 * lost write only means more to pass over at the next start. */
static void save_cursor(pkid_follow *f) {
  uint64_t v = atomic_load(&f->applied);
  if (v == f->saved || f->o.journal_dir == NULL) return;
  char path[4096], text[32];
  cursor_path(f, path, sizeof(path));
  int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", v);
  pki_err err;
  if (pki_file_write_atomic(path, text, (size_t)n, 0600, &err)) {
    f->saved = v;
  } else {
    pki_log("warn", "fleet_follow_cursor_unsaved", "error", err.msg, NULL);
  }
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int stopping(pkid_follow *f) {
  pthread_mutex_lock(&f->mu);
  int stop = f->stop;
  pthread_mutex_unlock(&f->mu);
  return stop;
}

/* wait_socket sleeps up to |ms| for the database's socket (-1: none) to be
 * readable or for a wake-up (stop, a retry); then takes in what the socket
 * holds, dropping the notifications themselves (any of them only means:
 * read again). 0: the connection broke. */
static int wait_socket(pkid_follow *f, int ms) {
  struct pollfd p[2] = {{.fd = f->wake[0], .events = POLLIN},
                        {.fd = f->conn != NULL ? PQsocket(f->conn) : -1, .events = POLLIN}};
  int n = poll(p, 2, ms);
  if (n > 0 && (p[0].revents & POLLIN)) {
    /* Emptied, or the next wait would not wait; what woke us is in |f|. */
    char buf[64];
    while (read(f->wake[0], buf, sizeof(buf)) > 0) {
    }
  }
  if (n <= 0 || f->conn == NULL || !(p[1].revents & (POLLIN | POLLERR | POLLHUP))) return 1;
  if (!PQconsumeInput(f->conn)) return 0;
  PGnotify *note;
  while ((note = PQnotifies(f->conn)) != NULL) PQfreemem(note);
  return 1;
}

static void set_bytes(PGresult *r, int row, int col, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  if (PQgetisnull(r, row, col)) return;
  *out = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), len);
}

/* fetch reads up to |limit| changes after the cursor into the queue and
 * returns how many, or -1 with |err| set. */
static int fetch(pkid_follow *f, int limit, pki_err *err) {
  /* Both tables in one order (fleet_seq), other nodes' rows only: a
   * certificate by its issuer, a revocation by the node that made it. */
  static const char kFetch[] =
      "SELECT fleet_seq, 2, serial, node_id, der, 0, 0, 0 FROM "
      "pkid_certificates"
      "  WHERE fleet_seq > $1 AND node_id <> $2"
      " UNION ALL "
      "SELECT fleet_seq, 3, serial, node_id, NULL, reason,"
      "  extract(epoch FROM revoked_at)::bigint,"
      "  coalesce(extract(epoch FROM invalidity_date)::bigint, 0) FROM "
      "pkid_revocations"
      "  WHERE fleet_seq > $1 AND node_id <> $2"
      " ORDER BY 1 LIMIT $3";
  char cursor[24], lim[16];
  snprintf(cursor, sizeof(cursor), "%" PRIu64, f->cursor);
  snprintf(lim, sizeof(lim), "%d", limit);
  const char *const v[] = {cursor, f->node_text, lim};
  PGresult *r = pkid_pg_exec(f->conn, kFetch, 3, v, NULL, NULL, err);
  if (r == NULL) return -1;
  int rows = PQntuples(r);
  for (int i = 0; i < rows; i++) {
    pkid_fleet_change c;
    memset(&c, 0, sizeof(c));
    c.fleet_seq = strtoull(PQgetvalue(r, i, 0), NULL, 10);
    c.type = atoi(PQgetvalue(r, i, 1)) == 2 ? PKI_REC_ISSUE : PKI_REC_REVOKE;
    uint8_t *serial;
    size_t serial_len;
    set_bytes(r, i, 2, &serial, &serial_len);
    if (serial != NULL && serial_len > 0 && serial_len <= PKI_SERIAL_MAX) {
      memcpy(c.serial.bytes, serial, serial_len);
      c.serial.len = serial_len;
    }
    PQfreemem(serial);
    c.node = (uint16_t)atoi(PQgetvalue(r, i, 3));
    uint8_t *der;
    set_bytes(r, i, 4, &der, &c.der_len);
    if (der != NULL) {
      /* Ours to free with free(), not PQfreemem. */
      c.der = malloc(c.der_len > 0 ? c.der_len : 1);
      if (c.der != NULL) memcpy(c.der, der, c.der_len);
      PQfreemem(der);
    }
    c.reason = (uint8_t)atoi(PQgetvalue(r, i, 5));
    c.revoked_at = strtoll(PQgetvalue(r, i, 6), NULL, 10);
    c.invalidity_date = strtoll(PQgetvalue(r, i, 7), NULL, 10);
    f->cursor = c.fleet_seq;
    if (c.serial.len == 0 || (c.type == PKI_REC_ISSUE && c.der == NULL)) {
      char seq[24];
      snprintf(seq, sizeof(seq), "%" PRIu64, c.fleet_seq);
      pki_log("warn", "fleet_change_skipped", "fleet_seq", seq, "reason",
              c.der == NULL && c.type == PKI_REC_ISSUE ? "no certificate" : "bad serial", NULL);
      free(c.der);
      continue;
    }
    pthread_mutex_lock(&f->mu);
    f->queue[(f->head + f->num) % PKID_FOLLOW_QUEUE] = c;
    f->num++;
    pthread_mutex_unlock(&f->mu);
  }
  PQclear(r);
  return rows;
}

static void fail(pkid_follow *f, const char *what, const pki_err *err, uint64_t *retry_ms) {
  uint64_t now = now_ms();
  if (now - f->last_error_ms >= 60000 || f->last_error_ms == 0) {
    pki_log("warn", "fleet_follow_unavailable", "during", what, "error", err->msg, NULL);
    f->last_error_ms = now;
  }
  PQfinish(f->conn);
  f->conn = NULL;
  *retry_ms = *retry_ms == 0 ? RETRY_MIN_MS : *retry_ms * 2;
  if (*retry_ms > RETRY_MAX_MS) *retry_ms = RETRY_MAX_MS;
}

/* rewind_if_behind starts the cursor again from 0 when the database is
 * behind it: a standby promoted after the primary failed may lack the last
 * rows read, and its sequence may hand out again numbers this node passed.
 * Reading everything again is safe: what the node knows, it passes over. */
static int rewind_if_behind(pkid_follow *f, pki_err *err) {
  PGresult *r = pkid_pg_exec(f->conn, "SELECT last_value FROM pkid_fleet_seq", 0, NULL, NULL,
                             NULL, err);
  if (r == NULL) return 0;
  uint64_t last = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  if (last < f->cursor) {
    char was[24], now[24];
    snprintf(was, sizeof(was), "%" PRIu64, f->cursor);
    snprintf(now, sizeof(now), "%" PRIu64, last);
    pki_log("warn", "fleet_follow_rewound", "cursor", was, "database", now, NULL);
    f->cursor = 0;
  }
  return 1;
}

/* take_rewind applies a pkid_follow_retry: what was read after the change
 * that failed is dropped and read again, after a pause (the failure, a
 * full disk say, may last). */
static void take_rewind(pkid_follow *f) {
  pthread_mutex_lock(&f->mu);
  int rewind = f->rewind;
  uint64_t to = f->rewind_to;
  f->rewind = 0;
  if (rewind) {
    for (size_t i = 0; i < f->num; i++) {
      pkid_follow_change_free(&f->queue[(f->head + i) % PKID_FOLLOW_QUEUE]);
    }
    f->num = 0;
    pthread_cond_signal(&f->room);
  }
  pthread_mutex_unlock(&f->mu);
  if (!rewind) return;
  if (to < f->cursor) f->cursor = to;
  char from[24];
  snprintf(from, sizeof(from), "%" PRIu64, f->cursor);
  pki_log("warn", "fleet_follow_retry", "from", from, NULL);
  wait_socket(f, POLL_MS);
}

static void *run(void *arg) {
  pthread_setname_np(pthread_self(), "pkid-follow"); /* top -H, perf */
  pkid_follow *f = arg;
  uint64_t retry_ms = 0;
  while (!stopping(f)) {
    take_rewind(f);
    pki_err err;
    pki_err_clear(&err);
    if (f->conn == NULL) {
      if (retry_ms > 0) wait_socket(f, (int)retry_ms);
      if (stopping(f)) break;
      f->conn = pkid_pg_connect(f->conninfo, "5", "10000", &err);
      if (f->conn == NULL || !pkid_pg_script(f->conn, "LISTEN pkid_fleet", &err)) {
        fail(f, "connect", &err, &retry_ms);
        continue;
      }
      if (!rewind_if_behind(f, &err)) {
        fail(f, "connect", &err, &retry_ms);
        continue;
      }
      retry_ms = 0;
      char from[24];
      snprintf(from, sizeof(from), "%" PRIu64, f->cursor);
      pki_log("info", "fleet_following", "from", from, NULL);
    }
    pthread_mutex_lock(&f->mu);
    while (f->num == PKID_FOLLOW_QUEUE && !f->stop) pthread_cond_wait(&f->room, &f->mu);
    size_t room = PKID_FOLLOW_QUEUE - f->num;
    pthread_mutex_unlock(&f->mu);
    int limit = room < FETCH_ROWS ? (int)room : FETCH_ROWS;
    if (limit == 0) continue; /* stopping */
    int n = fetch(f, limit, &err);
    if (n < 0) {
      fail(f, "fetch", &err, &retry_ms);
      continue;
    }
    if (n > 0 && f->o.on_changes != NULL) f->o.on_changes(f->o.ctx);
    if (n == limit) continue; /* more wait */
    atomic_store(&f->read_all, 1);
    save_cursor(f);
    if (!wait_socket(f, POLL_MS)) {
      PKI_ERR(&err, PKI_ERR_UNAVAILABLE, "PostgreSQL: %s", PQerrorMessage(f->conn));
      fail(f, "listen", &err, &retry_ms);
    }
  }
  return NULL;
}

pkid_follow *pkid_follow_start(const pkid_follow_options *o, pki_err *err) {
  pkid_follow *f = calloc(1, sizeof(*f));
  if (f == NULL || (f->queue = calloc(PKID_FOLLOW_QUEUE, sizeof(*f->queue))) == NULL) {
    free(f);
    PKI_ERR_OOM(err);
    return NULL;
  }
  f->o = *o;
  snprintf(f->conninfo, sizeof(f->conninfo), "%s", o->conninfo);
  f->o.conninfo = f->conninfo;
  snprintf(f->node_text, sizeof(f->node_text), "%u", o->node);
  if (o->journal_dir != NULL) {
    snprintf(f->journal_dir, sizeof(f->journal_dir), "%s", o->journal_dir);
    f->o.journal_dir = f->journal_dir;
    load_cursor(f);
    atomic_store(&f->applied, f->cursor);
    f->taken = f->cursor;
  }
  f->wake[0] = f->wake[1] = -1;
  f->cap = UINT64_MAX;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->room, NULL);
  if (pipe2(f->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "pipe: %s", strerror(errno));
    pkid_follow_stop(f);
    return NULL;
  }
  int rc = pthread_create(&f->thread, NULL, run, f);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "cannot start the fleet's follower: %s", strerror(rc));
    pkid_follow_stop(f);
    return NULL;
  }
  f->thread_started = 1;
  return f;
}

size_t pkid_follow_take(pkid_follow *f, pkid_fleet_change *out, size_t max) {
  pthread_mutex_lock(&f->mu);
  size_t n = f->num < max ? f->num : max;
  for (size_t i = 0; i < n; i++) {
    out[i] = f->queue[f->head];
    f->head = (f->head + 1) % PKID_FOLLOW_QUEUE;
  }
  f->num -= n;
  if (n > 0) {
    f->taken = out[n - 1].fleet_seq;
    pthread_cond_signal(&f->room);
  }
  pthread_mutex_unlock(&f->mu);
  return n;
}

void pkid_follow_applied(pkid_follow *f) {
  pthread_mutex_lock(&f->mu);
  uint64_t applied = f->taken < f->cap ? f->taken : f->cap;
  pthread_mutex_unlock(&f->mu);
  atomic_store(&f->applied, applied);
}

void pkid_follow_retry(pkid_follow *f, uint64_t seq) {
  pthread_mutex_lock(&f->mu);
  uint64_t before = seq - 1;
  if (before < f->cap) f->cap = before;
  if (!f->rewind || before < f->rewind_to) f->rewind_to = before;
  f->rewind = 1;
  pthread_mutex_unlock(&f->mu);
  /* The cursor file may say more already: take it back now. */
  uint64_t applied = atomic_load(&f->applied);
  if (applied > before) atomic_store(&f->applied, before);
  ssize_t w = write(f->wake[1], "x", 1);
  (void)w; /* a full pipe wakes poll() as well */
}

int pkid_follow_caught_up(pkid_follow *f) {
  if (!atomic_load(&f->read_all)) return 0;
  pthread_mutex_lock(&f->mu);
  int empty = f->num == 0;
  pthread_mutex_unlock(&f->mu);
  return empty;
}

void pkid_follow_change_free(pkid_fleet_change *c) {
  free(c->der);
  c->der = NULL;
}

void pkid_follow_stop(pkid_follow *f) {
  if (f == NULL) return;
  if (f->thread_started) {
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->room);
    pthread_mutex_unlock(&f->mu);
    ssize_t w = write(f->wake[1], "x", 1);
    (void)w; /* a full pipe wakes poll() as well */
    pthread_join(f->thread, NULL);
  }
  if (f->thread_started) save_cursor(f);
  PQfinish(f->conn);
  for (size_t i = 0; i < f->num; i++) {
    pkid_follow_change_free(&f->queue[(f->head + i) % PKID_FOLLOW_QUEUE]);
  }
  if (f->wake[0] >= 0) close(f->wake[0]);
  if (f->wake[1] >= 0) close(f->wake[1]);
  pthread_cond_destroy(&f->room);
  pthread_mutex_destroy(&f->mu);
  free(f->queue);
  free(f);
}
