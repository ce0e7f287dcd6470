/* conn.c: the transport's listener and connections (transport.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/buf.h>
#include <openssl/err.h>

#include "lib/addr_count.h"
#include "lib/hostport.h"
#include "lib/log.h"
#include "server/metrics/metrics.h"
#include "server/transport/tls.h"
#include "server/transport/transport.h"

/* Each TLS record is at most 16 KiB; read in chunks of that. */
#define CHUNK 16384

struct pkid_conn {
  uv_tcp_t tcp;
  uv_timer_t timer; /* the handshake's deadline, then the session's */
  pkid_transport *t;
  SSL *ssl;
  BIO *rbio, *wbio;
  pkid_peer peer;
  void *session; /* the upper layer's, once TLS is up */
  struct sockaddr_storage addr; /* the peer's, as counted per address */
  int counted;                   /* counted in the transport's per_address */
  int closing;
  int handles_open; /* counted down by close callbacks; freed at 0 */
  int dirty;        /* kicked: on_flush in the check phase */
  int congested;    /* too much output waiting: not read, nothing produced */
  int starved;      /* the session stopped producing for want of room */
  pkid_conn *next_dirty;
  pkid_conn *next, *prev;
  /* Still in its handshake: in the transport's oldest-first list. */
  pkid_conn *next_hs, *prev_hs;
  int in_handshake_list;
};

struct pkid_transport {
  uv_loop_t *loop;
  uv_tcp_t listener;
  int listening;
  uv_check_t flush; /* writes the kicked connections once per iteration */
  SSL_CTX *ssl_ctx;
  pkid_transport_limits limits;
  pkid_conn_handler handler;
  void *ctx;
  pkid_conn *conns;
  unsigned num_conns;
  pkid_conn *dirty;
  pki_addr_count *per_address;
  pkid_conn *handshaking, *handshaking_tail; /* oldest first */
  /* Every read lands here: libuv calls on_alloc, reads, and calls on_read,
   * which hands the bytes to TLS (BIO_write copies them) before the next
   * on_alloc, so one buffer for the loop does, and no read allocates. */
  char read_buf[CHUNK];
};

/* Handshakes refused: anyone can cause them, so their lines are bounded. */
static pki_log_limit g_refused_log = {.per_second = 20};

static void on_closed(uv_handle_t *handle);
static void handshake_list_remove(pkid_transport *t, pkid_conn *conn);

/* --- writing ------------------------------------------------------------------ */

/* One allocation per write: the request and the bytes it carries. */
typedef struct write_req {
  uv_write_t req;
  uv_buf_t buf;
  pkid_conn *conn;
  char data[];
} write_req;

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);

/* queued is what the connection holds for the peer: encrypted and not yet
 * handed to libuv (wbio), and handed to libuv but not yet to the kernel. */
static size_t queued(const pkid_conn *conn) {
  return BIO_pending(conn->wbio) + uv_stream_get_write_queue_size((uv_stream_t *)&conn->tcp);
}

int pkid_conn_writable(pkid_conn *conn) {
  if (conn->closing) return 0;
  if (queued(conn) < conn->t->limits.max_write_queue) return 1;
  conn->starved = 1;
  return 0;
}

/* check_congestion stops reading a connection whose peer does not read
 * what it is sent, and starts again once it has read most of it: what one
 * connection can make pkid hold is bounded by max_write_queue. */
static void check_congestion(pkid_conn *conn) {
  size_t q = queued(conn), high = conn->t->limits.max_write_queue;
  if (!conn->congested && q >= high) {
    conn->congested = 1;
    uv_read_stop((uv_stream_t *)&conn->tcp);
  } else if (conn->congested && q <= high / 4) {
    conn->congested = 0;
    conn->starved = 0;
    uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
    pkid_conn_kick(conn); /* the session may produce again */
  } else if (!conn->congested && conn->starved && q < high) {
    /* The session stopped at the limit and the queue drained before it
     * was ever seen full here: without this kick a large answer (a
     * revocation by key listing thousands of serials) would wait for the
     * peer to send something, and its stream be reset at the deadline. */
    conn->starved = 0;
    pkid_conn_kick(conn);
  }
}

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  pkid_conn *conn = w->conn;
  free(w);
  /* A failed write shows up as a read error or EOF too. A cancelled one
   * (status UV_ECANCELED) belongs to a connection being closed. */
  if (status == 0 && !conn->closing) check_congestion(conn);
}

