/* http_get.h: a small HTTP/1.1 client, GET only, for what pkid publishes
 * on its HTTP listener: CRLs and CA certificates (RFC 5280 4.2.1.13 and
 * 5.2.6 name them by "http" URLs; RFC 9110 and 9112 for the protocol).
 *
 * One request per connection ("Connection: close"), over plain TCP: a CRL
 * and a certificate are signed, and the reader checks the signature, so
 * TLS would add nothing to their integrity (RFC 5280 section 8 notes the
 * same). Redirects are not followed. An If-None-Match header makes the
 * request conditional (RFC 9110 13.1.2): 304 means "what you hold is
 * current".
 *
 * Bounded: the response header block (http_parser's 80 KiB), the body
 * (|max_body|), the time of the whole exchange (|timeout_ms|, from connect
 * to the last byte; resolving a name is not bounded, see lib/sock.h).
 * The response is read by http_parser (Debian's libhttp-parser, as the
 * server's HTTP front end), never by hand.
 *
 * Errors are lib/'s pki_err: PKI_ERR_INVALID for a URL we will not fetch
 * or a response that does not parse, PKI_ERR_EXHAUSTED for one over the
 * body limit, PKI_ERR_UNAVAILABLE for network failures and timeouts. An
 * HTTP status that is not 2xx or 304 is not an error here: it is in
 * |status|, for the caller to judge. */
#ifndef PKID_LIB_HTTP_GET_H
#define PKID_LIB_HTTP_GET_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include "lib/err.h"

/* A CRL can be tens of MB; beyond this a response is refused unless the
 * caller allows more. */
#define HTTP_GET_DEFAULT_MAX_BODY ((size_t)256 << 20)
#define HTTP_GET_DEFAULT_TIMEOUT_MS 30000
/* An entity-tag we keep and send back (RFC 9110 8.8.3), quotes included. */
#define HTTP_GET_ETAG_MAX 256

typedef struct http_get_request {
  const char *url;           /* "http://host[:port]/path[?query]" */
  const char *if_none_match; /* an ETag from an earlier response, or NULL */
  const char *accept;        /* the Accept header, or NULL: none */
  size_t max_body;           /* bytes; 0: HTTP_GET_DEFAULT_MAX_BODY */
  uint64_t timeout_ms;       /* the whole exchange; 0: HTTP_GET_DEFAULT_TIMEOUT_MS */
  /* Where to connect instead of the URL's host and port, which stay in the
   * Host header (ACME's validator in test mode: a static map of names to
   * addresses); NULL: the URL's. */
  const char *connect_host, *connect_port;
  const char *user_agent; /* NULL: "pkictl" */
} http_get_request;

typedef struct http_get_response {
  int status; /* the final status code: 200, 304, 404, ... */
  /* The ETag, when it is a valid entity-tag (RFC 9110 8.8.3) given once;
   * "" otherwise. Safe to send back in If-None-Match as it is. */
  char etag[HTTP_GET_ETAG_MAX];
  /* Informative headers, "" when absent, cut at the buffer's size. */
  char content_type[128];
  char last_modified[64];
  char expires[64];
  char cache_control[128];
  uint8_t *body; /* malloc'd, |body_len| bytes and a NUL after them; NULL when empty */
  size_t body_len;
} http_get_response;

/* http_get_response_cleanup frees the body; safe on a zeroed struct. */
void http_get_response_cleanup(http_get_response *resp);

/* http_get fetches |req->url| into |out| (zeroed first; the caller cleans
 * it up, whatever the result). */
int http_get(http_get_response *out, const http_get_request *req, pki_err *err);

/* The URL's parts, as http_get uses them. */
typedef struct http_get_url {
  char host[256]; /* without brackets */
  char port[8];   /* "80" when the URL has none */
  char host_header[272]; /* RFC 9112 3.2: host, "[v6]", and ":port" when given */
  char target[2048];     /* origin-form: path and query, "/" when empty */
} http_get_url;

/* http_get_url_parse splits an "http://" URL: no user info, a host, an
 * optional port, no control characters or spaces. */
int http_get_url_parse(http_get_url *out, const char *url, pki_err *err);

/* The response reader, fed as bytes arrive; exposed for the fuzz target
 * (tests/fuzz/http_response_fuzz.c). */
typedef struct http_get_parser {
  http_parser parser;
  http_get_response *out;
  size_t max_body;
  size_t body_cap;
  int done;     /* the final response has ended */
  int failed;   /* a callback refused something; |why| says what */
  char why[200];
  /* The header being read: its name (lower-cased, cut at 31 bytes) and,
   * for the ones kept, its value so far. */
  char field[32];
  size_t field_len;
  int in_value;
  char value[HTTP_GET_ETAG_MAX + 1];
  size_t value_len;
  int value_overflow;
  int etag_count;
} http_get_parser;

/* http_get_parser_init readies |p| to fill |out| (zeroed here). */
void http_get_parser_init(http_get_parser *p, http_get_response *out, size_t max_body);

/* http_get_parser_feed takes the next |len| bytes; |len| 0 says the peer
 * closed the connection. Bytes after the response are ignored. */
int http_get_parser_feed(http_get_parser *p, const uint8_t *data, size_t len, pki_err *err);

#endif /* PKID_LIB_HTTP_GET_H */
