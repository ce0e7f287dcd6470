/* crl_test.c: the CRL codec (lib/crl.h).
 *
 * What pki_crl_build writes is checked three ways: read back by
 * pki_crl_parse; read by BoringSSL's own X509_CRL parser and verifier (an
 * implementation we did not write), field by field and extension by
 * extension; and compared octet for octet with a plain nested-CBB encoding
 * of the TBSCertList written here from RFC 5280 section 5, so that the
 * builder's one-pass layout cannot drift from the straightforward one.
 * CRLs pkid would never write (v1, other extensions, malformed classes) are
 * made here field by field and signed with the test CA's key; a valid CRL
 * is cut at every length and has its octets flipped. Every allocation of
 * the build, the parse and the PEM encoding fails in turn (failmalloc.h),
 * and each failure must be clean (no leak under --config=asan). */
#include "lib/crl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/cert.h"
#include "lib/der.h"
#include "lib/key.h"
#include "lib/pem.h"
#include "lib/serial.h"
#include "lib/sig.h"
#include "tests/unit/failmalloc.h"
#include "tests/unit/test.h"
#include "tests/unit/test_ca.h"

#define TAG_EXPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | (n))
#define TAG_IMPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | (n))
#define NOW 1767225600 /* 2026-01-01T00:00:00Z */
#define DAY 86400

/* ---- CAs for the tests ------------------------------------------------ */

static pki_issuer g_p256, g_p384, g_ed;
static int g_ready;

static int setup(void) {
  if (!g_ready) {
    g_ready = test_make_ca(&g_p256, PKI_KEY_ECDSA_P256, "Test CRL CA") &&
                      test_make_ca(&g_p384, PKI_KEY_ECDSA_P384, "Test P-384 CA") &&
                      test_make_ca(&g_ed, PKI_KEY_ED25519, "Test Ed25519 CA")
                  ? 1
                  : -1;
  }
  return g_ready == 1;
}

static void show(const char *what, const pki_err *err) {
  fprintf(stderr, "  %s: %s: %s (%s:%d)\n", what, pki_err_code_name(err->code), err->msg,
          err->file != NULL ? err->file : "?", err->line);
}

/* A small, fixed pseudo-random sequence (xorshift64), for reproducible
 * entry mixes. */
static uint64_t g_rand = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) {
  g_rand ^= g_rand << 13;
  g_rand ^= g_rand >> 7;
  g_rand ^= g_rand << 17;
  return g_rand;
}

static pki_crl_params complete_params(uint64_t number) {
  pki_crl_params p = {.number = number, .this_update = NOW, .next_update = NOW + 7 * DAY};
  return p;
}

static pki_crl_entry make_entry(uint64_t seq, int reason, int64_t invalidity) {
  pki_crl_entry e;
  memset(&e, 0, sizeof(e));
  pki_err err;
  pki_serial_make(&e.serial, 1, seq, &err);
  e.revocation_date = NOW - (int64_t)(seq % 1000) * 60;
  e.reason = reason;
  e.invalidity_date = invalidity;
  return e;
}

/* random_entry makes an entry with any serial length and high bit, any
 * reason (removeFromCRL only for a delta), and a date before or after
 * 2050 and sometimes an invalidityDate. */
static pki_crl_entry random_entry(int delta, uint32_t index) {
  pki_crl_entry e;
  memset(&e, 0, sizeof(e));
  /* 3 to 20 octets, the last three the index: no two entries share a
   * serial, which BoringSSL's look-up by serial needs. */
  e.serial.len = 3 + rnd() % (PKI_SERIAL_MAX - 2);
  for (size_t i = 0; i < e.serial.len; i++) e.serial.bytes[i] = (uint8_t)rnd();
  if (e.serial.bytes[0] == 0) e.serial.bytes[0] = 1;
  e.serial.bytes[e.serial.len - 3] = (uint8_t)(index >> 16);
  e.serial.bytes[e.serial.len - 2] = (uint8_t)(index >> 8);
  e.serial.bytes[e.serial.len - 1] = (uint8_t)index;
  if (e.serial.len == 3 && e.serial.bytes[0] == 0) e.serial.bytes[0] = 0x80;
  uint64_t r = rnd();
  e.revocation_date = (r & 1) ? NOW - (int64_t)(rnd() % (40 * 365 * DAY))
                              : INT64_C(2524608000) - 5 * DAY + (int64_t)(rnd() % (10 * DAY));
  static const int reasons[] = {-1, 0, 1, 2, 3, 4, 5, 6, 8, 9, 10};
  e.reason = reasons[(r >> 1) % 11];
  if (e.reason == 8 && !delta) e.reason = 1;
  if ((r >> 8) % 3 == 0) e.invalidity_date = e.revocation_date - (int64_t)((r >> 16) % DAY);
  return e;
}

/* build_ok builds and reports any failure. */
static int build_ok(uint8_t **der, size_t *len, const pki_issuer *ca,
                    const pki_crl_params *p, const pki_crl_entry *entries, size_t num) {
  pki_err err;
  pki_err_clear(&err);
  if (!pki_crl_build(der, len, ca, NULL, p, entries, num, &err)) {
    show("build", &err);
    return 0;
  }
  return 1;
}

static int parse_ok(pki_crl *crl, const uint8_t *der, size_t len) {
  pki_err err;
  pki_err_clear(&err);
  if (!pki_crl_parse(crl, der, len, &err)) {
    show("parse", &err);
    return 0;
  }
  return 1;
}

/* value_of strips a serial's leading zero octets: the value compared. */
static pki_serial value_of(const pki_serial *s) {
  pki_serial v = *s;
  size_t skip = 0;
  while (skip + 1 < v.len && v.bytes[skip] == 0) skip++;
  memmove(v.bytes, v.bytes + skip, v.len - skip);
  v.len -= skip;
  return v;
}

/* same_entry compares a parsed entry with what was given to the build:
 * an unspecified (0) reason is left out, so it reads back as -1. */
static int same_entry(const pki_crl_entry *got, const pki_crl_entry *want) {
  pki_serial v = value_of(&want->serial);
  int reason = want->reason <= 0 ? -1 : want->reason;
  return got->serial.len == v.len && memcmp(got->serial.bytes, v.bytes, v.len) == 0 &&
         got->revocation_date == want->revocation_date && got->reason == reason &&
         got->invalidity_date == want->invalidity_date;
}

/* ---- BoringSSL's view --------------------------------------------------- */

static X509_CRL *bssl_crl(const uint8_t *der, size_t len) {
  const uint8_t *p = der;
  X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
  if (crl == NULL || p != der + len) {
    X509_CRL_free(crl);
    ERR_clear_error();
    return NULL;
  }
  return crl;
}

/* asn1_unix converts an ASN1_TIME to seconds since the epoch. */
static int asn1_unix(const ASN1_TIME *t, int64_t *out) {
  ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
  int days, secs;
  int ok = epoch != NULL && ASN1_TIME_diff(&days, &secs, epoch, t);
  ASN1_TIME_free(epoch);
  if (ok) *out = (int64_t)days * DAY + secs;
  return ok;
}

static ASN1_INTEGER *asn1_serial(const pki_serial *s) {
  BIGNUM *bn = BN_bin2bn(s->bytes, s->len, NULL);
  ASN1_INTEGER *i = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
  BN_free(bn);
  return i;
}

/* bssl_entry_matches looks |want| up in |crl| by serial with
 * X509_CRL_get0_by_serial and compares what BoringSSL decoded. */
static int bssl_entry_matches(X509_CRL *crl, const pki_crl_entry *want) {
  pki_serial v = value_of(&want->serial);
  ASN1_INTEGER *serial = asn1_serial(&v);
  X509_REVOKED *rev = NULL;
  int found = serial != NULL ? X509_CRL_get0_by_serial(crl, &rev, serial) : 0;
  ASN1_INTEGER_free(serial);
  /* 2: found, with reason removeFromCRL. */
  if (found != (want->reason == PKI_CRL_REASON_REMOVE_FROM_CRL ? 2 : 1) || rev == NULL) {
    return 0;
  }
  int64_t t;
  if (!asn1_unix(X509_REVOKED_get0_revocationDate(rev), &t) || t != want->revocation_date) {
    return 0;
  }
  int crit = -2;
  ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, &crit, NULL);
  int ok;
  if (want->reason <= 0) {
    ok = reason == NULL && crit == -1;
  } else {
    ok = reason != NULL && crit == 0 && ASN1_ENUMERATED_get(reason) == want->reason;
  }
  ASN1_ENUMERATED_free(reason);
  crit = -2;
  ASN1_GENERALIZEDTIME *inv = X509_REVOKED_get_ext_d2i(rev, NID_invalidity_date, &crit, NULL);
  if (want->invalidity_date == 0) {
    ok = ok && inv == NULL && crit == -1;
  } else {
    ok = ok && inv != NULL && crit == 0 && asn1_unix(inv, &t) && t == want->invalidity_date;
  }
  ASN1_GENERALIZEDTIME_free(inv);
  ERR_clear_error();
  return ok;
}

/* bssl_number reads an INTEGER extension (cRLNumber, deltaCRLIndicator). */
static int bssl_number(X509_CRL *crl, int nid, uint64_t *out, int *out_crit) {
  ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, nid, out_crit, NULL);
  int ok = n != NULL && ASN1_INTEGER_get_uint64(out, n);
  ASN1_INTEGER_free(n);
  ERR_clear_error();
  return ok;
}

