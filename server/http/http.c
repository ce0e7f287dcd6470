#include "server/http/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <http_parser.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/addr_count.h"
#include "lib/hostport.h"

/* One read buffer per connection; a read never asks for more. */
#define READ_BUF 16384
/* After the write side is shut down, how long the rest of the input is
 * drained before the socket closes. */
#define LINGER_MS 1000
#define CTYPE_MAX 128
#define INM_MAX 256 /* If-None-Match: a few ETags */
#define HOST_MAX 256 /* Host: longer is refused (400), not cut */
#define FIELD_MAX 32

typedef struct route {
  const char *method;
  const char *path;
  size_t path_len;
  int prefix; /* path ends in '/' */
  pkid_http_handler handler;
  void *ctx;
} route;

struct pkid_http_server {
  uv_loop_t *loop;
  pkid_http_limits limits;
  uv_tcp_t listener;
  uv_timer_t grace;
  int listening;
  int stopping;
  int handles_open; /* listener and grace timer, once initialized */
  int grace_closed;
  route routes[PKID_HTTP_MAX_ROUTES];
  size_t num_routes;
  struct pkid_http_conn *conns, *conns_tail; /* newest first */
  unsigned num_conns;   /* open connections, for the limit */
  pki_addr_count *per_address;
  unsigned conns_alive; /* connections not yet freed (closing ones too) */
  void (*done)(void *arg);
  void *done_arg;
  /* The Date header, formatted once per second. */
  int64_t date_t;
  char date[30];
  SSL_CTX *ssl_ctx; /* HTTPS when set (pkid_http_set_tls) */
};

/* Responses waiting to be written: bytes of their own, and at most one
 * large body borrowed from its owner (|tail|, after the bytes), given back
 * through |release| once written: a CRL of megabytes is not copied for
 * each client that fetches it. */
typedef struct out_buf {
  char *data;
  size_t len, cap;
  const void *tail;
  size_t tail_len;
  void (*release)(void *ctx);
  void *release_ctx;
} out_buf;

typedef struct pkid_http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer; /* idle, request, or linger timeout: one at a time */
  uv_write_t wreq;
  uv_shutdown_t sreq;
  pkid_http_server *srv;
  http_parser parser;
  int handles_open;
  int closing;     /* handles are closing */
  int close_after; /* no more requests: close once the output is written */
  int shut_down;   /* uv_shutdown done: draining input until EOF or linger */
  int reading;     /* uv_read_start in effect */
  int in_request;  /* a request has begun and not yet ended */
  int message_done; /* set by on_message_complete, consumed by process */
  int error_status; /* set by a parser callback that refused the request */
  int keep_alive;
  int writing; /* a uv_write is in flight, of out[1 - cur] */
  size_t queued_at_timer; /* the write queue when the idle timer last fired */
  int cur;     /* the buffer responses are appended to */
  out_buf out[2];
  /* The request being parsed. */
  size_t head_bytes;
  size_t url_len;
  size_t body_len;
  uint8_t *body; /* max_body_bytes, allocated at the first body */
  int field_is_ctype;
  int last_was_value;
  char field[FIELD_MAX];
  size_t field_len;
  char ctype[CTYPE_MAX];
  size_t ctype_len;
  int field_is_inm; /* the header being read is If-None-Match */
  char inm[INM_MAX];
  size_t inm_len;
  int field_is_host;
  int host_seen; /* a Host header came: a second one is refused */
  char host[HOST_MAX];
  size_t host_len;
  /* A request whose handler deferred its answer: nothing more is parsed
   * (nor timed) until pkid_http_respond_deferred. The handle points back
   * here until the connection closes. */
  struct pkid_http_deferred *deferred;
  int dispatching; /* a handler runs: an answer given in it needs no process() */
  /* Input not yet parsed: rbuf[rpos, rlen). */
  size_t rpos, rlen;
  char rbuf[READ_BUF];
  struct sockaddr_storage addr; /* the peer's, counted per address */
  struct pkid_http_conn *next, *prev;
  /* HTTPS: TLS over memory BIOs. Ciphertext read lands in |wire_in| and
   * goes into the SSL; plaintext comes out into rbuf for the parser.
   * Responses go through SSL_write as they are flushed, and what the SSL
   * has to send (records, handshake, alerts) is written from |wire_out|. */
  SSL *ssl;
  int tls_notified; /* close_notify sent */
  uint8_t *wire_in; /* READ_BUF */
  out_buf wire_out; /* the ciphertext of the write in flight */
  char url[]; /* max_url_bytes + 1 */
} pkid_http_conn;

/* What pkid_http_respond needs of a request, kept for its later answer:
 * the request itself lives in buffers the next one reuses. */
struct pkid_http_deferred {
  pkid_http_conn *conn; /* NULL once the connection closed */
  int head;             /* a HEAD: the body is left out */
  int keep_alive;
};

