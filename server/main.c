/* pkid: the issuance server.
 *
 *   pkid [--pki DIR] [--listen HOST:PORT] [--passphrase-file F]
 *        [--catalog FILE] [--node N]
 *
 * It loads the online CAs from a pki/ tree (pkictl ceremony demo makes
 * one), presents the pki-ca service's certificate, and serves pki.v1.Pki
 * over gRPC with mutual TLS. SIGTERM or SIGINT drain it: GOAWAY to every
 * client, calls in progress finish, then exit. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>
#include <uv.h>

#include "client/ceremony.h"
#include "lib/catalog.h"
#include "lib/cert_info.h"
#include "lib/err.h"
#include "lib/pki_tree.h"
#include "lib/token.h"
#include "server/api.h"
#include "server/ca.h"
#include "server/config.h"
#include "server/conn.h"
#include "server/admin.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/ocsp_http.h"
#include "server/server.h"
#include "server/status.h"
#include "server/store.h"
#include "server/tls.h"
#include "server/workers.h"

typedef struct options {
  const char *pki;
  const char *listen;
  const char *ocsp_listen;
  const char *admin_listen;
  const char *passphrase_file;
  const char *catalog;
  const char *journal;
  unsigned node;
  unsigned workers;
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
    "                       $PKID_CA_PASSPHRASE)\n"
    "  --catalog FILE       service catalogue (default: built in)\n"
    "  --journal DIR        the journal: pkid's store and audit trail\n"
    "                       (default DIR/journal under --pki)\n"
    "  --node N             this node's serial prefix, 1-32767 (default 1)\n"
    "  --workers N          signing threads (default: one per CPU)\n"
    "  --max-conns N        gRPC connections at once (default 4096)\n"
    "  --max-streams N      concurrent calls per connection (default 256)\n"
    "  --idle-timeout-ms N  close a connection idle this long (default 300000)\n"
    "  --handshake-timeout-ms N\n"
    "                       close a connection not through TLS by then\n"
    "                       (default 10000)\n";

static pkid_server g_server;
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
  if (c->node > 32767 || (c->workers > 64)) {
    fprintf(stderr, "pkid: %s: node must be 1 to 32767 and workers 1 to 64\n", path);
    return 0;
  }
  if (c->node != 0) o->node = (unsigned)c->node;
  if (c->workers != 0) o->workers = (unsigned)c->workers;
  if (c->max_conns != 0) o->limits.max_conns = (unsigned)c->max_conns;
  if (c->max_streams != 0) o->limits.max_streams = (unsigned)c->max_streams;
  if (c->idle_timeout_ms != 0) o->limits.idle_timeout_ms = (unsigned)c->idle_timeout_ms;
  if (c->handshake_timeout_ms != 0) {
    o->limits.handshake_timeout_ms = (unsigned)c->handshake_timeout_ms;
  }
  return 1;
}

static int parse_options(options *o, int argc, char **argv) {
  static const struct option kOptions[] = {
      {"config", required_argument, NULL, 'F'},
      {"pki", required_argument, NULL, 'p'},
      {"listen", required_argument, NULL, 'l'},
      {"ocsp-listen", required_argument, NULL, 'o'},
      {"admin-listen", required_argument, NULL, 'a'},
      {"passphrase-file", required_argument, NULL, 'f'},
      {"catalog", required_argument, NULL, 'c'},
      {"journal", required_argument, NULL, 'j'},
      {"node", required_argument, NULL, 'n'},
      {"workers", required_argument, NULL, 'w'},
      {"max-conns", required_argument, NULL, 'C'},
      {"max-streams", required_argument, NULL, 'S'},
      {"idle-timeout-ms", required_argument, NULL, 'I'},
      {"handshake-timeout-ms", required_argument, NULL, 'H'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  o->pki = "pki";
  o->listen = "127.0.0.1:8443";
  o->ocsp_listen = "127.0.0.1:8081";
  o->admin_listen = "127.0.0.1:9090";
  o->node = 1;
  o->limits = (pkid_limits){
      .max_conns = 4096,
      .max_streams = 256,
      .max_header_bytes = 16384,
      .idle_timeout_ms = 300000,
      .handshake_timeout_ms = 10000,
  };
  if (!apply_config(o, argc, argv)) return 0;
  int c;
  while ((c = getopt_long(argc, argv, "", kOptions, NULL)) != -1) {
    switch (c) {
      case 'F': break; /* read first, by apply_config */
      case 'p': o->pki = optarg; break;
      case 'l': o->listen = optarg; break;
      case 'o': o->ocsp_listen = optarg; break;
      case 'a': o->admin_listen = optarg; break;
      case 'f': o->passphrase_file = optarg; break;
      case 'c': o->catalog = optarg; break;
      case 'j': o->journal = optarg; break;
      case 'n': {
        char *end;
        unsigned long v = strtoul(optarg, &end, 10);
        if (*end != '\0' || v < 1 || v > 32767) {
          fprintf(stderr, "pkid: --node must be 1 to 32767\n");
          return 0;
        }
        o->node = (unsigned)v;
        break;
      }
      case 'w': {
        char *end;
        unsigned long v = strtoul(optarg, &end, 10);
        if (*end != '\0' || v < 1 || v > 64) {
          fprintf(stderr, "pkid: --workers must be 1 to 64\n");
          return 0;
        }
        o->workers = (unsigned)v;
        break;
      }
      case 'C':
      case 'S':
      case 'I':
      case 'H': {
        char *end;
        unsigned long v = strtoul(optarg, &end, 10);
        if (*end != '\0' || v < 1 || v > 100000000) {
          fprintf(stderr, "pkid: %s must be a positive number\n", argv[optind - 1]);
          return 0;
        }
        if (c == 'C') o->limits.max_conns = (unsigned)v;
        if (c == 'S') o->limits.max_streams = (unsigned)v;
        if (c == 'I') o->limits.idle_timeout_ms = (unsigned)v;
        if (c == 'H') o->limits.handshake_timeout_ms = (unsigned)v;
        break;
      }
      case 'h': fputs(kUsage, stdout); exit(0);
      default: fputs(kUsage, stderr); return 0;
    }
  }
  if (optind != argc) {
    fputs(kUsage, stderr);
    return 0;
  }
  return 1;
}

