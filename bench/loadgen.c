/* loadgen: pkid's load generator, on gRPC core's asynchronous C API.
 *
 *   loadgen --target HOST:PORT --pki DIR [options]
 *
 * Each client thread owns one completion queue and keeps many calls in
 * flight on it (grpc_completion_queue_next). Three modes:
 *
 *  - closed loop (default): --concurrency N unary Issue calls in flight; a
 *    call that completes is replaced at once;
 *  - open loop (--rate R): Issue calls are scheduled by time, R per second,
 *    and each latency is measured from the call's scheduled send time, not
 *    from when the client got round to sending it, so a stalled server is
 *    not hidden by a stalled client (no coordinated omission);
 *  - streaming (--stream): --concurrency N IssueStream streams in flight,
 *    each carrying --stream-requests K requests; a finished stream is
 *    replaced by a new one.
 *
 * Calls are spread round-robin over --connections C channels; every
 * channel has its own subchannel pool and a distinct channel argument, so
 * each is a separate TCP + TLS connection. CSRs (distinct P-256 keys) are
 * made and serialized once, ahead of the run, and reused round-robin.
 *
 * Only completions inside the measured window (after --warmup, for
 * --duration seconds) count. The result is one JSON object on stdout:
 * requests, successes, errors by gRPC status, throughput, latency
 * percentiles of successful requests in microseconds (log-linear buckets,
 * under 1% relative error), the client's own CPU time per request and,
 * with --server-pid, the server's CPU time per successful request, both
 * taken over the same window. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include <openssl/evp.h>

#include "bench/proc_cpu.h"
#include "lib/csr.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/grpc_status.h"
#include "lib/key.h"
#include "proto/pki/v1/pki.pb-c.h"

static const char kUsage[] =
    "usage: loadgen --target HOST:PORT (--pki DIR | --root F --cert F --key F)\n"
    "               [options]\n"
    "  --target HOST:PORT    pkid's gRPC endpoint (default 127.0.0.1:8443)\n"
    "  --pki DIR             a demo tree: trust its root, authenticate as\n"
    "                        pki-agent with its client certificate\n"
    "  --root F --cert F --key F [--chain F]\n"
    "                        or name the PEM files one by one\n"
    "  --server-name NAME    TLS name to expect (default\n"
    "                        pki-ca.cybersec-framework.local)\n"
    "  --concurrency N       calls (or streams) in flight, closed loop\n"
    "                        (default 64 unary, 8 streams)\n"
    "  --rate R              open loop: R requests/s, latency from the\n"
    "                        scheduled send time\n"
    "  --max-outstanding N   open loop: at most N calls in flight; later\n"
    "                        ones wait, their latency still counted from\n"
    "                        their scheduled time (default 10000)\n"
    "  --stream              IssueStream instead of unary Issue\n"
    "  --stream-requests K   requests per stream (default 64)\n"
    "  --connections C       channels, each its own connection (default 4)\n"
    "  --threads T           client threads, one completion queue each\n"
    "                        (default 1)\n"
    "  --duration S          measured seconds (default 10)\n"
    "  --warmup S            seconds before measuring (default 2)\n"
    "  --csrs N              distinct P-256 keys and CSRs (default 256)\n"
    "  --service NAME        catalogue service to ask for (default: the\n"
    "                        caller's own)\n"
    "  --usage client|server certificate profile (default client)\n"
    "  --timeout-ms MS       deadline of each call (default 10000)\n"
    "  --server-pid PID      report the server's CPU time from /proc/PID/stat\n"
    "  --label TEXT          copied into the JSON result\n";

/* ---- options ------------------------------------------------------------ */

typedef enum mode { MODE_CLOSED, MODE_OPEN, MODE_STREAM } mode;

typedef struct options {
  const char *target;
  const char *pki;
  const char *root, *cert, *key, *chain;
  const char *server_name;
  const char *service;
  const char *label;
  int usage;
  mode mode;
  unsigned concurrency;
  double rate;
  unsigned max_outstanding;
  unsigned stream_requests;
  unsigned connections;
  unsigned threads;
  double duration_s, warmup_s;
  unsigned csrs;
  unsigned timeout_ms;
  long server_pid;
} options;

static options g_opt;

static int parse_uint(const char *text, unsigned min, unsigned max, unsigned *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(text, &end, 10);
  if (errno != 0 || *end != '\0' || end == text || v < min || v > max) return 0;
  *out = (unsigned)v;
  return 1;
}

static int parse_double(const char *text, double min, double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno != 0 || *end != '\0' || end == text || !(v >= min && v <= max)) return 0;
  *out = v;
  return 1;
}

