/* session.c: HTTP/2 on one connection (nghttp2), and the rpc that holds
 * every session: method look-up, draining, deadlines. */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "lib/log.h"
#include "server/rpc/internal.h"

static void resume_paused(pkid_session *s);
static void notify_sent(pkid_session *s);

/* The most plaintext one TLS record carries (RFC 8446 section 5.1). */
#define PKID_SESSION_RECORD 16384

static pkid_call *call_of(nghttp2_session *h2, int32_t stream_id) {
  return nghttp2_session_get_stream_user_data(h2, stream_id);
}

/* --- writing ---------------------------------------------------------------------- */

/* session_flush moves HTTP/2 output into the connection, and closes it
 * once both sides are done (GOAWAY sent, or the peer's GOAWAY received
 * and our streams finished). */
static void session_flush(pkid_session *s) {
  if (s->broken) {
    pkid_conn_close(s->conn);
    return;
  }
  /* Output is produced only while the connection has room: a peer that
   * does not read leaves the rest in nghttp2 and in the calls, bounded by
   * what they may hold (transport.h, max_write_queue).
   * nghttp2 hands out one frame at a time, and a unary answer is three
   * small ones (HEADERS, DATA, trailers): they are gathered into |out| so
   * that each TLS record carries up to a full record's plaintext (RFC 8446
   * section 5.1: 2^14 bytes) instead of one frame, which costs both sides
   * a seal or open, a header and a tag per frame. */
  uint8_t out[PKID_SESSION_RECORD];
  size_t used = 0;
  while (pkid_conn_writable(s->conn)) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(s->h2, &data);
    if (n < 0) {
      pkid_conn_close(s->conn);
      return;
    }
    if (n == 0) break;
    if (used + (size_t)n > sizeof(out)) {
      if (!pkid_conn_write(s->conn, out, used)) return; /* closing */
      used = 0;
    }
    if ((size_t)n > sizeof(out)) {
      if (!pkid_conn_write(s->conn, data, (size_t)n)) return;
      continue;
    }
    memcpy(out + used, data, (size_t)n); /* |data| lives until the next call */
    used += (size_t)n;
  }
  if (used > 0 && !pkid_conn_write(s->conn, out, used)) return;
  if (!nghttp2_session_want_read(s->h2) && !nghttp2_session_want_write(s->h2)) {
    pkid_conn_close(s->conn);
    return;
  }
  /* Outside nghttp2's callbacks, so the handlers may answer at once: what
   * they produce goes out at the next flush. */
  resume_paused(s);
  notify_sent(s);
}

void pkid_session_kick(pkid_session *s) { pkid_conn_kick(s->conn); }

void pkid_session_consume(pkid_session *s, pkid_call *call, size_t n) {
  if (n == 0) return;
  /* Fails only for a stream nghttp2 has closed already: nothing to give. */
  (void)nghttp2_session_consume(s->h2, call->stream_id, n);
  pkid_session_kick(s); /* the WINDOW_UPDATE */
}

/* resume_paused carries on with the calls paused while their answers
 * waited, once half of what was waiting has been read. */
static void resume_paused(pkid_session *s) {
  const pkid_rpc_limits *l = &s->rpc->limits;
  if (s->num_paused == 0 || s->output > l->max_conn_output / 2 ||
      s->rpc->total_output > l->max_total_output / 2) {
    return;
  }
  for (pkid_call *call = s->calls; call != NULL && s->num_paused > 0;) {
    pkid_call *next = call->next;
    pkid_call_resume(call);
    call = next;
  }
}

/* notify_sent tells the server-streaming calls whose answers HTTP/2 has
 * all taken that they may send more (rpc.h, on_sent). */
static void notify_sent(pkid_session *s) {
  for (pkid_call *call = s->calls; call != NULL && s->num_want_sent > 0;) {
    pkid_call *next = call->next;
    pkid_call_sent(call);
    call = next;
  }
}

/* reset_stream ends a stream we cannot answer properly; if even that
 * fails, the connection goes, at the next flush: never from inside a
 * call's code, which would find itself freed. */
static void reset_stream(pkid_session *s, pkid_call *call, int rv) {
  pki_log("warn", "stream_reset", "peer", s->peer->address, "reason", nghttp2_strerror(rv),
          NULL);
  if (nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, call->stream_id,
                                NGHTTP2_INTERNAL_ERROR) != 0) {
    s->broken = 1;
  }
  pkid_session_kick(s);
}

