/* conn.h: one client connection: TCP (libuv), TLS (BoringSSL, memory
 * BIOs), HTTP/2 (nghttp2), and the gRPC calls on its streams.
 *
 * Bytes flow: uv read -> TLS record layer (rbio) -> SSL_read -> nghttp2
 * -> calls; and back: nghttp2 -> SSL_write -> wbio -> uv_write. All on the
 * loop thread. A connection frees itself after its TCP handle closes. */
#ifndef PKID_SERVER_CONN_H
#define PKID_SERVER_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "lib/serial.h"
#include "server/grpc.h"

struct pkid_server;

typedef struct pkid_conn {
  uv_tcp_t tcp;
  uv_timer_t idle;
  struct pkid_server *server;
  SSL *ssl;
  BIO *rbio, *wbio;
  nghttp2_session *h2;
  int handshake_done;
  int in_recv;  /* inside nghttp2_session_mem_recv: flush afterwards */
  int closing;
  int handles_open; /* counted down by close callbacks; freed at 0 */
  int dirty;        /* has output waiting for the check phase */
  struct pkid_conn *next_dirty;
  /* The verified client identity: the leaf's URI SAN, "" when none. */
  char identity[512];
  uint8_t *peer_leaf; /* the client's leaf certificate, DER */
  size_t peer_leaf_len;
  pki_serial peer_serial; /* its serial; len 0 when none */
  pkid_call *calls; /* open streams */
  unsigned num_calls;
  struct pkid_conn *next, *prev;
} pkid_conn;

/* pkid_conn_accept accepts a pending connection on |listener|. */
void pkid_conn_accept(struct pkid_server *server, uv_stream_t *listener);

/* pkid_conn_kick schedules writing out whatever HTTP/2 has to send: it
 * happens in the loop's check phase (pkid_conn_flush_dirty), once per
 * iteration whatever the number of kicks. */
void pkid_conn_kick(pkid_conn *conn);

/* pkid_conn_flush_dirty writes out every kicked connection; the server's
 * uv_check callback. */
void pkid_conn_flush_dirty(struct pkid_server *server);

/* pkid_conn_submit_response and pkid_conn_resume are how a call hands
 * headers and body to HTTP/2. */
int pkid_conn_submit_response(pkid_conn *conn, pkid_call *call, const nghttp2_nv *nva,
                              size_t nvlen, int with_body);
void pkid_conn_resume(pkid_conn *conn, pkid_call *call);
int pkid_conn_submit_trailers(pkid_conn *conn, pkid_call *call, const nghttp2_nv *nva,
                              size_t nvlen);

/* pkid_conn_goaway starts a graceful shutdown of |conn|: GOAWAY now, close
 * when its calls are done. */
void pkid_conn_goaway(pkid_conn *conn);

/* pkid_conn_close closes at once. */
void pkid_conn_close(pkid_conn *conn);

#endif /* PKID_SERVER_CONN_H */