/* parse_listen splits "host:port" ("[::1]:port" for IPv6). */
static int parse_listen(struct sockaddr_storage *out, const char *text) {
  char host[256];
  const char *colon = strrchr(text, ':');
  if (colon == NULL || (size_t)(colon - text) >= sizeof(host)) return 0;
  memcpy(host, text, (size_t)(colon - text));
  host[colon - text] = '\0';
  int port = atoi(colon + 1);
  if (port < 0 || port > 65535) return 0; /* 0: the kernel picks */
  if (host[0] == '[') {
    size_t n = strlen(host);
    if (n < 2 || host[n - 1] != ']') return 0;
    host[n - 1] = '\0';
    return uv_ip6_addr(host + 1, port, (struct sockaddr_in6 *)out) == 0;
  }
  return uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0;
}

static void on_connection(uv_stream_t *listener, int status) {
  if (status < 0) return;
  pkid_conn_accept(&g_server, listener);
}

/* Draining: stop accepting, GOAWAY everyone, stop when all are gone or the
 * grace period ends. */
static uv_signal_t g_sigterm, g_sigint;
static uv_timer_t g_drain_timer;
static pkid_ocsp_http *g_ocsp;
static pkid_admin *g_admin;
static int g_http_stopped; /* OCSP and admin listeners done (counts to 2) */

static void on_http_stopped(void *arg) {
  (void)arg;
  g_http_stopped++;
}

static void on_drain_timeout(uv_timer_t *timer) {
  (void)timer;
  pkid_log("warn", "drain_timeout", NULL);
  while (g_server.conns != NULL) pkid_conn_close(g_server.conns);
  /* The HTTP listeners give up within their own grace periods (5 s); the
   * check goes on until they have. */
}

static void on_drain_check(uv_timer_t *timer) {
  if (g_server.conns == NULL && g_http_stopped == 2) {
    uv_timer_stop(timer);
    uv_stop(g_server.loop);
  }
}

static uv_timer_t g_drain_check;

