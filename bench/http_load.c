/* http_load: an HTTP/1.1 closed-loop load generator for the peers of
 * bench/run.sh: CFSSL's sign API and OCSP responders.
 *
 *   http_load --port P (--csr FILE [--csr FILE ...] | --ocsp REQ.der)
 *             [--host 127.0.0.1] [--path P] [--conns 16] [--seconds 10]
 *             [--warmup 1] [--rate R] [--pid PID] [--label NAME]
 *
 * Keeps --conns connections busy, one request in flight on each (closed
 * loop), or with --rate sends R requests a second on a schedule (open
 * loop, as bench/loadgen --rate): a request whose time has come waits for
 * a free connection if all --conns are busy, and its latency runs from its
 * scheduled time, so a server that falls behind is charged for the wait
 * (no coordinated omission); the largest lag of a send behind its schedule
 * is reported. With
 * --csr, every request is a POST to --path (default /api/v1/cfssl/sign)
 * of {"certificate_request": PEM}, the PEM CSRs made ahead and used in
 * turn; a success is HTTP 200 with "success":true. With --ocsp, every
 * request is a POST of the DER OCSP request (application/ocsp-request, to
 * --path, default /); a success is HTTP 200 with a successful
 * OCSPResponse. Connections are kept alive while the server allows it;
 * when it closes them (HTTP/1.0, "Connection: close": `openssl ocsp`),
 * each request gets a new connection, and the connect time counts in its
 * latency. Only completions inside the measured window (after --warmup,
 * for --seconds) count: throughput, latency (from send to the response's
 * last byte) and, with --pid, the server's CPU time over the window from
 * /proc/PID/stat (the process and its reaped children), or from the sum
 * of PID and its live child processes. Prints one JSON object on stdout,
 * shaped like loadgen's. Responses are read with http_parser, which
 * handles what peers send (Content-Length or chunked bodies, HTTP/1.0,
 * "Connection: close") as a client must. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
#include "lib/err.h"
#include "lib/file.h"

#define RBUF (256 * 1024)
/* The most of a response body kept for the success check: a CFSSL answer
 * is a few kilobytes; the rest of a longer body is parsed but not kept. */
#define BODY_MAX (64 * 1024)
#define MAX_CSRS 1024
#define MAX_SAMPLES (8u * 1024u * 1024u)
#define MAX_FILE (1u << 20)
/* Open loop: scheduled requests waiting for a free connection. */
#define MAX_BACKLOG (1u << 20)

typedef struct conn {
  int fd;
  int open;
  int busy;       /* a request is in flight on it */
  double sent_at; /* when it was sent, or (open loop) scheduled */
  http_parser parser; /* over this connection's bytes, since it opened */
  unsigned status;    /* of the response being read */
  size_t body_len;
  char *body;         /* BODY_MAX bytes */
  /* Set when a response has been read whole: */
  int complete;
  int ok;         /* 200, and the body says success */
  int keep_alive; /* the server keeps the connection open after it */
} conn;

static struct sockaddr_in g_addr;
static char *g_reqs[MAX_CSRS];
static size_t g_req_lens[MAX_CSRS];
static int g_num_reqs;
static int g_next_req;
static int g_ocsp;

static double *g_lat; /* microseconds, inside the window */
static size_t g_num_lat;
static unsigned long long g_ok, g_bad, g_io_errors, g_reconnects;

/* Open loop (g_rate > 0): the schedule, and the scheduled times of the
 * requests due but not yet sent, oldest first (a ring). */
static double g_rate, g_next_due, g_max_lag;
static double *g_backlog;
static size_t g_backlog_head, g_backlog_len;
static unsigned long long g_dropped; /* due when the backlog was full */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
  fprintf(stderr,
          "usage: http_load --port P (--csr FILE [--csr FILE ...] | --ocsp REQ.der)\n"
          "                 [--host H] [--path P] [--conns N] [--seconds S] [--warmup S]\n"
          "                 [--rate R] [--pid PID] [--label NAME]\n");
  exit(2);
}

/* read_file returns the NUL-terminated contents of |path|, or NULL after
 * saying why. */
static char *read_file(const char *path, size_t *len) {
  uint8_t *buf;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_file_read(&buf, len, path, MAX_FILE, &err)) {
    fprintf(stderr, "http_load: %s\n", err.msg);
    return NULL;
  }
  return (char *)buf;
}

