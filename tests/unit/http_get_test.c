/* http_get_test: lib/http_get.c (URLs, the response reader, GET over
 * loopback with its timeout) and client/haproxy.c (the bytes a command
 * sends, how replies are judged), against small servers in threads. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/haproxy.h"
#include "lib/http_get.h"
#include "tests/unit/test.h"

/* ---- the reader ---- */

/* parse feeds |text| in pieces of |step| bytes (0: at once), then EOF. */
static int parse(http_get_response *out, const char *text, size_t step, size_t max_body,
                 pki_err *err) {
  http_get_parser p;
  http_get_parser_init(&p, out, max_body);
  size_t len = strlen(text), off = 0;
  while (off < len) {
    size_t n = step == 0 || len - off < step ? len - off : step;
    if (!http_get_parser_feed(&p, (const uint8_t *)text + off, n, err)) return 0;
    off += n;
  }
  return p.done || http_get_parser_feed(&p, NULL, 0, err);
}

TEST(reads_a_crl_response_however_split) {
  static const char kResp[] =
      "HTTP/1.1 200 OK\r\n"
      "Content-Type: application/pkix-crl\r\n"
      "ETag: \"3f-17\"  \r\n"
      "Last-Modified: Wed, 02 Dec 2026 01:00:00 GMT\r\n"
      "Expires: Wed, 02 Dec 2026 02:00:00 GMT\r\n"
      "Cache-Control: public, max-age=3600\r\n"
      "Content-Length: 5\r\n"
      "\r\n"
      "\x30\x03\x02\x01\x01";
  for (size_t step = 0; step < 9; step++) {
    http_get_response r;
    pki_err err;
    pki_err_clear(&err);
    CHECK(parse(&r, kResp, step, 0, &err));
    CHECK(r.status == 200);
    CHECK(strcmp(r.etag, "\"3f-17\"") == 0);
    CHECK(strcmp(r.content_type, "application/pkix-crl") == 0);
    CHECK(strcmp(r.cache_control, "public, max-age=3600") == 0);
    CHECK(strcmp(r.last_modified, "Wed, 02 Dec 2026 01:00:00 GMT") == 0);
    CHECK(strcmp(r.expires, "Wed, 02 Dec 2026 02:00:00 GMT") == 0);
    CHECK(r.body_len == 5 && memcmp(r.body, "\x30\x03\x02\x01\x01", 5) == 0);
    http_get_response_cleanup(&r);
  }
}

TEST(not_modified_has_no_body) {
  http_get_response r;
  pki_err err;
  CHECK(parse(&r, "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n", 0, 0, &err));
  CHECK(r.status == 304 && r.body == NULL && r.body_len == 0);
  CHECK(strcmp(r.etag, "\"a\"") == 0);
  http_get_response_cleanup(&r);
}

TEST(chunked_and_until_close) {
  http_get_response r;
  pki_err err;
  CHECK(parse(&r,
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
              1, 0, &err));
  CHECK(r.body_len == 5 && memcmp(r.body, "abcde", 5) == 0);
  http_get_response_cleanup(&r);
  /* No length: the body runs to the end of the connection. */
  CHECK(parse(&r, "HTTP/1.0 200 OK\r\n\r\nto the end", 3, 0, &err));
  CHECK(r.body_len == 10 && memcmp(r.body, "to the end", 10) == 0);
  http_get_response_cleanup(&r);
}

TEST(interim_responses_are_passed_over) {
  http_get_response r;
  pki_err err;
  CHECK(parse(&r,
              "HTTP/1.1 100 Continue\r\nETag: \"interim\"\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
              0, 0, &err));
  CHECK(r.status == 200 && r.etag[0] == '\0' && r.body_len == 2);
  http_get_response_cleanup(&r);
}

TEST(only_valid_single_etags_are_kept) {
  static const struct {
    const char *header;
    const char *kept;
  } kCases[] = {
      {"ETag: W/\"weak\"\r\n", "W/\"weak\""},
      {"ETag: \"\"\r\n", "\"\""},
      {"ETag: unquoted\r\n", ""},
      {"ETag: \"has space\"\r\n", ""},
      {"ETag: \"a\"b\"\r\n", ""},
      {"ETag: \"a\"\r\nETag: \"a\"\r\n", ""},
      {"etag: \"lower\"\r\n", "\"lower\""},
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    char text[512];
    snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n%sContent-Length: 0\r\n\r\n",
             kCases[i].header);
    http_get_response r;
    pki_err err;
    CHECK(parse(&r, text, 0, 0, &err));
    CHECK(strcmp(r.etag, kCases[i].kept) == 0);
    http_get_response_cleanup(&r);
  }
  /* Too long to keep whole: not kept at all. */
  char text[1024], tag[400];
  memset(tag, 'x', sizeof(tag) - 1);
  tag[sizeof(tag) - 1] = '\0';
  snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nETag: \"%s\"\r\nContent-Length: 0\r\n\r\n",
           tag);
  http_get_response r;
  pki_err err;
  CHECK(parse(&r, text, 7, 0, &err));
  CHECK(r.etag[0] == '\0');
  http_get_response_cleanup(&r);
}

