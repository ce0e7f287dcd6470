/* http.h: a small HTTP/1.1 server on libuv, for the OCSP responder and the
 * admin endpoints (/metrics, /healthz, /readyz). Requests are parsed by
 * Debian's http_parser; this file adds routing, limits and timeouts.
 *
 * Model, per connection, all on the loop thread:
 *  - One read buffer. Requests are parsed one at a time and handed to the
 *    handler of their route; the handler answers with pkid_http_respond
 *    before it returns (handlers are synchronous, so pipelined requests are
 *    answered in order without a queue). A handler that returns without
 *    answering gets a 500. One whose answer has to wait (ACME's, for a
 *    journal commit) defers it (pkid_http_defer): its connection then
 *    parses nothing more until the answer comes, so the order holds
 *    without a queue there too.
 *  - Responses are appended to an output buffer and written with one
 *    uv_write per batch: a burst of pipelined requests costs one write.
 *    pkid_http_respond copies the body: the OCSP responses it serves live
 *    in the status store, which may replace them at any time, and a copy of
 *    a few hundred bytes costs less than reference counting them would.
 *    While a write is in flight, new responses go to a second buffer.
 *  - Backpressure: a client that sends requests but does not read the
 *    answers stops being read once PKID_HTTP_MAX_PENDING_OUT bytes wait.
 *  - Keep-alive by default (HTTP/1.1), "Connection: close" or HTTP/1.0
 *    without keep-alive closes after the response. After an error response
 *    (400, 408, 413, 414, 431) the connection is closed: the rest of its
 *    input cannot be trusted to be framed.
 *  - Timeouts: a connection with no request in progress is closed after
 *    idle_timeout_ms; a request must arrive in full (headers and body)
 *    within request_timeout_ms of its first byte, or it gets 408 and the
 *    connection closes (slow-loris clients). A deferred request has
 *    arrived: no timeout runs until it is answered (its owner promised).
 *  - Closing after a response: the write side is shut down once the output
 *    is written, the rest of the input is read and dropped for a short
 *    while, then the socket closes, so that the client reads the response
 *    instead of a reset.
 *
 * Routes: (method, path). A path ending in '/' is a prefix ("/" matches
 * everything); any other path must match exactly (the query string is not
 * part of the match). The longest matching path wins; if it has no route
 * for the method, the answer is 405 with an Allow header; no path: 404.
 *
 * HTTPS (pkid_http_set_tls): the same model over TLS on memory BIOs, for
 * the ACME listener. Ciphertext read goes into the SSL and the plaintext
 * that comes out into the read buffer; responses are encrypted as they
 * are flushed (a borrowed body is given back at once) and written as one
 * buffer per write.
 *
 * The http package is a front end of its own beside the gRPC one (it
 * shares no code with transport/ and rpc/) and sits on the store and ca
 * layers. Errors: set-up returns 1/0 (or NULL) with a pki_err; a request's
 * problems are answered with HTTP statuses; a connection that fails is
 * closed. */
#ifndef PKID_SERVER_HTTP_HTTP_H
#define PKID_SERVER_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "lib/err.h"

#define PKID_HTTP_MAX_ROUTES 16
#define PKID_HTTP_MAX_PENDING_OUT (64 * 1024)

typedef struct pkid_http_limits {
  size_t max_header_bytes;    /* request line and headers; more: 431 (URI: 414) */
  size_t max_url_bytes;       /* request-target; more: 414 */
  size_t max_body_bytes;      /* more: 413 */
  /* Connections at once. At the limit, a new connection takes the place of
   * the longest-open idle one (no request in progress); with none, it is
   * closed at accept. */
  unsigned max_conns;
  unsigned max_conns_per_address; /* from one address (IPv6: one /64) */
  unsigned idle_timeout_ms;   /* no request in progress for this long: close */
  unsigned request_timeout_ms; /* first byte to last byte of a request */
} pkid_http_limits;

/* pkid_http_default_limits: 8 KiB of headers, 4 KiB URI, 16 KiB body, 4096
 * connections, 256 from one address, 30 s idle, 10 s per request. */
pkid_http_limits pkid_http_default_limits(void);

typedef struct pkid_http_server pkid_http_server;
struct pkid_http_conn;

/* One request, valid until its handler returns: its strings and body live
 * in the connection's buffers, which the next request reuses. A handler
 * that defers copies what it needs before it returns. */
typedef struct pkid_http_req {
  int method;              /* enum http_method */
  const char *method_name; /* "GET", "POST", ... */
  const char *path;        /* the request-target as sent, NUL-terminated */
  size_t path_len;
  const uint8_t *body;
  size_t body_len;
  const char *content_type; /* the Content-Type header, "" when absent */
  const char *if_none_match; /* the If-None-Match header, "" when absent */
  /* The Host header, "" when absent, without its surrounding whitespace:
   * ACME builds its absolute URLs from it, so it is not cut either: longer
   * than 255 bytes (more than any name of this server's), or sent twice
   * (RFC 9112 3.2), the request gets 400. Otherwise as sent: a handler
   * that puts it in a URL checks its characters. */
  const char *host;
  int http_minor;           /* 1 for HTTP/1.1, 0 for HTTP/1.0 */
  struct pkid_http_conn *conn;
  int responded;
} pkid_http_req;

