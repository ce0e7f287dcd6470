/* pkid: the issuance server.
 *
 *   pkid [--pki DIR] [--listen HOST:PORT] [--passphrase-file F]
 *        [--catalog FILE] [--node N]
 *
 * It loads the online CAs from a pki/ tree (pkictl ceremony demo makes
 * one), presents the pki-ca service's certificate, and serves pki.v1.Pki
 * over gRPC with mutual TLS. SIGTERM or SIGINT drain it: GOAWAY to every
 * client, calls in progress finish, then exit. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/sha.h>
#include <uv.h>

#include "lib/catalog.h"
#include "lib/cert_info.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/key.h"
#include "lib/log.h"
#include "lib/pki_tree.h"
#include "lib/secret.h"
#include "lib/token.h"
#include "server/acme/acme.h"
#include "server/api/api.h"
#include "server/audit/siem.h"
#include "server/ca/ca.h"
#include "server/config.h"
#include "server/fleet/fleet.h"
#include "server/fleet/follow.h"
#include "server/http/admin.h"
#include "server/http/crl_http.h"
#include "server/http/ocsp_http.h"
#include "server/metrics/metrics.h"
#include "server/notify.h"
#include "server/pipeline/ceremonies.h"
#include "server/pipeline/crl.h"
#include "server/pipeline/event.h"
#include "server/pipeline/import.h"
#include "server/pipeline/job.h"
#include "server/pipeline/serials.h"
#include "server/pipeline/workers.h"
#include "server/rpc/rpc.h"
#include "server/store/checkpoints.h"
#include "server/store/status.h"
#include "server/store/store.h"
#include "server/transport/tls.h"
#include "server/transport/transport.h"

/* The limits of the gRPC front end, across the transport, rpc and api
 * layers; each is a flag (--NAME with dashes) and a config key (limits:
 * NAME), in kLimits. */
typedef struct pkid_limits {
  unsigned long max_conns, max_conns_per_address, max_streams, max_header_bytes;
  unsigned long idle_timeout_ms, handshake_timeout_ms, max_call_ms, max_stream_ms;
  unsigned long max_connection_age_ms, identity_max_in_flight, identity_rate;
  unsigned long journal_segment_bytes;
  unsigned long crl_interval_s, crl_delta_interval_s, crl_validity_s, crl_batch_ms;
  unsigned long checkpoint_interval_s, checkpoint_records;
  unsigned long refusal_window_s;
} pkid_limits;

typedef struct limit_def {
  const char *flag;
  size_t offset;     /* in pkid_limits */
  size_t cfg_offset; /* in pkid_config; 0: no config key */
  unsigned long def, min, max;
  const char *help;
} limit_def;

#define LIMIT(name, def, min, max, help)                                                   \
  {#name, offsetof(pkid_limits, name), offsetof(pkid_config, name), def, min, max, help}

static const limit_def kLimits[] = {
    LIMIT(max_conns, 4096, 1, 1000000, "gRPC connections at once"),
    LIMIT(max_conns_per_address, 64, 1, 1000000,
          "gRPC connections at once from one address (IPv6: one /64)"),
    LIMIT(max_streams, 256, 1, 100000, "concurrent calls per connection"),
    LIMIT(idle_timeout_ms, 300000, 1, 100000000, "close a connection idle this long"),
    LIMIT(handshake_timeout_ms, 5000, 1, 100000000, "close a connection not through TLS by then"),
    LIMIT(max_call_ms, 30000, 1, 100000000, "the longest a unary call may take"),
    LIMIT(max_stream_ms, 600000, 1, 100000000, "the longest an IssueStream or StreamAudit may take"),
    LIMIT(max_connection_age_ms, 3600000, 1000, 100000000,
          "GOAWAY to a connection this old (with jitter)"),
    LIMIT(identity_max_in_flight, 1024, 1, 1000000, "requests of one identity in the pipeline"),
    LIMIT(identity_rate, 2000, 0, 100000000, "requests per second of one identity (0: no limit)"),
    LIMIT(journal_segment_bytes, 64 << 20, 64 << 10, 1ul << 40,
          "journal segment files roll at this size"),
    LIMIT(crl_interval_s, PKID_CRL_INTERVAL_S, 1, 31536000,
          "a new base CRL (the one deltas refer to) at least this often"),
    LIMIT(crl_delta_interval_s, PKID_CRL_DELTA_INTERVAL_S, 1, 604800,
          "complete and delta CRLs rebuilt at least this often"),
    LIMIT(crl_validity_s, PKID_CRL_VALIDITY_S, 60, 31536000,
          "complete CRLs' nextUpdate, this long after thisUpdate"),
    LIMIT(crl_batch_ms, PKID_CRL_BATCH_MS, 10, 60000,
          "revocations wait at most this long to share a CRL"),
    LIMIT(checkpoint_interval_s, PKID_CHECKPOINT_INTERVAL_S, 1, 86400,
          "a signed checkpoint of the journal at least this often (if it grew)"),
    LIMIT(checkpoint_records, PKID_CHECKPOINT_RECORDS, 1, 100000000,
          "and after this many records, whichever is first"),
    LIMIT(refusal_window_s, 10, 1, 3600,
          "refused requests are journaled, counted per identity and reason, this often"),
};
#define NUM_LIMITS (sizeof(kLimits) / sizeof(kLimits[0]))

static unsigned long *limit_at(pkid_limits *l, const limit_def *d) {
  return (unsigned long *)((char *)l + d->offset);
}

typedef struct options {
  const char *pki;
  const char *listen;
  const char *ocsp_listen;
  const char *admin_listen;
  const char *passphrase_file;
  const char *catalog;
  const char *journal;
  const char *postgres; /* the fleet's database (server/fleet/fleet.h); NULL: alone */
  unsigned node;
  unsigned workers;
  pkid_siem_options siem; /* .collector NULL: no SIEM feed */
  pkid_acme_config acme;  /* .listen NULL: no ACME server */
  pkid_limits limits;
} options;

static const char kUsage[] =
    "usage: pkid [--config FILE] [--pki DIR] [--listen HOST:PORT] [--passphrase-file F]\n"
    "            [--catalog FILE] [--node N] ...\n"
    "  --config FILE        a YAML file of these settings (see server/config.h);\n"
    "                       flags win over it\n"
    "  --pki DIR            the pki/ tree with the online CAs (default ./pki)\n"
    "  --listen HOST:PORT   gRPC endpoint (default 127.0.0.1:8443)\n"
    "  --ocsp-listen HOST:PORT[/PATH/]\n"
    "                       OCSP responder (default 127.0.0.1:8081, the\n"
    "                       catalogue's ocsp_url)\n"
    "  --admin-listen HOST:PORT\n"
    "                       /metrics, /healthz, /readyz (default 127.0.0.1:9090)\n"
    "  --passphrase-file F  CA passphrase (default DIR/ca-passphrase, or\n"
    "                       $PKID_CA_PASSPHRASE); for CA keys in a PKCS#11\n"
    "                       token (private/<ca>.key.pkcs11), the token's PIN\n"
    "  --catalog FILE       service catalogue (default: built in)\n"
    "  --journal DIR        the journal: pkid's store and audit trail\n"
    "                       (default DIR/journal under --pki)\n"
    "  --node N             this node's serial prefix, 1-32767 (default 1)\n"
    "  --postgres CONNINFO  the fleet's PostgreSQL (libpq connection string):\n"
    "                       node lease, inventory; put a password in a passfile\n"
    "                       or use a client certificate, not on this line\n"
    "  --workers N          signing threads (default: one per CPU)\n"
    "  --siem HOST:PORT     stream the journal's events to this syslog collector\n"
    "                       (RFC 5424 over TLS, server/audit/siem.h); with\n"
    "  --siem-ca FILE       the CAs its certificate must chain to (PEM)\n"
    "  --siem-name NAME     the name its certificate must have (default HOST)\n"
    "  --siem-cert FILE     pkid's client certificate and its chain (PEM)\n"
    "  --siem-key FILE      and its key\n"
    "  --siem-hostname NAME the messages' HOSTNAME (default: the host's name)\n"
    "  --acme-listen HOST:PORT\n"
    "                       an ACME server (RFC 8555) on HTTPS at\n"
    "                       https://HOST:PORT/acme/directory, with pkid's\n"
    "                       certificate; accounts need an external account key\n"
    "                       ('pkictl acme eab create --service NAME'); the keys\n"
    "                       derive from DIR/acme/eab.key (made if missing, 0600)\n"
    "  --acme-test-mode     for tests on one host only, allows the next three:\n"
    "  --acme-http-port N   http-01 validation connects to N, not 80\n"
    "  --acme-tls-port N    tls-alpn-01 validation connects to N, not 443\n"
    "  --acme-resolve NAME=IP\n"
    "                       validate NAME at IP, not its DNS address (repeatable)\n"
    "limits and CRL timings (flag --NAME-WITH-DASHES N; in the config file\n"
    "limits: {NAME: N}, or crl: {interval_s: N, ...} for the crl_ ones, and\n"
    "checkpoint: {interval_s: N, records: N} for the checkpoint_ ones):\n";

static void usage(FILE *f) {
  fputs(kUsage, f);
  for (size_t i = 0; i < NUM_LIMITS; i++) {
    fprintf(f, "  %-24s %s (default %lu)\n", kLimits[i].flag, kLimits[i].help, kLimits[i].def);
  }
}

static pkid_config g_config; /* strings in |options| may point into it */

/* apply_config takes the settings of --config FILE as defaults. */
static int apply_config(options *o, int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[i + 1];
    if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
  }
  if (path == NULL) return 1;
  pki_err err;
  if (!pkid_config_load(&g_config, path, &err)) {
    fprintf(stderr, "pkid: %s\n", err.msg);
    return 0;
  }
  const pkid_config *c = &g_config;
  if (c->pki != NULL) o->pki = c->pki;
  if (c->journal != NULL) o->journal = c->journal;
  if (c->listen != NULL) o->listen = c->listen;
  if (c->ocsp_listen != NULL) o->ocsp_listen = c->ocsp_listen;
  if (c->admin_listen != NULL) o->admin_listen = c->admin_listen;
  if (c->passphrase_file != NULL) o->passphrase_file = c->passphrase_file;
  if (c->catalog != NULL) o->catalog = c->catalog;
  if (c->postgres != NULL) o->postgres = c->postgres;
  if (c->acme_listen != NULL) o->acme.listen = c->acme_listen;
  if (c->siem != NULL) o->siem.collector = c->siem;
  if (c->siem_ca != NULL) o->siem.ca_file = c->siem_ca;
  if (c->siem_name != NULL) o->siem.name = c->siem_name;
  if (c->siem_cert != NULL) o->siem.cert_file = c->siem_cert;
  if (c->siem_key != NULL) o->siem.key_file = c->siem_key;
  if (c->siem_hostname != NULL) o->siem.hostname = c->siem_hostname;
  if (c->node > 32767 || (c->workers > 64)) {
    fprintf(stderr, "pkid: %s: node must be 1 to 32767 and workers 1 to 64\n", path);
    return 0;
  }
  if (c->node != 0) o->node = (unsigned)c->node;
  if (c->workers != 0) o->workers = (unsigned)c->workers;
  for (size_t i = 0; i < NUM_LIMITS; i++) {
    unsigned long v = *(const unsigned long *)((const char *)c + kLimits[i].cfg_offset);
    if (v == 0) continue; /* not set */
    if (v < kLimits[i].min || v > kLimits[i].max) {
      fprintf(stderr, "pkid: %s: limits: %s must be %lu to %lu\n", path, kLimits[i].flag,
              kLimits[i].min, kLimits[i].max);
      return 0;
    }
    *limit_at(&o->limits, &kLimits[i]) = v;
  }
  return 1;
}

