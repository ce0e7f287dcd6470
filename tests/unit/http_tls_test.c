/* http_tls_test: server/http.c speaking HTTPS (pkid_http_set_tls) on a
 * real libuv loop on 127.0.0.1:0, with clients in another thread:
 * BoringSSL's, and OpenSSL's `openssl s_client` (a TLS stack we did not
 * write). Keep-alive and pipelining, a request body over several records,
 * a large borrowed body, close_notify after "Connection: close", plain
 * HTTP on the HTTPS port refused, the server still serving after, and
 * answers deferred to a timer (in order, then close_notify; a client that
 * went). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "lib/key.h"
#include "server/http/http.h"
#include "tests/unit/http_fixture.h"
#include "tests/unit/test.h"

/* --- the server side ----------------------------------------------------- */

static void on_echo(void *ctx, pkid_http_req *req) {
  (void)ctx;
  pkid_http_respond(req, 200, "Content-Type: text/plain\r\n", req->path, req->path_len);
}

static void on_body(void *ctx, pkid_http_req *req) {
  (void)ctx;
  pkid_http_respond(req, 200, NULL, req->body, req->body_len);
}

enum { SHARED_LEN = 60000 };
static char g_shared[SHARED_LEN];
static int g_released;

static void release_shared(void *ctx) {
  (void)ctx;
  g_released++;
}

static void on_shared(void *ctx, pkid_http_req *req) {
  (void)ctx;
  pkid_http_respond_shared(req, 200, NULL, g_shared, SHARED_LEN, release_shared, NULL);
}

/* /defer/MS/...: "deferred PATH", MS milliseconds later, from a timer. */
typedef struct deferred_answer {
  uv_timer_t timer;
  pkid_http_deferred *d;
  size_t len;
  char body[128];
} deferred_answer;

static int g_deferred_queued, g_deferred_dropped; /* loop thread */

static void on_answer_closed(uv_handle_t *h) { free(h->data); }

static void on_answer_due(uv_timer_t *t) {
  deferred_answer *a = t->data;
  if (pkid_http_respond_deferred(a->d, 200, NULL, a->body, a->len)) {
    g_deferred_queued++;
  } else {
    g_deferred_dropped++;
  }
  uv_close((uv_handle_t *)t, on_answer_closed);
}

static void on_defer(void *ctx, pkid_http_req *req) {
  deferred_answer *a = calloc(1, sizeof(*a));
  if (a == NULL) return;
  int n = snprintf(a->body, sizeof(a->body), "deferred %.*s", (int)req->path_len, req->path);
  a->len = n < (int)sizeof(a->body) ? (size_t)n : sizeof(a->body) - 1;
  if ((a->d = pkid_http_defer(req)) == NULL) {
    CHECK(!"pkid_http_defer");
    free(a);
    return;
  }
  uv_timer_init(ctx, &a->timer);
  a->timer.data = a;
  uv_timer_start(&a->timer, on_answer_due, strtoul(req->path + 7, NULL, 10), 0);
}

static SSL_CTX *g_server_ctx;

/* /late-tls: TLS cannot be switched on once the server listens. */
static void on_late_tls(void *ctx, pkid_http_req *req) {
  int refused = !pkid_http_set_tls(ctx, g_server_ctx);
  pkid_http_respond(req, 200, NULL, refused ? "refused" : "taken", refused ? 7 : 5);
}
static char g_cert_path[512];
static X509 *g_cert;

/* make_identity makes a self-signed P-256 certificate for 127.0.0.1 and
 * the server's SSL_CTX, and writes the certificate for s_client. */
static int make_identity(void) {
  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 0, &err);
  X509 *x = X509_new();
  if (key == NULL || x == NULL) return 0;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"127.0.0.1", -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_set_pubkey(x, key);
  X509_EXTENSION *bc = X509V3_EXT_nconf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
  X509_EXTENSION *san = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, "IP:127.0.0.1");
  X509_add_ext(x, bc, -1);
  X509_add_ext(x, san, -1);
  X509_EXTENSION_free(bc);
  X509_EXTENSION_free(san);
  if (!X509_sign(x, key, EVP_sha256())) return 0;
  g_server_ctx = SSL_CTX_new(TLS_server_method());
  if (g_server_ctx == NULL || !SSL_CTX_use_certificate(g_server_ctx, x) ||
      !SSL_CTX_use_PrivateKey(g_server_ctx, key)) {
    return 0;
  }
  const char *tmp = getenv("TEST_TMPDIR") != NULL ? getenv("TEST_TMPDIR") : "/tmp";
  snprintf(g_cert_path, sizeof(g_cert_path), "%s/http_tls_test.crt", tmp);
  FILE *f = fopen(g_cert_path, "w");
  if (f == NULL || !PEM_write_X509(f, x)) return 0;
  fclose(f);
  g_cert = x;
  EVP_PKEY_free(key);
  return 1;
}