static int parse_options(options *o, int argc, char **argv) {
  enum {
    O_TARGET = 256, O_PKI, O_ROOT, O_CERT, O_KEY, O_CHAIN, O_NAME, O_CONC,
    O_RATE, O_MAXOUT, O_STREAM, O_STREQ, O_CONN, O_THREADS, O_DUR, O_WARM,
    O_CSRS, O_SERVICE, O_USAGE, O_TIMEOUT, O_PID, O_LABEL, O_HELP,
  };
  static const struct option kOptions[] = {
      {"target", required_argument, NULL, O_TARGET},
      {"pki", required_argument, NULL, O_PKI},
      {"root", required_argument, NULL, O_ROOT},
      {"cert", required_argument, NULL, O_CERT},
      {"key", required_argument, NULL, O_KEY},
      {"chain", required_argument, NULL, O_CHAIN},
      {"server-name", required_argument, NULL, O_NAME},
      {"concurrency", required_argument, NULL, O_CONC},
      {"rate", required_argument, NULL, O_RATE},
      {"max-outstanding", required_argument, NULL, O_MAXOUT},
      {"stream", no_argument, NULL, O_STREAM},
      {"stream-requests", required_argument, NULL, O_STREQ},
      {"connections", required_argument, NULL, O_CONN},
      {"threads", required_argument, NULL, O_THREADS},
      {"duration", required_argument, NULL, O_DUR},
      {"warmup", required_argument, NULL, O_WARM},
      {"csrs", required_argument, NULL, O_CSRS},
      {"service", required_argument, NULL, O_SERVICE},
      {"usage", required_argument, NULL, O_USAGE},
      {"timeout-ms", required_argument, NULL, O_TIMEOUT},
      {"server-pid", required_argument, NULL, O_PID},
      {"label", required_argument, NULL, O_LABEL},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0},
  };
  memset(o, 0, sizeof(*o));
  o->target = "127.0.0.1:8443";
  o->server_name = "pki-ca.cybersec-framework.local";
  o->service = "";
  o->label = "";
  o->usage = PKI__V1__USAGE__USAGE_CLIENT;
  o->max_outstanding = 10000;
  o->stream_requests = 64;
  o->connections = 4;
  o->threads = 1;
  o->duration_s = 10;
  o->warmup_s = 2;
  o->csrs = 256;
  o->timeout_ms = 10000;
  int stream = 0, c;
  unsigned pid = 0;
  while ((c = getopt_long(argc, argv, "", kOptions, NULL)) != -1) {
    int ok = 1;
    switch (c) {
      case O_TARGET: o->target = optarg; break;
      case O_PKI: o->pki = optarg; break;
      case O_ROOT: o->root = optarg; break;
      case O_CERT: o->cert = optarg; break;
      case O_KEY: o->key = optarg; break;
      case O_CHAIN: o->chain = optarg; break;
      case O_NAME: o->server_name = optarg; break;
      case O_CONC: ok = parse_uint(optarg, 1, 1000000, &o->concurrency); break;
      case O_RATE: ok = parse_double(optarg, 1, 1e7, &o->rate); break;
      case O_MAXOUT: ok = parse_uint(optarg, 1, 1000000, &o->max_outstanding); break;
      case O_STREAM: stream = 1; break;
      case O_STREQ: ok = parse_uint(optarg, 1, 1000000, &o->stream_requests); break;
      case O_CONN: ok = parse_uint(optarg, 1, 1024, &o->connections); break;
      case O_THREADS: ok = parse_uint(optarg, 1, 256, &o->threads); break;
      case O_DUR: ok = parse_double(optarg, 0.1, 86400, &o->duration_s); break;
      case O_WARM: ok = parse_double(optarg, 0, 86400, &o->warmup_s); break;
      case O_CSRS: ok = parse_uint(optarg, 1, 1000000, &o->csrs); break;
      case O_SERVICE: o->service = optarg; break;
      case O_USAGE:
        if (strcmp(optarg, "client") == 0) {
          o->usage = PKI__V1__USAGE__USAGE_CLIENT;
        } else if (strcmp(optarg, "server") == 0) {
          o->usage = PKI__V1__USAGE__USAGE_SERVER;
        } else {
          ok = 0;
        }
        break;
      case O_TIMEOUT: ok = parse_uint(optarg, 1, 3600000, &o->timeout_ms); break;
      case O_PID: ok = parse_uint(optarg, 1, 0x7fffffff, &pid); break;
      case O_LABEL: o->label = optarg; break;
      case O_HELP: fputs(kUsage, stdout); exit(0);
      default: fputs(kUsage, stderr); return 0;
    }
    if (!ok) {
      fprintf(stderr, "loadgen: bad value for --%s: %s\n",
              kOptions[c - O_TARGET].name, optarg);
      return 0;
    }
  }
  if (optind != argc) {
    fputs(kUsage, stderr);
    return 0;
  }
  o->server_pid = (long)pid;
  if (stream && o->rate > 0) {
    fprintf(stderr, "loadgen: --rate drives unary calls; it does not go with --stream\n");
    return 0;
  }
  o->mode = stream ? MODE_STREAM : o->rate > 0 ? MODE_OPEN : MODE_CLOSED;
  if (o->concurrency == 0) o->concurrency = stream ? 8 : 64;
  if (o->mode != MODE_OPEN && o->concurrency < o->threads) {
    fprintf(stderr, "loadgen: --concurrency must be at least --threads\n");
    return 0;
  }
  if (o->pki == NULL && (o->root == NULL || o->cert == NULL || o->key == NULL)) {
    fprintf(stderr, "loadgen: give --pki DIR, or --root, --cert and --key\n");
    return 0;
  }
  return 1;
}

/* ---- time ---------------------------------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* in_ns is a gRPC deadline |ns| nanoseconds from now. */
static gpr_timespec in_ns(int64_t ns) {
  if (ns < 0) ns = 0;
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(ns, GPR_TIMESPAN));
}

/* ---- latency histogram ----------------------------------------------------
 * Log-linear buckets as in HdrHistogram: values below 256 µs exactly, above
 * that 128 buckets per power of two (relative error under 0.8%). */

#define H_SUB_BITS 8
#define H_SUB (1u << H_SUB_BITS)
#define H_HALF (H_SUB / 2)
#define H_BUCKETS (H_SUB + 40 * H_HALF)

typedef struct hist {
  uint64_t counts[H_BUCKETS];
  uint64_t total;
  uint64_t max;
  double sum;
} hist;