/* parse_number reads a decimal number within [min, max] for |flag|. */
static int parse_number(unsigned long *out, const char *text, const char *flag,
                        unsigned long min, unsigned long max) {
  char *end;
  unsigned long v = strtoul(text, &end, 10);
  if (text[0] == '\0' || text[0] == '-' || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "pkid: --%s must be a number from %lu to %lu\n", flag, min, max);
    return 0;
  }
  *out = v;
  return 1;
}

enum { OPT_LIMIT = 1000 }; /* getopt values for the limits: OPT_LIMIT + index */

static int parse_options(options *o, int argc, char **argv) {
  static struct option opts[27 + NUM_LIMITS + 1] = {
      {"config", required_argument, NULL, 'F'},
      {"pki", required_argument, NULL, 'p'},
      {"listen", required_argument, NULL, 'l'},
      {"ocsp-listen", required_argument, NULL, 'o'},
      {"admin-listen", required_argument, NULL, 'a'},
      {"passphrase-file", required_argument, NULL, 'f'},
      {"catalog", required_argument, NULL, 'c'},
      {"journal", required_argument, NULL, 'j'},
      {"node", required_argument, NULL, 'n'},
      {"postgres", required_argument, NULL, 'P'},
      {"workers", required_argument, NULL, 'w'},
      {"siem", required_argument, NULL, 'S'},
      {"siem-ca", required_argument, NULL, 'A'},
      {"siem-name", required_argument, NULL, 'N'},
      {"siem-cert", required_argument, NULL, 'C'},
      {"siem-key", required_argument, NULL, 'K'},
      {"siem-hostname", required_argument, NULL, 'H'},
      {"acme-listen", required_argument, NULL, 'm'},
      {"acme-test-mode", no_argument, NULL, 'T'},
      {"acme-http-port", required_argument, NULL, 'W'},
      {"acme-tls-port", required_argument, NULL, 'L'},
      {"acme-resolve", required_argument, NULL, 'R'},
      {"help", no_argument, NULL, 'h'},
  };
  static char flags[NUM_LIMITS][48];
  size_t n = 0;
  while (opts[n].name != NULL) n++;
  for (size_t i = 0; i < NUM_LIMITS; i++) {
    snprintf(flags[i], sizeof(flags[i]), "%s", kLimits[i].flag);
    for (char *p = flags[i]; *p != '\0'; p++) {
      if (*p == '_') *p = '-';
    }
    opts[n + i] = (struct option){flags[i], required_argument, NULL, OPT_LIMIT + (int)i};
  }
  o->pki = "pki";
  o->listen = "127.0.0.1:8443";
  o->ocsp_listen = "127.0.0.1:8081";
  o->admin_listen = "127.0.0.1:9090";
  o->node = 1;
  for (size_t i = 0; i < NUM_LIMITS; i++) *limit_at(&o->limits, &kLimits[i]) = kLimits[i].def;
  o->limits.max_header_bytes = 16384;
  if (!apply_config(o, argc, argv)) return 0;
  int c;
  unsigned long v;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c >= OPT_LIMIT && c < OPT_LIMIT + (int)NUM_LIMITS) {
      const limit_def *d = &kLimits[c - OPT_LIMIT];
      if (!parse_number(limit_at(&o->limits, d), optarg, flags[c - OPT_LIMIT], d->min, d->max)) {
        return 0;
      }
      continue;
    }
    switch (c) {
      case 'F': break; /* read first, by apply_config */
      case 'p': o->pki = optarg; break;
      case 'l': o->listen = optarg; break;
      case 'o': o->ocsp_listen = optarg; break;
      case 'a': o->admin_listen = optarg; break;
      case 'f': o->passphrase_file = optarg; break;
      case 'c': o->catalog = optarg; break;
      case 'j': o->journal = optarg; break;
      case 'P': o->postgres = optarg; break;
      case 'S': o->siem.collector = optarg; break;
      case 'A': o->siem.ca_file = optarg; break;
      case 'N': o->siem.name = optarg; break;
      case 'C': o->siem.cert_file = optarg; break;
      case 'K': o->siem.key_file = optarg; break;
      case 'H': o->siem.hostname = optarg; break;
      case 'm': o->acme.listen = optarg; break;
      case 'T': o->acme.test_mode = 1; break;
      case 'W':
        if (!parse_number(&v, optarg, "acme-http-port", 1, 65535)) return 0;
        o->acme.http_port = (unsigned)v;
        break;
      case 'L':
        if (!parse_number(&v, optarg, "acme-tls-port", 1, 65535)) return 0;
        o->acme.tls_port = (unsigned)v;
        break;
      case 'R':
        if (o->acme.num_resolve == PKID_ACME_MAX_RESOLVE) {
          fprintf(stderr, "pkid: at most %d --acme-resolve\n", PKID_ACME_MAX_RESOLVE);
          return 0;
        }
        o->acme.resolve[o->acme.num_resolve++] = optarg;
        break;
      case 'n':
        if (!parse_number(&v, optarg, "node", 1, 32767)) return 0;
        o->node = (unsigned)v;
        break;
      case 'w':
        if (!parse_number(&v, optarg, "workers", 1, 64)) return 0;
        o->workers = (unsigned)v;
        break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); return 0;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 0;
  }
  const pkid_siem_options *so = &o->siem;
  if (so->collector == NULL && (so->ca_file != NULL || so->cert_file != NULL ||
                                so->key_file != NULL || so->name != NULL)) {
    fprintf(stderr, "pkid: --siem-ca, --siem-name, --siem-cert and --siem-key need --siem\n");
    return 0;
  }
  pki_err err;
  if (!pkid_acme_check_config(&o->acme, &err)) {
    fprintf(stderr, "pkid: %s\n", err.msg);
    return 0;
  }
  if (o->acme.listen == NULL && (o->acme.test_mode || o->acme.num_resolve != 0)) {
    fprintf(stderr, "pkid: the --acme- settings need --acme-listen\n");
    return 0;
  }
  return 1;
}

