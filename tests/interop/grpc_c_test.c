/* grpc_c_test: libpkiclient (gRPC core) against a real pkid on loopback.
 *
 * The test makes a demo hierarchy with `pkictl ceremony demo`, starts pkid
 * on 127.0.0.1:0 (reading the port from its "listening" log line), calls
 * every method through libpkiclient, checks what comes back with BoringSSL,
 * and stops pkid with SIGTERM at the end.
 *
 * Usage: grpc_c_test PKID PKICTL */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "client/pkiclient.h"
#include "lib/csr.h"
#include "lib/file.h"
#include "lib/key.h"
#include "lib/names.h"
#include "tests/unit/test.h"

extern char **environ;

#define SERVER_NAME "pki-ca.cybersec-framework.local"
#define PKI_AGENT "agents/pki-agent/pki-agent-client"
#define SECURITY_AGENT "agents/security-agent/security-agent-client"
#define PKI_AGENT_URI "spiffe://cybersec-framework.local/agents/pki-agent"

static const char *g_pkid, *g_pkictl;
static char g_tmp[512], g_pki[600], g_log[600];
static pid_t g_pkid_pid;
static int g_port;
static pkc_trust_bundle g_bundle;

static double now_s(void) { return test_now(); }

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

/* find_port looks for pkid's listening line in its log. */
static int find_port(void) {
  uint8_t *text;
  size_t len;
  pki_err e;
  if (!pki_file_read(&text, &len, g_log, 1 << 24, &e)) return 0;
  static const char kNeedle[] = "\"event\":\"listening\",\"grpc\":\"127.0.0.1:";
  const char *at = strstr((const char *)text, kNeedle);
  int port = at != NULL ? atoi(at + sizeof(kNeedle) - 1) : 0;
  free(text);
  return port;
}

static void print_log(void) {
  uint8_t *text;
  size_t len;
  pki_err e;
  if (pki_file_read(&text, &len, g_log, 1 << 24, &e)) {
    fprintf(stderr, "--- pkid log ---\n%s--- end ---\n", (const char *)text);
    free(text);
  }
}

TEST(pkid_starts) {
  char *demo[] = {(char *)g_pkictl, "ceremony", "demo", "--out", g_pki, NULL};
  REQUIRE(run_wait(demo) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, g_log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  char *argv[] = {(char *)g_pkid,      "--pki",         g_pki,       "--listen",
                  "127.0.0.1:0",       "--ocsp-listen", "127.0.0.1:0", "--admin-listen",
                  "127.0.0.1:0",       NULL};
  int rc = posix_spawn(&g_pkid_pid, g_pkid, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  double deadline = now_s() + 30;
  while (now_s() < deadline && (g_port = find_port()) == 0) {
    int status;
    if (waitpid(g_pkid_pid, &status, WNOHANG) == g_pkid_pid) {
      g_pkid_pid = 0;
      break;
    }
    usleep(20 * 1000);
  }
  if (g_port == 0) print_log();
  REQUIRE(g_port != 0);
}

static void stop_pkid(void) {
  if (g_pkid_pid <= 0) return;
  kill(g_pkid_pid, SIGTERM);
  double deadline = now_s() + 20;
  int status = 0;
  pid_t got;
  while ((got = waitpid(g_pkid_pid, &status, WNOHANG)) == 0 && now_s() < deadline) {
    usleep(20 * 1000);
  }
  if (got == 0) {
    fprintf(stderr, "pkid did not stop on SIGTERM; killing it\n");
    kill(g_pkid_pid, SIGKILL);
    waitpid(g_pkid_pid, &status, 0);
  } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "note: pkid exited with status 0x%x\n", status);
    print_log();
  }
  g_pkid_pid = 0;
}

/* --- clients --- */

static char g_root_path[700], g_cert_path[800], g_chain_path[800], g_key_path[800];

/* options_for fills |o| for the service certificate at |cert| (a path under
 * service-certificates/ without its extension), or for no certificate. */
