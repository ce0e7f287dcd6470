/* lb.c: the load balancer's hot rotation (see lb.h). */
#include "client/lb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "client/cli.h"
#include "client/haproxy.h"
#include "lib/http_get.h"
#include "lib/sock.h"
#include "lib/cert_info.h"
#include "lib/file.h"
#include "lib/log.h"
#include "lib/names.h"

extern char **environ;

#define MAX_PEM_FILE ((size_t)1 << 20)
#define MAX_BACKUPS_SCAN 4096

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void fmt_ms(char *out, size_t size, uint64_t ms) {
  snprintf(out, size, "%llu", (unsigned long long)ms);
}

/* crypto_fail: a BoringSSL call refused what it was given (lib/err.h
 * tells that from running out of memory). */
static int crypto_fail(pki_err *err, const char *what) {
  PKI_ERR_CRYPTO(err, PKI_ERR_INVALID, "%s", what);
  return 0;
}

/* ---- files ---- */

void lb_cert_cleanup(lb_cert *c) {
  X509_free(c->cert);
  sk_X509_pop_free(c->chain, X509_free);
  EVP_PKEY_free(c->key);
  free(c->cert_pem);
  free(c->chain_pem);
  if (c->key_pem != NULL) {
    OPENSSL_cleanse(c->key_pem, strlen(c->key_pem));
    free(c->key_pem);
  }
  memset(c, 0, sizeof(*c));
}

int lb_paths_make(lb_paths *out, const char *dir, const char *name, pki_err *err) {
  int a = snprintf(out->crt, sizeof(out->crt), "%s/%s.crt", dir, name);
  int b = snprintf(out->key, sizeof(out->key), "%s/%s.key", dir, name);
  int c = snprintf(out->chain, sizeof(out->chain), "%s/%s-chain.crt", dir, name);
  if (a < 0 || b < 0 || c < 0 || (size_t)a >= sizeof(out->crt) ||
      (size_t)b >= sizeof(out->key) || (size_t)c >= sizeof(out->chain)) {
    PKI_ERR(err, PKI_ERR_INVALID, "path too long under %s", dir);
    return 0;
  }
  return 1;
}

static int read_text(char **out, const char *path, pki_err *err) {
  uint8_t *data = NULL;
  size_t len = 0;
  if (!pki_file_read(&data, &len, path, MAX_PEM_FILE, err)) return 0;
  *out = (char *)data;
  return 1;
}

/* normalize_pem drops CRs and empty lines: haproxy's CLI ends a payload at
 * the first empty line (management guide 9.3), so none may be sent. */
static void normalize_pem(char *s) {
  size_t w = 0;
  int at_line_start = 1;
  for (size_t r = 0; s[r] != '\0'; r++) {
    if (s[r] == '\r') continue;
    if (s[r] == '\n' && at_line_start) continue;
    s[w++] = s[r];
    at_line_start = s[r] == '\n';
  }
  if (w > 0 && s[w - 1] != '\n') s[w++] = '\n';
  s[w] = '\0';
}

int lb_cert_load(lb_cert *out, const lb_paths *paths, pki_err *err) {
  memset(out, 0, sizeof(*out));
  if (!read_text(&out->cert_pem, paths->crt, err) ||
      !read_text(&out->chain_pem, paths->chain, err) ||
      !read_text(&out->key_pem, paths->key, err)) {
    lb_cert_cleanup(out);
    return 0;
  }
  normalize_pem(out->cert_pem);
  normalize_pem(out->chain_pem);
  normalize_pem(out->key_pem);
  BIO *bio = BIO_new_mem_buf(out->cert_pem, -1);
  out->cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  if (out->cert == NULL) {
    lb_cert_cleanup(out);
    return crypto_fail(err, paths->crt);
  }
  out->chain = sk_X509_new_null();
  bio = BIO_new_mem_buf(out->chain_pem, -1);
  X509 *x;
  while (bio != NULL && out->chain != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
    if (!sk_X509_push(out->chain, x)) X509_free(x);
  }
  ERR_clear_error();
  BIO_free(bio);
  bio = BIO_new_mem_buf(out->key_pem, -1);
  out->key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  if (out->key == NULL || out->chain == NULL || sk_X509_num(out->chain) == 0) {
    lb_cert_cleanup(out);
    return crypto_fail(err, out->key == NULL ? paths->key : paths->chain);
  }
  uint8_t *der = NULL;
  int der_len = i2d_X509(out->cert, &der);
  if (der_len <= 0) {
    lb_cert_cleanup(out);
    return crypto_fail(err, paths->crt);
  }
  SHA256(der, (size_t)der_len, out->sha256);
  OPENSSL_free(der);
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(out->cert), NULL);
  char *h = bn != NULL ? BN_bn2hex(bn) : NULL;
  if (h != NULL) {
    snprintf(out->serial, sizeof(out->serial), "%s", h);
    for (char *p = out->serial; *p != '\0'; p++) {
      if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
    }
  }
  OPENSSL_free(h);
  BN_free(bn);
  const ASN1_TIME *na = X509_get0_notAfter(out->cert);
  int days = 0, secs = 0;
  int64_t t = (int64_t)time(NULL);
  /* This BoringSSL has no ASN1_TIME_to_posix: the distance from now. */
  if (na == NULL || !ASN1_TIME_diff(&days, &secs, NULL, na)) {
    lb_cert_cleanup(out);
    return crypto_fail(err, "notAfter");
  }
  out->not_after = t + (int64_t)days * 86400 + secs;
  return 1;
}

/* payload is what `set ssl cert` takes for a PEM file haproxy loads:
 * certificate, chain, key (haproxy's `crt` accepts them in one file). */
static char *payload_of(const lb_cert *c) {
  size_t n = strlen(c->cert_pem) + strlen(c->chain_pem) + strlen(c->key_pem) + 1;
  char *p = malloc(n);
  if (p == NULL) return NULL;
  snprintf(p, n, "%s%s%s", c->cert_pem, c->chain_pem, c->key_pem);
  return p;
}

static void free_secret(char *p) {
  if (p == NULL) return;
  OPENSSL_cleanse(p, strlen(p));
  free(p);
}

/* lb_ocsp_fetch asks --ocsp-url, else the certificate's own responder. */
int lb_ocsp_fetch(lb_ocsp *out, const lb_config *cfg, const lb_cert *c, pki_err *err) {
  memset(out, 0, sizeof(*out));
  X509 *issuer = sk_X509_value(c->chain, 0);
  char aia[512] = "";
  const char *base = cfg->ocsp_url;
  if (base == NULL) {
    /* The certificate's own responder (authorityInfoAccess id-ad-ocsp). */
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(c->cert);
    if (urls != NULL && sk_OPENSSL_STRING_num(urls) > 0) {
      snprintf(aia, sizeof(aia), "%s", sk_OPENSSL_STRING_value(urls, 0));
    }
    X509_email_free(urls);
    base = aia;
  }
  if (base[0] == '\0') {
    PKI_ERR(err, PKI_ERR_INVALID, "the certificate names no OCSP responder; give --ocsp-url");
    return 0;
  }
  return lb_ocsp_get(out, base, c->cert, issuer, cfg->timeout_ms, err);
}

