/* http_test: server/http.c on a real libuv loop on 127.0.0.1:0, driven by
 * a client thread with blocking sockets: keep-alive, pipelining order,
 * backpressure, limits (400, 404, 405, 408, 413, 414, 431), timeouts,
 * connection limits, a graceful stop, HEAD, If-None-Match, bodies served
 * by reference, the Host header, and answers deferred to a timer (in order
 * behind pipelining, to a client that went, across a stop). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "server/http/http.h"
#include "tests/unit/http_fixture.h"
#include "tests/unit/test.h"

/* --- the server side ----------------------------------------------------- */

static void on_echo(void *ctx, pkid_http_req *req) {
  (void)ctx;
  pkid_http_respond(req, 200, "Content-Type: text/plain\r\nX-Test: 1\r\n", req->path,
                    req->path_len);
}

static void on_body(void *ctx, pkid_http_req *req) {
  (void)ctx;
  char headers[200];
  snprintf(headers, sizeof(headers), "X-Content-Type: %s\r\n", req->content_type);
  pkid_http_respond(req, 200, headers, req->body, req->body_len);
}

static void on_silent(void *ctx, pkid_http_req *req) {
  (void)ctx;
  (void)req; /* answers nothing: the server must answer 500 */
}

/* A large body served by reference, as CRLs are: /shared, with an ETag. */
enum { SHARED_LEN = 60000 };
static char g_shared[SHARED_LEN];
static int g_shared_released; /* loop thread; read once the loop is done */

static void release_shared(void *ctx) {
  CHECK(ctx == g_shared);
  g_shared_released++;
}

static void on_shared(void *ctx, pkid_http_req *req) {
  (void)ctx;
  if (strcmp(req->if_none_match, "\"v1\"") == 0) {
    pkid_http_respond(req, 304, "ETag: \"v1\"\r\n", NULL, 0);
    return;
  }
  pkid_http_respond_shared(req, 200, "ETag: \"v1\"\r\n", g_shared, SHARED_LEN, release_shared,
                           g_shared);
}

/* /host: the Host header as the handler sees it. */
static void on_host(void *ctx, pkid_http_req *req) {
  (void)ctx;
  pkid_http_respond(req, 200, NULL, req->host, strlen(req->host));
}

/* /defer/MS/...: answered MS milliseconds later from a uv timer, as ACME
 * answers after a journal commit ("deferred PATH"); MS 0 answers from
 * the handler itself, once deferred. The counts are the loop thread's,
 * read once the loop is done. */
typedef struct deferred_answer {
  uv_timer_t timer;
  pkid_http_deferred *d;
  size_t len;
  char body[256];
} deferred_answer;

static int g_deferred_queued;  /* pkid_http_respond_deferred returned 1 */
static int g_deferred_dropped; /* ... returned 0: the connection had gone */

static void deferred_count(int queued) {
  if (queued) {
    g_deferred_queued++;
  } else {
    g_deferred_dropped++;
  }
}

static void on_answer_closed(uv_handle_t *h) { free(h->data); }

static void on_answer_due(uv_timer_t *t) {
  deferred_answer *a = t->data;
  deferred_count(pkid_http_respond_deferred(a->d, 200, "Content-Type: text/plain\r\n", a->body,
                                            a->len));
  uv_close((uv_handle_t *)t, on_answer_closed);
}

static void on_defer(void *ctx, pkid_http_req *req) {
  uv_loop_t *loop = ctx;
  unsigned long ms = strtoul(req->path + strlen("/defer/"), NULL, 10);
  deferred_answer *a = calloc(1, sizeof(*a));
  if (a == NULL) return; /* the 500 */
  /* The path is gone once this returns: the answer is made now. */
  int n = snprintf(a->body, sizeof(a->body), "deferred %.*s", (int)req->path_len, req->path);
  a->len = n < (int)sizeof(a->body) ? (size_t)n : sizeof(a->body) - 1;
  a->d = pkid_http_defer(req);
  CHECK(a->d != NULL);
  if (a->d == NULL) {
    free(a);
    return;
  }
  CHECK(pkid_http_defer(req) == NULL);                /* once */
  CHECK(pkid_http_respond(req, 200, NULL, "x", 1) == 0); /* and not twice */
  if (ms == 0) {
    deferred_count(pkid_http_respond_deferred(a->d, 200, NULL, a->body, a->len));
    free(a);
    return;
  }
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  uv_timer_start(&a->timer, on_answer_due, ms, 0);
}

/* run_server serves on a loop in this thread while |client| runs in
 * another; it returns once the client is done and the server has stopped. */
