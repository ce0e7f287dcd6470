/* audit_stream.c: pki.v1.Pki/StreamAudit (see audit_stream.h). */
#include "server/api/audit_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/mem.h>

#include "lib/log.h"
#include "proto/pki/v1/pki.pb-c.h"
#include "server/api/api.h"
#include "server/metrics/metrics.h"

/* Where a stream is between turns (loop thread). */
typedef enum stream_state {
  S_IDLE,         /* being decided: in pump */
  S_QUEUED,       /* waiting for a read slot (a->queue) */
  S_READING,      /* a turn on the pool: the pool thread owns the turn's fields */
  S_WAIT_SENT,    /* a chunk sent: waiting for the client to take it (on_sent) */
  S_WAIT_DURABLE, /* caught up, following: waiting for the next durable end */
} stream_state;

typedef struct audit_stream {
  pkid_audit *a;
  pkid_api *api;
  pkid_pending pending; /* the call; NULL once it has gone */
  pkid_audit_query q;
  stream_state state;
  int gone; /* the call went while a turn was on the pool: free it when back */
  int positioned; /* |pos| is set: the first turn has sought from_seq */
  struct audit_stream *next, *prev;       /* a->streams */
  struct audit_stream *next_queued;       /* a->queue */
  /* The turn's: the pool thread's while S_READING. */
  uv_work_t work;
  pki_journal_pos pos, end;
  uint8_t *buf; /* the packed events: u32 length (host order), message, ... */
  size_t buf_len, buf_cap, num_events;
  int full;    /* the chunk is full: not an error */
  int read_ok;
  pki_err err;
} audit_stream;

struct pkid_audit {
  uv_loop_t *loop;
  char dir[4096];
  pthread_mutex_t mu;
  pki_journal_pos end; /* under mu: the durable end */
  uv_async_t wake;     /* a new durable end */
  int draining;
  audit_stream *streams; /* every open stream */
  unsigned num_streams;
  audit_stream *queue, *queue_tail; /* waiting for a read slot, first first */
  unsigned num_reading;
};

static void pump(audit_stream *s);

/* --- the pure parts ------------------------------------------------------------ */

int pkid_audit_kind_known(const char *name) {
  /* Asked of pki_audit_kind_name itself, so that the two never disagree:
   * every record type, and every event kind (an unknown one is "event_N",
   * which a newer pkid's records are named by). */
  pki_parsed_record p;
  char buf[32];
  memset(&p, 0, sizeof(p));
  for (unsigned t = PKI_REC_SERIAL_BLOCK; t < PKI_REC_EVENT; t++) {
    p.type = (uint8_t)t;
    if (strcmp(pki_audit_kind_name(&p, buf, sizeof(buf)), name) == 0) return 1;
  }
  p.type = PKI_REC_EVENT;
  for (unsigned k = 0; k < 256; k++) {
    p.event_kind = (uint8_t)k;
    if (strcmp(pki_audit_kind_name(&p, buf, sizeof(buf)), name) == 0) return 1;
  }
  return 0;
}

/* copy_field copies a filter field into |out|, refusing one longer than
 * any record's can be. */
static int copy_field(char *out, size_t size, const char *in, const char *what, pki_err *err) {
  size_t n = strlen(in);
  if (n >= size) {
    PKI_ERR(err, PKI_ERR_INVALID, "the %s filter is longer than any %s (%zu octets)", what, what,
            size - 1);
    return 0;
  }
  memcpy(out, in, n + 1);
  return 1;
}

int pkid_audit_query_init(pkid_audit_query *q, uint64_t from_seq, int follow,
                          const char *service, const char *identity, const char *serial,
                          const char *kind, pki_err *err) {
  memset(q, 0, sizeof(*q));
  q->from_seq = from_seq == 0 ? 1 : from_seq;
  q->follow = follow;
  /* A service name is a u8-len string in every record, an identity u16-len,
   * but no identity of pkid's is longer than a URI a certificate holds. */
  if (!copy_field(q->service, sizeof(q->service), service, "service", err) ||
      !copy_field(q->identity, sizeof(q->identity), identity, "identity", err)) {
    return 0;
  }
  if (serial[0] != '\0') {
    pki_serial s;
    pki_err perr;
    if (!pki_serial_from_hex(&s, serial, &perr)) {
      PKI_ERR(err, PKI_ERR_INVALID, "the serial filter: %s", perr.msg);
      return 0;
    }
    pki_serial_to_hex(q->serial, &s);
  }
  if (kind[0] != '\0') {
    if (strlen(kind) >= sizeof(q->kind) || !pkid_audit_kind_known(kind)) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "the kind filter: no kind '%.32s' (issue, revoke, token_used, crl, serial_block, "
              "refused, reload, lb_rotation, ceremony, eab_created, eab_used, event_N)",
              kind);
      return 0;
    }
    memcpy(q->kind, kind, strlen(kind) + 1);
  }
  q->filter.service = q->service[0] != '\0' ? q->service : NULL;
  q->filter.identity = q->identity[0] != '\0' ? q->identity : NULL;
  q->filter.serial = q->serial[0] != '\0' ? q->serial : NULL;
  q->filter.kind = q->kind[0] != '\0' ? q->kind : NULL;
  return 1;
}