/* ---- validation ---- */

static int ca_cert(X509 **out, const lb_config *cfg, const char *name, pki_err *err) {
  const pki_catalog_ca *ca = pki_catalog_find_ca(cfg->cat, name);
  char path[PKI_PATH_MAX];
  if (ca == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no CA '%s' in the catalogue", name);
    return 0;
  }
  if (!pki_tree_ca_path(path, sizeof(path), cfg->pki, ca, PKI_TREE_CA_CERT, err)) return 0;
  char *text = NULL;
  if (!read_text(&text, path, err)) return 0;
  BIO *bio = BIO_new_mem_buf(text, -1);
  *out = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  free(text);
  if (*out == NULL) return crypto_fail(err, path);
  return 1;
}

/* has_name reports whether |gens| holds the catalogue's |name|. */
static int has_name(const GENERAL_NAMES *gens, pki_name_type type, const char *value) {
  uint8_t ip[16];
  size_t ip_len = 0;
  if (type == PKI_NAME_IP && !pki_ip_parse(ip, &ip_len, value)) return 0;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    const ASN1_STRING *s = NULL;
    if (type == PKI_NAME_DNS && g->type == GEN_DNS) s = g->d.dNSName;
    if (type == PKI_NAME_URI && g->type == GEN_URI) s = g->d.uniformResourceIdentifier;
    if (type == PKI_NAME_EMAIL && g->type == GEN_EMAIL) s = g->d.rfc822Name;
    if (type == PKI_NAME_IP && g->type == GEN_IPADD) {
      if ((size_t)ASN1_STRING_length(g->d.iPAddress) == ip_len &&
          memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip, ip_len) == 0) {
        return 1;
      }
      continue;
    }
    if (s == NULL) continue;
    size_t len = (size_t)ASN1_STRING_length(s);
    /* DNS names compare without case (RFC 4343); others exactly. */
    if (len == strlen(value) &&
        (type == PKI_NAME_DNS ? strncasecmp((const char *)ASN1_STRING_get0_data(s), value, len)
                              : memcmp(ASN1_STRING_get0_data(s), value, len)) == 0) {
      return 1;
    }
  }
  return 0;
}

/* verify_cb lets one error through: this BoringSSL's verifier has no IP
 * name constraints (X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE, raised when a
 * CA constrains iPAddress, as load-balancer-ca does); ip_constraints checks
 * those itself. */
static int verify_cb(int ok, X509_STORE_CTX *ctx) {
  if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE) return 1;
  return ok;
}

static int der_info(pki_cert_info *info, uint8_t **der, X509 *x, pki_err *err) {
  *der = NULL;
  int len = i2d_X509(x, der);
  if (len <= 0) return crypto_fail(err, "certificate");
  return pki_cert_info_parse(info, *der, (size_t)len, err);
}

/* ip_constraints checks the leaf's iPAddress names against every CA's
 * name constraints in the chain (RFC 5280 4.2.1.10), by lib/names. */
static int ip_constraints(const lb_cert *c, pki_err *err) {
  pki_cert_info leaf;
  uint8_t *leaf_der = NULL;
  memset(&leaf, 0, sizeof(leaf));
  int ok = der_info(&leaf, &leaf_der, c->cert, err);
  for (size_t i = 0; ok && i < sk_X509_num(c->chain); i++) {
    pki_cert_info ca;
    uint8_t *ca_der = NULL;
    memset(&ca, 0, sizeof(ca));
    ok = der_info(&ca, &ca_der, sk_X509_value(c->chain, i), err);
    for (size_t j = 0; ok && j < leaf.num_sans; j++) {
      if (leaf.sans[j].type != PKI_NAME_IP) continue;
      if (pki_name_constraints_check(&leaf.sans[j], ca.permitted, ca.num_permitted, ca.excluded,
                                     ca.num_excluded, NULL) != PKI_NAME_ALLOWED) {
        PKI_ERR(err, PKI_ERR_DENIED, "IP %s is outside the name constraints of the chain",
                leaf.sans[j].value);
        ok = 0;
      }
    }
    pki_cert_info_cleanup(&ca);
    OPENSSL_free(ca_der);
  }
  pki_cert_info_cleanup(&leaf);
  OPENSSL_free(leaf_der);
  return ok;
}

int lb_validate(const lb_config *cfg, const lb_cert *next, int64_t now, lb_ocsp *out_ocsp,
                const char **out_check, pki_err *err) {
  memset(out_ocsp, 0, sizeof(*out_ocsp));
  X509 *root = NULL, *ca = NULL;
  X509_STORE *store = NULL;
  X509_STORE_CTX *ctx = NULL;
  GENERAL_NAMES *gens = NULL;
  int ok = 0;
  *out_check = "chain";
  const pki_catalog_ca *root_ca = pki_catalog_root(cfg->cat);
  if (!ca_cert(&root, cfg, root_ca->name, err)) goto out;
  /* The chain to the root, with the serverAuth purpose (the extended key
   * usage, RFC 5280 4.2.1.12), name constraints and validity: BoringSSL's
   * verifier, as a TLS client would judge it. */
  store = X509_STORE_new();
  ctx = X509_STORE_CTX_new();
  if (store == NULL || ctx == NULL || !X509_STORE_add_cert(store, root) ||
      !X509_STORE_CTX_init(ctx, store, next->cert, next->chain) ||
      !X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER)) {
    crypto_fail(err, "verifier");
    goto out;
  }
  X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
  if (X509_verify_cert(ctx) != 1) {
    PKI_ERR(err, PKI_ERR_DENIED, "the next certificate does not chain to the root as a server: %s",
            X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    ERR_clear_error();
    goto out;
  }
  if (!ip_constraints(next, err)) {
    pki_err_prefix(err, "the next certificate does not chain to the root: ");
    goto out;
  }
  *out_check = "key";
  if (!X509_check_private_key(next->cert, next->key)) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_DENIED, "the next certificate's key file does not match it");
    goto out;
  }
  *out_check = "lifetime";
  if (next->not_after - now < LB_MIN_LIFE_S) {
    char na[32];
    cli_format_time(na, sizeof(na), next->not_after);
    PKI_ERR(err, PKI_ERR_DENIED,
            "the next certificate ends at %s, less than 24 hours from now (-checkend 86400)", na);
    goto out;
  }
  /* Issued by the catalogue's CA for the service, by key: the nearest
   * certificate of its chain is that CA's, and the CA's key signed it. */
  *out_check = "issuer";
  if (!ca_cert(&ca, cfg, cfg->svc->ca, err)) goto out;
  EVP_PKEY *ca_key = X509_get_pubkey(ca);
  int by_ca = ca_key != NULL && X509_cmp(sk_X509_value(next->chain, 0), ca) == 0 &&
              X509_verify(next->cert, ca_key) == 1;
  EVP_PKEY_free(ca_key);
  if (!by_ca) {
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_DENIED, "the next certificate is not issued by %s, the catalogue's CA for %s",
            cfg->svc->ca, cfg->svc->name);
    goto out;
  }
  *out_check = "names";
  gens = X509_get_ext_d2i(next->cert, NID_subject_alt_name, NULL, NULL);
  if (gens == NULL) {
    PKI_ERR(err, PKI_ERR_DENIED, "the next certificate has no subjectAltName");
    goto out;
  }
  if (!has_name(gens, PKI_NAME_URI, cfg->svc->identity)) {
    PKI_ERR(err, PKI_ERR_DENIED, "the next certificate lacks the identity %s", cfg->svc->identity);
    goto out;
  }
  for (size_t i = 0; i < cfg->svc->num_names; i++) {
    const pki_name *nm = &cfg->svc->names[i];
    if (!has_name(gens, nm->type, nm->value)) {
      PKI_ERR(err, PKI_ERR_DENIED, "the next certificate lacks the catalogue's %s name %s",
              pki_name_type_label(nm->type), nm->value);
      goto out;
    }
  }
  *out_check = "ocsp";
  if (!lb_ocsp_fetch(out_ocsp, cfg, next, err)) goto out;
  if (out_ocsp->status != 0) {
    PKI_ERR(err, PKI_ERR_DENIED, "pkid's OCSP responder says the next certificate is %s",
            out_ocsp->status == 1 ? "revoked" : "unknown");
    lb_ocsp_cleanup(out_ocsp);
    goto out;
  }
  ok = 1;
