/* http_test: server/http.c on a real libuv loop on 127.0.0.1:0, driven by
 * a client thread with blocking sockets: keep-alive, pipelining order,
 * backpressure, limits (400, 404, 405, 408, 413, 414, 431), timeouts,
 * connection limits, a graceful stop, HEAD, If-None-Match and bodies served
 * by reference. */
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
  RUN(listen_errors);
  RUN(http_date);
  return test_finish();
}