static void options_for(pkc_options *o, const char *cert, char *target, size_t target_size) {
  memset(o, 0, sizeof(*o));
  snprintf(target, target_size, "127.0.0.1:%d", g_port);
  snprintf(g_root_path, sizeof(g_root_path), "%s/root-ca/certs/root-ca.crt", g_pki);
  o->target = target;
  o->root_pem_file = g_root_path;
  o->server_name_override = SERVER_NAME;
  o->deadline_us = 30ull * 1000 * 1000;
  if (cert != NULL) {
    snprintf(g_cert_path, sizeof(g_cert_path), "%s/service-certificates/%s.crt", g_pki, cert);
    snprintf(g_chain_path, sizeof(g_chain_path), "%s/service-certificates/%s-chain.crt", g_pki,
             cert);
    snprintf(g_key_path, sizeof(g_key_path), "%s/service-certificates/%s.key", g_pki, cert);
    o->cert_pem_file = g_cert_path;
    o->chain_pem_file = g_chain_path;
    o->key_pem_file = g_key_path;
  }
}

static pkc_client *client_as(const char *cert) {
  pkc_options o;
  char target[64];
  options_for(&o, cert, target, sizeof(target));
  pkc_error err;
  pkc_client *c = pkc_client_new(&o, &err);
  if (c == NULL) fprintf(stderr, "  pkc_client_new: %s\n", err.message);
  return c;
}

static void print_err(const char *what, const pkc_error *err) {
  fprintf(stderr, "  %s: %s (%d)%s: %s [attempts %u]\n", what, pkc_status_name(err->status),
          err->status, err->local ? " local" : "", err->message, err->attempts);
}

/* --- checks with BoringSSL --- */

static X509 *x509_of(const pkc_der *der) {
  const uint8_t *p = der->data;
  return d2i_X509(NULL, &p, (long)der->len);
}

/* verify_issued checks |got| against the trust bundle's root: each
 * signature with X509_verify, the whole path with X509_verify_cert, and
 * that the certificate holds the key we made and the serial pkid said. */
static int verify_issued(const pkc_issued *got) {
  int ok = 0;
  X509 *leaf = x509_of(&got->cert);
  X509 *root = x509_of(&g_bundle.root);
  STACK_OF(X509) *chain = sk_X509_new_null();
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  if (leaf == NULL || root == NULL || chain == NULL || store == NULL || ctx == NULL) goto out;
  for (size_t i = 0; i < got->num_chain; i++) {
    X509 *c = x509_of(&got->chain[i]);
    if (c == NULL || !sk_X509_push(chain, c)) {
      X509_free(c);
      goto out;
    }
  }
  if (sk_X509_num(chain) == 0) goto out;
  /* Each link, by hand: leaf <- chain[0] <- ... <- root. */
  X509 *child = leaf;
  for (size_t i = 0; i <= sk_X509_num(chain); i++) {
    X509 *parent = i < sk_X509_num(chain) ? sk_X509_value(chain, i) : root;
    EVP_PKEY *pub = X509_get_pubkey(parent);
    int good = pub != NULL && X509_verify(child, pub) == 1;
    EVP_PKEY_free(pub);
    if (!good) {
      fprintf(stderr, "  X509_verify failed at link %zu\n", i);
      goto out;
    }
    child = parent;
  }
  /* The whole path, as a TLS peer would check it. */
  if (!X509_STORE_add_cert(store, root) || !X509_STORE_CTX_init(ctx, store, leaf, chain)) {
    goto out;
  }
  if (X509_verify_cert(ctx) != 1) {
    fprintf(stderr, "  X509_verify_cert: %s\n",
            X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    goto out;
  }
  if (got->key != NULL) {
    EVP_PKEY *pub = X509_get_pubkey(leaf);
    int same_key = pub != NULL && EVP_PKEY_cmp(pub, got->key) == 1;
    EVP_PKEY_free(pub);
    if (!same_key) {
      fprintf(stderr, "  the certificate does not hold our key\n");
      goto out;
    }
  }
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(leaf), NULL);
  char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
  const char *want = got->serial, *have = hex != NULL ? hex : "";
  while (*want == '0') want++;
  while (*have == '0') have++; /* BN_bn2hex prints whole bytes */
  int same = hex != NULL && strcasecmp(have, want) == 0;
  if (!same) fprintf(stderr, "  serial %s, pkid said %s\n", hex, got->serial);
  OPENSSL_free(hex);
  BN_free(bn);
  ok = same;
out:
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  sk_X509_pop_free(chain, X509_free);
  X509_free(root);
  X509_free(leaf);
  return ok;
}