static void run_server(const pkid_http_limits *limits, void (*client)(fixture *f)) {
  fixture f;
  REQUIRE(http_fixture_init(&f, limits, client));
  pkid_http_route(f.srv, "GET", "/echo/", on_echo, NULL);
  pkid_http_route(f.srv, "GET", "/exact", on_echo, NULL);
  pkid_http_route(f.srv, "POST", "/body", on_body, NULL);
  pkid_http_route(f.srv, "PUT", "/body", on_body, NULL);
  pkid_http_route(f.srv, "GET", "/silent", on_silent, NULL);
  pkid_http_route(f.srv, "GET", "/shared", on_shared, NULL);
  pkid_http_route(f.srv, "GET", "/host", on_host, NULL);
  pkid_http_route(f.srv, "GET", "/defer/", on_defer, &f.loop);
  g_deferred_queued = g_deferred_dropped = 0;
  http_fixture_serve(&f);
}

/* --- the client side ------------------------------------------------------ */

typedef struct client {
  int fd;
  char buf[1 << 20];
  size_t len;
} client;

typedef struct response {
  int status;
  char headers[4096];
  char body[65536];
  size_t body_len;
} response;

/* client_open_from connects from the loopback address |from|
 * (127.0.0.0/8 holds many: another client on the same machine). */
static client *client_open_from(int port, uint32_t from) {
  client *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in src = {.sin_family = AF_INET};
  src.sin_addr.s_addr = htonl(from);
  if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
    close(c->fd);
    free(c);
    return NULL;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    close(c->fd);
    free(c);
    return NULL;
  }
  return c;
}

static client *client_open(int port) { return client_open_from(port, INADDR_LOOPBACK); }

static void client_close(client *c) {
  if (c == NULL) return;
  close(c->fd);
  free(c);
}

static int send_all(client *c, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n <= 0) return 0;
    data += n;
    len -= (size_t)n;
  }
  return 1;
}

static int send_str(client *c, const char *s) { return send_all(c, s, strlen(s)); }

/* fill reads more into the buffer; 0 at EOF, error or timeout. */
static int fill(client *c) {
  if (c->len == sizeof(c->buf)) return 0;
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
  if (n <= 0) return 0;
  c->len += (size_t)n;
  return 1;
}

static void consume(client *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

/* read_response reads one response (with Content-Length); 0 if none came. */
/* read_head reads a response's status line and headers alone (a HEAD's or
 * a 304's, which have no body whatever their headers say). */
static int read_head(client *c, response *r) {
  char *end;
  for (;;) {
    end = c->len > 0 ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
    if (end != NULL) break;
    if (!fill(c)) return 0;
  }
  size_t head_len = (size_t)(end - c->buf) + 4;
  if (head_len >= sizeof(r->headers)) return 0;
  memcpy(r->headers, c->buf, head_len);
  r->headers[head_len] = '\0';
  r->body_len = 0;
  consume(c, head_len);
  return sscanf(r->headers, "HTTP/1.1 %d", &r->status) == 1;
}

static int read_response(client *c, response *r) {
  if (!read_head(c, r)) return 0;
  const char *cl = strcasestr(r->headers, "\r\nContent-Length: ");
  if (cl == NULL) return 0;
  size_t body_len = strtoul(cl + 18, NULL, 10);
  if (body_len >= sizeof(r->body)) return 0;
  while (c->len < body_len) {
    if (!fill(c)) return 0;
  }
  memcpy(r->body, c->buf, body_len);
  r->body[body_len] = '\0';
  r->body_len = body_len;
  consume(c, body_len);
  return 1;
}

/* closed_by_server: the next read sees EOF (or a reset), not a timeout. */
static int closed_by_server(client *c) {
  char tmp[256];
  for (;;) {
    ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);
    if (n == 0) return 1;
    if (n < 0) return errno == ECONNRESET;
  }
}

static int has_header(const response *r, const char *line) {
  return strcasestr(r->headers, line) != NULL;
}

/* --- cases ------------------------------------------------------------------ */

