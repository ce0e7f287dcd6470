/* csr_test.c: PKCS#10 requests: pki_csr_build and pki_csr_parse.
 *
 * Round trips for every subject key type pkid accepts, then requests that
 * must be refused, each with its error code and a message that says what is
 * wrong. Requests pkid would never build (other curves, small RSA keys, odd
 * versions, other signature algorithms) are made with BoringSSL's X509_REQ
 * API or, where it refuses to make them, by hand with CBB. */
#include "lib/csr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "lib/der.h"
#include "lib/key.h"
#include "lib/names.h"
#include "tests/unit/test.h"

/* RSA key generation is slow, under ASan especially: each size is made once
 * and shared by the cases that need it. */
static EVP_PKEY *g_rsa2048;
static EVP_PKEY *g_rsa2048_b;

static EVP_PKEY *rsa2048(void) {
  if (g_rsa2048 == NULL) g_rsa2048 = pki_key_generate(PKI_KEY_RSA, 2048, NULL);
  return g_rsa2048;
}

static EVP_PKEY *gen(pki_key_type type, unsigned bits) {
  pki_err err;
  pki_err_clear(&err);
  if (type == PKI_KEY_RSA && bits == 2048) {
    EVP_PKEY *k = rsa2048();
    if (k != NULL) EVP_PKEY_up_ref(k);
    return k;
  }
  return pki_key_generate(type, bits, &err);
}

/* ec_key makes a key on a curve pkid refuses, through the EC_KEY API. */
static EVP_PKEY *ec_key(int nid) {
  EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
  EVP_PKEY *pkey = EVP_PKEY_new();
  if (ec == NULL || pkey == NULL || !EC_KEY_generate_key(ec) ||
      !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
    EC_KEY_free(ec);
    EVP_PKEY_free(pkey);
    return NULL;
  }
  return pkey;
}

static EVP_PKEY *rsa_key(int bits) {
  RSA *rsa = RSA_new();
  BIGNUM *e = BN_new();
  EVP_PKEY *pkey = EVP_PKEY_new();
  int ok = rsa != NULL && e != NULL && pkey != NULL && BN_set_word(e, RSA_F4) &&
           RSA_generate_key_ex(rsa, bits, e, NULL) && EVP_PKEY_assign_RSA(pkey, rsa);
  BN_free(e);
  if (!ok) {
    RSA_free(rsa);
    EVP_PKEY_free(pkey);
    return NULL;
  }
  return pkey;
}

/* x509_req_der makes a CSR with BoringSSL's own X509_REQ code: subject CN
 * "other", signed with |md| (NULL for Ed25519). The result is
 * OPENSSL_malloc'd. */
static uint8_t *x509_req_der(EVP_PKEY *key, const EVP_MD *md, size_t *out_len) {
  X509_REQ *req = X509_REQ_new();
  X509_NAME *name = X509_NAME_new();
  uint8_t *der = NULL;
  int len = -1;
  /* The version is set although it is the default: encoding the default,
   * data-less INTEGER trips UBSan inside this BoringSSL's i2c_ASN1_INTEGER
   * (a zero offset added to NULL). */
  if (req != NULL && name != NULL && X509_REQ_set_version(req, X509_REQ_VERSION_1) &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 (const uint8_t *)"other", -1, -1, 0) &&
      X509_REQ_set_subject_name(req, name) && X509_REQ_set_pubkey(req, key) &&
      X509_REQ_sign(req, key, md)) {
    len = i2d_X509_REQ(req, &der);
  }
  X509_NAME_free(name);
  X509_REQ_free(req);
  ERR_clear_error();
  if (len <= 0) return NULL;
  *out_len = (size_t)len;
  return der;
}

/* The parts of a CertificationRequest, as elements. */
typedef struct csr_parts {
  CBS info;    /* CertificationRequestInfo element */
  CBS sig_alg; /* AlgorithmIdentifier element */
  CBS sig;     /* BIT STRING contents, unused-bits octet included */
} csr_parts;

static int split_csr(csr_parts *p, const uint8_t *der, size_t len) {
  CBS cbs, req;
  CBS_init(&cbs, der, len);
  return CBS_get_asn1(&cbs, &req, CBS_ASN1_SEQUENCE) && CBS_len(&cbs) == 0 &&
         CBS_get_asn1_element(&req, &p->info, CBS_ASN1_SEQUENCE) &&
         CBS_get_asn1_element(&req, &p->sig_alg, CBS_ASN1_SEQUENCE) &&
         CBS_get_asn1(&req, &p->sig, CBS_ASN1_BITSTRING) && CBS_len(&req) == 0;
}

/* assemble writes a CertificationRequest from its three parts; |sig| is the
 * raw signature (an unused-bits octet of 0 is put before it). The result is
 * OPENSSL_malloc'd. */
