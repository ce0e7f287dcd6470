/* pkid_identity_c_test: libpkiclient knows pkid by its identity and its CA,
 * and installs no trust bundle that changes the root unless asked.
 *
 * Three real pkids on loopback, from copies of one demo tree (as in
 * impersonation_test.sh): "genuine" presents pki-ca's certificate; "edge"
 * the load balancer's (*.cybersec-framework.local matches pkid's DNS name);
 * "stray" one with pkid's identity and names from load-balancer-ca, not
 * pkid's CA. pkid presents whatever is at pki-ca's paths. Clients use the
 * original tree's root and pki-agent's certificate, with the options'
 * defaults (the built-in catalogue) and with each option set.
 *
 * Usage: pkid_identity_c_test PKID PKICTL CATALOG */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/pkiclient.h"
#include "lib/file.h"
#include "tests/unit/test.h"

extern char **environ;

#define SERVER_NAME "pki-ca.cybersec-framework.local"
#define PKI_AGENT "agents/pki-agent/pki-agent-client"
#define SELF "service-certificates/infrastructure/pki-ca/pki-ca-server"
#define LB "service-certificates/load-balancer/active/lb-current"

static const char *g_pkid, *g_pkictl, *g_catalog;
static char g_tmp[512], g_pki[600], g_other[600];

typedef struct server {
  const char *name;
  char dir[600], log[600];
  pid_t pid;
  int port;
} server;

static server g_genuine = {.name = "genuine"}, g_edge = {.name = "edge"},
              g_stray = {.name = "stray"};

/* --- processes --- */

static int run_wait(char *const argv[]) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* sh runs a shell command line: setup only (copies, sed). */
static int sh(const char *fmt, const char *a, const char *b, const char *c) {
  char line[4096];
  snprintf(line, sizeof(line), fmt, a, b, c);
  char *argv[] = {"/bin/sh", "-c", line, NULL};
  return run_wait(argv);
}

static int find_port(const char *log) {
  uint8_t *text;
  size_t len;
  pki_err e;
  if (!pki_file_read(&text, &len, log, 1 << 24, &e)) return 0;
  static const char kNeedle[] = "\"event\":\"listening\",\"grpc\":\"127.0.0.1:";
  const char *at = strstr((const char *)text, kNeedle);
  int port = at != NULL ? atoi(at + sizeof(kNeedle) - 1) : 0;
  free(text);
  return port;
}

static int start(server *s) {
  snprintf(s->log, sizeof(s->log), "%s/%s.log", g_tmp, s->name);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  char *argv[] = {(char *)g_pkid,   "--pki",         s->dir,        "--listen",
                  "127.0.0.1:0",    "--ocsp-listen", "127.0.0.1:0", "--admin-listen",
                  "127.0.0.1:0",    NULL};
  int rc = posix_spawn(&s->pid, g_pkid, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return 0;
  double deadline = test_now() + 60;
  while (test_now() < deadline && (s->port = find_port(s->log)) == 0) {
    int status;
    if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
      s->pid = 0;
      break;
    }
    usleep(20 * 1000);
  }
  if (s->port == 0) fprintf(stderr, "pkid %s did not start; see %s\n", s->name, s->log);
  return s->port != 0;
}

static void stop(server *s) {
  if (s->pid <= 0) return;
  kill(s->pid, SIGTERM);
  int status;
  double deadline = test_now() + 20;
  while (waitpid(s->pid, &status, WNOHANG) == 0) {
    if (test_now() > deadline) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &status, 0);
      break;
    }
    usleep(20 * 1000);
  }
  s->pid = 0;
}

