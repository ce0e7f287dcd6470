/* cert_test.c: issuing certificates, linting them, and the DER they use.
 *
 * A hierarchy from the default catalogue is made in memory: the root, the
 * infrastructure and agents intermediates and the load-balancer CA below
 * infrastructure. Leaves for several services are issued from it and read
 * back twice: with pki_cert_info_parse, and with BoringSSL's own X509 code
 * (signatures, key identifiers, and a whole-chain verification that applies
 * path lengths and name constraints as a TLS peer would). Then requests
 * outside a profile or an issuer's constraints, which lint must refuse,
 * where certificates point (their issuer's CRL and certificate), and the
 * DER pieces: keyUsage bits, times, serials. */
#include "lib/cert.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/catalog.h"
#include "lib/cert_info.h"
#include "lib/der.h"
#include "lib/key.h"
#include "lib/lint.h"
#include "lib/names.h"
#include "lib/profile.h"
#include "lib/serial.h"
#include "tests/unit/test.h"

#define DAY 86400

/* A CA made for the tests: its key, certificate and signer. */
typedef struct test_ca {
  EVP_PKEY *key;
  uint8_t *der; /* malloc'd */
  size_t len;
  pki_issuer iss;
  pki_serial serial;
  int64_t not_before, not_after;
} test_ca;

static pki_catalog *g_cat;
static int64_t g_now;
static uint64_t g_seq = 1;
static test_ca g_root, g_infra, g_agents, g_lbca;
static int g_ready;

static void test_ca_free(test_ca *ca) {
  EVP_PKEY_free(ca->key);
  free(ca->der);
  pki_issuer_cleanup(&ca->iss);
  memset(ca, 0, sizeof(*ca));
}

/* spki_der returns |key|'s SubjectPublicKeyInfo, OPENSSL_malloc'd. */
static uint8_t *spki_der(const EVP_PKEY *key, size_t *len) {
  CBB cbb;
  uint8_t *out = NULL;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, key) ||
      !CBB_finish(&cbb, &out, len)) {
    CBB_cleanup(&cbb);
    return NULL;
  }
  return out;
}

static void show(const char *what, const pki_err *err) {
  fprintf(stderr, "  %s: %s: %s\n", what, pki_err_code_name(err->code), err->msg);
}

/* issue signs a certificate for |key| under |profile| by |issuer|. |names|
 * NULL takes the profile's. */
static int issue(uint8_t **der, size_t *len, const pki_issuer *issuer,
                 const pki_profile *profile, const EVP_PKEY *key, int64_t not_before,
                 int64_t not_after, const pki_name *names, size_t num_names,
                 pki_serial *serial_out, pki_err *err) {
  pki_issue_request req;
  memset(&req, 0, sizeof(req));
  req.profile = profile;
  if (!pki_serial_make(&req.serial, 0, g_seq++, err)) return 0;
  req.not_before = not_before;
  req.not_after = not_after;
  size_t spki_len = 0;
  uint8_t *spki = spki_der(key, &spki_len);
  if (spki == NULL) return 0;
  req.spki = spki;
  req.spki_len = spki_len;
  req.names = names;
  req.num_names = num_names;
  *der = NULL;
  int ok = pki_cert_issue(der, len, issuer, &req, err);
  OPENSSL_free(spki);
  if (ok && serial_out != NULL) *serial_out = req.serial;
  return ok;
}

static int make_root(test_ca *out, pki_key_type type, unsigned bits, pki_err *err) {
  memset(out, 0, sizeof(*out));
  const pki_catalog_ca *ca = pki_catalog_root(g_cat);
  pki_profile profile;
  pki_issuer self;
  memset(&self, 0, sizeof(self));
  if (ca == NULL || !pki_profile_for_ca(&profile, g_cat, ca, err)) return 0;
  int ok = 0;
  out->key = pki_key_generate(type, bits, err);
  out->not_before = g_now - PKI_BACKDATE_S;
  out->not_after = g_now + (int64_t)profile.validity_s;
  if (out->key != NULL &&
      pki_issuer_init_self(&self, out->key, &profile, out->not_before, out->not_after,
                           err) &&
      issue(&out->der, &out->len, &self, &profile, out->key, out->not_before,
            out->not_after, NULL, 0, &out->serial, err) &&
      pki_issuer_init(&out->iss, out->der, out->len, out->key, err)) {
    ok = 1;
  }
  pki_issuer_cleanup(&self);
  pki_profile_cleanup(&profile);
  return ok;
}

static int make_ca(test_ca *out, const test_ca *parent, const char *name, pki_err *err) {
  memset(out, 0, sizeof(*out));
  const pki_catalog_ca *ca = pki_catalog_find_ca(g_cat, name);
  pki_profile profile;
  if (ca == NULL || !pki_profile_for_ca(&profile, g_cat, ca, err)) return 0;
  pki_validity(&out->not_before, &out->not_after, &parent->iss, profile.validity_s, g_now);
  out->key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, err);
  int ok = out->key != NULL &&
           issue(&out->der, &out->len, &parent->iss, &profile, out->key, out->not_before,
                 out->not_after, NULL, 0, &out->serial, err) &&
           pki_issuer_init(&out->iss, out->der, out->len, out->key, err);
  pki_profile_cleanup(&profile);
  return ok;
}

/* The hierarchy is made by the first case; the rest need it. */
TEST(make_hierarchy) {
  pki_err err;
  pki_err_clear(&err);
  g_now = (int64_t)time(NULL);
  g_cat = pki_catalog_default(&err);
  if (g_cat == NULL) show("catalogue", &err);
  REQUIRE(g_cat != NULL);
  int ok = make_root(&g_root, PKI_KEY_ECDSA_P256, 256, &err);
  if (!ok) show("root", &err);
  REQUIRE(ok);
  ok = make_ca(&g_infra, &g_root, "infrastructure-ca", &err);
  if (!ok) show("infrastructure-ca", &err);
  REQUIRE(ok);
  ok = make_ca(&g_agents, &g_root, "agents-ca", &err);
  if (!ok) show("agents-ca", &err);
  REQUIRE(ok);
  ok = make_ca(&g_lbca, &g_infra, "load-balancer-ca", &err);
  if (!ok) show("load-balancer-ca", &err);
  REQUIRE(ok);
  g_ready = 1;
}

/* --- checks shared by every certificate --- */

static X509 *to_x509(const uint8_t *der, size_t len) {
  const uint8_t *p = der;
  X509 *x = d2i_X509(NULL, &p, (long)len);
  if (x != NULL && p != der + len) {
    X509_free(x);
    return NULL;
  }
  return x;
}

/* boring_verify checks the signature of |der| under the key of the
 * certificate |issuer_der| with BoringSSL's X509 code. */
static int boring_verify(const uint8_t *der, size_t len, const uint8_t *issuer_der,
                         size_t issuer_len) {
  X509 *x = to_x509(der, len), *ix = to_x509(issuer_der, issuer_len);
  EVP_PKEY *key = ix != NULL ? X509_get_pubkey(ix) : NULL;
  int ok = x != NULL && key != NULL && X509_verify(x, key) == 1;
  if (!ok) ERR_print_errors_fp(stderr);
  ERR_clear_error();
  EVP_PKEY_free(key);
  X509_free(x);
  X509_free(ix);
  return ok;
}

/* boring_ski is SHA-1 of the certificate's subjectPublicKey bits as
 * BoringSSL parses them: RFC 5280 4.2.1.2 method 1, computed apart from
 * lib/. */
static int boring_ski(uint8_t out[20], const uint8_t *der, size_t len) {
  X509 *x = to_x509(der, len);
  if (x == NULL) return 0;
  const ASN1_BIT_STRING *bits = X509_get0_pubkey_bitstr(x);
  SHA1(ASN1_STRING_get0_data(bits), (size_t)ASN1_STRING_length(bits), out);
  X509_free(x);
  return 1;
}

/* check_issued verifies what every issued certificate must have: parsable,
 * signed by |issuer| (both parsers), SKI the hash of |key|, AKI the
 * issuer's SKI, issuer name the issuer's subject, the given serial and
 * validity, critical basicConstraints and keyUsage. */
static void check_issued(const pki_cert_info *info, const uint8_t *der, size_t len,
                         const test_ca *issuer, const EVP_PKEY *key,
                         const pki_serial *serial, int64_t not_before,
                         int64_t not_after) {
  pki_err err;
  pki_err_clear(&err);
  pki_cert_info ii;
  REQUIRE(pki_cert_info_parse(&ii, issuer->der, issuer->len, &err));
  int sig_ok = pki_cert_verify_signature(info, &ii.spki, &err);
  if (!sig_ok) show("signature", &err);
  CHECK(sig_ok);
  CHECK(boring_verify(der, len, issuer->der, issuer->len));
  CHECK(CBS_mem_equal(&info->issuer, CBS_data(&ii.subject), CBS_len(&ii.subject)));
  /* SKI: SHA-1 of the key, three ways. */
  uint8_t ski[20], lib_ski[20];
  CHECK(boring_ski(ski, der, len));
  CHECK(pki_key_identifier(lib_ski, key, &err));
  CHECK(memcmp(ski, lib_ski, 20) == 0);
  CHECK(info->has_ski && CBS_mem_equal(&info->ski, ski, 20));
  X509 *x = to_x509(der, len);
  REQUIRE(x != NULL);
  const ASN1_OCTET_STRING *x_ski = X509_get0_subject_key_id(x);
  CHECK(x_ski != NULL && ASN1_STRING_length(x_ski) == 20 &&
        memcmp(ASN1_STRING_get0_data(x_ski), ski, 20) == 0);
  /* AKI: the issuer's SKI. */
  CHECK(info->has_aki && CBS_mem_equal(&info->aki, CBS_data(&ii.ski), CBS_len(&ii.ski)));
  CHECK(CBS_mem_equal(&info->aki, issuer->iss.ski, issuer->iss.ski_len));
  const ASN1_OCTET_STRING *x_aki = X509_get0_authority_key_id(x);
  CHECK(x_aki != NULL && ASN1_STRING_length(x_aki) == (int)CBS_len(&ii.ski) &&
        memcmp(ASN1_STRING_get0_data(x_aki), CBS_data(&ii.ski), CBS_len(&ii.ski)) == 0);
  X509_free(x);
  /* Serial and validity as requested; the key as given. */
  CHECK(CBS_mem_equal(&info->serial, serial->bytes, serial->len));
  CHECK(info->not_before == not_before);
  CHECK(info->not_after == not_after);
  size_t spki_len = 0;
  uint8_t *spki = spki_der(key, &spki_len);
  CHECK(spki != NULL && CBS_mem_equal(&info->spki, spki, spki_len));
  OPENSSL_free(spki);
  CHECK(info->has_basic_constraints && info->basic_constraints_critical);
  CHECK(info->has_key_usage && info->key_usage_critical);
  CHECK(info->num_unknown_extensions == 0);
  pki_cert_info_cleanup(&ii);
}