out:
  GENERAL_NAMES_free(gens);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(root);
  X509_free(ca);
  return ok;
}

/* ---- the probe ---- */

static int split_hostport(char *host, size_t hsize, char *port, size_t psize, const char *hp) {
  const char *colon = strrchr(hp, ':');
  if (colon == NULL || colon == hp || (size_t)(colon - hp) >= hsize || strlen(colon + 1) >= psize ||
      colon[1] == '\0') {
    return 0;
  }
  memcpy(host, hp, (size_t)(colon - hp));
  host[colon - hp] = '\0';
  snprintf(port, psize, "%s", colon + 1);
  return 1;
}

int lb_probe(const lb_config *cfg, uint8_t out_sha256[32], char *out_serial, size_t serial_size,
             pki_err *err) {
  char host[256], port[16];
  if (!split_hostport(host, sizeof(host), port, sizeof(port), cfg->probe)) {
    PKI_ERR(err, PKI_ERR_INVALID, "--probe wants HOST:PORT, not '%s'", cfg->probe);
    return 0;
  }
  uint64_t deadline = sock_deadline(cfg->timeout_ms);
  int fd = sock_connect_tcp(host, port, deadline, "the probed frontend", err);
  if (fd < 0) return 0;
  /* A blocking handshake bounded by socket timeouts. */
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  struct timeval tv = {(time_t)(cfg->timeout_ms / 1000), (long)(cfg->timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  SSL_CTX *sctx = SSL_CTX_new(TLS_method());
  SSL *ssl = sctx != NULL ? SSL_new(sctx) : NULL;
  int ok = 0;
  if (ssl == NULL) {
    crypto_fail(err, "probe");
    goto out;
  }
  /* No trust decision here: the probe compares what is served with the
   * exact certificate just installed (its SHA-256), which says more. */
  SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
  if (cfg->probe_name != NULL) SSL_set_tlsext_host_name(ssl, cfg->probe_name);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1) {
    crypto_fail(err, "probe handshake");
    goto out;
  }
  X509 *peer = SSL_get_peer_certificate(ssl);
  if (peer == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "the probed frontend showed no certificate");
    goto out;
  }
  uint8_t *der = NULL;
  int der_len = i2d_X509(peer, &der);
  if (der_len > 0) {
    SHA256(der, (size_t)der_len, out_sha256);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(peer), NULL);
    char *h = bn != NULL ? BN_bn2hex(bn) : NULL;
    snprintf(out_serial, serial_size, "%s", h != NULL ? h : "-");
    for (char *p = out_serial; *p != '\0'; p++) {
      if (*p >= 'A' && *p <= 'F') *p = (char)(*p - 'A' + 'a');
    }
    OPENSSL_free(h);
    BN_free(bn);
    ok = 1;
  } else {
    crypto_fail(err, "probe certificate");
  }
  OPENSSL_free(der);
  X509_free(peer);
  SSL_shutdown(ssl);
out:
  SSL_free(ssl);
  SSL_CTX_free(sctx);
  close(fd);
  return ok;
}

/* probe_until probes until the frontend shows |want| or |wait_ms| pass
 * (a reload takes a moment to reach new connections); it returns 1 when it
 * saw it, and the serial it last saw. */
static int probe_until(const lb_config *cfg, const uint8_t want[32], uint64_t wait_ms, char *seen,
                       size_t seen_size, unsigned *out_tries) {
  uint64_t end = mono_ms() + wait_ms;
  unsigned tries = 0;
  snprintf(seen, seen_size, "-");
  for (;;) {
    uint8_t got[32];
    pki_err perr;
    pki_err_clear(&perr);
    tries++;
    if (lb_probe(cfg, got, seen, seen_size, &perr) && memcmp(got, want, 32) == 0) {
      *out_tries = tries;
      return 1;
    }
    if (mono_ms() >= end || tries >= 200) break;
    sleep_ms(50);
  }
  *out_tries = tries;
  return 0;
}

/* ---- haproxy ---- */

static void abort_cert(const lb_config *cfg) {
  char cmd[1200], *reply = NULL;
  size_t len;
  pki_err ignored;
  pki_err_clear(&ignored);
  snprintf(cmd, sizeof(cmd), "abort ssl cert %s", cfg->haproxy_cert);
  haproxy_run(&reply, &len, cfg->haproxy_socket, cmd, NULL, cfg->timeout_ms, &ignored);
  free(reply);
}

static void quote(char *out, size_t size, const char *reply) {
  size_t n = 0;
  for (const char *s = reply; *s != '\0' && n + 2 < size; s++) {
    out[n++] = (*s == '\n' || *s == '\r') ? ' ' : *s;
  }
  out[n] = '\0';
}

/* api_swap puts |c| (and its OCSP response, when given) in haproxy's
 * memory for the crt file NAME: one transaction, `set ssl cert NAME <<`
 * then `set ssl cert NAME.ocsp <<` (the response in base64, management
 * guide 9.3 "set ssl cert"), then `commit ssl cert NAME`; haproxy swaps
 * the SSL contexts of every bind using NAME for new handshakes and keeps
 * the connections it has. Any error aborts the transaction: haproxy
 * allows one at a time, and a stale one blocks the next rotation. */
