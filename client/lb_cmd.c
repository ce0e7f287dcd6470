/* lb_cmd.c: `pkictl lb rotate` (one rotation, when due or --now) and
 * `pkictl lb watch` (the same on a schedule, keeping rotation/lb-next
 * present and the stapled OCSP response fresh). See lb.h. */
#include "client/lb_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/cli.h"
#include "client/lb.h"
#include "lib/file.h"
#include "lib/log.h"

#define DEFAULT_SERVER "127.0.0.1:8443"
#define DEFAULT_SERVER_NAME "pki-ca.cybersec-framework.local"

static const char kLbUsage[] =
    "usage: pkictl lb rotate|watch|staple --pki DIR --as SERVICE --probe HOST:PORT [--probe-name SNI]\n"
    "    (--haproxy-socket SOCK --haproxy-cert NAME | --reload-pid PID | --reload-command CMD)\n"
    "    [--now] [--backups N] [--metrics-file F] [--metrics-listen HOST:PORT (watch)]\n"
    "    [--ocsp-url URL] [--reload-wait-ms N]\n"
    "    [--check-interval-ms N] [--server HOST:PORT]\n"
    "    [--server-name NAME] [--server-identity URI] [--server-ca FILE] [--root FILE]\n"
    "    [--timeout-ms N] [--catalog FILE]\n";

static volatile sig_atomic_t g_stop;

static void on_stop(int sig) {
  (void)sig;
  g_stop = 1;
}

static int usage_fail(const char *fmt, const char *arg) {
  fprintf(stderr, "pkictl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", kLbUsage);
  return 2;
}

enum {
  L_PKI = 3000, L_NOW, L_SOCKET, L_CERT, L_PROBE, L_PROBE_NAME, L_BACKUPS, L_METRICS, L_RELOAD_PID,
  L_RELOAD_COMMAND, L_OCSP_URL, L_RELOAD_WAIT, L_CHECK, L_AS, L_SERVER, L_SERVER_NAME,
  L_SERVER_IDENTITY, L_SERVER_CA, L_ROOT, L_TIMEOUT, L_CATALOG, L_METRICS_LISTEN,
};

static const struct option kLbOptions[] = {
    {"pki", required_argument, NULL, L_PKI},
    {"now", no_argument, NULL, L_NOW},
    {"haproxy-socket", required_argument, NULL, L_SOCKET},
    {"haproxy-cert", required_argument, NULL, L_CERT},
    {"probe", required_argument, NULL, L_PROBE},
    {"probe-name", required_argument, NULL, L_PROBE_NAME},
    {"backups", required_argument, NULL, L_BACKUPS},
    {"metrics-file", required_argument, NULL, L_METRICS},
    {"metrics-listen", required_argument, NULL, L_METRICS_LISTEN},
    {"reload-pid", required_argument, NULL, L_RELOAD_PID},
    {"reload-command", required_argument, NULL, L_RELOAD_COMMAND},
    {"ocsp-url", required_argument, NULL, L_OCSP_URL},
    {"reload-wait-ms", required_argument, NULL, L_RELOAD_WAIT},
    {"check-interval-ms", required_argument, NULL, L_CHECK},
    {"as", required_argument, NULL, L_AS},
    {"server", required_argument, NULL, L_SERVER},
    {"server-name", required_argument, NULL, L_SERVER_NAME},
    {"server-identity", required_argument, NULL, L_SERVER_IDENTITY},
    {"server-ca", required_argument, NULL, L_SERVER_CA},
    {"root", required_argument, NULL, L_ROOT},
    {"timeout-ms", required_argument, NULL, L_TIMEOUT},
    {"catalog", required_argument, NULL, L_CATALOG},
    {NULL, 0, NULL, 0},
};

typedef struct lb_files {
  char root[PKI_PATH_MAX], pkid_ca[PKI_PATH_MAX];
  char cert[PKI_PATH_MAX], key[PKI_PATH_MAX], chain[PKI_PATH_MAX];
} lb_files;

/* who_calls fills the connection to pkid: as --as SERVICE's certificate
 * (an admin such as pki-agent; client usage unless ":server"). pkid is
 * checked as everywhere in pkictl: the catalogue's pki-ca identity, issued
 * by its CA (by key when the tree holds that CA's certificate). */
