/* call.c: one gRPC call on an HTTP/2 stream (rpc.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/metrics/metrics.h"
#include "server/rpc/frame.h"
#include "server/rpc/internal.h"

#define FRAME_HEADER PKID_GRPC_FRAME_HEADER

static void on_deadline(pkid_deadline *d);
static void drop_in(pkid_call *call);

/* count_output keeps the session's and the rpc's count of answer bytes
 * that HTTP/2 has not taken yet. */
static void count_output(pkid_call *call, ssize_t delta) {
  call->session->output += (size_t)delta;
  call->session->rpc->total_output += (size_t)delta;
}

/* answers_waiting: too much of what was answered is still waiting for the
 * client(s) to read it. The call then pauses: its messages stay unread,
 * and since pkid hands HTTP/2 flow control back only for what it has
 * read (pkid_session_consume), the client's window closes and it stops
 * sending. The session resumes paused calls as the answers drain. With
 * the transport's write limit, this bounds what a client that does not
 * read can make pkid hold. */
static int answers_waiting(pkid_call *call) {
  pkid_session *s = call->session;
  if (s->output <= s->rpc->limits.max_conn_output &&
      s->rpc->total_output <= s->rpc->limits.max_total_output) {
    return 0;
  }
  if (!call->paused) {
    pkid_metrics_limited("paused_answers_not_read");
    call->paused = 1;
    s->num_paused++;
  }
  return 1;
}

pkid_call *pkid_call_new(pkid_session *s, int32_t stream_id) {
  pkid_call *call = calloc(1, sizeof(*call));
  if (call == NULL) return NULL;
  call->session = s;
  call->stream_id = stream_id;
  call->deadline.fire = on_deadline;
  return call;
}

static int header_is(const uint8_t *name, size_t len, const char *want) {
  return len == strlen(want) && memcmp(name, want, len) == 0;
}

void pkid_call_header(pkid_call *call, const uint8_t *name, size_t name_len,
                      const uint8_t *value, size_t value_len) {
  if (header_is(name, name_len, ":method")) {
    call->is_post = value_len == 4 && memcmp(value, "POST", 4) == 0;
  } else if (header_is(name, name_len, ":path")) {
    if (value_len >= sizeof(call->path)) {
      call->bad_header = 1;
      return;
    }
    memcpy(call->path, value, value_len);
    call->path[value_len] = '\0';
  } else if (header_is(name, name_len, "content-type")) {
    /* "application/grpc", optionally "+proto" or ";params". */
    static const char kGrpc[] = "application/grpc";
    size_t n = sizeof(kGrpc) - 1;
    call->grpc_content_type =
        value_len >= n && memcmp(value, kGrpc, n) == 0 &&
        (value_len == n || value[n] == '+' || value[n] == ';');
  } else if (header_is(name, name_len, "te")) {
    call->te_trailers = value_len == 8 && memcmp(value, "trailers", 8) == 0;
  } else if (header_is(name, name_len, "grpc-timeout")) {
    call->timeout_ms = pkid_grpc_parse_timeout((const char *)value, value_len);
    if (call->timeout_ms == 0) call->bad_header = 1;
  }
}

/* send_http_error answers with HTTP status |http| and no gRPC body: what
 * the protocol asks for requests that are not gRPC at all. */
static void send_http_error(pkid_call *call, const char *http) {
  nghttp2_nv nva[] = {
      {(uint8_t *)":status", (uint8_t *)http, 7, strlen(http), NGHTTP2_NV_FLAG_NONE},
  };
  call->finished = call->headers_sent = call->trailers_sent = 1;
  pkid_session_respond(call->session, call, nva, 1, 0);
}