TEST(pkids_start) {
  char *demo[] = {(char *)g_pkictl, "ceremony", "demo", "--out", g_pki, NULL};
  REQUIRE(run_wait(demo) == 0);
  char *other[] = {(char *)g_pkictl, "ceremony", "demo", "--out", g_other, NULL};
  REQUIRE(run_wait(other) == 0);
  snprintf(g_genuine.dir, sizeof(g_genuine.dir), "%s", g_pki);
  snprintf(g_edge.dir, sizeof(g_edge.dir), "%s/edge", g_tmp);
  snprintf(g_stray.dir, sizeof(g_stray.dir), "%s/stray", g_tmp);
  /* edge: the load balancer's certificate, key and chain at pki-ca's paths. */
  REQUIRE(sh("cp -a '%s' '%s' && cd '%s' && for x in .crt .key -chain.crt; do "
             "cp " LB "$x " SELF "$x; done",
             g_pki, g_edge.dir, g_edge.dir) == 0);
  /* stray: pki-ca moved under load-balancer-ca, signed offline. */
  char yaml[700];
  snprintf(yaml, sizeof(yaml), "%s/stray.yaml", g_tmp);
  REQUIRE(sh("cp -a '%s' '%s'%s", g_pki, g_stray.dir, "") == 0);
  REQUIRE(sh("sed '/^  - name: pki-ca$/,/^    ca:/ "
             "s/^    ca: infrastructure-ca$/    ca: load-balancer-ca/' '%s' >'%s' && "
             "grep -q 'ca: load-balancer-ca' '%s'",
             g_catalog, yaml, yaml) == 0);
  char pass[700];
  snprintf(pass, sizeof(pass), "%s/ca-passphrase", g_pki);
  char *issue[] = {(char *)g_pkictl, "issue",     "--offline", "--out",    g_stray.dir,
                   "--catalog",      yaml,        "--service", "pki-ca",   "--usage",
                   "server",         "--passphrase-file", pass, NULL};
  REQUIRE(run_wait(issue) == 0);
  REQUIRE(start(&g_genuine));
  REQUIRE(start(&g_edge));
  REQUIRE(start(&g_stray));
}

/* --- clients --- */

static char g_root[700], g_cert[800], g_chain[800], g_key[800], g_ca[800];

/* options_for fills |o| for pki-agent against |s|, every pkid option left
 * to its default. */
static void options_for(pkc_options *o, const server *s, char *target, size_t target_size) {
  memset(o, 0, sizeof(*o));
  snprintf(target, target_size, "127.0.0.1:%d", s->port);
  snprintf(g_root, sizeof(g_root), "%s/root-ca/certs/root-ca.crt", g_pki);
  snprintf(g_cert, sizeof(g_cert), "%s/service-certificates/" PKI_AGENT ".crt", g_pki);
  snprintf(g_chain, sizeof(g_chain), "%s/service-certificates/" PKI_AGENT "-chain.crt", g_pki);
  snprintf(g_key, sizeof(g_key), "%s/service-certificates/" PKI_AGENT ".key", g_pki);
  snprintf(g_ca, sizeof(g_ca), "%s/intermediate-ca/infrastructure-ca/certs/infrastructure-ca.crt",
           g_pki);
  o->target = target;
  o->root_pem_file = g_root;
  o->cert_pem_file = g_cert;
  o->chain_pem_file = g_chain;
  o->key_pem_file = g_key;
  o->server_name_override = SERVER_NAME;
  o->deadline_us = 20ull * 1000 * 1000;
}

static void print_err(const char *what, const pkc_error *err) {
  fprintf(stderr, "  %s: %s (%d)%s%s: %s [attempts %u]\n", what, pkc_status_name(err->status),
          err->status, err->local ? " local" : "", err->server_refused ? " refused" : "",
          err->message, err->attempts);
}

/* reaches_pkid: a status call that pkid answers (NOT_FOUND for a serial it
 * never issued) went through the checks. */
static int reaches_pkid(const pkc_options *o) {
  pkc_error err;
  pkc_client *c = pkc_client_new(o, &err);
  if (c == NULL) {
    print_err("new", &err);
    return 0;
  }
  pkc_cert_status st;
  int ok = pkc_status(c, "01", &st, &err);
  pkc_client_free(c);
  if (ok || err.status != PKC_STATUS_NOT_FOUND || err.local) {
    print_err("status", &err);
    return 0;
  }
  return 1;
}

