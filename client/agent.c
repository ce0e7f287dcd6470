/* agent.c: `pkictl agent`, the renewal daemon (see agent.h). */
#include "client/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "client/agent_crl.h"
#include "client/cli.h"
#include "client/crl_cmd.h"
#include "client/metrics_http.h"
#include "client/pkiclient.h"
#include "lib/cert_info.h"
#include "lib/err.h"
#include "lib/file.h"
#include "lib/pki_tree.h"
#include "lib/profile.h"
#include "lib/log.h"

extern char **environ;

#define DEFAULT_SERVER "127.0.0.1:8443"
#define DEFAULT_SERVER_NAME "pki-ca.cybersec-framework.local"
#define HOOK_TIMEOUT_MS 30000
#define BACKOFF_JITTER 0.2
#define MAX_AGENT_CERTS PKI_CATALOG_MAX_CERTS

static const char kAgentUsage[] =
    "usage: pkictl agent --pki DIR [--as SERVICE[:server|client]] [--certs server,client]\n"
    "    [--once] [--metrics-file F] [--metrics-listen HOST:PORT]\n"
    "    [--reload-signal SIG --reload-pid PID |\n"
    "    --reload-command CMD] [--jitter PCT] [--check-interval-ms N]\n"
    "    [--min-backoff-ms N] [--max-backoff-ms N] [--server HOST:PORT]\n"
    "    [--server-name NAME] [--server-identity URI] [--server-ca FILE]\n"
    "    [--root FILE] [--timeout-ms N] [--catalog FILE]\n"
    "    [--crl-file PATH --crl-ca NAME [--crl-interval 60s] [--crl-hook CMD]\n"
    "     [--crl-base-url URL] [--crl-max-size 256M]\n"
    "     [--haproxy-socket SOCK [--haproxy-crl-name NAME]]]\n"
    "  --as, --crl-file or both.\n";

typedef struct agent_opts {
  const char *pki, *as, *certs, *catalog;
  const char *server, *server_name, *root;
  const char *server_identity, *server_ca;
  const char *metrics_file, *metrics_listen, *reload_command;
  int reload_signal;
  long reload_pid;
  int once;
  double jitter; /* fraction of the lifetime */
  uint64_t check_ms, min_backoff_ms, max_backoff_ms, timeout_ms;
  /* CRL keeping (agent_crl.h). */
  const char *crl_file, *crl_ca, *crl_hook, *crl_base_url;
  const char *haproxy_socket, *haproxy_crl_name;
  uint64_t crl_interval_ms;
  size_t crl_max_bytes;
} agent_opts;

/* One watched certificate. */
typedef struct agent_cert {
  const pki_catalog_cert *cc;
  char crt[PKI_PATH_MAX], key[PKI_PATH_MAX], chain[PKI_PATH_MAX];
  int present;          /* the certificate file parsed */
  char serial[80];      /* of the file as last read */
  int64_t not_before, not_after;
  int64_t due;          /* seconds; jittered, for |serial| */
  uint64_t next_try_ms; /* not before this (backoff) */
  uint64_t backoff_ms;
  unsigned attempt;     /* failed attempts in a row */
  uint64_t ok_total, error_total;
} agent_cert;

typedef struct agent {
  agent_opts o;
  const pki_catalog_service *svc;
  char root[PKI_PATH_MAX];
  /* Who pkid is (pkc_options): the catalogue's pki-ca identity, issued by
   * its CA, whose certificate the tree holds (else checked by name). */
  const char *pkid_identity;
  char pkid_ca[PKI_PATH_MAX];
  const char *pkid_ca_cn;
  agent_cert certs[MAX_AGENT_CERTS];
  size_t num_certs;
  int crl_on;
  agent_crl crl;
  metrics_http *metrics; /* --metrics-listen, else NULL */
} agent;

static volatile sig_atomic_t g_stop;

static void on_stop_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* uniform returns a random number in [-1, 1]. */
static double uniform(void) {
  uint32_t r = 0;
  RAND_bytes((uint8_t *)&r, sizeof(r));
  return (double)r / 2147483647.5 - 1.0;
}

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL); /* a stop signal cuts it short */
}

static void fmt_u64(char *out, size_t size, uint64_t v) {
  snprintf(out, size, "%llu", (unsigned long long)v);
}

int64_t agent_renew_at(const pki_catalog_service *svc, int64_t not_before, int64_t not_after,
                       int64_t *out_life) {
  /* pkid back-dates notBefore for clock skew: issuance is that much later. */
  int64_t issued = not_before + PKI_BACKDATE_S;
  if (issued >= not_after) issued = not_before;
  int64_t life = not_after - issued;
  *out_life = life;
  if (svc->renew_before_s != 0) return not_after - (int64_t)svc->renew_before_s;
  if (svc->rotation_s != 0 && (int64_t)svc->rotation_s < life) {
    return issued + (int64_t)svc->rotation_s;
  }
  return issued + life * 2 / 3;
}