static unsigned hist_index(uint64_t v) {
  if (v < H_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - (H_SUB_BITS - 1);
  unsigned idx = H_SUB + (shift - 1) * H_HALF + (unsigned)((v >> shift) - H_HALF);
  return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

/* hist_upper is the highest value that falls in bucket |idx|. */
static uint64_t hist_upper(unsigned idx) {
  if (idx < H_SUB) return idx;
  unsigned shift = (idx - H_SUB) / H_HALF + 1;
  uint64_t sub = (idx - H_SUB) % H_HALF + H_HALF;
  return ((sub + 1) << shift) - 1;
}

static void hist_add(hist *h, uint64_t v) {
  h->counts[hist_index(v)]++;
  h->total++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
}

static void hist_merge(hist *into, const hist *from) {
  for (unsigned i = 0; i < H_BUCKETS; i++) into->counts[i] += from->counts[i];
  into->total += from->total;
  into->sum += from->sum;
  if (from->max > into->max) into->max = from->max;
}

static uint64_t hist_percentile(const hist *h, double p) {
  if (h->total == 0) return 0;
  uint64_t want = (uint64_t)((p / 100.0) * (double)h->total + 0.999999);
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < H_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= want) {
      uint64_t v = hist_upper(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

/* ---- outcomes --------------------------------------------------------------
 * Results are counted by gRPC status (lib/grpc_status.h, the names pkid
 * and libpkiclient use too), plus one outcome of loadgen's own after them:
 * a status of OK whose message carries no certificate. */

#define CODE_BAD_RESPONSE PKI_GRPC_NUM_STATUSES
#define N_CODES (PKI_GRPC_NUM_STATUSES + 1)

static const char *code_name(int code) {
  return code == CODE_BAD_RESPONSE ? "BAD_RESPONSE" : pki_grpc_status_name(code);
}

/* clamp_code maps a status from the wire to a counter: a peer may send a
 * number gRPC does not define. */
static int clamp_code(int64_t code) {
  return code >= 0 && code < PKI_GRPC_NUM_STATUSES ? (int)code : PKI_GRPC_UNKNOWN;
}

/* ---- requests made ahead --------------------------------------------------
 * Making a CSR costs a key generation and a signature, far more than a
 * call: they are made once, before the run. Unary calls send the packed
 * request as it is, without a copy; IssueStream requests differ only in
 * request_id, so each is packed when sent, from the same CSR. */

typedef struct payload {
  uint8_t *csr;
  size_t csr_len;
  Pki__V1__IssueRequest req; /* over csr, request_id 0 */
  uint8_t *packed;           /* req, packed */
  size_t packed_len;
  grpc_slice slice; /* static slice over packed */
} payload;

static payload *g_payloads;

static int make_payloads(void) {
  g_payloads = calloc(g_opt.csrs, sizeof(*g_payloads));
  if (g_payloads == NULL) return 0;
  for (unsigned i = 0; i < g_opt.csrs; i++) {
    pki_err err;
    pki_err_clear(&err);
    EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
    payload *p = &g_payloads[i];
    char cn[64];
    snprintf(cn, sizeof(cn), "loadgen-%u", i);
    if (key == NULL || !pki_csr_build(&p->csr, &p->csr_len, key, cn, NULL, 0, &err)) {
      fprintf(stderr, "loadgen: making CSR %u: %s\n", i, err.msg);
      EVP_PKEY_free(key);
      return 0;
    }
    EVP_PKEY_free(key);
    pki__v1__issue_request__init(&p->req);
    p->req.csr.data = p->csr;
    p->req.csr.len = p->csr_len;
    p->req.service = (char *)g_opt.service;
    p->req.usage = (Pki__V1__Usage)g_opt.usage;
    p->packed = malloc(pki__v1__issue_request__get_packed_size(&p->req));
    if (p->packed == NULL) return 0;
    p->packed_len = pki__v1__issue_request__pack(&p->req, p->packed);
    p->slice = grpc_slice_from_static_buffer(p->packed, p->packed_len);
  }
  return 1;
}

/* stream_request returns |p|'s request with request_id |id|, packed. */
static grpc_byte_buffer *stream_request(const payload *p, uint64_t id) {
  Pki__V1__IssueRequest req = p->req;
  req.request_id = id;
  grpc_slice s = grpc_slice_malloc(pki__v1__issue_request__get_packed_size(&req));
  pki__v1__issue_request__pack(&req, GRPC_SLICE_START_PTR(s));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* ---- responses ------------------------------------------------------------ */

/* unpack_response returns the IssueResponse in |bb| (free it with
 * pki__v1__issue_response__free_unpacked), or NULL if it is not one. */
static Pki__V1__IssueResponse *unpack_response(grpc_byte_buffer *bb) {
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, bb)) return NULL;
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  Pki__V1__IssueResponse *r =
      pki__v1__issue_response__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
  grpc_slice_unref(all);
  return r;
}

/* ---- channels ------------------------------------------------------------ */

typedef struct channel {
  grpc_channel *channel;
  void *issue;  /* registered "/pki.v1.Pki/Issue" */
  void *stream; /* registered "/pki.v1.Pki/IssueStream" */
} channel;

static channel *g_channels;

/* read_pem returns the NUL-terminated contents of |path|, or NULL after
 * saying why. */
static char *read_pem(const char *path) {
  uint8_t *buf;
  size_t len;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_file_read(&buf, &len, path, 1 << 20, &err)) {
    fprintf(stderr, "loadgen: %s\n", err.msg);
    return NULL;
  }
  return (char *)buf;
}

static int wait_ready(grpc_channel *ch, double timeout_s) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
  grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
  int ok = 1;
  while (st != GRPC_CHANNEL_READY) {
    uint64_t now = now_ns();
    if (now >= deadline || st == GRPC_CHANNEL_SHUTDOWN) {
      ok = 0;
      break;
    }
    grpc_channel_watch_connectivity_state(ch, st, in_ns((int64_t)(deadline - now)), cq, NULL);
    grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    st = grpc_channel_check_connectivity_state(ch, 1);
  }
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  return ok;
}

static int make_channels(void) {
  char path[3][4096];
  const char *root = g_opt.root, *cert = g_opt.cert, *key = g_opt.key, *chain = g_opt.chain;
  if (g_opt.pki != NULL) {
    const char *base = "service-certificates/agents/pki-agent/pki-agent-client";
    snprintf(path[0], sizeof(path[0]), "%s/root-ca/certs/root-ca.crt", g_opt.pki);
    snprintf(path[1], sizeof(path[1]), "%s/%s.crt", g_opt.pki, base);
    snprintf(path[2], sizeof(path[2]), "%s/%s-chain.crt", g_opt.pki, base);
    if (root == NULL) root = path[0];
    if (cert == NULL) {
      cert = path[1];
      if (chain == NULL) chain = path[2];
    }
    if (key == NULL) {
      static char key_path[4096];
      snprintf(key_path, sizeof(key_path), "%s/%s.key", g_opt.pki, base);
      key = key_path;
    }
  }
  char *root_pem = read_pem(root);
  char *cert_pem = read_pem(cert);
  char *key_pem = read_pem(key);
  char *chain_pem = chain != NULL ? read_pem(chain) : NULL;
  if (root_pem == NULL || cert_pem == NULL || key_pem == NULL ||
      (chain != NULL && chain_pem == NULL)) {
    return 0;
  }
  if (chain_pem != NULL) {
    size_t a = strlen(cert_pem), b = strlen(chain_pem);
    char *both = malloc(a + b + 2);
    if (both == NULL) return 0;
    memcpy(both, cert_pem, a);
    both[a] = '\n';
    memcpy(both + a + 1, chain_pem, b + 1);
    free(cert_pem);
    free(chain_pem);
    cert_pem = both;
  }
  grpc_ssl_pem_key_cert_pair pair = {key_pem, cert_pem};
  grpc_channel_credentials *creds = grpc_ssl_credentials_create(root_pem, &pair, NULL, NULL);
  free(root_pem);
  free(cert_pem);
  free(key_pem);
  if (creds == NULL) return 0;

  g_channels = calloc(g_opt.connections, sizeof(*g_channels));
  if (g_channels == NULL) return 0;
  for (unsigned i = 0; i < g_opt.connections; i++) {
    grpc_arg args[4];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_STRING;
    args[0].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[0].value.string = (char *)g_opt.server_name;
    /* A subchannel pool of its own, and arguments unlike any other
     * channel's: this channel's connection is not shared. */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[1].value.integer = 1;
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = "pkid.loadgen.channel";
    args[2].value.integer = (int)i;
    /* No retry buffering: a failure is a result to count. */
    args[3].type = GRPC_ARG_INTEGER;
    args[3].key = GRPC_ARG_ENABLE_RETRIES;
    args[3].value.integer = 0;
    grpc_channel_args ca = {4, args};
    channel *c = &g_channels[i];
    c->channel = grpc_channel_create(g_opt.target, creds, &ca);
    c->issue = grpc_channel_register_call(c->channel, "/pki.v1.Pki/Issue", NULL, NULL);
    c->stream = grpc_channel_register_call(c->channel, "/pki.v1.Pki/IssueStream", NULL, NULL);
  }
  grpc_channel_credentials_release(creds);
  for (unsigned i = 0; i < g_opt.connections; i++) {
    if (!wait_ready(g_channels[i].channel, 10)) {
      fprintf(stderr, "loadgen: connection %u to %s did not become ready in 10 s\n", i,
              g_opt.target);
      return 0;
    }
  }
  return 1;
}

/* ---- workers ------------------------------------------------------------- */

enum { TAG_UNARY = 1, TAG_SEND, TAG_RECV, TAG_STATUS };

typedef struct worker worker;

typedef struct tag {
  int kind;
  void *owner;
} tag;

/* live: calls in flight, so that the drain can cancel stragglers. */
typedef struct live {
  struct live *prev, *next;
  grpc_call *call;
} live;

typedef struct unary_call {
  live node;
  tag tag;
  grpc_metadata_array md_initial, md_trailing;
  grpc_byte_buffer *send_bb, *recv_bb;
  grpc_status_code status;
  grpc_slice details;
  uint64_t start_ns;
} unary_call;

typedef struct stream_call {
  live node;
  tag send_tag, recv_tag, status_tag;
  grpc_metadata_array md_initial, md_trailing;
  grpc_byte_buffer *send_bb, *recv_bb;
  grpc_status_code status;
  grpc_slice details;
  unsigned k, sent, answered;
  int send_busy, recv_busy, status_busy, first_recv;
  uint64_t *send_ns; /* per request_id */
  uint8_t *done;     /* per request_id: answered */
} stream_call;

/* A worker is a thread and its completion queue. In open loop a second
 * thread, the sender, starts the calls at their scheduled times (gRPC's
 * completion-queue deadlines round to milliseconds, too coarse to pace
 * sends by); the worker thread only takes completions. The live list and
 * the in-flight count are the only state both touch, under |mu|. */
struct worker {
  unsigned index;
  pthread_t thread, sender;
  grpc_completion_queue *cq;
  unsigned concurrency; /* calls or streams in flight; open loop: the cap */
  uint64_t interval_ns; /* open loop: between two scheduled sends */
  uint64_t first_sched_ns;
  unsigned next_channel, next_payload;
  pthread_mutex_t mu;
  live live_head;
  unsigned inflight;
  atomic_int failed, sender_done;
  int stopping, cancelled;
  uint64_t drain_until_ns;
  unary_call *unary; /* closed loop */
  stream_call *streams;
  /* results in the window, written by the worker thread */
  hist h;
  uint64_t requests, successes;
  uint64_t errors[N_CODES];
  uint64_t stream_failures[N_CODES];
  /* written by the sender thread */
  uint64_t sent, max_send_lag_ns;
};

static uint64_t g_t0_ns, g_window_start_ns, g_window_end_ns;

#define DRAIN_NS (3000000000ull)

static void live_add(worker *w, live *n, grpc_call *call) {
  n->call = call;
  pthread_mutex_lock(&w->mu);
  n->next = w->live_head.next;
  n->prev = &w->live_head;
  w->live_head.next->prev = n;
  w->live_head.next = n;
  w->inflight++;
  pthread_mutex_unlock(&w->mu);
}

static void live_remove(worker *w, live *n) {
  pthread_mutex_lock(&w->mu);
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = NULL;
  w->inflight--;
  pthread_mutex_unlock(&w->mu);
}

static unsigned live_count(worker *w) {
  pthread_mutex_lock(&w->mu);
  unsigned n = w->inflight;
  pthread_mutex_unlock(&w->mu);
  return n;
}

static void live_cancel_all(worker *w) {
  pthread_mutex_lock(&w->mu);
  for (live *n = w->live_head.next; n != &w->live_head; n = n->next) {
    grpc_call_cancel(n->call, NULL);
  }
  pthread_mutex_unlock(&w->mu);
}

static int in_window(uint64_t t) { return t >= g_window_start_ns && t < g_window_end_ns; }

static void record(worker *w, uint64_t now, uint64_t start, int code) {
  if (!in_window(now)) return;
  w->requests++;
  if (code == GRPC_STATUS_OK) {
    w->successes++;
    hist_add(&w->h, (now - start) / 1000);
  } else {
    w->errors[code]++;
  }
}

static channel *next_channel(worker *w) {
  return &g_channels[w->next_channel++ % g_opt.connections];
}

static const payload *next_payload(worker *w) {
  return &g_payloads[w->next_payload++ % g_opt.csrs];
}

static gpr_timespec call_deadline(void) {
  return in_ns((int64_t)g_opt.timeout_ms * 1000000);
}

/* unary */

/* unary_start starts one Issue call. Once it returns 1 the call belongs to
 * the worker thread, which may already be finishing it: the caller must
 * not touch |u| again. */
static int unary_start(worker *w, unary_call *u, uint64_t start_ns) {
  channel *c = next_channel(w);
  const payload *p = next_payload(w);
  u->tag.kind = TAG_UNARY;
  u->tag.owner = u;
  u->start_ns = start_ns;
  u->send_bb = grpc_raw_byte_buffer_create((grpc_slice *)&p->slice, 1);
  u->recv_bb = NULL;
  u->details = grpc_empty_slice();
  grpc_metadata_array_init(&u->md_initial);
  grpc_metadata_array_init(&u->md_trailing);
  grpc_call *call = grpc_channel_create_registered_call(
      c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq, c->issue, call_deadline(), NULL);
  grpc_op ops[6];
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = u->send_bb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->md_initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &u->recv_bb;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &u->md_trailing;
  ops[5].data.recv_status_on_client.status = &u->status;
  ops[5].data.recv_status_on_client.status_details = &u->details;
  if (call != NULL) live_add(w, &u->node, call);
  grpc_call_error e = call != NULL ? grpc_call_start_batch(call, ops, 6, &u->tag, NULL)
                                   : GRPC_CALL_ERROR;
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "loadgen: starting a call failed (%d)\n", (int)e);
    if (call != NULL) {
      live_remove(w, &u->node);
      grpc_call_unref(call);
    }
    grpc_byte_buffer_destroy(u->send_bb);
    grpc_metadata_array_destroy(&u->md_initial);
    grpc_metadata_array_destroy(&u->md_trailing);
    atomic_store(&w->failed, 1);
    return 0;
  }
  return 1;
}

