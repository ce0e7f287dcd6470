/* metrics_http.h: GET /metrics over HTTP/1.1 for pkictl's daemons (`pkictl
 * agent --metrics-listen`, `pkictl lb watch --metrics-listen`), so that
 * Prometheus scrapes them directly instead of through node_exporter's
 * textfile collector.
 *
 * The daemon publishes the whole page (Prometheus text format 0.0.4)
 * whenever its numbers change; a thread of this module serves the page
 * last published. The page is copied under a mutex, so a scrape never
 * sees half of an update, and the daemon's loop never waits for a scrape.
 *
 * The server is small on purpose: one connection at a time, one request
 * per connection (Connection: close), GET or HEAD of /metrics only, and a
 * request that has not arrived whole within 2 s is dropped. A client that
 * holds its connection open delays the next scrape by that much at most,
 * well inside Prometheus's default scrape_timeout (10 s). The address is
 * an operator's: bind it to loopback or a private interface, as with
 * pkid's admin listener.
 *
 * Errors are lib/'s pki_err: PKI_ERR_INVALID for an address that is not
 * HOST:PORT, PKI_ERR_IO when it cannot be bound. */
#ifndef PKID_CLIENT_METRICS_HTTP_H
#define PKID_CLIENT_METRICS_HTTP_H

#include <stddef.h>

#include "lib/err.h"

typedef struct metrics_http metrics_http;

/* metrics_http_start binds |listen| (lib/hostport.h: "127.0.0.1:9101",
 * "[::1]:0") and starts serving an empty page; NULL with |err| set. */
metrics_http *metrics_http_start(const char *listen, pki_err *err);

/* metrics_http_port is the port bound (the kernel's choice for port 0). */
int metrics_http_port(const metrics_http *m);

/* metrics_http_publish replaces the page with |len| bytes of |text|;
 * 0 when out of memory (the old page stays). */
int metrics_http_publish(metrics_http *m, const char *text, size_t len);

/* metrics_http_page copies the page last published into a malloc'd,
 * NUL-terminated string (free it), or NULL when out of memory. */
char *metrics_http_page(metrics_http *m);

/* metrics_http_stop stops the thread and frees |m| (NULL is fine). */
void metrics_http_stop(metrics_http *m);

/* How metrics_http_route answers a request. */
typedef enum metrics_http_answer {
  METRICS_HTTP_PAGE,        /* 200 with the page: GET /metrics */
  METRICS_HTTP_HEAD,        /* 200 without a body: HEAD /metrics */
  METRICS_HTTP_NOT_FOUND,   /* 404: any other path */
  METRICS_HTTP_BAD_METHOD,  /* 405: another method (RFC 9110 15.5.6) */
  METRICS_HTTP_BAD_REQUEST, /* 400: not an HTTP/1.x request */
  METRICS_HTTP_INCOMPLETE,  /* the head has not ended yet: read more */
} metrics_http_answer;

/* metrics_http_route reads the request head in the first |len| bytes of
 * |req| (Debian's http_parser) and says how to answer it; the query string
 * is ignored, as Prometheus's own exporters do. Exposed for the fuzz
 * target and the unit test. */
metrics_http_answer metrics_http_route(const char *req, size_t len);

#endif /* PKID_CLIENT_METRICS_HTTP_H */