static int api_swap(const lb_config *cfg, const lb_cert *c, const lb_ocsp *ocsp, pki_err *err) {
  char cmd[1200], *reply = NULL, said[400];
  size_t len;
  if (strlen(cfg->haproxy_cert) > 1000 || strpbrk(cfg->haproxy_cert, " \t;\\\n") != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "--haproxy-cert NAME is too long or holds a space, ';' or '\\'");
    return 0;
  }
  char *payload = payload_of(c);
  if (payload == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  snprintf(cmd, sizeof(cmd), "set ssl cert %s", cfg->haproxy_cert);
  int ok = haproxy_run(&reply, &len, cfg->haproxy_socket, cmd, payload, cfg->timeout_ms, err);
  free_secret(payload);
  if (!ok) {
    pki_err_prefix(err, "set ssl cert: ");
    abort_cert(cfg);
    return 0;
  }
  if (!haproxy_reply_is_transaction(reply)) {
    quote(said, sizeof(said), reply);
    free(reply);
    abort_cert(cfg);
    PKI_ERR(err, PKI_ERR_DENIED, "haproxy refused set ssl cert %s: %s", cfg->haproxy_cert, said);
    return 0;
  }
  free(reply);
  reply = NULL;
  if (ocsp != NULL && ocsp->der != NULL) {
    size_t b64_len = 0;
    if (!EVP_EncodedLength(&b64_len, ocsp->der_len)) {
      abort_cert(cfg);
      PKI_ERR(err, PKI_ERR_INVALID, "OCSP response too large");
      return 0;
    }
    char *b64 = malloc(b64_len + 2);
    if (b64 == NULL) {
      abort_cert(cfg);
      PKI_ERR_OOM(err);
      return 0;
    }
    size_t w = EVP_EncodeBlock((uint8_t *)b64, ocsp->der, ocsp->der_len);
    b64[w] = '\n';
    b64[w + 1] = '\0';
    snprintf(cmd, sizeof(cmd), "set ssl cert %s.ocsp", cfg->haproxy_cert);
    ok = haproxy_run(&reply, &len, cfg->haproxy_socket, cmd, b64, cfg->timeout_ms, err);
    free(b64);
    if (!ok || !haproxy_reply_is_transaction(reply)) {
      if (ok) {
        quote(said, sizeof(said), reply);
        PKI_ERR(err, PKI_ERR_DENIED, "haproxy refused set ssl cert %s.ocsp: %s", cfg->haproxy_cert,
                said);
      }
      free(reply);
      abort_cert(cfg);
      return 0;
    }
    free(reply);
    reply = NULL;
  }
  snprintf(cmd, sizeof(cmd), "commit ssl cert %s", cfg->haproxy_cert);
  if (!haproxy_run(&reply, &len, cfg->haproxy_socket, cmd, NULL, cfg->timeout_ms, err)) {
    pki_err_prefix(err, "commit ssl cert: ");
    abort_cert(cfg);
    return 0;
  }
  if (!haproxy_reply_is_committed(reply)) {
    quote(said, sizeof(said), reply);
    free(reply);
    abort_cert(cfg);
    PKI_ERR(err, PKI_ERR_DENIED, "haproxy did not commit ssl cert %s: %s", cfg->haproxy_cert, said);
    return 0;
  }
  free(reply);
  return 1;
}

/* run_command runs `/bin/sh -c CMD` and waits for it, at most 30 s. */
static int run_command(const char *command, pki_err *err) {
  char *argv[] = {"sh", "-c", (char *)command, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "reload command: %s", strerror(rc));
    return 0;
  }
  int status = 0;
  pid_t done = 0;
  for (unsigned i = 0; i < 1500 && (done = waitpid(pid, &status, WNOHANG)) == 0; i++) sleep_ms(20);
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "reload command timed out after 30 s; killed");
    return 0;
  }
  if (done < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "reload command failed (status %d)", status);
    return 0;
  }
  return 1;
}

/* reload asks haproxy to load its files again: SIGUSR2 to the master
 * process of `haproxy -W` starts new workers on the same listeners and
 * lets the old ones finish their connections (management guide 4.
 * "Stopping and restarting HAProxy", master-worker mode). */
static int reload(const lb_config *cfg, pki_err *err) {
  if (cfg->reload_pid > 0) {
    if (kill((pid_t)cfg->reload_pid, SIGUSR2) != 0) {
      PKI_ERR(err, PKI_ERR_UNAVAILABLE, "SIGUSR2 to %ld: %s", cfg->reload_pid, strerror(errno));
      return 0;
    }
    return 1;
  }
  if (cfg->reload_command != NULL) return run_command(cfg->reload_command, err);
  PKI_ERR(err, PKI_ERR_INVALID, "no swap path: give --haproxy-socket, --reload-pid or --reload-command");
  return 0;
}

/* ---- the files of active/, rotation/, backup/ ---- */

static int dir_of(char *out, size_t size, const lb_config *cfg, const char *sub) {
  int n = snprintf(out, size, "%s/service-certificates/%s/%s", cfg->pki, cfg->svc->dir, sub);
  return n > 0 && (size_t)n < size;
}

static int path_in(char *out, size_t size, const lb_config *cfg, const char *sub, const char *name) {
  int n = snprintf(out, size, "%s/service-certificates/%s/%s/%s", cfg->pki, cfg->svc->dir, sub, name);
  return n > 0 && (size_t)n < size;
}

static int write_text(const char *path, const char *text, mode_t mode, pki_err *err) {
  return pki_file_write_atomic(path, text, strlen(text), mode, err);
}

/* install_active replaces active/ with |c|: first the bundle haproxy loads
 * (certificate, chain and key in one file, so one rename commits all
 * three: lb_ensure_bundle repairs the others from it after a crash), then
 * its .ocsp, the key, the chain and the certificate last (a reader keyed on
 * the certificate's change sees the rest already). Each file atomically. */