static void unary_done(worker *w, unary_call *u) {
  uint64_t now = now_ns();
  int code = clamp_code(u->status);
  if (code == GRPC_STATUS_OK) {
    Pki__V1__IssueResponse *r = u->recv_bb != NULL ? unpack_response(u->recv_bb) : NULL;
    if (r == NULL || r->certificate.len == 0) code = CODE_BAD_RESPONSE;
    pki__v1__issue_response__free_unpacked(r, NULL);
  }
  record(w, now, u->start_ns, code);
  live_remove(w, &u->node);
  grpc_call_unref(u->node.call);
  grpc_byte_buffer_destroy(u->send_bb);
  if (u->recv_bb != NULL) grpc_byte_buffer_destroy(u->recv_bb);
  grpc_metadata_array_destroy(&u->md_initial);
  grpc_metadata_array_destroy(&u->md_trailing);
  grpc_slice_unref(u->details);
  if (g_opt.mode == MODE_CLOSED) {
    if (!w->stopping) unary_start(w, u, now);
  } else {
    free(u);
  }
}

/* streams */

static int stream_send_next(worker *w, stream_call *s) {
  const payload *p = next_payload(w);
  unsigned id = s->sent;
  s->send_bb = stream_request(p, id);
  grpc_op ops[3];
  memset(ops, 0, sizeof(ops));
  size_t n = 0;
  if (id == 0) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = s->send_bb;
  if (id + 1 == s->k) ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  s->send_ns[id] = now_ns();
  if (grpc_call_start_batch(s->node.call, ops, n, &s->send_tag, NULL) != GRPC_CALL_OK) {
    grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
    return 0;
  }
  s->send_busy = 1;
  return 1;
}