/* ---- options ---- */

static int usage_fail(const char *fmt, const char *arg) {
  fprintf(stderr, "pkictl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n%s", kAgentUsage);
  return 2;
}

static int parse_signal(int *out, const char *text) {
  static const struct {
    const char *name;
    int sig;
  } kSignals[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                  {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};
  const char *name = strncmp(text, "SIG", 3) == 0 ? text + 3 : text;
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); i++) {
    if (strcmp(name, kSignals[i].name) == 0) {
      *out = kSignals[i].sig;
      return 1;
    }
  }
  uint64_t n;
  if (!cli_parse_u64(&n, text, 1, 64)) return 0;
  *out = (int)n;
  return 1;
}

enum {
  A_PKI = 2000, A_AS, A_CERTS, A_ONCE, A_METRICS_FILE, A_METRICS_LISTEN, A_RELOAD_SIGNAL,
  A_RELOAD_PID, A_RELOAD_COMMAND, A_JITTER, A_CHECK, A_MIN_BACKOFF, A_MAX_BACKOFF, A_SERVER,
  A_SERVER_NAME, A_ROOT, A_TIMEOUT, A_CATALOG, A_SERVER_IDENTITY, A_SERVER_CA,
  A_CRL_FILE, A_CRL_CA, A_CRL_INTERVAL, A_CRL_HOOK, A_CRL_BASE_URL, A_CRL_MAX_SIZE,
  A_HAPROXY_SOCKET, A_HAPROXY_CRL_NAME,
};

static const struct option kAgentOptions[] = {
    {"pki", required_argument, NULL, A_PKI},
    {"as", required_argument, NULL, A_AS},
    {"certs", required_argument, NULL, A_CERTS},
    {"once", no_argument, NULL, A_ONCE},
    {"metrics-file", required_argument, NULL, A_METRICS_FILE},
    {"metrics-listen", required_argument, NULL, A_METRICS_LISTEN},
    {"reload-signal", required_argument, NULL, A_RELOAD_SIGNAL},
    {"reload-pid", required_argument, NULL, A_RELOAD_PID},
    {"reload-command", required_argument, NULL, A_RELOAD_COMMAND},
    {"jitter", required_argument, NULL, A_JITTER},
    {"check-interval-ms", required_argument, NULL, A_CHECK},
    {"min-backoff-ms", required_argument, NULL, A_MIN_BACKOFF},
    {"max-backoff-ms", required_argument, NULL, A_MAX_BACKOFF},
    {"server", required_argument, NULL, A_SERVER},
    {"server-name", required_argument, NULL, A_SERVER_NAME},
    {"root", required_argument, NULL, A_ROOT},
    {"timeout-ms", required_argument, NULL, A_TIMEOUT},
    {"catalog", required_argument, NULL, A_CATALOG},
    {"server-identity", required_argument, NULL, A_SERVER_IDENTITY},
    {"server-ca", required_argument, NULL, A_SERVER_CA},
    {"crl-file", required_argument, NULL, A_CRL_FILE},
    {"crl-ca", required_argument, NULL, A_CRL_CA},
    {"crl-interval", required_argument, NULL, A_CRL_INTERVAL},
    {"crl-hook", required_argument, NULL, A_CRL_HOOK},
    {"crl-base-url", required_argument, NULL, A_CRL_BASE_URL},
    {"crl-max-size", required_argument, NULL, A_CRL_MAX_SIZE},
    {"haproxy-socket", required_argument, NULL, A_HAPROXY_SOCKET},
    {"haproxy-crl-name", required_argument, NULL, A_HAPROXY_CRL_NAME},
    {NULL, 0, NULL, 0},
};