/* The process: every layer's top object, wired together by run(). */
typedef struct process {
  uv_loop_t *loop;
  const options *o;
  pkid_cas cas;
  pkid_status *status;
  pkid_store store;
  pkid_serials serials;
  pkid_workers *workers;
  pkid_api api;
  pkid_rpc *rpc;
  pkid_transport *transport;
  pkid_ocsp_http *ocsp;
  pkid_acme *acme;        /* with --acme-listen */
  pkid_crl_http *crl_http;
  pkid_crl_builder *crl;
  pkid_admin *admin;
  pkid_import *import;
  pkid_ceremonies *ceremonies; /* pki/ceremony.log, imported */
  pkid_fleet *fleet;      /* with --postgres */
  pkid_siem *siem;        /* the SIEM feed, with --siem */
  uv_async_t fleet_lost;  /* the fleet thread's word that the lease is gone */
  uv_timer_t fleet_check; /* readiness follows the shipping lag */
  EVP_PKEY *audit_key;    /* signs checkpoints (pki/audit/); NULL: none */
  pkid_checkpoints *checkpoints;
  uv_timer_t checkpoint_timer;
  uv_timer_t refusal_timer; /* ends each window of refusals (api/refusals.h) */
  pkid_audit *audit;      /* StreamAudit's readers of the journal */
  pkid_follow *follow;    /* the other nodes' changes, with --postgres */
  uv_async_t fleet_changes; /* the follower's word that changes wait */
  int fleet_synced;       /* what the fleet had at start is applied here */
  int journal_ok;         /* the last commit's outcome */
  int tokens_ok;          /* every CA key in a PKCS#11 token can sign */
  uv_timer_t token_check; /* watches the tokens, with any CA key in one */
  uv_work_t token_work;   /* their recovery, on libuv's pool */
  int token_busy;         /* token_work is queued or running */
  int token_recovered;    /* its outcome, and why it failed */
  pki_err token_err;
  int token_err_logged;   /* once an outage: the first reason it goes on */
  int draining;
  int admin_stopping;
  int http_stopped; /* OCSP, admin (and ACME) listeners done (counts to 2 or 3) */
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t drain_timer, drain_check;
  /* What a reload reads again. */
  char crt[PKI_PATH_MAX], key[PKI_PATH_MAX], chain[PKI_PATH_MAX], root[PKI_PATH_MAX];
  int bootstrap;
  pki_catalog *retired[64]; /* jobs in flight may point into them */
  size_t num_retired;
  char grpc_where[PKI_HOSTPORT_MAX]; /* the gRPC listener's address */
  char journal_dir[PKI_PATH_MAX];
} process;

static process g;

/* Draining: stop accepting, GOAWAY everyone, stop when all are gone or the
 * grace period ends. */
static void on_http_stopped(void *arg) {
  (void)arg;
  g.http_stopped++;
}

static void on_drain_timeout(uv_timer_t *timer) {
  (void)timer;
  pki_log("warn", "drain_timeout", NULL);
  pkid_transport_close_all(g.transport);
  /* The HTTP listeners give up within their own grace periods (5 s); the
   * check goes on until they have. */
}

/* The admin listener goes last: until the gRPC connections are gone it
 * answers /readyz with 503, which is what tells a load balancer to stop
 * sending (a listener that is simply gone tells it less). */
static void on_admin_stopped(void *arg) {
  g.admin = NULL;
  on_http_stopped(arg);
}

static void on_drain_check(uv_timer_t *timer) {
  if (pkid_transport_num_conns(g.transport) != 0) return;
  if (g.admin != NULL && !g.admin_stopping) {
    g.admin_stopping = 1;
    pkid_admin_stop(g.admin, on_admin_stopped, NULL);
  }
  if (g.http_stopped == 2 + (g.acme != NULL)) {
    uv_timer_stop(timer);
    uv_stop(g.loop);
  }
}

static void set_ready(int ready) {
  /* Ready takes every input: the journal, the drain, the fleet's lag and
   * whether the fleet's changes are applied here. */
  ready = ready && g.journal_ok && g.tokens_ok && !g.draining &&
          (g.fleet == NULL || pkid_fleet_ready(g.fleet)) && (g.follow == NULL || g.fleet_synced);
  if (g.admin != NULL) pkid_admin_set_ready(g.admin, ready);
  pkid_gauge_set(pkid_m.ready, ready);
}

/* notify_serving tells systemd pkid is ready (again), with a status line. */
static void notify_serving(void) {
  char status[PKI_HOSTPORT_MAX + 64];
  snprintf(status, sizeof(status), "serving on %s, %zu certificates", g.grpc_where,
           pkid_status_count(g.status));
  pkid_notify_ready(status);
}

/* drain stops taking work, finishes what is in flight and stops; |why|
 * is a signal's name or what failed. */
static void drain(const char *why) {
  if (g.draining) return;
  g.draining = 1;
  pki_log("info", "draining", "signal", why, NULL);
  char status[64];
  snprintf(status, sizeof(status), "draining (%s)", why);
  pkid_notify_stopping(status);
  pkid_transport_stop_accepting(g.transport);
  set_ready(0);
  /* The refusals counted so far go into the journal with the work in
   * flight; those of the drain itself (UNAVAILABLE) are not recorded. */
  pkid_refusals_flush(g.api.refusals);
  pkid_ocsp_http_stop(g.ocsp, on_http_stopped, NULL);
  if (g.acme != NULL) pkid_acme_stop(g.acme, 5000, on_http_stopped, NULL);
  pkid_rpc_drain(g.rpc);
  pkid_audit_drain(g.audit);
  uv_timer_start(&g.drain_timer, on_drain_timeout, 10000, 0);
  uv_timer_start(&g.drain_check, on_drain_check, 0, 20);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)sig;
  drain(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Reload on SIGHUP: the server's certificate (new connections get the new
 * one; open ones keep theirs) and the catalogue. The CA hierarchy itself
 * is fixed for the life of the process: a catalogue that changes it is
 * refused and the old one kept. */
