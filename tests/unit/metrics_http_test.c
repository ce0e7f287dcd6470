/* metrics_http_test: the /metrics page of pkictl's daemons
 * (client/metrics_http.h): the router's answers, and the server over real
 * loopback sockets while another thread publishes pages (also run under
 * ThreadSanitizer). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/metrics_http.h"
#include "tests/unit/test.h"

static metrics_http_answer route(const char *req) { return metrics_http_route(req, strlen(req)); }

TEST(routes_scrapes) {
  CHECK(route("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == METRICS_HTTP_PAGE);
  CHECK(route("GET /metrics HTTP/1.0\r\n\r\n") == METRICS_HTTP_PAGE);
  /* The query is ignored, as by Prometheus's exporters. */
  CHECK(route("GET /metrics?name[]=up HTTP/1.1\r\n\r\n") == METRICS_HTTP_PAGE);
  CHECK(route("HEAD /metrics HTTP/1.1\r\n\r\n") == METRICS_HTTP_HEAD);
}

TEST(routes_everything_else) {
  CHECK(route("GET / HTTP/1.1\r\n\r\n") == METRICS_HTTP_NOT_FOUND);
  CHECK(route("GET /metricsx HTTP/1.1\r\n\r\n") == METRICS_HTTP_NOT_FOUND);
  CHECK(route("GET /metrics/ HTTP/1.1\r\n\r\n") == METRICS_HTTP_NOT_FOUND);
  CHECK(route("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n") == METRICS_HTTP_BAD_METHOD);
  CHECK(route("DELETE /metrics HTTP/1.1\r\n\r\n") == METRICS_HTTP_BAD_METHOD);
  CHECK(route("hello\r\n\r\n") == METRICS_HTTP_BAD_REQUEST);
  CHECK(route("GET /metrics HTTP/2.0\r\n\r\n") == METRICS_HTTP_BAD_REQUEST);
  CHECK(route("GET /metrics HTTP/1.1\r\nHost: x\r\n") == METRICS_HTTP_INCOMPLETE);
  CHECK(route("GET /met") == METRICS_HTTP_INCOMPLETE);
  CHECK(route("") == METRICS_HTTP_INCOMPLETE);
}

/* fetch sends |req| to 127.0.0.1:|port| and reads the reply until the
 * server closes (it always does: one request per connection). */
static size_t fetch(int port, const char *req, char *out, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  size_t n = 0;
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req)) {
    ssize_t got;
    while (n + 1 < cap && (got = recv(fd, out + n, cap - 1 - n, 0)) > 0) n += (size_t)got;
  }
  if (fd >= 0) close(fd);
  out[n] = '\0';
  return n;
}

TEST(serves_the_page_last_published) {
  pki_err err;
  pki_err_clear(&err);
  metrics_http *m = metrics_http_start("127.0.0.1:0", &err);
  REQUIRE(m != NULL);
  int port = metrics_http_port(m);
  CHECK(port > 0);
  char buf[4096];
  fetch(port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof(buf));
  CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
  CHECK(strstr(buf, "Content-Length: 0\r\n") != NULL);
  const char *page = "# TYPE up gauge\nup 1\n";
  CHECK(metrics_http_publish(m, page, strlen(page)));
  fetch(port, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof(buf));
  CHECK(strstr(buf, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
  CHECK(strstr(buf, "Content-Length: 21\r\n") != NULL);
  CHECK(strstr(buf, "Connection: close\r\n") != NULL);
  const char *body = strstr(buf, "\r\n\r\n");
  CHECK(body != NULL && strcmp(body + 4, page) == 0);
  fetch(port, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n", buf, sizeof(buf));
  body = strstr(buf, "\r\n\r\n");
  CHECK(body != NULL && body[4] == '\0');
  fetch(port, "GET /other HTTP/1.1\r\n\r\n", buf, sizeof(buf));
  CHECK(strncmp(buf, "HTTP/1.1 404 ", 13) == 0);
  fetch(port, "PUT /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", buf, sizeof(buf));
  CHECK(strncmp(buf, "HTTP/1.1 405 ", 13) == 0 && strstr(buf, "Allow: GET, HEAD\r\n") != NULL);
  char *copy = metrics_http_page(m);
  CHECK(copy != NULL && strcmp(copy, page) == 0);
  free(copy);
  metrics_http_stop(m);
}

TEST(refuses_bad_addresses) {
  pki_err err;
  pki_err_clear(&err);
  CHECK(metrics_http_start("localhost:9101", &err) == NULL && err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "--metrics-listen") != NULL);
  pki_err_clear(&err);
  metrics_http *m = metrics_http_start("127.0.0.1:0", &err);
  REQUIRE(m != NULL);
  char taken[32];
  snprintf(taken, sizeof(taken), "127.0.0.1:%d", metrics_http_port(m));
  pki_err_clear(&err);
  CHECK(metrics_http_start(taken, &err) == NULL && err.code == PKI_ERR_IO);
  metrics_http_stop(m);
}

TEST(a_silent_client_is_dropped) {
  pki_err err;
  pki_err_clear(&err);
  metrics_http *m = metrics_http_start("127.0.0.1:0", &err);
  REQUIRE(m != NULL);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_http_port(m))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
  send(fd, "GET /met", 8, MSG_NOSIGNAL);
  /* Within the 2 s budget plus slack the server closes without a reply. */
  struct pollfd p = {.fd = fd, .events = POLLIN};
  CHECK(poll(&p, 1, 5000) == 1);
  char c;
  CHECK(recv(fd, &c, 1, 0) == 0);
  close(fd);
  char buf[256];
  fetch(metrics_http_port(m), "GET /metrics HTTP/1.1\r\n\r\n", buf, sizeof(buf));
  CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
  metrics_http_stop(m);
}

typedef struct publisher {
  metrics_http *m;
  int rounds;
} publisher;

static void *publish_loop(void *arg) {
  publisher *p = arg;
  char page[64];
  for (int i = 0; i < p->rounds; i++) {
    int n = snprintf(page, sizeof(page), "counter %d\ncounter %d\n", i, i);
    metrics_http_publish(p->m, page, (size_t)n);
  }
  return NULL;
}

/* Pages replaced while scrapes run: each scrape sees one whole page. */
TEST(scrapes_see_whole_pages_while_published) {
  pki_err err;
  pki_err_clear(&err);
  metrics_http *m = metrics_http_start("127.0.0.1:0", &err);
  REQUIRE(m != NULL);
  publisher p = {m, 20000};
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, publish_loop, &p) == 0);
  int whole = 0;
  for (int i = 0; i < 50; i++) {
    char buf[512];
    fetch(metrics_http_port(m), "GET /metrics HTTP/1.1\r\n\r\n", buf, sizeof(buf));
    const char *body = strstr(buf, "\r\n\r\n");
    int a = -1, b = -2;
    if (body == NULL) continue;
    if (body[4] == '\0' || sscanf(body + 4, "counter %d\ncounter %d\n", &a, &b) == 2) whole++;
    CHECK(body[4] == '\0' || a == b);
  }
  pthread_join(t, NULL);
  CHECK(whole == 50);
  metrics_http_stop(m);
}

int main(void) {
  RUN(routes_scrapes);
  RUN(routes_everything_else);
  RUN(serves_the_page_last_published);
  RUN(refuses_bad_addresses);
  RUN(a_silent_client_is_dropped);
  RUN(scrapes_see_whole_pages_while_published);
  return test_finish();
}