static int cert_cn_is(const pkc_der *der, const char *cn) {
  X509 *x = x509_of(der);
  char buf[256] = "";
  if (x != NULL) X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf,
                                           sizeof(buf));
  X509_free(x);
  return strcmp(buf, cn) == 0;
}

static int cert_has_uri(const pkc_der *der, const char *uri) {
  X509 *x = x509_of(der);
  int found = 0;
  GENERAL_NAMES *names = x != NULL ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)
                                   : NULL;
  for (size_t i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_URI &&
        (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier) == strlen(uri) &&
        memcmp(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier), uri, strlen(uri)) == 0) {
      found = 1;
    }
  }
  GENERAL_NAMES_free(names);
  X509_free(x);
  return found;
}

/* cert_xku returns the certificate's extended key usage flags (XKU_*). */
static uint32_t cert_xku(const pkc_der *der) {
  X509 *x = x509_of(der);
  uint32_t xku = x != NULL ? X509_get_extended_key_usage(x) : 0;
  X509_free(x);
  return xku;
}

/* --- cases --- */

static pkc_client *g_admin; /* pki-agent: an admin identity */

TEST(trust_bundle) {
  pkc_error err;
  pkc_trust_bundle one, none;
  REQUIRE(g_admin != NULL);
  if (!pkc_trust_bundle_get(g_admin, NULL, &g_bundle, &err)) print_err("bundle", &err);
  REQUIRE(g_bundle.root.len > 0);
  CHECK(g_bundle.num_stores == 4);
  const char *want[] = {"infrastructure-ca", "agents-ca", "external-ca", "load-balancer-ca"};
  for (size_t w = 0; w < 4; w++) {
    int found = 0;
    for (size_t i = 0; i < g_bundle.num_stores; i++) {
      if (strcmp(g_bundle.stores[i].ca, want[w]) == 0) found = 1;
    }
    CHECK(found);
  }
  /* The root is the one the ceremony made. */
  char path[700];
  snprintf(path, sizeof(path), "%s/root-ca/certs/root-ca.crt", g_pki);
  FILE *f = fopen(path, "r");
  REQUIRE(f != NULL);
  X509 *file_root = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  REQUIRE(file_root != NULL);
  uint8_t *der = NULL;
  int der_len = i2d_X509(file_root, &der);
  CHECK(der_len > 0 && (size_t)der_len == g_bundle.root.len &&
        memcmp(der, g_bundle.root.data, g_bundle.root.len) == 0);
  OPENSSL_free(der);
  X509_free(file_root);

  /* One CA's store is the seed's agent trust store file. */
  REQUIRE(pkc_trust_bundle_get(g_admin, "agents-ca", &one, &err));
  REQUIRE(one.num_stores == 1);
  CHECK(strcmp(one.stores[0].ca, "agents-ca") == 0);
  uint8_t *pem;
  size_t pem_len;
  pki_err e;
  snprintf(path, sizeof(path), "%s/trust-stores/agent-truststore.pem", g_pki);
  if (pki_file_read(&pem, &pem_len, path, 1 << 20, &e)) {
    CHECK(strcmp((const char *)pem, one.stores[0].pem) == 0);
    free(pem);
  } else {
    CHECK(!"agent-truststore.pem readable");
  }
  pkc_trust_bundle_cleanup(&one);

  CHECK(!pkc_trust_bundle_get(g_admin, "nope", &none, &err));
  CHECK(err.status == PKC_STATUS_NOT_FOUND && !err.local);
  pkc_trust_bundle_cleanup(&none);
}