static int same_hierarchy(const pki_catalog *a, const pki_catalog *b) {
  if (a->num_cas != b->num_cas) return 0;
  for (size_t i = 0; i < a->num_cas; i++) {
    const pki_catalog_ca *x = &a->cas[i], *y = &b->cas[i];
    if (strcmp(x->name, y->name) != 0 ||
        (x->parent == NULL) != (y->parent == NULL) ||
        (x->parent != NULL && strcmp(x->parent, y->parent) != 0)) {
      return 0;
    }
  }
  return 1;
}

/* journal_reload puts a reload, or its refusal, on the audit trail. The
 * signal's sender is not known (SIGHUP carries no credentials pkid could
 * trust), so the identity says how it came. */
static void journal_reload(pki_event_outcome outcome, const char *detail) {
  pkid_event ev = {.kind = PKI_EVENT_RELOAD,
                   .outcome = outcome,
                   .identity = "signal:SIGHUP",
                   .detail = detail};
  pki_err err;
  if (!pkid_event_submit(g.workers, &ev, NULL, NULL, &err)) {
    pki_log("error", "event_not_journaled", "detail", detail, "reason", err.msg, NULL);
  }
}

/* catalog_digest is the SHA-256 of the catalogue file, in hex: which
 * catalogue a reload put in force. "" if it cannot be read. */
static void catalog_digest(char hex[2 * SHA256_DIGEST_LENGTH + 1]) {
  uint8_t *data, digest[SHA256_DIGEST_LENGTH];
  size_t len;
  pki_err err;
  hex[0] = '\0';
  if (!pki_file_read(&data, &len, g.o->catalog, 1 << 24, &err)) return;
  SHA256(data, len, digest);
  free(data);
  for (size_t i = 0; i < sizeof(digest); i++) sprintf(hex + 2 * i, "%02x", digest[i]);
}

static void reload_catalog(void) {
  pki_err err;
  pki_err_clear(&err);
  char detail[PKI_PATH_MAX + 512];
  pki_catalog *next = pki_catalog_load_file(g.o->catalog, &err);
  if (next == NULL) {
    pki_log("error", "reload_refused", "what", "catalogue", "reason", err.msg, NULL);
    snprintf(detail, sizeof(detail), "catalogue %s refused: %s", g.o->catalog, err.msg);
    journal_reload(PKI_OUTCOME_FAILED, detail);
    return;
  }
  const pki_catalog *cur = g.api.cat;
  if (!same_hierarchy(cur, next) || g.num_retired == sizeof(g.retired) / sizeof(g.retired[0])) {
    const char *why = "the CA hierarchy changed (restart pkid for that)";
    pki_log("error", "reload_refused", "what", "catalogue", "reason", why, NULL);
    snprintf(detail, sizeof(detail), "catalogue %s refused: %s", g.o->catalog, why);
    journal_reload(PKI_OUTCOME_FAILED, detail);
    pki_catalog_free(next);
    return;
  }
  /* The status index keeps services by index: carry them over by name. */
  uint16_t *map = calloc(cur->num_services > 0 ? cur->num_services : 1, sizeof(uint16_t));
  if (map == NULL) {
    pki_catalog_free(next);
    journal_reload(PKI_OUTCOME_FAILED, "catalogue refused: out of memory");
    return;
  }
  for (size_t i = 0; i < cur->num_services; i++) {
    const pki_catalog_service *s = pki_catalog_find_service(next, cur->services[i].name);
    map[i] = s != NULL ? (uint16_t)(s - next->services) : 0xffff;
  }
  pkid_status_remap_services(g.status, map, cur->num_services);
  free(map);
  g.retired[g.num_retired++] = (pki_catalog *)cur;
  g.api.cat = next;
  g.store.cat = next;
  pkid_import_set_catalog(g.import, next);
  pki_log("info", "reloaded", "what", "catalogue", "file", g.o->catalog, NULL);
  char hex[2 * SHA256_DIGEST_LENGTH + 1];
  catalog_digest(hex);
  snprintf(detail, sizeof(detail), "catalogue %s: %zu services (was %zu), SHA-256 %s",
           g.o->catalog, next->num_services, cur->num_services, hex);
  journal_reload(PKI_OUTCOME_OK, detail);
}

/* load_root_crl serves the root's CRL, which only a ceremony can sign:
 * pki/crl/<root>.crl, read at start and at each reload. */
static void load_root_crl(void) {
  char path[PKI_PATH_MAX];
  pki_err err;
  pki_err_clear(&err);
  const char *root = pki_catalog_root(g.api.cat)->name;
  if (!pki_tree_crl_path(path, sizeof(path), g.o->pki, root, 0, 0, &err)) return;
  if (!pki_file_exists(path)) {
    pki_log("warn", "root_crl_missing", "file", path, "action",
            "run pkictl ceremony crl; chains are not checkable by CRL until then", NULL);
    return;
  }
  if (!pkid_crl_http_load_root(g.crl_http, path, &err)) {
    pki_log("error", "root_crl_refused", "reason", err.msg, NULL);
    return;
  }
  pki_log("info", "root_crl_loaded", "file", path, NULL);
}

static void on_sighup(uv_signal_t *sig, int signum) {
  (void)sig;
  (void)signum;
  /* The reload runs to its end in this callback, so READY=1 follows
   * RELOADING=1 before anything else happens; while draining, systemd is
   * stopping pkid and hears neither. */
  if (!g.draining) pkid_notify_reloading();
  pki_err err;
  pki_err_clear(&err);
  SSL_CTX *ctx = pkid_tls_ctx_new(g.crt, g.chain, g.key, g.root, !g.bootstrap, &err);
  char detail[PKI_PATH_MAX + 512];
  if (ctx == NULL) {
    pki_log("error", "reload_refused", "what", "certificate", "reason", err.msg, NULL);
    snprintf(detail, sizeof(detail), "server certificate %s refused: %s", g.crt, err.msg);
    journal_reload(PKI_OUTCOME_FAILED, detail);
  } else {
    pkid_transport_set_ssl_ctx(g.transport, ctx);
    SSL_CTX_free(ctx);
    pki_log("info", "reloaded", "what", "certificate", "file", g.crt, NULL);
    snprintf(detail, sizeof(detail), "server certificate %s", g.crt);
    journal_reload(PKI_OUTCOME_OK, detail);
  }
  if (g.o->catalog != NULL) reload_catalog();
  /* And what the ceremonies signed since, and the root's CRL they made. */
  if (!pkid_import_scan(g.import, &err)) {
    pki_log("error", "import_failed", "reason", err.msg, NULL);
  }
  if (!pkid_ceremonies_scan(g.ceremonies, &err)) {
    pki_log("error", "ceremony_log_refused", "reason", err.msg, NULL);
    journal_reload(PKI_OUTCOME_FAILED, err.msg);
  }
  load_root_crl();
  if (!g.draining) notify_serving();
}

