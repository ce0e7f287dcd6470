/* metrics_http.c: the /metrics page of pkictl's daemons (see metrics_http.h). */
#include "client/metrics_http.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/hostport.h"

#define REQUEST_MAX 8192      /* a request head longer than this is refused */
#define REQUEST_TIMEOUT_MS 2000
#define STOP_POLL_MS 200      /* how soon the thread sees metrics_http_stop */

struct metrics_http {
  int fd;
  int port;
  pthread_t thread;
  pthread_mutex_t mu;
  char *page; /* NUL-terminated; guarded by mu */
  size_t page_len;
  int stop;   /* guarded by mu */
};

/* ---- the request ---- */

typedef struct route_state {
  int url_seen;
  int path_ok;
  int done;
} route_state;

static int on_url(http_parser *hp, const char *at, size_t len) {
  route_state *s = hp->data;
  /* http_parser may hand the URL in pieces only across buffers; one call
   * here gets all of it, since the whole head is one buffer. */
  struct http_parser_url u;
  http_parser_url_init(&u);
  s->url_seen = 1;
  if (http_parser_parse_url(at, len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) return 0;
  const char *path = at + u.field_data[UF_PATH].off;
  size_t n = u.field_data[UF_PATH].len;
  s->path_ok = n == 8 && memcmp(path, "/metrics", 8) == 0;
  return 0;
}

static int on_headers_complete(http_parser *hp) {
  route_state *s = hp->data;
  s->done = 1;
  http_parser_pause(hp, 1);
  return 0;
}

metrics_http_answer metrics_http_route(const char *req, size_t len) {
  route_state s = {0};
  http_parser hp;
  http_parser_init(&hp, HTTP_REQUEST);
  hp.data = &s;
  http_parser_settings cb;
  http_parser_settings_init(&cb);
  cb.on_url = on_url;
  cb.on_headers_complete = on_headers_complete;
  http_parser_execute(&hp, &cb, req, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&hp);
  if (!s.done) return e == HPE_OK ? METRICS_HTTP_INCOMPLETE : METRICS_HTTP_BAD_REQUEST;
  if (hp.http_major != 1) return METRICS_HTTP_BAD_REQUEST;
  if (!s.path_ok) return METRICS_HTTP_NOT_FOUND;
  if (hp.method == HTTP_GET) return METRICS_HTTP_PAGE;
  if (hp.method == HTTP_HEAD) return METRICS_HTTP_HEAD;
  return METRICS_HTTP_BAD_METHOD;
}

/* ---- one connection ---- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* wait_for waits until |fd| is ready for |events| or the deadline. */
static int wait_for(int fd, short events, uint64_t deadline) {
  for (;;) {
    uint64_t now = now_ms();
    if (now >= deadline) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int rc = poll(&p, 1, (int)(deadline - now));
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return 0;
  }
}

static int send_all(int fd, const char *data, size_t len, uint64_t deadline) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n > 0) {
      data += n;
      len -= (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLOUT, deadline)) return 0;
    } else {
      return 0;
    }
  }
  return 1;
}

static void answer(metrics_http *m, int fd, metrics_http_answer a, uint64_t deadline) {
  static const char kHead[] =
      "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n";
  char head[256];
  if (a == METRICS_HTTP_PAGE || a == METRICS_HTTP_HEAD) {
    char *page = metrics_http_page(m);
    if (page == NULL) {
      snprintf(head, sizeof(head), kHead, "503 Service Unavailable", "text/plain", (size_t)0, "");
      send_all(fd, head, strlen(head), deadline);
      return;
    }
    size_t len = strlen(page);
    /* The exposition format's content type (Prometheus text format 0.0.4). */
    snprintf(head, sizeof(head), kHead, "200 OK", "text/plain; version=0.0.4; charset=utf-8", len,
             "");
    if (send_all(fd, head, strlen(head), deadline) && a == METRICS_HTTP_PAGE) {
      send_all(fd, page, len, deadline);
    }
    free(page);
    return;
  }
  const char *status = a == METRICS_HTTP_NOT_FOUND   ? "404 Not Found"
                       : a == METRICS_HTTP_BAD_METHOD ? "405 Method Not Allowed"
                                                      : "400 Bad Request";
  /* RFC 9110 15.5.6: a 405 says which methods the resource has. */
  snprintf(head, sizeof(head), kHead, status, "text/plain", (size_t)0,
           a == METRICS_HTTP_BAD_METHOD ? "Allow: GET, HEAD\r\n" : "");
  send_all(fd, head, strlen(head), deadline);
}