/* bssl_freshest_uri copies the first URI of freshestCRL's first point. */
static int bssl_freshest_uri(X509_CRL *crl, char *out, size_t out_size, int *out_crit) {
  CRL_DIST_POINTS *dps = X509_CRL_get_ext_d2i(crl, NID_freshest_crl, out_crit, NULL);
  int ok = 0;
  if (dps != NULL && sk_DIST_POINT_num(dps) >= 1) {
    DIST_POINT *dp = sk_DIST_POINT_value(dps, 0);
    if (dp->distpoint != NULL && dp->distpoint->type == 0) {
      GENERAL_NAMES *names = dp->distpoint->name.fullname;
      for (size_t i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) continue;
        const ASN1_IA5STRING *uri = gn->d.uniformResourceIdentifier;
        if ((size_t)uri->length < out_size) {
          memcpy(out, uri->data, (size_t)uri->length);
          out[uri->length] = '\0';
          ok = 1;
        }
        break;
      }
    }
  }
  sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
  ERR_clear_error();
  return ok;
}

static int bssl_critical(X509_CRL *crl, int nid) {
  int i = X509_CRL_get_ext_by_NID(crl, nid, -1);
  return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_CRL_get_ext(crl, i));
}

/* bssl_checks reads |der| with BoringSSL and compares everything with
 * what was given to the build. */
static int bssl_checks(const uint8_t *der, size_t len, const pki_issuer *ca,
                       const pki_crl_params *p, const pki_crl_entry *entries, size_t num) {
  X509_CRL *crl = bssl_crl(der, len);
  if (crl == NULL) {
    fprintf(stderr, "  d2i_X509_CRL refused the CRL\n");
    return 0;
  }
  int ok = 1;
  int64_t t;
#define BCHECK(cond)                                              \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "  BoringSSL disagrees: %s\n", #cond);      \
      ok = 0;                                                     \
    }                                                             \
  } while (0)
  BCHECK(X509_CRL_verify(crl, ca->key) == 1);
  BCHECK(X509_CRL_get_version(crl) == X509_CRL_VERSION_2);
  uint8_t *name = NULL;
  int name_len = i2d_X509_NAME(X509_CRL_get_issuer(crl), &name);
  BCHECK(name_len == (int)ca->name_len && memcmp(name, ca->name, ca->name_len) == 0);
  OPENSSL_free(name);
  BCHECK(asn1_unix(X509_CRL_get0_lastUpdate(crl), &t) && t == p->this_update);
  BCHECK(X509_CRL_get0_nextUpdate(crl) != NULL &&
         asn1_unix(X509_CRL_get0_nextUpdate(crl), &t) && t == p->next_update);
  STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
  BCHECK(num == 0 ? (revoked == NULL || sk_X509_REVOKED_num(revoked) == 0)
                  : (revoked != NULL && sk_X509_REVOKED_num(revoked) == num));
  for (size_t i = 0; i < num && ok; i++) BCHECK(bssl_entry_matches(crl, &entries[i]));
  uint64_t n;
  int crit;
  BCHECK(bssl_number(crl, NID_crl_number, &n, &crit) && n == p->number && crit == 0);
  AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, &crit, NULL);
  BCHECK(aki != NULL && crit == 0 && aki->keyid != NULL &&
         (size_t)aki->keyid->length == ca->ski_len &&
         memcmp(aki->keyid->data, ca->ski, ca->ski_len) == 0 && aki->issuer == NULL &&
         aki->serial == NULL);
  AUTHORITY_KEYID_free(aki);
  if (p->is_delta) {
    BCHECK(bssl_number(crl, NID_delta_crl, &n, &crit) && n == p->base_number && crit == 1);
    BCHECK(bssl_critical(crl, NID_freshest_crl) == -1);
  } else {
    BCHECK(bssl_critical(crl, NID_delta_crl) == -1);
    char uri[600];
    if (p->freshest_url != NULL) {
      BCHECK(bssl_freshest_uri(crl, uri, sizeof(uri), &crit) && crit == 0 &&
             strcmp(uri, p->freshest_url) == 0);
    } else {
      BCHECK(bssl_critical(crl, NID_freshest_crl) == -1);
    }
  }
  BCHECK(X509_CRL_get_ext_count(crl) == 2 + (p->is_delta || p->freshest_url != NULL));
#undef BCHECK
  X509_CRL_free(crl);
  ERR_clear_error();
  return ok;
}

/* ---- The reference encoding -------------------------------------------- */

/* ref_ext opens an Extension; the caller writes the value and flushes. */
static int ref_ext(CBB *exts, CBB *ext, CBB *value, const uint8_t *oid, size_t oid_len,
                   int critical) {
  return CBB_add_asn1(exts, ext, CBS_ASN1_SEQUENCE) && pki_der_add_oid(ext, oid, oid_len) &&
         (!critical || CBB_add_asn1_bool(ext, 1)) &&
         CBB_add_asn1(ext, value, CBS_ASN1_OCTETSTRING);
}

/* ref_tbs writes the TBSCertList RFC 5280 section 5 and lib/crl.h's top
 * comment describe, plainly, with nested CBBs: OPENSSL_malloc'd. */
static uint8_t *ref_tbs(size_t *out_len, const pki_issuer *ca, const pki_crl_params *p,
                        const pki_crl_entry *entries, size_t num) {
  CBB cbb, tbs, list, seq, serial, exts, ext, value, child, el, dp, dpn, full;
  pki_err err;
  uint8_t *out = NULL;
  if (!CBB_init(&cbb, 256) || !CBB_add_asn1(&cbb, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1_uint64(&tbs, 1) || !pki_sig_add_alg(&tbs, ca->key_type, &err) ||
      !CBB_add_bytes(&tbs, ca->name, ca->name_len) || !pki_der_add_time(&tbs, p->this_update) ||
      !pki_der_add_time(&tbs, p->next_update)) {
    goto err;
  }
  if (num > 0) {
    if (!CBB_add_asn1(&tbs, &list, CBS_ASN1_SEQUENCE)) goto err;
    for (size_t i = 0; i < num; i++) {
      const pki_crl_entry *e = &entries[i];
      pki_serial v = value_of(&e->serial);
      if (!CBB_add_asn1(&list, &seq, CBS_ASN1_SEQUENCE) ||
          !CBB_add_asn1(&seq, &serial, CBS_ASN1_INTEGER) ||
          ((v.bytes[0] & 0x80) && !CBB_add_u8(&serial, 0)) ||
          !CBB_add_bytes(&serial, v.bytes, v.len) ||
          !pki_der_add_time(&seq, e->revocation_date)) {
        goto err;
      }
      if (e->reason > 0 || e->invalidity_date != 0) {
        if (!CBB_add_asn1(&seq, &exts, CBS_ASN1_SEQUENCE)) goto err;
        if (e->reason > 0 &&
            (!ref_ext(&exts, &ext, &value, PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), 0) ||
             !CBB_add_asn1(&value, &child, CBS_ASN1_ENUMERATED) ||
             !CBB_add_u8(&child, (uint8_t)e->reason) || !CBB_flush(&exts))) {
          goto err;
        }
        if (e->invalidity_date != 0 &&
            (!ref_ext(&exts, &ext, &value, PKI_OID_INVALIDITY_DATE,
                      sizeof(PKI_OID_INVALIDITY_DATE), 0) ||
             !pki_der_add_generalized_time(&value, e->invalidity_date) || !CBB_flush(&exts))) {
          goto err;
        }
      }
      if (!CBB_flush(&list)) goto err;
    }
    if (!CBB_flush(&tbs)) goto err;
  }
  if (!CBB_add_asn1(&tbs, &el, TAG_EXPLICIT(0)) || !CBB_add_asn1(&el, &exts, CBS_ASN1_SEQUENCE) ||
      !ref_ext(&exts, &ext, &value, PKI_OID_AUTHORITY_KEY_ID, sizeof(PKI_OID_AUTHORITY_KEY_ID),
               0) ||
      !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&seq, &child, TAG_IMPLICIT(0)) ||
      !CBB_add_bytes(&child, ca->ski, ca->ski_len) || !CBB_flush(&exts) ||
      !ref_ext(&exts, &ext, &value, PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), 0) ||
      !CBB_add_asn1_uint64(&value, p->number) || !CBB_flush(&exts)) {
    goto err;
  }
  if (p->is_delta) {
    if (!ref_ext(&exts, &ext, &value, PKI_OID_DELTA_CRL_INDICATOR,
                 sizeof(PKI_OID_DELTA_CRL_INDICATOR), 1) ||
        !CBB_add_asn1_uint64(&value, p->base_number) || !CBB_flush(&exts)) {
      goto err;
    }
  } else if (p->freshest_url != NULL) {
    if (!ref_ext(&exts, &ext, &value, PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), 0) ||
        !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&seq, &dp, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&dp, &dpn, TAG_EXPLICIT(0)) ||
        !CBB_add_asn1(&dpn, &full, TAG_EXPLICIT(0)) ||
        !CBB_add_asn1(&full, &child, TAG_IMPLICIT(6)) ||
        !CBB_add_bytes(&child, (const uint8_t *)p->freshest_url, strlen(p->freshest_url)) ||
        !CBB_flush(&exts)) {
      goto err;
    }
  }
  if (!CBB_finish(&cbb, &out, out_len)) goto err;
  return out;
err:
  CBB_cleanup(&cbb);
  return NULL;
}

/* full_check: build, then the parse, BoringSSL and the reference encoding
 * must all agree with the input. */