static void issue_key_type(pkc_key_type type, pkc_usage usage, int want_pkey_id) {
  pkc_issue_params p = {.usage = usage, .key_type = type};
  pkc_issued got;
  pkc_error err;
  REQUIRE(g_admin != NULL);
  int ok = pkc_issue(g_admin, &p, &got, &err);
  if (!ok) print_err("issue", &err);
  REQUIRE(ok);
  CHECK(err.status == PKC_STATUS_OK && err.attempts == 1);
  REQUIRE(got.key != NULL);
  CHECK(EVP_PKEY_id(got.key) == want_pkey_id);
  CHECK(got.num_chain >= 1);
  CHECK(got.serial[0] != '\0');
  CHECK(got.not_after > (int64_t)time(NULL));
  CHECK(verify_issued(&got));
  CHECK(cert_cn_is(&got.cert, "pki-agent"));
  CHECK(cert_xku(&got.cert) == (usage == PKC_USAGE_SERVER ? XKU_SSL_SERVER : XKU_SSL_CLIENT));
  pkc_issued_cleanup(&got);
}

TEST(issue_ecdsa_p256) { issue_key_type(PKC_KEY_ECDSA_P256, PKC_USAGE_SERVER, EVP_PKEY_EC); }

TEST(issue_ed25519) { issue_key_type(PKC_KEY_ED25519, PKC_USAGE_CLIENT, EVP_PKEY_ED25519); }

TEST(issue_with_existing_key) {
  pki_err e;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P384, 384, &e);
  REQUIRE(key != NULL);
  pkc_issue_params p = {.usage = PKC_USAGE_CLIENT, .key = key};
  pkc_issued got;
  pkc_error err;
  int ok = pkc_issue(g_admin, &p, &got, &err);
  if (!ok) print_err("issue", &err);
  CHECK(ok);
  CHECK(got.key == key); /* a new reference to the caller's key */
  if (ok) CHECK(verify_issued(&got));
  pkc_issued_cleanup(&got);
  EVP_PKEY_free(key);
}

TEST(admin_issues_for_other_service) {
  pkc_issue_params p = {.service = "vault", .usage = PKC_USAGE_SERVER};
  pkc_issued got;
  pkc_error err;
  int ok = pkc_issue(g_admin, &p, &got, &err);
  if (!ok) print_err("issue", &err);
  REQUIRE(ok);
  CHECK(cert_cn_is(&got.cert, "vault"));
  CHECK(verify_issued(&got));
  pkc_issued_cleanup(&got);
}

TEST(non_admin_denied_for_other_service) {
  pkc_client *c = client_as(SECURITY_AGENT);
  REQUIRE(c != NULL);
  pkc_issue_params p = {.service = "vault", .usage = PKC_USAGE_SERVER};
  pkc_issued got;
  pkc_error err;
  CHECK(!pkc_issue(c, &p, &got, &err));
  CHECK(err.status == PKC_STATUS_PERMISSION_DENIED);
  CHECK(strstr(err.message, "may not issue") != NULL);
  CHECK(!pkc_error_retryable(&err));
  CHECK(err.attempts == 1);
  CHECK(got.key == NULL && got.cert.data == NULL);
  /* Its own service is fine. */
  pkc_issue_params own = {.usage = PKC_USAGE_CLIENT};
  int ok = pkc_issue(c, &own, &got, &err);
  if (!ok) print_err("issue", &err);
  CHECK(ok);
  if (ok) CHECK(cert_cn_is(&got.cert, "security-agent"));
  pkc_issued_cleanup(&got);
  pkc_client_free(c);
}

TEST(names_outside_grant_denied) {
  pki_err e;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &e);
  REQUIRE(key != NULL);
  pki_name name = {.type = PKI_NAME_DNS, .value = "evil.example.com"};
  uint8_t *csr = NULL;
  size_t csr_len = 0;
  CHECK(pki_csr_build(&csr, &csr_len, key, "probe", &name, 1, &e));
  pkc_issue_params p = {.usage = PKC_USAGE_SERVER, .csr = csr, .csr_len = csr_len};
  pkc_issued got;
  pkc_error err;
  CHECK(!pkc_issue(g_admin, &p, &got, &err));
  CHECK(err.status == PKC_STATUS_PERMISSION_DENIED && !err.local);
  CHECK(strstr(err.message, "evil.example.com") != NULL);
  if (err.status != PKC_STATUS_PERMISSION_DENIED) print_err("issue", &err);
  free(csr);
  EVP_PKEY_free(key);
}