pkid_http_limits pkid_http_default_limits(void) {
  pkid_http_limits l = {
      .max_header_bytes = 8192,
      .max_url_bytes = 4096,
      .max_body_bytes = 16384,
      .max_conns = 4096,
      .max_conns_per_address = 256,
      .idle_timeout_ms = 30000,
      .request_timeout_ms = 10000,
  };
  return l;
}

const char *pkid_http_status_text(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

void pkid_http_date(char out[30], int64_t t) {
  static const char kDays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char kMonths[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t tt = (time_t)t;
  struct tm tm;
  if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = 70;
    tm.tm_mday = 1;
    tm.tm_wday = 4;
  }
  snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
           kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* --- output ------------------------------------------------------------------ */

static int out_reserve(out_buf *b, size_t more) {
  if (b->len + more <= b->cap) return 1;
  size_t cap = b->cap != 0 ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  char *data = realloc(b->data, cap);
  if (data == NULL) return 0;
  b->data = data;
  b->cap = cap;
  return 1;
}

static void out_append(out_buf *b, const void *data, size_t len) {
  memcpy(b->data + b->len, data, len);
  b->len += len;
}

static void out_str(out_buf *b, const char *s) { out_append(b, s, strlen(s)); }

static void out_uint(out_buf *b, size_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out_append(b, tmp + sizeof(tmp) - n, n);
}

static size_t pending_out(const pkid_http_conn *c) {
  return c->out[0].len + c->out[0].tail_len + c->out[1].len + c->out[1].tail_len;
}

/* release_tail gives a borrowed body back to its owner. */
static void release_tail(out_buf *b) {
  if (b->release != NULL) b->release(b->release_ctx);
  b->tail = NULL;
  b->tail_len = 0;
  b->release = NULL;
  b->release_ctx = NULL;
}

static void conn_close(pkid_http_conn *c);
static void process(pkid_http_conn *c);
static void start_reading(pkid_http_conn *c);

static void on_closed(uv_handle_t *handle);

static void on_linger(uv_timer_t *t) { conn_close(t->data); }

static void on_shutdown(uv_shutdown_t *req, int status) {
  pkid_http_conn *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  /* Drain what the client still sends until it closes, briefly. */
  c->shut_down = 1;
  uv_timer_start(&c->timer, on_linger, LINGER_MS, 0);
  start_reading(c);
}

static void on_written(uv_write_t *req, int status);

/* flush submits the responses appended since the last write, and shuts the
 * write side down once a closing connection has nothing more to send. */
static void tls_flush(pkid_http_conn *c);

static void flush(pkid_http_conn *c) {
  if (c->closing) return;
  if (c->ssl != NULL) {
    tls_flush(c);
    return;
  }
  if (!c->writing && c->out[c->cur].len > 0) {
    out_buf *b = &c->out[c->cur];
    uv_buf_t bufs[2] = {uv_buf_init(b->data, (unsigned)b->len),
                        uv_buf_init((char *)b->tail, (unsigned)b->tail_len)};
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, b->tail != NULL ? 2 : 1,
                 on_written) != 0) {
      conn_close(c);
      return;
    }
    c->writing = 1;
    c->queued_at_timer = SIZE_MAX;
    c->cur = 1 - c->cur;
  }
  /* A deferred answer still to come keeps the write side open. */
  if (c->close_after && !c->shut_down && c->sreq.data == NULL && c->out[c->cur].len == 0 &&
      c->deferred == NULL) {
    c->sreq.data = c;
    uv_timer_stop(&c->timer);
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c);
  }
}

static void on_written(uv_write_t *req, int status) {
  pkid_http_conn *c = (pkid_http_conn *)((char *)req - offsetof(pkid_http_conn, wreq));
  c->writing = 0;
  c->out[1 - c->cur].len = 0;
  release_tail(&c->out[1 - c->cur]);
  c->wire_out.len = 0;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  flush(c);
  /* Reading stopped while too much output waited: go on. */
  if (!c->closing && !c->close_after && !c->reading && pending_out(c) < PKID_HTTP_MAX_PENDING_OUT) {
    process(c);
  }
}

/* --- HTTPS ------------------------------------------------------------------------- */

/* tls_send writes what the SSL has to send, unless a write is in flight
 * (on_written comes back here through flush). */
static void tls_send(pkid_http_conn *c) {
  BIO *wbio = SSL_get_wbio(c->ssl);
  size_t pending = BIO_pending(wbio);
  if (c->writing || pending == 0) return;
  if (!out_reserve(&c->wire_out, pending)) {
    conn_close(c);
    return;
  }
  int n = BIO_read(wbio, c->wire_out.data, (int)pending);
  if (n <= 0) {
    conn_close(c);
    return;
  }
  c->wire_out.len = (size_t)n;
  uv_buf_t buf = uv_buf_init(c->wire_out.data, (unsigned)n);
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
    conn_close(c);
    return;
  }
  c->writing = 1;
  c->queued_at_timer = SIZE_MAX;
}