static int full_check(const pki_issuer *ca, const pki_crl_params *p,
                      const pki_crl_entry *entries, size_t num) {
  uint8_t *der = NULL;
  size_t len;
  if (!build_ok(&der, &len, ca, p, entries, num)) return 0;
  int ok = 1;
  pki_crl crl;
  pki_err err;
  if (!parse_ok(&crl, der, len)) {
    free(der);
    return 0;
  }
#define FCHECK(cond)                                      \
  do {                                                    \
    if (!(cond)) {                                        \
      fprintf(stderr, "  read back: %s\n", #cond);        \
      ok = 0;                                             \
    }                                                     \
  } while (0)
  FCHECK(crl.version == 2);
  FCHECK(CBS_mem_equal(&crl.issuer, ca->name, ca->name_len));
  FCHECK(crl.this_update == p->this_update && crl.next_update == p->next_update);
  FCHECK(crl.has_number && crl.number_u64 == p->number);
  FCHECK(crl.is_delta == (p->is_delta != 0));
  if (p->is_delta) FCHECK(crl.base_number_u64 == p->base_number);
  FCHECK(crl.aki_len == ca->ski_len && memcmp(crl.aki, ca->ski, ca->ski_len) == 0);
  FCHECK(strcmp(crl.freshest_url, p->freshest_url != NULL ? p->freshest_url : "") == 0);
  FCHECK(crl.num_entries == num);
  for (size_t i = 0; i < num && i < crl.num_entries; i++) {
    if (!same_entry(&crl.entries[i], &entries[i])) {
      fprintf(stderr, "  entry %zu differs\n", i);
      ok = 0;
      break;
    }
  }
  FCHECK(pki_crl_verify(&crl, ca->key, &err));
  size_t ref_len;
  uint8_t *ref = ref_tbs(&ref_len, ca, p, entries, num);
  FCHECK(ref != NULL && CBS_mem_equal(&crl.tbs, ref, ref_len));
  OPENSSL_free(ref);
  /* The outer signatureAlgorithm is the one of the CA's key. */
  uint8_t alg[32];
  size_t alg_len;
  CBB cbb;
  FCHECK(CBB_init_fixed(&cbb, alg, sizeof(alg)) && pki_sig_add_alg(&cbb, ca->key_type, &err) &&
         CBB_finish(&cbb, NULL, &alg_len) && CBS_mem_equal(&crl.sig_alg, alg, alg_len));
#undef FCHECK
  pki_crl_cleanup(&crl);
  ok = ok && bssl_checks(der, len, ca, p, entries, num);
  free(der);
  return ok;
}

/* ---- Round trips ------------------------------------------------------- */

TEST(reasons) {
  static const char *const names[] = {
      "unspecified",        "keyCompromise",   "cACompromise",
      "affiliationChanged", "superseded",      "cessationOfOperation",
      "certificateHold",    NULL,              "removeFromCRL",
      "privilegeWithdrawn", "aACompromise",
  };
  for (int r = -2; r <= 12; r++) {
    int valid = r >= 0 && r <= 10 && r != 7;
    CHECK(pki_crl_reason_valid(r) == valid);
    const char *name = pki_crl_reason_name(r);
    if (valid) {
      CHECK(name != NULL && strcmp(name, names[r]) == 0);
    } else {
      CHECK(name == NULL);
    }
  }
}

TEST(empty_crl) {
  REQUIRE(setup());
  pki_crl_params p = complete_params(1);
  CHECK(full_check(&g_p256, &p, NULL, 0));
  uint8_t *der = NULL;
  size_t len;
  REQUIRE(build_ok(&der, &len, &g_p256, &p, NULL, 0));
  /* 5.1.2.6: no revokedCertificates at all; nextUpdate is followed by
   * crlExtensions [0]. */
  pki_crl crl;
  REQUIRE(parse_ok(&crl, der, len));
  CHECK(crl.entries == NULL && crl.num_entries == 0);
  CBS tbs = crl.tbs, seq;
  uint64_t version;
  REQUIRE(CBS_get_asn1(&tbs, &seq, CBS_ASN1_SEQUENCE));
  CHECK(CBS_get_asn1_uint64(&seq, &version) && version == 1);
  CHECK(CBS_get_asn1(&seq, NULL, CBS_ASN1_SEQUENCE) && CBS_get_asn1(&seq, NULL, CBS_ASN1_SEQUENCE) &&
        CBS_get_asn1(&seq, NULL, CBS_ASN1_UTCTIME) && CBS_get_asn1(&seq, NULL, CBS_ASN1_UTCTIME));
  CHECK(CBS_peek_asn1_tag(&seq, TAG_EXPLICIT(0)));
  pki_crl_cleanup(&crl);
  CHECK(crl.entries == NULL);
  pki_crl_cleanup(&crl); /* twice is fine */
  free(der);
}

TEST(one_entry_each_reason) {
  REQUIRE(setup());
  for (int r = -1; r <= 10; r++) {
    if (r == 7) continue;
    pki_crl_entry e = make_entry(42, r, 0);
    pki_crl_params p = complete_params(2);
    if (r == PKI_CRL_REASON_REMOVE_FROM_CRL) {
      /* 5.3.1: only in a delta. */
      p.is_delta = 1;
      p.base_number = 1;
    }
    if (!full_check(&g_p256, &p, &e, 1)) {
      fprintf(stderr, "  reason %d\n", r);
      CHECK(0);
    }
  }
}

TEST(invalidity_dates) {
  REQUIRE(setup());
  /* GeneralizedTime whatever the year: 1999, the last second of 2049, 2050,
   * year 1 and 9999. */
  int64_t dates[] = {946684799,          INT64_C(2524607999), INT64_C(2524608000),
                     INT64_C(-62135596800), INT64_C(253402300799), NOW - 3 * DAY};
  pki_crl_entry entries[6];
  for (size_t i = 0; i < 6; i++) {
    entries[i] = make_entry(100 + i, (int)i % 2 ? PKI_CRL_REASON_KEY_COMPROMISE : -1, dates[i]);
  }
  pki_crl_params p = complete_params(3);
  CHECK(full_check(&g_p256, &p, entries, 6));
  /* And revocation dates on both sides of 2050 (UTCTime, then
   * GeneralizedTime: 5.1.2.6 follows 4.1.2.5), and the extremes. */
  int64_t rdates[] = {INT64_C(-631152000), 0, INT64_C(2524607999), INT64_C(2524608000),
                      INT64_C(253402300799)};
  for (size_t i = 0; i < 5; i++) entries[i] = make_entry(200 + i, 0, 0), entries[i].revocation_date = rdates[i];
  CHECK(full_check(&g_p256, &p, entries, 5));
}

TEST(serials) {
  REQUIRE(setup());
  pki_crl_entry e[8];
  for (size_t i = 0; i < 8; i++) e[i] = make_entry(300 + i, 1, 0);
  e[0].serial.len = 1, e[0].serial.bytes[0] = 0x01;
  e[1].serial.len = 1, e[1].serial.bytes[0] = 0x80; /* a sign octet goes before */
  e[2].serial.len = 20, memset(e[2].serial.bytes, 0x7f, 20);
  e[3].serial.len = 20, memset(e[3].serial.bytes, 0xff, 20); /* 21 content octets */
  /* Leading zero octets are not part of the value (4.1.2.2 INTEGER). */
  e[4].serial.len = 3, e[4].serial.bytes[0] = 0, e[4].serial.bytes[1] = 0, e[4].serial.bytes[2] = 9;
  e[5].serial.len = 2, e[5].serial.bytes[0] = 0, e[5].serial.bytes[1] = 0x90;
  pki_crl_params p = complete_params(4);
  CHECK(full_check(&g_p256, &p, e, 8));
  uint8_t *der = NULL;
  size_t len;
  REQUIRE(build_ok(&der, &len, &g_p256, &p, e, 8));
  pki_crl crl;
  REQUIRE(parse_ok(&crl, der, len));
  CHECK(crl.entries[3].serial.len == 20 && crl.entries[3].serial.bytes[0] == 0xff);
  CHECK(crl.entries[4].serial.len == 1 && crl.entries[4].serial.bytes[0] == 9);
  CHECK(crl.entries[5].serial.len == 1 && crl.entries[5].serial.bytes[0] == 0x90);
  pki_crl_cleanup(&crl);
  free(der);
}

TEST(delta_and_complete) {
  REQUIRE(setup());
  pki_crl_entry e[3] = {make_entry(1, 1, 0), make_entry(2, 6, 0), make_entry(3, 8, 0)};
  pki_crl_params complete = complete_params(10);
  complete.freshest_url = "http://crl.example.test/infrastructure-ca/delta.crl";
  CHECK(full_check(&g_p256, &complete, e, 2));
  pki_crl_params delta = complete_params(11);
  delta.is_delta = 1;
  delta.base_number = 10;
  CHECK(full_check(&g_p256, &delta, e, 3));
  /* Big numbers: a sign octet before the high bit; all 64 bits. */
  delta.number = UINT64_MAX;
  delta.base_number = UINT64_C(1) << 63;
  CHECK(full_check(&g_p256, &delta, e, 0));
  complete.number = UINT64_MAX - 1;
  complete.freshest_url = NULL;
  CHECK(full_check(&g_p256, &complete, e, 2));
  /* The longest URL the parser can hand back. */
  char url[512];
  memset(url, 'a', sizeof(url));
  memcpy(url, "http://", 7);
  url[511] = '\0';
  complete.freshest_url = url;
  CHECK(full_check(&g_p256, &complete, NULL, 0));
}

TEST(key_types) {
  REQUIRE(setup());
  const pki_issuer *cas[] = {&g_p256, &g_p384, &g_ed};
  pki_crl_entry e[4] = {make_entry(1, 1, NOW - DAY), make_entry(2, -1, 0), make_entry(3, 4, 0),
                        make_entry(4, 0, NOW)};
  for (size_t i = 0; i < 3; i++) {
    pki_crl_params p = complete_params(5 + i);
    CHECK(full_check(cas[i], &p, e, 4));
    uint8_t *der = NULL;
    size_t len;
    REQUIRE(build_ok(&der, &len, cas[i], &p, e, 4));
    pki_crl crl;
    REQUIRE(parse_ok(&crl, der, len));
    /* Not under another CA's key. */
    const pki_issuer *other = cas[(i + 1) % 3];
    pki_err err;
    CHECK(!pki_crl_verify(&crl, other->key, &err));
    X509_CRL *x = bssl_crl(der, len);
    CHECK(x != NULL && X509_CRL_verify(x, other->key) != 1);
    X509_CRL_free(x);
    ERR_clear_error();
    /* Any changed octet of the signed part breaks the signature. */
    size_t off = (size_t)(CBS_data(&crl.tbs) - der);
    for (size_t j = off; j < off + CBS_len(&crl.tbs); j += 5) {
      der[j] ^= 0x20;
      pki_crl c2;
      pki_err e2;
      if (pki_crl_parse(&c2, der, len, &e2)) {
        CHECK(!pki_crl_verify(&c2, cas[i]->key, &e2) && e2.code == PKI_ERR_AUTH);
        pki_crl_cleanup(&c2);
      }
      der[j] ^= 0x20;
    }
    pki_crl_cleanup(&crl);
    free(der);
  }
}

TEST(many_random_entries) {
  REQUIRE(setup());
  enum { N = 5000 };
  pki_crl_entry *e = malloc(N * sizeof(*e));
  REQUIRE(e != NULL);
  for (int delta = 0; delta < 2; delta++) {
    for (size_t i = 0; i < N; i++) e[i] = random_entry(delta, (uint32_t)i);
    pki_crl_params p = complete_params(1000 + (uint64_t)delta);
    p.is_delta = delta;
    p.base_number = delta ? 999 : 0;
    p.freshest_url = delta ? NULL : "http://crl.example.test/d.crl";
    CHECK(full_check(delta ? &g_ed : &g_p256, &p, e, N));
  }
  /* Entries of 52 octets: counts that put the list, the TBSCertList and
   * the whole CRL on either side of the boundaries of DER's length forms
   * (128, 256 and 65536 octets). */
  for (size_t i = 0; i < 1300; i++) e[i] = make_entry(i, 1, 0);
  for (size_t n = 0; n < 1280; n = n == 12 ? 1240 : n + 1) {
    pki_crl_params p = complete_params(7);
    if (!full_check(&g_p256, &p, e, n)) {
      fprintf(stderr, "  n = %zu\n", n);
      CHECK(0);
      break;
    }
  }
  free(e);
}

/* same_as_reference builds and compares the TBSCertList with ref_tbs
 * alone (no BoringSSL, no signature check): for large sweeps. */
static int same_as_reference(const pki_issuer *ca, const pki_crl_params *p,
                             const pki_crl_entry *entries, size_t num) {
  uint8_t *der = NULL;
  size_t len, ref_len;
  if (!build_ok(&der, &len, ca, p, entries, num)) return 0;
  pki_crl crl;
  int ok = parse_ok(&crl, der, len);
  uint8_t *ref = ref_tbs(&ref_len, ca, p, entries, num);
  ok = ok && ref != NULL && CBS_mem_equal(&crl.tbs, ref, ref_len) && crl.num_entries == num;
  for (size_t i = 0; ok && i < num; i++) ok = same_entry(&crl.entries[i], &entries[i]);
  OPENSSL_free(ref);
  pki_crl_cleanup(&crl);
  free(der);
  return ok;
}

/* The builder writes entry times straight into its buffer: they must be
 * the octets the CBB reference writes with pki_der_add_time and
 * pki_der_add_generalized_time (whose dates cert_test's time_matches_libc
 * holds to gmtime_r's), over the whole range each takes. */
TEST(entry_times_match_der) {
  REQUIRE(setup());
  enum { N = 20000 };
  pki_crl_entry *e = malloc(N * sizeof(*e));
  REQUIRE(e != NULL);
  const int64_t t1950 = INT64_C(-631152000), t10000 = INT64_C(253402300800);
  const int64_t t0000 = INT64_C(-62167219200);
  /* Edges: around the epoch, day and year ends, leap days (2000, 2400) and
   * the days that are not (2100, 1900), the 2049/2050 switch. */
  int64_t edges[] = {t1950, -1, 0, 1, 86399, 86400, 951782400 /* 2000-02-29 */,
                     951868800, 4107542399 /* 2100-02-28T23:59:59 */, 4107542400,
                     13574563200 /* 2400-02-29 */, INT64_C(2524607999), INT64_C(2524608000),
                     t10000 - 1, -2203891200 /* 1900-03-01 */, t0000};
  size_t num_edges = sizeof(edges) / sizeof(edges[0]);
  for (size_t i = 0; i < N; i++) {
    e[i] = make_entry(i, (int)(i % 3), 0);
    uint64_t r = rnd();
    e[i].revocation_date = t1950 + (int64_t)(r % (uint64_t)(t10000 - t1950));
    e[i].invalidity_date = t0000 + (int64_t)(rnd() % (uint64_t)(t10000 - t0000));
    if (i < num_edges) {
      if (edges[i] >= t1950) e[i].revocation_date = edges[i];
      e[i].invalidity_date = edges[i];
    }
    if (e[i].invalidity_date == 0) e[i].invalidity_date = 1;
  }
  pki_crl_params p = complete_params(77);
  CHECK(same_as_reference(&g_ed, &p, e, N));
  free(e);
}

/* ---- Signers ------------------------------------------------------------ */

typedef struct test_signer {
  EVP_PKEY *key;
  int calls;
  int fail;
  size_t sig_len; /* 0: a real signature; else junk of this length */
} test_signer;

static int test_sign(void *ctx, uint8_t **out, size_t *out_len, const uint8_t *data,
                     size_t data_len, pki_err *err) {
  test_signer *s = ctx;
  s->calls++;
  if (s->fail) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "test signer refuses");
    return 0;
  }
  if (s->sig_len == 0) return pki_sig_sign(out, out_len, s->key, data, data_len, err);
  *out = malloc(s->sig_len);
  if (*out == NULL) return 0;
  memset(*out, 0x5a, s->sig_len);
  *out_len = s->sig_len;
  return 1;
}