static uint8_t *assemble(size_t *out_len, const uint8_t *info, size_t info_len,
                         const uint8_t *alg, size_t alg_len, const uint8_t *sig,
                         size_t sig_len) {
  CBB cbb, req, bits;
  uint8_t *out = NULL;
  if (!CBB_init(&cbb, info_len + sig_len + 64) ||
      !CBB_add_asn1(&cbb, &req, CBS_ASN1_SEQUENCE) ||
      !CBB_add_bytes(&req, info, info_len) || !CBB_add_bytes(&req, alg, alg_len) ||
      !CBB_add_asn1(&req, &bits, CBS_ASN1_BITSTRING) || !CBB_add_u8(&bits, 0) ||
      !CBB_add_bytes(&bits, sig, sig_len) || !CBB_finish(&cbb, &out, out_len)) {
    CBB_cleanup(&cbb);
    return NULL;
  }
  return out;
}

/* sign_info signs a CertificationRequestInfo with |key| and |md| and wraps
 * it under the AlgorithmIdentifier |oid| (with NULL parameters for RSA).
 * The result is OPENSSL_malloc'd. */
static uint8_t *sign_info(size_t *out_len, const uint8_t *info, size_t info_len,
                          EVP_PKEY *key, const EVP_MD *md, const uint8_t *oid,
                          size_t oid_len) {
  CBB alg_cbb, alg, null;
  uint8_t *alg_der = NULL, *sig = NULL, *out = NULL;
  size_t alg_len = 0, sig_len = 0;
  if (!CBB_init(&alg_cbb, 32) || !CBB_add_asn1(&alg_cbb, &alg, CBS_ASN1_SEQUENCE) ||
      !pki_der_add_oid(&alg, oid, oid_len) ||
      (EVP_PKEY_id(key) == EVP_PKEY_RSA && !CBB_add_asn1(&alg, &null, CBS_ASN1_NULL)) ||
      !CBB_finish(&alg_cbb, &alg_der, &alg_len)) {
    CBB_cleanup(&alg_cbb);
    return NULL;
  }
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  if (EVP_DigestSignInit(&ctx, NULL, md, NULL, key) &&
      EVP_DigestSign(&ctx, NULL, &sig_len, info, info_len) &&
      (sig = OPENSSL_malloc(sig_len)) != NULL &&
      EVP_DigestSign(&ctx, sig, &sig_len, info, info_len)) {
    out = assemble(out_len, info, info_len, alg_der, alg_len, sig, sig_len);
  }
  EVP_MD_CTX_cleanup(&ctx);
  ERR_clear_error();
  OPENSSL_free(sig);
  OPENSSL_free(alg_der);
  return out;
}

/* build_info writes a CertificationRequestInfo by hand: |version|, subject
 * CN "hand", |key|'s public key, and if |san| is given an extensionRequest
 * whose subjectAltName SEQUENCE holds the |san_len| octets of |san|. */
static uint8_t *build_info(size_t *out_len, uint64_t version, const EVP_PKEY *key,
                           const uint8_t *san, size_t san_len) {
  CBB cbb, seq, attrs, attr, values, exts, ext, value, names;
  uint8_t *out = NULL;
  if (!CBB_init(&cbb, 512) || !CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1_uint64(&seq, version) || !pki_der_add_name(&seq, NULL, "hand") ||
      !EVP_marshal_public_key(&seq, key) ||
      !CBB_add_asn1(&seq, &attrs, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0)) {
    goto fail;
  }
  if (san != NULL &&
      (!CBB_add_asn1(&attrs, &attr, CBS_ASN1_SEQUENCE) ||
       !pki_der_add_oid(&attr, PKI_OID_EXTENSION_REQUEST, sizeof(PKI_OID_EXTENSION_REQUEST)) ||
       !CBB_add_asn1(&attr, &values, CBS_ASN1_SET) ||
       !CBB_add_asn1(&values, &exts, CBS_ASN1_SEQUENCE) ||
       !CBB_add_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
       !pki_der_add_oid(&ext, PKI_OID_SUBJECT_ALT_NAME, sizeof(PKI_OID_SUBJECT_ALT_NAME)) ||
       !CBB_add_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) ||
       !CBB_add_asn1(&value, &names, CBS_ASN1_SEQUENCE) ||
       !CBB_add_bytes(&names, san, san_len))) {
    goto fail;
  }
  if (!CBB_finish(&cbb, &out, out_len)) goto fail;
  return out;
fail:
  CBB_cleanup(&cbb);
  return NULL;
}

/* expect_fail parses |der| and checks it fails with |code|, with a message,
 * and with |needle| in the message when given. */
