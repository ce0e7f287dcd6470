/* ocsp_load: an HTTP/1.1 load generator for the OCSP responder.
 *
 *   ocsp_load --port P --req REQ.der [--host 127.0.0.1] [--path /]
 *             [--conns 32] [--threads 1] [--depth 1] [--seconds 10]
 *             [--get] [--pid PID]
 *
 * Keeps --conns keep-alive connections busy for --seconds, each with
 * --depth requests in flight (1: one request, wait for its response;
 * more: pipelined), all asking the same DER request (POST with
 * application/ocsp-request, or GET with the url-encoded base64 path). It
 * counts complete HTTP 200 responses, and, with --pid, reads the server
 * process's CPU time from /proc/PID/stat before and after, to report the
 * server's CPU microseconds per response. Prints one line of results.
 * Responses are read with http_parser: a response counts once it has
 * been read whole, as pipelined responses arrive in any split. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>

#include "bench/proc_cpu.h"
#include "lib/base64.h"
#include "lib/err.h"
#include "lib/file.h"

#define BUF 65536

typedef struct conn {
  int fd;
  int in_flight;
  http_parser parser; /* over this connection's bytes */
  /* Responses completed by the bytes of the last recv: */
  int done;
  unsigned long long ok, bad;
} conn;

typedef struct worker {
  pthread_t thread;
  conn *conns;
  int num_conns;
  unsigned long long responses, errors;
} worker;

static struct sockaddr_in g_addr;
static char *g_request;
static size_t g_request_len;
static int g_depth = 1;
static double g_deadline;
static http_parser_settings g_settings;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int send_requests(conn *c, int n) {
  /* The requests are small; a blocking send of a few at once is fine. */
  for (int i = 0; i < n; i++) {
    size_t off = 0;
    while (off < g_request_len) {
      ssize_t w = send(c->fd, g_request + off, g_request_len - off, MSG_NOSIGNAL);
      if (w <= 0) return 0;
      off += (size_t)w;
    }
  }
  c->in_flight += n;
  return 1;
}

/* on_message_complete counts a whole response: HTTP 200 or not. */
static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  c->done++;
  if (p->status_code == 200) {
    c->ok++;
  } else {
    c->bad++;
  }
  return 0;
}

/* parse_responses feeds |len| received bytes to |c|'s parser and returns
 * the number of responses they completed, or -1 if they are not HTTP. */
static int parse_responses(conn *c, const char *data, size_t len, unsigned long long *ok,
                           unsigned long long *bad) {
  c->done = 0;
  c->ok = c->bad = 0;
  size_t used = http_parser_execute(&c->parser, &g_settings, data, len);
  *ok += c->ok;
  *bad += c->bad;
  if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != len) return -1;
  return c->done;
}