/* queue_write hands a copy of |data| to libuv, which writes it once the
 * socket takes more. */
static int queue_write(pkid_conn *conn, const char *data, size_t len) {
  write_req *w = malloc(sizeof(*w) + len);
  if (w == NULL) return 0;
  memcpy(w->data, data, len);
  w->buf = uv_buf_init(w->data, (unsigned)len);
  w->conn = conn;
  if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, &w->buf, 1, on_written) != 0) {
    free(w);
    return 0;
  }
  return 1;
}

/* flush_tls sends what TLS has produced (wbio) to the socket; 0 when the
 * socket cannot take it (the caller closes the connection). The bytes go
 * to the socket straight from the memory BIO (uv_try_write, while libuv
 * holds nothing queued): no copy, no request to allocate, and no write
 * callback, whose emptied queue costs libuv an epoll_ctl each time. Only
 * what the socket does not take is copied and queued. */
static int flush_tls(pkid_conn *conn) {
  BUF_MEM *pending;
  BIO_get_mem_ptr(conn->wbio, &pending);
  if (pending->length > 0) {
    uv_buf_t b = uv_buf_init(pending->data, (unsigned)pending->length);
    /* UV_EAGAIN: the socket is full, or earlier writes are still queued
     * (uv_try_write then writes nothing, so the order holds). */
    int sent = uv_try_write((uv_stream_t *)&conn->tcp, &b, 1);
    if (sent < 0 && sent != UV_EAGAIN) return 0;
    size_t done = sent > 0 ? (size_t)sent : 0;
    if (done < pending->length &&
        !queue_write(conn, pending->data + done, pending->length - done)) {
      return 0;
    }
    pending->length = 0; /* all of it is the kernel's or libuv's now */
  }
  check_congestion(conn);
  return 1;
}

int pkid_conn_write(pkid_conn *conn, const uint8_t *data, size_t len) {
  if (conn->closing) return 0;
  /* Memory BIOs never block, so SSL_write takes all of it. */
  if (SSL_write(conn->ssl, data, (int)len) != (int)len) {
    ERR_clear_error();
    pkid_conn_close(conn);
    return 0;
  }
  return 1;
}

void pkid_conn_kick(pkid_conn *conn) {
  if (conn->dirty || conn->closing) return;
  conn->dirty = 1;
  conn->next_dirty = conn->t->dirty;
  conn->t->dirty = conn;
}

static void on_check(uv_check_t *check) {
  pkid_transport *t = check->data;
  while (t->dirty != NULL) {
    pkid_conn *conn = t->dirty;
    t->dirty = conn->next_dirty;
    conn->dirty = 0;
    conn->next_dirty = NULL;
    if (conn->session != NULL && !conn->congested) t->handler.on_flush(conn->session);
    if (!conn->closing && !flush_tls(conn)) pkid_conn_close(conn);
  }
}

/* --- the connection's timer ------------------------------------------------------ */

static void on_timer(uv_timer_t *timer) {
  pkid_conn *conn = timer->data;
  if (conn->session == NULL) {
    /* Not through the handshake in time. */
    pkid_conn_close(conn);
    return;
  }
  conn->t->handler.on_timeout(conn->session);
}

void pkid_conn_set_timeout(pkid_conn *conn, uint64_t ms) {
  if (conn->closing) return;
  if (ms == 0) {
    uv_timer_stop(&conn->timer);
  } else {
    uv_timer_start(&conn->timer, on_timer, ms, 0);
  }
}