static int parse_agent_options(agent_opts *o, int argc, char **argv) {
  memset(o, 0, sizeof(*o));
  o->jitter = 0.10;
  o->check_ms = 10000;
  o->min_backoff_ms = 500;
  o->max_backoff_ms = 60000;
  o->timeout_ms = 30000;
  o->crl_interval_ms = 60000;
  o->crl_max_bytes = HTTP_GET_DEFAULT_MAX_BODY;
  const char *signal_text = NULL, *pid_text = NULL;
  uint64_t v;
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", kAgentOptions, NULL)) != -1) {
    switch (c) {
      case A_PKI: o->pki = optarg; break;
      case A_AS: o->as = optarg; break;
      case A_CERTS: o->certs = optarg; break;
      case A_ONCE: o->once = 1; break;
      case A_METRICS_FILE: o->metrics_file = optarg; break;
      case A_METRICS_LISTEN: o->metrics_listen = optarg; break;
      case A_RELOAD_SIGNAL: signal_text = optarg; break;
      case A_RELOAD_PID: pid_text = optarg; break;
      case A_RELOAD_COMMAND: o->reload_command = optarg; break;
      case A_JITTER:
        if (!cli_parse_u64(&v, optarg, 0, 50)) return usage_fail("--jitter wants 0..50, not '%s'", optarg);
        o->jitter = (double)v / 100.0;
        break;
      case A_CHECK:
        if (!cli_parse_u64(&o->check_ms, optarg, 10, 86400000)) {
          return usage_fail("--check-interval-ms wants 10..86400000, not '%s'", optarg);
        }
        break;
      case A_MIN_BACKOFF:
        if (!cli_parse_u64(&o->min_backoff_ms, optarg, 1, 86400000)) {
          return usage_fail("--min-backoff-ms wants 1..86400000, not '%s'", optarg);
        }
        break;
      case A_MAX_BACKOFF:
        if (!cli_parse_u64(&o->max_backoff_ms, optarg, 1, 86400000)) {
          return usage_fail("--max-backoff-ms wants 1..86400000, not '%s'", optarg);
        }
        break;
      case A_SERVER: o->server = optarg; break;
      case A_SERVER_NAME: o->server_name = optarg; break;
      case A_ROOT: o->root = optarg; break;
      case A_TIMEOUT:
        if (!cli_parse_u64(&o->timeout_ms, optarg, 1, 86400000)) {
          return usage_fail("--timeout-ms wants 1..86400000, not '%s'", optarg);
        }
        break;
      case A_CATALOG: o->catalog = optarg; break;
      case A_SERVER_IDENTITY: o->server_identity = optarg; break;
      case A_SERVER_CA: o->server_ca = optarg; break;
      case A_CRL_FILE: o->crl_file = optarg; break;
      case A_CRL_CA: o->crl_ca = optarg; break;
      case A_CRL_HOOK: o->crl_hook = optarg; break;
      case A_CRL_BASE_URL: o->crl_base_url = optarg; break;
      case A_HAPROXY_SOCKET: o->haproxy_socket = optarg; break;
      case A_HAPROXY_CRL_NAME: o->haproxy_crl_name = optarg; break;
      case A_CRL_INTERVAL: {
        uint32_t s = 0;
        pki_err perr;
        if (!pki_duration_parse(&s, optarg, &perr) || s == 0 || s > 86400) {
          return usage_fail("--crl-interval wants 1s..24h (\"60s\", \"5m\"), not '%s'", optarg);
        }
        o->crl_interval_ms = (uint64_t)s * 1000;
        break;
      }
      case A_CRL_MAX_SIZE:
        if (!crl_parse_size(&o->crl_max_bytes, optarg)) {
          return usage_fail("--crl-max-size wants bytes, or 512K, 256M, 1G; not '%s'", optarg);
        }
        break;
      default:
        return usage_fail("unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc) return usage_fail("unexpected argument '%s'", argv[optind]);
  if (o->pki == NULL || (o->as == NULL && o->crl_file == NULL)) {
    return usage_fail("--pki DIR and --as SERVICE (or --crl-file) are required%s", "");
  }
  if ((o->crl_file == NULL) != (o->crl_ca == NULL)) {
    return usage_fail("--crl-file PATH and --crl-ca NAME go together%s", "");
  }
  if (o->crl_file == NULL && (o->haproxy_socket != NULL || o->crl_hook != NULL ||
                              o->crl_base_url != NULL || o->haproxy_crl_name != NULL)) {
    return usage_fail("--haproxy-socket, --crl-hook, --crl-base-url and --haproxy-crl-name "
                      "need --crl-file%s", "");
  }
  if (o->haproxy_crl_name != NULL && o->haproxy_socket == NULL) {
    return usage_fail("--haproxy-crl-name needs --haproxy-socket%s", "");
  }
  if (o->min_backoff_ms > o->max_backoff_ms) {
    return usage_fail("--min-backoff-ms exceeds --max-backoff-ms%s", "");
  }
  if ((signal_text == NULL) != (pid_text == NULL)) {
    return usage_fail("--reload-signal SIG and --reload-pid PID go together%s", "");
  }
  if (signal_text != NULL) {
    if (o->reload_command != NULL) {
      return usage_fail("choose --reload-signal/--reload-pid or --reload-command%s", "");
    }
    if (!parse_signal(&o->reload_signal, signal_text)) {
      return usage_fail("--reload-signal wants HUP, USR1, ... or a number, not '%s'", signal_text);
    }
    if (!cli_parse_u64(&v, pid_text, 1, 0x7fffffff)) {
      return usage_fail("--reload-pid wants a pid, not '%s'", pid_text);
    }
    o->reload_pid = (long)v;
  }
  return 0;
}

/* select_certs fills |a->certs| from --as SERVICE[:usage] and --certs. */
static int select_certs(agent *a, const pki_catalog *cat, pki_err *err) {
  char name[256];
  snprintf(name, sizeof(name), "%s", a->o.as);
  unsigned want = 0;
  char *colon = strchr(name, ':');
  if (colon != NULL) {
    *colon = '\0';
    if (strcmp(colon + 1, "server") == 0) {
      want = PKI_USAGE_SERVER;
    } else if (strcmp(colon + 1, "client") == 0) {
      want = PKI_USAGE_CLIENT;
    } else {
      PKI_ERR(err, PKI_ERR_INVALID, "--as SERVICE[:server|client], not '%s'", a->o.as);
      return 0;
    }
  }
  if (a->o.certs != NULL) {
    want = 0;
    char list[256];
    snprintf(list, sizeof(list), "%s", a->o.certs);
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
      if (strcmp(t, "server") == 0) {
        want |= PKI_USAGE_SERVER;
      } else if (strcmp(t, "client") == 0) {
        want |= PKI_USAGE_CLIENT;
      } else {
        PKI_ERR(err, PKI_ERR_INVALID, "--certs lists server and/or client, not '%s'", t);
        return 0;
      }
    }
  }
  if (want == 0) want = PKI_USAGE_SERVER | PKI_USAGE_CLIENT;
  a->svc = pki_catalog_find_service(cat, name);
  if (a->svc == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", name);
    return 0;
  }
  for (size_t i = 0; i < a->svc->num_certs; i++) {
    const pki_catalog_cert *cc = &a->svc->certs[i];
    if (((unsigned)cc->usage & want) == 0) continue;
    agent_cert *c = &a->certs[a->num_certs++];
    memset(c, 0, sizeof(*c));
    c->cc = cc;
    if (!pki_tree_service_path(c->crt, sizeof(c->crt), a->o.pki, a->svc, cc, ".crt", err) ||
        !pki_tree_service_path(c->key, sizeof(c->key), a->o.pki, a->svc, cc, ".key", err) ||
        !pki_tree_service_path(c->chain, sizeof(c->chain), a->o.pki, a->svc, cc, "-chain.crt",
                               err)) {
      return 0;
    }
  }
  if (a->num_certs == 0) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "service '%s' has none of the certificates asked for", name);
    return 0;
  }
  return 1;
}