static void close_handle(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

/* open_store replays the journal into the status index and reserves the
 * first block of serials before anything is issued. */
static int open_store(const options *o, const pki_catalog *cat, pki_err *err) {
  char *journal_dir = g.journal_dir;
  snprintf(g.journal_dir, sizeof(g.journal_dir), "%s", o->journal);
  if (o->journal == NULL) snprintf(g.journal_dir, sizeof(g.journal_dir), "%s/journal", o->pki);
  if ((g.status = pkid_status_new(1024)) == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  pkid_store_options store_opts = {.node = (uint16_t)o->node,
                                   .segment_bytes = o->limits.journal_segment_bytes};
  if (!pkid_store_open(&g.store, journal_dir, cat, &g.cas, g.status, &store_opts, err)) {
    return 0;
  }
  pki_journal_stats jstats;
  pki_journal_get_stats(g.store.journal, &jstats);
  char replayed[32], truncated[32], count[32];
  snprintf(replayed, sizeof(replayed), "%llu", (unsigned long long)g.store.replayed);
  snprintf(truncated, sizeof(truncated), "%llu", (unsigned long long)jstats.truncated_bytes);
  snprintf(count, sizeof(count), "%zu", pkid_status_count(g.status));
  /* "torn": a record was cut short, by a crash during an append that was
   * never acknowledged; "ahead": only the zeros written ahead (journal.h). */
  const char *what = jstats.truncated_bytes == 0 ? "none"
                     : jstats.truncated_zeros    ? "ahead"
                                                 : "torn";
  pki_log("info", "journal_open", "dir", journal_dir, "replayed", replayed, "truncated_bytes",
          truncated, "truncated", what, "certificates", count, NULL);
  /* A long replay (after a crash) is not repeated at the next start. */
  if (g.store.replayed > 10000 && !pkid_store_snapshot(&g.store, err)) return 0;
  return pkid_serials_init(&g.serials, &g.store, (uint16_t)o->node, err);
}

/* own_paths finds the pki-ca service's certificate files: pkid presents
 * them. */
static int own_paths(const options *o, const pki_catalog *cat, pki_err *err) {
  const pki_catalog_service *self = pki_catalog_find_service(cat, "pki-ca");
  if (self == NULL || self->num_certs == 0) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "the catalogue has no pki-ca server certificate");
    return 0;
  }
  const pki_catalog_cert *c = &self->certs[0];
  return pki_tree_service_path(g.crt, sizeof(g.crt), o->pki, self, c, ".crt", err) &&
         pki_tree_service_path(g.key, sizeof(g.key), o->pki, self, c, ".key", err) &&
         pki_tree_service_path(g.chain, sizeof(g.chain), o->pki, self, c, "-chain.crt", err) &&
         pki_tree_ca_path(g.root, sizeof(g.root), o->pki, pki_catalog_root(cat),
                          PKI_TREE_CA_CERT, err);
}

/* report_expiry sets the seed's cert_expiry_timestamp{cert_name=...} for
 * the CAs and pkid's own certificate, which its alert rules watch. */
/* report_keys sets pkid_ca_key_ready for every CA: 1 for a key in
 * memory; a token's own readiness. */
static void report_keys(void) {
  for (size_t i = 0; i < g.cas.num_cas; i++) {
    const pki_p11_key *token = g.cas.cas[i].issuer.token;
    pkid_metrics_ca_key_ready(g.cas.cas[i].def->name, token == NULL || pki_p11_key_ready(token));
  }
}

static void report_expiry(void) {
  for (size_t i = 0; i < g.cas.num_cas; i++) {
    pkid_metrics_cert_expiry(g.cas.cas[i].def->name, g.cas.cas[i].issuer.not_after);
  }
  uint8_t *own = NULL;
  size_t own_len;
  pki_cert_info info;
  pki_err err;
  if (pki_tree_read_cert(&own, &own_len, g.crt, &err) &&
      pki_cert_info_parse(&info, own, own_len, &err)) {
    pkid_metrics_cert_expiry("pki-ca-server", info.not_after);
    pki_cert_info_cleanup(&info);
  }
  free(own);
}

static unsigned default_workers(void) {
  uv_cpu_info_t *cpus;
  int num_cpus = 1;
  if (uv_cpu_info(&cpus, &num_cpus) == 0) uv_free_cpu_info(cpus, num_cpus);
  return num_cpus > 0 ? (unsigned)num_cpus : 1;
}

/* start_acme starts the ACME server (server/acme/acme.h) on its own TLS
 * context: pkid's certificate, no client certificates (ACME clients prove
 * who they are with their account keys), no ALPN (HTTP/1.1). Its EAB keys
 * derive from a master key that never leaves pki/acme/ (0600). */
static int start_acme(const options *o, pki_err *err) {
  char path[PKI_PATH_MAX];
  snprintf(path, sizeof(path), "%s/acme", o->pki);
  if (!pki_mkdirs(path, 0700, err)) return 0;
  snprintf(path, sizeof(path), "%s/acme/eab.key", o->pki);
  if (!pki_token_key_load(g.api.acme_eab_master, path, 1, err)) return 0;
  SSL_CTX *ctx = pkid_tls_ctx_new(g.crt, g.chain, g.key, g.root, 0, err);
  if (ctx == NULL) return 0;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_alpn_select_cb(ctx, NULL, NULL);
  pkid_acme_deps deps = {
      .loop = g.loop,
      .cat = &g.api.cat,
      .cas = &g.cas,
      .serials = &g.serials,
      .workers = g.workers,
      .store = &g.store,
      .status = g.status,
      .eab_master = g.api.acme_eab_master,
      .ssl_ctx = ctx,
  };
  g.acme = pkid_acme_start(&o->acme, &deps, err);
  SSL_CTX_free(ctx);
  if (g.acme == NULL) return 0;
  g.api.acme = pkid_store_acme(&g.store);
  char where[PKI_HOSTPORT_MAX];
  pkid_acme_address(g.acme, where, sizeof(where));
  pki_log("info", "listening", "acme", where, "test_mode",
          o->acme.test_mode ? "true" : "false", NULL);
  return 1;
}

/* start_grpc wires the gRPC front end: transport, rpc, api. */
static int start_grpc(const options *o, SSL_CTX *ssl_ctx, pki_err *err) {
  size_t num_methods;
  const pkid_method *methods = pkid_api_methods(&num_methods);
  const pkid_limits *l = &o->limits;
  pkid_rpc_limits rpc_limits = {
      .max_streams = (unsigned)l->max_streams,
      .max_header_bytes = (unsigned)l->max_header_bytes,
      .idle_timeout_ms = (unsigned)l->idle_timeout_ms,
      .max_call_ms = (unsigned)l->max_call_ms,
      .max_stream_ms = (unsigned)l->max_stream_ms,
      .max_connection_age_ms = l->max_connection_age_ms,
      /* A connection's calls may hold a few messages' worth unparsed; all
       * connections together, what a busy pkid needs and no more. */
      .max_conn_buffered = 1 << 20,
      .max_total_buffered = 64 << 20,
      .max_conn_output = 512 << 10,
      .max_total_output = 64 << 20,
  };
  pkid_transport_limits transport_limits = {
      .max_conns = (unsigned)l->max_conns,
      .max_conns_per_address = (unsigned)l->max_conns_per_address,
      .handshake_timeout_ms = (unsigned)l->handshake_timeout_ms,
      .max_write_queue = 64 * 1024,
  };
  g.rpc = pkid_rpc_new(g.loop, methods, num_methods, &g.api, &rpc_limits, err);
  if (g.rpc == NULL) return 0;
  pkid_rpc_on_refused(g.rpc, pkid_api_on_refused, &g.api);
  g.transport = pkid_transport_new(g.loop, ssl_ctx, &transport_limits, pkid_rpc_conn_handler(),
                                   g.rpc, err);
  if (g.transport == NULL) return 0;
  char *where = g.grpc_where;
  if (!pkid_transport_listen(g.transport, o->listen, where, sizeof(g.grpc_where), err)) {
    return 0;
  }
  /* With port 0 the kernel picks one; say which, for tests and scripts. */
  pki_log("info", "listening", "grpc", where, "pki", o->pki, NULL);
  return 1;
}

/* harden_process: no core dumps (one prepared ECDSA nonce pair in a
 * worker's memory yields the CA key), and no ptrace by other processes of
 * the same user (PR_SET_DUMPABLE 0 also does that); descriptors raised to
 * the hard limit, so that the connection limits, not EMFILE, bound pkid. */
