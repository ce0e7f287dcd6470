/* pkiclient_trust.c: who pkid is, and which root a client anchors to (see
 * pkiclient_trust.h).
 *
 * Why more than TLS: gRPC checks that the server's chain reaches the root
 * and that its certificate carries the DNS name asked for. Under one root
 * that is not enough: the load balancer's "*.cybersec-framework.local"
 * matches pkid's name too, so whoever holds the edge's key could pose as
 * pkid, collect bootstrap tokens and hand out a root of its choice. pkid is
 * known instead by what only its certificate has: pkid's identity (the
 * pki-ca service's URI SAN) from pkid's own CA (the catalogue's CA of
 * pki-ca, infrastructure-ca). */
#include "client/pkiclient_trust.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/sha.h>

#include "client/pkiclient_call.h"
#include "lib/catalog.h"
#include "lib/cert_info.h"
#include "lib/der.h"
#include "lib/file.h"
#include "lib/pem.h"

#define CERT_FILE_MAX (1u << 20)

/* --- certificates in PEM text --- */

static const char kBeginCert[] = "-----BEGIN CERTIFICATE-----";
static const char kEndCert[] = "-----END CERTIFICATE-----";

/* next_begin finds the next BEGIN CERTIFICATE line at or after |pos|; the
 * armour only counts at the start of a line, as lib/pem reads it. */
static const uint8_t *next_begin(const uint8_t *text, size_t len, size_t pos) {
  while (pos < len) {
    const uint8_t *at = memmem(text + pos, len - pos, kBeginCert, sizeof(kBeginCert) - 1);
    if (at == NULL) return NULL;
    if (at == text || at[-1] == '\n') return at;
    pos = (size_t)(at - text) + 1;
  }
  return NULL;
}

void pkc_certs_cleanup(pkc_certs *certs) {
  if (certs == NULL) return;
  for (size_t i = 0; i < certs->num; i++) free(certs->certs[i].data);
  free(certs->certs);
  memset(certs, 0, sizeof(*certs));
}

static int certs_push(pkc_certs *out, uint8_t *der, size_t len, pkc_error *err) {
  pkc_der *grown = realloc(out->certs, (out->num + 1) * sizeof(*grown));
  if (grown == NULL) {
    free(der);
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return 0;
  }
  out->certs = grown;
  out->certs[out->num].data = der;
  out->certs[out->num].len = len;
  out->num++;
  return 1;
}

int pkc_certs_from_pem(pkc_certs *out, const uint8_t *pem, size_t pem_len, const char *what,
                       pkc_error *err) {
  memset(out, 0, sizeof(*out));
  static const char *const kLabels[] = {"CERTIFICATE"};
  pki_err e;
  int armoured = pem_len > 0 && memmem(pem, pem_len, "-----BEGIN ", 11) != NULL;
  if (!armoured) {
    /* A DER file: one certificate, checked to be one. */
    uint8_t *der = NULL;
    size_t len = 0;
    pki_cert_info info;
    memset(&info, 0, sizeof(info));
    if (pem_len == 0 || !pki_pem_decode(&der, &len, NULL, kLabels, 1, pem, pem_len,
                                        PKI_PEM_OR_DER, &e) ||
        !pki_cert_info_parse(&info, der, len, &e)) {
      free(der);
      pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "%s holds no certificate", what);
      return 0;
    }
    pki_cert_info_cleanup(&info);
    return certs_push(out, der, len, err);
  }
  size_t pos = 0;
  const uint8_t *at;
  while ((at = next_begin(pem, pem_len, pos)) != NULL) {
    size_t start = (size_t)(at - pem);
    uint8_t *der = NULL;
    size_t len = 0;
    /* The first certificate block from |start| is the one at |start|. */
    if (!pki_pem_decode(&der, &len, NULL, kLabels, 1, pem + start, pem_len - start, 0, &e)) {
      pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "%s: certificate %zu: %s", what,
                  out->num + 1, e.msg);
      pkc_certs_cleanup(out);
      return 0;
    }
    if (!certs_push(out, der, len, err)) {
      pkc_certs_cleanup(out);
      return 0;
    }
    const uint8_t *end = memmem(pem + start, pem_len - start, kEndCert, sizeof(kEndCert) - 1);
    if (end == NULL) break; /* cannot be: the block decoded */
    pos = (size_t)(end - pem) + sizeof(kEndCert) - 1;
  }
  if (out->num == 0) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "%s holds no certificate", what);
    return 0;
  }
  return 1;
}