/* who_is_pkid sets what pkid's certificate must be: --server-identity or
 * the catalogue's pki-ca identity; issued by the CA of --server-ca, else
 * the tree's copy of pki-ca's CA certificate, else by that CA's name. */
static int who_is_pkid(agent *a, const pki_catalog *cat, pki_err *err) {
  const pki_catalog_service *self = pki_catalog_find_service(cat, PKC_PKID_SERVICE);
  const pki_catalog_ca *self_ca = self != NULL ? pki_catalog_find_ca(cat, self->ca) : NULL;
  a->pkid_identity = a->o.server_identity != NULL ? a->o.server_identity
                     : self != NULL               ? self->identity
                                                  : NULL;
  if (a->o.server_ca != NULL) {
    snprintf(a->pkid_ca, sizeof(a->pkid_ca), "%s", a->o.server_ca);
  } else if (self_ca != NULL) {
    pki_err path_err;
    if (!pki_tree_ca_path(a->pkid_ca, sizeof(a->pkid_ca), a->o.pki, self_ca, PKI_TREE_CA_CERT,
                          &path_err) ||
        !pki_file_exists(a->pkid_ca)) {
      a->pkid_ca[0] = '\0';
    }
    a->pkid_ca_cn = self_ca->common_name;
  }
  if (a->pkid_identity == NULL || (a->pkid_ca[0] == '\0' && a->pkid_ca_cn == NULL)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "the catalogue has no %s service to tell who pkid is: give --server-identity URI "
            "and --server-ca FILE",
            PKC_PKID_SERVICE);
    return 0;
  }
  return 1;
}

/* ---- certificate state ---- */

/* refresh reads |c|'s certificate file; a new serial gets a new jittered
 * due time. */
static void refresh(agent *a, agent_cert *c) {
  uint8_t *der = NULL;
  size_t len = 0;
  pki_err err;
  pki_err_clear(&err);
  pki_cert_info info;
  memset(&info, 0, sizeof(info));
  if (!pki_tree_read_cert(&der, &len, c->crt, &err) ||
      !pki_cert_info_parse(&info, der, len, &err)) {
    if (c->present) pki_log("warn", "cert_unreadable", "cert", c->cc->file, "error", err.msg, NULL);
    c->present = 0;
    c->serial[0] = '\0';
    pki_cert_info_cleanup(&info);
    free(der);
    return;
  }
  char serial[80];
  size_t n = 0;
  for (size_t i = 0; i < CBS_len(&info.serial) && n + 3 < sizeof(serial); i++) {
    n += (size_t)snprintf(serial + n, sizeof(serial) - n, "%02x", CBS_data(&info.serial)[i]);
  }
  serial[n] = '\0';
  if (!c->present || strcmp(serial, c->serial) != 0) {
    snprintf(c->serial, sizeof(c->serial), "%s", serial);
    c->not_before = info.not_before;
    c->not_after = info.not_after;
    int64_t life;
    int64_t due = agent_renew_at(a->svc, c->not_before, c->not_after, &life);
    due += (int64_t)(uniform() * a->o.jitter * (double)life);
    if (due >= c->not_after) due = c->not_after - 1; /* never past expiry */
    if (due < c->not_before) due = c->not_before;
    c->due = due;
    char na[32], at[32];
    cli_format_time(na, sizeof(na), c->not_after);
    cli_format_time(at, sizeof(at), c->due);
    pki_log("info", "cert_watched", "cert", c->cc->file, "serial", c->serial, "not_after", na,
             "renew_at", at, NULL);
  }
  c->present = 1;
  pki_cert_info_cleanup(&info);
  free(der);
}