static int der_contains(const uint8_t *der, size_t len, const uint8_t *needle,
                        size_t needle_len) {
  return memmem(der, len, needle, needle_len) != NULL;
}

/* keyUsage as the extension carries it: OID 2.5.29.15, critical, and the
 * BIT STRING with its unused-bits octet. */
static const uint8_t kKuCaRoot[] = {0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff,
                                    0x04, 0x04, 0x03, 0x02, 0x01, 0x06};
static const uint8_t kKuCaOnline[] = {0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff,
                                      0x04, 0x04, 0x03, 0x02, 0x01, 0x86};
static const uint8_t kKuLeaf[] = {0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff,
                                  0x04, 0x04, 0x03, 0x02, 0x07, 0x80};

/* boring_uri returns the first URI of |names| as BoringSSL read it. */
static const char *boring_uri(const GENERAL_NAMES *names) {
  for (size_t i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type == GEN_URI) return (const char *)ASN1_STRING_get0_data(gn->d.ia5);
  }
  return NULL;
}

/* check_pointers checks that a certificate issued by |issuer| points at
 * that CA's CRL (cRLDistributionPoints: one non-critical point, one URI,
 * no reasons or cRLIssuer) and certificate (AIA caIssuers), as lib/ and as
 * BoringSSL read them, and that only a leaf has an OCSP URL. */
static void check_pointers(const pki_cert_info *info, const uint8_t *der, size_t len,
                           const char *issuer) {
  char crl[256], crt[256];
  snprintf(crl, sizeof(crl), "http://127.0.0.1:8081/crl/%s.crl", issuer);
  snprintf(crt, sizeof(crt), "http://127.0.0.1:8081/ca/%s.crt", issuer);
  CHECK(info->has_crl_dp && !info->crl_dp_critical && !info->crl_dp_other);
  CHECK(info->crl_url != NULL && strcmp(info->crl_url, crl) == 0);
  CHECK(info->has_aia && !info->aia_other);
  CHECK(info->ca_issuers_url != NULL && strcmp(info->ca_issuers_url, crt) == 0);
  CHECK((info->ocsp_url != NULL) == !info->is_ca);
  /* The DER of the whole extension: OID, then the OCTET STRING holding
   * SEQUENCE { SEQUENCE { [0] { [0] { [6] uri } } } }. */
  size_t n = strlen(crl);
  uint8_t want[300] = {0x06, 0x03, 0x55, 0x1d, 0x1f, 0x04, (uint8_t)(n + 10),
                       0x30, (uint8_t)(n + 8), 0x30, (uint8_t)(n + 6), 0xa0,
                       (uint8_t)(n + 4), 0xa0, (uint8_t)(n + 2), 0x86, (uint8_t)n};
  memcpy(want + 17, crl, n);
  CHECK(der_contains(der, len, want, 17 + n));

  X509 *x = to_x509(der, len);
  REQUIRE(x != NULL);
  int crit = -1;
  CRL_DIST_POINTS *dps = X509_get_ext_d2i(x, NID_crl_distribution_points, &crit, NULL);
  CHECK(dps != NULL && crit == 0 && sk_DIST_POINT_num(dps) == 1);
  if (dps != NULL && sk_DIST_POINT_num(dps) == 1) {
    const DIST_POINT *dp = sk_DIST_POINT_value(dps, 0);
    CHECK(dp->reasons == NULL && dp->CRLissuer == NULL && dp->distpoint != NULL &&
          dp->distpoint->type == 0);
    if (dp->distpoint != NULL && dp->distpoint->type == 0) {
      CHECK(sk_GENERAL_NAME_num(dp->distpoint->name.fullname) == 1);
      const char *uri = boring_uri(dp->distpoint->name.fullname);
      CHECK(uri != NULL && strcmp(uri, crl) == 0);
    }
  }
  CRL_DIST_POINTS_free(dps);
  AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, &crit, NULL);
  CHECK(aia != NULL && crit == 0);
  int seen_ca_issuers = 0;
  for (size_t i = 0; aia != NULL && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
    const ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
    if (OBJ_obj2nid(ad->method) == NID_ad_ca_issuers) {
      CHECK(ad->location->type == GEN_URI &&
            strcmp((const char *)ASN1_STRING_get0_data(ad->location->d.ia5), crt) == 0);
      seen_ca_issuers++;
    }
  }
  CHECK(seen_ca_issuers == 1);
  AUTHORITY_INFO_ACCESS_free(aia);
  X509_free(x);
}

TEST(root_fields) {
  REQUIRE(g_ready);
  pki_cert_info info;
  pki_err err;
  pki_err_clear(&err);
  REQUIRE(pki_cert_info_parse(&info, g_root.der, g_root.len, &err));
  check_issued(&info, g_root.der, g_root.len, &g_root, g_root.key, &g_root.serial,
               g_root.not_before, g_root.not_after);
  /* Self-signed: issuer and subject equal, AKI = SKI. */
  CHECK(CBS_len(&info.issuer) == CBS_len(&info.subject) &&
        CBS_mem_equal(&info.issuer, CBS_data(&info.subject), CBS_len(&info.subject)));
  CHECK(CBS_len(&info.aki) == CBS_len(&info.ski) &&
        CBS_mem_equal(&info.aki, CBS_data(&info.ski), CBS_len(&info.ski)));
  char cn[256];
  CHECK(pki_der_name_get_cn(&info.subject, cn, sizeof(cn)));
  CHECK(strcmp(cn, "Cybersec Framework Root CA") == 0);
  CHECK(info.is_ca && info.path_len == 2);
  CHECK(info.key_usage == (PKI_KU_KEY_CERT_SIGN | PKI_KU_CRL_SIGN));
  CHECK(der_contains(g_root.der, g_root.len, kKuCaRoot, sizeof(kKuCaRoot)));
  CHECK(!info.has_ext_key_usage && !info.has_san && !info.has_aia);
  CHECK(!info.has_name_constraints && info.ocsp_url == NULL);
  /* Nothing above the root to point at. */
  CHECK(!info.has_crl_dp && info.crl_url == NULL && info.ca_issuers_url == NULL);
  CHECK(info.not_after - info.not_before == 7300LL * DAY + PKI_BACKDATE_S);
  /* The signer loaded from it agrees. */
  CHECK(g_root.iss.path_len == 2 && g_root.iss.key_type == PKI_KEY_ECDSA_P256);
  CHECK(g_root.iss.num_permitted == 0 && g_root.iss.num_excluded == 0);
  X509 *x = to_x509(g_root.der, g_root.len);
  REQUIRE(x != NULL);
  CHECK(X509_get_pathlen(x) == 2);
  CHECK(X509_get_key_usage(x) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  X509_free(x);
  pki_cert_info_cleanup(&info);
}

/* The permitted subtrees of a CA, in the catalogue's order. */
static void check_constraints(const pki_cert_info *info, const char *const *expect,
                              size_t num) {
  CHECK(info->has_name_constraints);
  CHECK(info->num_excluded == 0);
  REQUIRE(info->num_permitted == num);
  for (size_t i = 0; i < num; i++) {
    if (strcmp(info->permitted[i].value, expect[i]) != 0) {
      fprintf(stderr, "  permitted[%zu] is '%s', want '%s'\n", i, info->permitted[i].value,
              expect[i]);
      CHECK(0);
    }
  }
}

TEST(intermediate_fields) {
  REQUIRE(g_ready);
  pki_cert_info info;
  pki_err err;
  pki_err_clear(&err);
  REQUIRE(pki_cert_info_parse(&info, g_infra.der, g_infra.len, &err));
  check_issued(&info, g_infra.der, g_infra.len, &g_root, g_infra.key, &g_infra.serial,
               g_infra.not_before, g_infra.not_after);
  char cn[256];
  CHECK(pki_der_name_get_cn(&info.subject, cn, sizeof(cn)));
  CHECK(strcmp(cn, "Cybersec Framework Infrastructure CA") == 0);
  CHECK(info.is_ca && info.path_len == 1);
  /* Online CAs also sign OCSP responses: digitalSignature on top. */
  CHECK(info.key_usage == (PKI_KU_DIGITAL_SIGNATURE | PKI_KU_KEY_CERT_SIGN | PKI_KU_CRL_SIGN));
  CHECK(der_contains(g_infra.der, g_infra.len, kKuCaOnline, sizeof(kKuCaOnline)));
  CHECK(!info.has_ext_key_usage && !info.has_san);
  /* It is revoked on the root's CRL; its issuer is the root. No OCSP. */
  check_pointers(&info, g_infra.der, g_infra.len, "root");
  /* No IP subtree: see deploy/catalog.yaml on BoringSSL's verifier. */
  static const char *const kInfra[] = {"cybersec-framework.local", "localhost",
                                       "cybersec-framework.local"};
  check_constraints(&info, kInfra, 3);
  CHECK(info.permitted[0].type == PKI_NAME_DNS && info.permitted[1].type == PKI_NAME_DNS &&
        info.permitted[2].type == PKI_NAME_URI);
  CHECK(info.not_after - info.not_before == 1825LL * DAY + PKI_BACKDATE_S);
  CHECK(g_infra.iss.path_len == 1 && g_infra.iss.num_permitted == 3);
  pki_cert_info_cleanup(&info);

  /* agents-ca: path length 0. */
  REQUIRE(pki_cert_info_parse(&info, g_agents.der, g_agents.len, &err));
  check_issued(&info, g_agents.der, g_agents.len, &g_root, g_agents.key,
               &g_agents.serial, g_agents.not_before, g_agents.not_after);
  CHECK(info.is_ca && info.path_len == 0);
  check_pointers(&info, g_agents.der, g_agents.len, "root");
  pki_cert_info_cleanup(&info);

  /* load-balancer-ca, below infrastructure-ca: loopback only. */
  REQUIRE(pki_cert_info_parse(&info, g_lbca.der, g_lbca.len, &err));
  check_issued(&info, g_lbca.der, g_lbca.len, &g_infra, g_lbca.key, &g_lbca.serial,
               g_lbca.not_before, g_lbca.not_after);
  CHECK(info.is_ca && info.path_len == 0);
  static const char *const kLb[] = {"cybersec-framework.local", "localhost", "127.0.0.1/32",
                                    "::1/128", "cybersec-framework.local"};
  check_constraints(&info, kLb, 5);
  check_pointers(&info, g_lbca.der, g_lbca.len, "infrastructure-ca");
  CHECK(info.not_after - info.not_before == 1095LL * DAY + PKI_BACKDATE_S);
  pki_cert_info_cleanup(&info);
}

/* Roots with the other CA key types sign and verify the same way. */
static void other_root(pki_key_type type, unsigned bits) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  test_ca root, sub;
  memset(&sub, 0, sizeof(sub));
  int ok = make_root(&root, type, bits, &err);
  if (!ok) show("root", &err);
  CHECK(ok);
  if (ok) {
    CHECK(root.iss.key_type == type);
    ok = make_ca(&sub, &root, "agents-ca", &err);
    if (!ok) show("agents-ca", &err);
    CHECK(ok);
  }
  if (ok) {
    pki_cert_info info;
    REQUIRE(pki_cert_info_parse(&info, root.der, root.len, &err));
    check_issued(&info, root.der, root.len, &root, root.key, &root.serial,
                 root.not_before, root.not_after);
    pki_cert_info_cleanup(&info);
    REQUIRE(pki_cert_info_parse(&info, sub.der, sub.len, &err));
    check_issued(&info, sub.der, sub.len, &root, sub.key, &sub.serial, sub.not_before,
                 sub.not_after);
    pki_cert_info_cleanup(&info);
  }
  test_ca_free(&sub);
  test_ca_free(&root);
}