TEST(bodies_over_the_limit_are_refused) {
  http_get_response r;
  pki_err err;
  pki_err_clear(&err);
  CHECK(!parse(&r, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 0, 10, &err));
  CHECK(err.code == PKI_ERR_EXHAUSTED && strstr(err.msg, "limit of 10 bytes") != NULL);
  http_get_response_cleanup(&r);
  pki_err_clear(&err);
  CHECK(!parse(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
                   "8\r\n12345678\r\n0\r\n\r\n",
               2, 10, &err));
  CHECK(err.code == PKI_ERR_EXHAUSTED);
  http_get_response_cleanup(&r);
  /* Exactly at the limit is fine. */
  CHECK(parse(&r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 0, 10, &err));
  CHECK(r.body_len == 10);
  http_get_response_cleanup(&r);
}

TEST(broken_responses_are_errors) {
  static const char *const kBad[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",          /* closed early */
      "HTTP/1.1 200 OK\r\nContent-Le",                                /* in the headers */
      "SMTP ready\r\n",                                                /* not HTTP */
      "HTTP/1.1 2000 OK\r\n\r\n",                                      /* bad status */
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", /* two lengths */
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
      "",
  };
  for (size_t i = 0; i < sizeof(kBad) / sizeof(kBad[0]); i++) {
    http_get_response r;
    pki_err err;
    pki_err_clear(&err);
    int ok = parse(&r, kBad[i], 0, 0, &err);
    CHECK(!ok);
    CHECK(err.msg[0] != '\0');
    if (ok) fprintf(stderr, "  accepted case %zu\n", i);
    http_get_response_cleanup(&r);
  }
}

TEST(urls) {
  http_get_url u;
  pki_err err;
  CHECK(http_get_url_parse(&u, "http://127.0.0.1:8081/crl/agents-ca.crl", &err));
  CHECK(strcmp(u.host, "127.0.0.1") == 0 && strcmp(u.port, "8081") == 0);
  CHECK(strcmp(u.host_header, "127.0.0.1:8081") == 0);
  CHECK(strcmp(u.target, "/crl/agents-ca.crl") == 0);
  CHECK(http_get_url_parse(&u, "HTTP://pki.example/", &err));
  CHECK(strcmp(u.port, "80") == 0 && strcmp(u.host_header, "pki.example") == 0);
  CHECK(http_get_url_parse(&u, "http://[::1]:81/a?b=c#frag", &err));
  CHECK(strcmp(u.host, "::1") == 0 && strcmp(u.host_header, "[::1]:81") == 0);
  CHECK(strcmp(u.target, "/a?b=c") == 0);
  CHECK(http_get_url_parse(&u, "http://h", &err) && strcmp(u.target, "/") == 0);
  static const char *const kBad[] = {
      "https://127.0.0.1/x.crl", "ldap://h/x", "http://user:pw@h/x", "http://h/a b",
      "http://h/a\r\nX: y", "http://h:0/", "/crl/x.crl", "", "http://",
  };
  for (size_t i = 0; i < sizeof(kBad) / sizeof(kBad[0]); i++) {
    pki_err_clear(&err);
    CHECK(!http_get_url_parse(&u, kBad[i], &err));
    CHECK(err.code == PKI_ERR_INVALID);
  }
}

/* ---- a server in a thread ---- */

typedef struct fake_server {
  int fd;                /* listening */
  const char *until;     /* read the request up to this */
  const char *response;  /* then answer this, or nothing when NULL */
  int hold_ms;           /* and wait before closing */
  char request[65536];
  size_t request_len;
  pthread_t thread;
} fake_server;

static void *serve(void *arg) {
  fake_server *s = arg;
  int c = accept(s->fd, NULL, NULL);
  if (c < 0) return NULL;
  while (s->request_len + 1 < sizeof(s->request)) {
    ssize_t n = recv(c, s->request + s->request_len, sizeof(s->request) - 1 - s->request_len, 0);
    if (n <= 0) break;
    s->request_len += (size_t)n;
    s->request[s->request_len] = '\0';
    if (strstr(s->request, s->until) != NULL) break;
  }
  if (s->response != NULL) send(c, s->response, strlen(s->response), MSG_NOSIGNAL);
  if (s->hold_ms > 0) usleep((useconds_t)s->hold_ms * 1000);
  close(c);
  return NULL;
}