static int stream_recv_next(stream_call *s) {
  grpc_op ops[2];
  memset(ops, 0, sizeof(ops));
  size_t n = 0;
  if (s->first_recv) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->md_initial;
  }
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n++].data.recv_message.recv_message = &s->recv_bb;
  s->recv_bb = NULL;
  if (grpc_call_start_batch(s->node.call, ops, n, &s->recv_tag, NULL) != GRPC_CALL_OK) return 0;
  s->first_recv = 0;
  s->recv_busy = 1;
  return 1;
}

static void stream_start(worker *w, stream_call *s) {
  channel *c = next_channel(w);
  s->send_tag = (tag){TAG_SEND, s};
  s->recv_tag = (tag){TAG_RECV, s};
  s->status_tag = (tag){TAG_STATUS, s};
  s->k = g_opt.stream_requests;
  s->sent = s->answered = 0;
  s->send_busy = s->recv_busy = s->status_busy = 0;
  s->first_recv = 1;
  s->send_bb = s->recv_bb = NULL;
  s->details = grpc_empty_slice();
  memset(s->done, 0, s->k);
  grpc_metadata_array_init(&s->md_initial);
  grpc_metadata_array_init(&s->md_trailing);
  grpc_call *call = grpc_channel_create_registered_call(
      c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq, c->stream, call_deadline(), NULL);
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &s->md_trailing;
  op.data.recv_status_on_client.status = &s->status;
  op.data.recv_status_on_client.status_details = &s->details;
  if (call != NULL) live_add(w, &s->node, call);
  if (call == NULL || !stream_send_next(w, s) || !stream_recv_next(s) ||
      grpc_call_start_batch(call, &op, 1, &s->status_tag, NULL) != GRPC_CALL_OK) {
    /* Cannot happen on a fresh call: a bug, not a result. */
    fprintf(stderr, "loadgen: starting a stream failed\n");
    exit(2);
  }
  s->status_busy = 1;
}