TEST(through_a_signer) {
  REQUIRE(setup());
  test_signer ts = {.key = g_p256.key};
  pki_signer with = {.sign = test_sign, .ctx = &ts};
  pki_crl_entry e[2] = {make_entry(1, 1, 0), make_entry(2, 2, 0)};
  pki_crl_params p = complete_params(20);
  uint8_t *der = NULL;
  size_t len;
  pki_err err;
  REQUIRE(pki_crl_build(&der, &len, &g_p256, &with, &p, e, 2, &err));
  CHECK(ts.calls == 1);
  pki_crl crl;
  REQUIRE(parse_ok(&crl, der, len));
  CHECK(pki_crl_verify(&crl, g_p256.key, &err));
  pki_crl_cleanup(&crl);
  free(der);
  /* Its failure is the build's, with its code. */
  ts.fail = 1;
  der = (uint8_t *)&err;
  CHECK(!pki_crl_build(&der, &len, &g_p256, &with, &p, e, 2, &err) &&
        err.code == PKI_ERR_UNAVAILABLE && der == NULL);
  /* Signatures of any length (a signer is not bound to pkid's key types):
   * the outer SEQUENCE's length form follows, whatever was guessed. */
  ts.fail = 0;
  for (size_t sl = 1; sl < 400; sl += 7) {
    ts.sig_len = sl;
    for (size_t n = 0; n < 4; n++) {
      REQUIRE(pki_crl_build(&der, &len, &g_p256, &with, &p, e, n % 3, &err));
      CHECK(parse_ok(&crl, der, len) && CBS_len(&crl.signature) == sl);
      pki_crl_cleanup(&crl);
      X509_CRL *x = bssl_crl(der, len);
      CHECK(x != NULL);
      X509_CRL_free(x);
      free(der);
    }
  }
}

/* ---- Arguments refused ------------------------------------------------- */

static int build_refused(const pki_issuer *ca, const pki_crl_params *p,
                         const pki_crl_entry *entries, size_t num, pki_err_code code) {
  uint8_t *der = (uint8_t *)"x";
  size_t len = 7;
  pki_err err;
  pki_err_clear(&err);
  if (pki_crl_build(&der, &len, ca, NULL, p, entries, num, &err)) {
    fprintf(stderr, "  built what should be refused\n");
    free(der);
    return 0;
  }
  if (err.code != code || err.msg[0] == '\0' || der != NULL || len != 0) {
    show("unexpected refusal", &err);
    return 0;
  }
  return 1;
}