TEST(bad_csr_invalid_argument) {
  static const uint8_t kJunk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
  pkc_issue_params p = {.usage = PKC_USAGE_SERVER, .csr = kJunk, .csr_len = sizeof(kJunk)};
  pkc_issued got;
  pkc_error err;
  CHECK(!pkc_issue(g_admin, &p, &got, &err));
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT && !err.local);
  CHECK(strstr(err.message, "CSR") != NULL);
  CHECK(!pkc_error_retryable(&err));
  if (err.status != PKC_STATUS_INVALID_ARGUMENT) print_err("issue", &err);
  /* No usage. */
  pkc_issue_params no_usage = {.usage = 0};
  CHECK(!pkc_issue(g_admin, &no_usage, &got, &err));
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT && strstr(err.message, "usage") != NULL);
}

#define STREAM_N 50
#define STREAM_BAD 17

TEST(issue_stream_50_one_bad) {
  static const uint8_t kJunk[] = {'g', 'a', 'r', 'b', 'a', 'g', 'e'};
  pkc_issue_params p[STREAM_N];
  pkc_issued got[STREAM_N];
  memset(p, 0, sizeof(p));
  for (int i = 0; i < STREAM_N; i++) {
    p[i].usage = i % 2 ? PKC_USAGE_CLIENT : PKC_USAGE_SERVER;
    p[i].key_type = i % 3 == 0 ? PKC_KEY_ED25519 : PKC_KEY_ECDSA_P256;
  }
  p[STREAM_BAD].csr = kJunk;
  p[STREAM_BAD].csr_len = sizeof(kJunk);
  pkc_error err;
  int ok = pkc_issue_stream(g_admin, p, STREAM_N, got, &err);
  if (!ok) print_err("stream", &err);
  CHECK(ok);
  int good = 0, distinct = 1;
  for (int i = 0; i < STREAM_N; i++) {
    if (i == STREAM_BAD) {
      CHECK(got[i].error.status == PKC_STATUS_INVALID_ARGUMENT);
      CHECK(got[i].cert.data == NULL && got[i].key == NULL);
      continue;
    }
    if (got[i].error.status != PKC_STATUS_OK) {
      print_err("stream item", &got[i].error);
      continue;
    }
    good++;
    CHECK(got[i].key != NULL && got[i].cert.len > 0);
    for (int j = 0; j < i; j++) {
      if (got[j].error.status == PKC_STATUS_OK && strcmp(got[i].serial, got[j].serial) == 0) {
        distinct = 0;
      }
    }
    /* Answers match requests: the key and the usage are the ones asked. */
    if (i % 7 == 0) CHECK(verify_issued(&got[i]));
    CHECK(cert_xku(&got[i].cert) == (i % 2 ? XKU_SSL_CLIENT : XKU_SSL_SERVER));
  }
  CHECK(good == STREAM_N - 1);
  CHECK(distinct);
  for (int i = 0; i < STREAM_N; i++) pkc_issued_cleanup(&got[i]);
}

TEST(issue_stream_empty) {
  pkc_error err;
  int ok = pkc_issue_stream(g_admin, NULL, 0, NULL, &err);
  if (!ok) print_err("empty stream", &err);
  CHECK(ok);
}

TEST(renew_with_own_certificate) {
  pkc_issue_params p = {.key_type = PKC_KEY_ECDSA_P256};
  pkc_issued got;
  pkc_error err;
  int ok = pkc_renew(g_admin, &p, &got, &err);
  if (!ok) print_err("renew", &err);
  REQUIRE(ok);
  CHECK(cert_has_uri(&got.cert, PKI_AGENT_URI));
  /* The client was made with a client certificate: the renewal is one. */
  CHECK(cert_xku(&got.cert) == XKU_SSL_CLIENT);
  CHECK(verify_issued(&got));
  pkc_issued_cleanup(&got);
}