static int harden_process(const options *o, pki_err *err) {
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot disable core dumps: %s", strerror(errno));
    return 0;
  }
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  getrlimit(RLIMIT_NOFILE, &nofile);
  /* The gRPC and the two HTTP listeners at their limits, the journal's
   * segment and snapshot files, and a margin for the rest. */
  unsigned long need = o->limits.max_conns + 2 * pkid_http_default_limits().max_conns + 64;
  if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < need) {
    char have[32], want[32];
    snprintf(have, sizeof(have), "%llu", (unsigned long long)nofile.rlim_cur);
    snprintf(want, sizeof(want), "%lu", need);
    pki_log("warn", "descriptor_limit", "limit", have, "connections_need", want, NULL);
  }
  return pkid_rpc_check_library(err);
}

/* on_commit_state runs when commits start failing or succeed again (the
 * pipeline calls it on the loop thread, before the jobs of that commit
 * are answered): /readyz follows the journal. A commit that failed for
 * lack of room or descriptors (retried at the next commit) makes pkid not
 * ready until one succeeds. A journal that failed for good (an fdatasync
 * error: nothing after it can be trusted to be durable) fails pkid closed:
 * not ready, nothing more accepted, drained, and exit status 75 for the
 * supervisor to restart it on what is durable. */
static int g_exit_code;

static void on_commit_state(void *ctx) {
  (void)ctx;
  pki_err last;
  int ok = pkid_workers_last_commit(g.workers, &last);
  if (pki_journal_failed(g.store.journal)) {
    if (g_exit_code == 0) {
      pki_log("error", "journal_failed", "reason", last.msg, "action", "stopping", NULL);
      g_exit_code = 75;
      g.api.stopped = 1;
      drain("journal failure");
    }
  } else if (!ok) {
    pki_log("error", "journal_unavailable", "reason", last.msg, "action",
            "not ready until a commit succeeds", NULL);
    pkid_notify_status("not ready: journal commits failing");
  } else {
    pki_log("info", "journal_available", NULL);
    if (!g.draining) notify_serving();
  }
  g.journal_ok = ok;
  set_ready(1);
}

/* The fleet (server/fleet/fleet.h): another node holds this node's id
 * now, so serials could collide: stop, as on a journal failure, for the
 * operator (exit status 3; a supervisor restart would be refused at the
 * lease until the id is free). */
static void on_fleet_lost_async(uv_async_t *async) {
  (void)async;
  if (g_exit_code == 0) g_exit_code = 3;
  g.api.stopped = 1;
  drain("fleet lease lost");
}

static void on_fleet_lost(void *ctx) {
  (void)ctx;
  uv_async_send(&g.fleet_lost); /* from the fleet thread */
}

/* CA keys in PKCS#11 tokens (lib/pkcs11.h): a token that fails mid-run
 * fails the calls that need it (UNAVAILABLE, nothing journaled) and makes
 * pkid not ready; its recovery (the module initialized again, a new
 * login) runs on libuv's pool, since a token may take its time, every
 * half second until it succeeds. */
static void token_recover_work(uv_work_t *w) {
  (void)w;
  g.token_recovered = pkid_cas_tokens_recover(&g.cas, &g.token_err);
}

static void token_recover_done(uv_work_t *w, int status) {
  (void)w;
  (void)status;
  g.token_busy = 0;
  report_keys();
  if (!g.token_recovered) {
    if (!g.token_err_logged) {
      pki_log("warn", "token_recovery_failed", "reason", g.token_err.msg, "action",
              "retrying every 0.5 s", NULL);
      g.token_err_logged = 1;
    }
    return;
  }
  if (!g.tokens_ok) {
    pki_log("info", "token_recovered", NULL);
    g.tokens_ok = 1;
    g.token_err_logged = 0;
    if (!g.draining) set_ready(1);
  }
}

static void on_token_check(uv_timer_t *t) {
  (void)t;
  if (g.token_busy || g.draining) return;
  report_keys();
  if (pkid_cas_tokens_ready(&g.cas)) return;
  if (g.tokens_ok) {
    pki_log("error", "token_unavailable", "action", "not ready; recovering", NULL);
    g.tokens_ok = 0;
    set_ready(1);
  }
  if (uv_queue_work(g.loop, &g.token_work, token_recover_work, token_recover_done) == 0) {
    g.token_busy = 1;
  }
}

/* The other nodes' changes (server/fleet/follow.h) go to the import
 * (server/pipeline/import.h) a bounded number at a time; more follow as
 * imports finish. */
#define FLEET_IN_FLIGHT 1024

static void pull_fleet(void) {
  if (g.follow == NULL || g.import == NULL || g.draining) return;
  /* Nothing in flight: every change taken is journaled. */
  if (pkid_import_pending(g.import) == 0) pkid_follow_applied(g.follow);
  pkid_fleet_change c[64];
  while (pkid_import_pending(g.import) < FLEET_IN_FLIGHT) {
    size_t n = pkid_follow_take(g.follow, c, sizeof(c) / sizeof(c[0]));
    if (n == 0) break;
    for (size_t i = 0; i < n; i++) {
      int taken;
      if (c[i].type == PKI_REC_ISSUE) {
        taken = pkid_import_fleet_cert(g.import, c[i].fleet_seq, c[i].node, c[i].der,
                                       c[i].der_len); /* takes der */
      } else {
        taken = pkid_import_fleet_revoke(g.import, c[i].fleet_seq, c[i].node, &c[i].serial,
                                         c[i].reason, c[i].revoked_at, c[i].invalidity_date);
        pkid_follow_change_free(&c[i]);
      }
      if (!taken) pkid_follow_retry(g.follow, c[i].fleet_seq); /* out of memory */
    }
  }
}

/* on_import_done: a change of the fleet that could not be journaled for a
 * reason that may pass (a full disk, a failing journal) is read again,
 * never passed over; one refused for good (not signed by our CAs) is. */
static void on_import_done(void *ctx, uint64_t fleet_seq, const pki_err *failure) {
  (void)ctx;
  if (fleet_seq != 0 && failure != NULL && g.follow != NULL &&
      (failure->code == PKI_ERR_UNAVAILABLE || failure->code == PKI_ERR_EXHAUSTED ||
       failure->code == PKI_ERR_IO)) {
    pkid_follow_retry(g.follow, fleet_seq);
  }
  pull_fleet();
}

static void on_fleet_changes_async(uv_async_t *async) {
  (void)async;
  pull_fleet();
}

static void on_fleet_changes(void *ctx) {
  (void)ctx;
  uv_async_send(&g.fleet_changes); /* from the follower's thread */
}

/* Readiness follows the shipping lag (pkid_fleet_ready), checked each
 * second, and waits at start until what the other nodes had issued and
 * revoked is applied here: until then this node could call good a
 * certificate the fleet has revoked. */
static void on_fleet_check(uv_timer_t *t) {
  (void)t;
  pull_fleet();
  if (!g.fleet_synced && g.follow != NULL && g.import != NULL &&
      pkid_follow_caught_up(g.follow) && pkid_import_pending(g.import) == 0) {
    g.fleet_synced = 1;
    pki_log("info", "fleet_synced", NULL);
  }
  if (!g.draining) set_ready(1);
}

/* on_durable follows the journal's durable end for those who need it:
 * the checkpoints, the fleet's shipper, the SIEM feed and the audit
 * streams (committer
 * thread). */
static void on_durable(void *ctx, const pki_journal_pos *end) {
  (void)ctx;
  if (g.checkpoints != NULL) pkid_checkpoints_durable(g.checkpoints, end);
  if (g.fleet != NULL) pkid_fleet_durable(g.fleet, end);
  if (g.audit != NULL) pkid_audit_durable(g.audit, end);
  if (g.siem != NULL) pkid_siem_durable(g.siem, end);
}