static int who_calls(lb_config *cfg, lb_files *f, const char *as, const char *server,
                     const char *server_name, const char *server_identity, const char *server_ca,
                     const char *root, pki_err *err) {
  pkc_options *po = &cfg->pkid;
  memset(po, 0, sizeof(*po));
  po->target = server != NULL ? server : DEFAULT_SERVER;
  po->server_name_override = server_name != NULL ? server_name : DEFAULT_SERVER_NAME;
  if (!pki_tree_ca_path(f->root, sizeof(f->root), cfg->pki, pki_catalog_root(cfg->cat),
                        PKI_TREE_CA_CERT, err)) {
    return 0;
  }
  po->root_pem_file = root != NULL ? root : f->root;
  const pki_catalog_service *self = pki_catalog_find_service(cfg->cat, PKC_PKID_SERVICE);
  const pki_catalog_ca *self_ca = self != NULL ? pki_catalog_find_ca(cfg->cat, self->ca) : NULL;
  po->server_identity = server_identity != NULL ? server_identity : self != NULL ? self->identity : NULL;
  pki_err ignored;
  pki_err_clear(&ignored);
  if (server_ca != NULL) {
    po->server_ca_pem_file = server_ca;
  } else if (self_ca != NULL &&
             pki_tree_ca_path(f->pkid_ca, sizeof(f->pkid_ca), cfg->pki, self_ca, PKI_TREE_CA_CERT,
                              &ignored) &&
             pki_file_exists(f->pkid_ca)) {
    po->server_ca_pem_file = f->pkid_ca;
  } else if (self_ca != NULL) {
    po->server_ca_common_name = self_ca->common_name;
  }
  char name[256];
  snprintf(name, sizeof(name), "%s", as);
  pki_usage usage = PKI_USAGE_CLIENT;
  char *colon = strchr(name, ':');
  if (colon != NULL) {
    *colon = '\0';
    if (strcmp(colon + 1, "server") == 0) {
      usage = PKI_USAGE_SERVER;
    } else if (strcmp(colon + 1, "client") != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "--as SERVICE[:server|client], not '%s'", as);
      return 0;
    }
  }
  const pki_catalog_service *svc = pki_catalog_find_service(cfg->cat, name);
  if (svc == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", name);
    return 0;
  }
  const pki_catalog_cert *cc = NULL;
  for (size_t i = 0; i < svc->num_certs && cc == NULL; i++) {
    if (svc->certs[i].usage == usage) cc = &svc->certs[i];
  }
  if (cc == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "service '%s' has no %s certificate to call pkid with",
            svc->name, usage == PKI_USAGE_SERVER ? "server" : "client");
    return 0;
  }
  if (!pki_tree_service_path(f->cert, sizeof(f->cert), cfg->pki, svc, cc, ".crt", err) ||
      !pki_tree_service_path(f->key, sizeof(f->key), cfg->pki, svc, cc, ".key", err) ||
      !pki_tree_service_path(f->chain, sizeof(f->chain), cfg->pki, svc, cc, "-chain.crt", err)) {
    return 0;
  }
  po->cert_pem_file = f->cert;
  po->key_pem_file = f->key;
  po->chain_pem_file = f->chain;
  po->deadline_us = cfg->timeout_ms * 1000;
  return 1;
}