static void *run_worker(void *arg) {
  worker *w = arg;
  int ep = epoll_create1(0);
  for (int i = 0; i < w->num_conns; i++) {
    conn *c = &w->conns[i];
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (!send_requests(c, g_depth)) w->errors++;
  }
  struct epoll_event evs[64];
  char rbuf[BUF];
  while (now_s() < g_deadline) {
    int n = epoll_wait(ep, evs, 64, 100);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
      if (r <= 0) {
        w->errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      int done = parse_responses(c, rbuf, (size_t)r, &w->responses, &w->errors);
      if (done < 0) {
        w->errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      c->in_flight -= done;
      if (done > 0 && now_s() < g_deadline && !send_requests(c, done)) w->errors++;
    }
  }
  close(ep);
  return NULL;
}

static void usage(void) {
  fprintf(stderr,
          "usage: ocsp_load --port P --req REQ.der [--host H] [--path /] [--conns N]\n"
          "                 [--threads T] [--depth D] [--seconds S] [--get] [--pid PID]\n");
  exit(2);
}

/* url_b64 is the GET form of a request (RFC 6960 A.1): base64 (lib/'s
 * codec), then '+', '/' and '=' percent-encoded. */
static char *url_b64(const unsigned char *der, size_t len) {
  size_t b64_len;
  pki_err err;
  char *b64 = malloc(PKI_BASE64_ENCODED_MAX(len));
  /* Each character is at most 3 once percent-encoded. */
  char *out = malloc(3 * PKI_BASE64_ENCODED_MAX(len) + 1), *o = out;
  if (b64 == NULL || out == NULL ||
      !pki_base64_encode(b64, PKI_BASE64_ENCODED_MAX(len), &b64_len, der, len,
                         PKI_BASE64_STD | PKI_BASE64_PAD_REQUIRED, &err)) {
    free(b64);
    free(out);
    return NULL;
  }
  for (size_t i = 0; i < b64_len; i++) {
    if (b64[i] == '+') o += sprintf(o, "%%2B");
    else if (b64[i] == '/') o += sprintf(o, "%%2F");
    else if (b64[i] == '=') o += sprintf(o, "%%3D");
    else *o++ = b64[i];
  }
  *o = '\0';
  free(b64);
  return out;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *path = "/", *req_file = NULL;
  int port = 0, conns = 32, threads = 1, get = 0, pid = 0;
  double seconds = 10;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (strcmp(o, "--get") == 0) {
      get = 1;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (strcmp(o, "--port") == 0) port = atoi(v);
    else if (strcmp(o, "--host") == 0) host = v;
    else if (strcmp(o, "--path") == 0) path = v;
    else if (strcmp(o, "--req") == 0) req_file = v;
    else if (strcmp(o, "--conns") == 0) conns = atoi(v);
    else if (strcmp(o, "--threads") == 0) threads = atoi(v);
    else if (strcmp(o, "--depth") == 0) g_depth = atoi(v);
    else if (strcmp(o, "--seconds") == 0) seconds = atof(v);
    else if (strcmp(o, "--pid") == 0) pid = atoi(v);
    else usage();
  }
  if (port <= 0 || req_file == NULL || conns < 1 || threads < 1 || threads > conns ||
      g_depth < 1 || seconds <= 0) {
    usage();
  }
  signal(SIGPIPE, SIG_IGN);
  uint8_t *der;
  size_t der_len;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_file_read(&der, &der_len, req_file, 1u << 16, &err)) {
    fprintf(stderr, "ocsp_load: %s\n", err.msg);
    return 1;
  }
  g_request = malloc(4 * (der_len + 2) + strlen(path) + strlen(host) + 1024);
  if (g_request == NULL) return 1;
  if (get) {
    char *b64 = url_b64(der, der_len);
    if (b64 == NULL) return 1;
    g_request_len = (size_t)sprintf(g_request, "GET %s%s HTTP/1.1\r\nHost: %s\r\n\r\n", path, b64, host);
    free(b64);
  } else {
    g_request_len = (size_t)sprintf(g_request,
                                    "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                                    "application/ocsp-request\r\nContent-Length: %zu\r\n\r\n",
                                    path, host, der_len);
    memcpy(g_request + g_request_len, der, der_len);
    g_request_len += der_len;
  }
  free(der);
  g_settings.on_message_complete = on_message_complete;
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) usage();

  worker *ws = calloc((size_t)threads, sizeof(worker));
  conn *cs = calloc((size_t)conns, sizeof(conn));
  for (int i = 0; i < conns; i++) {
    http_parser_init(&cs[i].parser, HTTP_RESPONSE);
    cs[i].parser.data = &cs[i];
    cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(cs[i].fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) != 0) {
      perror("connect");
      return 1;
    }
  }
  for (int t = 0; t < threads; t++) {
    int from = conns * t / threads, to = conns * (t + 1) / threads;
    ws[t].conns = cs + from;
    ws[t].num_conns = to - from;
  }
  double cpu0 = pid > 0 ? bench_proc_cpu_s(pid, 0) : 0;
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  double t0 = now_s();
  g_deadline = t0 + seconds;
  for (int t = 0; t < threads; t++) pthread_create(&ws[t].thread, NULL, run_worker, &ws[t]);
  unsigned long long total = 0, errors = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(ws[t].thread, NULL);
    total += ws[t].responses;
    errors += ws[t].errors;
  }
  double elapsed = now_s() - t0;
  double cpu1 = pid > 0 ? bench_proc_cpu_s(pid, 0) : 0;
  getrusage(RUSAGE_SELF, &ru1);
  double self_cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                    (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                    (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                    (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
  printf("ocsp_load: %s conns=%d threads=%d depth=%d seconds=%.1f responses=%llu errors=%llu "
         "rate=%.0f/s",
         get ? "GET" : "POST", conns, threads, g_depth, elapsed, total, errors,
         (double)total / elapsed);
  if (pid > 0 && total > 0) {
    printf(" server_cpu=%.2fs server_cpu_us_per_response=%.2f", cpu1 - cpu0,
           (cpu1 - cpu0) * 1e6 / (double)total);
  }
  printf(" loadgen_cpu=%.2fs\n", self_cpu);
  for (int i = 0; i < conns; i++) close(cs[i].fd);
  free(cs);
  free(ws);
  free(g_request);
  return errors == 0 && total > 0 ? 0 : 1;
}