/* utf8_text copies |b| as a NUL-terminated UTF-8 string (protobuf's
 * string fields must be, or clients refuse the message): each octet that
 * does not start a well-formed sequence (RFC 3629 section 4), and NUL,
 * becomes U+FFFD. */
static char *utf8_text(pki_bytes b) {
  char *out = malloc(b.len * 3 + 1);
  if (out == NULL) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < b.len;) {
    const uint8_t *p = b.data + i;
    size_t left = b.len - i;
    size_t len = p[0] < 0x80                    ? 1
                 : p[0] >= 0xc2 && p[0] <= 0xdf ? 2
                 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
                 : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
                                                : 0;
    int ok = len != 0 && len <= left && p[0] != 0;
    for (size_t j = 1; ok && j < len; j++) ok = (p[j] & 0xc0) == 0x80;
    if (ok && len > 1) {
      ok = !((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
             (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90));
    }
    if (!ok) {
      memcpy(out + n, "\xef\xbf\xbd", 3);
      n += 3;
      i++;
      continue;
    }
    memcpy(out + n, p, len);
    n += len;
    i += len;
  }
  out[n] = '\0';
  return out;
}

int pkid_audit_event_pack(const pki_journal_record *r, const pki_parsed_record *p, uint8_t **out,
                          size_t *out_len, pki_err *err) {
  char kind[32], serial[2 * PKI_SERIAL_MAX + 1] = "";
  char *json = NULL, *identity = utf8_text(p->identity), *service = utf8_text(p->service);
  size_t json_len;
  int ok = 0;
  *out = NULL;
  if (identity == NULL || service == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  if (!pki_audit_json(r, p, &json, &json_len, err)) goto out;
  if (p->serial.len > 0) pki_serial_to_hex(serial, &p->serial);
  Pki__V1__AuditEvent ev = PKI__V1__AUDIT_EVENT__INIT;
  ev.seq = r->seq;
  ev.time_ms = (int64_t)r->time;
  ev.kind = (char *)pki_audit_kind_name(p, kind, sizeof(kind));
  ev.outcome = (char *)pki_audit_outcome(p);
  ev.identity = identity;
  ev.service = service;
  ev.serial = serial;
  ev.json = json;
  *out_len = pki__v1__audit_event__get_packed_size(&ev);
  if ((*out = malloc(*out_len > 0 ? *out_len : 1)) == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  pki__v1__audit_event__pack(&ev, *out);
  ok = 1;
out:
  OPENSSL_free(json);
  free(identity);
  free(service);
  return ok;
}

/* read_seg_header reads the header of segment |n| of |dir|. */
static int read_seg_header(const char *dir, uint64_t n, pki_journal_seg_header *h,
                           pki_err *err) {
  char path[4200];
  uint8_t buf[PKI_JOURNAL_SEG_HEADER_LEN];
  /* The file name is journal.h's: 16 lower-case hex digits, ".seg". */
  snprintf(path, sizeof(path), "%s/%016llx.seg", dir, (unsigned long long)n);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    PKI_ERR(err, PKI_ERR_IO, "%s: %s", path, strerror(errno));
    return 0;
  }
  ssize_t got = pread(fd, buf, sizeof(buf), 0);
  int e = errno;
  close(fd);
  if (got < 0) {
    PKI_ERR(err, PKI_ERR_IO, "%s: %s", path, strerror(e));
    return 0;
  }
  if (!pki_journal_parse_seg_header(buf, (size_t)got, h, err)) {
    pki_err_prefix(err, "%s: ", path);
    return 0;
  }
  if (h->segment != n) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: its header names segment %llu", path,
            (unsigned long long)h->segment);
    return 0;
  }
  return 1;
}