typedef void (*pkid_http_handler)(void *ctx, pkid_http_req *req);

/* pkid_http_new makes a server on |loop| (NULL |limits|: the defaults).
 * Add routes, then listen. */
pkid_http_server *pkid_http_new(uv_loop_t *loop, const pkid_http_limits *limits);

/* pkid_http_route adds a route; |method| is "GET", "POST"...; |path| and
 * |method| must outlive the server (string literals). */
int pkid_http_route(pkid_http_server *srv, const char *method, const char *path,
                    pkid_http_handler handler, void *ctx);

/* pkid_http_set_tls makes the server speak HTTPS with |ctx| (a reference
 * is taken), before it listens: TLS on memory BIOs under the same model,
 * limits and timeouts (a handshake counts as idle time). A connection
 * that closes after a response sends close_notify first; one whose
 * handshake fails (plain HTTP to this port, say) gets the SSL's alert and
 * is closed. Returns 0 after listen. */
int pkid_http_set_tls(pkid_http_server *srv, SSL_CTX *ctx);

/* pkid_http_listen binds "HOST:PORT" ("[::1]:PORT" for IPv6; port 0 lets
 * the kernel choose) and starts accepting. On failure, pkid_http_stop
 * still has to be called to free the server. */
int pkid_http_listen(pkid_http_server *srv, const char *host_port, pki_err *err);

/* pkid_http_address writes the bound "HOST:PORT" into |out|; returns the
 * port, or 0 when not listening. */
int pkid_http_address(const pkid_http_server *srv, char *out, size_t out_size);

/* pkid_http_num_conns is the number of open connections. */
unsigned pkid_http_num_conns(const pkid_http_server *srv);

/* pkid_http_respond answers |req|: status line, Content-Length, Date, the
 * extra |headers| (complete lines, each ending in "\r\n", or NULL), then
 * |len| bytes of |body|, copied. Returns 0 if |req| was answered already or
 * memory ran out (the connection is then closed). */
int pkid_http_respond(pkid_http_req *req, int status, const char *headers, const void *body,
                      size_t len);

/* A request answered later, by its owner (pkid_http_defer). */
typedef struct pkid_http_deferred pkid_http_deferred;

/* pkid_http_defer: the handler will answer |req| later (after a journal
 * commit, say), with pkid_http_respond_deferred, exactly once: that is the
 * only call that frees the handle. Returns the handle, or NULL when memory
 * runs out or |req| was answered already (then answer now, as usual);
 * after it, pkid_http_respond on |req| returns 0 and the handler gets no
 * 500. |req| itself is gone once the handler returns: copy its body, path
 * and headers first. While the request is deferred its connection parses
 * no further request (pipelined ones wait, so answers stay in order) and
 * no timeout closes it: the owner promises an answer. A client that only
 * half-closes still gets it. The server's stop counts it as a request in
 * progress (answered with "Connection: close", then closed), and its
 * grace timer still closes whatever is left. */
pkid_http_deferred *pkid_http_defer(pkid_http_req *req);

/* pkid_http_respond_deferred answers a deferred request as
 * pkid_http_respond would (|body| copied; a HEAD's left out), frees |d|,
 * and goes on with the connection: pipelined requests are parsed and the
 * output written. If the connection closed meanwhile (the client went, or
 * the server stopped), nothing is sent and |d| is just freed. Returns 1
 * when the answer was queued. May be called from the handler itself. */
int pkid_http_respond_deferred(pkid_http_deferred *d, int status, const char *headers,
                               const void *body, size_t len);

/* pkid_http_respond_shared is pkid_http_respond with |body| borrowed, not
 * copied: it must stay as it is until |release(ctx)|, which comes once it
 * is written, or the connection closed (or at once, when nothing of it is
 * sent: HEAD). For large bodies served to many (CRLs); their bytes count
 * towards PKID_HTTP_MAX_PENDING_OUT like any other. */
int pkid_http_respond_shared(pkid_http_req *req, int status, const char *headers,
                             const void *body, size_t len, void (*release)(void *ctx),
                             void *ctx);

/* pkid_http_stop stops gracefully: the listener closes, idle connections
 * close, requests in progress are answered (with "Connection: close") and
 * their connections close after; after |grace_ms| whatever is left is
 * closed. When every handle has closed the server is freed and |done| (if
 * not NULL) runs with |arg|. The loop must keep running until then. */
void pkid_http_stop(pkid_http_server *srv, unsigned grace_ms, void (*done)(void *arg),
                    void *arg);

/* pkid_http_date writes an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT",
 * 29 characters and a NUL) for |t| seconds since the epoch. */
void pkid_http_date(char out[30], int64_t t);

/* pkid_http_status_text is the reason phrase of |status| ("OK"...). */
const char *pkid_http_status_text(int status);

#endif /* PKID_SERVER_HTTP_HTTP_H */