TEST(root_ecdsa_p384) { other_root(PKI_KEY_ECDSA_P384, 384); }
TEST(root_ed25519) { other_root(PKI_KEY_ED25519, 256); }

/* boring_chain verifies |leaf| up to the root through |inter| with
 * BoringSSL's path validation, for |purpose|, and returns the X509_V_*
 * result (X509_V_OK when the chain verifies; -1 if it could not be run). */
static int boring_chain(const uint8_t *leaf, size_t leaf_len, const test_ca *const *inter,
                        size_t num_inter, int purpose) {
  X509 *root = to_x509(g_root.der, g_root.len), *x = to_x509(leaf, leaf_len);
  X509_STORE *store = X509_STORE_new();
  STACK_OF(X509) *untrusted = sk_X509_new_null();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  int ok = root != NULL && x != NULL && store != NULL && untrusted != NULL && ctx != NULL &&
           X509_STORE_add_cert(store, root);
  for (size_t i = 0; ok && i < num_inter; i++) {
    X509 *ix = to_x509(inter[i]->der, inter[i]->len);
    if (ix == NULL || !sk_X509_push(untrusted, ix)) {
      X509_free(ix);
      ok = 0;
    }
  }
  int result = -1;
  if (ok && X509_STORE_CTX_init(ctx, store, x, untrusted) &&
      X509_STORE_CTX_set_purpose(ctx, purpose)) {
    int verified = X509_verify_cert(ctx) == 1;
    result = X509_STORE_CTX_get_error(ctx);
    if (verified != (result == X509_V_OK)) result = -1;
  }
  ERR_clear_error();
  X509_STORE_CTX_free(ctx);
  sk_X509_pop_free(untrusted, X509_free);
  X509_STORE_free(store);
  X509_free(x);
  X509_free(root);
  return result;
}

static int chain_result(int got, int want) {
  if (got != want) {
    fprintf(stderr, "  BoringSSL chain: got \"%s\", want \"%s\"\n",
            got < 0 ? "(not run)" : X509_verify_cert_error_string(got),
            X509_verify_cert_error_string(want));
  }
  return got == want;
}

/* leaf issues |service|'s certificate of |usage| from |ca| and checks it;
 * BoringSSL's verification of the whole chain must end in |chain_want|. */
static void leaf(const char *service, pki_usage usage, const test_ca *ca,
                 const test_ca *const *chain, size_t chain_len, int chain_want) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, service);
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, usage, &err));
  EVP_PKEY *key = pki_key_generate(svc->key_type, svc->key_bits, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &ca->iss, profile.validity_s, g_now);
  uint8_t *der = NULL;
  size_t len = 0;
  pki_serial serial;
  int ok = issue(&der, &len, &ca->iss, &profile, key, nb, na, NULL, 0, &serial, &err);
  if (!ok) show(service, &err);
  CHECK(ok);
  pki_cert_info info;
  if (ok && pki_cert_info_parse(&info, der, len, &err)) {
    check_issued(&info, der, len, ca, key, &serial, nb, na);
    CHECK(!info.is_ca && info.path_len == -1);
    CHECK(info.key_usage == PKI_KU_DIGITAL_SIGNATURE);
    CHECK(der_contains(der, len, kKuLeaf, sizeof(kKuLeaf)));
    CHECK(info.has_ext_key_usage && info.ext_key_usage == (unsigned)usage &&
          !info.ext_key_usage_other);
    CHECK(info.has_san && !info.san_critical);
    REQUIRE(info.num_sans == profile.num_names);
    for (size_t i = 0; i < profile.num_names; i++) {
      CHECK(info.sans[i].type == profile.names[i].type);
      CHECK(strcmp(info.sans[i].value, profile.names[i].value) == 0);
    }
    CHECK(info.num_sans == svc->num_names + 1);
    CHECK(pki_cert_info_identity(&info) != NULL &&
          strcmp(pki_cert_info_identity(&info), svc->identity) == 0);
    CHECK(info.has_aia && info.ocsp_url != NULL &&
          strcmp(info.ocsp_url, "http://127.0.0.1:8081/") == 0);
    check_pointers(&info, der, len, svc->ca);
    CHECK(!info.has_name_constraints);
    CHECK(info.not_after - info.not_before == (int64_t)svc->validity_s + PKI_BACKDATE_S);
    char cn[256];
    CHECK(pki_der_name_get_cn(&info.subject, cn, sizeof(cn)) && strcmp(cn, service) == 0);
    /* Another key's SPKI does not verify it. */
    pki_cert_info root_info;
    if (ca != &g_root && pki_cert_info_parse(&root_info, g_root.der, g_root.len, &err)) {
      pki_err_clear(&err);
      CHECK(!pki_cert_verify_signature(&info, &root_info.spki, &err));
      CHECK(err.code == PKI_ERR_AUTH);
      pki_cert_info_cleanup(&root_info);
    }
    /* BoringSSL: names, usages, and the whole chain. */
    X509 *x = to_x509(der, len);
    REQUIRE(x != NULL);
    CHECK(X509_get_key_usage(x) == KU_DIGITAL_SIGNATURE);
    CHECK(X509_get_extended_key_usage(x) ==
          (usage == PKI_USAGE_SERVER ? XKU_SSL_SERVER : XKU_SSL_CLIENT));
    CHECK(X509_check_host(x, "localhost", 9, 0, NULL) == 1);
    X509_free(x);
    CHECK(chain_result(boring_chain(der, len, chain, chain_len,
                                    usage == PKI_USAGE_SERVER ? X509_PURPOSE_SSL_SERVER
                                                              : X509_PURPOSE_SSL_CLIENT),
                       chain_want));
    pki_cert_info_cleanup(&info);
  } else if (ok) {
    show("parse", &err);
    CHECK(0);
  }
  free(der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

TEST(leaf_vault_server) {
  const test_ca *chain[] = {&g_infra};
  leaf("vault", PKI_USAGE_SERVER, &g_infra, chain, 1, X509_V_OK);
}
TEST(leaf_vault_client) {
  const test_ca *chain[] = {&g_infra};
  leaf("vault", PKI_USAGE_CLIENT, &g_infra, chain, 1, X509_V_OK);
}
TEST(leaf_postgres_client) {
  const test_ca *chain[] = {&g_infra};
  leaf("postgres", PKI_USAGE_CLIENT, &g_infra, chain, 1, X509_V_OK);
}
TEST(leaf_pki_agent_server) {
  const test_ca *chain[] = {&g_agents};
  leaf("pki-agent", PKI_USAGE_SERVER, &g_agents, chain, 1, X509_V_OK);
}
/* The vendored BoringSSL's X509 verifier (crypto/x509v3/v3_ncons.c,
 * nc_match_single) has no matcher for iPAddress constraints: a leaf with an
 * IP name under a CA with IP subtrees fails there with "unsupported name
 * constraint type", however right it is. Each link's signature is still
 * checked above, and load_balancer_ip verifies the chain without the IP. */
TEST(leaf_load_balancer_server) {
  const test_ca *chain[] = {&g_lbca, &g_infra};
  leaf("load-balancer", PKI_USAGE_SERVER, &g_lbca, chain, 2,
       X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE);
}

/* The load balancer's certificate: its IP name, its wildcard, and that a
 * TLS client checking 127.0.0.1 accepts it. */
TEST(load_balancer_ip) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "load-balancer");
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &g_lbca.iss, profile.validity_s, g_now);
  uint8_t *der = NULL;
  size_t len = 0;
  REQUIRE(issue(&der, &len, &g_lbca.iss, &profile, key, nb, na, NULL, 0, NULL, &err));
  pki_cert_info info;
  REQUIRE(pki_cert_info_parse(&info, der, len, &err));
  int ip = 0, wildcard = 0;
  for (size_t i = 0; i < info.num_sans; i++) {
    if (info.sans[i].type == PKI_NAME_IP && strcmp(info.sans[i].value, "127.0.0.1") == 0) ip++;
    if (info.sans[i].type == PKI_NAME_DNS &&
        strcmp(info.sans[i].value, "*.cybersec-framework.local") == 0) {
      wildcard++;
    }
  }
  CHECK(ip == 1 && wildcard == 1);
  /* iPAddress [7] with 4 octets, not text. */
  static const uint8_t kIp[] = {0x87, 0x04, 127, 0, 0, 1};
  CHECK(der_contains(der, len, kIp, sizeof(kIp)));
  X509 *x = to_x509(der, len);
  REQUIRE(x != NULL);
  CHECK(X509_check_ip_asc(x, "127.0.0.1", 0) == 1);
  CHECK(X509_check_ip_asc(x, "127.0.0.2", 0) != 1);
  CHECK(X509_check_host(x, "api.cybersec-framework.local", 28, 0, NULL) == 1);
  X509_free(x);
  pki_cert_info_cleanup(&info);
  free(der);
  /* Without the IP name, BoringSSL verifies the whole chain, constraints
   * included (see leaf_load_balancer_server). */
  const pki_name no_ip[] = {{PKI_NAME_URI, svc->identity},
                            {PKI_NAME_DNS, "*.cybersec-framework.local"},
                            {PKI_NAME_DNS, "localhost"}};
  der = NULL;
  REQUIRE(issue(&der, &len, &g_lbca.iss, &profile, key, nb, na, no_ip, 3, NULL, &err));
  const test_ca *chain[] = {&g_lbca, &g_infra};
  CHECK(chain_result(boring_chain(der, len, chain, 2, X509_PURPOSE_SSL_SERVER), X509_V_OK));
  free(der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

/* A request for some of the profile's names gets exactly those. */
TEST(leaf_subset_of_names) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "vault");
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  REQUIRE(key != NULL);
  const pki_name names[] = {{PKI_NAME_URI, svc->identity}, {PKI_NAME_DNS, "LOCALHOST"}};
  int64_t nb, na;
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, g_now);
  uint8_t *der = NULL;
  size_t len = 0;
  int ok = issue(&der, &len, &g_infra.iss, &profile, key, nb, na, names, 2, NULL, &err);
  if (!ok) show("issue", &err);
  REQUIRE(ok);
  pki_cert_info info;
  REQUIRE(pki_cert_info_parse(&info, der, len, &err));
  REQUIRE(info.num_sans == 2);
  CHECK(strcmp(info.sans[0].value, svc->identity) == 0);
  CHECK(info.sans[1].type == PKI_NAME_DNS && strcmp(info.sans[1].value, "LOCALHOST") == 0);
  CHECK(boring_verify(der, len, g_infra.der, g_infra.len));
  pki_cert_info_cleanup(&info);
  free(der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

/* A serial with its top bit set is written with a leading zero octet, so
 * the INTEGER stays positive, and reads back so. */
TEST(serial_top_bit_encoding) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "redis");
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  size_t spki_len = 0;
  uint8_t *spki = spki_der(key, &spki_len);
  REQUIRE(spki != NULL);
  pki_issue_request req;
  memset(&req, 0, sizeof(req));
  req.profile = &profile;
  pki_validity(&req.not_before, &req.not_after, &g_infra.iss, profile.validity_s, g_now);
  req.spki = spki;
  req.spki_len = spki_len;
  uint8_t *der = NULL;
  size_t len = 0;

  /* 20 octets with the top bit set encode as 21 (a leading zero): refused. */
  REQUIRE(pki_serial_from_hex(&req.serial, "80:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:2a",
                              &err));
  REQUIRE(req.serial.len == 20);
  CHECK(!pki_cert_issue(&der, &len, &g_infra.iss, &req, &err));
  CHECK(err.code == PKI_ERR_DENIED && strstr(err.msg, "20 octets") != NULL);

  /* 19 octets with the top bit set encode as 20: accepted, kept positive. */
  REQUIRE(pki_serial_from_hex(&req.serial, "80:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:2a",
                              &err));
  REQUIRE(req.serial.len == 19);
  int ok = pki_cert_issue(&der, &len, &g_infra.iss, &req, &err);
  if (!ok) show("issue", &err);
  REQUIRE(ok);
  pki_cert_info info;
  REQUIRE(pki_cert_info_parse(&info, der, len, &err));
  CHECK(CBS_len(&info.serial) == 20 && CBS_data(&info.serial)[0] == 0x00 &&
        CBS_data(&info.serial)[1] == 0x80 && CBS_data(&info.serial)[19] == 0x2a);
  X509 *x = to_x509(der, len);
  REQUIRE(x != NULL);
  /* BoringSSL reads a positive 19-octet INTEGER. */
  const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
  CHECK(serial != NULL && ASN1_STRING_type(serial) == V_ASN1_INTEGER &&
        ASN1_STRING_length(serial) == 19 && ASN1_STRING_get0_data(serial)[0] == 0x80);
  X509_free(x);
  pki_cert_info_cleanup(&info);
  free(der);
  OPENSSL_free(spki);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