int pkid_audit_seek(const char *dir, uint64_t from_seq, const pki_journal_pos *end,
                    pki_journal_pos *pos, pki_err *err) {
  pki_journal_pos_start(pos);
  /* Newest first: a reader that follows asks for recent records. */
  for (uint64_t n = end->segment; n > 1; n--) {
    pki_journal_seg_header h;
    if (!read_seg_header(dir, n, &h, err)) return 0;
    if (h.first_seq <= from_seq) {
      pos->segment = n;
      pos->offset = 0;
      pos->next_seq = h.first_seq;
      memcpy(pos->chain, h.prev_chain, PKI_JOURNAL_HASH_LEN);
      return 1;
    }
  }
  return 1; /* segment 1, from its first record */
}

/* --- a turn, on the pool ----------------------------------------------------------- */

/* collect keeps the events of a turn: the records from from_seq that pass
 * the filter, packed, until the chunk is full. */
static int collect(void *ctx, const pki_journal_record *r, pki_err *err) {
  audit_stream *s = ctx;
  if (r->seq < s->q.from_seq) return 1;
  pki_parsed_record p;
  if (!pki_record_parse(r, &p, err)) {
    pki_err_prefix(err, "journal record %llu: ", (unsigned long long)r->seq);
    err->code = PKI_ERR_INTERNAL; /* the client's request is not at fault */
    return 0;
  }
  if (!pki_audit_match(&s->q.filter, r, &p)) return 1;
  if (s->num_events >= PKID_AUDIT_CHUNK_EVENTS) goto full;
  uint8_t *msg;
  size_t len;
  if (!pkid_audit_event_pack(r, &p, &msg, &len, err)) return 0;
  if (s->buf_len > 0 && s->buf_len + 4 + len > PKID_AUDIT_CHUNK_BYTES) {
    free(msg);
    goto full;
  }
  if (s->buf_len + 4 + len > s->buf_cap) {
    size_t cap = s->buf_cap == 0 ? 16384 : s->buf_cap;
    while (cap < s->buf_len + 4 + len) cap *= 2;
    uint8_t *buf = realloc(s->buf, cap);
    if (buf == NULL) {
      free(msg);
      PKI_ERR_OOM(err);
      return 0;
    }
    s->buf = buf;
    s->buf_cap = cap;
  }
  uint32_t n32 = (uint32_t)len;
  memcpy(s->buf + s->buf_len, &n32, 4);
  memcpy(s->buf + s->buf_len + 4, msg, len);
  s->buf_len += 4 + len;
  s->num_events++;
  free(msg);
  return 1;
full:
  /* Refused, so the position stays before this record: the next turn
   * starts with it. */
  s->full = 1;
  PKI_ERR(err, PKI_ERR_PRECONDITION, "the chunk is full");
  return 0;
}

static void read_work(uv_work_t *work) {
  audit_stream *s = work->data;
  size_t n;
  pki_err_clear(&s->err);
  s->full = 0;
  s->num_events = 0;
  s->buf_len = 0;
  s->read_ok = 1;
  if (!s->positioned) {
    if (!pkid_audit_seek(s->a->dir, s->q.from_seq, &s->end, &s->pos, &s->err)) {
      s->read_ok = 0;
      return;
    }
    s->positioned = 1;
  }
  if (!pki_journal_tail_read(s->a->dir, &s->pos, &s->end, PKID_AUDIT_SCAN_RECORDS, collect, s,
                             &n, &s->err) &&
      !s->full) {
    s->read_ok = 0;
  }
}

/* --- streams, on the loop ----------------------------------------------------------- */

static void stream_free(audit_stream *s) {
  pkid_audit *a = s->a;
  pkid_call_untrack(&s->pending);
  if (s->prev != NULL) s->prev->next = s->next;
  if (s->next != NULL) s->next->prev = s->prev;
  if (a->streams == s) a->streams = s->next;
  a->num_streams--;
  pkid_gauge_add(pkid_m.audit_streams_open, -1);
  free(s->buf);
  free(s);
}

/* next_seq is the first record the stream has not considered yet. */
static uint64_t next_seq(const audit_stream *s) {
  return s->positioned && s->pos.next_seq > s->q.from_seq ? s->pos.next_seq : s->q.from_seq;
}

/* end_stream ends the call with |err| (NULL: OK) and frees the stream. */
static void end_stream(audit_stream *s, const pki_err *err) {
  pkid_call *call = s->pending.call;
  if (call != NULL) {
    if (err == NULL) {
      pkid_call_ok(call);
    } else {
      pkid_call_fail(call, err);
    }
  }
  stream_free(s);
}