static int cert_valid_now(const agent_cert *c, int64_t now) {
  return c->present && c->not_before <= now && now < c->not_after &&
         pki_file_exists(c->key);
}

/* ---- renewal ---- */

static int fsync_dir_of(const char *path) {
  char dir[PKI_PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) {
    snprintf(dir, sizeof(dir), ".");
  } else {
    *slash = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  int ok = fsync(fd) == 0;
  close(fd);
  return ok;
}

/* install writes the new files beside the old ones (pkc_issued_write: key
 * 0600, certificate and chain 0644, each complete and fsynced), then
 * renames them into place key first, certificate last, back to back. */
static int install(const agent_cert *c, const pkc_issued *issued, pkc_error *err) {
  char tkey[PKI_PATH_MAX + 16], tcrt[PKI_PATH_MAX + 16], tchain[PKI_PATH_MAX + 16];
  snprintf(tkey, sizeof(tkey), "%s.agent-new", c->key);
  snprintf(tcrt, sizeof(tcrt), "%s.agent-new", c->crt);
  snprintf(tchain, sizeof(tchain), "%s.agent-new", c->chain);
  char dir[PKI_PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", c->crt);
  char *slash = strrchr(dir, '/');
  if (slash != NULL) {
    *slash = '\0';
    pki_err perr;
    pki_err_clear(&perr);
    if (!pki_mkdirs(dir, 0755, &perr)) {
      memset(err, 0, sizeof(*err));
      err->status = PKC_STATUS_INTERNAL;
      err->local = 1;
      snprintf(err->message, sizeof(err->message), "%s", perr.msg);
      return 0;
    }
  }
  if (!pkc_issued_write(issued, tkey, tcrt, tchain, err)) return 0;
  if (rename(tkey, c->key) != 0 || rename(tchain, c->chain) != 0 ||
      rename(tcrt, c->crt) != 0) {
    memset(err, 0, sizeof(*err));
    err->status = PKC_STATUS_INTERNAL;
    err->local = 1;
    snprintf(err->message, sizeof(err->message), "rename into %s: %s", dir, strerror(errno));
    unlink(tkey);
    unlink(tchain);
    unlink(tcrt);
    return 0;
  }
  fsync_dir_of(c->crt);
  return 1;
}

/* renew_one renews |c| (pkc_renew with itself), or issues it afresh with
 * another valid certificate of the service. */
static int renew_one(agent *a, agent_cert *c, int64_t now, const char **method,
                     pkc_error *err) {
  const agent_cert *auth = NULL;
  *method = "renew";
  if (cert_valid_now(c, now)) {
    auth = c;
  } else {
    *method = "issue";
    for (size_t i = 0; i < a->num_certs && auth == NULL; i++) {
      if (&a->certs[i] != c && cert_valid_now(&a->certs[i], now)) auth = &a->certs[i];
    }
    /* Certificates of the service the agent does not watch count too. */
    static agent_cert other;
    for (size_t i = 0; i < a->svc->num_certs && auth == NULL; i++) {
      const pki_catalog_cert *cc = &a->svc->certs[i];
      if (cc == c->cc) continue;
      memset(&other, 0, sizeof(other));
      other.cc = cc;
      pki_err perr;
      pki_err_clear(&perr);
      if (!pki_tree_service_path(other.crt, sizeof(other.crt), a->o.pki, a->svc, cc, ".crt", &perr) ||
          !pki_tree_service_path(other.key, sizeof(other.key), a->o.pki, a->svc, cc, ".key", &perr) ||
          !pki_tree_service_path(other.chain, sizeof(other.chain), a->o.pki, a->svc, cc,
                                 "-chain.crt", &perr)) {
        continue;
      }
      refresh(a, &other);
      if (cert_valid_now(&other, now)) auth = &other;
    }
    if (auth == NULL) {
      memset(err, 0, sizeof(*err));
      err->status = PKC_STATUS_FAILED_PRECONDITION;
      err->local = 1;
      snprintf(err->message, sizeof(err->message),
               "%s is %s and service '%s' holds no other valid certificate to issue it "
               "with; bootstrap it (pkictl bootstrap)",
               c->cc->file, c->present ? "expired" : "missing", a->svc->name);
      return 0;
    }
  }
  pkc_options po;
  memset(&po, 0, sizeof(po));
  po.target = a->o.server != NULL ? a->o.server : DEFAULT_SERVER;
  po.server_name_override = a->o.server_name != NULL ? a->o.server_name : DEFAULT_SERVER_NAME;
  po.root_pem_file = a->o.root != NULL ? a->o.root : a->root;
  po.server_identity = a->pkid_identity;
  if (a->pkid_ca[0] != '\0') {
    po.server_ca_pem_file = a->pkid_ca;
  } else {
    po.server_ca_common_name = a->pkid_ca_cn;
  }
  po.cert_pem_file = auth->crt;
  po.key_pem_file = auth->key;
  po.chain_pem_file = pki_file_exists(auth->chain) ? auth->chain : NULL;
  po.deadline_us = a->o.timeout_ms * 1000;
  /* The daemon backs off itself and logs each attempt; --once uses the
   * library's few quick retries. */
  po.retry.max_attempts = a->o.once ? 0 : 1;
  pkc_client *client = pkc_client_new(&po, err);
  if (client == NULL) return 0;
  pkc_issue_params p;
  memset(&p, 0, sizeof(p));
  p.key_type = cli_key_type(a->svc);
  p.service = a->svc->name;
  p.usage = c->cc->usage == PKI_USAGE_SERVER ? PKC_USAGE_SERVER : PKC_USAGE_CLIENT;
  pkc_issued issued;
  memset(&issued, 0, sizeof(issued));
  int ok = auth == c ? pkc_renew(client, &p, &issued, err) : pkc_issue(client, &p, &issued, err);
  pkc_client_free(client);
  if (ok) ok = install(c, &issued, err);
  pkc_issued_cleanup(&issued);
  return ok;
}

/* ---- reload hook and metrics ---- */

static void run_command(const char *command);

static void run_hook(const agent *a) {
  if (a->o.reload_pid != 0) {
    char pid[32], sig[16];
    snprintf(pid, sizeof(pid), "%ld", a->o.reload_pid);
    snprintf(sig, sizeof(sig), "%d", a->o.reload_signal);
    if (kill((pid_t)a->o.reload_pid, a->o.reload_signal) != 0) {
      pki_log("error", "reload_failed", "pid", pid, "signal", sig, "error", strerror(errno), NULL);
    } else {
      pki_log("info", "reload", "pid", pid, "signal", sig, NULL);
    }
    return;
  }
  if (a->o.reload_command != NULL) run_command(a->o.reload_command);
}

/* run_command runs `/bin/sh -c CMD`, waits for it at most 30 s (then
 * kills it) and logs how it ended. */
static void run_command(const char *command) {
  char *argv[] = {"sh", "-c", (char *)command, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
  if (rc != 0) {
    pki_log("error", "reload_failed", "command", command, "error", strerror(rc),
             NULL);
    return;
  }
  int status = 0;
  uint64_t waited = 0;
  pid_t done;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 && waited < HOOK_TIMEOUT_MS) {
    sleep_ms(20);
    waited += 20;
  }
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    pki_log("error", "reload_failed", "command", command, "error",
             "timed out after 30 s; killed", NULL);
    return;
  }
  char code[32];
  if (done > 0 && WIFEXITED(status)) {
    snprintf(code, sizeof(code), "%d", WEXITSTATUS(status));
    pki_log(WEXITSTATUS(status) == 0 ? "info" : "error", "reload", "command",
             command, "exit_status", code, NULL);
  } else {
    snprintf(code, sizeof(code), "%d", done > 0 && WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    pki_log("error", "reload_failed", "command", command, "signal", code, NULL);
  }
}

/* label_escape writes |s| as a Prometheus label value. */
static void label_escape(char *out, size_t size, const char *s) {
  size_t n = 0;
  for (; *s != '\0' && n + 3 < size; s++) {
    if (*s == '\\' || *s == '"') {
      out[n++] = '\\';
      out[n++] = *s;
    } else if (*s == '\n') {
      out[n++] = '\\';
      out[n++] = 'n';
    } else {
      out[n++] = *s;
    }
  }
  out[n] = '\0';
}

/* publish_metrics renders the metrics page and hands it to each place
 * that shows it: the --metrics-file textfile and the --metrics-listen
 * page. */
static void publish_metrics(const agent *a) {
  if (a->o.metrics_file == NULL && a->metrics == NULL) return;
  char buf[8192];
  size_t n = 0;
  n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                        "# HELP cert_expiry_timestamp notAfter of the certificate, in seconds "
                        "since the epoch.\n# TYPE cert_expiry_timestamp gauge\n");
  for (size_t i = 0; i < a->num_certs && n < sizeof(buf); i++) {
    const agent_cert *c = &a->certs[i];
    if (!c->present) continue;
    char name[512];
    label_escape(name, sizeof(name), c->cc->file);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "cert_expiry_timestamp{cert_name=\"%s\"} %lld\n",
                          name, (long long)c->not_after);
  }
  if (n < sizeof(buf)) {
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "# HELP pkid_agent_renew_at_timestamp_seconds When the agent renews the "
                          "certificate (jittered), in seconds since the epoch.\n"
                          "# TYPE pkid_agent_renew_at_timestamp_seconds gauge\n");
  }
  for (size_t i = 0; i < a->num_certs && n < sizeof(buf); i++) {
    const agent_cert *c = &a->certs[i];
    if (!c->present) continue;
    char name[512];
    label_escape(name, sizeof(name), c->cc->file);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "pkid_agent_renew_at_timestamp_seconds{cert_name=\"%s\"} %lld\n", name,
                          (long long)c->due);
  }
  if (n < sizeof(buf)) {
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "# HELP pkid_agent_renewals_total Renewal attempts by outcome.\n"
                          "# TYPE pkid_agent_renewals_total counter\n");
  }
  for (size_t i = 0; i < a->num_certs && n < sizeof(buf); i++) {
    const agent_cert *c = &a->certs[i];
    char name[512];
    label_escape(name, sizeof(name), c->cc->file);
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "pkid_agent_renewals_total{cert_name=\"%s\",result=\"ok\"} %llu\n"
                          "pkid_agent_renewals_total{cert_name=\"%s\",result=\"error\"} %llu\n",
                          name, (unsigned long long)c->ok_total, name,
                          (unsigned long long)c->error_total);
  }
  if (a->crl_on) agent_crl_metrics(&a->crl, buf, sizeof(buf), &n);
  if (n >= sizeof(buf)) {
    pki_log("error", "metrics_failed", "error", "too large", NULL);
    return;
  }
  if (a->metrics != NULL && !metrics_http_publish(a->metrics, buf, n)) {
    pki_log("error", "metrics_failed", "listen", a->o.metrics_listen, "error", "out of memory",
            NULL);
  }
  pki_err err;
  pki_err_clear(&err);
  if (a->o.metrics_file != NULL && !pki_file_write_atomic(a->o.metrics_file, buf, n, 0644, &err)) {
    pki_log("error", "metrics_failed", "file", a->o.metrics_file, "error", err.msg, NULL);
  }
}