/* start_siem starts the SIEM feed (server/audit/siem.h) from its cursor,
 * before anything is committed, so it misses no durable end. */
static int start_siem(const options *o, pki_err *err) {
  pki_journal_pos end;
  pki_journal_durable_end(g.store.journal, &end);
  pkid_siem_options so = o->siem;
  so.journal_dir = g.journal_dir;
  so.node = (uint16_t)o->node;
  /* The feed's thread writes to a socket that the collector may close. */
  signal(SIGPIPE, SIG_IGN);
  g.siem = pkid_siem_start(&so, &end, err);
  if (g.siem == NULL) return 0;
  g.store.on_durable = on_durable;
  return 1;
}

/* start_audit serves StreamAudit from the journal's durable end on; set
 * before the committer starts, as on_durable must be. */
static int start_audit(pki_err *err) {
  pki_journal_pos end;
  pki_journal_durable_end(g.store.journal, &end);
  g.audit = pkid_audit_new(g.loop, g.journal_dir, &end, err);
  if (g.audit == NULL) return 0;
  g.store.on_durable = on_durable;
  return 1;
}

/* load_audit_key opens the key that signs checkpoints, sealed under the CA
 * passphrase (lib/pki_tree.h). A tree without one (made before pkictl
 * made audit keys) runs without checkpoints, saying so. */
static int load_audit_key(const options *o, const pki_secret *secret, pki_err *err) {
  char path[PKI_PATH_MAX];
  if (!pki_tree_audit_path(path, sizeof(path), o->pki, 0, err)) return 0;
  if (access(path, F_OK) != 0) {
    pki_log("warn", "checkpoints_off", "reason",
            "no audit key in the pki tree (pkictl ceremony intermediate makes one)", "file",
            path, NULL);
    return 1;
  }
  g.audit_key = pki_key_read_sealed(path, secret->bytes, secret->len, err);
  if (g.audit_key == NULL) {
    pki_err_prefix(err, "%s: ", path);
    return 0;
  }
  if (EVP_PKEY_id(g.audit_key) != EVP_PKEY_ED25519) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: the audit key must be Ed25519", path);
    return 0;
  }
  return 1;
}

/* Each second: the refusals' window ends if it is due. */
static void on_refusal_timer(uv_timer_t *t) {
  (void)t;
  if (!g.draining) pkid_refusals_tick(g.api.refusals, (int64_t)time(NULL));
}

/* Each second: a checkpoint if one is due, published on the admin
 * endpoint too, and in a fleet in PostgreSQL. */
static void on_checkpoint_timer(uv_timer_t *t) {
  (void)t;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
  pki_err err;
  pki_err_clear(&err);
  int made = 0;
  if (!pkid_checkpoints_tick(g.checkpoints, now_ms, &made, &err)) {
    pki_log("error", "checkpoint_failed", "reason", err.msg, NULL);
    return;
  }
  if (made) {
    size_t len;
    uint64_t seq, time_ms;
    const char *text = pkid_checkpoints_latest(g.checkpoints, &len, &seq, &time_ms);
    if (g.admin != NULL) pkid_admin_set_checkpoint(g.admin, text, len);
    if (g.fleet != NULL) pkid_fleet_checkpoint(g.fleet, text, len, seq, time_ms);
  }
}

static int start_checkpoints(const options *o, pki_err *err) {
  if (g.audit_key == NULL) return 1;
  pki_journal_pos end;
  pki_journal_durable_end(g.store.journal, &end);
  char origin[64];
  snprintf(origin, sizeof(origin), "pkid node %u", o->node);
  pkid_checkpoints_options co = {.journal_dir = g.journal_dir,
                                 .origin = origin,
                                 .key = g.audit_key,
                                 .interval_s = (uint32_t)o->limits.checkpoint_interval_s,
                                 .every_records = o->limits.checkpoint_records};
  g.checkpoints = pkid_checkpoints_new(&co, &end, err);
  if (g.checkpoints == NULL) return 0;
  g.store.on_durable = on_durable;
  uv_timer_init(g.loop, &g.checkpoint_timer);
  uv_timer_start(&g.checkpoint_timer, on_checkpoint_timer, 1000, 1000);
  return 1;
}

/* start_fleet joins the fleet: migrations, the node's lease, the shipper
 * following the journal from the cursor PostgreSQL keeps. */
static int start_fleet(const options *o, pki_err *err) {
  pki_journal_pos end;
  pki_journal_durable_end(g.store.journal, &end);
  pkid_fleet_options fo = {.conninfo = o->postgres,
                           .node = (uint16_t)o->node,
                           .journal_dir = g.journal_dir,
                           .on_lost = on_fleet_lost};
  if (uv_async_init(g.loop, &g.fleet_lost, on_fleet_lost_async) != 0) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "uv_async_init failed");
    return 0;
  }
  g.fleet = pkid_fleet_start(&fo, &end, err);
  if (g.fleet == NULL) return 0;
  g.store.on_durable = on_durable;
  g.store.fleet_claim = pkid_fleet_claim;
  g.store.fleet_claim_ctx = g.fleet;
  if (uv_async_init(g.loop, &g.fleet_changes, on_fleet_changes_async) != 0) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "uv_async_init failed");
    return 0;
  }
  pkid_follow_options wo = {
      .conninfo = o->postgres,
      .node = (uint16_t)o->node,
      .journal_dir = g.journal_dir,
      .on_changes = on_fleet_changes};
  g.follow = pkid_follow_start(&wo, err);
  if (g.follow == NULL) return 0;
  uv_timer_init(g.loop, &g.fleet_check);
  uv_timer_start(&g.fleet_check, on_fleet_check, 250, 1000);
  return 1;
}