int lb_cmd_main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "rotate") != 0 && strcmp(argv[1], "watch") != 0 &&
                    strcmp(argv[1], "staple") != 0)) {
    return usage_fail("lb needs rotate, watch or staple%s", "");
  }
  int watch = strcmp(argv[1], "watch") == 0, staple = strcmp(argv[1], "staple") == 0;
  lb_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.timeout_ms = 10000;
  cfg.reload_wait_ms = 10000;
  const char *as = NULL, *server = NULL, *server_name = NULL, *server_identity = NULL,
             *server_ca = NULL, *root = NULL, *catalog = NULL, *metrics_listen = NULL;
  int force = 0;
  uint64_t v, check_ms = 10000;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc - 1, argv + 1, "", kLbOptions, NULL)) != -1) {
    switch (c) {
      case L_PKI: cfg.pki = optarg; break;
      case L_NOW: force = 1; break;
      case L_SOCKET: cfg.haproxy_socket = optarg; break;
      case L_CERT: cfg.haproxy_cert = optarg; break;
      case L_PROBE: cfg.probe = optarg; break;
      case L_PROBE_NAME: cfg.probe_name = optarg; break;
      case L_BACKUPS:
        if (!cli_parse_u64(&v, optarg, 1, 1000)) return usage_fail("--backups wants 1..1000, not '%s'", optarg);
        cfg.backups = (unsigned)v;
        break;
      case L_METRICS: cfg.metrics_file = optarg; break;
      case L_METRICS_LISTEN: metrics_listen = optarg; break;
      case L_RELOAD_PID:
        if (!cli_parse_u64(&v, optarg, 2, 1u << 22)) return usage_fail("--reload-pid wants a pid, not '%s'", optarg);
        cfg.reload_pid = (long)v;
        break;
      case L_RELOAD_COMMAND: cfg.reload_command = optarg; break;
      case L_OCSP_URL: cfg.ocsp_url = optarg; break;
      case L_RELOAD_WAIT:
        if (!cli_parse_u64(&cfg.reload_wait_ms, optarg, 1, 600000)) {
          return usage_fail("--reload-wait-ms wants 1..600000, not '%s'", optarg);
        }
        break;
      case L_CHECK:
        if (!cli_parse_u64(&check_ms, optarg, 10, 86400000)) {
          return usage_fail("--check-interval-ms wants 10..86400000, not '%s'", optarg);
        }
        break;
      case L_AS: as = optarg; break;
      case L_SERVER: server = optarg; break;
      case L_SERVER_NAME: server_name = optarg; break;
      case L_SERVER_IDENTITY: server_identity = optarg; break;
      case L_SERVER_CA: server_ca = optarg; break;
      case L_ROOT: root = optarg; break;
      case L_TIMEOUT:
        if (!cli_parse_u64(&cfg.timeout_ms, optarg, 1, 600000)) {
          return usage_fail("--timeout-ms wants 1..600000, not '%s'", optarg);
        }
        break;
      case L_CATALOG: catalog = optarg; break;
      default: return usage_fail("unknown or incomplete option '%s'", argv[optind]);
    }
  }
  if (optind + 1 != argc) return usage_fail("unexpected argument '%s'", argv[optind + 1]);
  if (cfg.pki == NULL || cfg.probe == NULL) return usage_fail("--pki DIR and --probe HOST:PORT are required%s", "");
  /* The load balancer's own certificates are serverAuth only, and pkid
   * takes clientAuth certificates: an admin's identity makes lb-next. */
  if (as == NULL) return usage_fail("--as SERVICE (an admin, such as pki-agent) is required%s", "");
  if ((cfg.haproxy_socket == NULL) != (cfg.haproxy_cert == NULL)) {
    return usage_fail("--haproxy-socket SOCK and --haproxy-cert NAME go together%s", "");
  }
  if (cfg.haproxy_socket == NULL && cfg.reload_pid == 0 && cfg.reload_command == NULL) {
    return usage_fail("a swap path is required: --haproxy-socket, --reload-pid or --reload-command%s", "");
  }
  if (cfg.reload_pid != 0 && cfg.reload_command != NULL) {
    return usage_fail("--reload-pid and --reload-command exclude each other%s", "");
  }
  /* rotate and staple end at once: nobody would be there to scrape. */
  if (metrics_listen != NULL && !watch) {
    return usage_fail("--metrics-listen is for lb watch; rotate and staple take --metrics-file%s", "");
  }
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = catalog != NULL ? pki_catalog_load_file(catalog, &err) : pki_catalog_default(&err);
  cfg.cat = cat;
  cfg.svc = cat != NULL ? pki_catalog_find_service(cat, LB_SERVICE) : NULL;
  lb_files files;
  memset(&files, 0, sizeof(files));
  if (cat == NULL || cfg.svc == NULL ||
      !who_calls(&cfg, &files, as, server, server_name, server_identity, server_ca, root, &err)) {
    if (cat != NULL && cfg.svc == NULL) PKI_ERR(&err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", LB_SERVICE);
    fprintf(stderr, "pkictl: %s: %s\n", pki_err_code_name(err.code), err.msg);
    pki_catalog_free(cat);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  if (!lb_ensure_bundle(&cfg, &err)) {
    fprintf(stderr, "pkictl: %s: %s\n", pki_err_code_name(err.code), err.msg);
    pki_catalog_free(cat);
    return 1;
  }
  if (staple) {
    int64_t next_update = 0;
    int ok = lb_staple(&cfg, &next_update, &err);
    pki_catalog_free(cat);
    if (!ok) fprintf(stderr, "pkictl: lb staple: %s: %s\n", pki_err_code_name(err.code), err.msg);
    return ok ? 0 : 1;
  }
  if (!watch) {
    lb_result r = lb_rotate(&cfg, force, &err);
    pki_catalog_free(cat);
    if (r == LB_NOT_DUE) pki_log("info", "lb_not_due", NULL);
    if (r != LB_NOT_DUE && r != LB_ROTATED) {
      fprintf(stderr, "pkictl: lb rotate: %s: %s\n", lb_result_name(r), err.msg);
      return 1;
    }
    return 0;
  }
  if (metrics_listen != NULL) {
    cfg.metrics_http = metrics_http_start(metrics_listen, &err);
    if (cfg.metrics_http == NULL) {
      fprintf(stderr, "pkictl: %s: %s\n", pki_err_code_name(err.code), err.msg);
      pki_catalog_free(cat);
      return 1;
    }
  }
  cli_on_stop_signals(on_stop);
  char metrics_port[16] = "-";
  if (cfg.metrics_http != NULL) {
    snprintf(metrics_port, sizeof(metrics_port), "%d", metrics_http_port(cfg.metrics_http));
  }
  pki_log("info", "lb_watch_start", "probe", cfg.probe, "metrics_port", metrics_port, NULL);
  /* --now in watch mode: one rotation at start, then the schedule. */
  int64_t staple_due = 0;
  unsigned failures = 0;
  while (!g_stop) {
    char next_crt[PKI_PATH_MAX];
    snprintf(next_crt, sizeof(next_crt), "%s/service-certificates/%s/rotation/lb-next.crt", cfg.pki,
             cfg.svc->dir);
    /* Keep lb-next present, so a swap never waits on pkid. */
    if (!pki_file_exists(next_crt)) {
      pki_err e;
      pki_err_clear(&e);
      if (!lb_make_next(&cfg, &e)) pki_log("warn", "lb_next_failed", "error", e.msg, NULL);
    }
    pki_err e;
    pki_err_clear(&e);
    lb_result r = lb_rotate(&cfg, force, &e);
    force = 0;
    if (r == LB_REFUSED) {
      /* A next certificate that failed validation will not pass later: it
       * is kept aside (lb-next.refused.*) and pkid makes another. */
      static const char *const kExts[] = {".crt", ".key", "-chain.crt"};
      for (size_t i = 0; i < 3; i++) {
        char from[PKI_PATH_MAX + 16], to[PKI_PATH_MAX + 32];
        snprintf(from, sizeof(from), "%s/service-certificates/%s/rotation/lb-next%s", cfg.pki,
                 cfg.svc->dir, kExts[i]);
        snprintf(to, sizeof(to), "%s/service-certificates/%s/rotation/lb-next.refused%s", cfg.pki,
                 cfg.svc->dir, kExts[i]);
        rename(from, to);
      }
      pki_log("warn", "lb_next_set_aside", "reason", e.msg, NULL);
    }
    /* After a failure, wait longer each time (up to 10 minutes): a swap
     * haproxy refuses, or a probe that fails, is not fixed in seconds. */
    failures = (r == LB_NOT_DUE || r == LB_ROTATED) ? 0 : failures + 1;
    uint64_t wait = check_ms;
    for (unsigned i = 0; i < failures && wait < 600000; i++) wait *= 2;
    if (failures > 0 && wait > 600000) wait = check_ms > 600000 ? check_ms : 600000;
    int64_t now = (int64_t)time(NULL);
    /* The staple: again after a rotation, and at half of the response's
     * validity (RFC 5019 4: refresh before nextUpdate). */
    if (r == LB_ROTATED || now >= staple_due) {
      int64_t next_update = 0;
      pki_err se;
      pki_err_clear(&se);
      if (lb_staple(&cfg, &next_update, &se)) {
        staple_due = next_update > now ? now + (next_update - now) / 2 : now + 60;
      } else {
        pki_log("warn", "lb_ocsp_staple_failed", "error", se.msg, NULL);
        staple_due = now + 30;
      }
    }
    for (uint64_t slept = 0; slept < wait && !g_stop; slept += 50) {
      struct timespec ts = {0, 50 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  pki_log("info", "lb_watch_stop", NULL);
  metrics_http_stop(cfg.metrics_http);
  pki_catalog_free(cat);
  return 0;
}
