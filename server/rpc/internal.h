/* internal.h: what the rpc layer's files share: the rpc, its HTTP/2
 * sessions (session.c) and their gRPC calls (call.c). Not for other
 * layers: they use rpc.h. */
#ifndef PKID_SERVER_RPC_INTERNAL_H
#define PKID_SERVER_RPC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "lib/grpc_status.h"
#include "server/rpc/deadline.h"
#include "server/rpc/rpc.h"

typedef struct pkid_session pkid_session;

struct pkid_rpc {
  uv_loop_t *loop;
  const pkid_method *methods;
  size_t num_methods;
  void *ctx;
  pkid_rpc_limits limits;
  pkid_session *sessions;
  unsigned num_sessions;
  int draining;
  pkid_deadlines deadlines;
  uv_timer_t deadline_timer; /* armed for the earliest deadline */
  size_t total_buffered;     /* request bytes buffered, all connections */
  size_t total_output;       /* answer bytes not yet taken by HTTP/2, all connections */
  pkid_refused_fn on_refused; /* NULL: nobody listens */
  void *on_refused_ctx;
};

/* How long a stream may stay open after its call has its status, or a
 * connection after its GOAWAY for age, before it is reset or closed. */
#define PKID_RPC_GRACE_MS 10000

/* Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE): what a
 * client may send before pkid has read it. pkid gives window back only as
 * it reads (no automatic WINDOW_UPDATE), so this bounds what a stream can
 * make pkid buffer; 64 KiB holds a hundred queued CSRs. */
#define PKID_RPC_STREAM_WINDOW 65535
#define PKID_RPC_CONN_WINDOW (16 << 20)

/* One connection's HTTP/2 session. */
struct pkid_session {
  pkid_rpc *rpc;
  pkid_conn *conn;
  const pkid_peer *peer;
  nghttp2_session *h2;
  pkid_call *calls; /* open streams */
  unsigned num_calls;
  int goaway; /* GOAWAY submitted: close once the calls are done */
  int broken; /* HTTP/2 state lost (out of memory): close at the next flush */
  pkid_deadline age; /* max_connection_age, then the grace after its GOAWAY */
  size_t buffered;   /* request bytes its calls hold */
  size_t output;     /* answer bytes its calls hold, not yet taken by HTTP/2 */
  unsigned num_paused; /* calls paused until the answers drain */
  unsigned num_want_sent; /* calls whose method waits for on_sent */
  pkid_session *next, *prev;
};

struct pkid_call {
  pkid_session *session;
  int32_t stream_id;
  const pkid_method *method;
  /* Request headers. */
  char path[128];
  int is_post, grpc_content_type, te_trailers, bad_header;
  uint64_t timeout_ms; /* from grpc-timeout; 0 when none */
  pkid_deadline deadline;
  uint64_t start_ns; /* when the request headers arrived, for metrics */
  /* Request body: bytes not yet split into messages. */
  uint8_t *in;
  size_t in_len, in_cap;
  int half_closed;
  /* Response: framed messages not yet given to HTTP/2. */
  uint8_t *out;
  size_t out_len, out_off, out_cap;
  int headers_sent, finished, trailers_sent;
  int paused; /* its answers wait to be read: its request is not read on */
  int want_sent; /* sent since on_sent last ran: run it once HTTP/2 has all */
  pki_grpc_status status;
  char message[256];
  uint64_t retry_ms; /* a retry hint for the trailers; 0: none */
  /* Work in flight on other threads, answering later. */
  pkid_pending *pending;
  unsigned num_pending;
  pkid_call *next, *prev;
};

/* --- session.c, for call.c --- */

/* pkid_session_respond submits the response headers of |call| (with a
 * body to come when |with_body|); pkid_session_trailers the trailers;
 * pkid_session_resume says more body is ready. On failure the stream is
 * reset (and, if even that fails, the connection closed). */
void pkid_session_respond(pkid_session *s, pkid_call *call, const nghttp2_nv *nva,
                          size_t nvlen, int with_body);
void pkid_session_trailers(pkid_session *s, pkid_call *call, const nghttp2_nv *nva,
                           size_t nvlen);
void pkid_session_resume(pkid_session *s, pkid_call *call);

/* pkid_session_consume gives |n| bytes of |call|'s request back to flow
 * control: pkid has read them (or thrown them away). */
void pkid_session_consume(pkid_session *s, pkid_call *call, size_t n);

/* pkid_session_kick schedules writing out what HTTP/2 has to send. */
void pkid_session_kick(pkid_session *s);

/* pkid_rpc_find_method returns the method served at |path|, or NULL. */
const pkid_method *pkid_rpc_find_method(const pkid_rpc *rpc, const char *path);

/* pkid_rpc_set_deadline makes |d| fire after |ms|; pkid_rpc_clear_deadline
 * forgets it. Out of memory fails (0): the caller decides what that means. */
int pkid_rpc_set_deadline(pkid_rpc *rpc, pkid_deadline *d, uint64_t ms);
void pkid_rpc_clear_deadline(pkid_rpc *rpc, pkid_deadline *d);

/* pkid_session_reset ends |call|'s stream with RST_STREAM |code|. */
void pkid_session_reset(pkid_session *s, pkid_call *call, uint32_t code);

/* --- call.c, for session.c --- */

pkid_call *pkid_call_new(pkid_session *s, int32_t stream_id);
void pkid_call_header(pkid_call *call, const uint8_t *name, size_t name_len,
                      const uint8_t *value, size_t value_len);
void pkid_call_headers_done(pkid_call *call);
void pkid_call_data(pkid_call *call, const uint8_t *data, size_t len);
void pkid_call_end_of_request(pkid_call *call);

/* pkid_call_sent runs the method's on_sent if |call| waits for it and
 * HTTP/2 has taken all of its answers (outside HTTP/2's callbacks). */
void pkid_call_sent(pkid_call *call);

/* pkid_call_resume carries on with a call paused by answers_waiting. */
void pkid_call_resume(pkid_call *call);

/* pkid_call_free detaches pending work and frees the call (stream closed). */
void pkid_call_free(pkid_call *call);

/* pkid_call_finish ends the call with |status| and a message, which goes
 * in grpc-message, percent-encoded. Only the first finish counts. */
void pkid_call_finish(pkid_call *call, pki_grpc_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pkid_call_read_out gives HTTP/2 up to |len| bytes of the response; it
 * returns the count, and sets |*eof| when nothing more will follow (the
 * trailers have then been submitted). */
size_t pkid_call_read_out(pkid_call *call, uint8_t *buf, size_t len, int *eof);

#endif /* PKID_SERVER_RPC_INTERNAL_H */