TEST(arguments_refused) {
  REQUIRE(setup());
  pki_crl_entry good = make_entry(1, 1, 0);
  pki_crl_params p = complete_params(3);
  pki_crl_params q;
  q = p, q.next_update = q.this_update;
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  q = p, q.next_update = q.this_update - 1;
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  q = p, q.this_update = INT64_C(-631152001); /* 1949 */
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  q = p, q.next_update = INT64_C(253402300800); /* 10000 */
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  q = p, q.number = 0;
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  q = p, q.is_delta = 1, q.base_number = 3;
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  q = p, q.is_delta = 1, q.base_number = 0;
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  q = p, q.is_delta = 1, q.base_number = 2, q.freshest_url = "http://x/d.crl";
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  const char *bad_urls[] = {"", "http://a b/", "http://\x7f/"};
  for (size_t i = 0; i < 3; i++) {
    q = p, q.freshest_url = bad_urls[i];
    CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  }
  char long_url[513];
  memset(long_url, 'a', 512);
  long_url[512] = '\0';
  q = p, q.freshest_url = long_url;
  CHECK(build_refused(&g_p256, &q, NULL, 0, PKI_ERR_INVALID));
  CHECK(build_refused(&g_p256, &p, NULL, 1, PKI_ERR_INVALID));

  /* Entries: the one bad entry among good ones fails the whole CRL. */
  pki_crl_entry e[3] = {good, good, good};
  int bad_reasons[] = {-2, 7, 11, 8 /* in a complete CRL */};
  for (size_t i = 0; i < 4; i++) {
    e[1] = good, e[1].reason = bad_reasons[i];
    CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));
  }
  e[1] = good, e[1].serial.len = 0;
  CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));
  e[1] = good, e[1].serial.len = 21;
  CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));
  e[1] = good, e[1].serial.len = 3, memset(e[1].serial.bytes, 0, 3); /* zero */
  CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));
  e[1] = good, e[1].revocation_date = INT64_C(-631152001);
  CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));
  e[1] = good, e[1].revocation_date = INT64_C(253402300800);
  CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));
  e[1] = good, e[1].invalidity_date = INT64_C(253402300800);
  CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));
  e[1] = good, e[1].invalidity_date = INT64_C(-62167219201); /* year -1 */
  CHECK(build_refused(&g_p256, &p, e, 3, PKI_ERR_INVALID));

  /* The CA: a key id, a Name, a key type that signs. */
  pki_issuer ca = g_p256;
  ca.ski_len = 0;
  CHECK(build_refused(&ca, &p, NULL, 0, PKI_ERR_INVALID));
  ca = g_p256;
  ca.name_len = 2; /* SEQUENCE { } */
  uint8_t empty_name[] = {0x30, 0x00};
  ca.name = empty_name;
  CHECK(build_refused(&ca, &p, NULL, 0, PKI_ERR_INVALID));
  uint8_t not_name[] = {0x04, 0x01, 0x00};
  ca.name = not_name, ca.name_len = sizeof(not_name);
  CHECK(build_refused(&ca, &p, NULL, 0, PKI_ERR_INVALID));
  ca = g_p256;
  ca.key_type = PKI_KEY_RSA;
  CHECK(build_refused(&ca, &p, NULL, 0, PKI_ERR_UNSUPPORTED));
  CHECK(build_refused(NULL, &p, NULL, 0, PKI_ERR_INVALID));
}

/* ---- CRLs made here, field by field ------------------------------------ */

/* A byte string the hostile cases are assembled from. */
typedef struct bytes {
  uint8_t data[4096];
  size_t len;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
  if (b->len + n > sizeof(b->data)) abort();
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
}

/* tlv appends one element with a short or long length. |tag| is a CBS
 * tag (the class and constructed bits high), of number under 31. */
static void tlv(bytes *b, unsigned tag, const void *content, size_t n) {
  uint8_t h[4] = {(uint8_t)((tag >> 24) | (tag & 0x1f))};
  size_t hl = 2;
  if (n < 128) {
    h[1] = (uint8_t)n;
  } else if (n < 256) {
    h[1] = 0x81, h[2] = (uint8_t)n, hl = 3;
  } else {
    h[1] = 0x82, h[2] = (uint8_t)(n >> 8), h[3] = (uint8_t)n, hl = 4;
  }
  put(b, h, hl);
  put(b, content, n);
}

static void tlv_bytes(bytes *b, unsigned tag, const bytes *content) {
  tlv(b, tag, content->data, content->len);
}

/* ext appends an Extension: critical -1 leaves the BOOLEAN out, 0 writes
 * an explicit FALSE (not DER), 1 TRUE. */
static void ext(bytes *b, const uint8_t *oid, size_t oid_len, int critical, const void *value,
                size_t value_len) {
  bytes e = {.len = 0};
  tlv(&e, CBS_ASN1_OBJECT, oid, oid_len);
  if (critical >= 0) {
    uint8_t v = critical ? 0xff : 0x00;
    tlv(&e, CBS_ASN1_BOOLEAN, &v, 1);
  }
  tlv(&e, CBS_ASN1_OCTETSTRING, value, value_len);
  tlv_bytes(b, CBS_ASN1_SEQUENCE, &e);
}

static const uint8_t kOidUnknown[] = {0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x01};
static const uint8_t kOidCertificateIssuer[] = {0x55, 0x1d, 0x1d};
static const uint8_t kNull[] = {0x05, 0x00};
static const uint8_t kUtc[] = "260101000000Z";

typedef struct crl_opts {
  int version;             /* -1: none (v1); else the INTEGER's value */
  int alg_mismatch;        /* the signature field says ECDSA with SHA-384 */
  const char *this_update; /* NULL: kUtc */
  unsigned this_tag;       /* 0: UTCTime */
  int no_next;
  int revoked;             /* 0: absent, 1: empty SEQUENCE, 2: the entries below */
  const bytes *entries;    /* the revokedCertificates contents */
  const bytes *exts;       /* crlExtensions' Extension elements; NULL: no [0] */
  int empty_exts;          /* crlExtensions [0] with an empty SEQUENCE */
  uint8_t unused_bits;     /* of the signature BIT STRING */
  int trailing;
} crl_opts;

/* entry appends one revoked certificate. */
static void entry(bytes *b, const uint8_t *serial, size_t serial_len, const bytes *exts,
                  int empty_exts) {
  bytes e = {.len = 0};
  tlv(&e, CBS_ASN1_INTEGER, serial, serial_len);
  tlv(&e, CBS_ASN1_UTCTIME, kUtc, 13);
  if (exts != NULL) tlv_bytes(&e, CBS_ASN1_SEQUENCE, exts);
  if (empty_exts) tlv(&e, CBS_ASN1_SEQUENCE, NULL, 0);
  tlv_bytes(b, CBS_ASN1_SEQUENCE, &e);
}

/* make_crl assembles a CRL of the P-256 CA from |o| and signs it. */
static void make_crl(bytes *out, const crl_opts *o) {
  pki_err err;
  bytes tbs = {.len = 0}, alg = {.len = 0}, alg384 = {.len = 0};
  CBB cbb;
  CBB_init_fixed(&cbb, alg.data, sizeof(alg.data));
  pki_sig_add_alg(&cbb, PKI_KEY_ECDSA_P256, &err);
  CBB_finish(&cbb, NULL, &alg.len);
  CBB_init_fixed(&cbb, alg384.data, sizeof(alg384.data));
  pki_sig_add_alg(&cbb, PKI_KEY_ECDSA_P384, &err);
  CBB_finish(&cbb, NULL, &alg384.len);
  if (o->version >= 0) {
    uint8_t v = (uint8_t)o->version;
    tlv(&tbs, CBS_ASN1_INTEGER, &v, 1);
  }
  put(&tbs, o->alg_mismatch ? alg384.data : alg.data, o->alg_mismatch ? alg384.len : alg.len);
  put(&tbs, g_p256.name, g_p256.name_len);
  const char *tu = o->this_update != NULL ? o->this_update : (const char *)kUtc;
  tlv(&tbs, o->this_tag ? o->this_tag : CBS_ASN1_UTCTIME, tu, strlen(tu));
  if (!o->no_next) tlv(&tbs, CBS_ASN1_UTCTIME, "260108000000Z", 13);
  if (o->revoked == 1) tlv(&tbs, CBS_ASN1_SEQUENCE, NULL, 0);
  if (o->revoked == 2) tlv_bytes(&tbs, CBS_ASN1_SEQUENCE, o->entries);
  if (o->exts != NULL || o->empty_exts) {
    bytes seq = {.len = 0};
    if (o->exts != NULL) tlv_bytes(&seq, CBS_ASN1_SEQUENCE, o->exts);
    else tlv(&seq, CBS_ASN1_SEQUENCE, NULL, 0);
    tlv_bytes(&tbs, TAG_EXPLICIT(0), &seq);
  }
  bytes tbs_el = {.len = 0};
  tlv_bytes(&tbs_el, CBS_ASN1_SEQUENCE, &tbs);
  uint8_t *sig = NULL;
  size_t sig_len = 0;
  if (!pki_sig_sign(&sig, &sig_len, g_p256.key, tbs_el.data, tbs_el.len, &err)) abort();
  bytes list = {.len = 0}, bits = {.len = 0};
  put(&list, tbs_el.data, tbs_el.len);
  put(&list, alg.data, alg.len);
  put(&bits, &o->unused_bits, 1);
  put(&bits, sig, sig_len);
  free(sig);
  /* Unused bits must be zero: a last octet of zeros keeps the BIT STRING
   * valid, so that only its count of unused bits is wrong. */
  if (o->unused_bits != 0) put(&bits, "", 1);
  tlv_bytes(&list, CBS_ASN1_BITSTRING, &bits);
  out->len = 0;
  tlv_bytes(out, CBS_ASN1_SEQUENCE, &list);
  if (o->trailing) put(out, "", 1);
}

/* pkid_exts appends the AKI and a cRLNumber of 1. */
static void pkid_exts(bytes *b) {
  bytes aki = {.len = 0}, kid = {.len = 0};
  tlv(&kid, TAG_IMPLICIT(0), g_p256.ski, g_p256.ski_len);
  tlv_bytes(&aki, CBS_ASN1_SEQUENCE, &kid);
  ext(b, PKI_OID_AUTHORITY_KEY_ID, sizeof(PKI_OID_AUTHORITY_KEY_ID), -1, aki.data, aki.len);
  static const uint8_t one[] = {0x02, 0x01, 0x01};
  ext(b, PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), -1, one, sizeof(one));
}

static int parse_code(const crl_opts *o, pki_crl *crl, pki_err_code *code) {
  bytes der;
  make_crl(&der, o);
  pki_err err;
  pki_err_clear(&err);
  int ok = pki_crl_parse(crl, der.data, der.len, &err);
  *code = ok ? PKI_OK : err.code;
  if (!ok && (err.msg[0] == '\0' || crl->entries != NULL || crl->num_entries != 0)) return -1;
  if (ok) {
    /* What parses must verify: make_crl signed it. */
    if (!pki_crl_verify(crl, g_p256.key, &err)) {
      show("verify", &err);
      pki_crl_cleanup(crl);
      return -1;
    }
  }
  return ok;
}