TEST(write_files) {
  pkc_issue_params p = {.usage = PKC_USAGE_SERVER};
  pkc_issued got;
  pkc_error err;
  REQUIRE(pkc_issue(g_admin, &p, &got, &err));
  char key[700], cert[700], chain[700], full[700], store[700], root[700];
  snprintf(key, sizeof(key), "%s/out/tls.key", g_tmp);
  snprintf(cert, sizeof(cert), "%s/out/tls.crt", g_tmp);
  snprintf(chain, sizeof(chain), "%s/out/tls-chain.crt", g_tmp);
  snprintf(full, sizeof(full), "%s/out/fullchain.crt", g_tmp);
  snprintf(store, sizeof(store), "%s/out/agents-ca.pem", g_tmp);
  snprintf(root, sizeof(root), "%s/out/root.pem", g_tmp);
  pki_err e;
  char dir[600];
  snprintf(dir, sizeof(dir), "%s/out", g_tmp);
  REQUIRE(pki_mkdirs(dir, 0755, &e));
  CHECK(pkc_issued_write(&got, key, cert, chain, &err));
  CHECK(pkc_issued_write(&got, NULL, full, NULL, &err));
  struct stat st;
  CHECK(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK(stat(cert, &st) == 0 && (st.st_mode & 0777) == 0644);
  /* The key file holds our key; the certificate file our certificate. */
  EVP_PKEY *k = pki_key_read_pem(key, &e);
  CHECK(k != NULL && EVP_PKEY_cmp(k, got.key) == 1);
  EVP_PKEY_free(k);
  FILE *f = fopen(full, "r");
  REQUIRE(f != NULL);
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  X509 *next = PEM_read_X509(f, NULL, NULL, NULL); /* the chain follows */
  fclose(f);
  CHECK(x != NULL && next != NULL);
  uint8_t *der = NULL;
  int der_len = x != NULL ? i2d_X509(x, &der) : 0;
  CHECK(der_len > 0 && (size_t)der_len == got.cert.len &&
        memcmp(der, got.cert.data, got.cert.len) == 0);
  OPENSSL_free(der);
  X509_free(x);
  X509_free(next);
  CHECK(pkc_trust_bundle_write(&g_bundle, "agents-ca", store, &err));
  CHECK(pkc_trust_bundle_write(&g_bundle, NULL, root, &err));
  CHECK(!pkc_trust_bundle_write(&g_bundle, "nope", store, &err));
  CHECK(err.status == PKC_STATUS_NOT_FOUND && err.local);
  pkc_issued_cleanup(&got);
}

TEST(deadline_exceeded) {
  pkc_options o;
  char target[64];
  options_for(&o, PKI_AGENT, target, sizeof(target));
  o.deadline_us = 1;
  pkc_error err;
  pkc_client *c = pkc_client_new(&o, &err);
  REQUIRE(c != NULL);
  pkc_issue_params p = {.usage = PKC_USAGE_SERVER};
  pkc_issued got;
  CHECK(!pkc_issue(c, &p, &got, &err));
  CHECK(err.status == PKC_STATUS_DEADLINE_EXCEEDED);
  CHECK(pkc_error_retryable(&err));
  CHECK(err.attempts == 1); /* a deadline is the caller's budget: not retried */
  if (err.status != PKC_STATUS_DEADLINE_EXCEEDED) print_err("issue", &err);
  pkc_client_free(c);
}

/* closed_port returns a loopback port nothing listens on. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

TEST(retry_with_backoff_on_unavailable) {
  pkc_options o;
  char target[64];
  options_for(&o, PKI_AGENT, target, sizeof(target));
  int port = closed_port();
  REQUIRE(port != 0);
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  o.deadline_us = 10ull * 1000 * 1000;
  o.retry.max_attempts = 3;
  o.retry.initial_backoff_ms = 100;
  o.retry.max_backoff_ms = 150;
  o.retry.multiplier = 2.0;
  o.retry.jitter = 0.2;
  pkc_error err;
  pkc_client *c = pkc_client_new(&o, &err);
  REQUIRE(c != NULL);
  pkc_issue_params p = {.usage = PKC_USAGE_SERVER};
  pkc_issued got;
  double start = now_s();
  CHECK(!pkc_issue(c, &p, &got, &err));
  double elapsed = now_s() - start;
  CHECK(err.status == PKC_STATUS_UNAVAILABLE && !err.local);
  CHECK(pkc_error_retryable(&err));
  CHECK(err.attempts == 3);
  /* Two sleeps: 100 ms and 150 ms (capped), each within +-20%. */
  CHECK(elapsed >= 0.8 * 0.100 + 0.8 * 0.150 - 0.005);
  CHECK(elapsed < 8.0);
  fprintf(stderr, "  3 attempts in %.3f s: %s\n", elapsed, err.message);

  /* Stream: the same policy. */
  pkc_issued one;
  CHECK(!pkc_issue_stream(c, &p, 1, &one, &err));
  CHECK(err.status == PKC_STATUS_UNAVAILABLE && err.attempts == 3);
  CHECK(one.error.status == PKC_STATUS_UNAVAILABLE);
  pkc_issued_cleanup(&one);
  pkc_client_free(c);

  /* max_attempts 1: no retry, no sleep. */
  o.retry.max_attempts = 1;
  c = pkc_client_new(&o, &err);
  REQUIRE(c != NULL);
  CHECK(!pkc_issue(c, &p, &got, &err));
  CHECK(err.status == PKC_STATUS_UNAVAILABLE && err.attempts == 1);
  pkc_client_free(c);
}