/* tls_write hands plaintext to the SSL; with memory BIOs it takes it all. */
static int tls_write(pkid_http_conn *c, const void *data, size_t len) {
  while (len > 0) {
    int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
    int n = SSL_write(c->ssl, data, chunk);
    if (n <= 0) return 0;
    data = (const char *)data + n;
    len -= (size_t)n;
  }
  return 1;
}

/* tls_flush is flush for HTTPS: the responses waiting are encrypted at
 * once (their buffers are free again, a borrowed body given back), then
 * written when no write is in flight. A closing connection sends its
 * close_notify (RFC 8446 6.1) after the last response, and shuts the
 * write side down once everything is written. */
static void tls_flush(pkid_http_conn *c) {
  out_buf *b = &c->out[c->cur];
  if (!c->writing && b->len > 0) {
    int ok = tls_write(c, b->data, b->len) && (b->tail == NULL || tls_write(c, b->tail, b->tail_len));
    b->len = 0;
    release_tail(b);
    if (!ok) {
      conn_close(c);
      return;
    }
  }
  if (c->close_after && b->len == 0 && c->deferred == NULL && !c->tls_notified &&
      SSL_is_init_finished(c->ssl)) {
    c->tls_notified = 1;
    SSL_shutdown(c->ssl);
  }
  tls_send(c);
  if (c->closing || c->writing) return;
  if (c->close_after && !c->shut_down && c->sreq.data == NULL && b->len == 0 &&
      c->deferred == NULL) {
    c->sreq.data = c;
    uv_timer_stop(&c->timer);
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c);
  }
}

/* tls_fill moves plaintext out of the SSL into rbuf, as much as fits; the
 * handshake advances on the way. 0: the connection failed (closed) or the
 * client ended TLS with close_notify (read as EOF). */
static int tls_fill(pkid_http_conn *c) {
  if (c->rpos > 0) {
    memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
    c->rlen -= c->rpos;
    c->rpos = 0;
  }
  while (c->rlen < READ_BUF) {
    int n = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(READ_BUF - c->rlen));
    if (n > 0) {
      c->rlen += (size_t)n;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN && (pending_out(c) > 0 || c->deferred != NULL) &&
        !c->shut_down) {
      /* The client is done sending: answer what it asked, then close. */
      c->close_after = 1;
      flush(c);
      return 0;
    }
    /* A failed handshake (plain HTTP sent to the HTTPS port, an unknown
     * version) or a record that does not decrypt: the SSL queued an alert
     * for the client, if it could; send it, then close. */
    tls_send(c);
    conn_close(c);
    return 0;
  }
  return 1;
}

/* tls_more reports whether the SSL may hold plaintext that did not fit. */
static int tls_more(const pkid_http_conn *c) {
  return c->ssl != NULL && c->rlen < READ_BUF &&
         (SSL_pending(c->ssl) > 0 || BIO_pending(SSL_get_rbio(c->ssl)) > 0);
}

int pkid_http_set_tls(pkid_http_server *srv, SSL_CTX *ctx) {
  if (srv->listening || ctx == NULL) return 0;
  SSL_CTX_up_ref(ctx);
  SSL_CTX_free(srv->ssl_ctx);
  srv->ssl_ctx = ctx;
  return 1;
}

/* append_response writes one response into the current output buffer;
 * a response to HEAD says the length of |body| but leaves it out (RFC
 * 9110 9.3.2). */
static int append_response(pkid_http_conn *c, int status, const char *headers,
                           const void *body, size_t len, int head) {
  pkid_http_server *srv = c->srv;
  int64_t now = (int64_t)time(NULL);
  if (now != srv->date_t) {
    pkid_http_date(srv->date, now);
    srv->date_t = now;
  }
  if (srv->stopping) c->close_after = 1;
  const char *reason = pkid_http_status_text(status);
  size_t hlen = headers != NULL ? strlen(headers) : 0;
  out_buf *b = &c->out[c->cur];
  if (!out_reserve(b, 128 + strlen(reason) + hlen + len)) return 0;
  out_str(b, "HTTP/1.1 ");
  out_uint(b, (size_t)status);
  out_str(b, " ");
  out_str(b, reason);
  out_str(b, "\r\nDate: ");
  out_append(b, srv->date, 29);
  out_str(b, "\r\n");
  /* A 304 has no content, and a Content-Length there would have to be the
   * 200's (RFC 9110 8.6): none. */
  if (status != 304) {
    out_str(b, "Content-Length: ");
    out_uint(b, len);
    out_str(b, "\r\n");
  }
  if (c->close_after) {
    out_str(b, "Connection: close\r\n");
  } else if (c->parser.http_minor == 0) {
    /* An HTTP/1.0 client asked for keep-alive: say it was granted. */
    out_str(b, "Connection: keep-alive\r\n");
  }
  if (hlen != 0) out_append(b, headers, hlen);
  out_str(b, "\r\n");
  if (len != 0 && !head) out_append(b, body, len);
  return 1;
}