static int install_active(const lb_config *cfg, const lb_cert *c, const lb_ocsp *ocsp, pki_err *err) {
  char crt[PKI_PATH_MAX], key[PKI_PATH_MAX], chain[PKI_PATH_MAX], pem[PKI_PATH_MAX],
      ocsp_path[PKI_PATH_MAX], dir[PKI_PATH_MAX];
  if (!dir_of(dir, sizeof(dir), cfg, "active") ||
      !path_in(crt, sizeof(crt), cfg, "active", "lb-current.crt") ||
      !path_in(key, sizeof(key), cfg, "active", "lb-current.key") ||
      !path_in(chain, sizeof(chain), cfg, "active", "lb-current-chain.crt") ||
      !path_in(pem, sizeof(pem), cfg, "active", "lb-current.pem") ||
      !path_in(ocsp_path, sizeof(ocsp_path), cfg, "active", "lb-current.pem.ocsp")) {
    PKI_ERR(err, PKI_ERR_INVALID, "path too long");
    return 0;
  }
  if (!pki_mkdirs(dir, 0755, err)) return 0;
  char *bundle = payload_of(c);
  if (bundle == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  int ok = write_text(pem, bundle, 0600, err);
  free_secret(bundle);
  if (ok && ocsp != NULL && ocsp->der != NULL) {
    ok = pki_file_write_atomic(ocsp_path, ocsp->der, ocsp->der_len, 0644, err);
  } else if (ok) {
    unlink(ocsp_path); /* a response about another certificate is worse than none */
  }
  return ok && write_text(key, c->key_pem, 0600, err) &&
         write_text(chain, c->chain_pem, 0644, err) && write_text(crt, c->cert_pem, 0644, err);
}

static int strcmp_ptr(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* backup copies |c| to backup/lb-backup-<UTC>.crt, -chain.crt and .key
 * (0600), then removes the oldest beyond the retention. The time has
 * milliseconds so that quick rotations do not collide. */
static int backup(const lb_config *cfg, const lb_cert *c, char *out_name, size_t name_size,
                  pki_err *err) {
  char dir[PKI_PATH_MAX];
  if (!dir_of(dir, sizeof(dir), cfg, "backup") || !pki_mkdirs(dir, 0755, err)) {
    return 0;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char stamp[40], name[64];
  strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
  snprintf(name, sizeof(name), "lb-backup-%s.%03ldZ", stamp, ts.tv_nsec / 1000000);
  lb_paths p;
  if (!lb_paths_make(&p, dir, name, err)) return 0;
  if (!write_text(p.key, c->key_pem, 0600, err) || !write_text(p.chain, c->chain_pem, 0644, err) ||
      !write_text(p.crt, c->cert_pem, 0644, err)) {
    return 0;
  }
  snprintf(out_name, name_size, "%s", name);
  /* Retention: the names sort by time. */
  unsigned keep = cfg->backups != 0 ? cfg->backups : LB_DEFAULT_BACKUPS;
  DIR *d = opendir(dir);
  if (d == NULL) return 1;
  char **names = calloc(MAX_BACKUPS_SCAN, sizeof(char *));
  size_t num = 0;
  struct dirent *e;
  while (names != NULL && num < MAX_BACKUPS_SCAN && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "lb-backup-", 10) == 0 && len > 4 &&
        strcmp(e->d_name + len - 4, ".crt") == 0 && (len < 10 || strcmp(e->d_name + len - 10, "-chain.crt") != 0)) {
      names[num] = strndup(e->d_name, len - 4);
      if (names[num] != NULL) num++;
    }
  }
  closedir(d);
  if (names == NULL) return 1;
  qsort(names, num, sizeof(char *), strcmp_ptr);
  for (size_t i = 0; i + keep < num; i++) {
    lb_paths old;
    pki_err ignored;
    pki_err_clear(&ignored);
    if (lb_paths_make(&old, dir, names[i], &ignored)) {
      unlink(old.crt);
      unlink(old.chain);
      unlink(old.key);
      pki_log("info", "lb_backup_removed", "name", names[i], NULL);
    }
  }
  for (size_t i = 0; i < num; i++) free(names[i]);
  free(names);
  return 1;
}

/* ---- the audit trail ---- */

/* report_rotation tells pkid that |next| is in service under |frontend|,
 * replacing |cur|, for its journal (pkc_report_rotation). The rotation
 * stands whatever pkid says: a load balancer must not roll back a good
 * certificate because the CA is down. A report that fails is logged
 * (lb_report_failed, for the operator's alerting); the journal then shows
 * the certificate's issuance but not when it went into service. */
static void report_rotation(const lb_config *cfg, const char *frontend, const lb_cert *next,
                            const lb_cert *cur) {
  pkc_error perr;
  memset(&perr, 0, sizeof(perr));
  pkc_client *client = pkc_client_new(&cfg->pkid, &perr);
  int ok = client != NULL &&
           pkc_report_rotation(client, frontend, next->serial, cur->serial, &perr);
  pkc_client_free(client);
  if (ok) {
    pki_log("info", "lb_rotation_reported", "serial", next->serial, NULL);
  } else {
    pki_log("warn", "lb_report_failed", "serial", next->serial, "status",
            pkc_status_name(perr.status), "error", perr.message, NULL);
  }
}

/* ---- the next certificate, through pkid ---- */

int lb_make_next(const lb_config *cfg, pki_err *err) {
  char dir[PKI_PATH_MAX];
  lb_paths p;
  if (!dir_of(dir, sizeof(dir), cfg, "rotation") || !lb_paths_make(&p, dir, "lb-next", err) ||
      !pki_mkdirs(dir, 0755, err)) {
    return 0;
  }
  pkc_error perr;
  memset(&perr, 0, sizeof(perr));
  pkc_client *client = pkc_client_new(&cfg->pkid, &perr);
  if (client == NULL) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "pkid: %s: %s", pkc_status_name(perr.status), perr.message);
    return 0;
  }
  pkc_issue_params ip;
  memset(&ip, 0, sizeof(ip));
  ip.service = cfg->svc->name;
  ip.usage = PKC_USAGE_SERVER;
  ip.key_type = cli_key_type(cfg->svc);
  pkc_issued issued;
  memset(&issued, 0, sizeof(issued));
  /* Key first, certificate last (pkc_issued_write): a reader that sees the
   * new certificate finds its key. */
  int ok = pkc_issue(client, &ip, &issued, &perr) &&
           pkc_issued_write(&issued, p.key, p.crt, p.chain, &perr);
  pkc_client_free(client);
  if (!ok) {
    PKI_ERR(err, perr.status == PKC_STATUS_UNAVAILABLE ? PKI_ERR_UNAVAILABLE : PKI_ERR_DENIED,
            "pkid: %s: %s", pkc_status_name(perr.status), perr.message);
  } else {
    char na[32];
    cli_format_time(na, sizeof(na), issued.not_after);
    pki_log("info", "lb_next_made", "serial", issued.serial, "not_after", na, NULL);
  }
  pkc_issued_cleanup(&issued);
  return ok;
}

/* ---- metrics ---- */

static const char *const kResults[] = {"ok", "refused", "swap_failed", "rolled_back", "error"};
#define NUM_RESULTS (sizeof(kResults) / sizeof(kResults[0]))

typedef struct lb_metrics {
  unsigned long long totals[NUM_RESULTS];
  int success;
  long long last_rotation;
} lb_metrics;

/* metrics_read takes the counters from the page published last: the file
 * (`pkictl lb rotate` runs once per rotation, and Prometheus counters must
 * not go back), else the --metrics-listen page of this `lb watch`. */