/* refused_with checks that a status call through |o| is refused as not
 * pkid, at once, and that |words| are in the message. */
static int refused_with(const pkc_options *o, const char *words) {
  pkc_error err;
  pkc_client *c = pkc_client_new(o, &err);
  if (c == NULL) {
    print_err("new", &err);
    return 0;
  }
  int good = 1;
  /* Twice on one client: also once the channel has failed. */
  for (int i = 0; i < 2; i++) {
    pkc_cert_status st;
    int ok = pkc_status(c, "01", &st, &err);
    print_err(i == 0 ? "first call" : "second call", &err);
    good = good && !ok && err.status == PKC_STATUS_UNAUTHENTICATED && err.local &&
           err.server_refused && err.attempts == 1 && !pkc_error_retryable(&err) &&
           strstr(err.message, "is not pkid") != NULL && strstr(err.message, words) != NULL;
  }
  pkc_client_free(c);
  return good;
}

TEST(defaults_accept_pkid) {
  pkc_options o;
  char target[64];
  options_for(&o, &g_genuine, target, sizeof(target));
  CHECK(reaches_pkid(&o));
  /* Every option set, the CA by key. */
  o.server_identity = "spiffe://cybersec-framework.local/infrastructure/pki-ca";
  o.server_ca_pem_file = g_ca;
  CHECK(reaches_pkid(&o));
  /* A trust store file names its CA first. */
  char store[800];
  snprintf(store, sizeof(store), "%s/trust-stores/infrastructure-ca-truststore.pem", g_pki);
  o.server_ca_pem_file = store;
  CHECK(reaches_pkid(&o));
  /* The CA by name. */
  o.server_ca_pem_file = NULL;
  o.server_ca_common_name = "Cybersec Framework Infrastructure CA";
  CHECK(reaches_pkid(&o));
}

TEST(edge_refused) {
  pkc_options o;
  char target[64];
  options_for(&o, &g_edge, target, sizeof(target));
  CHECK(refused_with(&o, "identity is spiffe://cybersec-framework.local/infrastructure/"
                         "load-balancer, not pkid's spiffe://cybersec-framework.local/"
                         "infrastructure/pki-ca"));
  o.server_ca_pem_file = g_ca;
  CHECK(refused_with(&o, "load-balancer"));
}

TEST(edge_gets_no_bootstrap_or_stream) {
  pkc_options o;
  char target[64];
  options_for(&o, &g_edge, target, sizeof(target));
  o.cert_pem_file = o.key_pem_file = o.chain_pem_file = NULL;
  pkc_error err;
  pkc_client *c = pkc_client_new(&o, &err);
  REQUIRE(c != NULL);
  pkc_issue_params p = {.service = "vault", .usage = PKC_USAGE_SERVER,
                        .bootstrap_token = "a-token-the-edge-must-not-see"};
  pkc_issued got;
  CHECK(!pkc_issue(c, &p, &got, &err));
  CHECK(err.status == PKC_STATUS_UNAUTHENTICATED && err.server_refused && err.attempts == 1);
  CHECK(got.cert.data == NULL && got.key == NULL);
  pkc_issued many[3];
  pkc_issue_params ps[3] = {p, p, p};
  CHECK(!pkc_issue_stream(c, ps, 3, many, &err));
  CHECK(err.status == PKC_STATUS_UNAUTHENTICATED && err.server_refused && err.attempts == 1);
  for (int i = 0; i < 3; i++) {
    CHECK(many[i].error.status == PKC_STATUS_UNAUTHENTICATED && many[i].error.server_refused);
    pkc_issued_cleanup(&many[i]);
  }
  pkc_client_free(c);
}