static void stream_maybe_done(worker *w, stream_call *s) {
  if (s->send_busy || s->recv_busy || s->status_busy) return;
  uint64_t now = now_ns();
  int code = clamp_code(s->status);
  if (code != GRPC_STATUS_OK) {
    if (in_window(now)) w->stream_failures[code]++;
    for (unsigned id = 0; id < s->k; id++) {
      if (!s->done[id]) record(w, now, id < s->sent ? s->send_ns[id] : now, code);
    }
  } else if (s->answered < s->k) {
    /* The stream ended cleanly without answering everything. */
    for (unsigned id = 0; id < s->k; id++) {
      if (!s->done[id]) record(w, now, now, CODE_BAD_RESPONSE);
    }
  }
  live_remove(w, &s->node);
  grpc_call_unref(s->node.call);
  grpc_metadata_array_destroy(&s->md_initial);
  grpc_metadata_array_destroy(&s->md_trailing);
  grpc_slice_unref(s->details);
  if (!w->stopping) stream_start(w, s);
}

static void stream_on_send(worker *w, stream_call *s, int ok) {
  s->send_busy = 0;
  grpc_byte_buffer_destroy(s->send_bb);
  s->send_bb = NULL;
  if (ok) {
    s->sent++;
    if (s->sent < s->k && !w->cancelled) stream_send_next(w, s);
  }
  stream_maybe_done(w, s);
}

static void stream_on_recv(worker *w, stream_call *s, int ok) {
  s->recv_busy = 0;
  if (ok && s->recv_bb != NULL) {
    uint64_t now = now_ns();
    Pki__V1__IssueResponse *r = unpack_response(s->recv_bb);
    grpc_byte_buffer_destroy(s->recv_bb);
    s->recv_bb = NULL;
    if (r != NULL && r->request_id < s->k && !s->done[r->request_id]) {
      uint64_t id = r->request_id;
      int code = r->status_code != 0      ? clamp_code(r->status_code)
                 : r->certificate.len == 0 ? CODE_BAD_RESPONSE
                                           : GRPC_STATUS_OK;
      s->done[id] = 1;
      s->answered++;
      record(w, now, s->send_ns[id], code);
    } else {
      record(w, now, now, CODE_BAD_RESPONSE);
    }
    pki__v1__issue_response__free_unpacked(r, NULL);
    stream_recv_next(s);
  } else if (s->recv_bb != NULL) {
    grpc_byte_buffer_destroy(s->recv_bb);
    s->recv_bb = NULL;
  }
  stream_maybe_done(w, s);
}

static void stream_on_status(worker *w, stream_call *s) {
  s->status_busy = 0;
  stream_maybe_done(w, s);
}

/* open loop: the sender thread */

static void *sender_main(void *arg) {
  worker *w = arg;
  uint64_t next = w->first_sched_ns;
  while (next < g_window_end_ns && !atomic_load(&w->failed)) {
    uint64_t now = now_ns();
    if (now < next) {
      sleep_until_ns(next);
      now = now_ns();
    }
    while (next <= now && next < g_window_end_ns) {
      if (live_count(w) >= w->concurrency) {
        /* At the cap: the backlog waits, its clock running. */
        sleep_until_ns(now + 100000);
        break;
      }
      unary_call *u = calloc(1, sizeof(*u));
      if (u == NULL) {
        atomic_store(&w->failed, 1);
        break;
      }
      if (in_window(next)) {
        w->sent++;
        if (now - next > w->max_send_lag_ns) w->max_send_lag_ns = now - next;
      }
      if (!unary_start(w, u, next)) {
        free(u);
        break;
      }
      next += w->interval_ns;
    }
  }
  atomic_store(&w->sender_done, 1);
  return NULL;
}

/* the worker thread */