static int accepted(const crl_opts *o, pki_crl *crl) {
  pki_err_code code;
  int r = parse_code(o, crl, &code);
  if (r != 1) fprintf(stderr, "  refused (%s)\n", pki_err_code_name(code));
  return r == 1;
}

static int refused(const crl_opts *o, pki_err_code want) {
  pki_crl crl;
  pki_err_code code;
  int r = parse_code(o, &crl, &code);
  if (r == 1) {
    pki_crl_cleanup(&crl);
    fprintf(stderr, "  accepted what should be refused\n");
    return 0;
  }
  if (r < 0 || code != want) {
    fprintf(stderr, "  refused with %s, not %s\n", pki_err_code_name(code),
                    pki_err_code_name(want));
    return 0;
  }
  return 1;
}

static const uint8_t kSerial[] = {0x01, 0x02, 0x03};

TEST(v1_and_other_issuers) {
  REQUIRE(setup());
  pki_crl crl;
  /* v1: no version, no extensions, an entry; GeneralizedTime before 2050
   * (not what 5.1.2.4 asks of issuers, but readable); no nextUpdate. */
  bytes entries = {.len = 0};
  entry(&entries, kSerial, sizeof(kSerial), NULL, 0);
  crl_opts o = {.version = -1, .this_update = "20260101000000Z",
                .this_tag = CBS_ASN1_GENERALIZEDTIME, .no_next = 1, .revoked = 2,
                .entries = &entries};
  REQUIRE(accepted(&o, &crl));
  CHECK(crl.version == 1 && crl.this_update == NOW && crl.next_update == 0);
  CHECK(!crl.has_number && crl.aki_len == 0 && !crl.is_delta && crl.freshest_url[0] == '\0');
  CHECK(crl.num_entries == 1 && crl.entries[0].serial.len == 3 && crl.entries[0].reason == -1 &&
        crl.entries[0].invalidity_date == 0 && crl.entries[0].revocation_date == NOW);
  pki_crl_cleanup(&crl);

  /* v2 with what another issuer writes: an unknown non-critical extension
   * in the list and in an entry, an AKI with issuer and serial, a
   * 20-octet cRLNumber, a reasonCode of unspecified written out, and a
   * freshestCRL whose first point has a DNS name before two URIs. */
  bytes exts = {.len = 0}, aki = {.len = 0}, aki_in = {.len = 0}, gn = {.len = 0};
  tlv(&aki_in, TAG_IMPLICIT(0), "\x01\x02\x03\x04", 4);
  tlv(&gn, TAG_IMPLICIT(2), "ca.example", 10);
  tlv_bytes(&aki_in, TAG_EXPLICIT(1), &gn);
  tlv(&aki_in, TAG_IMPLICIT(2), "\x05", 1);
  tlv_bytes(&aki, CBS_ASN1_SEQUENCE, &aki_in);
  ext(&exts, PKI_OID_AUTHORITY_KEY_ID, sizeof(PKI_OID_AUTHORITY_KEY_ID), -1, aki.data, aki.len);
  uint8_t number[22] = {0x02, 20};
  memset(number + 2, 0x7f, 20);
  ext(&exts, PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), -1, number, sizeof(number));
  ext(&exts, kOidUnknown, sizeof(kOidUnknown), -1, kNull, sizeof(kNull));
  bytes names = {.len = 0}, full = {.len = 0}, dps = {.len = 0}, dp2 = {.len = 0};
  tlv(&names, TAG_IMPLICIT(2), "crl.example", 11);
  tlv(&names, TAG_IMPLICIT(6), "http://crl.example/delta.crl", 28);
  tlv(&names, TAG_IMPLICIT(6), "ldap://crl.example/x", 20);
  tlv_bytes(&full, TAG_EXPLICIT(0), &names);
  tlv_bytes(&dp2, TAG_EXPLICIT(0), &full);
  tlv(&dp2, TAG_IMPLICIT(1), "\x07\x80", 2); /* reasons: keyCompromise */
  tlv_bytes(&dps, CBS_ASN1_SEQUENCE, &dp2);
  bytes value = {.len = 0};
  tlv_bytes(&value, CBS_ASN1_SEQUENCE, &dps);
  ext(&exts, PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), -1, value.data, value.len);
  bytes eexts = {.len = 0};
  ext(&eexts, kOidUnknown, sizeof(kOidUnknown), -1, kNull, sizeof(kNull));
  static const uint8_t unspecified[] = {0x0a, 0x01, 0x00};
  ext(&eexts, PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1, unspecified,
      sizeof(unspecified));
  entries.len = 0;
  uint8_t zero = 0;
  entry(&entries, &zero, 1, &eexts, 0); /* serial 0: not pkid's, but well-formed */
  entry(&entries, kSerial, sizeof(kSerial), NULL, 0);
  o = (crl_opts){.version = 1, .revoked = 2, .entries = &entries, .exts = &exts};
  REQUIRE(accepted(&o, &crl));
  CHECK(crl.version == 2 && crl.has_number && crl.number_len == 20 &&
        crl.number_u64 == UINT64_MAX && crl.number[0] == 0x7f);
  CHECK(crl.aki_len == 4 && memcmp(crl.aki, "\x01\x02\x03\x04", 4) == 0);
  CHECK(strcmp(crl.freshest_url, "http://crl.example/delta.crl") == 0);
  CHECK(crl.num_entries == 2 && crl.entries[0].reason == 0 && crl.entries[0].serial.len == 1 &&
        crl.entries[0].serial.bytes[0] == 0);
  pki_crl_cleanup(&crl);

  /* A cRLNumber of 20 octets of value behind a sign octet; zero. */
  exts.len = 0;
  uint8_t signed_number[23] = {0x02, 21, 0x00};
  memset(signed_number + 3, 0xff, 20);
  ext(&exts, PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), -1, signed_number,
      sizeof(signed_number));
  o = (crl_opts){.version = 1, .exts = &exts};
  REQUIRE(accepted(&o, &crl));
  CHECK(crl.number_len == 20 && crl.number[0] == 0xff && crl.number_u64 == UINT64_MAX);
  pki_crl_cleanup(&crl);
  exts.len = 0;
  static const uint8_t zero_number[] = {0x02, 0x01, 0x00};
  ext(&exts, PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), -1, zero_number,
      sizeof(zero_number));
  REQUIRE(accepted(&o, &crl));
  CHECK(crl.has_number && crl.number_len == 1 && crl.number[0] == 0 && crl.number_u64 == 0);
  pki_crl_cleanup(&crl);
}