static void client_keep_alive(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  for (int i = 0; i < 5; i++) {
    char req[128], want[64];
    snprintf(req, sizeof(req), "GET /echo/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    snprintf(want, sizeof(want), "/echo/%d", i);
    CHECK(send_str(c, req));
    if (!read_response(c, r)) {
      CHECK(!"response");
      break;
    }
    CHECK(r->status == 200);
    CHECK(strcmp(r->body, want) == 0);
    CHECK(has_header(r, "\r\nX-Test: 1\r\n"));
    CHECK(has_header(r, "\r\nDate: "));
    CHECK(!has_header(r, "Connection: close"));
  }
  /* A POST body, with Content-Type, on the same connection. */
  CHECK(send_str(c, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\n"
                    "Content-Length: 5\r\n\r\nhello"));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "hello") == 0 &&
        has_header(r, "X-Content-Type: application/x-test\r\n"));
  /* Chunked, split over several sends. */
  CHECK(send_str(c, "PUT /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc"));
  usleep(20000);
  CHECK(send_str(c, "\r\n2\r\nde\r\n0\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "abcde") == 0);
  free(r);
  client_close(c);
}

TEST(keep_alive) { run_server(NULL, client_keep_alive); }

/* Many requests in one send, answered in order; enough of them that the
 * server's output backs up and it must stop and resume reading. */
static void client_pipelining(fixture *f) {
  enum { N = 3000 };
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  size_t cap = N * 64, len = 0;
  char *all = malloc(cap);
  for (int i = 0; i < N; i++) {
    len += (size_t)snprintf(all + len, cap - len, "GET /echo/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
  }
  /* Send everything while reading nothing: the kernel buffers and the
   * server's output limit fill up, so the sending happens in a thread-
   * free way with poll, reading once sending stalls. */
  size_t sent = 0;
  int got = 0, in_order = 1;
  while (got < N) {
    struct pollfd p = {.fd = c->fd, .events = POLLIN | (sent < len ? POLLOUT : 0)};
    if (poll(&p, 1, 5000) <= 0) break;
    if ((p.revents & POLLOUT) && sent < len) {
      ssize_t n = send(c->fd, all + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) sent += (size_t)n;
    }
    if (p.revents & POLLIN) {
      if (!fill(c)) break;
      /* Parse every complete response already buffered. */
      for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end == NULL) break;
        const char *cl = strcasestr(c->buf, "\r\nContent-Length: ");
        size_t head = (size_t)(end - c->buf) + 4;
        size_t blen = strtoul(cl + 18, NULL, 10);
        if (c->len < head + blen) break;
        char want[32];
        int wn = snprintf(want, sizeof(want), "/echo/%d", got);
        if ((size_t)wn != blen || memcmp(c->buf + head, want, blen) != 0) in_order = 0;
        consume(c, head + blen);
        got++;
      }
    }
  }
  CHECK(got == N);
  CHECK(in_order);
  free(all);
  client_close(c);
}

TEST(pipelining_in_order) { run_server(NULL, client_pipelining); }

/* A client that sends a burst and reads nothing for a while, then reads. */
static void client_slow_reader(fixture *f) {
  enum { N = 1500 };
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  char req[] = "GET /echo/abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz HTTP/1.1\r\n"
               "Host: t\r\n\r\n";
  for (int i = 0; i < N; i++) {
    if (!send_str(c, req)) break;
  }
  usleep(300000);
  response *r = malloc(sizeof(*r));
  int got = 0;
  while (got < N && read_response(c, r) && r->status == 200) got++;
  CHECK(got == N);
  free(r);
  client_close(c);
}

TEST(backpressure_slow_reader) { run_server(NULL, client_slow_reader); }