int pkc_certs_contains(const pkc_certs *certs, const uint8_t *der, size_t der_len) {
  for (size_t i = 0; i < certs->num; i++) {
    if (certs->certs[i].len == der_len && memcmp(certs->certs[i].data, der, der_len) == 0) {
      return 1;
    }
  }
  return 0;
}

void pkc_cert_describe(char *out, size_t out_size, const uint8_t *der, size_t der_len) {
  char cn[128] = "?";
  pki_cert_info info;
  memset(&info, 0, sizeof(info));
  pki_err e;
  if (pki_cert_info_parse(&info, der, der_len, &e) &&
      !pki_der_name_get_cn(&info.subject, cn, sizeof(cn))) {
    snprintf(cn, sizeof(cn), "?");
  }
  pki_cert_info_cleanup(&info);
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(der, der_len, digest);
  char fp[3 * SHA256_DIGEST_LENGTH + 1];
  for (size_t i = 0; i < sizeof(digest); i++) {
    snprintf(fp + 3 * i, 4, "%02x%s", digest[i], i + 1 < sizeof(digest) ? ":" : "");
  }
  snprintf(out, out_size, "CN=%s, SHA-256 %s", cn, fp);
}

/* --- who pkid is --- */

struct pkc_peer_check {
  atomic_int refs;
  char identity[512];   /* pkid's URI SAN */
  char ca_cn[256];      /* its CA's CN, for messages and the name-only check */
  /* With the CA's certificate: its DER and the fields parsed from it. */
  uint8_t *ca_der;
  size_t ca_len;
  pki_cert_info ca;
  int have_ca;

  pthread_mutex_t mu; /* guards the latest outcome */
  int refused;
  char why[400];
};

/* builtin_defaults fills what |opts| leaves out from the catalogue built
 * into the binaries: the pki-ca service's identity and its CA's CN. */
static int builtin_defaults(pkc_peer_check *c, const pkc_options *opts, pkc_error *err) {
  int need_identity = opts->server_identity == NULL;
  int need_cn = opts->server_ca_pem_file == NULL && opts->server_ca_common_name == NULL;
  if (!need_identity && !need_cn) return 1;
  pki_err e;
  pki_err_clear(&e);
  pki_catalog *cat = pki_catalog_default(&e);
  const pki_catalog_service *svc =
      cat != NULL ? pki_catalog_find_service(cat, PKC_PKID_SERVICE) : NULL;
  const pki_catalog_ca *ca = svc != NULL ? pki_catalog_find_ca(cat, svc->ca) : NULL;
  if (ca == NULL) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                "cannot tell who pkid is: the built-in catalogue has no %s service (%s); "
                "set server_identity and server_ca_pem_file",
                PKC_PKID_SERVICE, cat == NULL ? e.msg : "not found");
    pki_catalog_free(cat);
    return 0;
  }
  if (need_identity) snprintf(c->identity, sizeof(c->identity), "%s", svc->identity);
  if (need_cn) snprintf(c->ca_cn, sizeof(c->ca_cn), "%s", ca->common_name);
  pki_catalog_free(cat);
  return 1;
}