static void *worker_main(void *arg) {
  worker *w = arg;
  uint64_t now = now_ns();
  if (g_opt.mode == MODE_CLOSED) {
    for (unsigned i = 0; i < w->concurrency && !atomic_load(&w->failed); i++) {
      unary_start(w, &w->unary[i], now);
    }
  } else if (g_opt.mode == MODE_STREAM) {
    for (unsigned i = 0; i < w->concurrency; i++) stream_start(w, &w->streams[i]);
  } else if (pthread_create(&w->sender, NULL, sender_main, w) != 0) {
    fprintf(stderr, "loadgen: cannot start a thread\n");
    exit(2);
  }
  for (;;) {
    now = now_ns();
    if (!w->stopping && (now >= g_window_end_ns || atomic_load(&w->failed))) {
      w->stopping = 1;
      w->drain_until_ns = now + DRAIN_NS;
    }
    int sender_running = g_opt.mode == MODE_OPEN && !atomic_load(&w->sender_done);
    if (w->stopping && !sender_running && live_count(w) == 0) break;
    if (w->stopping && !w->cancelled && now >= w->drain_until_ns) {
      live_cancel_all(w);
      w->cancelled = 1;
    }
    uint64_t wake;
    if (!w->stopping) {
      wake = g_window_end_ns;
    } else if (sender_running) {
      wake = now + 1000000; /* the sender stops at the window's end */
    } else if (!w->cancelled) {
      wake = w->drain_until_ns;
    } else {
      wake = now + 100000000;
    }
    grpc_event ev = grpc_completion_queue_next(w->cq, in_ns((int64_t)(wake - now)), NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    tag *t = ev.tag;
    switch (t->kind) {
      case TAG_UNARY: unary_done(w, t->owner); break;
      case TAG_SEND: stream_on_send(w, t->owner, ev.success); break;
      case TAG_RECV: stream_on_recv(w, t->owner, ev.success); break;
      case TAG_STATUS: stream_on_status(w, t->owner); break;
      default: break;
    }
  }
  if (g_opt.mode == MODE_OPEN) pthread_join(w->sender, NULL);
  grpc_completion_queue_shutdown(w->cq);
  while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(w->cq);
  return NULL;
}

/* ---- CPU time ------------------------------------------------------------ */


static double self_cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* ---- output -------------------------------------------------------------- */

static void print_json_string(const char *s) {
  putchar('"');
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      printf("\\%c", ch);
    } else if (ch < 0x20) {
      printf("\\u%04x", ch);
    } else {
      putchar(ch);
    }
  }
  putchar('"');
}

static const char *mode_name(mode m) {
  switch (m) {
    case MODE_CLOSED: return "unary_closed";
    case MODE_OPEN: return "unary_open";
    case MODE_STREAM: return "stream_closed";
  }
  return "?";
}