/* start_tcp listens on 127.0.0.1 and returns the port. */
static int start_tcp(fake_server *s) {
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 4) != 0 ||
      getsockname(s->fd, (struct sockaddr *)&a, &len) != 0) {
    return 0;
  }
  pthread_create(&s->thread, NULL, serve, s);
  return ntohs(a.sin_port);
}

static int start_unix(fake_server *s, const char *path) {
  s->fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  unlink(path);
  if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s->fd, 4) != 0) {
    close(s->fd);
    return 0;
  }
  pthread_create(&s->thread, NULL, serve, s);
  return 1;
}

/* sock_path names a unix socket: short, since sun_path holds 108 bytes
 * and Bazel's TEST_TMPDIR is longer. */
static void sock_path(char *out, size_t size, const char *name) {
  snprintf(out, size, "/tmp/pkid-http-get-test-%d-%s.sock", (int)getpid(), name);
}

static void stop(fake_server *s) {
  pthread_join(s->thread, NULL);
  close(s->fd);
}

TEST(get_over_loopback) {
  static fake_server s;
  memset(&s, 0, sizeof(s));
  s.until = "\r\n\r\n";
  s.response = "HTTP/1.1 200 OK\r\nETag: \"n1\"\r\nContent-Length: 3\r\n\r\nabc";
  int port = start_tcp(&s);
  REQUIRE(port > 0);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/crl/root.crl", port);
  http_get_request req = {.url = url, .if_none_match = "\"n0\"", .accept = "application/pkix-crl"};
  http_get_response r;
  pki_err err;
  pki_err_clear(&err);
  int ok = http_get(&r, &req, &err);
  stop(&s);
  CHECK(ok);
  if (!ok) fprintf(stderr, "  %s\n", err.msg);
  CHECK(r.status == 200 && r.body_len == 3 && strcmp(r.etag, "\"n1\"") == 0);
  http_get_response_cleanup(&r);
  char host[64];
  snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", port);
  CHECK(strncmp(s.request, "GET /crl/root.crl HTTP/1.1\r\n", 28) == 0);
  CHECK(strstr(s.request, host) != NULL);
  CHECK(strstr(s.request, "\r\nIf-None-Match: \"n0\"\r\n") != NULL);
  CHECK(strstr(s.request, "\r\nAccept: application/pkix-crl\r\n") != NULL);
  CHECK(strstr(s.request, "\r\nConnection: close\r\n") != NULL);
}

TEST(get_times_out_on_a_silent_server) {
  static fake_server s;
  memset(&s, 0, sizeof(s));
  s.until = "\r\n\r\n";
  s.hold_ms = 1500;
  int port = start_tcp(&s);
  REQUIRE(port > 0);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x.crl", port);
  http_get_request req = {.url = url, .timeout_ms = 200};
  http_get_response r;
  pki_err err;
  pki_err_clear(&err);
  double start = test_now();
  CHECK(!http_get(&r, &req, &err));
  double took = test_now() - start;
  stop(&s);
  CHECK(err.code == PKI_ERR_UNAVAILABLE && strstr(err.msg, "timed out") != NULL);
  CHECK(took >= 0.15 && took < 1.4);
  /* Nothing listens any more: refused. */
  pki_err_clear(&err);
  CHECK(!http_get(&r, &req, &err));
  CHECK(err.code == PKI_ERR_UNAVAILABLE);
  http_get_response_cleanup(&r);
}

TEST(get_refuses_bad_etags_before_sending) {
  http_get_request req = {.url = "http://127.0.0.1:9/x", .if_none_match = "\"a\"\r\nX: y"};
  http_get_response r;
  pki_err err;
  pki_err_clear(&err);
  CHECK(!http_get(&r, &req, &err));
  CHECK(err.code == PKI_ERR_INVALID);
}

/* ---- haproxy ---- */