TEST(malformed_classes_refused) {
  REQUIRE(setup());
  bytes good_entries = {.len = 0}, base = {.len = 0};
  entry(&good_entries, kSerial, sizeof(kSerial), NULL, 0);
  pkid_exts(&base);
  crl_opts o = {.version = 1, .revoked = 2, .entries = &good_entries, .exts = &base};
  pki_crl crl;
  REQUIRE(accepted(&o, &crl));
  pki_crl_cleanup(&crl);

  /* Versions: v1 written out (OPTIONAL, and if present v2: 5.1.2.1), v3. */
  o.version = 0;
  CHECK(refused(&o, PKI_ERR_INVALID));
  o.version = 2;
  CHECK(refused(&o, PKI_ERR_INVALID));
  /* Extensions in a v1 CRL: of the list, or of an entry only. */
  o.version = -1;
  CHECK(refused(&o, PKI_ERR_INVALID));
  bytes with_ext = good_entries, reason = {.len = 0};
  ext(&reason, PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1, "\x0a\x01\x01", 3);
  entry(&with_ext, kSerial, sizeof(kSerial), &reason, 0);
  o.exts = NULL, o.entries = &with_ext;
  CHECK(refused(&o, PKI_ERR_INVALID));
  o.version = 1;
  CHECK(accepted(&o, &crl) && crl.entries[1].reason == 1);
  pki_crl_cleanup(&crl);
  o.exts = &base, o.entries = &good_entries;
  /* 5.1.1.2: the two AlgorithmIdentifiers differ. */
  o.alg_mismatch = 1;
  CHECK(refused(&o, PKI_ERR_INVALID));
  o.alg_mismatch = 0;
  /* 5.1.2.6: an empty revokedCertificates. */
  o.revoked = 1;
  CHECK(refused(&o, PKI_ERR_INVALID));
  o.revoked = 2;
  o.empty_exts = 1, o.exts = NULL;
  CHECK(refused(&o, PKI_ERR_INVALID));
  o.empty_exts = 0, o.exts = &base;
  o.unused_bits = 1;
  CHECK(refused(&o, PKI_ERR_INVALID));
  o.unused_bits = 0;
  o.trailing = 1;
  CHECK(refused(&o, PKI_ERR_INVALID));
  o.trailing = 0;
  /* Times: fractions, no Z, 31 February, UTCTime with 4-digit years. */
  const char *bad_times[] = {"260101000000.5Z", "260101000000", "260231000000Z",
                             "20260101000000Z"};
  for (size_t i = 0; i < 4; i++) {
    o.this_update = bad_times[i];
    CHECK(refused(&o, PKI_ERR_INVALID));
  }
  o.this_update = NULL;

  /* crlExtensions: each case is the pkid pair plus one more. */
  struct {
    const uint8_t *oid;
    size_t oid_len;
    int critical;
    const uint8_t *value;
    size_t value_len;
    pki_err_code code;
  } list_cases[] = {
      {kOidUnknown, sizeof(kOidUnknown), 1, kNull, 2, PKI_ERR_UNSUPPORTED},
      /* 5.2.5: pkid reads no partitioned CRL. */
      {PKI_OID_ISSUING_DISTRIBUTION_POINT, sizeof(PKI_OID_ISSUING_DISTRIBUTION_POINT), 1,
       (const uint8_t *)"\x30\x03\x81\x01\xff", 5, PKI_ERR_UNSUPPORTED},
      {kOidUnknown, sizeof(kOidUnknown), 0, kNull, 2, PKI_ERR_INVALID}, /* FALSE written */
      {PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), -1, (const uint8_t *)"\x02\x01\x02", 3,
       PKI_ERR_INVALID}, /* twice */
      {PKI_OID_DELTA_CRL_INDICATOR, sizeof(PKI_OID_DELTA_CRL_INDICATOR), 1,
       (const uint8_t *)"\x02\x01\xff", 3, PKI_ERR_INVALID}, /* negative */
      {PKI_OID_DELTA_CRL_INDICATOR, sizeof(PKI_OID_DELTA_CRL_INDICATOR), 1,
       (const uint8_t *)"\x02\x02\x00\x01", 4, PKI_ERR_INVALID}, /* not minimal */
      {PKI_OID_DELTA_CRL_INDICATOR, sizeof(PKI_OID_DELTA_CRL_INDICATOR), 1,
       (const uint8_t *)"\x02\x01\x01\x00", 4, PKI_ERR_INVALID}, /* trailing */
      {PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), -1, (const uint8_t *)"\x30\x00", 2,
       PKI_ERR_INVALID}, /* no DistributionPoint */
      {PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), -1,
       (const uint8_t *)"\x30\x02\x30\x00", 4, PKI_ERR_INVALID}, /* an empty one */
      {PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), -1,
       (const uint8_t *)"\x30\x0a\x30\x08\xa0\x06\xa0\x04\x86\x02\x68\x20", 12,
       PKI_ERR_INVALID}, /* a space in the URI */
      {PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), -1,
       (const uint8_t *)"\x30\x0a\x30\x08\xa0\x06\xa0\x04\x16\x02\x68\x68", 12,
       PKI_ERR_INVALID}, /* a GeneralName without a context tag */
      {PKI_OID_FRESHEST_CRL, sizeof(PKI_OID_FRESHEST_CRL), -1,
       (const uint8_t *)"\x30\x06\x30\x04\xa0\x02\xa0\x00", 8,
       PKI_ERR_INVALID}, /* an empty fullName */
      {PKI_OID_AUTHORITY_KEY_ID, sizeof(PKI_OID_AUTHORITY_KEY_ID), -1,
       (const uint8_t *)"\x30\x03\x80\x01\x01", 5, PKI_ERR_INVALID}, /* twice */
  };
  for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
    bytes exts = base;
    ext(&exts, list_cases[i].oid, list_cases[i].oid_len, list_cases[i].critical,
        list_cases[i].value, list_cases[i].value_len);
    o.exts = &exts;
    if (!refused(&o, list_cases[i].code)) {
      fprintf(stderr, "  list case %zu\n", i);
      CHECK(0);
    }
  }
  /* An unknown non-critical one is skipped. */
  bytes exts = base;
  ext(&exts, kOidUnknown, sizeof(kOidUnknown), -1, kNull, 2);
  o.exts = &exts;
  CHECK(accepted(&o, &crl));
  pki_crl_cleanup(&crl);
  /* cRLNumber over 20 octets; a key identifier over 64. */
  exts.len = 0;
  uint8_t big[24] = {0x02, 21};
  memset(big + 2, 0x11, 21);
  ext(&exts, PKI_OID_CRL_NUMBER, sizeof(PKI_OID_CRL_NUMBER), -1, big, 23);
  CHECK(refused(&o, PKI_ERR_INVALID));
  exts.len = 0;
  uint8_t kid[69] = {0x30, 67, 0x80, 65};
  ext(&exts, PKI_OID_AUTHORITY_KEY_ID, sizeof(PKI_OID_AUTHORITY_KEY_ID), -1, kid, sizeof(kid));
  CHECK(refused(&o, PKI_ERR_UNSUPPORTED));
  o.exts = &base;

  /* Entries. */
  struct {
    const uint8_t *oid;
    size_t oid_len;
    int critical;
    const uint8_t *value;
    size_t value_len;
    pki_err_code code;
  } entry_cases[] = {
      {kOidUnknown, sizeof(kOidUnknown), 1, kNull, 2, PKI_ERR_UNSUPPORTED},
      /* 5.3.3: indirect CRLs are not read. */
      {kOidCertificateIssuer, sizeof(kOidCertificateIssuer), 1,
       (const uint8_t *)"\x30\x04\x82\x02\x61\x62", 6, PKI_ERR_UNSUPPORTED},
      {PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1, (const uint8_t *)"\x0a\x01\x07", 3,
       PKI_ERR_INVALID},
      {PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1, (const uint8_t *)"\x0a\x01\x0b", 3,
       PKI_ERR_INVALID},
      {PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1, (const uint8_t *)"\x02\x01\x01", 3,
       PKI_ERR_INVALID}, /* INTEGER, not ENUMERATED */
      {PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1,
       (const uint8_t *)"\x0a\x02\x00\x01", 4, PKI_ERR_INVALID},
      {PKI_OID_INVALIDITY_DATE, sizeof(PKI_OID_INVALIDITY_DATE), -1,
       (const uint8_t *)"\x17\x0d" "260101000000Z", 15, PKI_ERR_INVALID}, /* UTCTime */
      {PKI_OID_INVALIDITY_DATE, sizeof(PKI_OID_INVALIDITY_DATE), -1,
       (const uint8_t *)"\x18\x0f" "20260101000000", 16, PKI_ERR_INVALID},
  };
  for (size_t i = 0; i < sizeof(entry_cases) / sizeof(entry_cases[0]); i++) {
    bytes eexts = {.len = 0}, entries = good_entries;
    ext(&eexts, entry_cases[i].oid, entry_cases[i].oid_len, entry_cases[i].critical,
        entry_cases[i].value, entry_cases[i].value_len);
    entry(&entries, kSerial, sizeof(kSerial), &eexts, 0);
    o.entries = &entries;
    if (!refused(&o, entry_cases[i].code)) {
      fprintf(stderr, "  entry case %zu\n", i);
      CHECK(0);
    }
  }
  /* A reasonCode twice; empty crlEntryExtensions. */
  bytes eexts = {.len = 0}, entries = good_entries;
  ext(&eexts, PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1, "\x0a\x01\x01", 3);
  ext(&eexts, PKI_OID_CRL_REASON, sizeof(PKI_OID_CRL_REASON), -1, "\x0a\x01\x01", 3);
  entry(&entries, kSerial, sizeof(kSerial), &eexts, 0);
  o.entries = &entries;
  CHECK(refused(&o, PKI_ERR_INVALID));
  entries = good_entries;
  entry(&entries, kSerial, sizeof(kSerial), NULL, 1);
  CHECK(refused(&o, PKI_ERR_INVALID));
  /* Serials: negative, over 20 octets, not minimal, empty. */
  uint8_t s[22];
  memset(s, 0x11, sizeof(s));
  struct {
    const uint8_t *serial;
    size_t len;
    pki_err_code code;
  } serial_cases[] = {
      {(const uint8_t *)"\x80", 1, PKI_ERR_UNSUPPORTED},
      {s, 21, PKI_ERR_INVALID},
      {(const uint8_t *)"\x00\x01", 2, PKI_ERR_INVALID},
      {s, 0, PKI_ERR_INVALID},
  };
  for (size_t i = 0; i < sizeof(serial_cases) / sizeof(serial_cases[0]); i++) {
    entries = good_entries;
    entry(&entries, serial_cases[i].serial, serial_cases[i].len, NULL, 0);
    o.entries = &entries;
    if (!refused(&o, serial_cases[i].code)) {
      fprintf(stderr, "  serial case %zu\n", i);
      CHECK(0);
    }
  }
  /* 20 octets of value behind a sign octet is the longest taken. */
  s[0] = 0x00;
  s[1] = 0xee;
  entries = good_entries;
  entry(&entries, s, 21, NULL, 0);
  CHECK(accepted(&o, &crl) && crl.entries[1].serial.len == 20 &&
        crl.entries[1].serial.bytes[0] == 0xee);
  pki_crl_cleanup(&crl);
}

/* ---- Hostile bytes ----------------------------------------------------- */