static int run(const options *o) {
  pki_err err;
  pki_err_clear(&err);
  SSL_CTX *ssl_ctx = NULL;
  uint8_t token_key[PKI_TOKEN_KEY_LEN] = {0};
  g.o = o;
  g.loop = uv_default_loop();
  if (!harden_process(o, &err)) goto fail;
  /* The SIEM feed's files and address, before the slow unsealing of the
   * CA keys: a mistake there is told at once. */
  if (o->siem.collector != NULL && !pkid_siem_check(&o->siem, &err)) goto fail;
  pki_catalog *cat = o->catalog != NULL ? pki_catalog_load_file(o->catalog, &err)
                                        : pki_catalog_default(&err);
  if (cat == NULL) goto fail;
  char pass_path[PKI_PATH_MAX];
  const char *pass_file = o->passphrase_file;
  if (pass_file == NULL && getenv("PKID_CA_PASSPHRASE") == NULL) {
    snprintf(pass_path, sizeof(pass_path), "%s/ca-passphrase", o->pki);
    pass_file = pass_path;
  }
  pki_secret secret;
  if (!pki_secret_read(&secret, pass_file, "PKID_CA_PASSPHRASE", &err)) goto fail;
  int loaded = pkid_cas_load(&g.cas, cat, o->pki, secret.bytes, secret.len, &err) &&
               load_audit_key(o, &secret, &err);
  pki_secret_cleanup(&secret);
  if (!loaded || !own_paths(o, cat, &err)) goto fail;

  /* Bootstrap enrollment is on when pkictl has made a token key: then a
   * client may connect without a certificate, to present a token. */
  char token_path[PKI_PATH_MAX];
  snprintf(token_path, sizeof(token_path), "%s/bootstrap/token.key", o->pki);
  g.bootstrap = pki_token_key_load(token_key, token_path, 0, &err);
  if (!g.bootstrap && err.code != PKI_ERR_NOT_FOUND) goto fail;
  pki_err_clear(&err);
  ssl_ctx = pkid_tls_ctx_new(g.crt, g.chain, g.key, g.root, !g.bootstrap, &err);
  if (ssl_ctx == NULL || !open_store(o, cat, &err)) goto fail;
  if (!pkid_metrics_init()) {
    PKI_ERR_OOM(&err);
    goto fail;
  }
  report_expiry();
  report_keys();
  if (!start_checkpoints(o, &err)) goto fail;
  if (o->siem.collector != NULL && !start_siem(o, &err)) goto fail;
  if (o->postgres != NULL && !start_fleet(o, &err)) goto fail;
  if (!start_audit(&err)) goto fail;
  g.workers = pkid_workers_new(g.loop, o->workers != 0 ? o->workers : default_workers(), 4096,
                               &g.cas, pkid_jobs_commit, &g.store, &err);
  if (g.workers == NULL) goto fail;
  g.serials.workers = g.workers;
  pkid_quota_limits quota = {
      .max_in_flight = (unsigned)o->limits.identity_max_in_flight,
      .rate = (double)o->limits.identity_rate,
      .burst = 2.0 * (double)o->limits.identity_rate,
  };
  g.api = (pkid_api){.cat = cat,
                     .cas = &g.cas,
                     .serials = &g.serials,
                     .workers = g.workers,
                     .store = &g.store,
                     .status = g.status,
                     .quotas = pkid_quotas_new(&quota),
                     .bootstrap = g.bootstrap,
                     .audit = g.audit};
  g.api.refusals = pkid_refusals_new(g.workers, (uint32_t)o->limits.refusal_window_s, &err);
  if (g.api.quotas == NULL || g.api.refusals == NULL) {
    PKI_ERR_OOM(&err);
    goto fail;
  }
  uv_timer_init(g.loop, &g.refusal_timer);
  uv_timer_start(&g.refusal_timer, on_refusal_timer, 1000, 1000);
  memcpy(g.api.token_key, token_key, sizeof(token_key));
  OPENSSL_cleanse(token_key, sizeof(token_key));
  /* The ceremonies' log goes on the journal's chain; one cut or rewritten
   * keeps pkid from starting. */
  g.ceremonies = pkid_ceremonies_new(o->pki, g.workers, &g.store, &err);
  if (g.ceremonies == NULL || !pkid_ceremonies_scan(g.ceremonies, &err)) goto fail;
  /* Certificates the ceremonies signed offline become known to pkid. */
  g.import = pkid_import_new(o->pki, &g.cas, &g.store, g.workers, &err);
  if (g.import == NULL || !pkid_import_scan(g.import, &err) || !start_grpc(o, ssl_ctx, &err)) {
    goto fail;
  }
  pkid_import_on_done(g.import, on_import_done, NULL);
  SSL_CTX_free(ssl_ctx); /* the transport holds its reference */
  ssl_ctx = NULL;
  signal(SIGPIPE, SIG_IGN);
  uv_signal_init(g.loop, &g.sigterm);
  uv_signal_init(g.loop, &g.sigint);
  uv_signal_init(g.loop, &g.sighup);
  uv_signal_start(&g.sighup, on_sighup, SIGHUP);
  uv_signal_start(&g.sigterm, on_signal, SIGTERM);
  uv_signal_start(&g.sigint, on_signal, SIGINT);
  uv_timer_init(g.loop, &g.drain_timer);
  uv_timer_init(g.loop, &g.drain_check);
  g.ocsp = pkid_ocsp_http_start(g.loop, o->ocsp_listen, &g.cas, g.status, &err);
  if (g.ocsp == NULL) goto fail;
  g.crl_http = pkid_crl_http_new(pkid_ocsp_http_server(g.ocsp), &g.store, &g.cas,
                                 pki_catalog_root(cat)->name, &err);
  if (g.crl_http == NULL) goto fail;
  load_root_crl();
  pkid_crl_options crl_opts = {
      .interval_s = (uint32_t)o->limits.crl_interval_s,
      .delta_interval_s = (uint32_t)o->limits.crl_delta_interval_s,
      .validity_s = (uint32_t)o->limits.crl_validity_s,
      .batch_ms = (uint32_t)o->limits.crl_batch_ms,
      .pki_dir = o->pki,
      .fleet_node = o->postgres != NULL ? (uint16_t)o->node : 0,
  };
  g.crl = pkid_crl_builder_new(g.loop, g.workers, &g.store, &g.cas, &crl_opts, &err);
  if (g.crl == NULL) goto fail;
  g.admin = pkid_admin_start(g.loop, o->admin_listen, pkid_m.reg, &err);
  if (g.admin == NULL) goto fail;
  if (o->acme.listen != NULL && !start_acme(o, &err)) goto fail;
  g.tokens_ok = 1;
  if (pkid_cas_num_tokens(&g.cas) > 0) {
    uv_timer_init(g.loop, &g.token_check);
    uv_timer_start(&g.token_check, on_token_check, 500, 500);
  }
  g.journal_ok = 1;
  set_ready(1);
  pkid_workers_on_commit_state(g.workers, on_commit_state, NULL);
  /* The journal is open and the gRPC, OCSP and admin listeners accept
   * (connections wait in the backlog until the loop runs, next). */
  notify_serving();
  uv_run(g.loop, UV_RUN_DEFAULT);
  /* Let the workers finish, then close every handle so the loop ends. */
  pkid_follow_stop(g.follow);
  g.follow = NULL;
  pkid_import_stop(g.import);
  pkid_crl_builder_stop(g.crl);
  pkid_workers_free(g.workers);
  /* Nothing more is committed: ship the rest, free the node's id. */
  pkid_fleet_stop(g.fleet);
  g.fleet = NULL;
  /* And the SIEM feed sends what is durable (a few seconds at most). */
  pkid_siem_stop(g.siem);
  g.siem = NULL;
  g.store.on_durable = NULL;
  g.store.fleet_claim = NULL;
  pkid_checkpoints_free(g.checkpoints);
  g.checkpoints = NULL;
  EVP_PKEY_free(g.audit_key);
  g.audit_key = NULL;
  pkid_import_free(g.import);
  pkid_ceremonies_free(g.ceremonies);
  pkid_transport_free(g.transport);
  pkid_rpc_free(g.rpc);
  uv_walk(g.loop, close_handle, NULL);
  uv_run(g.loop, UV_RUN_DEFAULT);
  uv_loop_close(g.loop);
  pkid_audit_free(g.audit);
  g.audit = NULL;
  pkid_crl_builder_free(g.crl);
  pkid_crl_http_free(g.crl_http);
  pkid_acme_free(g.acme); /* its validations and jobs have all come back */
  g.acme = NULL;
  /* Everything committed has been applied: save it, so the next start
   * replays nothing. */
  if (!pkid_store_snapshot(&g.store, &err)) {
    pki_log("error", "snapshot_failed", "reason", err.msg, NULL);
  }
  pkid_store_close(&g.store);
  pkid_status_free(g.status);
  pki_log("info", "stopped", NULL);
  pkid_cas_cleanup(&g.cas);
  pkid_quotas_free(g.api.quotas);
  pkid_refusals_free(g.api.refusals);
  OPENSSL_cleanse(g.api.token_key, sizeof(g.api.token_key));
  OPENSSL_cleanse(g.api.acme_eab_master, sizeof(g.api.acme_eab_master));
  /* |cat| may have been retired by a reload: free the current and the old. */
  pki_catalog_free((pki_catalog *)g.api.cat);
  for (size_t i = 0; i < g.num_retired; i++) pki_catalog_free(g.retired[i]);
  return g_exit_code;
fail:
  SSL_CTX_free(ssl_ctx);
  OPENSSL_cleanse(token_key, sizeof(token_key));
  fprintf(stderr, "pkid: %s: %s\n", pki_err_code_name(err.code), err.msg);
  return 1;
}

int main(int argc, char **argv) {
  options o = {0};
  if (!parse_options(&o, argc, argv)) return 2;
  int rc = run(&o);
  pkid_config_cleanup(&g_config);
  return rc;
}