static void metrics_read(const lb_config *cfg, lb_metrics *m) {
  memset(m, 0, sizeof(*m));
  m->success = 1; /* nothing has failed yet */
  char *data = NULL;
  if (cfg->metrics_file != NULL) {
    uint8_t *bytes = NULL;
    size_t len = 0;
    pki_err ignored;
    pki_err_clear(&ignored);
    if (pki_file_read(&bytes, &len, cfg->metrics_file, 1 << 20, &ignored)) data = (char *)bytes;
  } else if (cfg->metrics_http != NULL) {
    data = metrics_http_page(cfg->metrics_http);
  }
  if (data == NULL) return;
  char *save = NULL;
  for (char *line = strtok_r(data, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    for (size_t i = 0; i < NUM_RESULTS; i++) {
      char prefix[96];
      snprintf(prefix, sizeof(prefix), "lb_cert_rotations_total{result=\"%s\"} ", kResults[i]);
      if (strncmp(line, prefix, strlen(prefix)) == 0) {
        m->totals[i] = strtoull(line + strlen(prefix), NULL, 10);
      }
    }
    if (strncmp(line, "lb_cert_rotation_success ", 25) == 0) m->success = atoi(line + 25) != 0;
    if (strncmp(line, "lb_cert_last_rotation_timestamp_seconds ", 40) == 0) {
      m->last_rotation = strtoll(line + 40, NULL, 10);
    }
  }
  free(data);
}

static int64_t file_not_after(const lb_config *cfg, const char *sub, const char *name) {
  char dir[PKI_PATH_MAX];
  lb_paths p;
  lb_cert c;
  pki_err ignored;
  pki_err_clear(&ignored);
  if (!dir_of(dir, sizeof(dir), cfg, sub) || !lb_paths_make(&p, dir, name, &ignored) ||
      !lb_cert_load(&c, &p, &ignored)) {
    return 0;
  }
  int64_t t = c.not_after;
  lb_cert_cleanup(&c);
  return t;
}

/* metrics_write publishes the page to the file and the --metrics-listen
 * page, whichever are set. */
static void metrics_write(const lb_config *cfg, const lb_metrics *m) {
  if (cfg->metrics_file == NULL && cfg->metrics_http == NULL) return;
  char buf[4096];
  size_t n = 0;
  n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                        "# HELP lb_cert_rotation_success 1 when the last rotation attempt "
                        "succeeded, 0 when it failed.\n# TYPE lb_cert_rotation_success gauge\n"
                        "lb_cert_rotation_success %d\n"
                        "# HELP lb_cert_rotations_total Rotation attempts by outcome.\n"
                        "# TYPE lb_cert_rotations_total counter\n",
                        m->success);
  for (size_t i = 0; i < NUM_RESULTS; i++) {
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "lb_cert_rotations_total{result=\"%s\"} %llu\n",
                          kResults[i], m->totals[i]);
  }
  n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                        "# HELP lb_cert_last_rotation_timestamp_seconds When the last rotation "
                        "succeeded.\n# TYPE lb_cert_last_rotation_timestamp_seconds gauge\n"
                        "lb_cert_last_rotation_timestamp_seconds %lld\n"
                        "# HELP cert_expiry_timestamp notAfter of the certificate, in seconds "
                        "since the epoch.\n# TYPE cert_expiry_timestamp gauge\n",
                        m->last_rotation);
  int64_t cur = file_not_after(cfg, "active", "lb-current");
  int64_t next = file_not_after(cfg, "rotation", "lb-next");
  if (cur != 0 && n < sizeof(buf)) {
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "cert_expiry_timestamp{cert_name=\"lb-current\"} %lld\n",
                          (long long)cur);
  }
  if (next != 0 && n < sizeof(buf)) {
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "cert_expiry_timestamp{cert_name=\"lb-next\"} %lld\n",
                          (long long)next);
  }
  if (n >= sizeof(buf)) {
    pki_log("error", "metrics_failed", "error", "too large", NULL);
    return;
  }
  if (cfg->metrics_http != NULL && !metrics_http_publish(cfg->metrics_http, buf, n)) {
    pki_log("error", "metrics_failed", "error", "out of memory", NULL);
  }
  pki_err err;
  pki_err_clear(&err);
  if (cfg->metrics_file != NULL && !pki_file_write_atomic(cfg->metrics_file, buf, n, 0644, &err)) {
    pki_log("error", "metrics_failed", "file", cfg->metrics_file, "error", err.msg, NULL);
  }
}

void lb_write_metrics(const lb_config *cfg) {
  lb_metrics m;
  metrics_read(cfg, &m);
  metrics_write(cfg, &m);
}

static void metrics_count(const lb_config *cfg, lb_result r) {
  if (r == LB_NOT_DUE) {
    lb_write_metrics(cfg);
    return;
  }
  lb_metrics m;
  metrics_read(cfg, &m);
  size_t i = r == LB_ROTATED ? 0 : r == LB_REFUSED ? 1 : r == LB_SWAP_FAILED ? 2
             : r == LB_ROLLED_BACK ? 3 : 4;
  m.totals[i]++;
  m.success = r == LB_ROTATED;
  if (r == LB_ROTATED) m.last_rotation = (long long)time(NULL);
  metrics_write(cfg, &m);
}

/* ---- stapling ---- */

int lb_staple(const lb_config *cfg, int64_t *out_next_update, pki_err *err) {
  char dir[PKI_PATH_MAX], ocsp_path[PKI_PATH_MAX];
  lb_paths p;
  lb_cert cur;
  if (!dir_of(dir, sizeof(dir), cfg, "active") || !lb_paths_make(&p, dir, "lb-current", err) ||
      !path_in(ocsp_path, sizeof(ocsp_path), cfg, "active", "lb-current.pem.ocsp") ||
      !lb_cert_load(&cur, &p, err)) {
    return 0;
  }
  lb_ocsp o;
  int ok = lb_ocsp_fetch(&o, cfg, &cur, err);
  lb_cert_cleanup(&cur);
  if (!ok) return 0;
  /* The file first, so a restart staples what is current; then haproxy's
   * memory: `set ssl ocsp-response <<` with the base64 DER (management
   * guide 9.3); haproxy finds the certificate by the response's CertID. */
  ok = pki_file_write_atomic(ocsp_path, o.der, o.der_len, 0644, err);
  if (ok && cfg->haproxy_socket != NULL) {
    size_t b64_len = 0;
    char *b64 = EVP_EncodedLength(&b64_len, o.der_len) ? malloc(b64_len + 2) : NULL;
    char *reply = NULL;
    size_t len;
    if (b64 == NULL) {
      PKI_ERR_OOM(err);
      ok = 0;
    } else {
      size_t w = EVP_EncodeBlock((uint8_t *)b64, o.der, o.der_len);
      b64[w] = '\n';
      b64[w + 1] = '\0';
      ok = haproxy_run(&reply, &len, cfg->haproxy_socket, "set ssl ocsp-response", b64,
                       cfg->timeout_ms, err);
      /* haproxy 2.6 says "OCSP Response updated!" (src/ssl_sock.c). */
      if (ok && strstr(reply, "updated") == NULL) {
        char said[300];
        quote(said, sizeof(said), reply);
        PKI_ERR(err, PKI_ERR_DENIED, "haproxy refused set ssl ocsp-response: %s", said);
        ok = 0;
      }
    }
    free(b64);
    free(reply);
  }
  if (ok) {
    char nu[32];
    cli_format_time(nu, sizeof(nu), o.next_update);
    pki_log("info", "lb_ocsp_stapled", "status", o.status == 0 ? "good" : o.status == 1 ? "revoked" : "unknown",
            "next_update", nu, NULL);
    *out_next_update = o.next_update;
  }
  lb_ocsp_cleanup(&o);
  return ok;
}