/* ---- the loop ---- */

/* pass renews every certificate that is due; it returns how many failed
 * and sets |*renewed|. */
static size_t pass(agent *a, size_t *renewed, int *changed) {
  size_t failed = 0;
  *renewed = 0;
  for (size_t i = 0; i < a->num_certs && !g_stop; i++) {
    agent_cert *c = &a->certs[i];
    char before[80];
    snprintf(before, sizeof(before), "%s", c->serial);
    int was_present = c->present;
    refresh(a, c);
    if (c->present != was_present || strcmp(before, c->serial) != 0) *changed = 1;
    uint64_t now = now_ms();
    int64_t now_s = (int64_t)(now / 1000);
    if (c->present && now_s < c->due) continue;
    if (now < c->next_try_ms) continue;
    char attempt[16];
    snprintf(attempt, sizeof(attempt), "%u", c->attempt + 1);
    const char *method = "renew";
    pkc_error err;
    memset(&err, 0, sizeof(err));
    int ok = renew_one(a, c, now_s, &method, &err);
    *changed = 1;
    if (ok) {
      c->ok_total++;
      c->attempt = 0;
      c->backoff_ms = 0;
      c->next_try_ms = 0;
      (*renewed)++;
      refresh(a, c);
      char na[32], at[32];
      cli_format_time(na, sizeof(na), c->not_after);
      cli_format_time(at, sizeof(at), c->due);
      pki_log("info", "renewed", "cert", c->cc->file, "method", method, "attempt", attempt,
               "serial", c->serial, "not_after", na, "renew_at", at, NULL);
      continue;
    }
    failed++;
    c->error_total++;
    c->attempt++;
    uint64_t base = c->backoff_ms == 0 ? a->o.min_backoff_ms : c->backoff_ms * 2;
    /* A server that is not pkid will not become pkid in a moment: no quick
     * retries against it, only the slowest, in case the address is fixed. */
    if (err.server_refused || base > a->o.max_backoff_ms) base = a->o.max_backoff_ms;
    c->backoff_ms = base;
    double scaled = (double)base * (1.0 + BACKOFF_JITTER * uniform());
    uint64_t wait = scaled < 1.0 ? 1 : (uint64_t)scaled;
    if (wait > a->o.max_backoff_ms) wait = a->o.max_backoff_ms;
    c->next_try_ms = now_ms() + wait;
    char wait_text[32];
    fmt_u64(wait_text, sizeof(wait_text), wait);
    pki_log(err.server_refused ? "error" : "warn", "renew_failed", "cert", c->cc->file,
             "method", method, "attempt", attempt, "status", pkc_status_name(err.status),
             "message", err.message, "retryable", pkc_error_retryable(&err) ? "true" : "false",
             "server_refused", err.server_refused ? "true" : "false", "retry_in_ms",
             a->o.once ? "-" : wait_text, NULL);
  }
  return failed;
}