static int expect_fail(const uint8_t *der, size_t len, pki_err_code code,
                       const char *needle) {
  pki_csr csr;
  pki_err err;
  pki_err_clear(&err);
  if (pki_csr_parse(&csr, der, len, &err)) {
    fprintf(stderr, "  parsed, but should have failed with %s\n",
            pki_err_code_name(code));
    pki_csr_cleanup(&csr);
    return 0;
  }
  if (err.code != code || err.msg[0] == '\0' ||
      (needle != NULL && strstr(err.msg, needle) == NULL)) {
    fprintf(stderr, "  want %s%s%s, got %s: %s\n", pki_err_code_name(code),
            needle != NULL ? " mentioning " : "", needle != NULL ? needle : "",
            pki_err_code_name(err.code), err.msg);
    return 0;
  }
  return 1;
}

static const pki_name kNames[] = {
    {PKI_NAME_URI, "spiffe://cybersec-framework.local/agents/pki-agent"},
    {PKI_NAME_DNS, "pki-agent.cybersec-framework.local"},
    {PKI_NAME_DNS, "localhost"},
    {PKI_NAME_IP, "127.0.0.1"},
    {PKI_NAME_IP, "::1"},
    {PKI_NAME_EMAIL, "pki@cybersec-framework.local"},
};
#define NUM_NAMES (sizeof(kNames) / sizeof(kNames[0]))

/* round_trip builds a CSR for a key of |type| and parses it back. */
static void round_trip(pki_key_type type, unsigned bits) {
  pki_err err;
  pki_err_clear(&err);
  EVP_PKEY *key = gen(type, bits);
  REQUIRE(key != NULL);
  uint8_t *der = NULL;
  size_t len = 0;
  CHECK(pki_csr_build(&der, &len, key, "pki-agent", kNames, NUM_NAMES, &err));
  if (der == NULL) {
    fprintf(stderr, "  build: %s\n", err.msg);
    EVP_PKEY_free(key);
    return;
  }
  pki_csr csr;
  int parsed = pki_csr_parse(&csr, der, len, &err);
  CHECK(parsed);
  if (parsed) {
    CHECK(csr.key_type == type);
    CHECK(csr.key_bits == bits);
    CHECK(strcmp(csr.common_name, "pki-agent") == 0);
    CHECK(EVP_PKEY_cmp(csr.key, key) == 1);
    REQUIRE(csr.num_names == NUM_NAMES);
    for (size_t i = 0; i < NUM_NAMES; i++) {
      CHECK(csr.names[i].type == kNames[i].type);
      CHECK(strcmp(csr.names[i].value, kNames[i].value) == 0);
    }
    /* The SPKI is the key's own encoding. */
    CBB cbb;
    uint8_t *spki = NULL;
    size_t spki_len = 0;
    CHECK(CBB_init(&cbb, 128) && EVP_marshal_public_key(&cbb, key) &&
          CBB_finish(&cbb, &spki, &spki_len));
    CHECK(CBS_mem_equal(&csr.spki, spki, spki_len));
    OPENSSL_free(spki);
    pki_csr_cleanup(&csr);
  } else {
    fprintf(stderr, "  parse: %s\n", err.msg);
  }
  /* BoringSSL's own parser takes it and finds the signature good. */
  const uint8_t *p = der;
  X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
  CHECK(req != NULL);
  if (req != NULL) {
    EVP_PKEY *pub = X509_REQ_get_pubkey(req);
    CHECK(pub != NULL && X509_REQ_verify(req, pub) == 1);
    EVP_PKEY_free(pub);
    X509_REQ_free(req);
  }
  ERR_clear_error();
  free(der);
  EVP_PKEY_free(key);
}

TEST(round_trip_ecdsa_p256) { round_trip(PKI_KEY_ECDSA_P256, 256); }
TEST(round_trip_ecdsa_p384) { round_trip(PKI_KEY_ECDSA_P384, 384); }
TEST(round_trip_ed25519) { round_trip(PKI_KEY_ED25519, 256); }
TEST(round_trip_rsa_2048) { round_trip(PKI_KEY_RSA, 2048); }
/* One RSA-4096 key (the largest accepted); generated once, a few seconds. */
TEST(round_trip_rsa_4096) { round_trip(PKI_KEY_RSA, 4096); }

TEST(no_names_no_cn) {
  pki_err err;
  pki_err_clear(&err);
  EVP_PKEY *key = gen(PKI_KEY_ECDSA_P256, 256);
  REQUIRE(key != NULL);
  uint8_t *der = NULL;
  size_t len = 0;
  REQUIRE(pki_csr_build(&der, &len, key, NULL, NULL, 0, &err));
  pki_csr csr;
  CHECK(pki_csr_parse(&csr, der, len, &err));
  CHECK(csr.common_name[0] == '\0');
  CHECK(csr.num_names == 0 && csr.names == NULL);
  pki_csr_cleanup(&csr);
  pki_csr_cleanup(&csr); /* cleanup twice is harmless: it zeroes */
  free(der);
  EVP_PKEY_free(key);
}