/* --- what lint refuses: PKI_ERR_DENIED, with the reason --- */

/* expect_denied issues and expects a refusal mentioning |needle|. */
static int expect_denied(const test_ca *ca, const pki_profile *profile, const EVP_PKEY *key,
                         int64_t nb, int64_t na, const pki_name *names, size_t num,
                         const char *needle) {
  pki_err err;
  pki_err_clear(&err);
  uint8_t *der = NULL;
  size_t len = 0;
  if (issue(&der, &len, &ca->iss, profile, key, nb, na, names, num, NULL, &err)) {
    fprintf(stderr, "  issued, but lint should have refused (%s)\n", needle);
    free(der);
    return 0;
  }
  if (der != NULL || err.code != PKI_ERR_DENIED || strstr(err.msg, needle) == NULL) {
    fprintf(stderr, "  want denied mentioning '%s', got %s: %s\n", needle,
            pki_err_code_name(err.code), err.msg);
    return 0;
  }
  return 1;
}

TEST(lint_name_not_in_profile) {
  REQUIRE(g_ready);
  pki_err err;
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "vault");
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, g_now);
  /* Another service's name, inside the CA's constraints but not vault's. */
  const pki_name other[] = {{PKI_NAME_URI, svc->identity},
                            {PKI_NAME_DNS, "postgres.cybersec-framework.local"}};
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, other, 2,
                      "'postgres.cybersec-framework.local' is not in profile vault/server"));
  const pki_name ip[] = {{PKI_NAME_IP, "127.0.0.1"}};
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, ip, 1, "not in profile"));
  const pki_name twice[] = {{PKI_NAME_DNS, "localhost"}, {PKI_NAME_DNS, "LocalHost"}};
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, twice, 2, "appears twice"));
  /* A leaf with no names at all (an empty list, not NULL, which would mean
   * all of the profile's) is refused too. The builder writes an empty
   * subjectAltName SEQUENCE, which lint's parser refuses as malformed
   * (PKI_ERR_INVALID) before its own "needs subjectAltName" rule (DENIED)
   * is reached; either way nothing is signed. */
  const pki_name none[1] = {{PKI_NAME_DNS, "unused"}};
  uint8_t *der = NULL;
  size_t len = 0;
  pki_err_clear(&err);
  CHECK(!issue(&der, &len, &g_infra.iss, &profile, key, nb, na, none, 0, NULL, &err));
  CHECK(der == NULL && (err.code == PKI_ERR_INVALID || err.code == PKI_ERR_DENIED) &&
        strstr(err.msg, "subjectAltName") != NULL);
  free(der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

TEST(lint_name_outside_constraints) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "vault");
  REQUIRE(svc != NULL);
  /* A profile made by hand that allows a name no pkid CA may certify. */
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  REQUIRE(pki_names_push(&profile.names, &profile.num_names, PKI_NAME_DNS,
                         "evil.example.com", 16, &err));
  REQUIRE(pki_names_push(&profile.names, &profile.num_names, PKI_NAME_IP, "127.0.0.2", 9,
                         &err));
  REQUIRE(pki_names_push(&profile.names, &profile.num_names, PKI_NAME_URI,
                         "spiffe://evil.example.com/x", 27, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, g_now);
  const pki_name evil[] = {{PKI_NAME_URI, svc->identity}, {PKI_NAME_DNS, "evil.example.com"}};
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, evil, 2,
                      "DNS name 'evil.example.com' is outside the issuer's name constraints"));
  const pki_name evil_uri[] = {{PKI_NAME_URI, "spiffe://evil.example.com/x"}};
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, evil_uri, 1, "name constraints"));
  /* All of the profile's names (NULL): refused for the evil one. */
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, NULL, 0, "evil.example.com"));
  /* 127.0.0.2 is inside infrastructure-ca's 127.0.0.0/8 ... */
  const pki_name ip2[] = {{PKI_NAME_IP, "127.0.0.2"}};
  uint8_t *der = NULL;
  size_t len = 0;
  int ok = issue(&der, &len, &g_infra.iss, &profile, key, nb, na, ip2, 1, NULL, &err);
  if (!ok) show("127.0.0.2 under infrastructure-ca", &err);
  CHECK(ok);
  free(der);
  /* ... but outside load-balancer-ca's 127.0.0.1/32. */
  pki_validity(&nb, &na, &g_lbca.iss, profile.validity_s, g_now);
  CHECK(expect_denied(&g_lbca, &profile, key, nb, na, ip2, 1,
                      "IP name '127.0.0.2' is outside the issuer's name constraints"));
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

/* A wildcard stands for every name one label below it, so an issuer that
 * excludes vault.cybersec-framework.local must not certify
 * *.cybersec-framework.local, though the wildcard lies within the permitted
 * subtree and not, as a whole, within the excluded one (RFC 5280
 * 4.2.1.10; the catalogue refused such a service already). */
TEST(lint_wildcard_meets_excluded_subtree) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "vault");
  REQUIRE(svc != NULL);
  static const char kWild[] = "*.cybersec-framework.local";
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  REQUIRE(pki_names_push(&profile.names, &profile.num_names, PKI_NAME_DNS, kWild,
                         strlen(kWild), &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, g_now);
  const pki_name wild[] = {{PKI_NAME_URI, svc->identity}, {PKI_NAME_DNS, (char *)kWild}};
  uint8_t *der = NULL;
  size_t len = 0;
  int ok = issue(&der, &len, &g_infra.iss, &profile, key, nb, na, wild, 2, NULL, &err);
  if (!ok) show("wildcard, nothing excluded", &err);
  CHECK(ok);
  free(der);

  /* For this test only, infrastructure-ca excludes names below vault ... */
  pki_issuer *iss = &g_infra.iss;
  size_t saved = iss->num_excluded;
  REQUIRE(pki_names_push(&iss->excluded, &iss->num_excluded, PKI_NAME_DNS,
                         ".vault.cybersec-framework.local", 31, &err));
  /* ... which the wildcard does not stand for ... */
  der = NULL;
  ok = issue(&der, &len, iss, &profile, key, nb, na, wild, 2, NULL, &err);
  if (!ok) show("wildcard, names below vault excluded", &err);
  CHECK(ok);
  free(der);
  /* ... and then vault itself, which it does. */
  REQUIRE(pki_names_push(&iss->excluded, &iss->num_excluded, PKI_NAME_DNS,
                         "vault.cybersec-framework.local", 30, &err));
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, wild, 2,
                      "DNS name '*.cybersec-framework.local' is outside the issuer's name "
                      "constraints: it falls in excluded subtree "
                      "'vault.cybersec-framework.local'"));
  const pki_name vault[] = {{PKI_NAME_URI, svc->identity},
                            {PKI_NAME_DNS, "vault.cybersec-framework.local"}};
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, vault, 2, "excluded subtree"));
  while (iss->num_excluded > saved) free(iss->excluded[--iss->num_excluded].value);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

TEST(lint_validity) {
  REQUIRE(g_ready);
  pki_err err;
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "pki-agent");
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_CLIENT, &err));
  CHECK(profile.validity_s == 45u * DAY);
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb = g_now - PKI_BACKDATE_S;
  /* One second over the profile's 45 days (plus the backdating). */
  CHECK(expect_denied(&g_agents, &profile, key, nb, g_now + 45LL * DAY + 1, NULL, 0,
                      "exceeds profile pki-agent/client"));
  CHECK(expect_denied(&g_agents, &profile, key, nb, g_now + 60LL * DAY, NULL, 0, "lifetime"));
  /* Exactly the profile's is fine. */
  uint8_t *der = NULL;
  size_t len = 0;
  CHECK(issue(&der, &len, &g_agents.iss, &profile, key, nb, g_now + 45LL * DAY, NULL, 0,
              NULL, &err));
  free(der);
  /* Backwards. */
  CHECK(expect_denied(&g_agents, &profile, key, g_now, g_now - 1, NULL, 0,
                      "notAfter is not after notBefore"));
  /* Before the issuer was valid. */
  CHECK(expect_denied(&g_agents, &profile, key, g_agents.not_before - 10,
                      g_agents.not_before + DAY, NULL, 0, "outside the issuer's"));
  /* Past the issuer's end, with a profile that would allow it. */
  profile.validity_s = 4000u * DAY;
  CHECK(expect_denied(&g_agents, &profile, key, nb, g_agents.not_after + 1, NULL, 0,
                      "validity is outside the issuer's"));
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