void pkid_session_reset(pkid_session *s, pkid_call *call, uint32_t code) {
  if (nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, call->stream_id, code) != 0) {
    s->broken = 1;
  }
  pkid_session_kick(s);
}

static ssize_t read_body(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data) {
  (void)h2;
  (void)stream_id;
  (void)user_data;
  pkid_call *call = source->ptr;
  int eof = 0;
  size_t n = pkid_call_read_out(call, buf, length, &eof);
  if (eof) {
    /* gRPC ends with trailers, so the DATA frames do not end the stream;
     * pkid_call_read_out has submitted the trailers. */
    *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return (ssize_t)n;
  }
  if (n == 0) return NGHTTP2_ERR_DEFERRED;
  return (ssize_t)n;
}

void pkid_session_respond(pkid_session *s, pkid_call *call, const nghttp2_nv *nva,
                          size_t nvlen, int with_body) {
  nghttp2_data_provider body;
  body.source.ptr = call;
  body.read_callback = read_body;
  int rv = nghttp2_submit_response(s->h2, call->stream_id, nva, nvlen, with_body ? &body : NULL);
  if (rv != 0) {
    reset_stream(s, call, rv);
    return;
  }
  pkid_session_kick(s);
}

void pkid_session_trailers(pkid_session *s, pkid_call *call, const nghttp2_nv *nva,
                           size_t nvlen) {
  int rv = nghttp2_submit_trailer(s->h2, call->stream_id, nva, nvlen);
  if (rv != 0) reset_stream(s, call, rv);
}

void pkid_session_resume(pkid_session *s, pkid_call *call) {
  /* Fails only for a stream with no deferred body: nothing to resume. */
  (void)nghttp2_session_resume_data(s->h2, call->stream_id);
  pkid_session_kick(s);
}

/* --- HTTP/2 callbacks ------------------------------------------------------------------ */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data) {
  pkid_session *s = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  pkid_call *call = pkid_call_new(s, frame->hd.stream_id);
  if (call == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, call);
  call->next = s->calls;
  if (s->calls != NULL) s->calls->prev = call;
  s->calls = call;
  s->num_calls++;
  pkid_conn_set_timeout(s->conn, 0); /* busy: not idle */
  return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user_data) {
  (void)flags;
  (void)user_data;
  pkid_call *call = call_of(h2, frame->hd.stream_id);
  if (call != NULL && frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    pkid_call_header(call, name, name_len, value, value_len);
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data) {
  (void)user_data;
  pkid_call *call = call_of(h2, frame->hd.stream_id);
  if (call == NULL) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    pkid_call_headers_done(call);
  }
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    pkid_call_end_of_request(call);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data) {
  (void)flags;
  (void)user_data;
  pkid_call *call = call_of(h2, stream_id);
  if (call != NULL) {
    pkid_call_data(call, data, len);
  } else {
    /* DATA for a stream that is no call (refused, or not a request):
     * read and given back to flow control. */
    (void)nghttp2_session_consume(h2, stream_id, len);
  }
  return 0;
}

/* unlink_call takes |call| off its session's list of open streams. */
static void unlink_call(pkid_session *s, pkid_call *call) {
  if (call->prev != NULL) call->prev->next = call->next;
  if (call->next != NULL) call->next->prev = call->prev;
  if (s->calls == call) s->calls = call->next;
  s->num_calls--;
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                           void *user_data) {
  (void)error_code;
  pkid_session *s = user_data;
  pkid_call *call = call_of(h2, stream_id);
  if (call == NULL) return 0;
  nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
  unlink_call(s, call);
  pkid_call_free(call);
  if (s->num_calls == 0) pkid_conn_set_timeout(s->conn, s->rpc->limits.idle_timeout_ms);
  return 0;
}

static nghttp2_session_callbacks *callbacks(void) {
  static nghttp2_session_callbacks *cbs;
  if (cbs == NULL) {
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  }
  return cbs;
}

/* h2_options: every limit pkid relies on, set explicitly rather than left
 * to the library's defaults (which depend on its version and patches). */
