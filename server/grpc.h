/* grpc.h: one gRPC call on an HTTP/2 stream (the gRPC over HTTP/2
 * protocol, grpc/doc/PROTOCOL-HTTP2.md).
 *
 * The connection (conn.c) feeds a call its request headers and DATA bytes;
 * this file checks the headers (POST, content-type application/grpc,
 * te: trailers, grpc-timeout), splits the body into length-prefixed
 * messages under the size limit, and hands each to the method's handler
 * (api.c). Handlers answer with pkid_call_send (a message) and
 * pkid_call_finish (the status, in trailers; trailers-only when nothing was
 * sent). Every call ends with exactly one pkid_call_finish.
 *
 * Lifetime: a call lives until its stream closes. Work that answers later
 * (on another thread) holds a pkid_pending tracked by the call; if the
 * stream closes first, the call sets each pending's |call| to NULL so the
 * late answer is dropped. All of this runs on the loop thread. */
#ifndef PKID_SERVER_GRPC_H
#define PKID_SERVER_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct pkid_conn;
struct pkid_call;

/* pkid_pending links one piece of outstanding work to its call. */
typedef struct pkid_pending {
  struct pkid_call *call; /* NULL once the call has gone */
  struct pkid_pending *next, *prev;
} pkid_pending;

typedef enum pkid_grpc_status {
  GRPC_OK = 0,
  GRPC_CANCELLED = 1,
  GRPC_UNKNOWN = 2,
  GRPC_INVALID_ARGUMENT = 3,
  GRPC_DEADLINE_EXCEEDED = 4,
  GRPC_NOT_FOUND = 5,
  GRPC_ALREADY_EXISTS = 6,
  GRPC_PERMISSION_DENIED = 7,
  GRPC_RESOURCE_EXHAUSTED = 8,
  GRPC_FAILED_PRECONDITION = 9,
  GRPC_ABORTED = 10,
  GRPC_OUT_OF_RANGE = 11,
  GRPC_UNIMPLEMENTED = 12,
  GRPC_INTERNAL = 13,
  GRPC_UNAVAILABLE = 14,
  GRPC_DATA_LOSS = 15,
  GRPC_UNAUTHENTICATED = 16,
} pkid_grpc_status;

/* The largest request message accepted; larger ones get RESOURCE_EXHAUSTED
 * (as gRPC's own servers answer). A CSR is a few hundred bytes. */
#define PKID_GRPC_MAX_MESSAGE (64 * 1024)

/* A method: its path and what to do with each request message. For unary
 * methods |on_message| runs once, after the request ends; for streaming
 * methods once per message as they arrive, then |on_half_close|. */
typedef struct pkid_method {
  const char *path; /* "/pki.v1.Pki/Issue" */
  int client_streaming;
  void (*on_message)(struct pkid_call *call, const uint8_t *msg, size_t len);
  void (*on_half_close)(struct pkid_call *call);
} pkid_method;

typedef struct pkid_call {
  struct pkid_conn *conn;
  int32_t stream_id;
  const pkid_method *method;
  /* Request headers. */
  char path[128];
  int is_post, grpc_content_type, te_trailers, bad_header;
  uint64_t deadline_ms; /* on the loop's clock; 0 when none */
  uint64_t start_ns;    /* when the request headers arrived, for metrics */
  /* Request body: bytes not yet split into messages. */
  uint8_t *in;
  size_t in_len, in_cap;
  int half_closed;
  /* Response: framed messages not yet given to HTTP/2. */
  uint8_t *out;
  size_t out_len, out_off, out_cap;
  int headers_sent, finished, trailers_sent;
  pkid_grpc_status status;
  char message[256];
  /* Work in flight on other threads, answering later. */
  pkid_pending *pending;
  unsigned num_pending;
  struct pkid_call *next, *prev;
} pkid_call;

/* pkid_grpc_status_from_err maps a lib/ error class to the gRPC status a
 * client should see: the one place where that mapping lives. */
pkid_grpc_status pkid_grpc_status_from_err(pki_err_code code);

/* pkid_grpc_status_name returns "INVALID_ARGUMENT" and so on, for logs. */
const char *pkid_grpc_status_name(pkid_grpc_status status);

/* pkid_grpc_parse_timeout parses a grpc-timeout value ("100m", "5S") into
 * milliseconds; 0 if malformed. */
uint64_t pkid_grpc_parse_timeout(const char *value, size_t len);

/* pkid_grpc_next_frame reads one length-prefixed message from the front of
 * |buf|. It returns 1 with the message in |*msg| and |*consumed| bytes
 * used, 0 when more bytes are needed, or a negative error:
 * PKID_GRPC_FRAME_COMPRESSED (flag set; pkid takes no compression) or
 * PKID_GRPC_FRAME_TOO_LARGE (over PKID_GRPC_MAX_MESSAGE, |*msg_len| says
 * how large). A pure function: the fuzz target calls it directly. */
#define PKID_GRPC_FRAME_COMPRESSED (-1)
#define PKID_GRPC_FRAME_TOO_LARGE (-2)
int pkid_grpc_next_frame(const uint8_t *buf, size_t len, const uint8_t **msg,
                         size_t *msg_len, size_t *consumed);

/* Called by conn.c as the stream progresses. */
pkid_call *pkid_call_new(struct pkid_conn *conn, int32_t stream_id);
void pkid_call_header(pkid_call *call, const uint8_t *name, size_t name_len,
                      const uint8_t *value, size_t value_len);
void pkid_call_headers_done(pkid_call *call);
void pkid_call_data(pkid_call *call, const uint8_t *data, size_t len);
void pkid_call_end_of_request(pkid_call *call);
/* pkid_call_free detaches pending work and frees the call (stream closed). */
void pkid_call_free(pkid_call *call);

/* pkid_call_track links |p| to |call| until pkid_call_untrack. */
void pkid_call_track(pkid_call *call, pkid_pending *p);
void pkid_call_untrack(pkid_pending *p);

/* pkid_call_send queues one response message (not yet framed). */
void pkid_call_send(pkid_call *call, const uint8_t *msg, size_t len);

/* pkid_call_finish ends the call with |status| and |message|; a message
 * goes in grpc-message, percent-encoded. Only the first finish counts. */
void pkid_call_finish(pkid_call *call, pkid_grpc_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pkid_call_fail_err finishes the call with the status for |err|. */
void pkid_call_fail_err(pkid_call *call, const pki_err *err);

/* pkid_call_read_out gives HTTP/2 up to |len| bytes of the response; it
 * returns the count, and sets |*eof| when nothing more will follow. */
size_t pkid_call_read_out(pkid_call *call, uint8_t *buf, size_t len, int *eof);

#endif /* PKID_SERVER_GRPC_H */