/* --- reading ----------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  pkid_conn *conn = handle->data;
  *buf = uv_buf_init(conn->t->read_buf, sizeof(conn->t->read_buf));
}

/* on_handshake runs once TLS is up: it records who the client is and
 * hands the connection to the layer above. */
static int on_handshake(pkid_conn *conn) {
  const uint8_t *alpn;
  unsigned alpn_len;
  SSL_get0_alpn_selected(conn->ssl, &alpn, &alpn_len);
  if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
    if (pki_log_allow(&g_refused_log)) {
      pki_log("warn", "tls_refused", "peer", conn->peer.address, "reason",
              "client did not negotiate h2", "suppressed", pki_log_suppressed(&g_refused_log),
              NULL);
    }
    return 0;
  }
  pki_err err;
  if (!pkid_tls_peer(&conn->peer, conn->ssl, &err)) {
    pki_log("warn", "conn_refused", "peer", conn->peer.address, "reason", err.msg, NULL);
    return 0;
  }
  uv_timer_stop(&conn->timer);
  handshake_list_remove(conn->t, conn);
  conn->session = conn->t->handler.on_open(conn->t->ctx, conn, &conn->peer);
  return conn->session != NULL;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  pkid_conn *conn = stream->data;
  if (nread < 0) {
    pkid_conn_close(conn);
    return;
  }
  if (nread == 0 || conn->closing) return;
  BIO_write(conn->rbio, buf->base, (int)nread);

  if (conn->session == NULL) {
    int rc = SSL_do_handshake(conn->ssl);
    if (rc != 1) {
      int e = SSL_get_error(conn->ssl, rc);
      if (e == SSL_ERROR_WANT_READ) {
        /* Handshake messages to send, or nothing yet. */
        if (!flush_tls(conn)) pkid_conn_close(conn);
      } else {
        char why[160];
        ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
        ERR_clear_error();
        if (pki_log_allow(&g_refused_log)) {
          pki_log("info", "tls_refused", "peer", conn->peer.address, "reason", why,
                  "suppressed", pki_log_suppressed(&g_refused_log), NULL);
        }
        pkid_conn_close(conn); /* the alert goes out first */
      }
      return;
    }
    if (!flush_tls(conn) || !on_handshake(conn)) {
      pkid_conn_close(conn);
      return;
    }
  }
  uint8_t plain[CHUNK];
  for (;;) {
    int n = SSL_read(conn->ssl, plain, sizeof(plain));
    if (n > 0) {
      if (!conn->t->handler.on_data(conn->session, plain, (size_t)n)) {
        /* The session has said what it had to (a GOAWAY): send it, then close. */
        if (!conn->closing) conn->t->handler.on_flush(conn->session);
        pkid_conn_close(conn);
        return;
      }
      if (conn->closing) return;
      continue;
    }
    int e = SSL_get_error(conn->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ) break;
    /* close_notify or a fatal TLS error (its alert goes out first). */
    pkid_conn_close(conn);
    return;
  }
  pkid_conn_kick(conn);
}

/* --- life ----------------------------------------------------------------------------- */

/* The handshake list: connections not through TLS yet, oldest first, so
 * that at the connection limit the oldest can make room for a new one. */
static void handshake_list_add(pkid_transport *t, pkid_conn *conn) {
  conn->prev_hs = t->handshaking_tail;
  conn->next_hs = NULL;
  if (t->handshaking_tail != NULL) t->handshaking_tail->next_hs = conn;
  t->handshaking_tail = conn;
  if (t->handshaking == NULL) t->handshaking = conn;
  conn->in_handshake_list = 1;
}

static void handshake_list_remove(pkid_transport *t, pkid_conn *conn) {
  if (!conn->in_handshake_list) return;
  if (conn->prev_hs != NULL) conn->prev_hs->next_hs = conn->next_hs;
  if (conn->next_hs != NULL) conn->next_hs->prev_hs = conn->prev_hs;
  if (t->handshaking == conn) t->handshaking = conn->next_hs;
  if (t->handshaking_tail == conn) t->handshaking_tail = conn->prev_hs;
  conn->in_handshake_list = 0;
}