TEST(no_client_certificate_refused) {
  pkc_options o;
  char target[64];
  options_for(&o, NULL, target, sizeof(target));
  o.retry.max_attempts = 1;
  pkc_error err;
  pkc_client *c = pkc_client_new(&o, &err);
  REQUIRE(c != NULL);
  pkc_issue_params p = {.usage = PKC_USAGE_SERVER};
  pkc_issued got;
  CHECK(!pkc_issue(c, &p, &got, &err));
  /* pkid ends the handshake: gRPC reports the connection unavailable. */
  CHECK(err.status == PKC_STATUS_UNAVAILABLE || err.status == PKC_STATUS_UNAUTHENTICATED);
  pkc_client_free(c);
}

TEST(client_options_checked) {
  pkc_options o;
  char target[64];
  options_for(&o, PKI_AGENT, target, sizeof(target));
  o.key_pem_file = NULL;
  pkc_error err;
  CHECK(pkc_client_new(&o, &err) == NULL);
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT && err.local);
  options_for(&o, PKI_AGENT, target, sizeof(target));
  o.root_pem_file = "/nonexistent/root.pem";
  CHECK(pkc_client_new(&o, &err) == NULL);
  CHECK(err.status == PKC_STATUS_NOT_FOUND && err.local);
  pkc_key_type t;
  CHECK(pkc_key_type_parse(&t, "ed25519", &err) && t == PKC_KEY_ED25519);
  CHECK(!pkc_key_type_parse(&t, "dsa", &err) && err.status == PKC_STATUS_INVALID_ARGUMENT);
}

/* One client, several threads. */
#define THREADS 4
#define PER_THREAD 5

static void *issue_some(void *arg) {
  int *failures = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    pkc_issue_params p = {.usage = PKC_USAGE_CLIENT};
    pkc_issued got;
    pkc_error err;
    if (!pkc_issue(g_admin, &p, &got, &err)) {
      print_err("threaded issue", &err);
      (*failures)++;
    }
    pkc_issued_cleanup(&got);
  }
  return NULL;
}

