/* rpc.h: gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md) on the transport's
 * connections: the HTTP/2 sessions (nghttp2), the calls on their streams,
 * and their deadlines.
 *
 * A connection's session checks each request's headers (POST,
 * content-type application/grpc, te: trailers, grpc-timeout), splits its
 * body into length-prefixed messages under the size limit, and hands each
 * to the method's handler (the api layer). Handlers answer with
 * pkid_call_send (a message), then pkid_call_ok or pkid_call_fail (the
 * status, in trailers; trailers-only when nothing was sent). Every call
 * ends with exactly one status; later ones are ignored.
 *
 * Errors: what the protocol refuses (an unknown method, a malformed or
 * oversized message, compression, a passed deadline, a server shutting
 * down) this layer answers itself with the status gRPC prescribes. What a
 * handler refuses it reports as a pki_err; pkid_call_fail maps its class
 * to a status through lib/grpc_status.h, the one place that mapping lives.
 * Set-up functions return NULL/0 with a pki_err.
 *
 * Lifetime: a call lives until its stream closes. Work that answers later
 * (on another thread) holds a pkid_pending tracked by the call; if the
 * stream closes first, the call sets each pending's |call| to NULL so the
 * late answer is dropped. All of this runs on the loop thread. */
#ifndef PKID_SERVER_RPC_RPC_H
#define PKID_SERVER_RPC_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "lib/err.h"
#include "server/transport/peer.h"
#include "server/transport/transport.h"

typedef struct pkid_rpc pkid_rpc;
typedef struct pkid_call pkid_call;

/* pkid_pending links one piece of outstanding work to its call. When the
 * call goes first (the stream closed, was reset, the connection died),
 * |call| becomes NULL and |on_gone| (if set) runs, so that the owner can
 * drop the work before spending anything more on it. */
typedef struct pkid_pending {
  pkid_call *call; /* NULL once the call has gone */
  void (*on_gone)(struct pkid_pending *p);
  struct pkid_pending *next, *prev;
} pkid_pending;

/* A method: its path and what to do with each request message. For unary
 * methods |on_message| runs once, after the request ends; for streaming
 * methods once per message as they arrive, then |on_half_close|. |ctx| is
 * the one given to pkid_rpc_new.
 *
 * |authorize| runs when the request headers are in, before any of the
 * body is read: a caller who may not call the method is refused then (0
 * with a pki_err), having made pkid buffer nothing.
 *
 * A method that answers one request with a stream of messages (server
 * streaming) sets |on_sent|, which is how it learns that the client is
 * reading: after a pkid_call_send, it runs (loop thread, outside HTTP/2's
 * callbacks) once HTTP/2 has taken every byte sent so far
 * (pkid_call_unsent is 0), which it does only as the client's
 * flow-control window and the connection allow. Such a sender sends a
 * bounded batch, then waits for |on_sent|: a client that does not read
 * holds one batch, not the whole answer. Its calls get the streams'
 * deadline (max_stream_ms), not the unary one. */
typedef struct pkid_method {
  const char *path; /* "/pki.v1.Pki/Issue" */
  int client_streaming;
  size_t max_message; /* the largest request message; at most PKID_GRPC_MAX_MESSAGE */
  int (*authorize)(void *ctx, pkid_call *call, pki_err *err);
  void (*on_message)(void *ctx, pkid_call *call, const uint8_t *msg, size_t len);
  void (*on_half_close)(void *ctx, pkid_call *call);
  void (*on_sent)(void *ctx, pkid_call *call); /* server streaming; NULL: not */
} pkid_method;

typedef struct pkid_rpc_limits {
  unsigned max_streams;      /* SETTINGS_MAX_CONCURRENT_STREAMS per connection */
  unsigned max_header_bytes; /* SETTINGS_MAX_HEADER_LIST_SIZE */
  unsigned idle_timeout_ms;  /* a connection with no calls for this long gets GOAWAY */
  /* Every call ends by then, whatever grpc-timeout says or if it says
   * nothing (DEADLINE_EXCEEDED); a stream still open a grace period after
   * its status is reset. Streaming calls get the longer limit. */
  unsigned max_call_ms, max_stream_ms;
  /* A connection this old gets GOAWAY (with jitter), then is closed a
   * grace period later: long-lived clients move to fresh connections. */
  uint64_t max_connection_age_ms;
  /* Request bytes waiting to be split into messages, for one connection
   * and for all of them: more and the call is RESOURCE_EXHAUSTED. */
  size_t max_conn_buffered, max_total_buffered;
  /* Answer bytes waiting for HTTP/2 (a client that does not read them, or
   * keeps its windows shut), for one connection and all: past them, a new
   * request is refused with RESOURCE_EXHAUSTED instead of answered. */
  size_t max_conn_output, max_total_output;
} pkid_rpc_limits;