static void after_read(uv_work_t *work, int status);

/* run_queue starts the turns waiting for a slot, first first. */
static void run_queue(pkid_audit *a) {
  while (a->queue != NULL && a->num_reading < PKID_AUDIT_MAX_READS) {
    audit_stream *s = a->queue;
    a->queue = s->next_queued;
    if (a->queue == NULL) a->queue_tail = NULL;
    s->next_queued = NULL;
    pthread_mutex_lock(&a->mu);
    s->end = a->end;
    pthread_mutex_unlock(&a->mu);
    s->state = S_READING;
    s->work.data = s;
    if (uv_queue_work(a->loop, &s->work, read_work, after_read) != 0) {
      pki_err err;
      PKI_ERR(&err, PKI_ERR_INTERNAL, "cannot queue a read of the journal");
      end_stream(s, &err);
      continue;
    }
    a->num_reading++;
  }
}

static void unqueue(audit_stream *s) {
  pkid_audit *a = s->a;
  audit_stream *prev = NULL;
  for (audit_stream *q = a->queue; q != NULL; prev = q, q = q->next_queued) {
    if (q != s) continue;
    if (prev != NULL) {
      prev->next_queued = q->next_queued;
    } else {
      a->queue = q->next_queued;
    }
    if (a->queue_tail == s) a->queue_tail = prev;
    s->next_queued = NULL;
    return;
  }
}

static void after_read(uv_work_t *work, int status) {
  (void)status; /* turns are never cancelled */
  audit_stream *s = work->data;
  pkid_audit *a = s->a;
  a->num_reading--;
  if (s->gone) {
    stream_free(s);
  } else if (!s->read_ok) {
    /* Damage or a failing disk is pkid's to report, not the client's
     * fault, and the file names are for the operator: in the log. */
    pki_err err = s->err;
    pki_log("error", "audit_stream_failed", "reason", s->err.msg, NULL);
    if (err.code != PKI_ERR_EXHAUSTED) {
      PKI_ERR(&err, PKI_ERR_INTERNAL, "the journal could not be read (pkid's log says why)");
    }
    end_stream(s, &err);
  } else {
    pkid_call *call = s->pending.call;
    for (size_t off = 0; off < s->buf_len;) {
      uint32_t len;
      memcpy(&len, s->buf + off, 4);
      pkid_call_send(call, s->buf + off + 4, len);
      off += 4 + len;
    }
    pkid_counter_add(pkid_m.audit_events, s->num_events);
    /* An idle stream keeps no chunk. */
    free(s->buf);
    s->buf = NULL;
    s->buf_len = s->buf_cap = 0;
    s->state = S_IDLE;
    pump(s);
  }
  run_queue(a);
}

/* pump moves a stream on: ends it, or waits for the client, for the
 * journal or for a read slot. */
static void pump(audit_stream *s) {
  pkid_audit *a = s->a;
  pkid_call *call = s->pending.call;
  pki_err err;
  s->state = S_IDLE;
  if (pkid_call_finished(call)) { /* its deadline passed */
    stream_free(s);
    return;
  }
  if (pkid_call_unsent(call) > 0) { /* on_sent comes once the client has it */
    s->state = S_WAIT_SENT;
    return;
  }
  /* The caller's certificate may have been revoked, or a reload taken its
   * permission, since the stream began. */
  if (!pkid_api_authorize_audit(s->api, call, &err)) {
    end_stream(s, &err);
    return;
  }
  if (s->q.follow && a->draining) {
    PKI_ERR(&err, PKI_ERR_UNAVAILABLE, "pkid is shutting down; resume from seq %llu",
            (unsigned long long)next_seq(s));
    end_stream(s, &err);
    return;
  }
  pthread_mutex_lock(&a->mu);
  uint64_t durable_next = a->end.next_seq;
  pthread_mutex_unlock(&a->mu);
  if (next_seq(s) >= durable_next) { /* every durable record is sent */
    if (!s->q.follow) {
      end_stream(s, NULL);
      return;
    }
    s->state = S_WAIT_DURABLE;
    return;
  }
  s->state = S_QUEUED;
  if (a->queue_tail != NULL) {
    a->queue_tail->next_queued = s;
  } else {
    a->queue = s;
  }
  a->queue_tail = s;
  run_queue(a);
}