/* make_post returns a whole HTTP/1.1 POST of |body| to |path|. */
static char *make_post(const char *host, const char *path, const char *content_type,
                       const char *body, size_t body_len, size_t *out_len) {
  char *req = malloc(body_len + strlen(host) + strlen(path) + strlen(content_type) + 128);
  if (req == NULL) return NULL;
  int head = sprintf(req,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, host, content_type, body_len);
  memcpy(req + head, body, body_len);
  *out_len = (size_t)head + body_len;
  return req;
}

/* make_sign_request builds CFSSL's sign request for one PEM CSR. */
static char *make_sign_request(const char *host, const char *path, const char *pem,
                               size_t *out_len) {
  size_t pem_len = strlen(pem);
  char *body = malloc(pem_len * 2 + 64), *b = body;
  if (body == NULL) return NULL;
  b += sprintf(b, "{\"certificate_request\":\"");
  for (const char *p = pem; *p != '\0'; p++) {
    if (*p == '\n') {
      *b++ = '\\';
      *b++ = 'n';
    } else if (*p == '\r') {
      continue;
    } else if (*p == '"' || *p == '\\') {
      *b++ = '\\';
      *b++ = *p;
    } else {
      *b++ = *p;
    }
  }
  b += sprintf(b, "\"}");
  char *req = make_post(host, path, "application/json", body, (size_t)(b - body), out_len);
  free(body);
  return req;
}

static int conn_open(conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return 0;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(c->fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) != 0) {
    close(c->fd);
    c->fd = -1;
    return 0;
  }
  c->open = 1;
  http_parser_init(&c->parser, HTTP_RESPONSE);
  c->parser.data = c;
  c->complete = 0;
  return 1;
}

/* send_request sends the next request on |c|; its latency will run from
 * |from| (now, or its scheduled time). */
static int send_request(conn *c, double from) {
  int i = g_next_req;
  g_next_req = (g_next_req + 1) % g_num_reqs;
  size_t off = 0;
  c->sent_at = from;
  c->busy = 1;
  while (off < g_req_lens[i]) {
    ssize_t w = send(c->fd, g_reqs[i] + off, g_req_lens[i] - off, MSG_NOSIGNAL);
    if (w <= 0) return 0;
    off += (size_t)w;
  }
  return 1;
}

/* The parser's callbacks: each response's status and body, kept until the
 * response is complete and judged there. */

static int on_headers_complete(http_parser *p) {
  conn *c = p->data;
  c->status = p->status_code;
  c->body_len = 0;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  size_t room = BODY_MAX - c->body_len;
  size_t keep = len < room ? len : room;
  memcpy(c->body + c->body_len, at, keep);
  c->body_len += keep;
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn *c = p->data;
  const char *b = c->body;
  if (g_ocsp) {
    /* OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED (0), ... } */
    c->ok = c->status == 200 && c->body_len > 8 && (unsigned char)b[0] == 0x30 &&
            memmem(b, 8, "\x0a\x01\x00", 3) != NULL;
  } else {
    c->ok = c->status == 200 && memmem(b, c->body_len, "\"success\":true", 14) != NULL;
  }
  c->keep_alive = http_should_keep_alive(p);
  c->complete = 1;
  return 0;
}

static http_parser_settings g_settings;

/* conn_read parses |len| bytes received on |c| (0 at the end of the
 * stream, which ends a body that runs to the close). Returns 0 if they are
 * not a valid response. */
static int conn_read(conn *c, const char *data, size_t len) {
  size_t used = http_parser_execute(&c->parser, &g_settings, data, len);
  return HTTP_PARSER_ERRNO(&c->parser) == HPE_OK && used == len;
}

/* schedule_due moves every request whose time has come (before |until|)
 * into the backlog. */
static void schedule_due(double t, double until) {
  while (g_next_due <= t && g_next_due < until) {
    if (g_backlog_len < MAX_BACKLOG) {
      g_backlog[(g_backlog_head + g_backlog_len) % MAX_BACKLOG] = g_next_due;
      g_backlog_len++;
    } else {
      g_dropped++;
    }
    g_next_due += 1.0 / g_rate;
  }
}

/* dispatch gives work to idle open connections: in the closed loop a new
 * request each, in the open loop the backlog's oldest ones. */