static int load_ca(pkc_peer_check *c, const char *path, pkc_error *err) {
  uint8_t *text = NULL;
  size_t len = 0;
  pki_err e;
  if (!pki_file_read(&text, &len, path, CERT_FILE_MAX, &e)) {
    pkc_err_set(err, e.code == PKI_ERR_NOT_FOUND ? PKC_STATUS_NOT_FOUND
                                                 : PKC_STATUS_INVALID_ARGUMENT,
                1, "pkid's CA certificate %s: %s", path, e.msg);
    return 0;
  }
  pkc_certs certs;
  char what[1200];
  snprintf(what, sizeof(what), "pkid's CA certificate file %s", path);
  int ok = pkc_certs_from_pem(&certs, text, len, what, err);
  free(text);
  if (!ok) return 0;
  /* The first certificate: a trust store file starts with its CA. */
  c->ca_der = certs.certs[0].data;
  c->ca_len = certs.certs[0].len;
  certs.certs[0].data = NULL;
  pkc_certs_cleanup(&certs);
  if (!pki_cert_info_parse(&c->ca, c->ca_der, c->ca_len, &e)) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "pkid's CA certificate %s: %s", path,
                e.msg);
    return 0;
  }
  c->have_ca = 1;
  if (!c->ca.is_ca || !c->ca.has_ski) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                "pkid's CA certificate %s is %s", path,
                !c->ca.is_ca ? "not a CA's" : "without a subject key identifier");
    return 0;
  }
  if (!pki_der_name_get_cn(&c->ca.subject, c->ca_cn, sizeof(c->ca_cn))) {
    snprintf(c->ca_cn, sizeof(c->ca_cn), "?");
  }
  return 1;
}

static void peer_check_free(pkc_peer_check *c) {
  if (c == NULL) return;
  pki_cert_info_cleanup(&c->ca);
  free(c->ca_der);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

pkc_peer_check *pkc_peer_check_new(const pkc_options *opts, pkc_error *err) {
  pkc_peer_check *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return NULL;
  }
  atomic_init(&c->refs, 1);
  pthread_mutex_init(&c->mu, NULL);
  if (opts->server_identity != NULL) {
    if (opts->server_identity[0] == '\0' ||
        strlen(opts->server_identity) >= sizeof(c->identity)) {
      pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                  "server_identity must be pkid's URI SAN, not '%.200s'",
                  opts->server_identity);
      peer_check_free(c);
      return NULL;
    }
    snprintf(c->identity, sizeof(c->identity), "%s", opts->server_identity);
  }
  if (opts->server_ca_common_name != NULL) {
    snprintf(c->ca_cn, sizeof(c->ca_cn), "%s", opts->server_ca_common_name);
  }
  if (!builtin_defaults(c, opts, err) ||
      (opts->server_ca_pem_file != NULL && !load_ca(c, opts->server_ca_pem_file, err))) {
    peer_check_free(c);
    return NULL;
  }
  if (c->ca_cn[0] == '\0') {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                "server_ca_common_name must name pkid's CA");
    peer_check_free(c);
    return NULL;
  }
  return c;
}

void pkc_peer_check_ref(pkc_peer_check *check) {
  atomic_fetch_add_explicit(&check->refs, 1, memory_order_relaxed);
}

void pkc_peer_check_unref(pkc_peer_check *check) {
  if (check == NULL) return;
  if (atomic_fetch_sub_explicit(&check->refs, 1, memory_order_acq_rel) == 1) {
    peer_check_free(check);
  }
}

/* hex writes a key identifier for messages ("-" for none). */
static void hex(char *out, size_t out_size, const CBS *id) {
  size_t n = 0;
  out[0] = '\0';
  if (id == NULL || CBS_len(id) == 0) {
    snprintf(out, out_size, "-");
    return;
  }
  for (size_t i = 0; i < CBS_len(id) && n + 3 <= out_size; i++) {
    n += (size_t)snprintf(out + n, out_size - n, "%02x", CBS_data(id)[i]);
  }
}

