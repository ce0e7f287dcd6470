#include "server/conn.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "lib/cert_info.h"
#include "server/log.h"
#include "server/server.h"
#include "server/tls.h"

/* Each TLS record is at most 16 KiB; read and write in chunks of that. */
#define CHUNK 16384

static void on_closed(uv_handle_t *handle);

/* on_idle closes a connection that has had no call for the idle timeout,
 * or that has not finished its handshake in time. */
static void on_idle(uv_timer_t *timer) {
  pkid_conn *conn = timer->data;
  if (conn->handshake_done) {
    pkid_conn_goaway(conn);
  } else {
    pkid_conn_close(conn);
  }
}

/* --- writing --------------------------------------------------------- */

typedef struct write_req {
  uv_write_t req;
  uv_buf_t buf;
} write_req;

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  free(w->buf.base);
  free(w);
  (void)status; /* a failed write shows up as a read error or EOF too */
}

/* flush_tls sends what TLS has produced (wbio) to the socket. */
static void flush_tls(pkid_conn *conn) {
  size_t pending;
  while (!conn->closing && (pending = BIO_pending(conn->wbio)) > 0) {
    write_req *w = malloc(sizeof(*w));
    char *data = malloc(pending);
    if (w == NULL || data == NULL) {
      free(w);
      free(data);
      pkid_conn_close(conn);
      return;
    }
    int n = BIO_read(conn->wbio, data, (int)pending);
    if (n <= 0) {
      free(w);
      free(data);
      return;
    }
    w->buf = uv_buf_init(data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, &w->buf, 1, on_written) != 0) {
      free(data);
      free(w);
      pkid_conn_close(conn);
      return;
    }
  }
}

/* flush_h2 moves HTTP/2 output through TLS to the socket. */
static void flush_h2(pkid_conn *conn) {
  if (conn->closing || conn->h2 == NULL) return;
  for (;;) {
    const uint8_t *data;
    ssize_t n = nghttp2_session_mem_send(conn->h2, &data);
    if (n < 0) {
      pkid_conn_close(conn);
      return;
    }
    if (n == 0) break;
    /* Memory BIOs never block, so SSL_write takes all of it. */
    if (SSL_write(conn->ssl, data, (int)n) != (int)n) {
      ERR_clear_error();
      pkid_conn_close(conn);
      return;
    }
  }
  flush_tls(conn);
  /* Done when both sides have nothing more to say (GOAWAY sent, or the
   * peer's GOAWAY received and our streams finished). */
  if (!conn->closing && !nghttp2_session_want_read(conn->h2) &&
      !nghttp2_session_want_write(conn->h2)) {
    pkid_conn_close(conn);
  }
}

void pkid_conn_kick(pkid_conn *conn) {
  /* Writes wait for the loop's check phase, once per iteration: answers
   * that complete together (a batch from the workers, several requests in
   * one read) leave in one TLS record run and one write(2). */
  if (conn->dirty || conn->closing) return;
  conn->dirty = 1;
  conn->next_dirty = conn->server->dirty;
  conn->server->dirty = conn;
}

void pkid_conn_flush_dirty(pkid_server *server) {
  while (server->dirty != NULL) {
    pkid_conn *conn = server->dirty;
    server->dirty = conn->next_dirty;
    conn->dirty = 0;
    conn->next_dirty = NULL;
    flush_h2(conn);
  }
}

/* --- HTTP/2 callbacks --------------------------------------------------- */