/* A CSR made by another implementation (BoringSSL's X509_REQ) parses. */
TEST(parses_x509_req_csr) {
  EVP_PKEY *key = gen(PKI_KEY_ECDSA_P384, 384);
  REQUIRE(key != NULL);
  size_t len = 0;
  uint8_t *der = x509_req_der(key, EVP_sha512(), &len); /* ecdsa-with-SHA512 */
  EVP_PKEY_free(key);
  REQUIRE(der != NULL);
  pki_csr csr;
  pki_err err;
  pki_err_clear(&err);
  CHECK(pki_csr_parse(&csr, der, len, &err));
  CHECK(csr.key_type == PKI_KEY_ECDSA_P384);
  CHECK(strcmp(csr.common_name, "other") == 0);
  CHECK(csr.num_names == 0);
  pki_csr_cleanup(&csr);
  OPENSSL_free(der);
}

TEST(build_refuses_bad_input) {
  pki_err err;
  pki_err_clear(&err);
  EVP_PKEY *key = gen(PKI_KEY_ECDSA_P256, 256);
  REQUIRE(key != NULL);
  uint8_t *der = NULL;
  size_t len = 0;
  pki_name bad_ip = {PKI_NAME_IP, "300.1.1.1"};
  CHECK(!pki_csr_build(&der, &len, key, "x", &bad_ip, 1, &err));
  CHECK(err.code == PKI_ERR_INVALID && strstr(err.msg, "300.1.1.1") != NULL);
  CHECK(der == NULL);
  EVP_PKEY_free(key);

  EVP_PKEY *p521 = ec_key(NID_secp521r1);
  REQUIRE(p521 != NULL);
  pki_err_clear(&err);
  CHECK(!pki_csr_build(&der, &len, p521, "x", NULL, 0, &err));
  CHECK(err.code == PKI_ERR_UNSUPPORTED && strstr(err.msg, "P-521") != NULL);
  EVP_PKEY_free(p521);
}

/* --- malformed input: PKI_ERR_INVALID --- */

static uint8_t *valid_csr(size_t *len, pki_key_type type, unsigned bits) {
  pki_err err;
  pki_err_clear(&err);
  EVP_PKEY *key = gen(type, bits);
  uint8_t *der = NULL;
  if (key == NULL || !pki_csr_build(&der, len, key, "pki-agent", kNames, NUM_NAMES, &err)) {
    der = NULL;
  }
  EVP_PKEY_free(key);
  return der;
}

TEST(empty) {
  static const uint8_t zero = 0;
  CHECK(expect_fail(NULL, 0, PKI_ERR_INVALID, "CertificationRequest"));
  CHECK(expect_fail(&zero, 0, PKI_ERR_INVALID, NULL));
  static const uint8_t empty_seq[] = {0x30, 0x00};
  CHECK(expect_fail(empty_seq, sizeof(empty_seq), PKI_ERR_INVALID, "malformed"));
}

TEST(truncated_at_every_length) {
  size_t len = 0;
  uint8_t *der = valid_csr(&len, PKI_KEY_ECDSA_P256, 256);
  REQUIRE(der != NULL);
  for (size_t n = 0; n < len; n++) {
    /* A heap copy of exactly n bytes, so ASan sees any read past the end. */
    uint8_t *copy = malloc(n > 0 ? n : 1);
    REQUIRE(copy != NULL);
    memcpy(copy, der, n);
    if (!expect_fail(copy, n, PKI_ERR_INVALID, NULL)) {
      fprintf(stderr, "  prefix of %zu of %zu bytes\n", n, len);
      CHECK(0);
    }
    free(copy);
  }
  free(der);
}

/* The request inside a valid outer SEQUENCE, cut short: each inner
 * element in turn runs out. The outer length is fixed up so only the
 * inner structure is wrong. */
TEST(truncated_inside) {
  size_t len = 0;
  uint8_t *der = valid_csr(&len, PKI_KEY_ED25519, 256);
  REQUIRE(der != NULL);
  CBS cbs, body;
  CBS_init(&cbs, der, len);
  REQUIRE(CBS_get_asn1(&cbs, &body, CBS_ASN1_SEQUENCE));
  for (size_t n = 0; n < CBS_len(&body); n++) {
    CBB cbb, seq;
    uint8_t *out = NULL;
    size_t out_len = 0;
    REQUIRE(CBB_init(&cbb, n + 8) && CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE) &&
            CBB_add_bytes(&seq, CBS_data(&body), n) && CBB_finish(&cbb, &out, &out_len));
    if (!expect_fail(out, out_len, PKI_ERR_INVALID, NULL)) {
      fprintf(stderr, "  body cut to %zu of %zu bytes\n", n, CBS_len(&body));
      CHECK(0);
    }
    OPENSSL_free(out);
  }
  free(der);
}