TEST(truncations_and_flips) {
  REQUIRE(setup());
  pki_crl_entry e[3] = {make_entry(1, 1, NOW - DAY), make_entry(2, -1, 0), make_entry(3, 6, 0)};
  pki_crl_params p = complete_params(9);
  p.freshest_url = "http://crl.example.test/delta.crl";
  uint8_t *der = NULL;
  size_t len;
  REQUIRE(build_ok(&der, &len, &g_p256, &p, e, 3));
  /* Every proper prefix is refused as malformed and leaves nothing. */
  for (size_t n = 0; n < len; n++) {
    uint8_t *cut = malloc(n > 0 ? n : 1); /* exactly |n|: ASan sees overreads */
    REQUIRE(cut != NULL);
    memcpy(cut, der, n);
    pki_crl crl;
    pki_err err;
    pki_err_clear(&err);
    int ok = pki_crl_parse(&crl, cut, n, &err);
    free(cut);
    if (ok || err.code != PKI_ERR_INVALID || crl.entries != NULL) {
      fprintf(stderr, "  prefix of %zu octets: %s\n", n, ok ? "accepted" : err.msg);
      CHECK(0);
      if (ok) pki_crl_cleanup(&crl);
      break;
    }
  }
  /* Every octet flipped, three ways: a refusal with a class, or a CRL that
   * no longer verifies. */
  static const uint8_t masks[] = {0x01, 0x80, 0xff};
  int parsed = 0;
  for (size_t i = 0; i < len; i++) {
    for (size_t m = 0; m < 3; m++) {
      der[i] ^= masks[m];
      pki_crl crl;
      pki_err err;
      pki_err_clear(&err);
      if (pki_crl_parse(&crl, der, len, &err)) {
        parsed++;
        CHECK(!pki_crl_verify(&crl, g_p256.key, &err));
        pki_crl_cleanup(&crl);
      } else {
        CHECK((err.code == PKI_ERR_INVALID || err.code == PKI_ERR_UNSUPPORTED) &&
              err.msg[0] != '\0');
      }
      der[i] ^= masks[m];
    }
  }
  CHECK(parsed > 0); /* flips inside the signed values still parse */
  /* A trailing octet, and two CRLs back to back. */
  uint8_t *two = malloc(2 * len);
  REQUIRE(two != NULL);
  memcpy(two, der, len);
  memcpy(two + len, der, len);
  pki_crl crl;
  pki_err err;
  CHECK(!pki_crl_parse(&crl, two, len + 1, &err) && err.code == PKI_ERR_INVALID);
  CHECK(!pki_crl_parse(&crl, two, 2 * len, &err) && err.code == PKI_ERR_INVALID);
  free(two);
  free(der);
  /* Not DER at all. */
  CHECK(!pki_crl_parse(&crl, (const uint8_t *)"", 0, &err) && err.code == PKI_ERR_INVALID);
  CHECK(!pki_crl_parse(&crl, (const uint8_t *)"\x30\x80\x00\x00", 4, &err) &&
        err.code == PKI_ERR_INVALID);
}

/* The array is bounded by the input: a list of many tiny SEQUENCEs is
 * refused before anything is allocated for it. */
TEST(allocation_bounded_by_input) {
  REQUIRE(setup());
  bytes entries = {.len = 0};
  for (int i = 0; i < 300; i++) tlv(&entries, CBS_ASN1_SEQUENCE, NULL, 0);
  crl_opts o = {.version = 1, .revoked = 2, .entries = &entries};
  bytes der;
  make_crl(&der, &o);
  pki_crl crl;
  pki_err err;
  failmalloc_arm(0);
  CHECK(!pki_crl_parse(&crl, der.data, der.len, &err) && err.code == PKI_ERR_INVALID);
  CHECK(failmalloc_disarm() == 0);
}

/* ---- PEM ---------------------------------------------------------------- */

TEST(pem) {
  REQUIRE(setup());
  pki_crl_entry e[2] = {make_entry(1, 1, 0), make_entry(2, 2, 0)};
  pki_crl_params p = complete_params(12);
  uint8_t *der = NULL;
  size_t len;
  REQUIRE(build_ok(&der, &len, &g_p256, &p, e, 2));
  char *pem = NULL;
  size_t pem_len;
  pki_err err;
  REQUIRE(pki_crl_to_pem(&pem, &pem_len, der, len, &err));
  CHECK(strncmp(pem, "-----BEGIN X509 CRL-----\n", 25) == 0);
  CHECK(pem_len == strlen(pem) && strstr(pem, "-----END X509 CRL-----\n") != NULL);
  const char *labels[] = {"X509 CRL"};
  uint8_t *back = NULL;
  size_t back_len;
  REQUIRE(pki_pem_decode(&back, &back_len, NULL, labels, 1, (const uint8_t *)pem, pem_len, 0,
                         &err));
  CHECK(back_len == len && memcmp(back, der, len) == 0);
  free(back);
  /* BoringSSL's PEM reader takes it as a CRL. */
  BIO *bio = BIO_new_mem_buf(pem, (long)pem_len);
  X509_CRL *x = bio != NULL ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
  CHECK(x != NULL && X509_CRL_verify(x, g_p256.key) == 1);
  X509_CRL_free(x);
  BIO_free(bio);
  free(pem);
  free(der);
}

/* ---- Failing allocations ------------------------------------------------ */

/* each_allocation_fails calls |call| with allocation N failing, for N = 1,
 * 2, ... until a call no longer reaches N. Every failed call must fail
 * with PKI_ERR_EXHAUSTED (or the class |also| tolerates, for reasons given
 * at the call) and free what it made; a call that gets past the failure
 * must produce |want|. */
static int each_allocation_fails(const char *what, int (*call)(void *ctx, pki_err *err),
                                 void *ctx, int (*same)(void *ctx), pki_err_code also) {
  int ok = 1;
  uint64_t n;
  for (n = 1; n < 100000; n++) {
    pki_err err;
    pki_err_clear(&err);
    failmalloc_arm(n);
    int r = call(ctx, &err);
    failmalloc_disarm();
    if (!failmalloc_fired(NULL)) {
      /* Past the last allocation: a plain call, which must succeed. */
      if (!r) {
        show(what, &err);
        ok = 0;
      } else if (!same(ctx)) {
        fprintf(stderr, "  %s: the output differs\n", what);
        ok = 0;
      }
      break;
    }
    if (r) {
      if (!same(ctx)) {
        fprintf(stderr, "  %s: allocation %llu failed, the output differs\n", what,
                (unsigned long long)n);
        ok = 0;
      }
    } else if (err.code != PKI_ERR_EXHAUSTED && err.code != also) {
      fprintf(stderr, "  %s: allocation %llu failed as ", what, (unsigned long long)n);
      show("", &err);
      ok = 0;
    }
  }
  printf("  %s: %llu allocation points\n", what, (unsigned long long)n - 1);
  return ok;
}

typedef struct fm_build {
  const pki_crl_entry *entries;
  size_t num;
  const pki_crl_params *params;
  uint8_t *ref, *out;
  size_t ref_len, out_len;
} fm_build;

static int fm_build_call(void *ctx, pki_err *err) {
  fm_build *b = ctx;
  b->out = NULL;
  return pki_crl_build(&b->out, &b->out_len, &g_ed, NULL, b->params, b->entries, b->num, err);
}

static int fm_build_same(void *ctx) {
  fm_build *b = ctx;
  int same = b->out_len == b->ref_len && memcmp(b->out, b->ref, b->ref_len) == 0;
  free(b->out);
  b->out = NULL;
  return same;
}

typedef struct fm_parse {
  const uint8_t *der;
  size_t len;
  pki_crl crl;
  size_t want_entries;
} fm_parse;

static int fm_parse_call(void *ctx, pki_err *err) {
  fm_parse *p = ctx;
  return pki_crl_parse(&p->crl, p->der, p->len, err);
}

static int fm_parse_same(void *ctx) {
  fm_parse *p = ctx;
  int same = p->crl.num_entries == p->want_entries;
  pki_crl_cleanup(&p->crl);
  return same;
}

typedef struct fm_pem {
  const uint8_t *der;
  size_t len;
  char *pem;
  size_t pem_len;
} fm_pem;

static int fm_pem_call(void *ctx, pki_err *err) {
  fm_pem *p = ctx;
  return pki_crl_to_pem(&p->pem, &p->pem_len, p->der, p->len, err);
}

static int fm_pem_same(void *ctx) {
  fm_pem *p = ctx;
  int same = p->pem_len > 0 && strncmp(p->pem, "-----BEGIN X509 CRL-----", 24) == 0;
  free(p->pem);
  p->pem = NULL;
  return same;
}

TEST(failing_allocations) {
  REQUIRE(setup());
  pki_crl_entry e[3] = {make_entry(1, 1, NOW - DAY), make_entry(2, -1, 0), make_entry(3, 6, 0)};
  pki_crl_params p = complete_params(9);
  p.freshest_url = "http://crl.example.test/delta.crl";
  /* Ed25519 signatures are deterministic: a build that got past a failed
   * allocation must give the very same octets. */
  fm_build b = {.entries = e, .num = 3, .params = &p};
  pki_err err;
  REQUIRE(pki_crl_build(&b.ref, &b.ref_len, &g_ed, NULL, &p, e, 3, &err));
  /* pki_sig_sign reports a failed allocation inside BoringSSL's signing as
   * PKI_ERR_INTERNAL ("signing failed"): lib/sig.c's, not this codec's. */
  CHECK(each_allocation_fails("pki_crl_build", fm_build_call, &b, fm_build_same,
                              PKI_ERR_INTERNAL));
  fm_parse fp = {.der = b.ref, .len = b.ref_len, .want_entries = 3};
  CHECK(each_allocation_fails("pki_crl_parse", fm_parse_call, &fp, fm_parse_same, PKI_OK));
  fm_pem pp = {.der = b.ref, .len = b.ref_len};
  CHECK(each_allocation_fails("pki_crl_to_pem", fm_pem_call, &pp, fm_pem_same, PKI_OK));
  free(b.ref);
}

int main(void) {
  RUN(reasons);
  RUN(empty_crl);
  RUN(one_entry_each_reason);
  RUN(invalidity_dates);
  RUN(serials);
  RUN(delta_and_complete);
  RUN(key_types);
  RUN(many_random_entries);
  RUN(entry_times_match_der);
  RUN(through_a_signer);
  RUN(arguments_refused);
  RUN(v1_and_other_issuers);
  RUN(malformed_classes_refused);
  RUN(truncations_and_flips);
  RUN(allocation_bounded_by_input);
  RUN(pem);
  RUN(failing_allocations);
  const pki_issuer *cas[] = {&g_p256, &g_p384, &g_ed};
  for (size_t i = 0; i < 3; i++) {
    EVP_PKEY_free(cas[i]->key);
    free(cas[i]->name);
  }
  return test_finish();
}