static void serve(metrics_http *m, int fd) {
  uint64_t deadline = now_ms() + REQUEST_TIMEOUT_MS;
  char req[REQUEST_MAX];
  size_t len = 0;
  metrics_http_answer a = METRICS_HTTP_INCOMPLETE;
  while (a == METRICS_HTTP_INCOMPLETE) {
    if (len == sizeof(req)) {
      a = METRICS_HTTP_BAD_REQUEST; /* a head this long is not a scrape */
      break;
    }
    ssize_t n = recv(fd, req + len, sizeof(req) - len, 0);
    if (n > 0) {
      len += (size_t)n;
      a = metrics_http_route(req, len);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd, POLLIN, deadline)) return; /* too slow: dropped */
    } else {
      return; /* closed or reset before a whole head */
    }
  }
  answer(m, fd, a, deadline);
}

static int stopping(metrics_http *m) {
  pthread_mutex_lock(&m->mu);
  int stop = m->stop;
  pthread_mutex_unlock(&m->mu);
  return stop;
}

static void *run(void *arg) {
  metrics_http *m = arg;
  while (!stopping(m)) {
    struct pollfd p = {.fd = m->fd, .events = POLLIN};
    if (poll(&p, 1, STOP_POLL_MS) <= 0) continue;
    int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) continue; /* the client went away, or out of descriptors for now */
    serve(m, fd);
    close(fd);
  }
  return NULL;
}

/* ---- the server ---- */

metrics_http *metrics_http_start(const char *listen_addr, pki_err *err) {
  struct sockaddr_storage addr;
  if (!pki_hostport_parse(&addr, listen_addr, err)) {
    pki_err_prefix(err, "--metrics-listen: ");
    return NULL;
  }
  metrics_http *m = calloc(1, sizeof(*m));
  char *page = calloc(1, 1);
  if (m == NULL || page == NULL) {
    free(m);
    free(page);
    PKI_ERR_OOM(err);
    return NULL;
  }
  m->page = page;
  socklen_t alen = addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
  m->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (m->fd < 0 || setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(m->fd, (struct sockaddr *)&addr, alen) != 0 || listen(m->fd, 16) != 0 ||
      getsockname(m->fd, (struct sockaddr *)&addr, &alen) != 0) {
    PKI_ERR(err, PKI_ERR_IO, "--metrics-listen %s: %s", listen_addr, strerror(errno));
    if (m->fd >= 0) close(m->fd);
    free(m->page);
    free(m);
    return NULL;
  }
  char ignored[PKI_HOSTPORT_MAX];
  m->port = pki_hostport_format(ignored, sizeof(ignored), (struct sockaddr *)&addr);
  pthread_mutex_init(&m->mu, NULL);
  int rc = pthread_create(&m->thread, NULL, run, m);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "--metrics-listen: no thread: %s", strerror(rc));
    pthread_mutex_destroy(&m->mu);
    close(m->fd);
    free(m->page);
    free(m);
    return NULL;
  }
  return m;
}

int metrics_http_port(const metrics_http *m) { return m->port; }

int metrics_http_publish(metrics_http *m, const char *text, size_t len) {
  char *page = malloc(len + 1);
  if (page == NULL) return 0;
  memcpy(page, text, len);
  page[len] = '\0';
  pthread_mutex_lock(&m->mu);
  char *old = m->page;
  m->page = page;
  m->page_len = len;
  pthread_mutex_unlock(&m->mu);
  free(old);
  return 1;
}

char *metrics_http_page(metrics_http *m) {
  pthread_mutex_lock(&m->mu);
  char *copy = malloc(m->page_len + 1);
  if (copy != NULL) memcpy(copy, m->page, m->page_len + 1);
  pthread_mutex_unlock(&m->mu);
  return copy;
}

void metrics_http_stop(metrics_http *m) {
  if (m == NULL) return;
  pthread_mutex_lock(&m->mu);
  m->stop = 1;
  pthread_mutex_unlock(&m->mu);
  pthread_join(m->thread, NULL);
  pthread_mutex_destroy(&m->mu);
  close(m->fd);
  free(m->page);
  free(m);
}