static void dispatch(conn *cs, int conns) {
  for (int i = 0; i < conns; i++) {
    conn *c = &cs[i];
    if (!c->open || c->busy) continue;
    double from = now_s();
    if (g_rate > 0) {
      if (g_backlog_len == 0) return;
      double due = g_backlog[g_backlog_head];
      g_backlog_head = (g_backlog_head + 1) % MAX_BACKLOG;
      g_backlog_len--;
      if (from - due > g_max_lag) g_max_lag = from - due;
      from = due;
    }
    if (!send_request(c, from)) g_io_errors++;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double q) {
  if (g_num_lat == 0) return 0;
  /* The nearest rank: ceil(q * n) - 1. */
  double rank = q * (double)g_num_lat;
  size_t i = (size_t)rank;
  if ((double)i < rank) i++;
  if (i > 0) i--;
  if (i >= g_num_lat) i = g_num_lat - 1;
  return g_lat[i];
}

static double cpu_self_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *path = NULL, *label = NULL, *ocsp_file = NULL;
  const char *csr_files[MAX_CSRS];
  int num_csr_files = 0, port = 0, conns = 16, pid = 0;
  double seconds = 10, warmup = 1;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (strcmp(o, "--port") == 0) port = atoi(v);
    else if (strcmp(o, "--host") == 0) host = v;
    else if (strcmp(o, "--path") == 0) path = v;
    else if (strcmp(o, "--csr") == 0 && num_csr_files < MAX_CSRS) csr_files[num_csr_files++] = v;
    else if (strcmp(o, "--ocsp") == 0) ocsp_file = v;
    else if (strcmp(o, "--conns") == 0) conns = atoi(v);
    else if (strcmp(o, "--seconds") == 0) seconds = atof(v);
    else if (strcmp(o, "--warmup") == 0) warmup = atof(v);
    else if (strcmp(o, "--pid") == 0) pid = atoi(v);
    else if (strcmp(o, "--rate") == 0) g_rate = atof(v);
    else if (strcmp(o, "--label") == 0) label = v;
    else usage();
  }
  if (port <= 0 || (num_csr_files == 0) == (ocsp_file == NULL) || conns < 1 || seconds <= 0 ||
      warmup < 0 || g_rate < 0) {
    usage();
  }
  g_ocsp = ocsp_file != NULL;
  if (path == NULL) path = g_ocsp ? "/" : "/api/v1/cfssl/sign";
  if (label == NULL) label = g_ocsp ? "ocsp" : "cfssl_sign";
  signal(SIGPIPE, SIG_IGN);
  if (g_ocsp) {
    size_t len;
    char *der = read_file(ocsp_file, &len);
    if (der == NULL) return 1;
    if (len == 0) {
      fprintf(stderr, "http_load: %s: empty OCSP request\n", ocsp_file);
      return 1;
    }
    g_reqs[0] = make_post(host, path, "application/ocsp-request", der, len, &g_req_lens[0]);
    free(der);
    if (g_reqs[0] == NULL) return 1;
    g_num_reqs = 1;
  }
  for (int i = 0; i < num_csr_files; i++) {
    size_t len;
    char *pem = read_file(csr_files[i], &len);
    if (pem == NULL) return 1;
    if (strstr(pem, "CERTIFICATE REQUEST") == NULL) {
      fprintf(stderr, "http_load: %s: not a PEM certificate request\n", csr_files[i]);
      return 1;
    }
    g_reqs[g_num_reqs] = make_sign_request(host, path, pem, &g_req_lens[g_num_reqs]);
    free(pem);
    if (g_reqs[g_num_reqs] == NULL) return 1;
    g_num_reqs++;
  }
  g_settings.on_headers_complete = on_headers_complete;
  g_settings.on_body = on_body;
  g_settings.on_message_complete = on_message_complete;
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) usage();
  g_lat = malloc(MAX_SAMPLES * sizeof(double));
  g_backlog = malloc(MAX_BACKLOG * sizeof(double));
  if (g_lat == NULL || g_backlog == NULL) return 1;
  static char rbuf[RBUF];

  int ep = epoll_create1(0);
  conn *cs = calloc((size_t)conns, sizeof(conn));
  for (int i = 0; i < conns; i++) {
    cs[i].body = malloc(BODY_MAX);
    if (cs[i].body == NULL) return 1;
    if (!conn_open(&cs[i])) {
      fprintf(stderr, "http_load: connect 127.0.0.1:%d: %s\n", port, strerror(errno));
      return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  double t0 = now_s();
  double w0 = t0 + warmup, w1 = w0 + seconds;
  g_next_due = t0;
  if (g_rate > 0) schedule_due(t0, w1);
  dispatch(cs, conns);
  int in_window = 0;
  double cpu0 = 0, self0 = 0, real0 = 0;
  struct epoll_event evs[64];
  for (;;) {
    double t = now_s();
    if (!in_window && t >= w0) {
      in_window = 1;
      cpu0 = pid > 0 ? bench_proc_cpu_s(pid, 1) : 0;
      self0 = cpu_self_s();
      real0 = t;
    }
    if (t >= w1) break;
    /* Wake for the next scheduled send, to the nanosecond: epoll_wait's
     * milliseconds would bunch an open loop's sends. */
    double wait_s = 0.05;
    if (g_rate > 0 && g_next_due - t < wait_s) wait_s = g_next_due > t ? g_next_due - t : 0;
    struct timespec timeout = {(time_t)wait_s, (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
    int n = epoll_pwait2(ep, evs, 64, &timeout, NULL);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
      int reopen = 0;
      /* The end of the stream is parsed too: it completes a body that
       * runs to the close, and is an error anywhere else. */
      if (r < 0 || !conn_read(c, rbuf, (size_t)(r > 0 ? r : 0)) || (r == 0 && !c->complete)) {
        g_io_errors++;
        reopen = 1;
      } else if (c->complete) {
        c->complete = 0;
        c->busy = 0;
        double at = now_s();
        if (at >= w0 && at < w1) {
          if (c->ok) {
            g_ok++;
            if (g_num_lat < MAX_SAMPLES) g_lat[g_num_lat++] = (at - c->sent_at) * 1e6;
          } else {
            g_bad++;
          }
        }
        if (!c->keep_alive || r == 0) reopen = 1;
      }
      if (reopen) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->open = 0;
        c->busy = 0;
        if (now_s() < w1 && conn_open(c)) {
          g_reconnects++;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        }
      }
    }
    if (g_rate > 0) schedule_due(now_s(), w1);
    dispatch(cs, conns);
  }
  double elapsed = now_s() - real0;
  double cpu = pid > 0 ? bench_proc_cpu_s(pid, 1) - cpu0 : 0;
  double self = cpu_self_s() - self0;
  close(ep);
  for (int i = 0; i < conns; i++) {
    if (cs[i].open) close(cs[i].fd);
    free(cs[i].body);
  }
  free(cs);

  qsort(g_lat, g_num_lat, sizeof(double), cmp_double);
  unsigned long long errors = g_bad + g_io_errors;
  printf("{\"label\":\"%s\",\"target\":\"%s:%d%s\",\"concurrency\":%d,\"connections\":%d,"
         "\"duration_s\":%.3f,\"warmup_s\":%.3f,\"requests\":%llu,\"successes\":%llu,"
         "\"errors_total\":%llu,\"errors\":{",
         label, host, port, path, conns, conns, elapsed, warmup, g_ok + g_bad, g_ok, errors);
  const char *sep = "";
  if (g_bad > 0) {
    printf("\"http_failure\":%llu", g_bad);
    sep = ",";
  }
  if (g_io_errors > 0) printf("%s\"connection\":%llu", sep, g_io_errors);
  printf("},\"reconnects\":%llu,\"throughput_per_s\":%.1f,", g_reconnects,
         elapsed > 0 ? (double)g_ok / elapsed : 0.0);
  if (g_rate > 0) {
    printf("\"mode\":\"open\",\"offered_rate_per_s\":%.1f,\"max_send_lag_us\":%.0f,"
           "\"unsent_at_end\":%zu,\"dropped\":%llu,",
           g_rate, g_max_lag * 1e6, g_backlog_len, g_dropped);
  } else {
    printf("\"mode\":\"closed\",");
  }
  printf("\"latency_us\":{\"count\":%zu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,"
         "\"max\":%.1f},",
         g_num_lat, pct(0.50), pct(0.90), pct(0.99), pct(0.999),
         g_num_lat > 0 ? g_lat[g_num_lat - 1] : 0.0);
  if (pid > 0 && g_ok > 0 && cpu >= 0) {
    printf("\"server_cpu_s\":%.3f,\"server_cpu_cores\":%.3f,\"server_cpu_us_per_success\":%.1f,",
           cpu, elapsed > 0 ? cpu / elapsed : 0.0, cpu * 1e6 / (double)g_ok);
  } else {
    printf("\"server_cpu_s\":null,\"server_cpu_cores\":null,\"server_cpu_us_per_success\":null,");
  }
  printf("\"client_cpu_us_per_request\":%.1f}\n", g_ok > 0 ? self * 1e6 / (double)g_ok : 0.0);
  for (int i = 0; i < g_num_reqs; i++) free(g_reqs[i]);
  free(g_lat);
  free(g_backlog);
  return g_ok > 0 ? 0 : 1;
}