void pkid_call_headers_done(pkid_call *call) {
  call->start_ns = uv_hrtime();
  if (!call->is_post) {
    send_http_error(call, "405");
    return;
  }
  if (!call->grpc_content_type) {
    /* PROTOCOL-HTTP2.md: answer 415 to a request that is not gRPC. */
    send_http_error(call, "415");
    return;
  }
  if (call->bad_header) {
    pkid_call_finish(call, PKI_GRPC_INVALID_ARGUMENT, "malformed request headers");
    return;
  }
  pkid_rpc *rpc = call->session->rpc;
  call->method = pkid_rpc_find_method(rpc, call->path);
  if (call->method == NULL) {
    pkid_call_finish(call, PKI_GRPC_UNIMPLEMENTED, "unknown method %s", call->path);
    return;
  }
  if (rpc->draining) {
    pkid_call_finish(call, PKI_GRPC_UNAVAILABLE, "server is shutting down");
    return;
  }
  /* Every call has a deadline: the client's, or the server's maximum. */
  int streaming = call->method->client_streaming || call->method->on_sent != NULL;
  uint64_t max = streaming ? rpc->limits.max_stream_ms : rpc->limits.max_call_ms;
  uint64_t ms = call->timeout_ms != 0 && call->timeout_ms < max ? call->timeout_ms : max;
  if (!pkid_rpc_set_deadline(rpc, &call->deadline, ms)) {
    pkid_call_finish(call, PKI_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  /* Who may call it is decided now, before anything of the body is kept. */
  pki_err err;
  if (call->method->authorize != NULL && !call->method->authorize(rpc->ctx, call, &err)) {
    pkid_call_fail(call, &err);
  }
}

/* on_deadline: the call's time is up. Without a status yet, it ends with
 * DEADLINE_EXCEEDED; with one (given a grace period, PKID_RPC_GRACE_MS,
 * for the client to read it and close), its stream is reset: a stream held
 * open costs a slot of max_streams and memory. */
static void on_deadline(pkid_deadline *d) {
  pkid_call *call = (pkid_call *)((char *)d - offsetof(pkid_call, deadline));
  if (!call->finished) {
    pkid_metrics_limited("deadline");
    pkid_call_finish(call, PKI_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    return;
  }
  pkid_metrics_limited("stream_held_open");
  pkid_session_reset(call->session, call, NGHTTP2_CANCEL);
}

/* next_message takes one complete message off the request body at
 * |*consumed|. It returns 1 with the message, 0 when more bytes are
 * needed, and -1 after finishing the call with an error. */
static int next_message(pkid_call *call, const uint8_t **out, size_t *out_len,
                        size_t *consumed) {
  size_t used = 0;
  /* No body yet means no buffer: no pointer arithmetic on NULL. */
  if (call->in_len - *consumed < FRAME_HEADER) return 0;
  int r = pkid_grpc_next_frame(call->in + *consumed, call->in_len - *consumed, out, out_len,
                               &used);
  if (r == PKID_GRPC_FRAME_COMPRESSED) {
    pkid_call_finish(call, PKI_GRPC_UNIMPLEMENTED, "compressed messages are not supported");
    return -1;
  }
  /* The length prefix is known as soon as five bytes are in: refuse an
   * oversize message then, not after buffering it. */
  size_t max = call->method->max_message != 0 ? call->method->max_message
                                              : PKID_GRPC_MAX_MESSAGE;
  if (r == PKID_GRPC_FRAME_TOO_LARGE || *out_len > max) {
    pkid_call_finish(call, PKI_GRPC_RESOURCE_EXHAUSTED,
                     "request message of %zu bytes exceeds the limit of %zu", *out_len, max);
    return -1;
  }
  *consumed += used;
  return r;
}

/* grow_in makes room for |more| request bytes, within the limits on what
 * one call, one connection and all of them may hold unparsed. */
static int grow_in(pkid_call *call, size_t more) {
  pkid_session *s = call->session;
  pkid_rpc *rpc = s->rpc;
  size_t max = call->method->max_message != 0 ? call->method->max_message
                                              : PKID_GRPC_MAX_MESSAGE;
  if (call->in_len + more > max + FRAME_HEADER + PKID_RPC_STREAM_WINDOW) {
    /* More than a message and a window's worth is waiting: for a unary call
     * an oversize request, for a stream a client that ignores flow control. */
    pkid_call_finish(call, PKI_GRPC_RESOURCE_EXHAUSTED, "request exceeds %zu bytes", max);
    return 0;
  }
  if (call->in_len + more <= call->in_cap) return 1;
  size_t cap = call->in_cap == 0 ? 1024 : call->in_cap;
  while (cap < call->in_len + more) cap *= 2;
  size_t added = cap - call->in_cap;
  if (s->buffered + added > rpc->limits.max_conn_buffered ||
      rpc->total_buffered + added > rpc->limits.max_total_buffered) {
    pkid_metrics_limited("buffered_requests");
    pkid_call_finish(call, PKI_GRPC_RESOURCE_EXHAUSTED,
                     "too many request bytes waiting; retry later");
    return 0;
  }
  uint8_t *in = realloc(call->in, cap);
  if (in == NULL) {
    pkid_call_finish(call, PKI_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return 0;
  }
  call->in = in;
  call->in_cap = cap;
  s->buffered += added;
  rpc->total_buffered += added;
  return 1;
}

/* drop_in gives back the request buffer (a finished call needs no more),
 * and what it held to flow control: the connection's window counts every
 * stream's bytes until pkid says they are read. */
static void drop_in(pkid_call *call) {
  pkid_session_consume(call->session, call, call->in_len);
  call->session->buffered -= call->in_cap;
  call->session->rpc->total_buffered -= call->in_cap;
  free(call->in);
  call->in = NULL;
  call->in_len = call->in_cap = 0;
}

/* take_in removes |n| bytes from the front of the request buffer: they
 * are read, and the client may send as much again (flow control). */
static void take_in(pkid_call *call, size_t n) {
  if (n == 0) return;
  memmove(call->in, call->in + n, call->in_len - n);
  call->in_len -= n;
  pkid_session_consume(call->session, call, n);
}

/* process_streaming hands each complete message to a streaming method,
 * while the call's answers are being read; once the client has sent all
 * and everything is read, the request ends. */
static void process_streaming(pkid_call *call) {
  const uint8_t *msg;
  size_t len, used;
  int r = 0;
  while (!call->finished && !answers_waiting(call)) {
    used = 0;
    if ((r = next_message(call, &msg, &len, &used)) != 1) break;
    call->method->on_message(call->session->rpc->ctx, call, msg, len);
    if (call->finished) break;
    take_in(call, used);
  }
  if (call->finished || call->paused || r < 0 || !call->half_closed) return;
  if (call->in_len != 0) {
    pkid_call_finish(call, PKI_GRPC_INVALID_ARGUMENT, "request ends inside a message");
    return;
  }
  call->method->on_half_close(call->session->rpc->ctx, call);
}

/* process_unary waits for the whole request, refuses an oversize one as
 * soon as its length prefix is in, and hands the one message over. */
static void process_unary(pkid_call *call) {
  const uint8_t *msg;
  size_t len, used = 0;
  int r = next_message(call, &msg, &len, &used);
  if (r < 0 || !call->half_closed) return;
  if (r == 0 || used != call->in_len) {
    pkid_call_finish(call, PKI_GRPC_INVALID_ARGUMENT,
                     "a unary call takes exactly one request message");
    return;
  }
  if (answers_waiting(call)) return;
  pkid_session_consume(call->session, call, used);
  call->in_len = 0; /* read: the message stays in the buffer for the handler */
  call->method->on_message(call->session->rpc->ctx, call, msg, len);
}

/* process_request moves the call's request on as far as it can go. */
static void process_request(pkid_call *call) {
  if (call->finished || call->method == NULL || call->paused) return;
  if (call->method->client_streaming) {
    process_streaming(call);
  } else {
    process_unary(call);
  }
}

void pkid_call_data(pkid_call *call, const uint8_t *data, size_t len) {
  if (call->finished || call->method == NULL) {
    /* What follows a status (or a refused request) is not read: given
     * back to flow control at once. */
    drop_in(call);
    pkid_session_consume(call->session, call, len);
    return;
  }
  if (!grow_in(call, len)) {
    pkid_session_consume(call->session, call, len);
    return;
  }
  memcpy(call->in + call->in_len, data, len);
  call->in_len += len;
  process_request(call);
}

void pkid_call_end_of_request(pkid_call *call) {
  call->half_closed = 1;
  process_request(call);
}

void pkid_call_resume(pkid_call *call) {
  if (!call->paused) return;
  call->paused = 0;
  call->session->num_paused--;
  process_request(call);
}

static int out_reserve(pkid_call *call, size_t more) {
  if (call->out_len + more <= call->out_cap) return 1;
  /* Drop what HTTP/2 has already taken before growing. */
  if (call->out_off > 0) {
    memmove(call->out, call->out + call->out_off, call->out_len - call->out_off);
    call->out_len -= call->out_off;
    call->out_off = 0;
    if (call->out_len + more <= call->out_cap) return 1;
  }
  size_t cap = call->out_cap == 0 ? 2048 : call->out_cap;
  while (cap < call->out_len + more) cap *= 2;
  uint8_t *out = realloc(call->out, cap);
  if (out == NULL) return 0;
  call->out = out;
  call->out_cap = cap;
  return 1;
}

static const nghttp2_nv kResponseHeaders[] = {
    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
};

void pkid_call_send(pkid_call *call, const uint8_t *msg, size_t len) {
  if (call->finished) return;
  if (!out_reserve(call, FRAME_HEADER + len)) {
    pkid_call_finish(call, PKI_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  uint8_t *p = call->out + call->out_len;
  pkid_grpc_frame_header(p, len);
  memcpy(p + FRAME_HEADER, msg, len);
  call->out_len += FRAME_HEADER + len;
  count_output(call, (ssize_t)(FRAME_HEADER + len));
  if (call->method != NULL && call->method->on_sent != NULL && !call->want_sent) {
    call->want_sent = 1;
    call->session->num_want_sent++;
  }
  if (!call->headers_sent) {
    call->headers_sent = 1;
    pkid_session_respond(call->session, call, kResponseHeaders, 2, 1);
  } else {
    pkid_session_resume(call->session, call);
  }
}

/* percent_encode writes grpc-message's encoding of |in|: bytes outside
 * printable ASCII, and '%', as %XX (PROTOCOL-HTTP2.md). */
static size_t percent_encode(char *out, size_t size, const char *in) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0;
  for (; *in != '\0' && n + 4 < size; in++) {
    unsigned char c = (unsigned char)*in;
    if (c < 0x20 || c > 0x7e || c == '%') {
      out[n++] = '%';
      out[n++] = hex[c >> 4];
      out[n++] = hex[c & 15];
    } else {
      out[n++] = (char)c;
    }
  }
  out[n] = '\0';
  return n;
}

/* The trailer fields of a status: grpc-status, grpc-message, and the retry
 * hint gRPC's retry support reads (grpc-retry-pushback-ms, gRFC A6). */
typedef struct status_text {
  char code[4], retry[24];
  char msg[sizeof(((pkid_call *)0)->message) * 3 + 1];
} status_text;

/* status_fields fills those fields into |nva| (room for 3). */
static size_t status_fields(pkid_call *call, nghttp2_nv *nva, status_text *t) {
  size_t n = 0;
  snprintf(t->code, sizeof(t->code), "%d", (int)call->status);
  size_t msg_len = percent_encode(t->msg, sizeof(t->msg), call->message);
  nva[n++] = (nghttp2_nv){(uint8_t *)"grpc-status", (uint8_t *)t->code, 11, strlen(t->code),
                          NGHTTP2_NV_FLAG_NO_COPY_NAME};
  if (msg_len > 0) {
    nva[n++] = (nghttp2_nv){(uint8_t *)"grpc-message", (uint8_t *)t->msg, 12, msg_len,
                            NGHTTP2_NV_FLAG_NO_COPY_NAME};
  }
  if (call->retry_ms > 0) {
    snprintf(t->retry, sizeof(t->retry), "%llu", (unsigned long long)call->retry_ms);
    nva[n++] = (nghttp2_nv){(uint8_t *)"grpc-retry-pushback-ms", (uint8_t *)t->retry, 22,
                            strlen(t->retry), NGHTTP2_NV_FLAG_NO_COPY_NAME};
  }
  return n;
}

/* count_call adds a finished call to the request metrics. The method label
 * is one of pkid's own methods or "unknown": never a client's path, which
 * would let clients grow the label set without bound. */
static void count_call(const pkid_call *call, pki_grpc_status status) {
  const char *method = pkid_call_method(call);
  const char *labels[] = {method, pki_grpc_status_name((int)status)};
  pkid_counter_add(pkid_metric_child(pkid_m.grpc_requests, labels), 1);
  if (call->start_ns != 0) {
    const char *by_method[] = {method};
    pkid_histogram_observe(pkid_metric_child(pkid_m.grpc_request_duration, by_method),
                           (double)(uv_hrtime() - call->start_ns) / 1e9);
  }
}

void pkid_call_finish(pkid_call *call, pki_grpc_status status, const char *fmt, ...) {
  if (call->finished) return;
  call->finished = 1;
  call->status = status;
  count_call(call, status);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(call->message, sizeof(call->message), fmt, ap);
  va_end(ap);
  pkid_rpc *rpc = call->session->rpc;
  if (status != PKI_GRPC_OK && rpc->on_refused != NULL) {
    rpc->on_refused(rpc->on_refused_ctx, call, (int)status, call->message);
  }
  /* The stream should close soon now; if it does not, on_deadline resets
   * it. (The request buffer goes at the next data or at the end: a handler
   * that finishes the call may still be reading its message.) */
  if (!pkid_rpc_set_deadline(call->session->rpc, &call->deadline, PKID_RPC_GRACE_MS)) {
    pkid_session_reset(call->session, call, NGHTTP2_INTERNAL_ERROR);
  }
  if (!call->headers_sent) {
    /* Trailers-only: one HEADERS frame with the status, ending the stream. */
    status_text t;
    nghttp2_nv nva[5] = {kResponseHeaders[0], kResponseHeaders[1]};
    size_t n = 2 + status_fields(call, nva + 2, &t);
    call->headers_sent = call->trailers_sent = 1;
    pkid_session_respond(call->session, call, nva, n, 0);
  } else {
    pkid_session_resume(call->session, call);
  }
}

void pkid_call_ok(pkid_call *call) { pkid_call_finish(call, PKI_GRPC_OK, "%s", ""); }

void pkid_call_fail(pkid_call *call, const pki_err *err) {
  pkid_call_finish(call, pki_grpc_status_from_err(err->code), "%s", err->msg);
}

void pkid_call_fail_retry(pkid_call *call, const pki_err *err, uint64_t retry_ms) {
  if (!call->finished) call->retry_ms = retry_ms;
  pkid_call_fail(call, err);
}

void pkid_call_sent(pkid_call *call) {
  if (!call->want_sent || call->out_off != call->out_len) return;
  call->want_sent = 0;
  call->session->num_want_sent--;
  if (!call->finished) call->method->on_sent(call->session->rpc->ctx, call);
}

size_t pkid_call_unsent(const pkid_call *call) { return call->out_len - call->out_off; }

const pkid_peer *pkid_call_peer(const pkid_call *call) { return call->session->peer; }

const char *pkid_call_method(const pkid_call *call) {
  if (call->method == NULL) return "unknown";
  const char *slash = strrchr(call->method->path, '/');
  return slash != NULL ? slash + 1 : call->method->path;
}

int pkid_call_finished(const pkid_call *call) { return call->finished; }

int pkid_call_half_closed(const pkid_call *call) {
  /* END_STREAM alone is not enough: messages paused behind unread answers
   * (answers_waiting), or the one being handed over now, are still to
   * come, and a call ended on them would leave them unanswered. */
  return call->half_closed && !call->paused && call->in_len == 0;
}

unsigned pkid_call_num_pending(const pkid_call *call) { return call->num_pending; }

size_t pkid_call_read_out(pkid_call *call, uint8_t *buf, size_t len, int *eof) {
  size_t avail = call->out_len - call->out_off;
  size_t n = avail < len ? avail : len;
  if (n > 0) memcpy(buf, call->out + call->out_off, n);
  call->out_off += n;
  count_output(call, -(ssize_t)n);
  *eof = 0;
  if (call->out_off == call->out_len && call->finished && !call->trailers_sent) {
    status_text t;
    nghttp2_nv nva[3];
    size_t nv = status_fields(call, nva, &t);
    call->trailers_sent = 1;
    pkid_session_trailers(call->session, call, nva, nv);
    *eof = 1;
  }
  return n;
}

void pkid_call_track(pkid_call *call, pkid_pending *p) {
  p->call = call;
  p->prev = NULL;
  p->next = call->pending;
  if (call->pending != NULL) call->pending->prev = p;
  call->pending = p;
  call->num_pending++;
}

void pkid_call_untrack(pkid_pending *p) {
  pkid_call *call = p->call;
  if (call == NULL) return;
  if (p->prev != NULL) p->prev->next = p->next;
  if (p->next != NULL) p->next->prev = p->prev;
  if (call->pending == p) call->pending = p->next;
  call->num_pending--;
  p->call = NULL;
  p->next = p->prev = NULL;
}

void pkid_call_free(pkid_call *call) {
  if (call->paused) call->session->num_paused--;
  if (call->want_sent) call->session->num_want_sent--;
  /* Work still running for this call must not answer into freed memory;
   * its owner hears that the call has gone. */
  while (call->pending != NULL) {
    pkid_pending *p = call->pending;
    pkid_call_untrack(p);
    if (p->on_gone != NULL) p->on_gone(p);
  }
  pkid_rpc_clear_deadline(call->session->rpc, &call->deadline);
  drop_in(call);
  count_output(call, -(ssize_t)(call->out_len - call->out_off));
  free(call->out);
  free(call);
}