TEST(stray_refused) {
  pkc_options o;
  char target[64];
  options_for(&o, &g_stray, target, sizeof(target));
  /* Defaults: the identity is right; the CA is checked by name. */
  CHECK(refused_with(&o, "was issued by 'Cybersec Framework Load Balancer CA', not by pkid's "
                         "CA 'Cybersec Framework Infrastructure CA'"));
  /* With the CA's certificate: by key. */
  o.server_ca_pem_file = g_ca;
  CHECK(refused_with(&o, "was issued by 'Cybersec Framework Load Balancer CA' (key identifier "));
}

TEST(identity_and_ca_are_the_callers) {
  pkc_options o;
  char target[64];
  options_for(&o, &g_genuine, target, sizeof(target));
  o.server_identity = "spiffe://cybersec-framework.local/infrastructure/vault";
  CHECK(refused_with(&o, "identity is spiffe://cybersec-framework.local/infrastructure/pki-ca, "
                         "not pkid's spiffe://cybersec-framework.local/infrastructure/vault"));
  options_for(&o, &g_genuine, target, sizeof(target));
  char agents[800];
  snprintf(agents, sizeof(agents), "%s/intermediate-ca/agents-ca/certs/agents-ca.crt", g_pki);
  o.server_ca_pem_file = agents;
  CHECK(refused_with(&o, "not by pkid's CA 'Cybersec Framework Agents CA'"));
  options_for(&o, &g_genuine, target, sizeof(target));
  o.server_ca_common_name = "Cybersec Framework Agents CA";
  CHECK(refused_with(&o, "not by pkid's CA 'Cybersec Framework Agents CA'"));
  /* The same CA's certificate from another hierarchy: same name, other key. */
  char other_ca[800];
  snprintf(other_ca, sizeof(other_ca),
           "%s/intermediate-ca/infrastructure-ca/certs/infrastructure-ca.crt", g_other);
  options_for(&o, &g_genuine, target, sizeof(target));
  o.server_ca_pem_file = other_ca;
  CHECK(refused_with(&o, "names pkid's CA 'Cybersec Framework Infrastructure CA' as issuer, but "
                         "under another key"));
}

TEST(options_checked) {
  pkc_options o;
  char target[64];
  pkc_error err;
  options_for(&o, &g_genuine, target, sizeof(target));
  o.server_identity = "";
  CHECK(pkc_client_new(&o, &err) == NULL);
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT && err.local);
  options_for(&o, &g_genuine, target, sizeof(target));
  o.server_ca_pem_file = "/nonexistent/ca.crt";
  CHECK(pkc_client_new(&o, &err) == NULL);
  CHECK(err.status == PKC_STATUS_NOT_FOUND && err.local);
  /* A leaf is not a CA. */
  options_for(&o, &g_genuine, target, sizeof(target));
  o.server_ca_pem_file = g_cert;
  CHECK(pkc_client_new(&o, &err) == NULL);
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT && strstr(err.message, "not a CA") != NULL);
  char empty[700];
  snprintf(empty, sizeof(empty), "%s/empty.pem", g_tmp);
  pki_err e;
  REQUIRE(pki_file_write_atomic(empty, "no PEM here\n", 12, 0644, &e));
  options_for(&o, &g_genuine, target, sizeof(target));
  o.server_ca_pem_file = empty;
  CHECK(pkc_client_new(&o, &err) == NULL);
  print_err("empty", &err);
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT && strstr(err.message, "no certificate") != NULL);
}

/* --- the trust bundle's root --- */

static int file_is(const char *path, const char *text) {
  uint8_t *data;
  size_t len;
  pki_err e;
  if (!pki_file_read(&data, &len, path, 1 << 20, &e)) return 0;
  int same = len == strlen(text) && memcmp(data, text, len) == 0;
  free(data);
  return same;
}

static void write_old(const char *path) {
  pki_err e;
  pki_file_write_atomic(path, "old\n", 4, 0644, &e);
}