static void refused(const char *reason) {
  const char *labels[] = {reason};
  pkid_counter_add(pkid_metric_child(pkid_m.conn_refused, labels), 1);
}

/* admit decides whether a new connection from |addr| may stay, making
 * room for it if it can. A flood of connections that never finish their
 * handshake (no ClientHello) only ever displaces itself: each new one
 * takes the place of the oldest still waiting. */
static int admit(pkid_transport *t, const struct sockaddr *addr) {
  if (!pki_addr_count_add(t->per_address, addr, t->limits.max_conns_per_address)) {
    refused("per_address");
    return 0;
  }
  if (t->num_conns >= t->limits.max_conns) {
    if (t->handshaking == NULL) {
      pki_addr_count_remove(t->per_address, addr);
      refused("max_conns");
      return 0;
    }
    refused("evicted_in_handshake");
    pkid_conn_close(t->handshaking);
  }
  return 1;
}

static void on_connection(uv_stream_t *listener, int status) {
  pkid_transport *t = listener->data;
  if (status < 0) return;
  pkid_conn *conn = calloc(1, sizeof(*conn));
  if (conn == NULL) return;
  conn->t = t;
  uv_tcp_init(t->loop, &conn->tcp);
  conn->tcp.data = conn;
  int addr_len = sizeof(conn->addr);
  if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0 ||
      uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&conn->addr, &addr_len) != 0 ||
      !admit(t, (const struct sockaddr *)&conn->addr)) {
    uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
    return;
  }
  conn->counted = 1;
  pki_hostport_format(conn->peer.address, sizeof(conn->peer.address),
                      (const struct sockaddr *)&conn->addr);
  uv_tcp_nodelay(&conn->tcp, 1);
  uv_timer_init(t->loop, &conn->timer);
  conn->timer.data = conn;
  conn->handles_open = 2;
  conn->ssl = SSL_new(t->ssl_ctx);
  conn->rbio = BIO_new(BIO_s_mem());
  conn->wbio = BIO_new(BIO_s_mem());
  if (conn->ssl == NULL || conn->rbio == NULL || conn->wbio == NULL) {
    BIO_free(conn->rbio);
    BIO_free(conn->wbio);
    SSL_free(conn->ssl);
    pki_addr_count_remove(t->per_address, (const struct sockaddr *)&conn->addr);
    uv_close((uv_handle_t *)&conn->timer, on_closed);
    uv_close((uv_handle_t *)&conn->tcp, on_closed);
    return;
  }
  /* A memory BIO reports "retry" when empty instead of EOF. */
  BIO_set_mem_eof_return(conn->rbio, -1);
  BIO_set_mem_eof_return(conn->wbio, -1);
  SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);
  SSL_set_accept_state(conn->ssl);
  conn->next = t->conns;
  if (t->conns != NULL) t->conns->prev = conn;
  t->conns = conn;
  t->num_conns++;
  handshake_list_add(t, conn);
  pkid_gauge_set(pkid_m.connections, (double)t->num_conns);
  uv_timer_start(&conn->timer, on_timer, t->limits.handshake_timeout_ms, 0);
  uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
}

/* on_closed frees the connection once both of its handles have closed. */
static void on_closed(uv_handle_t *handle) {
  pkid_conn *conn = handle->data;
  if (--conn->handles_open == 0) {
    free(conn->peer.leaf);
    free(conn);
  }
}