int main(int argc, char **argv) {
  if (!parse_options(&g_opt, argc, argv)) return 2;
  if (!make_payloads()) return 2;
  grpc_init();
  if (!make_channels()) return 2;

  unsigned nt = g_opt.threads;
  worker *workers = calloc(nt, sizeof(*workers));
  if (workers == NULL) return 2;
  g_t0_ns = now_ns();
  g_window_start_ns = g_t0_ns + (uint64_t)(g_opt.warmup_s * 1e9);
  g_window_end_ns = g_window_start_ns + (uint64_t)(g_opt.duration_s * 1e9);
  for (unsigned i = 0; i < nt; i++) {
    worker *w = &workers[i];
    w->index = i;
    w->cq = grpc_completion_queue_create_for_next(NULL);
    pthread_mutex_init(&w->mu, NULL);
    w->live_head.next = w->live_head.prev = &w->live_head;
    w->next_channel = i;
    w->next_payload = i * (g_opt.csrs / nt);
    if (g_opt.mode == MODE_OPEN) {
      w->concurrency = g_opt.max_outstanding / nt + (i < g_opt.max_outstanding % nt);
      if (w->concurrency == 0) w->concurrency = 1;
      w->interval_ns = (uint64_t)(1e9 * nt / g_opt.rate);
      if (w->interval_ns == 0) w->interval_ns = 1;
      w->first_sched_ns = g_t0_ns + w->interval_ns * i / nt;
    } else {
      w->concurrency = g_opt.concurrency / nt + (i < g_opt.concurrency % nt);
    }
    if (g_opt.mode == MODE_CLOSED) {
      w->unary = calloc(w->concurrency, sizeof(*w->unary));
      if (w->unary == NULL) return 2;
    } else if (g_opt.mode == MODE_STREAM) {
      w->streams = calloc(w->concurrency, sizeof(*w->streams));
      if (w->streams == NULL) return 2;
      for (unsigned j = 0; j < w->concurrency; j++) {
        w->streams[j].send_ns = calloc(g_opt.stream_requests, sizeof(uint64_t));
        w->streams[j].done = calloc(g_opt.stream_requests, 1);
        if (w->streams[j].send_ns == NULL || w->streams[j].done == NULL) return 2;
      }
    }
  }
  for (unsigned i = 0; i < nt; i++) {
    if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
      fprintf(stderr, "loadgen: cannot start a thread\n");
      return 2;
    }
  }

  sleep_until_ns(g_window_start_ns);
  uint64_t w0 = now_ns();
  double srv0 = g_opt.server_pid > 0 ? bench_proc_cpu_s((int)g_opt.server_pid, 0) * 1e6 : -1;
  double cli0 = self_cpu_us();
  sleep_until_ns(g_window_end_ns);
  uint64_t w1 = now_ns();
  double srv1 = g_opt.server_pid > 0 ? bench_proc_cpu_s((int)g_opt.server_pid, 0) * 1e6 : -1;
  double cli1 = self_cpu_us();

  for (unsigned i = 0; i < nt; i++) pthread_join(workers[i].thread, NULL);

  hist *h = calloc(1, sizeof(*h));
  if (h == NULL) return 2;
  uint64_t requests = 0, successes = 0, sent = 0, errors[N_CODES] = {0},
           stream_failures[N_CODES] = {0}, max_lag = 0;
  int failed = 0;
  for (unsigned i = 0; i < nt; i++) {
    worker *w = &workers[i];
    hist_merge(h, &w->h);
    requests += w->requests;
    successes += w->successes;
    sent += w->sent;
    for (int c = 0; c < N_CODES; c++) {
      errors[c] += w->errors[c];
      stream_failures[c] += w->stream_failures[c];
    }
    if (w->max_send_lag_ns > max_lag) max_lag = w->max_send_lag_ns;
    failed |= atomic_load(&w->failed);
  }
  double window_s = (double)(w1 - w0) / 1e9;
  uint64_t error_total = requests - successes;

  printf("{\"tool\": \"loadgen\", \"label\": ");
  print_json_string(g_opt.label);
  printf(", \"mode\": \"%s\", \"target\": ", mode_name(g_opt.mode));
  print_json_string(g_opt.target);
  printf(", \"connections\": %u, \"threads\": %u", g_opt.connections, nt);
  if (g_opt.mode == MODE_OPEN) {
    printf(", \"offered_rate_per_s\": %.1f, \"max_outstanding\": %u", g_opt.rate,
           g_opt.max_outstanding);
  } else {
    printf(", \"concurrency\": %u", g_opt.concurrency);
  }
  if (g_opt.mode == MODE_STREAM) printf(", \"stream_requests\": %u", g_opt.stream_requests);
  printf(", \"csrs\": %u, \"warmup_s\": %.3f, \"duration_s\": %.3f", g_opt.csrs, g_opt.warmup_s,
         window_s);
  printf(", \"requests\": %" PRIu64 ", \"successes\": %" PRIu64 ", \"errors_total\": %" PRIu64,
         requests, successes, error_total);
  printf(", \"errors\": {");
  int first = 1;
  for (int c = 1; c < N_CODES; c++) {
    if (errors[c] == 0) continue;
    printf("%s\"%s\": %" PRIu64, first ? "" : ", ", code_name(c), errors[c]);
    first = 0;
  }
  printf("}");
  if (g_opt.mode == MODE_STREAM) {
    printf(", \"stream_failures\": {");
    first = 1;
    for (int c = 1; c < N_CODES; c++) {
      if (stream_failures[c] == 0) continue;
      printf("%s\"%s\": %" PRIu64, first ? "" : ", ", code_name(c), stream_failures[c]);
      first = 0;
    }
    printf("}");
  }
  if (g_opt.mode == MODE_OPEN) {
    printf(", \"sent\": %" PRIu64 ", \"max_send_lag_us\": %" PRIu64, sent, max_lag / 1000);
  }
  printf(", \"throughput_per_s\": %.1f", window_s > 0 ? (double)successes / window_s : 0.0);
  printf(", \"latency_us\": {\"count\": %" PRIu64 ", \"mean\": %.1f, \"p50\": %" PRIu64
         ", \"p90\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"p99_9\": %" PRIu64 ", \"max\": %" PRIu64
         "}",
         h->total, h->total > 0 ? h->sum / (double)h->total : 0.0, hist_percentile(h, 50),
         hist_percentile(h, 90), hist_percentile(h, 99), hist_percentile(h, 99.9), h->max);
  if (srv0 >= 0 && srv1 >= 0) {
    printf(", \"server_pid\": %ld, \"server_cpu_s\": %.3f, \"server_cpu_cores\": %.3f",
           g_opt.server_pid, (srv1 - srv0) / 1e6,
           window_s > 0 ? (srv1 - srv0) / 1e6 / window_s : 0.0);
    if (successes > 0) {
      printf(", \"server_cpu_us_per_success\": %.1f", (srv1 - srv0) / (double)successes);
    } else {
      printf(", \"server_cpu_us_per_success\": null");
    }
  } else if (g_opt.server_pid > 0) {
    printf(", \"server_pid\": %ld, \"server_cpu_s\": null, \"server_cpu_us_per_success\": null",
           g_opt.server_pid);
  }
  long rss_kb, hwm_kb;
  if (g_opt.server_pid > 0 && bench_proc_rss_kb((int)g_opt.server_pid, &rss_kb, &hwm_kb)) {
    /* Resident memory at the end of the phase, and the peak since start. */
    printf(", \"server_rss_kb\": %ld, \"server_hwm_kb\": %ld", rss_kb, hwm_kb);
  }
  printf(", \"client_cpu_s\": %.3f, \"client_cpu_cores\": %.3f", (cli1 - cli0) / 1e6,
         window_s > 0 ? (cli1 - cli0) / 1e6 / window_s : 0.0);
  if (requests > 0) {
    printf(", \"client_cpu_us_per_request\": %.1f", (cli1 - cli0) / (double)requests);
  } else {
    printf(", \"client_cpu_us_per_request\": null");
  }
  printf(", \"client_failed\": %s}\n", failed ? "true" : "false");
  fflush(stdout);

  for (unsigned i = 0; i < nt; i++) {
    worker *w = &workers[i];
    pthread_mutex_destroy(&w->mu);
    free(w->unary);
    if (w->streams != NULL) {
      for (unsigned j = 0; j < w->concurrency; j++) {
        free(w->streams[j].send_ns);
        free(w->streams[j].done);
      }
      free(w->streams);
    }
  }
  free(workers);
  free(h);
  for (unsigned i = 0; i < g_opt.connections; i++) grpc_channel_destroy(g_channels[i].channel);
  free(g_channels);
  grpc_shutdown();
  for (unsigned i = 0; i < g_opt.csrs; i++) {
    free(g_payloads[i].csr);
    free(g_payloads[i].packed);
  }
  free(g_payloads);
  return failed ? 1 : 0;
}