/* split_bundle cuts a bundle into its first certificate, the other
 * certificates (the chain) and its private key, as PEM text. */
static int split_bundle(const char *pem, char **out_cert, char **out_chain, char **out_key) {
  size_t len = strlen(pem);
  char *cert = calloc(1, len + 1), *chain = calloc(1, len + 1), *key = calloc(1, len + 1);
  int ok = cert != NULL && chain != NULL && key != NULL;
  const char *p = pem;
  while (ok && (p = strstr(p, "-----BEGIN ")) != NULL) {
    const char *end = strstr(p, "-----END ");
    const char *stop = end != NULL ? strchr(end + 9, '\n') : NULL;
    if (stop == NULL) {
      ok = 0;
      break;
    }
    stop++;
    char *to = strncmp(p, "-----BEGIN CERTIFICATE-----", 27) == 0 ? (cert[0] == '\0' ? cert : chain)
               : strstr(p, "PRIVATE KEY-----") != NULL && strstr(p, "PRIVATE KEY-----") < end ? key
                                                                                              : NULL;
    if (to != NULL) strncat(to, p, (size_t)(stop - p));
    p = stop;
  }
  ok = ok && cert[0] != '\0' && chain[0] != '\0' && key[0] != '\0';
  if (!ok) {
    free(cert);
    free(chain);
    free_secret(key);
    return 0;
  }
  *out_cert = cert;
  *out_chain = chain;
  *out_key = key;
  return 1;
}

int lb_ensure_bundle(const lb_config *cfg, pki_err *err) {
  char pem[PKI_PATH_MAX], dir[PKI_PATH_MAX];
  lb_paths p;
  if (!path_in(pem, sizeof(pem), cfg, "active", "lb-current.pem") ||
      !dir_of(dir, sizeof(dir), cfg, "active") || !lb_paths_make(&p, dir, "lb-current", err)) {
    PKI_ERR(err, PKI_ERR_INVALID, "path too long");
    return 0;
  }
  if (pki_file_exists(pem)) {
    /* The bundle is written first in a promotion: when lb-current.crt says
     * otherwise, pkictl stopped between the two, and the bundle (what
     * haproxy loads) is the truth the other files are made again from. */
    char *text = NULL, *cert = NULL, *chain = NULL, *key = NULL, *crt = NULL;
    if (!read_text(&text, pem, err)) return 0;
    normalize_pem(text);
    int split = split_bundle(text, &cert, &chain, &key);
    free_secret(text);
    if (!split) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s is not a certificate, its chain and its key", pem);
      return 0;
    }
    int same = 0;
    pki_err ignored;
    pki_err_clear(&ignored);
    if (read_text(&crt, p.crt, &ignored)) {
      normalize_pem(crt);
      same = strcmp(crt, cert) == 0;
    }
    free(crt);
    int ok = 1;
    if (!same) {
      ok = write_text(p.key, key, 0600, err) && write_text(p.chain, chain, 0644, err) &&
           write_text(p.crt, cert, 0644, err);
      if (ok) pki_log("warn", "lb_active_repaired", "file", p.crt, "from", pem, NULL);
    }
    free(cert);
    free(chain);
    free_secret(key);
    return ok;
  }
  lb_cert cur;
  if (!lb_cert_load(&cur, &p, err)) return 0;
  char *bundle = payload_of(&cur);
  int ok = bundle != NULL && write_text(pem, bundle, 0600, err);
  if (bundle == NULL) PKI_ERR_OOM(err);
  free_secret(bundle);
  if (ok) pki_log("info", "lb_bundle_written", "file", pem, "serial", cur.serial, NULL);
  lb_cert_cleanup(&cur);
  return ok;
}

/* ---- the rotation ---- */

const char *lb_result_name(lb_result r) {
  switch (r) {
    case LB_NOT_DUE: return "not_due";
    case LB_ROTATED: return "ok";
    case LB_REFUSED: return "refused";
    case LB_SWAP_FAILED: return "swap_failed";
    case LB_ROLLED_BACK: return "rolled_back";
    default: return "error";
  }
}

/* swap_to installs |c| in haproxy by the configured path; with a reload
 * the files go first, as haproxy reads them when it starts its workers. */
static int swap_to(const lb_config *cfg, const lb_cert *c, const lb_ocsp *ocsp, pki_err *err) {
  if (cfg->haproxy_socket != NULL) return api_swap(cfg, c, ocsp, err);
  return install_active(cfg, c, ocsp, err) && reload(cfg, err);
}

