/* transport.h: pkid's gRPC listener and its connections: TCP (libuv) and
 * TLS (BoringSSL over memory BIOs). Above it, the rpc layer speaks HTTP/2
 * on each connection through a pkid_conn_handler; below, the sockets.
 *
 *   uv read -> TLS record layer (rbio) -> SSL_read -> handler->on_data
 *   handler->on_flush -> pkid_conn_write -> SSL_write -> wbio -> uv_write
 *
 * Output is written in the loop's check phase, once per iteration for each
 * connection that was kicked (pkid_conn_kick), whatever the number of
 * kicks: answers that complete together (a batch from the workers, several
 * requests in one read) leave in one run of TLS records and one write(2).
 *
 * Each connection has one timer: the handshake's deadline, then the upper
 * layer's (pkid_conn_set_timeout, e.g. to close idle connections).
 *
 * Errors: the listener's set-up returns 1/0 and a pki_err. What goes wrong
 * on one connection (a failed handshake, a read error, out of memory)
 * closes that connection, with a log line where it helps the operator;
 * nothing is returned. All on the loop thread. */
#ifndef PKID_SERVER_TRANSPORT_TRANSPORT_H
#define PKID_SERVER_TRANSPORT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "lib/err.h"
#include "server/transport/peer.h"

typedef struct pkid_transport pkid_transport;
typedef struct pkid_conn pkid_conn;

/* What the layer above does with a connection. Its state for one
 * connection is a "session". */
typedef struct pkid_conn_handler {
  /* on_open runs once TLS is up and |peer| (valid until on_close) is
   * known; it returns the session, or NULL to close the connection. */
  void *(*on_open)(void *ctx, pkid_conn *conn, const pkid_peer *peer);
  /* on_data hands up decrypted bytes; 0 closes the connection. */
  int (*on_data)(void *session, const uint8_t *data, size_t len);
  /* on_flush runs in the check phase for a kicked connection: the session
   * writes what it has with pkid_conn_write. */
  void (*on_flush)(void *session);
  /* on_timeout: the upper layer's timer (pkid_conn_set_timeout) fired. */
  void (*on_timeout)(void *session);
  /* on_close: the connection is closing. The session must forget |conn|
   * and may free itself; no callback follows. */
  void (*on_close)(void *session);
} pkid_conn_handler;

typedef struct pkid_transport_limits {
  /* Connections at once. At the limit, a new connection takes the place of
   * the oldest one still in its handshake; with none, it is closed. */
  unsigned max_conns;
  /* Connections at once from one address (IPv6: one /64), so that one
   * client cannot take them all. Behind a load balancer that does not pass
   * the client's address on, every connection has the balancer's: raise it. */
  unsigned max_conns_per_address;
  unsigned handshake_timeout_ms; /* a connection not through TLS by then is closed */
  /* Bytes a connection may have waiting to be written (encrypted, not yet
   * taken by the socket). Past it the connection is not read and the layer
   * above is asked for nothing more until the peer has read some. */
  size_t max_write_queue;
} pkid_transport_limits;

/* pkid_transport_new makes a listener that hands connections to |handler|
 * (with |ctx|). It takes a reference to |ssl_ctx|. */
pkid_transport *pkid_transport_new(uv_loop_t *loop, SSL_CTX *ssl_ctx,
                                   const pkid_transport_limits *limits,
                                   const pkid_conn_handler *handler, void *ctx, pki_err *err);

/* pkid_transport_listen binds "HOST:PORT" (lib/hostport.h) and accepts.
 * The bound address (port 0: the kernel's pick) goes to |out_bound|. */
int pkid_transport_listen(pkid_transport *t, const char *host_port, char *out_bound,
                          size_t out_size, pki_err *err);

/* pkid_transport_set_ssl_ctx makes new connections use |ssl_ctx| (a
 * reference is taken); open ones keep the context they began with. */
void pkid_transport_set_ssl_ctx(pkid_transport *t, SSL_CTX *ssl_ctx);

/* pkid_transport_stop_accepting closes the listener; open connections
 * stay until they close. */
void pkid_transport_stop_accepting(pkid_transport *t);

/* pkid_transport_close_all closes every connection at once. */
void pkid_transport_close_all(pkid_transport *t);

unsigned pkid_transport_num_conns(const pkid_transport *t);

/* pkid_transport_free frees the listener; every connection must be
 * closed, and the loop must run once more to finish closing handles. */
void pkid_transport_free(pkid_transport *t);

/* pkid_conn_write encrypts |len| bytes for the peer; they reach the
 * socket at the end of the flush. 0 if the connection failed (it is
 * closing). */
int pkid_conn_write(pkid_conn *conn, const uint8_t *data, size_t len);

/* pkid_conn_writable: the connection has room for more output (less than
 * max_write_queue waiting). The session stops producing output while it
 * is 0; the transport kicks it when the peer has read enough. */
int pkid_conn_writable(pkid_conn *conn);

/* pkid_conn_kick schedules the session's on_flush for this iteration's
 * check phase. */
void pkid_conn_kick(pkid_conn *conn);

/* pkid_conn_set_timeout (re)arms the connection's timer: on_timeout after
 * |ms|; 0 stops it. */
void pkid_conn_set_timeout(pkid_conn *conn, uint64_t ms);

/* pkid_conn_close closes the connection, after writing what TLS holds. */
void pkid_conn_close(pkid_conn *conn);

#endif /* PKID_SERVER_TRANSPORT_TRANSPORT_H */