TEST(garbage) {
  static const uint8_t text[] = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n";
  CHECK(expect_fail(text, sizeof(text) - 1, PKI_ERR_INVALID, NULL));
  uint8_t noise[300];
  for (size_t i = 0; i < sizeof(noise); i++) noise[i] = (uint8_t)(i * 37 + 11);
  CHECK(expect_fail(noise, sizeof(noise), PKI_ERR_INVALID, NULL));
  /* A SEQUENCE holding three INTEGERs is DER, but no CSR. */
  static const uint8_t ints[] = {0x30, 0x09, 0x02, 0x01, 0x00, 0x02, 0x01,
                                 0x01, 0x02, 0x01, 0x02};
  CHECK(expect_fail(ints, sizeof(ints), PKI_ERR_INVALID, "malformed"));
  /* BER indefinite length is not DER. */
  static const uint8_t indef[] = {0x30, 0x80, 0x00, 0x00};
  CHECK(expect_fail(indef, sizeof(indef), PKI_ERR_INVALID, NULL));
}

TEST(trailing_data) {
  size_t len = 0;
  uint8_t *der = valid_csr(&len, PKI_KEY_ECDSA_P256, 256);
  REQUIRE(der != NULL);
  uint8_t *longer = malloc(len + 2);
  REQUIRE(longer != NULL);
  memcpy(longer, der, len);
  longer[len] = 0x00;
  longer[len + 1] = 0x00;
  CHECK(expect_fail(longer, len + 1, PKI_ERR_INVALID, "trailing data"));
  CHECK(expect_fail(longer, len + 2, PKI_ERR_INVALID, "trailing data"));
  /* Two CSRs back to back are one CSR and trailing data. */
  uint8_t *twice = malloc(2 * len);
  REQUIRE(twice != NULL);
  memcpy(twice, der, len);
  memcpy(twice + len, der, len);
  CHECK(expect_fail(twice, 2 * len, PKI_ERR_INVALID, "trailing data"));
  free(twice);
  free(longer);
  free(der);
}

TEST(too_large) {
  size_t len = PKI_CSR_MAX_LEN + 1;
  uint8_t *big = calloc(1, len);
  REQUIRE(big != NULL);
  CHECK(expect_fail(big, len, PKI_ERR_INVALID, "larger than"));
  free(big);
}

/* --- proof of possession: PKI_ERR_AUTH --- */

static void flipped_signature(pki_key_type type, unsigned bits) {
  size_t len = 0;
  uint8_t *der = valid_csr(&len, type, bits);
  REQUIRE(der != NULL);
  /* The last octet is the signature's. Flip one bit of it, then one in the
   * middle of the signature. */
  der[len - 1] ^= 0x01;
  CHECK(expect_fail(der, len, PKI_ERR_AUTH, "proof of possession"));
  der[len - 1] ^= 0x01;
  csr_parts p;
  REQUIRE(split_csr(&p, der, len));
  size_t mid = (size_t)(CBS_data(&p.sig) - der) + CBS_len(&p.sig) / 2;
  der[mid] ^= 0x10;
  CHECK(expect_fail(der, len, PKI_ERR_AUTH, "signature does not verify"));
  der[mid] ^= 0x10;
  /* A bit flipped in the signed part (a name) is also caught. */
  size_t in_info = (size_t)(CBS_data(&p.info) - der) + CBS_len(&p.info) - 3;
  der[in_info] ^= 0x01;
  CHECK(expect_fail(der, len, PKI_ERR_AUTH, NULL));
  der[in_info] ^= 0x01;
  /* And back to the original, it parses. */
  pki_csr csr;
  pki_err err;
  CHECK(pki_csr_parse(&csr, der, len, &err));
  pki_csr_cleanup(&csr);
  free(der);
}

TEST(flipped_signature_ecdsa_p256) { flipped_signature(PKI_KEY_ECDSA_P256, 256); }
TEST(flipped_signature_ecdsa_p384) { flipped_signature(PKI_KEY_ECDSA_P384, 384); }
TEST(flipped_signature_ed25519) { flipped_signature(PKI_KEY_ED25519, 256); }
TEST(flipped_signature_rsa_2048) { flipped_signature(PKI_KEY_RSA, 2048); }

/* other_key_signature puts the signature of a CSR by another key of the
 * same type on the first CSR's info. */