static pkid_call *call_of(nghttp2_session *session, int32_t stream_id) {
  return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame,
                            void *user_data) {
  pkid_conn *conn = user_data;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  pkid_call *call = pkid_call_new(conn, frame->hd.stream_id);
  if (call == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
  call->next = conn->calls;
  if (conn->calls != NULL) conn->calls->prev = call;
  conn->calls = call;
  conn->num_calls++;
  uv_timer_stop(&conn->idle);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t name_len, const uint8_t *value,
                     size_t value_len, uint8_t flags, void *user_data) {
  (void)flags;
  (void)user_data;
  pkid_call *call = call_of(session, frame->hd.stream_id);
  if (call != NULL && frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    pkid_call_header(call, name, name_len, value, value_len);
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user_data) {
  (void)user_data;
  pkid_call *call = call_of(session, frame->hd.stream_id);
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

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data) {
  (void)flags;
  (void)user_data;
  pkid_call *call = call_of(session, stream_id);
  if (call != NULL) pkid_call_data(call, data, len);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id,
                           uint32_t error_code, void *user_data) {
  (void)error_code;
  pkid_conn *conn = user_data;
  pkid_call *call = call_of(session, stream_id);
  if (call == NULL) return 0;
  nghttp2_session_set_stream_user_data(session, stream_id, NULL);
  if (call->prev != NULL) call->prev->next = call->next;
  if (call->next != NULL) call->next->prev = call->prev;
  if (conn->calls == call) conn->calls = call->next;
  conn->num_calls--;
  pkid_call_free(call);
  if (conn->num_calls == 0 && !conn->closing) {
    uv_timer_start(&conn->idle, on_idle, conn->server->limits.idle_timeout_ms, 0);
  }
  return 0;
}

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                         size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                         void *user_data) {
  (void)session;
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

int pkid_conn_submit_response(pkid_conn *conn, pkid_call *call, const nghttp2_nv *nva,
                              size_t nvlen, int with_body) {
  nghttp2_data_provider body;
  body.source.ptr = call;
  body.read_callback = read_body;
  return nghttp2_submit_response(conn->h2, call->stream_id, nva, nvlen,
                                 with_body ? &body : NULL) == 0;
}

void pkid_conn_resume(pkid_conn *conn, pkid_call *call) {
  nghttp2_session_resume_data(conn->h2, call->stream_id);
}

int pkid_conn_submit_trailers(pkid_conn *conn, pkid_call *call, const nghttp2_nv *nva,
                              size_t nvlen) {
  return nghttp2_submit_trailer(conn->h2, call->stream_id, nva, nvlen) == 0;
}

/* --- TLS ---------------------------------------------------------------- */

/* on_handshake runs once TLS is up: it records who the client is and
 * starts HTTP/2 with our SETTINGS. */
static int on_handshake(pkid_conn *conn) {
  const uint8_t *alpn;
  unsigned alpn_len;
  SSL_get0_alpn_selected(conn->ssl, &alpn, &alpn_len);
  if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
    pkid_log("warn", "tls_refused", "reason", "client did not negotiate h2", NULL);
    return 0;
  }
  size_t leaf_len;
  const uint8_t *leaf = pkid_tls_peer_leaf(conn->ssl, &leaf_len);
  if (leaf != NULL) {
    pki_cert_info info;
    pki_err err;
    conn->peer_leaf = malloc(leaf_len);
    if (conn->peer_leaf == NULL) return 0;
    memcpy(conn->peer_leaf, leaf, leaf_len);
    conn->peer_leaf_len = leaf_len;
    if (pki_cert_info_parse(&info, conn->peer_leaf, leaf_len, &err)) {
      const char *id = pki_cert_info_identity(&info);
      if (id != NULL && strlen(id) < sizeof(conn->identity)) {
        memcpy(conn->identity, id, strlen(id) + 1);
      }
      /* The serial, without a sign octet, as the status index keys it. */
      CBS serial = info.serial;
      if (CBS_len(&serial) > 1 && CBS_data(&serial)[0] == 0) CBS_skip(&serial, 1);
      if (CBS_len(&serial) <= sizeof(conn->peer_serial.bytes)) {
        memcpy(conn->peer_serial.bytes, CBS_data(&serial), CBS_len(&serial));
        conn->peer_serial.len = CBS_len(&serial);
      }
      pki_cert_info_cleanup(&info);
    }
  }
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, conn->server->limits.max_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, conn->server->limits.max_header_bytes},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
  };
  if (nghttp2_submit_settings(conn->h2, NGHTTP2_FLAG_NONE, settings,
                              sizeof(settings) / sizeof(settings[0])) != 0) {
    return 0;
  }
  /* A larger connection window lets bulk streams run without waiting. */
  nghttp2_session_set_local_window_size(conn->h2, NGHTTP2_FLAG_NONE, 0, 8 << 20);
  conn->handshake_done = 1;
  uv_timer_start(&conn->idle, on_idle, conn->server->limits.idle_timeout_ms, 0);
  return 1;
}

/* --- reading -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)handle;
  (void)suggested;
  buf->base = malloc(CHUNK);
  buf->len = buf->base != NULL ? CHUNK : 0;
}

/* feed_h2 gives decrypted bytes to the HTTP/2 session. */
static int feed_h2(pkid_conn *conn, const uint8_t *data, size_t len) {
  conn->in_recv = 1;
  ssize_t n = nghttp2_session_mem_recv(conn->h2, data, len);
  conn->in_recv = 0;
  if (n < 0 || (size_t)n != len) {
    /* A protocol error: nghttp2 has queued GOAWAY; send it, then close. */
    flush_h2(conn);
    pkid_conn_close(conn);
    return 0;
  }
  return 1;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  pkid_conn *conn = stream->data;
  if (nread < 0) {
    free(buf->base);
    pkid_conn_close(conn);
    return;
  }
  if (nread == 0 || conn->closing) {
    free(buf->base);
    return;
  }
  BIO_write(conn->rbio, buf->base, (int)nread);
  free(buf->base);

  if (!conn->handshake_done) {
    int rc = SSL_do_handshake(conn->ssl);
    if (rc != 1) {
      int e = SSL_get_error(conn->ssl, rc);
      flush_tls(conn); /* handshake messages, or the alert */
      if (e != SSL_ERROR_WANT_READ) {
        char why[160];
        ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
        ERR_clear_error();
        pkid_log("info", "tls_refused", "reason", why, NULL);
        pkid_conn_close(conn);
      }
      return;
    }
    flush_tls(conn);
    if (!on_handshake(conn)) {
      pkid_conn_close(conn);
      return;
    }
  }
  uint8_t plain[CHUNK];
  for (;;) {
    int n = SSL_read(conn->ssl, plain, sizeof(plain));
    if (n > 0) {
      if (!feed_h2(conn, plain, (size_t)n)) return;
      continue;
    }
    int e = SSL_get_error(conn->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ) break;
    /* close_notify or a fatal TLS error. */
    flush_tls(conn);
    pkid_conn_close(conn);
    return;
  }
  pkid_conn_kick(conn);
}