/* respond_error answers a request that could not be read, then closes. */
static void respond_error(pkid_http_conn *c, int status) {
  const char *text = pkid_http_status_text(status);
  char body[64];
  int n = snprintf(body, sizeof(body), "%s\n", text);
  c->close_after = 1;
  c->in_request = 0;
  if (!append_response(c, status, "Content-Type: text/plain\r\n", body, (size_t)n, 0)) {
    conn_close(c);
    return;
  }
  flush(c);
}

int pkid_http_respond(pkid_http_req *req, int status, const char *headers, const void *body,
                      size_t len) {
  pkid_http_conn *c = req->conn;
  if (req->responded || c->closing) return 0;
  req->responded = 1;
  if (!c->keep_alive) c->close_after = 1;
  if (!append_response(c, status, headers, body, len, req->method == HTTP_HEAD)) {
    conn_close(c);
    return 0;
  }
  return 1;
}

int pkid_http_respond_shared(pkid_http_req *req, int status, const char *headers,
                             const void *body, size_t len, void (*release)(void *ctx),
                             void *ctx) {
  pkid_http_conn *c = req->conn;
  out_buf *b = &c->out[c->cur];
  /* Borrowed only as the last thing in a buffer (process() appends no
   * other response after it), and never for HEAD: nothing to send. */
  if (req->method == HTTP_HEAD || b->tail != NULL || req->responded || c->closing) {
    int ok = pkid_http_respond(req, status, headers, body, len);
    release(ctx);
    return ok;
  }
  req->responded = 1;
  if (!c->keep_alive) c->close_after = 1;
  if (!append_response(c, status, headers, body, len, 1)) {
    release(ctx);
    conn_close(c);
    return 0;
  }
  b->tail = body;
  b->tail_len = len;
  b->release = release;
  b->release_ctx = ctx;
  return 1;
}

pkid_http_deferred *pkid_http_defer(pkid_http_req *req) {
  pkid_http_conn *c = req->conn;
  if (req->responded || c->closing || c->deferred != NULL) return NULL;
  pkid_http_deferred *d = malloc(sizeof(*d));
  if (d == NULL) return NULL;
  d->conn = c;
  d->head = req->method == HTTP_HEAD;
  /* (The parser is not run again before the answer, but the answer should
   * not depend on that.) */
  d->keep_alive = c->keep_alive;
  c->deferred = d;
  req->responded = 1;
  /* The request's timer ran from its first byte; it has arrived now, and
   * what remains is the owner's wait. */
  uv_timer_stop(&c->timer);
  return d;
}

int pkid_http_respond_deferred(pkid_http_deferred *d, int status, const char *headers,
                               const void *body, size_t len) {
  if (d == NULL) return 0;
  pkid_http_conn *c = d->conn;
  int head = d->head, keep_alive = d->keep_alive;
  free(d);
  if (c == NULL) return 0; /* closed meanwhile (conn_close let go of it) */
  c->deferred = NULL;
  if (!keep_alive) c->close_after = 1;
  if (!append_response(c, status, headers, body, len, head)) {
    conn_close(c);
    return 0;
  }
  /* Go on: pipelined requests, the output, the idle timer, reading (and
   * for HTTPS, plaintext the SSL holds). From inside the connection's own
   * handler, the process() that called it goes on by itself. */
  if (!c->dispatching) process(c);
  return 1;
}

/* --- parsing ------------------------------------------------------------------- */

static pkid_http_conn *conn_of(http_parser *p) { return p->data; }

static void on_timer(uv_timer_t *t);

static int on_message_begin(http_parser *p) {
  pkid_http_conn *c = conn_of(p);
  c->in_request = 1;
  c->head_bytes = 0;
  c->url_len = 0;
  c->body_len = 0;
  c->field_len = 0;
  c->field_is_ctype = 0;
  c->field_is_inm = 0;
  c->last_was_value = 0;
  c->ctype_len = 0;
  c->inm_len = 0;
  c->field_is_host = 0;
  c->host_seen = 0;
  c->host_len = 0;
  c->error_status = 0;
  /* From the first byte, the whole request must come within the limit. */
  uv_timer_start(&c->timer, on_timer, c->srv->limits.request_timeout_ms, 0);
  return 0;
}