static nghttp2_option *h2_options(void) {
  static nghttp2_option *opt;
  if (opt == NULL) {
    nghttp2_option_new(&opt);
    /* Bound what a peer can make us buffer: its HPACK table, the PING and
     * SETTINGS acknowledgements we owe it (a PING flood against a peer
     * that does not read ends the session: ENHANCE_YOUR_CALM). */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    /* Rapid reset (CVE-2023-44487): a token bucket for incoming
     * RST_STREAM, past which the session ends with GOAWAY. pkid's calls
     * are short; a client that resets more than this is attacking. */
    nghttp2_option_set_stream_reset_rate_limit(opt, 200, 50);
    /* CONTINUATION flood (CVE-2024-28182): a header block in at most this
     * many frames, besides the header list size limit. */
    nghttp2_option_set_max_continuations(opt, 8);
    /* Flow control follows what pkid has read, not what arrived
     * (pkid_session_consume): a client cannot make pkid buffer requests
     * beyond its windows. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
  }
  return opt;
}

int pkid_rpc_check_library(pki_err *err) {
  const nghttp2_info *info = nghttp2_version(0);
  if (info == NULL || info->version_num < 0x013400) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "nghttp2 %s is older than 1.52.0",
            info != NULL ? info->version_str : "?");
    return 0;
  }
  return 1;
}

/* --- the connection handler ----------------------------------------------------------- */

/* goaway starts a graceful close of |s|: GOAWAY now, close when its calls
 * are done. The last stream id tells the client which calls we finish. */
static void goaway(pkid_session *s) {
  if (s->goaway) return;
  s->goaway = 1;
  if (nghttp2_submit_goaway(s->h2, NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(s->h2), NGHTTP2_NO_ERROR,
                            NULL, 0) != 0 ||
      s->num_calls == 0) {
    /* Nothing to finish: say goodbye and close (the flush may free |s|). */
    pkid_conn *conn = s->conn;
    session_flush(s);
    pkid_conn_close(conn);
    return;
  }
  pkid_session_kick(s);
}

/* on_age: the connection has lived max_connection_age; after its GOAWAY
 * and a grace period, it is closed whatever is still open on it. */
static void on_age(pkid_deadline *d) {
  pkid_session *s = (pkid_session *)((char *)d - offsetof(pkid_session, age));
  if (s->goaway) {
    pkid_conn_close(s->conn);
    return;
  }
  pkid_conn *conn = s->conn;
  if (!pkid_rpc_set_deadline(s->rpc, &s->age, PKID_RPC_GRACE_MS)) {
    pkid_conn_close(conn);
    return;
  }
  goaway(s); /* may close (and free |s|) at once */
}

/* age_ms spreads max_connection_age by up to a tenth, so that clients
 * that connected together do not all reconnect together. */
static uint64_t age_ms(uint64_t max) {
  uint32_t r = 0;
  RAND_bytes((uint8_t *)&r, sizeof(r));
  return max - max / 10 + (max / 5) * (r % 1000) / 1000;
}

static void *on_open(void *ctx, pkid_conn *conn, const pkid_peer *peer) {
  pkid_rpc *rpc = ctx;
  if (rpc->draining) return NULL;
  pkid_session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->rpc = rpc;
  s->conn = conn;
  s->peer = peer;
  if (nghttp2_session_server_new2(&s->h2, callbacks(), s, h2_options()) != 0) {
    free(s);
    return NULL;
  }
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, rpc->limits.max_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, rpc->limits.max_header_bytes},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, PKID_RPC_STREAM_WINDOW},
  };
  /* A larger connection window lets many streams run without waiting. */
  if (nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, settings,
                              sizeof(settings) / sizeof(settings[0])) != 0 ||
      nghttp2_session_set_local_window_size(s->h2, NGHTTP2_FLAG_NONE, 0,
                                            PKID_RPC_CONN_WINDOW) != 0) {
    nghttp2_session_del(s->h2);
    free(s);
    return NULL;
  }
  s->age.fire = on_age;
  if (!pkid_rpc_set_deadline(rpc, &s->age, age_ms(rpc->limits.max_connection_age_ms))) {
    nghttp2_session_del(s->h2);
    free(s);
    return NULL;
  }
  s->next = rpc->sessions;
  if (rpc->sessions != NULL) rpc->sessions->prev = s;
  rpc->sessions = s;
  rpc->num_sessions++;
  pkid_conn_set_timeout(conn, rpc->limits.idle_timeout_ms);
  return s;
}

static int on_data(void *session, const uint8_t *data, size_t len) {
  pkid_session *s = session;
  ssize_t n = nghttp2_session_mem_recv(s->h2, data, len);
  /* A protocol error: nghttp2 has queued GOAWAY; the transport sends it
   * (on_flush) and closes. */
  return n >= 0 && (size_t)n == len;
}

static void on_flush(void *session) { session_flush(session); }

/* on_idle: no call for the idle timeout. */
static void on_idle(void *session) { goaway(session); }