static lb_result rotate(const lb_config *cfg, int force, pki_err *err) {
  char active[PKI_PATH_MAX], rot[PKI_PATH_MAX];
  lb_paths cur_p, next_p;
  if (!dir_of(active, sizeof(active), cfg, "active") || !dir_of(rot, sizeof(rot), cfg, "rotation") ||
      !lb_paths_make(&cur_p, active, "lb-current", err) ||
      !lb_paths_make(&next_p, rot, "lb-next", err)) {
    return LB_ERROR;
  }
  lb_cert cur, next;
  memset(&next, 0, sizeof(next));
  pki_err cur_err;
  pki_err_clear(&cur_err);
  if (!lb_cert_load(&cur, &cur_p, &cur_err)) {
    PKI_ERR(err, cur_err.code, "the current certificate: %s", cur_err.msg);
    return LB_ERROR;
  }
  int64_t now = (int64_t)time(NULL);
  char na[32];
  cli_format_time(na, sizeof(na), cur.not_after);
  if (!force && cur.not_after - now > (int64_t)cfg->svc->renew_before_s) {
    lb_cert_cleanup(&cur);
    return LB_NOT_DUE;
  }
  pki_log("info", "lb_rotation_start", "current_serial", cur.serial, "current_not_after", na,
          "forced", force ? "true" : "false", NULL);
  lb_result result = LB_ERROR;
  lb_ocsp ocsp, old_ocsp;
  memset(&ocsp, 0, sizeof(ocsp));
  memset(&old_ocsp, 0, sizeof(old_ocsp));
  /* The response stapled now, read before the swap (the reload path
   * replaces the file): a rollback puts it back with the certificate. */
  char old_ocsp_path[PKI_PATH_MAX];
  if (path_in(old_ocsp_path, sizeof(old_ocsp_path), cfg, "active", "lb-current.pem.ocsp")) {
    pki_err ignored;
    pki_err_clear(&ignored);
    if (!pki_file_read(&old_ocsp.der, &old_ocsp.der_len, old_ocsp_path, 65536, &ignored)) {
      old_ocsp.der = NULL;
      old_ocsp.der_len = 0;
    }
  }
  char ms1[24], ms2[24], ms3[24], tries_text[16];
  if (!pki_file_exists(next_p.crt)) {
    pki_log("info", "lb_next_missing", "file", next_p.crt, NULL);
    if (!lb_make_next(cfg, err)) goto out;
  }
  if (!lb_cert_load(&next, &next_p, err)) {
    pki_err_prefix(err, "the next certificate: ");
    result = LB_REFUSED;
    pki_log("error", "lb_validate_failed", "check", "files", "error", err->msg, NULL);
    goto out;
  }
  /* 1. Validation, before haproxy is touched. */
  uint64_t t0 = mono_ms();
  const char *check = "";
  int valid = lb_validate(cfg, &next, now, &ocsp, &check, err);
  uint64_t t_valid = mono_ms() - t0;
  fmt_ms(ms1, sizeof(ms1), t_valid);
  if (!valid) {
    result = LB_REFUSED;
    pki_log("error", "lb_validate_failed", "serial", next.serial, "check", check, "error", err->msg,
            "ms", ms1, NULL);
    goto out;
  }
  cli_format_time(na, sizeof(na), next.not_after);
  pki_log("info", "lb_validated", "serial", next.serial, "not_after", na, "ocsp", "good", "ms", ms1, NULL);
  /* 2. Backup. */
  char bname[64];
  if (!backup(cfg, &cur, bname, sizeof(bname), err)) {
    pki_log("error", "lb_backup_failed", "error", err->msg, NULL);
    goto out;
  }
  pki_log("info", "lb_backup", "name", bname, "serial", cur.serial, NULL);
  /* 3. The swap. */
  const char *path = cfg->haproxy_socket != NULL ? "runtime_api" : "reload";
  t0 = mono_ms();
  int swapped = swap_to(cfg, &next, &ocsp, err);
  uint64_t t_swap = mono_ms() - t0;
  fmt_ms(ms2, sizeof(ms2), t_swap);
  if (!swapped) {
    result = LB_SWAP_FAILED;
    pki_log("error", "lb_swap_failed", "path", path, "serial", next.serial, "error", err->msg, "ms", ms2,
            NULL);
    if (cfg->haproxy_socket == NULL) {
      pki_err ignored;
      pki_err_clear(&ignored);
      install_active(cfg, &cur, &old_ocsp, &ignored); /* the files as they were */
    }
    goto out;
  }
  pki_log("info", "lb_swapped", "path", path, "serial", next.serial, "ms", ms2, NULL);
  /* 4. The probe must see the new certificate. */
  t0 = mono_ms();
  char seen[80];
  unsigned tries = 0;
  uint64_t wait = cfg->haproxy_socket != NULL ? 1000 : cfg->reload_wait_ms;
  int probed = probe_until(cfg, next.sha256, wait, seen, sizeof(seen), &tries);
  uint64_t t_probe = mono_ms() - t0;
  fmt_ms(ms3, sizeof(ms3), t_probe);
  snprintf(tries_text, sizeof(tries_text), "%u", tries);
  if (!probed) {
    pki_log("error", "lb_probe_failed", "want", next.serial, "seen", seen, "tries", tries_text, "ms", ms3,
            NULL);
    /* Rollback, the same way, and the probe must see the old one again. */
    pki_err rb;
    pki_err_clear(&rb);
    int back = swap_to(cfg, &cur, &old_ocsp, &rb);
    if (!back && cfg->haproxy_socket != NULL && old_ocsp.der != NULL) {
      /* Should haproxy refuse the old response (haproxy 2.6 took even a
       * garbled one in lb_rotation_test), the certificate back without its
       * staple beats the new one left in place. */
      pki_log("warn", "lb_rollback_without_staple", "error", rb.msg, NULL);
      pki_err_clear(&rb);
      back = swap_to(cfg, &cur, NULL, &rb);
    }
    unsigned rtries = 0;
    int seen_old = back && probe_until(cfg, cur.sha256, wait, seen, sizeof(seen), &rtries);
    snprintf(tries_text, sizeof(tries_text), "%u", rtries);
    pki_log(seen_old ? "warn" : "error", "lb_rolled_back", "serial", cur.serial, "seen", seen,
            "probe_sees_previous", seen_old ? "true" : "false", "tries", tries_text, "error",
            back ? "-" : rb.msg, NULL);
    PKI_ERR(err, PKI_ERR_UNAVAILABLE,
            "the probe of %s did not see the new certificate %s (saw %s); rolled back to %s%s",
            cfg->probe, next.serial, seen, cur.serial, seen_old ? "" : " but the probe does not see it");
    result = seen_old ? LB_ROLLED_BACK : LB_ERROR;
    goto out;
  }
  pki_log("info", "lb_probed", "serial", seen, "tries", tries_text, "ms", ms3, NULL);
  /* 5. Promotion: active/ (already written on the reload path), then a new
   * next certificate. */
  if (cfg->haproxy_socket != NULL && !install_active(cfg, &next, &ocsp, err)) {
    /* haproxy must not serve what a restart would not: back to the
     * previous certificate, whose files active/ still holds (the bundle
     * is written first, so it is all old or all new: put it back too). */
    pki_err rb;
    pki_err_clear(&rb);
    int back = swap_to(cfg, &cur, &old_ocsp, &rb);
    pki_err_clear(&rb);
    if (back) install_active(cfg, &cur, &old_ocsp, &rb);
    pki_log("error", "lb_promote_failed", "error", err->msg, "rolled_back", back ? "true" : "false",
            NULL);
    goto out;
  }
  unlink(next_p.crt);
  unlink(next_p.chain);
  unlink(next_p.key);
  result = LB_ROTATED;
  pki_log("info", "lb_rotated", "serial", next.serial, "previous", cur.serial, "path", path,
          "validate_ms", ms1, "swap_ms", ms2, "probe_ms", ms3, NULL);
  /* The frontend's crt as haproxy names it (the proto's RotationReport). */
  char pem[PKI_PATH_MAX];
  const char *frontend = cfg->haproxy_cert;
  if (frontend == NULL && path_in(pem, sizeof(pem), cfg, "active", "lb-current.pem")) {
    frontend = pem;
  }
  report_rotation(cfg, frontend != NULL ? frontend : path, &next, &cur);
  pki_err next_err;
  pki_err_clear(&next_err);
  if (!lb_make_next(cfg, &next_err)) {
    /* The rotation stands; the watcher makes it again later. */
    pki_log("warn", "lb_next_failed", "error", next_err.msg, NULL);
  }
out:
  lb_ocsp_cleanup(&ocsp);
  lb_ocsp_cleanup(&old_ocsp);
  lb_cert_cleanup(&cur);
  lb_cert_cleanup(&next);
  return result;
}

lb_result lb_rotate(const lb_config *cfg, int force, pki_err *err) {
  lb_result r = rotate(cfg, force, err);
  metrics_count(cfg, r);
  if (r != LB_NOT_DUE && r != LB_ROTATED) {
    pki_log("error", "lb_rotation_failed", "result", lb_result_name(r), "error", err->msg, NULL);
  }
  return r;
}