/* pkid_rpc_new serves |methods| (which must outlive it) with |ctx|. */
pkid_rpc *pkid_rpc_new(uv_loop_t *loop, const pkid_method *methods, size_t num_methods,
                       void *ctx, const pkid_rpc_limits *limits, pki_err *err);

/* pkid_rpc_conn_handler is what the transport calls for each connection;
 * give it the rpc as the handler's ctx. */
const pkid_conn_handler *pkid_rpc_conn_handler(void);

/* pkid_rpc_drain starts a graceful shutdown: GOAWAY on every connection
 * (and new ones), new calls refused with UNAVAILABLE, calls in progress
 * finish; each connection closes when its calls are done. */
void pkid_rpc_drain(pkid_rpc *rpc);

/* pkid_rpc_check_library refuses an nghttp2 older than the one pkid's
 * defences were written against (1.52.0 with Debian's fixes for
 * CVE-2023-44487 and CVE-2024-28182: pkid links the options those fixes
 * added, so a library without them does not even load). */
int pkid_rpc_check_library(pki_err *err);

/* pkid_rpc_num_sessions is the number of HTTP/2 sessions open. */
unsigned pkid_rpc_num_sessions(const pkid_rpc *rpc);

/* pkid_rpc_free frees the rpc once every session has closed (after
 * pkid_transport_close_all). */
void pkid_rpc_free(pkid_rpc *rpc);

/* pkid_rpc_on_refused sets who hears of every call that ends with an error
 * status, whatever ended it (authorization, a malformed request, a
 * refusal, a deadline): the audit trail's refusals (api/refusals.h).
 * |message| is the status message sent. Loop thread. */
typedef void (*pkid_refused_fn)(void *ctx, const pkid_call *call, int grpc_status,
                                const char *message);
void pkid_rpc_on_refused(pkid_rpc *rpc, pkid_refused_fn fn, void *ctx);

/* --- calls, for the handlers ------------------------------------------------ */

/* pkid_call_peer is who made the call (valid while the call lives). */
const pkid_peer *pkid_call_peer(const pkid_call *call);

/* pkid_call_method is the method's name ("Issue"), or "unknown". */
const char *pkid_call_method(const pkid_call *call);

/* pkid_call_send queues one response message (not yet framed); out of
 * memory ends the call with RESOURCE_EXHAUSTED. */
void pkid_call_send(pkid_call *call, const uint8_t *msg, size_t len);

/* pkid_call_unsent is how many bytes of |call|'s answers HTTP/2 has not
 * taken yet: the client has not opened its window for them, or the
 * connection has no room (see |on_sent|). */
size_t pkid_call_unsent(const pkid_call *call);

/* pkid_call_ok ends the call with status OK. */
void pkid_call_ok(pkid_call *call);

/* pkid_call_fail ends the call with the status for |err|'s class and its
 * message in grpc-message. */
void pkid_call_fail(pkid_call *call, const pki_err *err);

/* pkid_call_fail_retry is pkid_call_fail with a hint of when to try again
 * (the grpc-retry-pushback-ms trailer), for refusals that are not final. */
void pkid_call_fail_retry(pkid_call *call, const pki_err *err, uint64_t retry_ms);

/* pkid_call_finished: the call has its status (it may still be sending). */
int pkid_call_finished(const pkid_call *call);

/* pkid_call_half_closed: the client has sent all of its request and every
 * message of it has been handed to the method (none is waiting behind a
 * pause, none is being handled now): a streaming method may end the call
 * once its answers are out. */
int pkid_call_half_closed(const pkid_call *call);

/* pkid_call_track links |p| to |call| until pkid_call_untrack;
 * pkid_call_num_pending counts what is linked. */
void pkid_call_track(pkid_call *call, pkid_pending *p);
void pkid_call_untrack(pkid_pending *p);
unsigned pkid_call_num_pending(const pkid_call *call);

#endif /* PKID_SERVER_RPC_RPC_H */