TEST(bundle_root_checked) {
  pkc_options o;
  char target[64];
  options_for(&o, &g_genuine, target, sizeof(target));
  pkc_error err;
  pkc_client *c = pkc_client_new(&o, &err);
  REQUIRE(c != NULL);
  pkc_trust_bundle b;
  int ok = pkc_trust_bundle_get(c, NULL, &b, &err);
  if (!ok) print_err("bundle", &err);
  REQUIRE(ok);
  CHECK(b.root_trusted == 1);
  char out[700];
  snprintf(out, sizeof(out), "%s/bundle.pem", g_tmp);
  CHECK(pkc_trust_bundle_write(&b, NULL, out, &err));
  CHECK(pkc_trust_bundle_write_ex(&b, "agents-ca", out, 0, &err));
  CHECK(!pkc_trust_bundle_write_ex(&b, NULL, out, 0x80, &err));
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT);

  /* A root the client does not trust: refused unless asked for. */
  b.root_trusted = 0;
  write_old(out);
  CHECK(!pkc_trust_bundle_write(&b, NULL, out, &err));
  print_err("new root", &err);
  CHECK(err.status == PKC_STATUS_FAILED_PRECONDITION && err.local &&
        strstr(err.message, "not the root this client trusts") != NULL &&
        strstr(err.message, "SHA-256 ") != NULL);
  CHECK(!pkc_trust_bundle_write_ex(&b, "agents-ca", out, 0, &err));
  CHECK(err.status == PKC_STATUS_FAILED_PRECONDITION);
  CHECK(file_is(out, "old\n"));
  CHECK(pkc_trust_bundle_write_ex(&b, "agents-ca", out, PKC_BUNDLE_ACCEPT_NEW_ROOT, &err));
  CHECK(!file_is(out, "old\n"));

  /* A store that ends in another root: refused, flag or not. */
  size_t i = 0;
  while (i < b.num_stores && strcmp(b.stores[i].ca, "agents-ca") != 0) i++;
  REQUIRE(i < b.num_stores);
  char other[800];
  snprintf(other, sizeof(other), "%s/trust-stores/agents-ca-truststore.pem", g_other);
  uint8_t *text;
  size_t len;
  pki_err e;
  REQUIRE(pki_file_read(&text, &len, other, 1 << 20, &e));
  free(b.stores[i].pem);
  b.stores[i].pem = (char *)text;
  b.root_trusted = 1;
  write_old(out);
  CHECK(!pkc_trust_bundle_write_ex(&b, "agents-ca", out, PKC_BUNDLE_ACCEPT_NEW_ROOT, &err));
  print_err("other store", &err);
  CHECK(err.status == PKC_STATUS_FAILED_PRECONDITION &&
        strstr(err.message, "does not end with the bundle's root") != NULL);
  CHECK(file_is(out, "old\n"));
  pkc_trust_bundle_cleanup(&b);
  pkc_client_free(c);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PKID PKICTL CATALOG\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  g_pkid = argv[1];
  g_pkictl = argv[2];
  g_catalog = argv[3];
  const char *tmp = getenv("TEST_TMPDIR");
  if (tmp != NULL && tmp[0] != '\0') {
    snprintf(g_tmp, sizeof(g_tmp), "%s", tmp);
  } else {
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/pkid_identity_c_test.XXXXXX");
    if (mkdtemp(g_tmp) == NULL) return 2;
  }
  snprintf(g_pki, sizeof(g_pki), "%s/pki", g_tmp);
  snprintf(g_other, sizeof(g_other), "%s/other", g_tmp);

  RUN(pkids_start);
  if (g_stray.port != 0) {
    RUN(defaults_accept_pkid);
    RUN(edge_refused);
    RUN(edge_gets_no_bootstrap_or_stream);
    RUN(stray_refused);
    RUN(identity_and_ca_are_the_callers);
    RUN(options_checked);
    RUN(bundle_root_checked);
  }
  stop(&g_genuine);
  stop(&g_edge);
  stop(&g_stray);
  return test_finish();
}