static void other_key_signature(pki_key_type type, unsigned bits) {
  size_t len_a = 0, len_b = 0, len = 0;
  uint8_t *a = valid_csr(&len_a, type, bits);
  uint8_t *b = NULL;
  if (type == PKI_KEY_RSA) {
    /* A second RSA key, also made once. */
    if (g_rsa2048_b == NULL) g_rsa2048_b = pki_key_generate(PKI_KEY_RSA, 2048, NULL);
    pki_err err;
    if (g_rsa2048_b == NULL ||
        !pki_csr_build(&b, &len_b, g_rsa2048_b, "pki-agent", kNames, NUM_NAMES, &err)) {
      b = NULL;
    }
  } else {
    b = valid_csr(&len_b, type, bits);
  }
  REQUIRE(a != NULL && b != NULL);
  csr_parts pa, pb;
  REQUIRE(split_csr(&pa, a, len_a) && split_csr(&pb, b, len_b));
  CHECK(!CBS_mem_equal(&pa.info, CBS_data(&pb.info), CBS_len(&pb.info)));
  uint8_t *mixed = assemble(&len, CBS_data(&pa.info), CBS_len(&pa.info),
                            CBS_data(&pa.sig_alg), CBS_len(&pa.sig_alg),
                            CBS_data(&pb.sig) + 1, CBS_len(&pb.sig) - 1);
  REQUIRE(mixed != NULL);
  CHECK(expect_fail(mixed, len, PKI_ERR_AUTH, "proof of possession failed"));
  OPENSSL_free(mixed);
  free(a);
  free(b);
}

TEST(other_key_signature_ecdsa_p256) { other_key_signature(PKI_KEY_ECDSA_P256, 256); }
TEST(other_key_signature_ed25519) { other_key_signature(PKI_KEY_ED25519, 256); }
TEST(other_key_signature_rsa_2048) { other_key_signature(PKI_KEY_RSA, 2048); }

/* Re-signing the first CSR's info with a second key: a well-formed
 * signature, of the wrong key. */
TEST(signed_by_other_key) {
  EVP_PKEY *a = gen(PKI_KEY_ECDSA_P256, 256), *b = gen(PKI_KEY_ECDSA_P256, 256);
  REQUIRE(a != NULL && b != NULL);
  size_t info_len = 0, len = 0;
  uint8_t *info = build_info(&info_len, 0, a, NULL, 0);
  REQUIRE(info != NULL);
  uint8_t *der = sign_info(&len, info, info_len, b, EVP_sha256(), PKI_OID_ECDSA_SHA256,
                           sizeof(PKI_OID_ECDSA_SHA256));
  REQUIRE(der != NULL);
  CHECK(expect_fail(der, len, PKI_ERR_AUTH, "proof of possession failed"));
  OPENSSL_free(der);
  /* Signed by the right key, the same info parses. */
  der = sign_info(&len, info, info_len, a, EVP_sha256(), PKI_OID_ECDSA_SHA256,
                  sizeof(PKI_OID_ECDSA_SHA256));
  REQUIRE(der != NULL);
  pki_csr csr;
  pki_err err;
  CHECK(pki_csr_parse(&csr, der, len, &err));
  CHECK(strcmp(csr.common_name, "hand") == 0);
  pki_csr_cleanup(&csr);
  OPENSSL_free(der);
  OPENSSL_free(info);
  EVP_PKEY_free(a);
  EVP_PKEY_free(b);
}

/* --- well-formed but not supported: PKI_ERR_UNSUPPORTED --- */

static void unsupported_key(EVP_PKEY *key, const EVP_MD *md, const char *needle) {
  REQUIRE(key != NULL);
  size_t len = 0;
  uint8_t *der = x509_req_der(key, md, &len);
  REQUIRE(der != NULL);
  CHECK(expect_fail(der, len, PKI_ERR_UNSUPPORTED, needle));
  OPENSSL_free(der);
  EVP_PKEY_free(key);
}

TEST(unsupported_p521) { unsupported_key(ec_key(NID_secp521r1), EVP_sha512(), "P-521"); }
TEST(unsupported_p224) { unsupported_key(ec_key(NID_secp224r1), EVP_sha256(), "P-224"); }
TEST(unsupported_rsa_1024) { unsupported_key(rsa_key(1024), EVP_sha256(), "1024 bits"); }

/* RSA-8192: generating such a key takes from tens of seconds to minutes
 * (far longer under ASan), too slow for a unit test. The size is checked
 * before the proof of possession, so a request carrying a random 8192-bit
 * odd modulus, with a signature that could never verify, still shows that
 * the size is what is refused. */