/* crl_pass keeps the CRL file (agent_crl.h): fetch, write if changed, the
 * hook after a write, and a push to haproxy while one is pending; 1 when
 * all of it went well. */
static int crl_pass(agent *a) {
  int written = 0;
  int ok = agent_crl_pass(&a->crl, &written);
  if (written && a->o.crl_hook != NULL) run_command(a->o.crl_hook);
  /* Pushed after the hook and even when a fetch failed: what is on disk
   * is what haproxy should hold, and a push that failed is retried. */
  if (!agent_crl_push(&a->crl)) ok = 0;
  return ok;
}

int agent_main(int argc, char **argv) {
  agent a;
  memset(&a, 0, sizeof(a));
  int rc = parse_agent_options(&a.o, argc, argv);
  if (rc != 0) return rc;
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat = a.o.catalog != NULL ? pki_catalog_load_file(a.o.catalog, &err)
                                         : pki_catalog_default(&err);
  /* Without --as the agent only keeps CRLs: no certificates to watch, and
   * no pkid to call. */
  int ok = cat != NULL && pki_tree_ca_path(a.root, sizeof(a.root), a.o.pki,
                                           pki_catalog_root(cat), PKI_TREE_CA_CERT, &err);
  if (ok && a.o.as != NULL) ok = select_certs(&a, cat, &err) && who_is_pkid(&a, cat, &err);
  if (ok && a.o.crl_file != NULL) {
    agent_crl_opts co = {
        .file = a.o.crl_file,
        .ca = a.o.crl_ca,
        .pki = a.o.pki,
        .base_url = a.o.crl_base_url,
        .haproxy_socket = a.o.haproxy_socket,
        .haproxy_name = a.o.haproxy_crl_name,
        .max_bytes = a.o.crl_max_bytes,
        .timeout_ms = a.o.timeout_ms,
    };
    ok = agent_crl_init(&a.crl, &co, cat, &err);
    a.crl_on = ok;
  }
  /* Bound last, after every check of the arguments: a mistake is reported
   * as itself, not as a port in use. */
  if (ok && a.o.metrics_listen != NULL) {
    a.metrics = metrics_http_start(a.o.metrics_listen, &err);
    ok = a.metrics != NULL;
  }
  if (!ok) {
    fprintf(stderr, "pkictl: %s: %s\n", pki_err_code_name(err.code), err.msg);
    if (a.crl_on) agent_crl_cleanup(&a.crl);
    pki_catalog_free(cat);
    return 1;
  }
  cli_on_stop_signals(on_stop_signal);
  signal(SIGPIPE, SIG_IGN);

  const char *name = a.svc != NULL ? a.svc->name : "-";
  char count[16];
  snprintf(count, sizeof(count), "%zu", a.num_certs);
  char metrics_port[16] = "-";
  if (a.metrics != NULL) snprintf(metrics_port, sizeof(metrics_port), "%d", metrics_http_port(a.metrics));
  pki_log("info", "agent_start", "service", name, "certs", count, "server",
           a.o.server != NULL ? a.o.server : DEFAULT_SERVER, "once", a.o.once ? "true" : "false",
           "crl_file", a.crl_on ? a.o.crl_file : "-", "metrics_port", metrics_port, NULL);
  size_t failed = 0;
  int crl_failed = 0;
  int first = 1;
  /* Two schedules in one loop: certificates every --check-interval-ms,
   * CRLs every --crl-interval; each runs when it is due. */
  uint64_t next_check = 0, next_crl = 0;
  while (!g_stop) {
    int changed = first;
    first = 0;
    if (a.num_certs > 0 && now_ms() >= next_check) {
      size_t renewed = 0;
      failed = pass(&a, &renewed, &changed);
      if (renewed > 0) run_hook(&a);
      next_check = now_ms() + a.o.check_ms;
    }
    if (a.crl_on && !g_stop && now_ms() >= next_crl) {
      crl_failed = !crl_pass(&a);
      changed = 1; /* the fetch counters moved */
      next_crl = now_ms() + a.o.crl_interval_ms;
    }
    if (changed) publish_metrics(&a);
    if (a.o.once) break;
    uint64_t now = now_ms(), wake = UINT64_MAX;
    if (a.num_certs > 0) wake = next_check;
    if (a.crl_on && next_crl < wake) wake = next_crl;
    sleep_ms(wake > now ? wake - now : 1);
  }
  pki_log("info", "agent_stop", "service", name, NULL);
  metrics_http_stop(a.metrics);
  if (a.crl_on) agent_crl_cleanup(&a.crl);
  pki_catalog_free(cat);
  return a.o.once && (failed > 0 || crl_failed) ? 1 : 0;
}