/* --- life ------------------------------------------------------------------ */

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

static nghttp2_option *h2_options(const pkid_server *server) {
  static nghttp2_option *opt;
  if (opt == NULL) {
    nghttp2_option_new(&opt);
    /* Refuse new streams past our limit at once rather than queueing them,
     * and bound what a peer can make us buffer. */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_max_settings(opt, 32);
    (void)server;
  }
  return opt;
}

void pkid_conn_accept(pkid_server *server, uv_stream_t *listener) {
  pkid_conn *conn = calloc(1, sizeof(*conn));
  if (conn == NULL) return;
  conn->server = server;
  uv_tcp_init(server->loop, &conn->tcp);
  conn->tcp.data = conn;
  if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0) {
    uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
    return;
  }
  if (server->num_conns >= server->limits.max_conns || server->draining) {
    uv_close((uv_handle_t *)&conn->tcp, (uv_close_cb)free);
    return;
  }
  uv_tcp_nodelay(&conn->tcp, 1);
  uv_timer_init(server->loop, &conn->idle);
  conn->idle.data = conn;
  conn->ssl = SSL_new(server->ssl_ctx);
  conn->rbio = BIO_new(BIO_s_mem());
  conn->wbio = BIO_new(BIO_s_mem());
  if (conn->ssl == NULL || conn->rbio == NULL || conn->wbio == NULL ||
      nghttp2_session_server_new2(&conn->h2, callbacks(), conn, h2_options(server)) != 0) {
    BIO_free(conn->rbio);
    BIO_free(conn->wbio);
    SSL_free(conn->ssl);
    conn->handles_open = 2;
    uv_close((uv_handle_t *)&conn->idle, on_closed);
    uv_close((uv_handle_t *)&conn->tcp, on_closed);
    return;
  }
  /* A memory BIO reports "retry" when empty instead of EOF. */
  BIO_set_mem_eof_return(conn->rbio, -1);
  BIO_set_mem_eof_return(conn->wbio, -1);
  SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);
  SSL_set_accept_state(conn->ssl);
  conn->next = server->conns;
  if (server->conns != NULL) server->conns->prev = conn;
  server->conns = conn;
  server->num_conns++;
  uv_timer_start(&conn->idle, on_idle, server->limits.handshake_timeout_ms, 0);
  uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
}

void pkid_conn_goaway(pkid_conn *conn) {
  if (conn->closing) return;
  if (!conn->handshake_done) {
    pkid_conn_close(conn);
    return;
  }
  /* The last stream id tells the client which calls we will finish. */
  nghttp2_submit_goaway(conn->h2, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(conn->h2),
                        NGHTTP2_NO_ERROR, NULL, 0);
  pkid_conn_kick(conn);
  if (!conn->closing && conn->num_calls == 0) {
    /* Nothing to finish: say goodbye and close. */
    flush_h2(conn);
    pkid_conn_close(conn);
  }
}

/* on_closed frees the connection once both of its handles have closed. */
static void on_closed(uv_handle_t *handle) {
  pkid_conn *conn = handle->data;
  if (--conn->handles_open == 0) {
    free(conn->peer_leaf);
    free(conn);
  }
}

void pkid_conn_close(pkid_conn *conn) {
  if (conn->closing) return;
  conn->closing = 1;
  /* Out of the list of connections waiting to write. */
  for (pkid_conn **p = &conn->server->dirty; *p != NULL; p = &(*p)->next_dirty) {
    if (*p == conn) {
      *p = conn->next_dirty;
      break;
    }
  }
  conn->dirty = 0;
  /* Calls still open: their pending work is detached, not cancelled. */
  pkid_call *call = conn->calls;
  while (call != NULL) {
    pkid_call *next = call->next;
    pkid_call_free(call);
    call = next;
  }
  conn->calls = NULL;
  conn->num_calls = 0;
  nghttp2_session_del(conn->h2);
  conn->h2 = NULL;
  SSL_free(conn->ssl); /* frees both BIOs */
  conn->ssl = NULL;
  pkid_server *server = conn->server;
  if (conn->prev != NULL) conn->prev->next = conn->next;
  if (conn->next != NULL) conn->next->prev = conn->prev;
  if (server->conns == conn) server->conns = conn->next;
  server->num_conns--;
  conn->handles_open = 2;
  uv_timer_stop(&conn->idle);
  uv_close((uv_handle_t *)&conn->idle, on_closed);
  uv_close((uv_handle_t *)&conn->tcp, on_closed);
}