static void run_server(void (*client)(fixture *f)) {
  fixture f;
  pkid_http_limits limits = pkid_http_default_limits();
  limits.idle_timeout_ms = 2000;
  REQUIRE(http_fixture_init(&f, &limits, client));
  REQUIRE(pkid_http_set_tls(f.srv, g_server_ctx));
  pkid_http_route(f.srv, "GET", "/echo/", on_echo, NULL);
  pkid_http_route(f.srv, "POST", "/body", on_body, NULL);
  pkid_http_route(f.srv, "GET", "/shared", on_shared, NULL);
  pkid_http_route(f.srv, "GET", "/late-tls", on_late_tls, f.srv);
  pkid_http_route(f.srv, "GET", "/defer/", on_defer, &f.loop);
  g_deferred_queued = g_deferred_dropped = 0;
  http_fixture_serve(&f);
}

/* --- the client side (BoringSSL, blocking) -------------------------------- */

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

typedef struct tls_client {
  SSL_CTX *ctx;
  SSL *ssl;
  int fd;
  char buf[1 << 17];
  size_t len;
} tls_client;

static tls_client *tls_open(int port) {
  tls_client *c = calloc(1, sizeof(*c));
  c->fd = tcp_connect(port);
  c->ctx = SSL_CTX_new(TLS_method());
  X509_STORE_add_cert(SSL_CTX_get_cert_store(c->ctx), g_cert);
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  c->ssl = SSL_new(c->ctx);
  SSL_set_fd(c->ssl, c->fd);
  if (c->fd < 0 || SSL_connect(c->ssl) != 1) {
    fprintf(stderr, "  the TLS handshake failed\n");
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0) close(c->fd);
    free(c);
    return NULL;
  }
  return c;
}

static void tls_close(tls_client *c) {
  if (c == NULL) return;
  SSL_free(c->ssl);
  SSL_CTX_free(c->ctx);
  close(c->fd);
  free(c);
}

static int tls_send_str(tls_client *c, const char *s, size_t len) {
  return SSL_write(c->ssl, s, (int)len) == (int)len;
}

/* tls_response reads one response with a Content-Length; its body's
 * length, or -1. */
static long tls_response(tls_client *c, int *status, char *body, size_t body_size) {
  for (;;) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end != NULL) {
      size_t head = (size_t)(end - c->buf) + 4;
      char *cl = memmem(c->buf, head, "Content-Length: ", 16);
      size_t body_len = cl != NULL ? strtoul(cl + 16, NULL, 10) : 0;
      while (c->len < head + body_len) {
        int n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
        if (n <= 0) return -1;
        c->len += (size_t)n;
      }
      *status = atoi(c->buf + 9);
      if (body_len <= body_size) memcpy(body, c->buf + head, body_len);
      memmove(c->buf, c->buf + head + body_len, c->len - head - body_len);
      c->len -= head + body_len;
      return (long)body_len;
    }
    int n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
    if (n <= 0) return -1;
    c->len += (size_t)n;
  }
}

/* --- cases ------------------------------------------------------------------ */

static void client_keep_alive(fixture *f) {
  tls_client *c = tls_open(f->port);
  REQUIRE(c != NULL);
  static const char kLate[] = "GET /late-tls HTTP/1.1\r\nHost: x\r\n\r\n";
  int late_status = 0;
  char late[16];
  CHECK(tls_send_str(c, kLate, sizeof(kLate) - 1));
  CHECK(tls_response(c, &late_status, late, sizeof(late)) == 7 && memcmp(late, "refused", 7) == 0);
  static const char kTwo[] =
      "GET /echo/one HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/two HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(tls_send_str(c, kTwo, sizeof(kTwo) - 1));
  int status = 0;
  char body[65536];
  long n = tls_response(c, &status, body, sizeof(body));
  CHECK(status == 200 && n == 9 && memcmp(body, "/echo/one", 9) == 0);
  n = tls_response(c, &status, body, sizeof(body));
  CHECK(status == 200 && n == 9 && memcmp(body, "/echo/two", 9) == 0);
  /* A body of 15,000 bytes: several TLS records, one request. */
  static char big[15000];
  memset(big, 'b', sizeof(big));
  char head[128];
  int hn = snprintf(head, sizeof(head),
                    "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", sizeof(big));
  CHECK(tls_send_str(c, head, (size_t)hn) && tls_send_str(c, big, sizeof(big)));
  n = tls_response(c, &status, body, sizeof(body));
  CHECK(status == 200 && n == (long)sizeof(big) && memcmp(body, big, sizeof(big)) == 0);
  /* A large body borrowed by the server, not copied. */
  static const char kShared[] = "GET /shared HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(tls_send_str(c, kShared, sizeof(kShared) - 1));
  n = tls_response(c, &status, body, sizeof(body));
  CHECK(status == 200 && n == SHARED_LEN && memcmp(body, g_shared, SHARED_LEN) == 0);
  tls_close(c);
}

TEST(keep_alive_pipelining_bodies) {
  memset(g_shared, 's', sizeof(g_shared));
  g_released = 0;
  run_server(client_keep_alive);
  CHECK(g_released == 1);
}