TEST(haproxy_replies) {
  /* haproxy 2.6.12's words (src/ssl_ckch.c). */
  CHECK(haproxy_reply_is_transaction("transaction created for CRL /etc/crl.pem!\n\n"));
  CHECK(haproxy_reply_is_transaction("transaction updated for CA /etc/crl.pem!\n"));
  CHECK(haproxy_reply_is_transaction("Transaction created for certificate a.pem!\n\n"));
  CHECK(!haproxy_reply_is_transaction(
      "Can't replace a CRL file which is not referenced by the configuration!\n"
      "Can't update /etc/x.pem!\n\n"));
  CHECK(!haproxy_reply_is_transaction("Invalid payload\nCan't update /etc/crl.pem!\n\n"));
  CHECK(!haproxy_reply_is_transaction("transaction created for CRL x!\nbut then\n"));
  CHECK(!haproxy_reply_is_transaction(""));
  CHECK(haproxy_reply_is_committed("Committing /etc/crl.pem.\nSuccess!\n\n"));
  CHECK(haproxy_reply_is_committed("Committing a.pem...\nSuccess!\n"));
  CHECK(!haproxy_reply_is_committed("No ongoing transaction! !\nCan't commit /etc/crl.pem!\n\n"));
  CHECK(!haproxy_reply_is_committed("Committing a.pem\nunable to load\nFailed!\n\n"));
  CHECK(!haproxy_reply_is_committed("Committing a.pem\n"));
  CHECK(!haproxy_reply_is_committed("Success!\n"));
}

TEST(haproxy_sends_one_command_with_its_payload) {
  char path[256];
  sock_path(path, sizeof(path), "a");
  static fake_server s;
  memset(&s, 0, sizeof(s));
  s.until = "\n\n";
  s.response = "transaction created for CRL /x/crl.pem!\n\n";
  REQUIRE(start_unix(&s, path));
  char *reply = NULL;
  size_t len = 0;
  pki_err err;
  pki_err_clear(&err);
  int ok = haproxy_run(&reply, &len, path, "set ssl crl-file /x/crl.pem",
                       "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----", 2000, &err);
  stop(&s);
  CHECK(ok);
  CHECK(strcmp(s.request, "set ssl crl-file /x/crl.pem <<\n-----BEGIN X509 CRL-----\nAAAA\n"
                          "-----END X509 CRL-----\n\n") == 0);
  CHECK(reply != NULL && haproxy_reply_is_transaction(reply));
  free(reply);
  /* What would cut the payload short, or split the command, is refused. */
  pki_err_clear(&err);
  CHECK(!haproxy_run(&reply, &len, path, "set ssl crl-file x", "a\n\nb\n", 100, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(!haproxy_run(&reply, &len, path, "show info\nshow stat", NULL, 100, &err));
  pki_err_clear(&err);
  CHECK(!haproxy_update_crl_file(path, "a b.pem", "x\n", 100, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(!haproxy_update_crl_file(path, "a;show info", "x\n", 100, &err));
  unlink(path);
}

TEST(haproxy_refusal_quotes_haproxy) {
  char path[256];
  sock_path(path, sizeof(path), "b");
  static fake_server s;
  memset(&s, 0, sizeof(s));
  s.until = "\n\n";
  s.response = "Invalid payload\nCan't update /x/crl.pem!\n\n";
  REQUIRE(start_unix(&s, path));
  pki_err err;
  pki_err_clear(&err);
  /* The abort that follows finds no server: it is best effort. */
  int ok = haproxy_update_crl_file(path, "/x/crl.pem", "not a crl\n", 500, &err);
  stop(&s);
  CHECK(!ok);
  CHECK(err.code == PKI_ERR_DENIED);
  CHECK(strstr(err.msg, "Invalid payload | Can't update /x/crl.pem!") != NULL);
  /* No socket at all. */
  pki_err_clear(&err);
  CHECK(!haproxy_update_crl_file(path, "/x/crl.pem", "x\n", 500, &err));
  CHECK(err.code == PKI_ERR_UNAVAILABLE);
  pki_err_clear(&err);
  char *reply;
  size_t len;
  CHECK(!haproxy_run(&reply, &len, "no-port-here", "show info", NULL, 100, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  unlink(path);
}

int main(void) {
  RUN(reads_a_crl_response_however_split);
  RUN(not_modified_has_no_body);
  RUN(chunked_and_until_close);
  RUN(interim_responses_are_passed_over);
  RUN(only_valid_single_etags_are_kept);
  RUN(bodies_over_the_limit_are_refused);
  RUN(broken_responses_are_errors);
  RUN(urls);
  RUN(get_over_loopback);
  RUN(get_times_out_on_a_silent_server);
  RUN(get_refuses_bad_etags_before_sending);
  RUN(haproxy_replies);
  RUN(haproxy_sends_one_command_with_its_payload);
  RUN(haproxy_refusal_quotes_haproxy);
  return test_finish();
}