TEST(one_client_many_threads) {
  pthread_t t[THREADS];
  int failures[THREADS] = {0};
  for (int i = 0; i < THREADS; i++) {
    REQUIRE(pthread_create(&t[i], NULL, issue_some, &failures[i]) == 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    CHECK(failures[i] == 0);
  }
}

/* Revoke and GetStatus. */

static int issue_one(pkc_client *c, pkc_usage usage, pkc_issued *got) {
  pkc_issue_params p = {.usage = usage};
  pkc_error err;
  int ok = pkc_issue(c, &p, got, &err);
  if (!ok) print_err("issue", &err);
  return ok;
}

TEST(status_of_issued_is_good) {
  pkc_issued got;
  REQUIRE(issue_one(g_admin, PKC_USAGE_CLIENT, &got));
  pkc_cert_status st;
  pkc_error err;
  int ok = pkc_status(g_admin, got.serial, &st, &err);
  if (!ok) print_err("status", &err);
  CHECK(ok);
  if (ok) {
    CHECK(st.state == PKC_CERT_GOOD);
    CHECK(strcasecmp(st.serial, got.serial) == 0);
    CHECK(strcmp(st.service, "pki-agent") == 0);
    CHECK(st.usage == PKC_USAGE_CLIENT);
    CHECK(st.not_after == got.not_after);
    CHECK(strcmp(st.issuer, "agents-ca") == 0);
    /* pkid's status index is compact and may leave the requester out. */
    CHECK(st.identity[0] == '\0' || strcmp(st.identity, PKI_AGENT_URI) == 0);
    CHECK(st.not_before > 0 && st.not_before < st.not_after);
    CHECK(st.revoked_at == 0);
  }
  pkc_issued_cleanup(&got);
}

TEST(revoke_own_cert_then_status_revoked) {
  pkc_issued got;
  REQUIRE(issue_one(g_admin, PKC_USAGE_SERVER, &got));
  pkc_error err;
  int64_t revoked_at = 0;
  int64_t before = (int64_t)time(NULL);
  int ok = pkc_revoke(g_admin, got.serial, PKC_REVOKE_KEY_COMPROMISE, &revoked_at, &err);
  if (!ok) print_err("revoke", &err);
  CHECK(ok);
  CHECK(revoked_at >= before - 1 && revoked_at <= (int64_t)time(NULL) + 1);
  pkc_cert_status st;
  ok = pkc_status(g_admin, got.serial, &st, &err);
  if (!ok) print_err("status", &err);
  CHECK(ok);
  if (ok) {
    CHECK(st.state == PKC_CERT_REVOKED);
    CHECK(st.revoked_at == revoked_at);
    CHECK(st.revocation_reason == PKC_REVOKE_KEY_COMPROMISE);
  }
  pkc_issued_cleanup(&got);
}

TEST(revoke_unknown_serial_not_found) {
  pkc_error err;
  CHECK(!pkc_revoke(g_admin, "7f0123456789abcdef0123456789abcdef", PKC_REVOKE_UNSPECIFIED,
                    NULL, &err));
  CHECK(err.status == PKC_STATUS_NOT_FOUND && !err.local);
  if (err.status != PKC_STATUS_NOT_FOUND) print_err("revoke", &err);
  pkc_cert_status st;
  CHECK(!pkc_status(g_admin, "7f0123456789abcdef0123456789abcdef", &st, &err));
  CHECK(err.status == PKC_STATUS_NOT_FOUND);
  CHECK(!pkc_revoke(g_admin, "", PKC_REVOKE_UNSPECIFIED, NULL, &err));
  CHECK(err.status == PKC_STATUS_INVALID_ARGUMENT && err.local);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PKID PKICTL\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  g_pkid = argv[1];
  g_pkictl = argv[2];
  const char *tmp = getenv("TEST_TMPDIR");
  if (tmp != NULL && tmp[0] != '\0') {
    snprintf(g_tmp, sizeof(g_tmp), "%s", tmp);
  } else {
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/grpc_c_test.XXXXXX");
    if (mkdtemp(g_tmp) == NULL) return 2;
  }
  snprintf(g_pki, sizeof(g_pki), "%s/pki", g_tmp);
  snprintf(g_log, sizeof(g_log), "%s/pkid.log", g_tmp);

  RUN(pkid_starts);
  if (g_port != 0) {
    g_admin = client_as(PKI_AGENT);
    RUN(trust_bundle);
    RUN(issue_ecdsa_p256);
    RUN(issue_ed25519);
    RUN(issue_with_existing_key);
    RUN(admin_issues_for_other_service);
    RUN(non_admin_denied_for_other_service);
    RUN(names_outside_grant_denied);
    RUN(bad_csr_invalid_argument);
    RUN(issue_stream_50_one_bad);
    RUN(renew_with_own_certificate);
    RUN(write_files);
    RUN(deadline_exceeded);
    RUN(retry_with_backoff_on_unavailable);
    RUN(no_client_certificate_refused);
    RUN(client_options_checked);
    RUN(one_client_many_threads);
    RUN(status_of_issued_is_good);
    RUN(revoke_own_cert_then_status_revoked);
    RUN(revoke_unknown_serial_not_found);
    /* Last: a stream that sends nothing and half-closes at once. */
    RUN(issue_stream_empty);
    pkc_client_free(g_admin);
    pkc_trust_bundle_cleanup(&g_bundle);
  }
  stop_pkid();
  return test_finish();
}