static void on_close(void *session) {
  pkid_session *s = session;
  pkid_rpc *rpc = s->rpc;
  /* Calls still open: their pending work is detached, not cancelled. */
  while (s->calls != NULL) {
    pkid_call *call = s->calls;
    unlink_call(s, call);
    pkid_call_free(call);
  }
  nghttp2_session_del(s->h2);
  pkid_rpc_clear_deadline(rpc, &s->age);
  if (s->prev != NULL) s->prev->next = s->next;
  if (s->next != NULL) s->next->prev = s->prev;
  if (rpc->sessions == s) rpc->sessions = s->next;
  rpc->num_sessions--;
  free(s);
}

const pkid_conn_handler *pkid_rpc_conn_handler(void) {
  static const pkid_conn_handler kHandler = {on_open, on_data, on_flush, on_idle, on_close};
  return &kHandler;
}

/* --- the rpc -------------------------------------------------------------------------- */

static void arm_deadline_timer(pkid_rpc *rpc);

static void on_deadline(uv_timer_t *timer) {
  pkid_rpc *rpc = timer->data;
  uint64_t now = uv_now(rpc->loop);
  pkid_deadline *d;
  while ((d = pkid_deadlines_first(&rpc->deadlines)) != NULL && d->at_ms <= now) {
    pkid_deadlines_remove(&rpc->deadlines, d);
    d->fire(d); /* may free what |d| is in, or set it again */
  }
  arm_deadline_timer(rpc);
}

static void arm_deadline_timer(pkid_rpc *rpc) {
  pkid_deadline *d = pkid_deadlines_first(&rpc->deadlines);
  if (d == NULL) {
    uv_timer_stop(&rpc->deadline_timer);
    return;
  }
  uint64_t now = uv_now(rpc->loop);
  uv_timer_start(&rpc->deadline_timer, on_deadline, d->at_ms > now ? d->at_ms - now : 0, 0);
}

int pkid_rpc_set_deadline(pkid_rpc *rpc, pkid_deadline *d, uint64_t ms) {
  pkid_deadline *first = pkid_deadlines_first(&rpc->deadlines);
  uint64_t at = uv_now(rpc->loop) + ms;
  if (!pkid_deadlines_add(&rpc->deadlines, d, at)) return 0;
  if (first == NULL || first == d || at < first->at_ms) arm_deadline_timer(rpc);
  return 1;
}

void pkid_rpc_clear_deadline(pkid_rpc *rpc, pkid_deadline *d) {
  /* The timer may fire for nothing later; that costs one wake-up. */
  pkid_deadlines_remove(&rpc->deadlines, d);
}

const pkid_method *pkid_rpc_find_method(const pkid_rpc *rpc, const char *path) {
  for (size_t i = 0; i < rpc->num_methods; i++) {
    if (strcmp(rpc->methods[i].path, path) == 0) return &rpc->methods[i];
  }
  return NULL;
}

pkid_rpc *pkid_rpc_new(uv_loop_t *loop, const pkid_method *methods, size_t num_methods,
                       void *ctx, const pkid_rpc_limits *limits, pki_err *err) {
  pkid_rpc *rpc = calloc(1, sizeof(*rpc));
  if (rpc == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  rpc->loop = loop;
  rpc->methods = methods;
  rpc->num_methods = num_methods;
  rpc->ctx = ctx;
  rpc->limits = *limits;
  uv_timer_init(loop, &rpc->deadline_timer);
  rpc->deadline_timer.data = rpc;
  return rpc;
}

void pkid_rpc_drain(pkid_rpc *rpc) {
  rpc->draining = 1;
  for (pkid_session *s = rpc->sessions; s != NULL;) {
    pkid_session *next = s->next; /* goaway may close |s| */
    goaway(s);
    s = next;
  }
}

unsigned pkid_rpc_num_sessions(const pkid_rpc *rpc) { return rpc->num_sessions; }

static void on_rpc_closed(uv_handle_t *handle) {
  pkid_rpc *rpc = handle->data;
  pkid_deadlines_cleanup(&rpc->deadlines);
  free(rpc);
}

void pkid_rpc_free(pkid_rpc *rpc) {
  if (rpc == NULL) return;
  uv_close((uv_handle_t *)&rpc->deadline_timer, on_rpc_closed);
}

void pkid_rpc_on_refused(pkid_rpc *rpc, pkid_refused_fn fn, void *ctx) {
  rpc->on_refused = fn;
  rpc->on_refused_ctx = ctx;
}