static int count_head(pkid_http_conn *c, size_t len) {
  c->head_bytes += len;
  if (c->head_bytes > c->srv->limits.max_header_bytes) {
    c->error_status = 431;
    return -1;
  }
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  pkid_http_conn *c = conn_of(p);
  if (c->url_len + len > c->srv->limits.max_url_bytes) {
    c->error_status = 414;
    return -1;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  return count_head(c, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  pkid_http_conn *c = conn_of(p);
  if (c->last_was_value) {
    c->field_len = 0;
    c->last_was_value = 0;
  }
  if (c->field_len + len <= FIELD_MAX) memcpy(c->field + c->field_len, at, len);
  c->field_len += len;
  return count_head(c, len + 4); /* ": " and CRLF */
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  pkid_http_conn *c = conn_of(p);
  if (!c->last_was_value) {
    c->last_was_value = 1;
    c->field_is_ctype = c->field_len == 12 && strncasecmp(c->field, "content-type", 12) == 0;
    c->field_is_inm = c->field_len == 13 && strncasecmp(c->field, "if-none-match", 13) == 0;
    c->field_is_host = c->field_len == 4 && strncasecmp(c->field, "host", 4) == 0;
    if (c->field_is_ctype) c->ctype_len = 0;
    if (c->field_is_host) {
      /* Two Host headers: which one the URLs are built from would be the
       * client's trick (RFC 9112 3.2 wants a 400). */
      if (c->host_seen) {
        c->error_status = 400;
        return -1;
      }
      c->host_seen = 1;
    }
  }
  if (c->field_is_ctype) {
    size_t n = len;
    if (c->ctype_len + n > CTYPE_MAX - 1) n = CTYPE_MAX - 1 - c->ctype_len;
    memcpy(c->ctype + c->ctype_len, at, n);
    c->ctype_len += n;
  }
  if (c->field_is_inm) {
    /* Longer than this, it names more ETags than any cache keeps: the
     * tail is dropped, which can only cost a 200 instead of a 304. */
    size_t n = len;
    if (c->inm_len + n > INM_MAX - 1) n = INM_MAX - 1 - c->inm_len;
    memcpy(c->inm + c->inm_len, at, n);
    c->inm_len += n;
  }
  if (c->field_is_host) {
    /* Not cut: a cut name would be another name. */
    if (c->host_len + len > HOST_MAX - 1) {
      c->error_status = 400;
      return -1;
    }
    memcpy(c->host + c->host_len, at, len);
    c->host_len += len;
  }
  return count_head(c, len);
}

static int on_headers_complete(http_parser *p) {
  pkid_http_conn *c = conn_of(p);
  /* A declared body larger than allowed is refused before it arrives. */
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->limits.max_body_bytes) {
    c->error_status = 413;
    return -1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  pkid_http_conn *c = conn_of(p);
  size_t max = c->srv->limits.max_body_bytes;
  if (c->body_len + len > max) {
    c->error_status = 413;
    return -1;
  }
  if (c->body == NULL) {
    c->body = malloc(max > 0 ? max : 1);
    if (c->body == NULL) {
      c->error_status = 500;
      return -1;
    }
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

/* on_message_complete pauses the parser: requests are answered one at a
 * time, outside the parser's callbacks. */
static int on_message_complete(http_parser *p) {
  pkid_http_conn *c = conn_of(p);
  c->message_done = 1;
  c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings kSettings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- dispatch ------------------------------------------------------------------- */

static const route *find_route(const pkid_http_server *srv, const char *path, size_t len,
                               const char *method, char *allow, size_t allow_size,
                               int *found_path) {
  /* The query string is not part of the match. */
  const char *q = memchr(path, '?', len);
  if (q != NULL) len = (size_t)(q - path);
  size_t best = 0;
  int any = 0;
  for (size_t i = 0; i < srv->num_routes; i++) {
    const route *r = &srv->routes[i];
    int match = r->prefix ? (len >= r->path_len && memcmp(path, r->path, r->path_len) == 0)
                          : (len == r->path_len && memcmp(path, r->path, len) == 0);
    if (match && (!any || r->path_len > best)) {
      best = r->path_len;
      any = 1;
    }
  }
  *found_path = any;
  if (!any) return NULL;
  allow[0] = '\0';
  for (size_t i = 0; i < srv->num_routes; i++) {
    const route *r = &srv->routes[i];
    if (r->path_len != best) continue;
    int match = r->prefix ? memcmp(path, r->path, r->path_len) == 0
                          : (len == r->path_len && memcmp(path, r->path, len) == 0);
    if (!match) continue;
    /* HEAD is answered wherever GET is (RFC 9110 9.3.2). */
    if (strcmp(r->method, method) == 0 ||
        (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
      return r;
    }
    size_t used = strlen(allow);
    snprintf(allow + used, allow_size - used, "%s%s", used != 0 ? ", " : "", r->method);
  }
  return NULL;
}

static void dispatch(pkid_http_conn *c) {
  pkid_http_server *srv = c->srv;
  c->url[c->url_len] = '\0';
  c->ctype[c->ctype_len] = '\0';
  c->inm[c->inm_len] = '\0';
  /* http_parser leaves a value's trailing whitespace on; a URL built from
   * the Host must not carry it (RFC 9110 5.5). */
  while (c->host_len > 0 && (c->host[c->host_len - 1] == ' ' || c->host[c->host_len - 1] == '\t')) {
    c->host_len--;
  }
  c->host[c->host_len] = '\0';
  pkid_http_req req = {
      .method = (int)c->parser.method,
      .method_name = http_method_str((enum http_method)c->parser.method),
      .path = c->url,
      .path_len = c->url_len,
      .body = c->body,
      .body_len = c->body_len,
      .content_type = c->ctype,
      .if_none_match = c->inm,
      .host = c->host,
      .http_minor = c->parser.http_minor,
      .conn = c,
  };
  char allow[128];
  int found_path;
  const route *r =
      find_route(srv, c->url, c->url_len, req.method_name, allow, sizeof(allow), &found_path);
  if (r != NULL) {
    c->dispatching = 1;
    r->handler(r->ctx, &req);
    c->dispatching = 0;
    /* (A deferred request counts as answered.) */
    if (!req.responded && !c->closing) {
      pkid_http_respond(&req, 500, "Content-Type: text/plain\r\n", "no response\n", 12);
    }
  } else if (found_path) {
    char headers[160];
    snprintf(headers, sizeof(headers), "Allow: %s\r\nContent-Type: text/plain\r\n", allow);
    pkid_http_respond(&req, 405, headers, "Method Not Allowed\n", 19);
  } else {
    pkid_http_respond(&req, 404, "Content-Type: text/plain\r\n", "Not Found\n", 10);
  }
}

/* rbuf_full: no room for more input; a deferred connection stops reading
 * there (reading on until then notices a client that goes). */
static int rbuf_full(const pkid_http_conn *c) { return c->rlen - c->rpos >= READ_BUF; }

/* process parses and answers what is in the read buffer, one request at a
 * time, then writes the answers out. It stops early when the output backs
 * up or a request is deferred, and starts reading again otherwise. */
static void process(pkid_http_conn *c) {
  if (c->ssl != NULL && !c->shut_down && !tls_fill(c)) return;
again:
  while (!c->closing && !c->close_after && c->deferred == NULL && c->rpos < c->rlen &&
         pending_out(c) < PKID_HTTP_MAX_PENDING_OUT && c->out[c->cur].tail == NULL) {
    size_t n = http_parser_execute(&c->parser, &kSettings, c->rbuf + c->rpos, c->rlen - c->rpos);
    c->rpos += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->message_done) {
      c->message_done = 0;
      c->in_request = 0;
      if (e == HPE_PAUSED) http_parser_pause(&c->parser, 0);
      dispatch(c);
      if (c->parser.upgrade) c->close_after = 1;
      continue;
    }
    if (e != HPE_OK) {
      int status = c->error_status;
      if (status == 0) status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
      respond_error(c, status);
      return;
    }
  }
  if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
  if (c->closing) return;
  /* HTTPS: plaintext the SSL still holds is parsed now; no read will come
   * for it. */
  if (tls_more(c) && !c->close_after && c->deferred == NULL &&
      pending_out(c) < PKID_HTTP_MAX_PENDING_OUT && c->out[c->cur].tail == NULL) {
    size_t had = c->rlen;
    if (!tls_fill(c)) return;
    if (c->rlen > had) goto again; /* (a partial record gives nothing yet) */
  }
  if (!c->in_request && !c->close_after && c->deferred == NULL) {
    uv_timer_start(&c->timer, on_timer, c->srv->limits.idle_timeout_ms, 0);
  }
  flush(c);
  if (c->closing) return;
  if (c->close_after || pending_out(c) >= PKID_HTTP_MAX_PENDING_OUT ||
      (c->deferred != NULL && rbuf_full(c))) {
    /* Stop reading: either no more requests are wanted, or the client is
     * not reading its answers, or it pipelined a buffer's worth behind a
     * deferred request. A shut-down connection reads again to drain
     * (on_shutdown). */
    if (c->reading && !c->shut_down) {
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = 0;
    }
  } else {
    start_reading(c);
  }
}

/* --- reading ---------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  pkid_http_conn *c = handle->data;
  (void)suggested;
  if (c->ssl != NULL) {
    buf->base = (char *)c->wire_in;
    buf->len = READ_BUF;
    return;
  }
  if (c->shut_down) {
    /* Draining: unparsed input is dropped, so the whole buffer is free. */
    c->rpos = c->rlen = 0;
  } else if (c->rpos > 0) {
    memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
    c->rlen -= c->rpos;
    c->rpos = 0;
  }
  buf->base = c->rbuf + c->rlen;
  buf->len = READ_BUF - c->rlen;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  pkid_http_conn *c = stream->data;
  (void)buf;
  if (c->closing) return;
  if (nread < 0) {
    /* EOF or an error. A response still being written is abandoned only on
     * error; at EOF (a half-close) it is finished first. */
    if (nread == UV_EOF && !c->shut_down && (pending_out(c) > 0 || c->deferred != NULL)) {
      uv_read_stop(stream);
      c->reading = 0;
      c->close_after = 1;
      flush(c);
      return;
    }
    conn_close(c);
    return;
  }
  if (nread == 0) return;
  if (c->shut_down || c->close_after) return; /* dropped */
  if (c->ssl != NULL) {
    if (BIO_write(SSL_get_rbio(c->ssl), c->wire_in, (int)nread) != (int)nread) {
      conn_close(c);
      return;
    }
    process(c); /* pulls the plaintext out (tls_fill) */
    if (!c->closing) tls_send(c); /* the handshake's answers */
    return;
  }
  c->rlen += (size_t)nread;
  process(c);
}

static void start_reading(pkid_http_conn *c) {
  if (c->reading || c->closing) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  c->reading = 1;
}

/* on_timer: an idle connection closes; a request that did not arrive in
 * time is answered 408; a lingering one closes. */
static void on_timer(uv_timer_t *t) {
  pkid_http_conn *c = t->data;
  if (c->writing && !c->in_request) {
    /* A large answer still going out is not idleness, as long as the
     * client takes some of it in each period; one that stalls is closed. */
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (queued < c->queued_at_timer) {
      c->queued_at_timer = queued;
      uv_timer_start(&c->timer, on_timer, c->srv->limits.idle_timeout_ms, 0);
      return;
    }
  }
  if (c->in_request && !c->close_after) {
    respond_error(c, 408);
  } else {
    conn_close(c);
  }
}

/* --- life ------------------------------------------------------------------------- */

static void on_server_handle_closed(uv_handle_t *handle);

/* server_check_stopped frees a stopping server once its last connection
 * is gone: the grace timer closes, then the memory goes. */
static void server_check_stopped(pkid_http_server *srv) {
  if (!srv->stopping || srv->conns_alive != 0) return;
  if (srv->listening && !srv->grace_closed) {
    srv->grace_closed = 1;
    uv_close((uv_handle_t *)&srv->grace, on_server_handle_closed);
    return;
  }
  if (srv->handles_open != 0) return;
  void (*done)(void *) = srv->done;
  void *arg = srv->done_arg;
  pki_addr_count_free(srv->per_address);
  SSL_CTX_free(srv->ssl_ctx);
  free(srv);
  if (done != NULL) done(arg);
}

static void on_closed(uv_handle_t *handle) {
  pkid_http_conn *c = handle->data;
  if (--c->handles_open > 0) return;
  pkid_http_server *srv = c->srv;
  release_tail(&c->out[0]);
  release_tail(&c->out[1]);
  free(c->out[0].data);
  free(c->out[1].data);
  free(c->body);
  SSL_free(c->ssl);
  free(c->wire_in);
  free(c->wire_out.data);
  free(c);
  srv->conns_alive--;
  server_check_stopped(srv);
}

static void conn_close(pkid_http_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  /* A deferred answer that comes later finds no connection, and drops. */
  if (c->deferred != NULL) {
    c->deferred->conn = NULL;
    c->deferred = NULL;
  }
  pkid_http_server *srv = c->srv;
  if (c->prev != NULL) c->prev->next = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  if (srv->conns == c) srv->conns = c->next;
  if (srv->conns_tail == c) srv->conns_tail = c->prev;
  srv->num_conns--;
  pki_addr_count_remove(srv->per_address, (const struct sockaddr *)&c->addr);
  uv_timer_stop(&c->timer);
  c->handles_open = 2;
  uv_close((uv_handle_t *)&c->timer, on_closed);
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* make_room closes the longest-open idle connection, if there is one
 * among the oldest few: an idle keep-alive connection is worth less than a
 * new client. */
static int make_room(pkid_http_server *srv) {
  int looked = 0;
  for (pkid_http_conn *c = srv->conns_tail; c != NULL && looked < 64; c = c->prev, looked++) {
    if (!c->in_request && !c->writing && !c->closing && c->deferred == NULL) {
      conn_close(c);
      return 1;
    }
  }
  return 0;
}

/* admit: one address may hold max_conns_per_address; at max_conns, a
 * new connection displaces an idle one or is refused. */
static int admit(pkid_http_server *srv, const struct sockaddr *addr) {
  if (srv->stopping) return 0;
  if (!pki_addr_count_add(srv->per_address, addr, srv->limits.max_conns_per_address)) {
    return 0;
  }
  if (srv->num_conns >= srv->limits.max_conns && !make_room(srv)) {
    pki_addr_count_remove(srv->per_address, addr);
    return 0;
  }
  return 1;
}

/* tls_accept gives |c| its SSL, as the server side, over memory BIOs. */
static int tls_accept(pkid_http_conn *c) {
  BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
  c->ssl = SSL_new(c->srv->ssl_ctx);
  c->wire_in = malloc(READ_BUF);
  if (c->ssl == NULL || rbio == NULL || wbio == NULL || c->wire_in == NULL) {
    BIO_free(rbio);
    BIO_free(wbio);
    return 0;
  }
  SSL_set_bio(c->ssl, rbio, wbio);
  SSL_set_accept_state(c->ssl);
  return 1;
}

static void on_connection(uv_stream_t *listener, int status) {
  pkid_http_server *srv = listener->data;
  if (status < 0) return;
  pkid_http_conn *c = calloc(1, sizeof(*c) + srv->limits.max_url_bytes + 1);
  if (c == NULL) return;
  c->srv = srv;
  uv_tcp_init(srv->loop, &c->tcp);
  c->tcp.data = c;
  int addr_len = sizeof(c->addr);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
      uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->addr, &addr_len) != 0 ||
      !admit(srv, (const struct sockaddr *)&c->addr)) {
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (srv->ssl_ctx != NULL && !tls_accept(c)) {
    pki_addr_count_remove(srv->per_address, (const struct sockaddr *)&c->addr);
    SSL_free(c->ssl);
    free(c->wire_in);
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  uv_timer_init(srv->loop, &c->timer);
  c->timer.data = c;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->keep_alive = 1;
  c->next = srv->conns;
  if (srv->conns != NULL) srv->conns->prev = c;
  srv->conns = c;
  if (srv->conns_tail == NULL) srv->conns_tail = c;
  srv->num_conns++;
  srv->conns_alive++;
  uv_timer_start(&c->timer, on_timer, srv->limits.idle_timeout_ms, 0);
  start_reading(c);
}

pkid_http_server *pkid_http_new(uv_loop_t *loop, const pkid_http_limits *limits) {
  pkid_http_server *srv = calloc(1, sizeof(*srv));
  if (srv == NULL) return NULL;
  if ((srv->per_address = pki_addr_count_new()) == NULL) {
    free(srv);
    return NULL;
  }
  srv->loop = loop;
  srv->limits = limits != NULL ? *limits : pkid_http_default_limits();
  return srv;
}

int pkid_http_route(pkid_http_server *srv, const char *method, const char *path,
                    pkid_http_handler handler, void *ctx) {
  if (srv->num_routes == PKID_HTTP_MAX_ROUTES || path[0] != '/') return 0;
  route *r = &srv->routes[srv->num_routes++];
  r->method = method;
  r->path = path;
  r->path_len = strlen(path);
  r->prefix = path[r->path_len - 1] == '/';
  r->handler = handler;
  r->ctx = ctx;
  return 1;
}

static void on_server_handle_closed(uv_handle_t *handle) {
  pkid_http_server *srv = handle->data;
  srv->handles_open--;
  server_check_stopped(srv);
}

int pkid_http_listen(pkid_http_server *srv, const char *host_port, pki_err *err) {
  struct sockaddr_storage addr;
  if (srv->listening) {
    PKI_ERR(err, PKI_ERR_INVALID, "the HTTP server is already listening");
    return 0;
  }
  if (!pki_hostport_parse(&addr, host_port, err)) return 0;
  uv_tcp_init(srv->loop, &srv->listener);
  uv_timer_init(srv->loop, &srv->grace);
  srv->listener.data = srv;
  srv->grace.data = srv;
  srv->handles_open = 2;
  srv->listening = 1;
  int rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot listen on %s: %s", host_port, uv_strerror(rc));
    return 0;
  }
  return 1;
}

int pkid_http_address(const pkid_http_server *srv, char *out, size_t out_size) {
  struct sockaddr_storage bound;
  int bound_len = sizeof(bound);
  if (!srv->listening ||
      uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &bound_len) != 0) {
    if (out_size > 0) out[0] = '\0';
    return 0;
  }
  return pki_hostport_format(out, out_size, (const struct sockaddr *)&bound);
}

unsigned pkid_http_num_conns(const pkid_http_server *srv) { return srv->num_conns; }

static void on_grace(uv_timer_t *t) {
  pkid_http_server *srv = t->data;
  while (srv->conns != NULL) conn_close(srv->conns);
}

void pkid_http_stop(pkid_http_server *srv, unsigned grace_ms, void (*done)(void *arg),
                    void *arg) {
  if (srv->stopping) return;
  srv->stopping = 1;
  srv->done = done;
  srv->done_arg = arg;
  if (srv->listening) {
    uv_close((uv_handle_t *)&srv->listener, on_server_handle_closed);
  }
  for (pkid_http_conn *c = srv->conns; c != NULL;) {
    pkid_http_conn *next = c->next;
    if (c->deferred != NULL) {
      /* In progress too: its answer says "Connection: close" and the
       * connection closes after, or the grace timer closes it. */
    } else if (!c->in_request && pending_out(c) == 0) {
      conn_close(c);
    } else if (!c->in_request) {
      /* Answers are on their way: close once they are written. */
      c->close_after = 1;
      flush(c);
    }
    /* A request in progress is answered with "Connection: close". */
    c = next;
  }
  if (srv->listening && srv->conns != NULL) {
    uv_timer_start(&srv->grace, on_grace, grace_ms, 0);
  }
  server_check_stopped(srv);
}