TEST(lint_ca_path_length) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  pki_profile profile;
  REQUIRE(pki_profile_for_ca(&profile, g_cat, pki_catalog_find_ca(g_cat, "load-balancer-ca"),
                             &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  /* agents-ca has path length 0: no CA below it. */
  pki_validity(&nb, &na, &g_agents.iss, profile.validity_s, g_now);
  CHECK(expect_denied(&g_agents, &profile, key, nb, na, NULL, 0,
                      "the issuer's path length forbids a CA below it"));
  /* Nor below load-balancer-ca. */
  pki_validity(&nb, &na, &g_lbca.iss, profile.validity_s, g_now);
  CHECK(expect_denied(&g_lbca, &profile, key, nb, na, NULL, 0, "path length"));
  /* Below infrastructure-ca (1), a CA must have a path length under 1. */
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, g_now);
  profile.path_len = 1;
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, NULL, 0,
                      "path length must be below the issuer's 1"));
  profile.path_len = -1;
  CHECK(expect_denied(&g_infra, &profile, key, nb, na, NULL, 0, "path length must be below"));
  profile.path_len = 0;
  uint8_t *der = NULL;
  size_t len = 0;
  CHECK(issue(&der, &len, &g_infra.iss, &profile, key, nb, na, NULL, 0, NULL, &err));
  free(der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

TEST(lint_rsa_ca_key) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  pki_profile profile;
  REQUIRE(pki_profile_for_ca(&profile, g_cat, pki_catalog_find_ca(g_cat, "agents-ca"), &err));
  EVP_PKEY *rsa = pki_key_generate(PKI_KEY_RSA, 2048, &err);
  REQUIRE(rsa != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &g_root.iss, profile.validity_s, g_now);
  CHECK(expect_denied(&g_root, &profile, rsa, nb, na, NULL, 0,
                      "a rsa-2048 key cannot be a CA key"));
  /* Nor can it sign for itself as a root. */
  pki_profile root_profile;
  REQUIRE(pki_profile_for_ca(&root_profile, g_cat, pki_catalog_root(g_cat), &err));
  pki_issuer self;
  pki_err_clear(&err);
  CHECK(!pki_issuer_init_self(&self, rsa, &root_profile, nb, na, &err));
  CHECK(err.code == PKI_ERR_UNSUPPORTED && strstr(err.msg, "cannot sign") != NULL);
  pki_issuer_cleanup(&self);
  /* An RSA subject key is fine for a leaf. */
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "postgres");
  REQUIRE(svc != NULL);
  pki_profile leaf_profile;
  REQUIRE(pki_profile_for_service(&leaf_profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  pki_validity(&nb, &na, &g_infra.iss, leaf_profile.validity_s, g_now);
  uint8_t *der = NULL;
  size_t len = 0;
  int ok = issue(&der, &len, &g_infra.iss, &leaf_profile, rsa, nb, na, NULL, 0, NULL, &err);
  if (!ok) show("RSA leaf", &err);
  CHECK(ok);
  if (ok) CHECK(boring_verify(der, len, g_infra.der, g_infra.len));
  free(der);
  pki_profile_cleanup(&leaf_profile);
  pki_profile_cleanup(&root_profile);
  EVP_PKEY_free(rsa);
  pki_profile_cleanup(&profile);
}

/* --- where certificates point: the CRL and the issuer's certificate --- */

/* A catalogue without crl_url or ca_issuers_url gives profiles without
 * them, and certificates without the extensions (and a CA without AIA at
 * all), as before either existed. */
TEST(no_url_bases) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "vault");
  REQUIRE(svc != NULL);
  pki_profile leaf_profile, ca_profile;
  REQUIRE(pki_profile_for_service(&leaf_profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  REQUIRE(pki_profile_for_ca(&ca_profile, g_cat, pki_catalog_find_ca(g_cat, "agents-ca"), &err));
  CHECK(leaf_profile.crl_url != NULL && ca_profile.ca_issuers_url != NULL);
  leaf_profile.crl_url = leaf_profile.ca_issuers_url = NULL;
  ca_profile.crl_url = ca_profile.ca_issuers_url = NULL;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &g_infra.iss, leaf_profile.validity_s, g_now);
  uint8_t *der = NULL;
  size_t len = 0;
  pki_cert_info info;
  int ok = issue(&der, &len, &g_infra.iss, &leaf_profile, key, nb, na, NULL, 0, NULL, &err);
  if (!ok) show("leaf", &err);
  REQUIRE(ok);
  REQUIRE(pki_cert_info_parse(&info, der, len, &err));
  CHECK(!info.has_crl_dp && info.crl_url == NULL);
  CHECK(info.has_aia && info.ocsp_url != NULL && info.ca_issuers_url == NULL && !info.aia_other);
  CHECK(boring_verify(der, len, g_infra.der, g_infra.len));
  pki_cert_info_cleanup(&info);
  free(der);
  pki_validity(&nb, &na, &g_root.iss, ca_profile.validity_s, g_now);
  der = NULL;
  ok = issue(&der, &len, &g_root.iss, &ca_profile, key, nb, na, NULL, 0, NULL, &err);
  if (!ok) show("CA", &err);
  REQUIRE(ok);
  REQUIRE(pki_cert_info_parse(&info, der, len, &err));
  CHECK(!info.has_crl_dp && !info.has_aia);
  pki_cert_info_cleanup(&info);
  free(der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&ca_profile);
  pki_profile_cleanup(&leaf_profile);
}

/* lint_other builds a TBSCertificate with |built| and lints it against
 * |want|: it must be refused, mentioning |needle|. */
static int lint_other(const test_ca *ca, const pki_profile *built, const pki_profile *want,
                      const EVP_PKEY *key, const char *needle) {
  pki_err err;
  pki_err_clear(&err);
  pki_issue_request req;
  memset(&req, 0, sizeof(req));
  req.profile = built;
  size_t spki_len = 0;
  uint8_t *spki = spki_der(key, &spki_len), *tbs = NULL;
  size_t tbs_len = 0;
  req.spki = spki;
  req.spki_len = spki_len;
  pki_validity(&req.not_before, &req.not_after, &ca->iss, built->validity_s, g_now);
  int ok = spki != NULL && pki_serial_make(&req.serial, 0, g_seq++, &err) &&
           pki_cert_build_tbs(&tbs, &tbs_len, &ca->iss, &req, &err);
  if (!ok) {
    show("build", &err);
  } else if (pki_lint_tbs(tbs, tbs_len, want, &ca->iss, &err)) {
    fprintf(stderr, "  lint passed, want refused (%s)\n", needle);
    ok = 0;
  } else if (err.code != PKI_ERR_DENIED || strstr(err.msg, needle) == NULL) {
    fprintf(stderr, "  want denied mentioning '%s', got %s: %s\n", needle,
            pki_err_code_name(err.code), err.msg);
    ok = 0;
  }
  free(tbs);
  OPENSSL_free(spki);
  return ok;
}