void pkid_conn_close(pkid_conn *conn) {
  if (conn->closing) return;
  conn->closing = 1;
  flush_tls(conn); /* what is encrypted already: an alert, a GOAWAY */
  pkid_transport *t = conn->t;
  /* Out of the list of connections waiting to write. */
  for (pkid_conn **p = &t->dirty; *p != NULL; p = &(*p)->next_dirty) {
    if (*p == conn) {
      *p = conn->next_dirty;
      break;
    }
  }
  conn->dirty = 0;
  if (conn->session != NULL) {
    void *session = conn->session;
    conn->session = NULL;
    t->handler.on_close(session);
  }
  SSL_free(conn->ssl); /* frees both BIOs */
  conn->ssl = NULL;
  handshake_list_remove(t, conn);
  if (conn->counted) pki_addr_count_remove(t->per_address, (const struct sockaddr *)&conn->addr);
  conn->counted = 0;
  if (conn->prev != NULL) conn->prev->next = conn->next;
  if (conn->next != NULL) conn->next->prev = conn->prev;
  if (t->conns == conn) t->conns = conn->next;
  t->num_conns--;
  pkid_gauge_set(pkid_m.connections, (double)t->num_conns);
  uv_timer_stop(&conn->timer);
  uv_close((uv_handle_t *)&conn->timer, on_closed);
  uv_close((uv_handle_t *)&conn->tcp, on_closed);
}

pkid_transport *pkid_transport_new(uv_loop_t *loop, SSL_CTX *ssl_ctx,
                                   const pkid_transport_limits *limits,
                                   const pkid_conn_handler *handler, void *ctx, pki_err *err) {
  pkid_transport *t = calloc(1, sizeof(*t));
  if (t == NULL || (t->per_address = pki_addr_count_new()) == NULL) {
    free(t);
    PKI_ERR_OOM(err);
    return NULL;
  }
  t->loop = loop;
  t->limits = *limits;
  t->handler = *handler;
  t->ctx = ctx;
  SSL_CTX_up_ref(ssl_ctx);
  t->ssl_ctx = ssl_ctx;
  uv_check_init(loop, &t->flush);
  t->flush.data = t;
  uv_check_start(&t->flush, on_check);
  uv_tcp_init(loop, &t->listener);
  t->listener.data = t;
  return t;
}

int pkid_transport_listen(pkid_transport *t, const char *host_port, char *out_bound,
                          size_t out_size, pki_err *err) {
  struct sockaddr_storage addr;
  if (!pki_hostport_parse(&addr, host_port, err)) return 0;
  int rc = uv_tcp_bind(&t->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&t->listener, 1024, on_connection);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_IO, "cannot listen on %s: %s", host_port, uv_strerror(rc));
    return 0;
  }
  t->listening = 1;
  struct sockaddr_storage bound;
  int bound_len = sizeof(bound);
  uv_tcp_getsockname(&t->listener, (struct sockaddr *)&bound, &bound_len);
  pki_hostport_format(out_bound, out_size, (const struct sockaddr *)&bound);
  return 1;
}

void pkid_transport_set_ssl_ctx(pkid_transport *t, SSL_CTX *ssl_ctx) {
  /* Each open connection holds a reference to the context it began with. */
  SSL_CTX_up_ref(ssl_ctx);
  SSL_CTX_free(t->ssl_ctx);
  t->ssl_ctx = ssl_ctx;
}

void pkid_transport_stop_accepting(pkid_transport *t) {
  if (!uv_is_closing((uv_handle_t *)&t->listener)) uv_close((uv_handle_t *)&t->listener, NULL);
}

void pkid_transport_close_all(pkid_transport *t) {
  while (t->conns != NULL) pkid_conn_close(t->conns);
}

unsigned pkid_transport_num_conns(const pkid_transport *t) { return t->num_conns; }

static void on_transport_closed(uv_handle_t *handle) {
  pkid_transport *t = handle->data;
  SSL_CTX_free(t->ssl_ctx);
  pki_addr_count_free(t->per_address);
  free(t);
}

void pkid_transport_free(pkid_transport *t) {
  if (t == NULL) return;
  pkid_transport_close_all(t);
  pkid_transport_stop_accepting(t);
  uv_check_stop(&t->flush);
  uv_close((uv_handle_t *)&t->flush, on_transport_closed);
}