static void on_signal(uv_signal_t *sig, int signum) {
  (void)sig;
  if (g_server.draining) return;
  g_server.draining = 1;
  pkid_log("info", "draining", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
  uv_close((uv_handle_t *)&g_server.grpc_listener, NULL);
  pkid_admin_set_ready(g_admin, 0);
  pkid_ocsp_http_stop(g_ocsp, on_http_stopped, NULL);
  pkid_admin_stop(g_admin, on_http_stopped, NULL);
  for (pkid_conn *c = g_server.conns; c != NULL;) {
    pkid_conn *next = c->next;
    pkid_conn_goaway(c);
    c = next;
  }
  uv_timer_start(&g_drain_timer, on_drain_timeout, 10000, 0);
  uv_timer_start(&g_drain_check, on_drain_check, 0, 20);
}

static void on_flush(uv_check_t *check) {
  (void)check;
  pkid_conn_flush_dirty(&g_server);
}

/* Reload on SIGHUP: the server's certificate (new connections get the new
 * one; open ones keep theirs) and the catalogue. The CA hierarchy itself
 * is fixed for the life of the process: a catalogue that changes it is
 * refused and the old one kept. */
typedef struct reload_state {
  const options *o;
  pkid_api *api;
  pkid_store *store;
  pkid_status *status;
  char crt[PKI_PATH_MAX], key[PKI_PATH_MAX], chain[PKI_PATH_MAX], root[PKI_PATH_MAX];
  int bootstrap;
  pki_catalog *retired[64]; /* jobs in flight may point into them */
  size_t num_retired;
} reload_state;

static reload_state g_reload;
static uv_signal_t g_sighup;

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

static void reload_catalog(reload_state *r) {
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *next = pki_catalog_load_file(r->o->catalog, &err);
  if (next == NULL) {
    pkid_log("error", "reload_refused", "what", "catalogue", "reason", err.msg, NULL);
    return;
  }
  const pki_catalog *cur = r->api->cat;
  if (!same_hierarchy(cur, next) || r->num_retired == sizeof(r->retired) / sizeof(r->retired[0])) {
    pkid_log("error", "reload_refused", "what", "catalogue", "reason",
             "the CA hierarchy changed (restart pkid for that)", NULL);
    pki_catalog_free(next);
    return;
  }
  /* The status index keeps services by index: carry them over by name. */
  uint16_t *map = calloc(cur->num_services > 0 ? cur->num_services : 1, sizeof(uint16_t));
  if (map == NULL) {
    pki_catalog_free(next);
    return;
  }
  for (size_t i = 0; i < cur->num_services; i++) {
    const pki_catalog_service *s = pki_catalog_find_service(next, cur->services[i].name);
    map[i] = s != NULL ? (uint16_t)(s - next->services) : 0xffff;
  }
  pkid_status_remap_services(r->status, map, cur->num_services);
  free(map);
  r->retired[r->num_retired++] = (pki_catalog *)cur;
  r->api->cat = next;
  r->store->cat = next;
  pkid_log("info", "reloaded", "what", "catalogue", "file", r->o->catalog, NULL);
}

static void on_sighup(uv_signal_t *sig, int signum) {
  (void)sig;
  (void)signum;
  reload_state *r = &g_reload;
  pki_err err;
  pki_err_clear(&err);
  SSL_CTX *ctx = pkid_tls_ctx_new(r->crt, r->chain, r->key, r->root, !r->bootstrap, &err);
  if (ctx == NULL) {
    pkid_log("error", "reload_refused", "what", "certificate", "reason", err.msg, NULL);
  } else {
    /* Each open connection holds a reference to the context it began with. */
    SSL_CTX_free(g_server.ssl_ctx);
    g_server.ssl_ctx = ctx;
    pkid_log("info", "reloaded", "what", "certificate", "file", r->crt, NULL);
  }
  if (r->o->catalog != NULL) reload_catalog(r);
}

/* on_tick ends calls whose grpc-timeout has passed. */
static void on_tick(uv_timer_t *timer) {
  uint64_t now = pkid_server_now_ms(&g_server);
  (void)timer;
  pkid_workers_stats stats;
  pkid_workers_stats_get(((pkid_api *)g_server.api)->workers, &stats);
  pkid_gauge_set(pkid_m.queue_depth, (double)stats.depth);
  pkid_gauge_set(pkid_m.connections, (double)g_server.num_conns);
  for (pkid_conn *c = g_server.conns; c != NULL; c = c->next) {
    for (pkid_call *call = c->calls; call != NULL; call = call->next) {
      if (call->deadline_ms != 0 && !call->finished && now >= call->deadline_ms) {
        pkid_call_finish(call, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
      }
    }
  }
}

static void close_handle(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

static int run(const options *o) {
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = o->catalog != NULL ? pki_catalog_load_file(o->catalog, &err)
                                        : pki_catalog_default(&err);
  if (cat == NULL) goto fail;
  char pass_path[PKI_PATH_MAX];
  const char *pass_file = o->passphrase_file;
  if (pass_file == NULL && getenv("PKID_CA_PASSPHRASE") == NULL) {
    snprintf(pass_path, sizeof(pass_path), "%s/ca-passphrase", o->pki);
    pass_file = pass_path;
  }
  ceremony_secret secret;
  if (!ceremony_secret_read(&secret, pass_file, "PKID_CA_PASSPHRASE", &err)) goto fail;
  pkid_cas cas;
  int loaded = pkid_cas_load(&cas, cat, o->pki, secret.bytes, secret.len, &err);
  ceremony_secret_cleanup(&secret);
  if (!loaded) goto fail;

  /* pkid presents the pki-ca service's certificate. */
  const pki_catalog_service *self = pki_catalog_find_service(cat, "pki-ca");
  if (self == NULL || self->num_certs == 0) {
    PKI_ERR(&err, PKI_ERR_NOT_FOUND, "the catalogue has no pki-ca server certificate");
    goto fail;
  }
  char crt[PKI_PATH_MAX], key[PKI_PATH_MAX], chain[PKI_PATH_MAX], root[PKI_PATH_MAX];
  if (!pki_tree_service_path(crt, sizeof(crt), o->pki, self, &self->certs[0], ".crt", &err) ||
      !pki_tree_service_path(key, sizeof(key), o->pki, self, &self->certs[0], ".key", &err) ||
      !pki_tree_service_path(chain, sizeof(chain), o->pki, self, &self->certs[0],
                             "-chain.crt", &err) ||
      !pki_tree_ca_path(root, sizeof(root), o->pki, pki_catalog_root(cat), PKI_TREE_CA_CERT,
                        &err)) {
    goto fail;
  }
  /* Bootstrap enrollment is on when pkictl has made a token key: then a
   * client may connect without a certificate, to present a token. */
  uint8_t token_key[PKI_TOKEN_KEY_LEN];
  char token_path[PKI_PATH_MAX];
  snprintf(token_path, sizeof(token_path), "%s/bootstrap/token.key", o->pki);
  int bootstrap = pki_token_key_load(token_key, token_path, 0, &err);
  if (!bootstrap && err.code != PKI_ERR_NOT_FOUND) goto fail;
  pki_err_clear(&err);
  g_server.ssl_ctx = pkid_tls_ctx_new(crt, chain, key, root, !bootstrap, &err);
  if (g_server.ssl_ctx == NULL) goto fail;

  /* The store: replay the journal into the status index, then reserve the
   * first block of serials before anything is issued. */
  char journal_dir[PKI_PATH_MAX];
  snprintf(journal_dir, sizeof(journal_dir), "%s", o->journal);
  if (o->journal == NULL) snprintf(journal_dir, sizeof(journal_dir), "%s/journal", o->pki);
  pkid_status *status = pkid_status_new(1024);
  pkid_store store;
  if (status == NULL) {
    PKI_ERR_OOM(&err);
    goto fail;
  }
  if (!pkid_store_open(&store, journal_dir, cat, &cas, status, (uint16_t)o->node, &err)) {
    goto fail;
  }
  pki_journal_stats jstats;
  pki_journal_get_stats(store.journal, &jstats);
  char replayed[32], truncated[32], count[32];
  snprintf(replayed, sizeof(replayed), "%llu", (unsigned long long)store.replayed);
  snprintf(truncated, sizeof(truncated), "%llu", (unsigned long long)jstats.truncated_bytes);
  snprintf(count, sizeof(count), "%zu", pkid_status_count(status));
  pkid_log("info", "journal_open", "dir", journal_dir, "replayed", replayed,
           "truncated_bytes", truncated, "certificates", count, NULL);
  /* A long replay (after a crash) is not repeated at the next start. */
  if (store.replayed > 10000 && !pkid_store_snapshot(&store, &err)) goto fail;
  pkid_api api = {.cat = cat, .cas = &cas, .node = (uint16_t)o->node,
                  .store = &store, .status = status};
  if (!pkid_store_reserve(&store, PKID_SERIAL_BLOCK, &api.next_seq, &err)) goto fail;
  api.seq_end = api.next_seq + PKID_SERIAL_BLOCK;
  api.bootstrap = bootstrap;
  memcpy(api.token_key, token_key, sizeof(token_key));
  OPENSSL_cleanse(token_key, sizeof(token_key));
  g_server.api = &api;
  g_server.loop = uv_default_loop();
  if (!pkid_metrics_init()) {
    PKI_ERR_OOM(&err);
    goto fail;
  }
  /* The seed's alert rules watch cert_expiry_timestamp{cert_name=...}. */
  for (size_t i = 0; i < cas.num_cas; i++) {
    pkid_metrics_cert_expiry(cas.cas[i].def->name, cas.cas[i].issuer.not_after);
  }
  uint8_t *own = NULL;
  size_t own_len;
  pki_cert_info own_info;
  if (pki_tree_read_cert(&own, &own_len, crt, &err) &&
      pki_cert_info_parse(&own_info, own, own_len, &err)) {
    pkid_metrics_cert_expiry("pki-ca-server", own_info.not_after);
    pki_cert_info_cleanup(&own_info);
  }
  free(own);
  pki_err_clear(&err);
  g_server.methods = pkid_api_methods(&g_server.num_methods);
  unsigned num_workers = o->workers;
  if (num_workers == 0) {
    uv_cpu_info_t *cpus;
    int num_cpus = 1;
    if (uv_cpu_info(&cpus, &num_cpus) == 0) uv_free_cpu_info(cpus, num_cpus);
    num_workers = num_cpus > 0 ? (unsigned)num_cpus : 1;
  }
  api.workers = pkid_workers_new(g_server.loop, num_workers, 4096, &cas, pkid_store_commit,
                                 &store, pkid_api_on_done, &api, &err);
  if (api.workers == NULL) goto fail;
  g_server.limits = o->limits;

  struct sockaddr_storage addr;
  if (!parse_listen(&addr, o->listen)) {
    PKI_ERR(&err, PKI_ERR_INVALID, "--listen '%s' is not HOST:PORT", o->listen);
    goto fail;
  }
  uv_tcp_init(g_server.loop, &g_server.grpc_listener);
  int rc = uv_tcp_bind(&g_server.grpc_listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&g_server.grpc_listener, 1024, on_connection);
  if (rc != 0) {
    PKI_ERR(&err, PKI_ERR_IO, "cannot listen on %s: %s", o->listen, uv_strerror(rc));
    goto fail;
  }
  signal(SIGPIPE, SIG_IGN);
  uv_signal_init(g_server.loop, &g_sigterm);
  uv_signal_init(g_server.loop, &g_sigint);
  uv_signal_init(g_server.loop, &g_sighup);
  g_reload.o = o;
  g_reload.api = &api;
  g_reload.store = &store;
  g_reload.status = status;
  g_reload.bootstrap = bootstrap;
  memcpy(g_reload.crt, crt, sizeof(crt));
  memcpy(g_reload.key, key, sizeof(key));
  memcpy(g_reload.chain, chain, sizeof(chain));
  memcpy(g_reload.root, root, sizeof(root));
  uv_signal_start(&g_sighup, on_sighup, SIGHUP);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  uv_signal_start(&g_sigint, on_signal, SIGINT);
  uv_timer_init(g_server.loop, &g_drain_timer);
  uv_timer_init(g_server.loop, &g_drain_check);
  uv_check_init(g_server.loop, &g_server.flush);
  uv_check_start(&g_server.flush, on_flush);
  uv_timer_init(g_server.loop, &g_server.tick);
  uv_timer_start(&g_server.tick, on_tick, 50, 50);
  /* With port 0 the kernel picks one; say which, for tests and scripts. */
  struct sockaddr_storage bound;
  int bound_len = sizeof(bound);
  char host[64] = "?", where[80];
  uv_tcp_getsockname(&g_server.grpc_listener, (struct sockaddr *)&bound, &bound_len);
  if (bound.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&bound, host, sizeof(host));
    snprintf(where, sizeof(where), "[%s]:%d", host,
             ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in *)&bound, host, sizeof(host));
    snprintf(where, sizeof(where), "%s:%d", host, ntohs(((struct sockaddr_in *)&bound)->sin_port));
  }
  pkid_log("info", "listening", "grpc", where, "pki", o->pki, NULL);
  g_ocsp = pkid_ocsp_http_start(g_server.loop, o->ocsp_listen, &cas, status, &err);
  if (g_ocsp == NULL) goto fail;
  g_admin = pkid_admin_start(g_server.loop, o->admin_listen, pkid_m.reg, &err);
  if (g_admin == NULL) goto fail;
  pkid_admin_set_ready(g_admin, 1);
  uv_run(g_server.loop, UV_RUN_DEFAULT);
  /* Let the workers finish, then close every handle so the loop ends. */
  pkid_workers_free(api.workers);
  uv_walk(g_server.loop, close_handle, NULL);
  uv_run(g_server.loop, UV_RUN_DEFAULT);
  uv_loop_close(g_server.loop);
  /* Everything committed has been applied: save it, so the next start
   * replays nothing. */
  if (!pkid_store_snapshot(&store, &err)) {
    pkid_log("error", "snapshot_failed", "reason", err.msg, NULL);
  }
  pkid_store_close(&store);
  pkid_status_free(status);
  pkid_log("info", "stopped", NULL);
  SSL_CTX_free(g_server.ssl_ctx);
  pkid_cas_cleanup(&cas);
  /* |cat| may have been retired by a reload: free the current and the old. */
  pki_catalog_free((pki_catalog *)api.cat);
  for (size_t i = 0; i < g_reload.num_retired; i++) pki_catalog_free(g_reload.retired[i]);
  return 0;
fail:
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