static void client_close_notify(fixture *f) {
  tls_client *c = tls_open(f->port);
  REQUIRE(c != NULL);
  static const char kReq[] = "GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  CHECK(tls_send_str(c, kReq, sizeof(kReq) - 1));
  int status = 0;
  char body[256];
  CHECK(tls_response(c, &status, body, sizeof(body)) == 10 && status == 200);
  /* Then a clean end: close_notify, not a bare EOF. */
  char more[16];
  int n = SSL_read(c->ssl, more, sizeof(more));
  CHECK(n == 0 && SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN);
  tls_close(c);
}

TEST(close_notify_after_connection_close) { run_server(client_close_notify); }

static void client_plain_http(fixture *f) {
  int fd = tcp_connect(f->port);
  REQUIRE(fd >= 0);
  static const char kReq[] = "GET /echo/plain HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(send(fd, kReq, sizeof(kReq) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(kReq) - 1));
  /* No HTTP answer: at most a TLS alert, then the connection closes. */
  char buf[512];
  size_t got = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + got, sizeof(buf) - got, 0);
    if (n <= 0) break;
    got += (size_t)n;
    if (got == sizeof(buf)) break;
  }
  CHECK(got < sizeof(buf));
  CHECK(got == 0 || memmem(buf, got, "HTTP/1.1", 8) == NULL);
  close(fd);
  /* And the server goes on serving TLS clients. */
  tls_client *c = tls_open(f->port);
  REQUIRE(c != NULL);
  static const char kGet[] = "GET /echo/after HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(tls_send_str(c, kGet, sizeof(kGet) - 1));
  int status = 0;
  char body[64];
  CHECK(tls_response(c, &status, body, sizeof(body)) == 11 && status == 200);
  tls_close(c);
}

TEST(plain_http_refused) { run_server(client_plain_http); }

static void client_deferred(fixture *f) {
  tls_client *c = tls_open(f->port);
  REQUIRE(c != NULL);
  /* Pipelined behind a deferred request, in one record: in order. */
  static const char kTwo[] = "GET /defer/100/first HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /echo/second HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(tls_send_str(c, kTwo, sizeof(kTwo) - 1));
  int status = 0;
  char body[256];
  long n = tls_response(c, &status, body, sizeof(body));
  CHECK(status == 200 && n == 25 && memcmp(body, "deferred /defer/100/first", 25) == 0);
  n = tls_response(c, &status, body, sizeof(body));
  CHECK(status == 200 && n == 12 && memcmp(body, "/echo/second", 12) == 0);
  /* A deferred answer that closes: then close_notify. */
  static const char kLast[] = "GET /defer/50/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  CHECK(tls_send_str(c, kLast, sizeof(kLast) - 1));
  n = tls_response(c, &status, body, sizeof(body));
  CHECK(status == 200 && n == 23 && memcmp(body, "deferred /defer/50/last", 23) == 0);
  char more[16];
  int m = SSL_read(c->ssl, more, sizeof(more));
  CHECK(m == 0 && SSL_get_error(c->ssl, m) == SSL_ERROR_ZERO_RETURN);
  tls_close(c);
  /* A client that resets while its request is deferred: the answer drops. */
  c = tls_open(f->port);
  REQUIRE(c != NULL);
  static const char kGone[] = "GET /defer/200/gone HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(tls_send_str(c, kGone, sizeof(kGone) - 1));
  usleep(50000);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  CHECK(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
  tls_close(c);
  usleep(300000);
}

TEST(deferred_answers) {
  run_server(client_deferred);
  CHECK(g_deferred_queued == 2 && g_deferred_dropped == 1);
}

static void client_openssl(fixture *f) {
  /* OpenSSL's client, verifying the certificate for 127.0.0.1. */
  char cmd[1200];
  snprintf(cmd, sizeof(cmd),
           "printf 'GET /echo/from-openssl HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n"
           "Connection: close\\r\\n\\r\\n' | timeout 20 openssl s_client -connect 127.0.0.1:%d "
           "-CAfile '%s' -verify_return_error -verify_ip 127.0.0.1 -quiet -ign_eof 2>&1",
           f->port, g_cert_path);
  FILE *p = popen(cmd, "r");
  REQUIRE(p != NULL);
  char out[8192];
  size_t n = fread(out, 1, sizeof(out) - 1, p);
  out[n] = '\0';
  int rc = pclose(p);
  CHECK(strstr(out, "HTTP/1.1 200 OK") != NULL);
  CHECK(strstr(out, "/echo/from-openssl") != NULL);
  if (strstr(out, "HTTP/1.1 200 OK") == NULL) fprintf(stderr, "  s_client said:\n%s\n", out);
  CHECK(rc == 0);
}

TEST(openssl_s_client) { run_server(client_openssl); }

int main(void) {
  if (!make_identity()) {
    fprintf(stderr, "http_tls_test: cannot make the server's certificate\n");
    return 1;
  }
  RUN(keep_alive_pipelining_bodies);
  RUN(close_notify_after_connection_close);
  RUN(plain_http_refused);
  RUN(openssl_s_client);
  RUN(deferred_answers);
  X509_free(g_cert);
  SSL_CTX_free(g_server_ctx);
  return test_finish();
}