/* on_call_gone: the client cancelled, or the connection closed. */
static void on_call_gone(pkid_pending *p) {
  audit_stream *s = (audit_stream *)((char *)p - offsetof(audit_stream, pending));
  if (s->state == S_READING) {
    s->gone = 1; /* after_read frees it */
    return;
  }
  if (s->state == S_QUEUED) unqueue(s);
  stream_free(s);
}

/* on_wake: a new durable end; the streams that wait for one go on. */
static void on_wake(uv_async_t *async) {
  pkid_audit *a = async->data;
  for (audit_stream *s = a->streams; s != NULL;) {
    audit_stream *next = s->next; /* pump may free |s| */
    if (s->state == S_WAIT_DURABLE) pump(s);
    s = next;
  }
}

void pkid_audit_on_request(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  pkid_api *api = ctx;
  pkid_audit *a = api->audit;
  pki_err err;
  Pki__V1__StreamAuditRequest *req = (Pki__V1__StreamAuditRequest *)protobuf_c_message_unpack(
      &pki__v1__stream_audit_request__descriptor, NULL, len, msg);
  if (req == NULL) {
    PKI_ERR(&err, PKI_ERR_INVALID, "malformed StreamAuditRequest");
    pkid_call_fail(call, &err);
    return;
  }
  audit_stream *s = NULL;
  if (a == NULL || a->draining) {
    PKI_ERR(&err, PKI_ERR_UNAVAILABLE, "pkid is shutting down");
    goto fail;
  }
  if (a->num_streams >= PKID_AUDIT_MAX_STREAMS) {
    pkid_metrics_limited("audit_streams");
    PKI_ERR(&err, PKI_ERR_EXHAUSTED, "%u audit streams are open; retry later",
            a->num_streams);
    goto fail;
  }
  if ((s = calloc(1, sizeof(*s))) == NULL) {
    PKI_ERR_OOM(&err);
    goto fail;
  }
  if (!pkid_audit_query_init(&s->q, req->from_seq, req->follow, req->service, req->identity,
                             req->serial, req->kind, &err)) {
    goto fail;
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  s->a = a;
  s->api = api;
  s->pending.on_gone = on_call_gone;
  pkid_call_track(call, &s->pending);
  s->next = a->streams;
  if (a->streams != NULL) a->streams->prev = s;
  a->streams = s;
  a->num_streams++;
  pkid_counter_add(pkid_m.audit_streams, 1);
  pkid_gauge_add(pkid_m.audit_streams_open, 1);
  pump(s);
  return;
fail:
  free(s);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  pkid_call_fail(call, &err);
}

void pkid_audit_on_sent(void *ctx, pkid_call *call) {
  pkid_api *api = ctx;
  if (api->audit == NULL) return;
  for (audit_stream *s = api->audit->streams; s != NULL; s = s->next) {
    if (s->pending.call == call) {
      if (s->state == S_WAIT_SENT) pump(s);
      return;
    }
  }
}

/* --- the service ------------------------------------------------------------------- */

pkid_audit *pkid_audit_new(uv_loop_t *loop, const char *dir, const pki_journal_pos *end,
                           pki_err *err) {
  pkid_audit *a = calloc(1, sizeof(*a));
  if (a == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  if (strlen(dir) >= sizeof(a->dir)) {
    PKI_ERR(err, PKI_ERR_INVALID, "journal directory name too long");
    free(a);
    return NULL;
  }
  snprintf(a->dir, sizeof(a->dir), "%s", dir);
  a->loop = loop;
  a->end = *end;
  if (pthread_mutex_init(&a->mu, NULL) != 0) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "pthread_mutex_init failed");
    free(a);
    return NULL;
  }
  if (uv_async_init(loop, &a->wake, on_wake) != 0) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "uv_async_init failed");
    pthread_mutex_destroy(&a->mu);
    free(a);
    return NULL;
  }
  a->wake.data = a;
  return a;
}

void pkid_audit_durable(pkid_audit *a, const pki_journal_pos *end) {
  pthread_mutex_lock(&a->mu);
  a->end = *end;
  pthread_mutex_unlock(&a->mu);
  uv_async_send(&a->wake);
}

void pkid_audit_drain(pkid_audit *a) {
  if (a == NULL) return;
  a->draining = 1;
  on_wake(&a->wake); /* the streams that wait for the journal end now */
}

void pkid_audit_free(pkid_audit *a) {
  if (a == NULL) return;
  /* Every call has gone, and every turn is back: nothing is left but
   * what the loop's end left behind. */
  while (a->streams != NULL) stream_free(a->streams);
  pthread_mutex_destroy(&a->mu);
  free(a);
}