TEST(unsupported_rsa_8192) {
  BIGNUM *n = BN_new(), *e = BN_new();
  REQUIRE(n != NULL && e != NULL);
  REQUIRE(BN_rand(n, 8192, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
  REQUIRE(BN_set_word(e, RSA_F4));
  RSA *rsa = RSA_new();
  REQUIRE(rsa != NULL);
  REQUIRE(RSA_set0_key(rsa, n, e, NULL)); /* takes n and e */
  EVP_PKEY *key = EVP_PKEY_new();
  REQUIRE(key != NULL && EVP_PKEY_assign_RSA(key, rsa));
  size_t info_len = 0, len = 0;
  uint8_t *info = build_info(&info_len, 0, key, NULL, 0);
  REQUIRE(info != NULL);
  static const uint8_t kRsaSha256Alg[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                          0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};
  uint8_t sig[1024];
  memset(sig, 0x5a, sizeof(sig));
  uint8_t *der = assemble(&len, info, info_len, kRsaSha256Alg, sizeof(kRsaSha256Alg),
                          sig, sizeof(sig));
  REQUIRE(der != NULL);
  CHECK(expect_fail(der, len, PKI_ERR_UNSUPPORTED, "8192 bits"));
  OPENSSL_free(der);
  OPENSSL_free(info);
  EVP_PKEY_free(key);
}

/* X509_REQ_set_version refuses anything but version 1 (0), so this request
 * is made by hand. */
TEST(unsupported_version) {
  EVP_PKEY *key = gen(PKI_KEY_ECDSA_P256, 256);
  REQUIRE(key != NULL);
  for (uint64_t version = 1; version <= 3; version += 2) {
    size_t info_len = 0, len = 0;
    uint8_t *info = build_info(&info_len, version, key, NULL, 0);
    REQUIRE(info != NULL);
    uint8_t *der = sign_info(&len, info, info_len, key, EVP_sha256(),
                             PKI_OID_ECDSA_SHA256, sizeof(PKI_OID_ECDSA_SHA256));
    REQUIRE(der != NULL);
    CHECK(expect_fail(der, len, PKI_ERR_UNSUPPORTED, "version"));
    OPENSSL_free(der);
    OPENSSL_free(info);
  }
  EVP_PKEY_free(key);
}

TEST(unsupported_signature_algorithm) {
  /* ecdsa-with-SHA1 and sha1WithRSAEncryption, by X509_REQ_sign. */
  EVP_PKEY *ec = gen(PKI_KEY_ECDSA_P256, 256);
  REQUIRE(ec != NULL);
  size_t len = 0;
  uint8_t *der = x509_req_der(ec, EVP_sha1(), &len);
  REQUIRE(der != NULL);
  CHECK(expect_fail(der, len, PKI_ERR_UNSUPPORTED, "1.2.840.10045.4.1"));
  OPENSSL_free(der);
  EVP_PKEY_free(ec);

  EVP_PKEY *rsa = gen(PKI_KEY_RSA, 2048);
  REQUIRE(rsa != NULL);
  der = x509_req_der(rsa, EVP_sha1(), &len);
  REQUIRE(der != NULL);
  CHECK(expect_fail(der, len, PKI_ERR_UNSUPPORTED, "1.2.840.113549.1.1.5"));
  OPENSSL_free(der);
  EVP_PKEY_free(rsa);

  /* ecdsa-with-SHA256 on an Ed25519 key: an algorithm that does not suit
   * the key is refused, not tried. */
  EVP_PKEY *ed = gen(PKI_KEY_ED25519, 256);
  REQUIRE(ed != NULL);
  size_t info_len = 0;
  uint8_t *info = build_info(&info_len, 0, ed, NULL, 0);
  REQUIRE(info != NULL);
  static const uint8_t kEcdsaAlg[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                      0xce, 0x3d, 0x04, 0x03, 0x02};
  uint8_t sig[64] = {0};
  der = assemble(&len, info, info_len, kEcdsaAlg, sizeof(kEcdsaAlg), sig, sizeof(sig));
  REQUIRE(der != NULL);
  pki_csr csr;
  pki_err err;
  pki_err_clear(&err);
  CHECK(!pki_csr_parse(&csr, der, len, &err));
  CHECK(err.code != PKI_OK && err.code != PKI_ERR_AUTH && err.msg[0] != '\0');
  OPENSSL_free(der);
  OPENSSL_free(info);
  EVP_PKEY_free(ed);
}

TEST(san_other_name_unsupported) {
  EVP_PKEY *key = gen(PKI_KEY_ECDSA_P256, 256);
  REQUIRE(key != NULL);
  /* otherName [0] { type-id 1.3.6.1.4.1.311.20.2.3 (UPN), [0] UTF8String } */
  static const uint8_t kOtherName[] = {
      0xa0, 0x17, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14,
      0x02, 0x03, 0xa0, 0x09, 0x0c, 0x07, 'u',  's',  'e',  'r',  '@',  'x',  'y'};
  /* directoryName [4] { Name } is not issued either. */
  static const uint8_t kDirName[] = {0xa4, 0x10, 0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06,
                                     0x03, 0x55, 0x04, 0x03, 0x0c, 0x03, 'a',  'b',  'c'};
  /* A DNS name first: the refusal is for the otherName that follows. */
  static const uint8_t kDnsThenOther[] = {
      0x82, 0x09, 'l',  'o',  'c',  'a',  'l',  'h',  'o',  's',  't',  0xa0, 0x17,
      0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03, 0xa0,
      0x09, 0x0c, 0x07, 'u',  's',  'e',  'r',  '@',  'x',  'y'};
  const struct {
    const uint8_t *san;
    size_t len;
    const char *needle;
  } kCases[] = {
      {kOtherName, sizeof(kOtherName), "[0]"},
      {kDirName, sizeof(kDirName), "[4]"},
      {kDnsThenOther, sizeof(kDnsThenOther), "[0]"},
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    size_t info_len = 0, len = 0;
    uint8_t *info = build_info(&info_len, 0, key, kCases[i].san, kCases[i].len);
    REQUIRE(info != NULL);
    uint8_t *der = sign_info(&len, info, info_len, key, EVP_sha256(),
                             PKI_OID_ECDSA_SHA256, sizeof(PKI_OID_ECDSA_SHA256));
    REQUIRE(der != NULL);
    CHECK(expect_fail(der, len, PKI_ERR_UNSUPPORTED, kCases[i].needle));
    CHECK(expect_fail(der, len, PKI_ERR_UNSUPPORTED, "subjectAltName"));
    OPENSSL_free(der);
    OPENSSL_free(info);
  }
  EVP_PKEY_free(key);
}

/* Requested names that are malformed (not merely unsupported) are INVALID. */
TEST(san_malformed_invalid) {
  EVP_PKEY *key = gen(PKI_KEY_ECDSA_P256, 256);
  REQUIRE(key != NULL);
  static const uint8_t kIp3[] = {0x87, 0x03, 127, 0, 1};          /* 3-octet IP */
  static const uint8_t kDnsSpace[] = {0x82, 0x03, 'a', ' ', 'b'}; /* space in DNS */
  static const uint8_t kDnsBad[] = {0x82, 0x04, 'a', '.', '.', 'b'}; /* empty label */
  const struct {
    const uint8_t *san;
    size_t len;
  } kCases[] = {{kIp3, sizeof(kIp3)}, {kDnsSpace, sizeof(kDnsSpace)}, {kDnsBad, sizeof(kDnsBad)}};
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    size_t info_len = 0, len = 0;
    uint8_t *info = build_info(&info_len, 0, key, kCases[i].san, kCases[i].len);
    REQUIRE(info != NULL);
    uint8_t *der = sign_info(&len, info, info_len, key, EVP_sha256(),
                             PKI_OID_ECDSA_SHA256, sizeof(PKI_OID_ECDSA_SHA256));
    REQUIRE(der != NULL);
    CHECK(expect_fail(der, len, PKI_ERR_INVALID, "subjectAltName"));
    OPENSSL_free(der);
    OPENSSL_free(info);
  }
  EVP_PKEY_free(key);
}

int main(void) {
  RUN(round_trip_ecdsa_p256);
  RUN(round_trip_ecdsa_p384);
  RUN(round_trip_ed25519);
  RUN(round_trip_rsa_2048);
  RUN(round_trip_rsa_4096);
  RUN(no_names_no_cn);
  RUN(parses_x509_req_csr);
  RUN(build_refuses_bad_input);
  RUN(empty);
  RUN(truncated_at_every_length);
  RUN(truncated_inside);
  RUN(garbage);
  RUN(trailing_data);
  RUN(too_large);
  RUN(flipped_signature_ecdsa_p256);
  RUN(flipped_signature_ecdsa_p384);
  RUN(flipped_signature_ed25519);
  RUN(flipped_signature_rsa_2048);
  RUN(other_key_signature_ecdsa_p256);
  RUN(other_key_signature_ed25519);
  RUN(other_key_signature_rsa_2048);
  RUN(signed_by_other_key);
  RUN(unsupported_p521);
  RUN(unsupported_p224);
  RUN(unsupported_rsa_1024);
  RUN(unsupported_rsa_8192);
  RUN(unsupported_version);
  RUN(unsupported_signature_algorithm);
  RUN(san_other_name_unsupported);
  RUN(san_malformed_invalid);
  EVP_PKEY_free(g_rsa2048);
  EVP_PKEY_free(g_rsa2048_b);
  return test_finish();
}