/* judge decides on one certificate; |why| says what is wrong with it. */
static int judge(const pkc_peer_check *c, const char *peer_pem, char *why, size_t why_size) {
  static const char *const kLabels[] = {"CERTIFICATE"};
  uint8_t *der = NULL;
  size_t len = 0;
  pki_err e;
  pki_err_clear(&e);
  pki_cert_info info;
  memset(&info, 0, sizeof(info));
  int ok = 0;
  if (peer_pem == NULL ||
      !pki_pem_decode(&der, &len, NULL, kLabels, 1, (const uint8_t *)peer_pem,
                      strlen(peer_pem), 0, &e) ||
      !pki_cert_info_parse(&info, der, len, &e)) {
    snprintf(why, why_size, "its certificate cannot be read (%s)",
             peer_pem == NULL ? "none" : e.msg);
    goto out;
  }
  const char *identity = pki_cert_info_identity(&info);
  if (identity == NULL) {
    snprintf(why, why_size, "its certificate carries no identity (URI SAN); pkid's is %s",
             c->identity);
    goto out;
  }
  if (strcmp(identity, c->identity) != 0) {
    snprintf(why, why_size, "its certificate's identity is %.200s, not pkid's %.200s",
             identity, c->identity);
    goto out;
  }
  char issuer_cn[256];
  if (!pki_der_name_get_cn(&info.issuer, issuer_cn, sizeof(issuer_cn))) {
    snprintf(issuer_cn, sizeof(issuer_cn), "?");
  }
  if (c->have_ca) {
    /* By key: the CA's key identifier, and a signature that verifies with
     * the CA's key, not only a name any CA could write. */
    char aki[2 * 32 + 1], ski[2 * 32 + 1];
    hex(aki, sizeof(aki), info.has_aki ? &info.aki : NULL);
    hex(ski, sizeof(ski), &c->ca.ski);
    if (!CBS_mem_equal(&info.issuer, CBS_data(&c->ca.subject), CBS_len(&c->ca.subject))) {
      snprintf(why, why_size,
               "its certificate (identity %.200s) was issued by '%s' (key identifier %s), not "
               "by pkid's CA '%s' (key identifier %s)",
               identity, issuer_cn, aki, c->ca_cn, ski);
      goto out;
    }
    if (!info.has_aki || !CBS_mem_equal(&info.aki, CBS_data(&c->ca.ski), CBS_len(&c->ca.ski))) {
      snprintf(why, why_size,
               "its certificate (identity %.200s) names pkid's CA '%s' as issuer, but under "
               "another key (key identifier %s, not %s)",
               identity, c->ca_cn, aki, ski);
      goto out;
    }
    if (!pki_cert_verify_signature(&info, &c->ca.spki, &e)) {
      snprintf(why, why_size,
               "its certificate names pkid's CA '%s' as issuer but is not signed by its key "
               "(%s)",
               c->ca_cn, e.msg);
      goto out;
    }
  } else if (strcmp(issuer_cn, c->ca_cn) != 0) {
    /* By name, when the client holds no copy of the CA's certificate: the
     * chain to the root is verified already, and the root certifies one CA
     * of each name. */
    snprintf(why, why_size,
             "its certificate (identity %.200s) was issued by '%s', not by pkid's CA '%s'",
             identity, issuer_cn, c->ca_cn);
    goto out;
  }
  ok = 1;
out:
  pki_cert_info_cleanup(&info);
  free(der);
  return ok;
}

int pkc_peer_check_verify(pkc_peer_check *check, const char *peer_pem, char *why,
                          size_t why_size) {
  char reason[sizeof(check->why)] = "";
  int ok = judge(check, peer_pem, reason, sizeof(reason));
  pthread_mutex_lock(&check->mu);
  check->refused = !ok;
  snprintf(check->why, sizeof(check->why), "%s", ok ? "" : reason);
  pthread_mutex_unlock(&check->mu);
  if (!ok && why != NULL) snprintf(why, why_size, "%s", reason);
  return ok;
}

int pkc_peer_check_refused(pkc_peer_check *check, char *why, size_t why_size) {
  pthread_mutex_lock(&check->mu);
  int refused = check->refused;
  if (refused && why != NULL) snprintf(why, why_size, "%s", check->why);
  pthread_mutex_unlock(&check->mu);
  return refused;
}

int pkc_peer_check_grpc_verify(const char *target_name, const char *peer_pem,
                               void *userdata) {
  (void)target_name; /* gRPC checks the DNS name itself, after us */
  return pkc_peer_check_verify(userdata, peer_pem, NULL, 0) ? 0 : 1;
}

void pkc_peer_check_grpc_destruct(void *userdata) { pkc_peer_check_unref(userdata); }