TEST(lint_url_pointers) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "vault");
  REQUIRE(svc != NULL);
  pki_profile want, built;
  REQUIRE(pki_profile_for_service(&want, g_cat, svc, PKI_USAGE_SERVER, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  /* The builder's copy of the profile differs in one URL at a time. */
  built = want;
  built.crl_url = "http://127.0.0.1:8081/crl/agents-ca.crl";
  CHECK(lint_other(&g_infra, &built, &want, key,
                   "cRLDistributionPoints must be one non-critical point, fullName "
                   "'http://127.0.0.1:8081/crl/infrastructure-ca.crl'"));
  built.crl_url = NULL;
  CHECK(lint_other(&g_infra, &built, &want, key, "cRLDistributionPoints must be"));
  built = want;
  pki_profile none = want;
  none.crl_url = NULL;
  CHECK(lint_other(&g_infra, &built, &none, key,
                   "profile vault/server has no cRLDistributionPoints"));
  built.ca_issuers_url = "http://127.0.0.1:8081/ca/root.crt";
  CHECK(lint_other(&g_infra, &built, &want, key,
                   "caIssuers URL is not 'http://127.0.0.1:8081/ca/infrastructure-ca.crt'"));
  built.ca_issuers_url = NULL;
  CHECK(lint_other(&g_infra, &built, &want, key, "caIssuers URL is not"));
  CHECK(lint_other(&g_infra, &want, &built, key, "caIssuers URL is not '(none)'"));
  built.ocsp_url = NULL;
  CHECK(lint_other(&g_infra, &built, &want, key, "authorityInfoAccess differs"));
  /* A CA certificate carries no OCSP URL, even if its profile asked. */
  pki_profile ca;
  REQUIRE(pki_profile_for_ca(&ca, g_cat, pki_catalog_find_ca(g_cat, "agents-ca"), &err));
  ca.ocsp_url = "http://127.0.0.1:8081/";
  int64_t nb, na;
  pki_validity(&nb, &na, &g_root.iss, ca.validity_s, g_now);
  CHECK(expect_denied(&g_root, &ca, key, nb, na, NULL, 0, "OCSP URL"));
  EVP_PKEY_free(key);
  pki_profile_cleanup(&ca);
  pki_profile_cleanup(&want);
}

/* tbs_with builds a bare TBSCertificate holding one extension, |value|
 * as its extnValue contents: the parser's view of forms pkid never
 * writes. OPENSSL_malloc'd. */
static uint8_t *tbs_with(size_t *out_len, const uint8_t *oid, size_t oid_len, int critical,
                         const uint8_t *value, size_t value_len) {
  size_t spki_len = 0;
  uint8_t *spki = spki_der(g_root.key, &spki_len), *out = NULL;
  CBB cbb, tbs, version, alg, validity, outer, exts, ext, octets;
  if (spki == NULL || !CBB_init(&cbb, 512)) {
    OPENSSL_free(spki);
    return NULL;
  }
  if (!CBB_add_asn1(&cbb, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&tbs, &version, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
      !CBB_add_asn1_uint64(&version, 2) || !CBB_add_asn1_uint64(&tbs, 1) ||
      !CBB_add_asn1(&tbs, &alg, CBS_ASN1_SEQUENCE) ||
      !pki_der_add_oid(&alg, PKI_OID_ECDSA_SHA256, sizeof(PKI_OID_ECDSA_SHA256)) ||
      !pki_der_add_name(&tbs, "Example", "Issuer") ||
      !CBB_add_asn1(&tbs, &validity, CBS_ASN1_SEQUENCE) ||
      !pki_der_add_time(&validity, g_now) || !pki_der_add_time(&validity, g_now + DAY) ||
      !pki_der_add_name(&tbs, "Example", "Subject") || !CBB_add_bytes(&tbs, spki, spki_len) ||
      !CBB_add_asn1(&tbs, &outer, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 3) ||
      !CBB_add_asn1(&outer, &exts, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) || !pki_der_add_oid(&ext, oid, oid_len) ||
      (critical && !CBB_add_asn1_bool(&ext, 1)) ||
      !CBB_add_asn1(&ext, &octets, CBS_ASN1_OCTETSTRING) ||
      !CBB_add_bytes(&octets, value, value_len) || !CBB_finish(&cbb, &out, out_len)) {
    CBB_cleanup(&cbb);
    out = NULL;
  }
  OPENSSL_free(spki);
  return out;
}

static const uint8_t kDpOne[] = {0x30, 0x16, 0x30, 0x14, 0xa0, 0x12, 0xa0, 0x10, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x78, 0x2e, 0x63, 0x72, 0x6c};
static const uint8_t kDpTwoUris[] = {0x30, 0x26, 0x30, 0x24, 0xa0, 0x22, 0xa0, 0x20, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x78, 0x2e, 0x63, 0x72, 0x6c, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x62, 0x2f, 0x78, 0x2e, 0x63, 0x72, 0x6c};
static const uint8_t kDpDnsFirst[] = {0x30, 0x1b, 0x30, 0x19, 0xa0, 0x17, 0xa0, 0x15, 0x82, 0x03, 0x61, 0x2e, 0x62, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x78, 0x2e, 0x63, 0x72, 0x6c};
static const uint8_t kDpDirName[] = {0x30, 0x16, 0x30, 0x14, 0xa0, 0x12, 0xa0, 0x10, 0xa4, 0x0e, 0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0x78};
static const uint8_t kDpReasons[] = {0x30, 0x1a, 0x30, 0x18, 0xa0, 0x12, 0xa0, 0x10, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x78, 0x2e, 0x63, 0x72, 0x6c, 0x81, 0x02, 0x07, 0x80};
static const uint8_t kDpIssuerOnly[] = {0x30, 0x14, 0x30, 0x12, 0xa2, 0x10, 0xa4, 0x0e, 0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0x78};
static const uint8_t kDpTwoPoints[] = {0x30, 0x2c, 0x30, 0x14, 0xa0, 0x12, 0xa0, 0x10, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x78, 0x2e, 0x63, 0x72, 0x6c, 0x30, 0x14, 0xa0, 0x12, 0xa0, 0x10, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x62, 0x2f, 0x79, 0x2e, 0x63, 0x72, 0x6c};
static const uint8_t kDpRelative[] = {0x30, 0x10, 0x30, 0x0e, 0xa0, 0x0c, 0xa1, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0x78};
static const uint8_t kDpEmpty[] = {0x30, 0x00};
static const uint8_t kDpEmptyPoint[] = {0x30, 0x02, 0x30, 0x00};
static const uint8_t kDpEmptyFullName[] = {0x30, 0x06, 0x30, 0x04, 0xa0, 0x02, 0xa0, 0x00};
static const uint8_t kDpEmptyUri[] = {0x30, 0x08, 0x30, 0x06, 0xa0, 0x04, 0xa0, 0x02, 0x86, 0x00};
static const uint8_t kDpNulUri[] = {0x30, 0x16, 0x30, 0x14, 0xa0, 0x12, 0xa0, 0x10, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x00, 0x2e, 0x63, 0x72, 0x6c};
static const uint8_t kDpTrailing[] = {0x30, 0x16, 0x30, 0x14, 0xa0, 0x12, 0xa0, 0x10, 0x86, 0x0e, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x78, 0x2e, 0x63, 0x72, 0x6c, 0x00};
static const uint8_t kDpBothNames[] = {0x30, 0x1d, 0x30, 0x1b, 0xa0, 0x19, 0xa0, 0x0b, 0x86, 0x09, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0xa1, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0x78};
static const uint8_t kAiaBoth[] = {0x30, 0x34, 0x30, 0x15, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x86, 0x09, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x6f, 0x2f, 0x30, 0x1b, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02, 0x86, 0x0f, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x63, 0x61, 0x2e, 0x63, 0x72, 0x74};
static const uint8_t kAiaDirName[] = {0x30, 0x1c, 0x30, 0x1a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02, 0xa4, 0x0e, 0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, 0x78};
static const uint8_t kAiaTwoCaIssuers[] = {0x30, 0x3a, 0x30, 0x1b, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02, 0x86, 0x0f, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f, 0x63, 0x61, 0x2e, 0x63, 0x72, 0x74, 0x30, 0x1b, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02, 0x86, 0x0f, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x62, 0x2f, 0x63, 0x61, 0x2e, 0x63, 0x72, 0x74};
static const uint8_t kAiaOtherMethod[] = {0x30, 0x17, 0x30, 0x15, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x05, 0x86, 0x09, 0x68, 0x74, 0x74, 0x70, 0x3a, 0x2f, 0x2f, 0x61, 0x2f};
static const uint8_t kAiaEmptyCaIssuers[] = {0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02, 0x86, 0x00};

/* Forms of cRLDistributionPoints and authorityInfoAccess other CAs write,
 * read as RFC 5280 4.2.1.13 and 4.2.2.1 define them: the first URI is
 * kept, anything more is noted, and what breaks the syntax is refused. */
TEST(cert_info_pointer_forms) {
  REQUIRE(g_ready);
  const struct {
    const char *name;
    const uint8_t *value;
    size_t len;
    int aia;         /* authorityInfoAccess, else cRLDistributionPoints */
    int parses;
    const char *url; /* crl_url or ca_issuers_url; NULL: none */
    int other;       /* crl_dp_other or aia_other */
  } kCases[] = {
#define FORM(v, aia, parses, url, other) {#v, v, sizeof(v), aia, parses, url, other}
      FORM(kDpOne, 0, 1, "http://a/x.crl", 0),
      FORM(kDpTwoUris, 0, 1, "http://a/x.crl", 1),
      FORM(kDpDnsFirst, 0, 1, "http://a/x.crl", 1),
      FORM(kDpDirName, 0, 1, NULL, 1),
      FORM(kDpReasons, 0, 1, "http://a/x.crl", 1),
      FORM(kDpIssuerOnly, 0, 1, NULL, 1),
      FORM(kDpTwoPoints, 0, 1, "http://a/x.crl", 1),
      FORM(kDpRelative, 0, 1, NULL, 1),
      FORM(kDpEmpty, 0, 0, NULL, 0),
      FORM(kDpEmptyPoint, 0, 0, NULL, 0),
      FORM(kDpEmptyFullName, 0, 0, NULL, 0),
      FORM(kDpEmptyUri, 0, 0, NULL, 0),
      FORM(kDpNulUri, 0, 0, NULL, 0),
      FORM(kDpTrailing, 0, 0, NULL, 0),
      FORM(kDpBothNames, 0, 0, NULL, 0),
      FORM(kAiaBoth, 1, 1, "http://a/ca.crt", 0),
      FORM(kAiaDirName, 1, 1, NULL, 1),
      FORM(kAiaTwoCaIssuers, 1, 1, "http://a/ca.crt", 1),
      FORM(kAiaOtherMethod, 1, 1, NULL, 1),
      FORM(kAiaEmptyCaIssuers, 1, 0, NULL, 0),
#undef FORM
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    const uint8_t *oid = kCases[i].aia ? PKI_OID_AUTHORITY_INFO_ACCESS
                                       : PKI_OID_CRL_DISTRIBUTION_POINTS;
    size_t oid_len = kCases[i].aia ? sizeof(PKI_OID_AUTHORITY_INFO_ACCESS)
                                   : sizeof(PKI_OID_CRL_DISTRIBUTION_POINTS);
    for (int critical = 0; critical < 2; critical++) {
      size_t len = 0;
      uint8_t *tbs = tbs_with(&len, oid, oid_len, critical, kCases[i].value, kCases[i].len);
      REQUIRE(tbs != NULL);
      pki_cert_info info;
      pki_err err;
      pki_err_clear(&err);
      int ok = pki_cert_info_parse_tbs(&info, tbs, len, &err);
      OPENSSL_free(tbs);
      if (ok != kCases[i].parses) {
        fprintf(stderr, "  %s: %s\n", kCases[i].name, ok ? "parsed" : err.msg);
        CHECK(0);
      }
      if (!ok) {
        CHECK(err.code == PKI_ERR_INVALID && strstr(err.msg, "malformed") != NULL);
        continue;
      }
      const char *url = kCases[i].aia ? info.ca_issuers_url : info.crl_url;
      int other = kCases[i].aia ? info.aia_other : info.crl_dp_other;
      int present = kCases[i].aia ? info.has_aia : info.has_crl_dp;
      if (!present || other != kCases[i].other || (url == NULL) != (kCases[i].url == NULL) ||
          (url != NULL && strcmp(url, kCases[i].url) != 0)) {
        fprintf(stderr, "  %s: url %s, other %d\n", kCases[i].name, url ? url : "(none)",
                other);
        CHECK(0);
      }
      /* The criticality of cRLDistributionPoints is kept, for lint. */
      if (!kCases[i].aia) CHECK(info.crl_dp_critical == critical);
      pki_cert_info_cleanup(&info);
    }
  }
  /* Both OCSP and caIssuers from one extension. */
  size_t len = 0;
  uint8_t *tbs = tbs_with(&len, PKI_OID_AUTHORITY_INFO_ACCESS,
                          sizeof(PKI_OID_AUTHORITY_INFO_ACCESS), 0, kAiaBoth, sizeof(kAiaBoth));
  REQUIRE(tbs != NULL);
  pki_cert_info info;
  pki_err err;
  REQUIRE(pki_cert_info_parse_tbs(&info, tbs, len, &err));
  CHECK(info.ocsp_url != NULL && strcmp(info.ocsp_url, "http://o/") == 0);
  pki_cert_info_cleanup(&info);
  OPENSSL_free(tbs);
}

/* pki_issuer_init takes only a CA certificate with its own key. */
TEST(issuer_init_refusals) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  pki_issuer iss;
  CHECK(!pki_issuer_init(&iss, g_infra.der, g_infra.len, g_root.key, &err));
  CHECK(err.code == PKI_ERR_INVALID && strstr(err.msg, "does not match") != NULL);
  pki_err_clear(&err);
  static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
  CHECK(!pki_issuer_init(&iss, junk, sizeof(junk), g_root.key, &err));
  CHECK(err.code == PKI_ERR_INVALID && strstr(err.msg, "CA certificate: ") == err.msg);
  /* A leaf is not a CA. */
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "redis");
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  int64_t nb, na;
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, g_now);
  uint8_t *der = NULL;
  size_t len = 0;
  REQUIRE(issue(&der, &len, &g_infra.iss, &profile, key, nb, na, NULL, 0, NULL, &err));
  pki_err_clear(&err);
  CHECK(!pki_issuer_init(&iss, der, len, key, &err));
  CHECK(err.code == PKI_ERR_INVALID && strstr(err.msg, "not a CA") != NULL);
  free(der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

/* --- the parser on damaged certificates --- */

TEST(cert_info_damaged) {
  REQUIRE(g_ready);
  pki_err err;
  pki_cert_info info;
  const uint8_t *der = g_lbca.der;
  size_t len = g_lbca.len;
  for (size_t n = 0; n < len; n++) {
    uint8_t *copy = malloc(n > 0 ? n : 1);
    REQUIRE(copy != NULL);
    memcpy(copy, der, n);
    pki_err_clear(&err);
    if (pki_cert_info_parse(&info, copy, n, &err)) {
      fprintf(stderr, "  prefix of %zu bytes parsed\n", n);
      pki_cert_info_cleanup(&info);
      CHECK(0);
    } else if (err.code != PKI_ERR_INVALID || err.msg[0] == '\0') {
      fprintf(stderr, "  prefix of %zu: %s: %s\n", n, pki_err_code_name(err.code), err.msg);
      CHECK(0);
    }
    free(copy);
  }
  uint8_t *longer = malloc(len + 1);
  REQUIRE(longer != NULL);
  memcpy(longer, der, len);
  longer[len] = 0;
  pki_err_clear(&err);
  CHECK(!pki_cert_info_parse(&info, longer, len + 1, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  /* One bit of the signature flipped: parses, does not verify. */
  longer[len - 1] ^= 0x01;
  pki_cert_info issuer;
  REQUIRE(pki_cert_info_parse(&issuer, g_infra.der, g_infra.len, &err));
  REQUIRE(pki_cert_info_parse(&info, longer, len, &err));
  pki_err_clear(&err);
  CHECK(!pki_cert_verify_signature(&info, &issuer.spki, &err));
  CHECK(err.code == PKI_ERR_AUTH);
  pki_cert_info_cleanup(&info);
  /* One bit of the TBS flipped (in the last extension): same. */
  longer[len - 1] ^= 0x01;
  REQUIRE(pki_cert_info_parse(&info, longer, len, &err));
  size_t at = (size_t)(CBS_data(&info.tbs) - longer) + CBS_len(&info.tbs) - 2;
  pki_cert_info_cleanup(&info);
  longer[at] ^= 0x01;
  if (pki_cert_info_parse(&info, longer, len, &err)) {
    pki_err_clear(&err);
    CHECK(!pki_cert_verify_signature(&info, &issuer.spki, &err));
    CHECK(err.code == PKI_ERR_AUTH);
    pki_cert_info_cleanup(&info);
  }
  pki_cert_info_cleanup(&issuer);
  free(longer);
}

/* --- DER pieces --- */

/* keyUsage encodings straight from the builder, for bit patterns the
 * catalogue never asks for, read back by lib/ and by BoringSSL. */
TEST(key_usage_encoding) {
  REQUIRE(g_ready);
  pki_err err;
  pki_err_clear(&err);
  const pki_catalog_service *svc = pki_catalog_find_service(g_cat, "redis");
  REQUIRE(svc != NULL);
  pki_profile profile;
  REQUIRE(pki_profile_for_service(&profile, g_cat, svc, PKI_USAGE_SERVER, &err));
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  size_t spki_len = 0;
  uint8_t *spki = spki_der(key, &spki_len);
  REQUIRE(spki != NULL);
  const struct {
    unsigned ku;
    uint8_t bits[5];
    size_t bits_len;
  } kCases[] = {
      /* digitalSignature (0): 1 bit used, 7 unused. */
      {PKI_KU_DIGITAL_SIGNATURE, {0x03, 0x02, 0x07, 0x80}, 4},
      /* keyCertSign (5) | cRLSign (6). */
      {PKI_KU_KEY_CERT_SIGN | PKI_KU_CRL_SIGN, {0x03, 0x02, 0x01, 0x06}, 4},
      /* digitalSignature | keyEncipherment (2): 5 unused. */
      {PKI_KU_DIGITAL_SIGNATURE | PKI_KU_KEY_ENCIPHERMENT, {0x03, 0x02, 0x05, 0xa0}, 4},
      {PKI_KU_KEY_ENCIPHERMENT, {0x03, 0x02, 0x05, 0x20}, 4},
      /* decipherOnly (8) takes a second octet. */
      {PKI_KU_DIGITAL_SIGNATURE | (1u << 8), {0x03, 0x03, 0x07, 0x80, 0x80}, 5},
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    profile.key_usage = kCases[i].ku;
    pki_issue_request req;
    memset(&req, 0, sizeof(req));
    req.profile = &profile;
    REQUIRE(pki_serial_make(&req.serial, 0, g_seq++, &err));
    pki_validity(&req.not_before, &req.not_after, &g_infra.iss, profile.validity_s, g_now);
    req.spki = spki;
    req.spki_len = spki_len;
    uint8_t *tbs = NULL;
    size_t tbs_len = 0;
    REQUIRE(pki_cert_build_tbs(&tbs, &tbs_len, &g_infra.iss, &req, &err));
    uint8_t want[16] = {0x04, (uint8_t)kCases[i].bits_len};
    memcpy(want + 2, kCases[i].bits, kCases[i].bits_len);
    if (!der_contains(tbs, tbs_len, want, 2 + kCases[i].bits_len)) {
      fprintf(stderr, "  keyUsage 0x%x: encoding not found\n", kCases[i].ku);
      CHECK(0);
    }
    pki_cert_info info;
    CHECK(pki_cert_info_parse_tbs(&info, tbs, tbs_len, &err));
    CHECK(info.key_usage == kCases[i].ku);
    pki_cert_info_cleanup(&info);
    /* lint holds the profile's keyUsage; the builder followed it. */
    CHECK(pki_lint_tbs(tbs, tbs_len, &profile, &g_infra.iss, &err));
    free(tbs);
  }
  /* BoringSSL reads the same bits from a signed certificate. */
  profile.key_usage = PKI_KU_DIGITAL_SIGNATURE | PKI_KU_KEY_ENCIPHERMENT;
  int64_t nb, na;
  pki_validity(&nb, &na, &g_infra.iss, profile.validity_s, g_now);
  uint8_t *der = NULL;
  size_t len = 0;
  REQUIRE(issue(&der, &len, &g_infra.iss, &profile, key, nb, na, NULL, 0, NULL, &err));
  X509 *x = to_x509(der, len);
  REQUIRE(x != NULL);
  CHECK(X509_get_key_usage(x) == (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  X509_free(x);
  free(der);
  OPENSSL_free(spki);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

/* encode_time runs pki_der_add_time into a buffer (OPENSSL_malloc'd). */
static uint8_t *encode_time(int64_t t, size_t *len) {
  CBB cbb;
  uint8_t *out = NULL;
  if (!CBB_init(&cbb, 32) || !pki_der_add_time(&cbb, t) || !CBB_finish(&cbb, &out, len)) {
    CBB_cleanup(&cbb);
    return NULL;
  }
  return out;
}

TEST(time_round_trip) {
  const struct {
    int64_t t;
    unsigned tag;
    const char *text;
  } kTimes[] = {
      {-631152000, CBS_ASN1_UTCTIME, "500101000000Z"},           /* 1950-01-01 */
      {0, CBS_ASN1_UTCTIME, "700101000000Z"},                    /* 1970-01-01 */
      {946684799, CBS_ASN1_UTCTIME, "991231235959Z"},            /* 1999-12-31 */
      {951782400, CBS_ASN1_UTCTIME, "000229000000Z"},            /* 2000-02-29 */
      {1709208000, CBS_ASN1_UTCTIME, "240229120000Z"},           /* 2024-02-29 */
      {2524607999, CBS_ASN1_UTCTIME, "491231235959Z"},           /* 2049-12-31T23:59:59 */
      {2524608000, CBS_ASN1_GENERALIZEDTIME, "20500101000000Z"}, /* 2050-01-01 */
      {4107542400, CBS_ASN1_GENERALIZEDTIME, "21000301000000Z"}, /* 2100-03-01 */
      {253402300799, CBS_ASN1_GENERALIZEDTIME, "99991231235959Z"},
  };
  for (size_t i = 0; i < sizeof(kTimes) / sizeof(kTimes[0]); i++) {
    size_t len = 0;
    uint8_t *der = encode_time(kTimes[i].t, &len);
    REQUIRE(der != NULL);
    size_t text_len = strlen(kTimes[i].text);
    if (len != 2 + text_len || der[0] != kTimes[i].tag || der[1] != text_len ||
        memcmp(der + 2, kTimes[i].text, text_len) != 0) {
      fprintf(stderr, "  %lld: encoded as %.*s, want %s\n", (long long)kTimes[i].t,
              (int)(len > 2 ? len - 2 : 0), (const char *)der + 2, kTimes[i].text);
      CHECK(0);
    }
    CBS cbs;
    CBS_init(&cbs, der, len);
    int64_t back = -1;
    CHECK(pki_der_get_time(&cbs, &back) && back == kTimes[i].t && CBS_len(&cbs) == 0);
    OPENSSL_free(der);
  }
  /* Outside what the two types can hold. */
  size_t len = 0;
  CHECK(encode_time(-631152001, &len) == NULL);   /* 1949-12-31T23:59:59 */
  CHECK(encode_time(253402300800, &len) == NULL); /* 10000-01-01 */
}

static int decode_time(unsigned tag, const char *text, int64_t *out) {
  uint8_t buf[64];
  size_t n = strlen(text);
  buf[0] = (uint8_t)tag;
  buf[1] = (uint8_t)n;
  memcpy(buf + 2, text, n);
  CBS cbs;
  CBS_init(&cbs, buf, n + 2);
  return pki_der_get_time(&cbs, out);
}

TEST(time_malformed) {
  const struct {
    unsigned tag;
    const char *text;
  } kBad[] = {
      {CBS_ASN1_UTCTIME, "491231235959"},          /* no Z */
      {CBS_ASN1_GENERALIZEDTIME, "20500101000000"}, /* no Z */
      {CBS_ASN1_UTCTIME, "4912312359Z"},            /* no seconds */
      {CBS_ASN1_GENERALIZEDTIME, "205001010000Z"},  /* no seconds */
      {CBS_ASN1_GENERALIZEDTIME, "20500101000000.5Z"},
      {CBS_ASN1_GENERALIZEDTIME, "20500101000000.000Z"},
      {CBS_ASN1_UTCTIME, "491231235959.5Z"},
      {CBS_ASN1_UTCTIME, "240230120000Z"}, /* 30 February */
      {CBS_ASN1_UTCTIME, "230229120000Z"}, /* 29 February 2023 */
      {CBS_ASN1_GENERALIZEDTIME, "21000229000000Z"}, /* 2100 is no leap year */
      {CBS_ASN1_UTCTIME, "240431000000Z"}, /* 31 April */
      {CBS_ASN1_UTCTIME, "241301000000Z"}, /* month 13 */
      {CBS_ASN1_UTCTIME, "240001000000Z"}, /* month 0 */
      {CBS_ASN1_UTCTIME, "240100000000Z"}, /* day 0 */
      {CBS_ASN1_UTCTIME, "240101240000Z"}, /* hour 24 */
      {CBS_ASN1_UTCTIME, "240101006000Z"}, /* minute 60 */
      {CBS_ASN1_UTCTIME, "240101000060Z"}, /* second 60 */
      {CBS_ASN1_UTCTIME, "240101000000+0000"},
      {CBS_ASN1_UTCTIME, "240101000000z"},
      {CBS_ASN1_UTCTIME, "24010100000aZ"},
      {CBS_ASN1_UTCTIME, "-40101000000Z"},
      {CBS_ASN1_UTCTIME, " 40101000000Z"},
      {CBS_ASN1_UTCTIME, ""},
      {CBS_ASN1_OCTETSTRING, "240101000000Z"}, /* not a time type */
      {CBS_ASN1_GENERALIZEDTIME, "240101000000Z"}, /* UTCTime text, wrong type */
  };
  for (size_t i = 0; i < sizeof(kBad) / sizeof(kBad[0]); i++) {
    int64_t t = 0;
    if (decode_time(kBad[i].tag, kBad[i].text, &t)) {
      fprintf(stderr, "  accepted '%s' (tag 0x%x) as %lld\n", kBad[i].text, kBad[i].tag,
              (long long)t);
      CHECK(0);
    }
  }
  /* A time whose length runs past the buffer. */
  static const uint8_t kShort[] = {CBS_ASN1_UTCTIME, 13, '2', '4', '0', '1'};
  CBS cbs;
  CBS_init(&cbs, kShort, sizeof(kShort));
  int64_t t;
  CHECK(!pki_der_get_time(&cbs, &t));
}

/* reference_time formats |t| as the code before pki_der_put_time did, with
 * gmtime_r and snprintf: the dates libc computes. */
static size_t reference_time(uint8_t *out, int64_t t, int generalized) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (gmtime_r(&tt, &tm) == NULL) return 0;
  int year = tm.tm_year + 1900;
  if (year < (generalized ? 0 : 1950) || year > 9999) return 0;
  if (year >= 2050) generalized = 1;
  char text[32];
  int n = generalized ? snprintf(text, sizeof(text), "%04d%02d%02d%02d%02d%02dZ", year,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
                      : snprintf(text, sizeof(text), "%02d%02d%02d%02d%02d%02dZ", year % 100,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  out[0] = generalized ? CBS_ASN1_GENERALIZEDTIME : CBS_ASN1_UTCTIME;
  out[1] = (uint8_t)n;
  memcpy(out + 2, text, (size_t)n);
  return 2 + (size_t)n;
}

/* The computed dates are libc's, over the whole range of both forms, and
 * read back to the same second. */
TEST(time_matches_libc) {
  const int64_t kEdges[] = {PKI_DER_T_0000, PKI_DER_T_0000 + 86399, PKI_DER_T_1950 - 1,
                            PKI_DER_T_1950, -2203891200 /* 1900-03-01 */, -1, 0, 86399, 86400,
                            951782400 /* 2000-02-29 */, PKI_DER_T_2050 - 1, PKI_DER_T_2050,
                            4107542399 /* 2100-02-28T23:59:59 */, 13574563200 /* 2400-02-29 */,
                            PKI_DER_T_10000 - 1, PKI_DER_T_10000};
  const size_t num_edges = sizeof(kEdges) / sizeof(kEdges[0]);
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (size_t i = 0; i < 200000; i++) {
    int64_t t;
    if (i < num_edges) {
      t = kEdges[i];
    } else {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
      t = PKI_DER_T_0000 - 10 + (int64_t)(x % (uint64_t)(PKI_DER_T_10000 - PKI_DER_T_0000 + 20));
    }
    for (int generalized = 0; generalized <= 1; generalized++) {
      uint8_t got[PKI_DER_TIME_MAX], want[32];
      size_t n = pki_der_put_time(got, t, generalized);
      size_t m = reference_time(want, t, generalized);
      if (n != m || memcmp(got, want, n) != 0) {
        fprintf(stderr, "  %lld (generalized %d): %.*s, libc %.*s\n", (long long)t, generalized,
                (int)(n > 2 ? n - 2 : 0), (const char *)got + 2, (int)(m > 2 ? m - 2 : 0),
                (const char *)want + 2);
        CHECK(0);
        return;
      }
      if (n == 0) continue;
      CBS cbs;
      CBS_init(&cbs, got, n);
      int64_t back = 0;
      if (!pki_der_get_time(&cbs, &back) || back != t) {
        fprintf(stderr, "  %.*s read back as %lld, not %lld\n", (int)n - 2,
                (const char *)got + 2, (long long)back, (long long)t);
        CHECK(0);
        return;
      }
    }
  }
  /* Every day number in every month of a 400-year cycle: read as a date
   * exactly when timegm takes it without moving it into the next month. */
  for (int year = 2000; year < 2400; year++) {
    for (int mon = 1; mon <= 12; mon++) {
      for (int day = 28; day <= 31; day++) {
        char text[16];
        snprintf(text, sizeof(text), "%04d%02d%02d000000Z", year, mon, day);
        int64_t got = 0;
        int ok = decode_time(CBS_ASN1_GENERALIZEDTIME, text, &got);
        struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day};
        time_t want = timegm(&tm);
        int valid = tm.tm_mday == day;
        if (ok != valid || (ok && got != (int64_t)want)) {
          fprintf(stderr, "  %s: read %d as %lld, libc %d as %lld\n", text, ok, (long long)got,
                  valid, (long long)want);
          CHECK(0);
          return;
        }
      }
    }
  }
}

TEST(serial_make) {
  pki_err err;
  pki_err_clear(&err);
  pki_serial a, b;
  REQUIRE(pki_serial_make(&a, 0x0102, 0x0a0b0c0d0e0f1011ULL, &err));
  REQUIRE(pki_serial_make(&b, 0x0102, 0x0a0b0c0d0e0f1011ULL, &err));
  CHECK(a.len == PKI_SERIAL_LEN && a.len == 19 && b.len == 19);
  CHECK(a.bytes[0] == 0x01);
  CHECK(a.bytes[1] == 0x01 && a.bytes[2] == 0x02);
  static const uint8_t kSeq[] = {0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11};
  CHECK(memcmp(a.bytes + 3, kSeq, 8) == 0);
  /* Same node and sequence: the random part still differs. */
  CHECK(memcmp(a.bytes, b.bytes, 11) == 0);
  CHECK(memcmp(a.bytes + 11, b.bytes + 11, 8) != 0);
  /* Hex and back. */
  char hex[2 * PKI_SERIAL_MAX + 1];
  pki_serial_to_hex(hex, &a);
  CHECK(strlen(hex) == 38 && strncmp(hex, "0101020a0b0c0d0e0f1011", 22) == 0);
  pki_serial c;
  REQUIRE(pki_serial_from_hex(&c, hex, &err));
  CHECK(c.len == a.len && memcmp(c.bytes, a.bytes, a.len) == 0);
}

TEST(serial_from_hex) {
  pki_err err;
  pki_err_clear(&err);
  const struct {
    const char *hex;
    uint8_t bytes[20];
    size_t len;
  } kGood[] = {
      {"01", {0x01}, 1},
      {"1", {0x01}, 1},
      {"abc", {0x0a, 0xbc}, 2},
      {"0A:0b:FF", {0x0a, 0x0b, 0xff}, 3},
      {"000001", {0x01}, 1},
      {"00:80", {0x80}, 1},
      {"7f", {0x7f}, 1},
      {"ffffffffffffffffffffffffffffffffffffffff",
       {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
       20},
  };
  for (size_t i = 0; i < sizeof(kGood) / sizeof(kGood[0]); i++) {
    pki_serial s;
    int ok = pki_serial_from_hex(&s, kGood[i].hex, &err);
    if (!ok || s.len != kGood[i].len || memcmp(s.bytes, kGood[i].bytes, s.len) != 0) {
      fprintf(stderr, "  '%s' did not parse as expected (%s)\n", kGood[i].hex,
              ok ? "wrong value" : err.msg);
      CHECK(0);
      continue;
    }
    /* And back: lower-case, no colons, whole octets. */
    char hex[2 * PKI_SERIAL_MAX + 1];
    pki_serial_to_hex(hex, &s);
    pki_serial again;
    CHECK(pki_serial_from_hex(&again, hex, &err) && again.len == s.len &&
          memcmp(again.bytes, s.bytes, s.len) == 0);
  }
  static const char *const kBad[] = {
      "", "0", "00", "0:0", ":", "xyz", "12 34", "-1", "0x12", "12g4", "+1",
      /* 21 octets */
      "010203040506070809101112131415161718192021",
      /* far too long */
      "0102030405060708091011121314151617181920212223242526272829303132333435363738394041",
  };
  for (size_t i = 0; i < sizeof(kBad) / sizeof(kBad[0]); i++) {
    pki_serial s;
    pki_err_clear(&err);
    if (pki_serial_from_hex(&s, kBad[i], &err)) {
      fprintf(stderr, "  accepted '%s'\n", kBad[i]);
      CHECK(0);
    } else if (err.code != PKI_ERR_INVALID || err.msg[0] == '\0') {
      fprintf(stderr, "  '%s': %s: %s\n", kBad[i], pki_err_code_name(err.code), err.msg);
      CHECK(0);
    }
  }
}

int main(void) {
  RUN(make_hierarchy);
  RUN(root_fields);
  RUN(intermediate_fields);
  RUN(root_ecdsa_p384);
  RUN(root_ed25519);
  RUN(leaf_vault_server);
  RUN(leaf_vault_client);
  RUN(leaf_postgres_client);
  RUN(leaf_pki_agent_server);
  RUN(leaf_load_balancer_server);
  RUN(load_balancer_ip);
  RUN(leaf_subset_of_names);
  RUN(serial_top_bit_encoding);
  RUN(lint_name_not_in_profile);
  RUN(lint_name_outside_constraints);
  RUN(lint_wildcard_meets_excluded_subtree);
  RUN(lint_validity);
  RUN(lint_ca_path_length);
  RUN(lint_rsa_ca_key);
  RUN(no_url_bases);
  RUN(lint_url_pointers);
  RUN(cert_info_pointer_forms);
  RUN(issuer_init_refusals);
  RUN(cert_info_damaged);
  RUN(key_usage_encoding);
  RUN(time_round_trip);
  RUN(time_malformed);
  RUN(time_matches_libc);
  RUN(serial_make);
  RUN(serial_from_hex);
  test_ca_free(&g_lbca);
  test_ca_free(&g_agents);
  test_ca_free(&g_infra);
  test_ca_free(&g_root);
  pki_catalog_free(g_cat);
  return test_finish();
}