static void client_routes(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  CHECK(send_str(c, "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 404);
  CHECK(send_str(c, "DELETE /body HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 405);
  CHECK(has_header(r, "\r\nAllow: POST, PUT\r\n"));
  /* "/exact" is not a prefix; a query string does not matter. */
  CHECK(send_str(c, "GET /exact?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "/exact?x=1") == 0);
  CHECK(send_str(c, "GET /exactly HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 404);
  CHECK(send_str(c, "GET /silent HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 500);
  /* Still open after all of those. */
  CHECK(send_str(c, "GET /echo/x HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200);
  free(r);
  client_close(c);
}

TEST(routes_404_405_500) { run_server(NULL, client_routes); }

static void client_head_and_etag(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  /* HEAD: a GET route's headers, its length, no body (RFC 9110 9.3.2).
   * The echo after it proves no body bytes followed. */
  CHECK(send_str(c, "HEAD /shared HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /echo/after HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_head(c, r) && r->status == 200);
  CHECK(has_header(r, "\r\nContent-Length: 60000\r\n") && has_header(r, "\r\nETag: \"v1\""));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "/echo/after") == 0);
  /* GET: the shared bytes, whole. */
  CHECK(send_str(c, "GET /shared HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 && r->body_len == SHARED_LEN &&
        memcmp(r->body, g_shared, SHARED_LEN) == 0);
  /* If-None-Match with the current tag: 304, no body, no length. */
  CHECK(send_str(c, "GET /shared HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"v1\"\r\n\r\n"));
  CHECK(read_head(c, r) && r->status == 304 && has_header(r, "\r\nETag: \"v1\"") &&
        !has_header(r, "\r\nContent-Length:"));
  CHECK(send_str(c, "GET /echo/last HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "/echo/last") == 0);
  free(r);
  client_close(c);
}

TEST(head_shared_body_and_304) {
  for (size_t i = 0; i < SHARED_LEN; i++) g_shared[i] = (char)('a' + i % 26);
  g_shared_released = 0;
  run_server(NULL, client_head_and_etag);
  CHECK(g_shared_released == 2); /* the HEAD's at once, the GET's once written */
}

/* expect_error sends |req| on a fresh connection and wants |status|, then
 * the connection closed. */
static void expect_error(fixture *f, const char *req, size_t req_len, int status) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  send_all(c, req, req_len); /* the server may close before all is sent */
  int ok = read_response(c, r);
  CHECK(ok);
  if (ok) {
    if (r->status != status) fprintf(stderr, "  got %d, want %d\n", r->status, status);
    CHECK(r->status == status);
    CHECK(has_header(r, "Connection: close"));
  }
  CHECK(closed_by_server(c));
  free(r);
  client_close(c);
}

enum { BIG = 40000 };

static void client_limits(fixture *f) {
  char *big = malloc(BIG);
  /* Headers over 8 KiB: 431. */
  int n = snprintf(big, BIG, "GET /echo/ HTTP/1.1\r\nHost: t\r\nX-Big: ");
  memset(big + n, 'a', 9000);
  n += 9000;
  n += snprintf(big + n, BIG - (size_t)n, "\r\n\r\n");
  expect_error(f, big, (size_t)n, 431);
  /* Many small headers over 8 KiB: 431 too. */
  n = snprintf(big, BIG, "GET /echo/ HTTP/1.1\r\n");
  for (int i = 0; i < 900; i++) n += snprintf(big + n, BIG - (size_t)n, "X-H%d: v\r\n", i);
  n += snprintf(big + n, BIG - (size_t)n, "\r\n");
  expect_error(f, big, (size_t)n, 431);
  /* A URI over 4 KiB: 414. */
  n = snprintf(big, BIG, "GET /echo/");
  memset(big + n, 'u', 5000);
  n += 5000;
  n += snprintf(big + n, BIG - (size_t)n, " HTTP/1.1\r\nHost: t\r\n\r\n");
  expect_error(f, big, (size_t)n, 414);
  /* A declared body over 16 KiB: 413 before it is sent. */
  const char *decl = "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
  expect_error(f, decl, strlen(decl), 413);
  /* A chunked body that grows past 16 KiB: 413. */
  n = snprintf(big, BIG, "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 5; i++) {
    n += snprintf(big + n, BIG - (size_t)n, "1000\r\n");
    memset(big + n, 'b', 4096);
    n += 4096;
    n += snprintf(big + n, BIG - (size_t)n, "\r\n");
  }
  expect_error(f, big, (size_t)n, 413);
  /* Garbage: 400. */
  const char *junk = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n";
  expect_error(f, junk, strlen(junk), 400);
  const char *bad_version = "GET / HTTP/9x\r\n\r\n";
  expect_error(f, bad_version, strlen(bad_version), 400);
  const char *bad_length = "POST /body HTTP/1.1\r\nContent-Length: abc\r\n\r\n";
  expect_error(f, bad_length, strlen(bad_length), 400);
  free(big);
}

TEST(limits_and_malformed) { run_server(NULL, client_limits); }

static void client_close_semantics(fixture *f) {
  response *r = malloc(sizeof(*r));
  /* Connection: close from the client. */
  client *c = client_open(f->port);
  if (c != NULL) {
    CHECK(send_str(c, "GET /echo/a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    CHECK(read_response(c, r) && r->status == 200 && has_header(r, "Connection: close"));
    CHECK(closed_by_server(c));
    client_close(c);
  }
  /* HTTP/1.0 without keep-alive closes; with keep-alive stays open. */
  c = client_open(f->port);
  if (c != NULL) {
    CHECK(send_str(c, "GET /echo/b HTTP/1.0\r\n\r\n"));
    CHECK(read_response(c, r) && r->status == 200);
    CHECK(closed_by_server(c));
    client_close(c);
  }
  c = client_open(f->port);
  if (c != NULL) {
    CHECK(send_str(c, "GET /echo/c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(read_response(c, r) && r->status == 200 && has_header(r, "Connection: keep-alive"));
    CHECK(send_str(c, "GET /echo/d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "/echo/d") == 0);
    client_close(c);
  }
  /* Requests pipelined after a "Connection: close" one are not answered. */
  c = client_open(f->port);
  if (c != NULL) {
    CHECK(send_str(c, "GET /echo/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /echo/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                      "GET /echo/3 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(read_response(c, r) && strcmp(r->body, "/echo/1") == 0);
    CHECK(read_response(c, r) && strcmp(r->body, "/echo/2") == 0);
    CHECK(closed_by_server(c));
    client_close(c);
  }
  free(r);
}

TEST(connection_close_and_http10) { run_server(NULL, client_close_semantics); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void client_slowloris(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  double start = now_s();
  /* Headers that trickle in and never end: 408 after 300 ms, although a
   * byte arrives every 100 ms. */
  CHECK(send_str(c, "GET /echo/ HTTP/1.1\r\n"));
  for (int i = 0; i < 4; i++) {
    usleep(100000);
    send_str(c, "X: y\r\n");
  }
  CHECK(read_response(c, r) && r->status == 408);
  double took = now_s() - start;
  CHECK(took >= 0.25 && took < 3.0);
  CHECK(closed_by_server(c));
  client_close(c);
  free(r);
}

static void client_idle(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  CHECK(send_str(c, "GET /echo/ HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200);
  double start = now_s();
  CHECK(closed_by_server(c));
  double took = now_s() - start;
  CHECK(took >= 0.15 && took < 3.0);
  client_close(c);
  /* A connection that never sends anything is idle too. */
  c = client_open(f->port);
  if (c != NULL) {
    CHECK(closed_by_server(c));
    client_close(c);
  }
  free(r);
}

TEST(slowloris_request_timeout) {
  pkid_http_limits l = pkid_http_default_limits();
  l.request_timeout_ms = 300;
  run_server(&l, client_slowloris);
}

TEST(idle_timeout) {
  pkid_http_limits l = pkid_http_default_limits();
  l.idle_timeout_ms = 200;
  run_server(&l, client_idle);
}

/* At max_conns (2), a new connection takes the place of the longest-open
 * idle one; when every connection has a request in progress, the new one
 * is refused. */
static void client_max_conns(fixture *f) {
  client *a = client_open(f->port), *b = client_open(f->port);
  response *r = malloc(sizeof(*r));
  if (a != NULL && b != NULL) {
    /* Both are accepted (a request on each proves it) before the third. */
    CHECK(send_str(a, "GET /echo/a HTTP/1.1\r\n\r\n") && read_response(a, r));
    CHECK(send_str(b, "GET /echo/b HTTP/1.1\r\n\r\n") && read_response(b, r));
    /* b is busy: half a request. */
    CHECK(send_str(b, "GET /echo/b HTTP/1.1\r\n"));
    usleep(100 * 1000);
    client *c = client_open(f->port);
    /* a, idle, made room for c; b kept its place. */
    CHECK(closed_by_server(a));
    CHECK(c != NULL && send_str(c, "GET /echo/c HTTP/1.1\r\n\r\n") && read_response(c, r) &&
          r->status == 200);
    CHECK(send_str(b, "\r\n") && read_response(b, r) && r->status == 200);
    /* Now both busy: a fourth is refused. */
    CHECK(send_str(b, "GET /echo/b HTTP/1.1\r\n") && send_str(c, "GET /echo/c HTTP/1.1\r\n"));
    usleep(100 * 1000);
    client *d = client_open(f->port);
    if (d != NULL) {
      CHECK(closed_by_server(d));
      client_close(d);
    }
    client_close(c);
  } else {
    CHECK(!"connect");
  }
  client_close(a);
  client_close(b);
  free(r);
}

/* One address may hold max_conns_per_address (2); another is still let in. */
static void client_per_address(fixture *f) {
  client *a = client_open(f->port), *b = client_open(f->port);
  response *r = malloc(sizeof(*r));
  CHECK(a != NULL && b != NULL);
  if (a != NULL && b != NULL) {
    CHECK(send_str(a, "GET /echo/a HTTP/1.1\r\n\r\n") && read_response(a, r));
    CHECK(send_str(b, "GET /echo/b HTTP/1.1\r\n\r\n") && read_response(b, r));
    client *c = client_open(f->port);
    if (c != NULL) {
      CHECK(closed_by_server(c));
      client_close(c);
    }
    client *other = client_open_from(f->port, INADDR_LOOPBACK + 1); /* 127.0.0.2 */
    CHECK(other != NULL && send_str(other, "GET /echo/o HTTP/1.1\r\n\r\n") &&
          read_response(other, r) && r->status == 200);
    client_close(other);
    /* The first two still work. */
    CHECK(send_str(a, "GET /echo/a HTTP/1.1\r\n\r\n") && read_response(a, r) && r->status == 200);
  }
  client_close(a);
  client_close(b);
  free(r);
}

TEST(max_conns_per_address) {
  pkid_http_limits l = pkid_http_default_limits();
  l.max_conns_per_address = 2;
  run_server(&l, client_per_address);
}

TEST(max_conns) {
  pkid_http_limits l = pkid_http_default_limits();
  l.max_conns = 2;
  run_server(&l, client_max_conns);
}

/* Graceful stop: an idle keep-alive connection is closed, and a request
 * half sent when the stop begins is still answered, with Connection: close. */
typedef struct stop_fixture {
  uv_loop_t loop;
  uv_async_t go;
  pkid_http_server *srv;
  int port, stopped;
} stop_fixture;

static stop_fixture g_stop;

static void on_stop_done(void *arg) { *(int *)arg = 1; }

static void on_go(uv_async_t *a) {
  pkid_http_stop(g_stop.srv, 2000, on_stop_done, &g_stop.stopped);
  uv_close((uv_handle_t *)a, NULL);
}

static void *stop_client(void *arg) {
  (void)arg;
  client *idle = client_open(g_stop.port), *busy = client_open(g_stop.port);
  response *r = malloc(sizeof(*r));
  if (idle != NULL && busy != NULL) {
    CHECK(send_str(idle, "GET /echo/i HTTP/1.1\r\n\r\n") && read_response(idle, r));
    CHECK(send_str(busy, "GET /echo/b HTTP/1.1\r\nHost: t\r\n"));
    usleep(50000);
    uv_async_send(&g_stop.go);
    CHECK(closed_by_server(idle));
    CHECK(send_str(busy, "\r\n"));
    CHECK(read_response(busy, r) && r->status == 200 && has_header(r, "Connection: close"));
    CHECK(closed_by_server(busy));
  } else {
    CHECK(!"connect");
    uv_async_send(&g_stop.go);
  }
  client_close(idle);
  client_close(busy);
  free(r);
  return NULL;
}

TEST(graceful_stop) {
  memset(&g_stop, 0, sizeof(g_stop));
  REQUIRE(uv_loop_init(&g_stop.loop) == 0);
  g_stop.srv = pkid_http_new(&g_stop.loop, NULL);
  pkid_http_route(g_stop.srv, "GET", "/echo/", on_echo, NULL);
  pki_err err;
  REQUIRE(pkid_http_listen(g_stop.srv, "127.0.0.1:0", &err));
  char where[80];
  g_stop.port = pkid_http_address(g_stop.srv, where, sizeof(where));
  uv_async_init(&g_stop.loop, &g_stop.go, on_go);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, stop_client, NULL) == 0);
  uv_run(&g_stop.loop, UV_RUN_DEFAULT); /* returns once the server is gone */
  pthread_join(t, NULL);
  CHECK(g_stop.stopped);
  CHECK(uv_loop_close(&g_stop.loop) == 0);
}

static void client_host(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  CHECK(send_str(c, "GET /host HTTP/1.1\r\nHost: acme.example:8443\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "acme.example:8443") == 0);
  /* The name in any case, the value without its whitespace; then none at
   * all (HTTP/1.0 may leave it out). */
  CHECK(send_str(c, "GET /host HTTP/1.1\r\nhOsT: \t b.example \t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, "b.example") == 0);
  CHECK(send_str(c, "GET /host HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 && r->body_len == 0);
  /* 255 bytes, split over two sends, is taken whole. */
  char req[600], name[300];
  memset(name, 'h', 255);
  name[255] = '\0';
  int n = snprintf(req, sizeof(req), "GET /host HTTP/1.1\r\nHost: %s\r\n\r\n", name);
  CHECK(send_all(c, req, 100));
  usleep(20000);
  CHECK(send_all(c, req + 100, (size_t)n - 100));
  CHECK(read_response(c, r) && r->status == 200 && strcmp(r->body, name) == 0);
  free(r);
  client_close(c);
  /* 256: refused, not cut (a cut name is another name); two: refused. */
  name[255] = 'h';
  name[256] = '\0';
  n = snprintf(req, sizeof(req), "GET /host HTTP/1.1\r\nHost: %s\r\n\r\n", name);
  expect_error(f, req, (size_t)n, 400);
  const char *two = "GET /host HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n";
  expect_error(f, two, strlen(two), 400);
}

TEST(host_header) { run_server(NULL, client_host); }

static void client_deferred(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  /* Answered from a timer, later, on a connection that goes on after. */
  double start = now_s();
  CHECK(send_str(c, "GET /defer/100/one HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 &&
        strcmp(r->body, "deferred /defer/100/one") == 0 && !has_header(r, "Connection: close"));
  CHECK(now_s() - start >= 0.09);
  /* Pipelined behind a deferred request, answered after it: in order, the
   * quick one waiting. Then one answered from its handler, with a
   * pipelined one behind it too. */
  CHECK(send_str(c, "GET /defer/150/first HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /echo/second HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /defer/0/third HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /echo/fourth HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && strcmp(r->body, "deferred /defer/150/first") == 0);
  CHECK(read_response(c, r) && strcmp(r->body, "/echo/second") == 0);
  CHECK(read_response(c, r) && strcmp(r->body, "deferred /defer/0/third") == 0);
  CHECK(read_response(c, r) && strcmp(r->body, "/echo/fourth") == 0);
  /* HEAD: the deferred answer's length, no body (the echo proves it). */
  CHECK(send_str(c, "HEAD /defer/30/h HTTP/1.1\r\nHost: t\r\n\r\n"
                    "GET /echo/after-head HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_head(c, r) && r->status == 200 && has_header(r, "\r\nContent-Length: 20\r\n"));
  CHECK(read_response(c, r) && strcmp(r->body, "/echo/after-head") == 0);
  /* "Connection: close" on a deferred request: answered, then closed, and
   * what was pipelined after it is not. */
  CHECK(send_str(c, "GET /defer/50/last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    "GET /echo/never HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && strcmp(r->body, "deferred /defer/50/last") == 0 &&
        has_header(r, "Connection: close"));
  CHECK(closed_by_server(c));
  client_close(c);
  /* A client that half-closes after its request still gets the answer. */
  c = client_open(f->port);
  if (c != NULL) {
    CHECK(send_str(c, "GET /defer/100/half HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(shutdown(c->fd, SHUT_WR) == 0);
    CHECK(read_response(c, r) && strcmp(r->body, "deferred /defer/100/half") == 0 &&
          has_header(r, "Connection: close"));
    CHECK(closed_by_server(c));
    client_close(c);
  }
  free(r);
}

TEST(deferred_in_order) {
  run_server(NULL, client_deferred);
  CHECK(g_deferred_queued == 6 && g_deferred_dropped == 0);
}

/* No timeout closes a deferred request, though it waits longer than both. */
static void client_deferred_slow(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  response *r = malloc(sizeof(*r));
  CHECK(send_str(c, "GET /defer/400/slow HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_response(c, r) && r->status == 200 &&
        strcmp(r->body, "deferred /defer/400/slow") == 0);
  /* Then idle again: the idle timeout is back. */
  double start = now_s();
  CHECK(closed_by_server(c));
  CHECK(now_s() - start >= 0.05);
  free(r);
  client_close(c);
}

TEST(deferred_outlives_timeouts) {
  pkid_http_limits l = pkid_http_default_limits();
  l.idle_timeout_ms = 100;
  l.request_timeout_ms = 100;
  run_server(&l, client_deferred_slow);
  CHECK(g_deferred_queued == 1 && g_deferred_dropped == 0);
}

/* A client that resets its connection while its request is deferred: the
 * connection closes at once, and the late answer finds it gone (ASan
 * watches the handle). Another that closes plainly is answered into the
 * void. Pipelined input behind a deferred request fills the read buffer,
 * and reading stops there instead of failing. */
static void client_deferred_gone(fixture *f) {
  client *c = client_open(f->port);
  if (c == NULL) {
    CHECK(!"connect");
    return;
  }
  CHECK(send_str(c, "GET /defer/300/gone HTTP/1.1\r\nHost: t\r\n\r\n"));
  usleep(50000);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  CHECK(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
  client_close(c); /* RST */
  c = client_open(f->port);
  if (c != NULL) {
    CHECK(send_str(c, "GET /defer/200/fin HTTP/1.1\r\nHost: t\r\n\r\n"));
    usleep(50000);
    client_close(c);
  }
  response *r = malloc(sizeof(*r));
  c = client_open(f->port);
  if (c != NULL) {
    enum { N = 800 };
    static const char kReq[] = "GET /echo/p HTTP/1.1\r\nHost: t\r\n\r\n";
    CHECK(send_str(c, "GET /defer/300/full HTTP/1.1\r\nHost: t\r\n\r\n"));
    usleep(20000);
    for (int i = 0; i < N; i++) CHECK(send_str(c, kReq)); /* 28 KB: more than a buffer */
    CHECK(read_response(c, r) && strcmp(r->body, "deferred /defer/300/full") == 0);
    int got = 0;
    while (got < N && read_response(c, r) && strcmp(r->body, "/echo/p") == 0) got++;
    CHECK(got == N);
    client_close(c);
  }
  /* The server is still well. */
  c = client_open(f->port);
  if (c != NULL) {
    CHECK(send_str(c, "GET /echo/still HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(read_response(c, r) && strcmp(r->body, "/echo/still") == 0);
    client_close(c);
  }
  free(r);
}

TEST(deferred_client_gone) {
  run_server(NULL, client_deferred_gone);
  /* "gone" dropped; "fin" queued (its write may fail after); "full". */
  CHECK(g_deferred_dropped == 1 && g_deferred_queued == 2);
}

/* A stop while requests are deferred: one answered within the grace gets
 * "Connection: close" and its connection closes (what was pipelined after
 * it is not answered); one that the grace outlasts is closed unanswered,
 * and its late answer is dropped, after the server has gone. */
static void on_go_deferred(uv_async_t *a) {
  stop_fixture *s = a->data;
  pkid_http_stop(s->srv, 600, on_stop_done, &s->stopped);
  uv_close((uv_handle_t *)a, NULL);
}

static void *deferred_stop_client(void *arg) {
  stop_fixture *s = arg;
  client *a = client_open(s->port), *b = client_open(s->port);
  response *r = malloc(sizeof(*r));
  if (a != NULL && b != NULL) {
    CHECK(send_str(a, "GET /defer/300/a HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /defer/10/a2 HTTP/1.1\r\nHost: t\r\n\r\n"));
    CHECK(send_str(b, "GET /defer/1500/b HTTP/1.1\r\nHost: t\r\n\r\n"));
    usleep(50000);
    uv_async_send(&s->go);
    CHECK(read_response(a, r) && r->status == 200 &&
          strcmp(r->body, "deferred /defer/300/a") == 0 && has_header(r, "Connection: close"));
    CHECK(closed_by_server(a));
    CHECK(!read_response(b, r));
  } else {
    CHECK(!"connect");
    uv_async_send(&s->go);
  }
  client_close(a);
  client_close(b);
  free(r);
  return NULL;
}

TEST(deferred_across_stop) {
  stop_fixture s;
  memset(&s, 0, sizeof(s));
  REQUIRE(uv_loop_init(&s.loop) == 0);
  s.srv = pkid_http_new(&s.loop, NULL);
  pkid_http_route(s.srv, "GET", "/defer/", on_defer, &s.loop);
  g_deferred_queued = g_deferred_dropped = 0;
  pki_err err;
  REQUIRE(pkid_http_listen(s.srv, "127.0.0.1:0", &err));
  char where[80];
  s.port = pkid_http_address(s.srv, where, sizeof(where));
  uv_async_init(&s.loop, &s.go, on_go_deferred);
  s.go.data = &s;
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, deferred_stop_client, &s) == 0);
  uv_run(&s.loop, UV_RUN_DEFAULT); /* the server gone, and b's timer too */
  pthread_join(t, NULL);
  CHECK(s.stopped);
  CHECK(g_deferred_queued == 1 && g_deferred_dropped == 1);
  CHECK(uv_loop_close(&s.loop) == 0);
}

TEST(listen_errors) {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  pki_err err;
  pkid_http_server *srv = pkid_http_new(&loop, NULL);
  CHECK(!pkid_http_listen(srv, "nonsense", &err));
  pkid_http_stop(srv, 0, NULL, NULL);
  srv = pkid_http_new(&loop, NULL);
  CHECK(!pkid_http_listen(srv, "256.1.1.1:80", &err));
  pkid_http_stop(srv, 0, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST(http_date) {
  char d[30];
  pkid_http_date(d, 784111777);
  CHECK(strcmp(d, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
  pkid_http_date(d, 0);
  CHECK(strcmp(d, "Thu, 01 Jan 1970 00:00:00 GMT") == 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  alarm(120); /* a hung case must not hang CI */
  RUN(keep_alive);
  RUN(pipelining_in_order);
  RUN(backpressure_slow_reader);
  RUN(routes_404_405_500);
  RUN(head_shared_body_and_304);
  RUN(limits_and_malformed);
  RUN(connection_close_and_http10);
  RUN(slowloris_request_timeout);
  RUN(idle_timeout);
  RUN(max_conns);
  RUN(max_conns_per_address);
  RUN(graceful_stop);
  RUN(host_header);
  RUN(deferred_in_order);
  RUN(deferred_outlives_timeouts);
  RUN(deferred_client_gone);
  RUN(deferred_across_stop);
  RUN(listen_errors);
  RUN(http_date);
  return test_finish();
}
