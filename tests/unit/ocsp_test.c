/* ocsp_test.c: the OCSP codec (lib/ocsp.h).
 *
 * Requests are built here with CBB, field by field, so that each malformed
 * class can be made on purpose; one request is the exact bytes
 * `openssl ocsp -reqout` wrote. Responses are read back with a small CBS
 * reader of this file's own (BoringSSL has no OCSP parser), which checks
 * every field and the order of the DER, and their signatures are verified
 * with the CA's public key through pki_sig_verify. */
#include "lib/ocsp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/cert.h"
#include "lib/der.h"
#include "lib/key.h"
#include "lib/serial.h"
#include "lib/sig.h"
#include "tests/unit/test.h"
#include "tests/unit/test_ca.h"

#define TAG_EXPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | (n))
#define TAG_IMPLICIT(n) (CBS_ASN1_CONTEXT_SPECIFIC | (n))
#define NOW 1767225600 /* 2026-01-01T00:00:00Z */

/* `openssl ocsp -issuer infrastructure-ca.crt -cert vault-server.crt
 * -reqout`: a SHA-1 CertID with NULL parameters and a 16-octet nonce. */
static const uint8_t kOpensslRequest[] = {
    0x30, 0x79, 0x30, 0x77, 0x30, 0x50, 0x30, 0x4e, 0x30, 0x4c, 0x30, 0x09, 0x06, 0x05,
    0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14, 0x56, 0xf5, 0xee, 0x13, 0xee,
    0x7a, 0xac, 0xf8, 0x4e, 0xf5, 0xb5, 0x43, 0x35, 0xb8, 0x81, 0xad, 0x36, 0xdc, 0xc7,
    0xae, 0x04, 0x14, 0x7b, 0x8f, 0xcd, 0xeb, 0x84, 0x20, 0x83, 0x69, 0x3a, 0xf4, 0xc6,
    0xf3, 0x26, 0x96, 0x01, 0xc4, 0xd4, 0x0b, 0x3e, 0x3f, 0x02, 0x13, 0x01, 0x00, 0x00,
    0x00, 0x06, 0x61, 0x49, 0xce, 0xd4, 0x91, 0x21, 0x7c, 0xef, 0xae, 0x3b, 0x06, 0x3f,
    0xc2, 0x32, 0xa2, 0x23, 0x30, 0x21, 0x30, 0x1f, 0x06, 0x09, 0x2b, 0x06, 0x01, 0x05,
    0x05, 0x07, 0x30, 0x01, 0x02, 0x04, 0x12, 0x04, 0x10, 0xec, 0x07, 0x4a, 0x55, 0x81,
    0xad, 0xf8, 0xc2, 0xc1, 0x9f, 0x4f, 0xa3, 0x9f, 0x67, 0x51, 0xbd,
};

/* ---- A CA for the tests ----------------------------------------------- */

static pki_issuer g_ca, g_ed_ca;
static int g_ready;

static int setup(void) {
  if (!g_ready) {
    g_ready = test_make_ca(&g_ca, PKI_KEY_ECDSA_P256, "Test OCSP CA") &&
              test_make_ca(&g_ed_ca, PKI_KEY_ED25519, "Test Ed25519 CA") ? 1 : -1;
  }
  return g_ready == 1;
}

static void show(const char *what, const pki_err *err) {
  fprintf(stderr, "  %s: %s: %s\n", what, pki_err_code_name(err->code), err->msg);
}

/* ---- Requests, built field by field ------------------------------------ */

typedef struct req_opts {
  int num;                   /* Requests in the list; 0 means 1 */
  pki_ocsp_hash hash;
  int params;                /* 0 absent, 1 NULL, 2 an INTEGER (refused) */
  int bad_alg;               /* MD5's OID instead */
  int hash_len_delta;        /* added to the right hash length */
  const uint8_t *serial;     /* INTEGER content octets; NULL for 01 02 03 */
  size_t serial_len;
  const pki_ocsp_hashes *hashes; /* NULL: 0x11 and 0x22 filler */
  int version;               /* write version [0] */
  int requestor;             /* write requestorName [1] */
  const uint8_t *nonce;      /* nonce extnValue contents */
  size_t nonce_len;
  int two_nonces;
  int req_ext;               /* 1: unknown non-critical, 2: critical, 3: explicit FALSE */
  int single_ext;            /* same, in singleRequestExtensions */
  int empty_exts;            /* requestExtensions with no Extension */
  int signature;             /* 1: well-formed optionalSignature, 2: malformed */
  int certid_extra;          /* a fifth field in CertID */
  int trailing;              /* an octet after the OCSPRequest */
} req_opts;

static const uint8_t kOidMd5[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05};
static const uint8_t kOidUnknownExt[] = {0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x01};
static const uint8_t kDefaultSerial[] = {0x01, 0x02, 0x03};

static int add_ext(CBB *exts, const uint8_t *oid, size_t oid_len, int critical,
                   const uint8_t *value, size_t value_len) {
  CBB ext, b;
  if (!CBB_add_asn1(exts, &ext, CBS_ASN1_SEQUENCE) || !pki_der_add_oid(&ext, oid, oid_len)) {
    return 0;
  }
  if (critical >= 0 && (!CBB_add_asn1(&ext, &b, CBS_ASN1_BOOLEAN) ||
                        !CBB_add_u8(&b, critical ? 0xff : 0x00))) {
    return 0;
  }
  return CBB_add_asn1_octet_string(&ext, value, value_len) && CBB_flush(exts);
}

/* add_kind_ext writes the extension |kind| of req_opts (1, 2, 3). */
static int add_kind_ext(CBB *exts, int kind) {
  static const uint8_t v[] = {0x05, 0x00};
  int critical = kind == 1 ? -1 : kind == 2 ? 1 : 0;
  return add_ext(exts, kOidUnknownExt, sizeof(kOidUnknownExt), critical, v, sizeof(v));
}

/* build_req returns an OPENSSL_malloc'd OCSPRequest. */
static uint8_t *build_req(size_t *len, const req_opts *o) {
  /* Every child CBB is declared here: each must live until its parent is
   * flushed. */
  CBB cbb, req, tbs, el, list, one, id, alg, p, serial, exts, dns, sig, bits;
  uint8_t *out = NULL;
  size_t hl = pki_ocsp_hash_len(o->hash) + (size_t)o->hash_len_delta;
  uint8_t name_hash[64], key_hash[64];
  memset(name_hash, 0x11, sizeof(name_hash));
  memset(key_hash, 0x22, sizeof(key_hash));
  if (o->hashes != NULL) {
    memcpy(name_hash, o->hashes->name_hash[o->hash], pki_ocsp_hash_len(o->hash));
    memcpy(key_hash, o->hashes->key_hash[o->hash], pki_ocsp_hash_len(o->hash));
  }
  if (!CBB_init(&cbb, 256) || !CBB_add_asn1(&cbb, &req, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&req, &tbs, CBS_ASN1_SEQUENCE)) {
    goto err;
  }
  if (o->version && (!CBB_add_asn1(&tbs, &el, TAG_EXPLICIT(0)) || !CBB_add_asn1_uint64(&el, 0) ||
                     !CBB_flush(&tbs))) {
    goto err;
  }
  if (o->requestor) {
    if (!CBB_add_asn1(&tbs, &el, TAG_EXPLICIT(1)) ||
        !CBB_add_asn1(&el, &dns, TAG_IMPLICIT(2)) ||
        !CBB_add_bytes(&dns, (const uint8_t *)"client.example", 14) || !CBB_flush(&tbs)) {
      goto err;
    }
  }
  if (!CBB_add_asn1(&tbs, &list, CBS_ASN1_SEQUENCE)) goto err;
  int num = o->num == 0 ? 1 : o->num;
  for (int i = 0; i < num; i++) {
    const uint8_t *oid = o->hash == PKI_OCSP_HASH_SHA256 ? PKI_OID_SHA256 : PKI_OID_SHA1;
    size_t oid_len = o->hash == PKI_OCSP_HASH_SHA256 ? sizeof(PKI_OID_SHA256) : sizeof(PKI_OID_SHA1);
    if (o->bad_alg) oid = kOidMd5, oid_len = sizeof(kOidMd5);
    if (!CBB_add_asn1(&list, &one, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&one, &id, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&id, &alg, CBS_ASN1_SEQUENCE) || !pki_der_add_oid(&alg, oid, oid_len) ||
        (o->params == 1 && !CBB_add_asn1(&alg, &p, CBS_ASN1_NULL)) ||
        (o->params == 2 && !CBB_add_asn1_uint64(&alg, 0)) ||
        !CBB_add_asn1_octet_string(&id, name_hash, hl) ||
        !CBB_add_asn1_octet_string(&id, key_hash, hl) ||
        !CBB_add_asn1(&id, &serial, CBS_ASN1_INTEGER) ||
        !CBB_add_bytes(&serial, o->serial != NULL ? o->serial : kDefaultSerial,
                       o->serial != NULL ? o->serial_len : sizeof(kDefaultSerial)) ||
        (o->certid_extra && !CBB_add_asn1_uint64(&id, 7)) || !CBB_flush(&one)) {
      goto err;
    }
    if (o->single_ext) {
      if (!CBB_add_asn1(&one, &el, TAG_EXPLICIT(0)) ||
          !CBB_add_asn1(&el, &exts, CBS_ASN1_SEQUENCE) || !add_kind_ext(&exts, o->single_ext)) {
        goto err;
      }
    }
    if (!CBB_flush(&list)) goto err;
  }
  if (o->nonce != NULL || o->req_ext || o->empty_exts) {
    if (!CBB_add_asn1(&tbs, &el, TAG_EXPLICIT(2)) ||
        !CBB_add_asn1(&el, &exts, CBS_ASN1_SEQUENCE)) {
      goto err;
    }
    if (o->nonce != NULL &&
        (!add_ext(&exts, PKI_OID_OCSP_NONCE, sizeof(PKI_OID_OCSP_NONCE), -1, o->nonce,
                  o->nonce_len) ||
         (o->two_nonces && !add_ext(&exts, PKI_OID_OCSP_NONCE, sizeof(PKI_OID_OCSP_NONCE), -1,
                                    o->nonce, o->nonce_len)))) {
      goto err;
    }
    if (o->req_ext && !add_kind_ext(&exts, o->req_ext)) goto err;
    if (!CBB_flush(&tbs)) goto err;
  }
  if (!CBB_flush(&req)) goto err;
  if (o->signature) {
    if (!CBB_add_asn1(&req, &el, TAG_EXPLICIT(0)) ||
        !CBB_add_asn1(&el, &sig, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&sig, &alg, CBS_ASN1_SEQUENCE) ||
        !pki_der_add_oid(&alg, PKI_OID_ECDSA_SHA256, sizeof(PKI_OID_ECDSA_SHA256))) {
      goto err;
    }
    if (o->signature == 1 && (!CBB_add_asn1(&sig, &bits, CBS_ASN1_BITSTRING) ||
                              !CBB_add_u8(&bits, 0) || !CBB_add_u8(&bits, 0x42))) {
      goto err;
    }
  }
  if (!CBB_flush(&cbb) || (o->trailing && !CBB_add_u8(&cbb, 0)) ||
      !CBB_finish(&cbb, &out, len)) {
    goto err;
  }
  return out;
err:
  CBB_cleanup(&cbb);
  return NULL;
}

/* parse_opts builds a request from |o| and parses it; the result code. */
static int parse_opts(pki_ocsp_request *req, const req_opts *o, pki_err *err) {
  size_t len;
  uint8_t *der = build_req(&len, o);
  if (der == NULL) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "test could not build the request");
    return 0;
  }
  int ok = pki_ocsp_request_parse(req, der, len, err);
  OPENSSL_free(der);
  return ok;
}

TEST(parses_openssl_request) {
  pki_ocsp_request req;
  pki_err err;
  int ok = pki_ocsp_request_parse(&req, kOpensslRequest, sizeof(kOpensslRequest), &err);
  if (!ok) show("parse", &err);
  REQUIRE(ok);
  REQUIRE(req.num_ids == 1);
  const pki_ocsp_cert_id *id = &req.ids[0];
  CHECK(id->hash == PKI_OCSP_HASH_SHA1);
  CHECK(id->params_null == 1);
  CHECK(memcmp(id->name_hash, kOpensslRequest + 23, 20) == 0);
  CHECK(memcmp(id->key_hash, kOpensslRequest + 45, 20) == 0);
  CHECK(id->serial_len == 19 && id->serial[0] == 0x01 && id->serial[18] == 0x32);
  CHECK(req.has_nonce && req.nonce_len == 18);
  CHECK(req.nonce[0] == 0x04 && req.nonce[1] == 0x10 && req.nonce[2] == 0xec);
  CHECK(!req.is_signed && !req.has_requestor_name);
}

TEST(request_round_trip_sha1_and_sha256) {
  REQUIRE(setup());
  pki_ocsp_hashes hashes;
  pki_err err;
  REQUIRE(pki_ocsp_issuer_hashes(&hashes, &g_ca, &err));
  for (int h = 0; h < PKI_OCSP_NUM_HASHES; h++) {
    for (int params = 0; params < 2; params++) {
      uint8_t serial[PKI_SERIAL_LEN];
      memset(serial, 0xab, sizeof(serial));
      serial[0] = 0x01;
      req_opts o = {.hash = (pki_ocsp_hash)h, .params = params, .hashes = &hashes,
                    .serial = serial, .serial_len = sizeof(serial)};
      pki_ocsp_request req;
      int ok = parse_opts(&req, &o, &err);
      if (!ok) show("parse", &err);
      REQUIRE(ok);
      REQUIRE(req.num_ids == 1);
      CHECK(req.ids[0].hash == (pki_ocsp_hash)h);
      CHECK(req.ids[0].params_null == params);
      CHECK(req.ids[0].serial_len == sizeof(serial) &&
            memcmp(req.ids[0].serial, serial, sizeof(serial)) == 0);
      CHECK(pki_ocsp_cert_id_matches(&req.ids[0], &hashes));
      CHECK(!req.has_nonce);
    }
  }
}

TEST(request_optional_fields_recorded) {
  static const uint8_t nonce[] = {0x04, 0x04, 1, 2, 3, 4};
  req_opts o = {.requestor = 1, .nonce = nonce, .nonce_len = sizeof(nonce), .req_ext = 1,
                .single_ext = 1, .signature = 1};
  pki_ocsp_request req;
  pki_err err;
  int ok = parse_opts(&req, &o, &err);
  if (!ok) show("parse", &err);
  REQUIRE(ok);
  CHECK(req.has_requestor_name);
  CHECK(req.is_signed);
  CHECK(req.has_nonce && req.nonce_len == sizeof(nonce) &&
        memcmp(req.nonce, nonce, sizeof(nonce)) == 0);
  /* A 32-octet nonce in its OCTET STRING (34 octets) is the largest taken. */
  uint8_t big[PKI_OCSP_NONCE_MAX] = {0x04, 0x20};
  o = (req_opts){.nonce = big, .nonce_len = sizeof(big)};
  CHECK(parse_opts(&req, &o, &err));
}

TEST(request_list_bounded) {
  pki_ocsp_request req;
  pki_err err;
  for (int n = 1; n <= PKI_OCSP_MAX_REQUESTS; n++) {
    req_opts o = {.num = n};
    CHECK(parse_opts(&req, &o, &err) && req.num_ids == (size_t)n);
  }
  req_opts o = {.num = PKI_OCSP_MAX_REQUESTS + 1};
  CHECK(!parse_opts(&req, &o, &err) && err.code == PKI_ERR_UNSUPPORTED);
  CHECK(req.num_ids == 0);
}

TEST(request_serial_bounds) {
  pki_ocsp_request req;
  pki_err err;
  uint8_t s[24];
  memset(s, 0x7f, sizeof(s));
  /* 20 octets, and 20 octets of value with the high bit behind a sign octet. */
  req_opts o = {.serial = s, .serial_len = 20};
  CHECK(parse_opts(&req, &o, &err));
  s[0] = 0x00, s[1] = 0x80;
  o.serial_len = 21;
  CHECK(parse_opts(&req, &o, &err) && req.ids[0].serial_len == 21);
  /* Negative and zero serials are well-formed; the look-up finds nothing. */
  uint8_t neg[] = {0x80}, zero[] = {0x00};
  o = (req_opts){.serial = neg, .serial_len = 1};
  CHECK(parse_opts(&req, &o, &err));
  o = (req_opts){.serial = zero, .serial_len = 1};
  CHECK(parse_opts(&req, &o, &err));
}

/* refused builds |o| and checks it is refused with |code|. */
static int refused(const req_opts *o, pki_err_code code) {
  pki_ocsp_request req;
  pki_err err;
  pki_err_clear(&err);
  if (parse_opts(&req, o, &err)) return 0;
  if (err.code != code || err.msg[0] == '\0' || req.num_ids != 0) {
    show("unexpected refusal", &err);
    return 0;
  }
  return 1;
}

TEST(request_malformed_classes_refused) {
  uint8_t s[24];
  memset(s, 0x7f, sizeof(s));
  uint8_t nonminimal[] = {0x00, 0x01}, ones[] = {0xff, 0x80};
  uint8_t big_nonce[PKI_OCSP_NONCE_MAX + 1] = {0x04, 0x21};
  static const uint8_t n[] = {0x04, 0x01, 0x07};
  req_opts cases[] = {
      {.version = 1},                            /* default written out */
      {.hash_len_delta = 1},                     /* SHA-1 hash of 21 octets */
      {.hash = PKI_OCSP_HASH_SHA256, .hash_len_delta = -12}, /* SHA-256 of 20 */
      {.params = 2},                             /* parameters not NULL */
      {.serial = s, .serial_len = 21},           /* 21 octets of value */
      {.serial = s, .serial_len = 22},
      {.serial = s, .serial_len = 0},            /* empty INTEGER */
      {.serial = nonminimal, .serial_len = 2},   /* not minimal */
      {.serial = ones, .serial_len = 2},         /* not minimal (negative) */
      {.req_ext = 3},                            /* critical FALSE written out */
      {.single_ext = 3},
      {.empty_exts = 1},                         /* Extensions SIZE (1..MAX) */
      {.nonce = big_nonce, .nonce_len = sizeof(big_nonce)},
      {.nonce = n, .nonce_len = 0},              /* empty nonce */
      {.nonce = n, .nonce_len = sizeof(n), .two_nonces = 1},
      {.signature = 2},                          /* Signature without its BIT STRING */
      {.certid_extra = 1},
      {.trailing = 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (!refused(&cases[i], PKI_ERR_INVALID)) {
      fprintf(stderr, "  malformed case %zu was not refused as invalid\n", i);
      CHECK(0);
    }
  }
  /* Well-formed but not supported: also answered malformedRequest. */
  req_opts md5 = {.bad_alg = 1}, crit = {.req_ext = 2}, crit1 = {.single_ext = 2};
  CHECK(refused(&md5, PKI_ERR_UNSUPPORTED));
  CHECK(refused(&crit, PKI_ERR_UNSUPPORTED));
  CHECK(refused(&crit1, PKI_ERR_UNSUPPORTED));
}

TEST(request_bytes_refused) {
  pki_ocsp_request req;
  pki_err err;
  /* Every truncation of a good request, and nothing at all. */
  for (size_t len = 0; len < sizeof(kOpensslRequest); len++) {
    pki_err_clear(&err);
    if (pki_ocsp_request_parse(&req, kOpensslRequest, len, &err) ||
        err.code != PKI_ERR_INVALID) {
      fprintf(stderr, "  truncation to %zu octets\n", len);
      CHECK(0);
    }
  }
  uint8_t buf[sizeof(kOpensslRequest) + 2];
  /* A wrong outer tag. */
  memcpy(buf, kOpensslRequest, sizeof(kOpensslRequest));
  buf[0] = 0x31;
  CHECK(!pki_ocsp_request_parse(&req, buf, sizeof(kOpensslRequest), &err) &&
        err.code == PKI_ERR_INVALID);
  /* A long-form length where the short form fits (not DER). */
  buf[0] = 0x30, buf[1] = 0x81, buf[2] = 0x79;
  memcpy(buf + 3, kOpensslRequest + 2, sizeof(kOpensslRequest) - 2);
  CHECK(!pki_ocsp_request_parse(&req, buf, sizeof(kOpensslRequest) + 1, &err) &&
        err.code == PKI_ERR_INVALID);
  /* BER indefinite lengths. */
  static const uint8_t ber[] = {0x30, 0x80, 0x30, 0x80, 0x30, 0x80, 0, 0, 0, 0, 0, 0};
  CHECK(!pki_ocsp_request_parse(&req, ber, sizeof(ber), &err) && err.code == PKI_ERR_INVALID);
  /* An empty requestList. */
  static const uint8_t empty[] = {0x30, 0x04, 0x30, 0x02, 0x30, 0x00};
  CHECK(!pki_ocsp_request_parse(&req, empty, sizeof(empty), &err) &&
        err.code == PKI_ERR_INVALID);
  /* Flip each octet in turn: never a crash; the parse either refuses or
   * yields a bounded request. */
  for (size_t i = 0; i < sizeof(kOpensslRequest); i++) {
    memcpy(buf, kOpensslRequest, sizeof(kOpensslRequest));
    buf[i] ^= 0xff;
    if (pki_ocsp_request_parse(&req, buf, sizeof(kOpensslRequest), &err)) {
      CHECK(req.num_ids == 1 && req.ids[0].serial_len <= PKI_OCSP_SERIAL_MAX);
    }
  }
}

/* ---- Matching --------------------------------------------------------- */

TEST(issuer_hashes) {
  REQUIRE(setup());
  pki_ocsp_hashes h;
  pki_err err;
  REQUIRE(pki_ocsp_issuer_hashes(&h, &g_ca, &err));
  uint8_t want[32];
  SHA1(g_ca.name, g_ca.name_len, want);
  CHECK(memcmp(h.name_hash[PKI_OCSP_HASH_SHA1], want, 20) == 0);
  SHA256(g_ca.name, g_ca.name_len, want);
  CHECK(memcmp(h.name_hash[PKI_OCSP_HASH_SHA256], want, 32) == 0);
  /* The SHA-1 key hash is the key identifier (RFC 5280 4.2.1.2 method 1). */
  CHECK(memcmp(h.key_hash[PKI_OCSP_HASH_SHA1], g_ca.ski, 20) == 0);
  /* SHA-256 over the same BIT STRING value: the EC point, 65 octets. */
  CBB cbb;
  uint8_t *spki = NULL;
  size_t spki_len;
  REQUIRE(CBB_init(&cbb, 128) && EVP_marshal_public_key(&cbb, g_ca.key) &&
          CBB_finish(&cbb, &spki, &spki_len));
  REQUIRE(spki_len == 91); /* P-256: the point is the last 65 octets */
  SHA256(spki + spki_len - 65, 65, want);
  OPENSSL_free(spki);
  CHECK(memcmp(h.key_hash[PKI_OCSP_HASH_SHA256], want, 32) == 0);

  pki_serial serial;
  REQUIRE(pki_serial_make(&serial, 3, 42, &err));
  for (int a = 0; a < PKI_OCSP_NUM_HASHES; a++) {
    pki_ocsp_cert_id id;
    pki_ocsp_cert_id_make(&id, &h, (pki_ocsp_hash)a, &serial);
    CHECK(id.hash == (pki_ocsp_hash)a && id.params_null);
    CHECK(id.serial_len == serial.len && memcmp(id.serial, serial.bytes, serial.len) == 0);
    CHECK(pki_ocsp_cert_id_matches(&id, &h));
    pki_ocsp_cert_id other = id;
    other.name_hash[pki_ocsp_hash_len(id.hash) - 1] ^= 1;
    CHECK(!pki_ocsp_cert_id_matches(&other, &h));
    other = id;
    other.key_hash[0] ^= 1;
    CHECK(!pki_ocsp_cert_id_matches(&other, &h));
    /* The other algorithm's hashes do not match under this one. */
    other = id;
    other.hash = a == 0 ? PKI_OCSP_HASH_SHA256 : PKI_OCSP_HASH_SHA1;
    CHECK(!pki_ocsp_cert_id_matches(&other, &h));
  }
  /* Another CA's hashes differ. */
  pki_ocsp_hashes h2;
  REQUIRE(pki_ocsp_issuer_hashes(&h2, &g_ed_ca, &err));
  pki_ocsp_cert_id id;
  pki_ocsp_cert_id_make(&id, &h2, PKI_OCSP_HASH_SHA1, &serial);
  CHECK(!pki_ocsp_cert_id_matches(&id, &h));
}

/* ---- Responses, read back --------------------------------------------- */

typedef struct parsed_single {
  CBS cert_id;  /* CertID element */
  pki_ocsp_hash hash;
  CBS name_hash, key_hash, serial;
  int params_null;
  int status;
  int64_t revocation_time;
  int reason;   /* -1 when absent */
  int64_t this_update, next_update;
} parsed_single;

typedef struct parsed_resp {
  int status;
  CBS tbs;      /* ResponseData element, as signed */
  CBS sig_alg;  /* AlgorithmIdentifier element */
  CBS sig;      /* signature octets */
  CBS responder_key_hash;
  int64_t produced_at;
  parsed_single singles[PKI_OCSP_MAX_REQUESTS + 1];
  size_t num;
} parsed_resp;

/* get_gt reads a GeneralizedTime (never UTCTime, RFC 6960 4.2.1). */
static int get_gt(CBS *cbs, int64_t *out) {
  return CBS_peek_asn1_tag(cbs, CBS_ASN1_GENERALIZEDTIME) && pki_der_get_time(cbs, out);
}

static int parse_single(CBS *list, parsed_single *s) {
  CBS seq, id, alg, oid, el;
  memset(s, 0, sizeof(*s));
  s->reason = -1;
  if (!CBS_get_asn1(list, &seq, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&seq, &s->cert_id, CBS_ASN1_SEQUENCE)) {
    return 0;
  }
  CBS cid = s->cert_id;
  if (!CBS_get_asn1(&cid, &id, CBS_ASN1_SEQUENCE) || CBS_len(&cid) != 0 ||
      !CBS_get_asn1(&id, &alg, CBS_ASN1_SEQUENCE) || !CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT)) {
    return 0;
  }
  if (PKI_DER_OID_IS(&oid, PKI_OID_SHA1)) s->hash = PKI_OCSP_HASH_SHA1;
  else if (PKI_DER_OID_IS(&oid, PKI_OID_SHA256)) s->hash = PKI_OCSP_HASH_SHA256;
  else return 0;
  if (CBS_len(&alg) > 0) {
    CBS null;
    if (!CBS_get_asn1(&alg, &null, CBS_ASN1_NULL) || CBS_len(&null) != 0 || CBS_len(&alg) != 0) {
      return 0;
    }
    s->params_null = 1;
  }
  if (!CBS_get_asn1(&id, &s->name_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1(&id, &s->key_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1(&id, &s->serial, CBS_ASN1_INTEGER) || CBS_len(&id) != 0 ||
      CBS_len(&s->name_hash) != pki_ocsp_hash_len(s->hash) ||
      CBS_len(&s->key_hash) != pki_ocsp_hash_len(s->hash)) {
    return 0;
  }
  /* CBS_get_asn1 consumes an element of the wrong tag: peek first. */
  if (CBS_peek_asn1_tag(&seq, TAG_IMPLICIT(0))) {
    if (!CBS_get_asn1(&seq, &el, TAG_IMPLICIT(0)) || CBS_len(&el) != 0) return 0;
    s->status = PKI_OCSP_GOOD;
  } else if (CBS_peek_asn1_tag(&seq, TAG_EXPLICIT(1))) {
    if (!CBS_get_asn1(&seq, &el, TAG_EXPLICIT(1))) return 0;
    s->status = PKI_OCSP_REVOKED;
    CBS reason_el, reason;
    int present;
    if (!get_gt(&el, &s->revocation_time) ||
        !CBS_get_optional_asn1(&el, &reason_el, &present, TAG_EXPLICIT(0)) ||
        CBS_len(&el) != 0) {
      return 0;
    }
    if (present) {
      if (!CBS_get_asn1(&reason_el, &reason, CBS_ASN1_ENUMERATED) || CBS_len(&reason_el) != 0 ||
          CBS_len(&reason) != 1) {
        return 0;
      }
      s->reason = CBS_data(&reason)[0];
    }
  } else if (CBS_peek_asn1_tag(&seq, TAG_IMPLICIT(2))) {
    if (!CBS_get_asn1(&seq, &el, TAG_IMPLICIT(2)) || CBS_len(&el) != 0) return 0;
    s->status = PKI_OCSP_UNKNOWN;
  } else {
    return 0;
  }
  CBS next;
  return get_gt(&seq, &s->this_update) && CBS_get_asn1(&seq, &next, TAG_EXPLICIT(0)) &&
         get_gt(&next, &s->next_update) && CBS_len(&next) == 0 && CBS_len(&seq) == 0;
}

/* parse_resp reads an OCSPResponse strictly, as this codec writes it. */
static int parse_resp(parsed_resp *r, const uint8_t *der, size_t len) {
  memset(r, 0, sizeof(*r));
  CBS in, resp, status, bytes_el, bytes, oid, oct, basic, tbs, rid, list;
  CBS_init(&in, der, len);
  if (!CBS_get_asn1(&in, &resp, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
      !CBS_get_asn1(&resp, &status, CBS_ASN1_ENUMERATED) || CBS_len(&status) != 1) {
    return 0;
  }
  r->status = CBS_data(&status)[0];
  if (CBS_len(&resp) == 0) return r->status != PKI_OCSP_SUCCESSFUL;
  if (!CBS_get_asn1(&resp, &bytes_el, TAG_EXPLICIT(0)) || CBS_len(&resp) != 0 ||
      !CBS_get_asn1(&bytes_el, &bytes, CBS_ASN1_SEQUENCE) || CBS_len(&bytes_el) != 0 ||
      !CBS_get_asn1(&bytes, &oid, CBS_ASN1_OBJECT) ||
      !PKI_DER_OID_IS(&oid, PKI_OID_OCSP_BASIC) ||
      !CBS_get_asn1(&bytes, &oct, CBS_ASN1_OCTETSTRING) || CBS_len(&bytes) != 0 ||
      !CBS_get_asn1(&oct, &basic, CBS_ASN1_SEQUENCE) || CBS_len(&oct) != 0 ||
      !CBS_get_asn1_element(&basic, &r->tbs, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&basic, &r->sig_alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&basic, &r->sig, CBS_ASN1_BITSTRING) || CBS_len(&basic) != 0 ||
      !CBS_is_valid_asn1_bitstring(&r->sig) || !CBS_skip(&r->sig, 1)) {
    return 0; /* and no certs [0]: the CA signs itself */
  }
  CBS t = r->tbs;
  if (!CBS_get_asn1(&t, &tbs, CBS_ASN1_SEQUENCE) ||
      CBS_peek_asn1_tag(&tbs, TAG_EXPLICIT(0)) || /* version v1 left out */
      !CBS_get_asn1(&tbs, &rid, TAG_EXPLICIT(2)) ||
      !CBS_get_asn1(&rid, &r->responder_key_hash, CBS_ASN1_OCTETSTRING) ||
      CBS_len(&rid) != 0 || CBS_len(&r->responder_key_hash) != 20 ||
      !get_gt(&tbs, &r->produced_at) || !CBS_get_asn1(&tbs, &list, CBS_ASN1_SEQUENCE) ||
      CBS_len(&tbs) != 0) { /* no responseExtensions: no nonce */
    return 0;
  }
  while (CBS_len(&list) > 0) {
    if (r->num == PKI_OCSP_MAX_REQUESTS + 1 || !parse_single(&list, &r->singles[r->num])) {
      return 0;
    }
    r->num++;
  }
  return r->num > 0;
}

static int verifies(const parsed_resp *r, EVP_PKEY *key) {
  pki_err err;
  int ok = pki_sig_verify(&r->sig_alg, key, CBS_data(&r->tbs), CBS_len(&r->tbs),
                          CBS_data(&r->sig), CBS_len(&r->sig), &err);
  if (!ok) show("verify", &err);
  return ok;
}

static pki_ocsp_single make_single(const pki_ocsp_hashes *h, pki_ocsp_hash hash,
                                   pki_ocsp_cert_status status, uint64_t seq) {
  pki_ocsp_single s;
  memset(&s, 0, sizeof(s));
  pki_serial serial;
  pki_err err;
  if (!pki_serial_make(&serial, 1, seq, &err)) abort();
  pki_ocsp_cert_id_make(&s.id, h, hash, &serial);
  s.status = status;
  s.revocation_time = NOW - 7200;
  s.revocation_reason = -1;
  s.this_update = NOW;
  s.next_update = NOW + 4 * 86400;
  return s;
}

static int cbs_is(const CBS *cbs, const uint8_t *p, size_t n) {
  return CBS_len(cbs) == n && memcmp(CBS_data(cbs), p, n) == 0;
}

TEST(response_good_reads_back_and_verifies) {
  REQUIRE(setup());
  pki_ocsp_hashes h;
  pki_err err;
  REQUIRE(pki_ocsp_issuer_hashes(&h, &g_ca, &err));
  pki_ocsp_single s = make_single(&h, PKI_OCSP_HASH_SHA1, PKI_OCSP_GOOD, 1);
  uint8_t *der = NULL;
  size_t len;
  int ok = pki_ocsp_response_build(&der, &len, &g_ca, &s, &err);
  if (!ok) show("build", &err);
  REQUIRE(ok);
  parsed_resp r;
  CHECK(parse_resp(&r, der, len));
  CHECK(r.status == PKI_OCSP_SUCCESSFUL && r.num == 1);
  CHECK(cbs_is(&r.responder_key_hash, g_ca.ski, 20));
  CHECK(r.produced_at == NOW);
  parsed_single *p = &r.singles[0];
  CHECK(p->status == PKI_OCSP_GOOD && p->hash == PKI_OCSP_HASH_SHA1 && p->params_null);
  CHECK(cbs_is(&p->name_hash, h.name_hash[0], 20) && cbs_is(&p->key_hash, h.key_hash[0], 20));
  CHECK(cbs_is(&p->serial, s.id.serial, s.id.serial_len));
  CHECK(p->this_update == NOW && p->next_update == NOW + 4 * 86400);
  CHECK(verifies(&r, g_ca.key));
  /* Any changed octet of the signed data breaks the signature. */
  uint8_t *bad = malloc(len);
  REQUIRE(bad != NULL);
  size_t off = (size_t)(CBS_data(&r.tbs) - der);
  for (size_t i = off + 4; i < off + CBS_len(&r.tbs); i += 7) {
    memcpy(bad, der, len);
    bad[i] ^= 0x01;
    parsed_resp rb;
    if (parse_resp(&rb, bad, len)) {
      pki_err e;
      CHECK(!pki_sig_verify(&rb.sig_alg, g_ca.key, CBS_data(&rb.tbs), CBS_len(&rb.tbs),
                            CBS_data(&rb.sig), CBS_len(&rb.sig), &e) &&
            e.code == PKI_ERR_AUTH);
    }
  }
  free(bad);
  free(der);
}

TEST(response_revoked_and_unknown) {
  REQUIRE(setup());
  pki_ocsp_hashes h;
  pki_err err;
  REQUIRE(pki_ocsp_issuer_hashes(&h, &g_ca, &err));
  int reasons[] = {-1, 0, 1, 4, 10};
  for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
    pki_ocsp_single s = make_single(&h, PKI_OCSP_HASH_SHA256, PKI_OCSP_REVOKED, 2);
    s.revocation_reason = reasons[i];
    uint8_t *der = NULL;
    size_t len;
    REQUIRE(pki_ocsp_response_build(&der, &len, &g_ca, &s, &err));
    parsed_resp r;
    CHECK(parse_resp(&r, der, len) && r.num == 1);
    CHECK(r.singles[0].status == PKI_OCSP_REVOKED);
    CHECK(r.singles[0].hash == PKI_OCSP_HASH_SHA256);
    CHECK(r.singles[0].revocation_time == NOW - 7200);
    CHECK(r.singles[0].reason == reasons[i]);
    CHECK(verifies(&r, g_ca.key));
    free(der);
  }
  pki_ocsp_single s = make_single(&h, PKI_OCSP_HASH_SHA1, PKI_OCSP_UNKNOWN, 3);
  uint8_t *der = NULL;
  size_t len;
  REQUIRE(pki_ocsp_response_build(&der, &len, &g_ca, &s, &err));
  parsed_resp r;
  CHECK(parse_resp(&r, der, len) && r.singles[0].status == PKI_OCSP_UNKNOWN);
  CHECK(verifies(&r, g_ca.key));
  free(der);
}

TEST(response_echoes_request_cert_id) {
  REQUIRE(setup());
  pki_ocsp_hashes h;
  pki_err err;
  REQUIRE(pki_ocsp_issuer_hashes(&h, &g_ca, &err));
  pki_ocsp_signer signer;
  REQUIRE(pki_ocsp_signer_init(&signer, &g_ca, &err));
  uint8_t serial[] = {0x00, 0x9a, 0x01, 0x02};
  for (int hash = 0; hash < PKI_OCSP_NUM_HASHES; hash++) {
    for (int params = 0; params < 2; params++) {
      req_opts o = {.hash = (pki_ocsp_hash)hash, .params = params, .hashes = &h,
                    .serial = serial, .serial_len = sizeof(serial), .num = 2};
      size_t req_len;
      uint8_t *req_der = build_req(&req_len, &o);
      REQUIRE(req_der != NULL);
      pki_ocsp_request req;
      REQUIRE(pki_ocsp_request_parse(&req, req_der, req_len, &err));
      pki_ocsp_single singles[2];
      for (size_t i = 0; i < 2; i++) {
        singles[i] = make_single(&h, PKI_OCSP_HASH_SHA1, PKI_OCSP_GOOD, 9);
        singles[i].id = req.ids[i];
      }
      uint8_t *der = NULL;
      size_t len;
      REQUIRE(pki_ocsp_signer_sign(&signer, &der, &len, singles, 2, &err));
      parsed_resp r;
      CHECK(parse_resp(&r, der, len) && r.num == 2);
      /* The request's CertID element, found in its DER, is the response's. */
      CBS in, seq, tbs, list, one, cid;
      CBS_init(&in, req_der, req_len);
      REQUIRE(CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE) &&
              CBS_get_asn1(&seq, &tbs, CBS_ASN1_SEQUENCE) &&
              CBS_get_asn1(&tbs, &list, CBS_ASN1_SEQUENCE) &&
              CBS_get_asn1(&list, &one, CBS_ASN1_SEQUENCE) &&
              CBS_get_asn1_element(&one, &cid, CBS_ASN1_SEQUENCE));
      CHECK(CBS_mem_equal(&r.singles[0].cert_id, CBS_data(&cid), CBS_len(&cid)));
      CHECK(CBS_mem_equal(&r.singles[1].cert_id, CBS_data(&cid), CBS_len(&cid)));
      CHECK(r.singles[0].params_null == params);
      CHECK(verifies(&r, g_ca.key));
      free(der);
      OPENSSL_free(req_der);
    }
  }
}

TEST(response_times_are_generalized) {
  REQUIRE(setup());
  pki_ocsp_hashes h;
  pki_err err;
  REQUIRE(pki_ocsp_issuer_hashes(&h, &g_ca, &err));
  /* 1999, 2049 (UTCTime in certificates) and 2050: all GeneralizedTime. */
  int64_t times[] = {946684799, 2524607999, 2524608000};
  const char *text[] = {"19991231235959Z", "20491231235959Z", "20500101000000Z"};
  for (size_t i = 0; i < 3; i++) {
    CBB cbb;
    uint8_t buf[32];
    size_t n;
    REQUIRE(CBB_init_fixed(&cbb, buf, sizeof(buf)));
    REQUIRE(pki_der_add_generalized_time(&cbb, times[i]) && CBB_finish(&cbb, NULL, &n));
    CHECK(n == 17 && buf[0] == CBS_ASN1_GENERALIZEDTIME && buf[1] == 15 &&
          memcmp(buf + 2, text[i], 15) == 0);
    CBS back;
    int64_t t;
    CBS_init(&back, buf, n);
    CHECK(pki_der_get_time(&back, &t) && t == times[i]);
    pki_ocsp_single s = make_single(&h, PKI_OCSP_HASH_SHA1, PKI_OCSP_REVOKED, 4);
    s.this_update = times[i];
    s.revocation_time = times[i] - 1;
    s.next_update = times[i] + 3600;
    uint8_t *der = NULL;
    size_t len;
    REQUIRE(pki_ocsp_response_build(&der, &len, &g_ca, &s, &err));
    parsed_resp r;
    CHECK(parse_resp(&r, der, len)); /* get_gt refuses UTCTime */
    CHECK(r.produced_at == times[i] && r.singles[0].this_update == times[i]);
    free(der);
  }
}

TEST(sign_each_many) {
  REQUIRE(setup());
  pki_ocsp_signer signer;
  pki_err err;
  REQUIRE(pki_ocsp_signer_init(&signer, &g_ca, &err));
  enum { N = 64 };
  pki_ocsp_single singles[N];
  uint8_t *outs[N];
  size_t lens[N];
  for (int i = 0; i < N; i++) {
    singles[i] = make_single(&signer.hashes, i % 2 ? PKI_OCSP_HASH_SHA256 : PKI_OCSP_HASH_SHA1,
                             (pki_ocsp_cert_status)(i % 3), (uint64_t)i + 100);
  }
  REQUIRE(pki_ocsp_signer_sign_each(&signer, outs, lens, singles, N, &err));
  for (int i = 0; i < N; i++) {
    parsed_resp r;
    CHECK(parse_resp(&r, outs[i], lens[i]) && r.num == 1);
    CHECK(r.singles[0].status == i % 3);
    CHECK(cbs_is(&r.singles[0].serial, singles[i].id.serial, singles[i].id.serial_len));
    CHECK(verifies(&r, g_ca.key));
    free(outs[i]);
  }
  /* One bad single fails the batch and leaves nothing allocated (ASan). */
  singles[N / 2].revocation_reason = 7;
  singles[N / 2].status = PKI_OCSP_REVOKED;
  CHECK(!pki_ocsp_signer_sign_each(&signer, outs, lens, singles, N, &err) &&
        err.code == PKI_ERR_INVALID);
}

TEST(response_arguments_refused) {
  REQUIRE(setup());
  pki_ocsp_signer signer;
  pki_err err;
  REQUIRE(pki_ocsp_signer_init(&signer, &g_ca, &err));
  pki_ocsp_single s[PKI_OCSP_MAX_REQUESTS + 1];
  for (int i = 0; i <= PKI_OCSP_MAX_REQUESTS; i++) {
    s[i] = make_single(&signer.hashes, PKI_OCSP_HASH_SHA1, PKI_OCSP_GOOD, 5);
  }
  uint8_t *der = NULL;
  size_t len;
  CHECK(!pki_ocsp_signer_sign(&signer, &der, &len, s, 0, &err));
  CHECK(!pki_ocsp_signer_sign(&signer, &der, &len, s, PKI_OCSP_MAX_REQUESTS + 1, &err));
  REQUIRE(pki_ocsp_signer_sign(&signer, &der, &len, s, PKI_OCSP_MAX_REQUESTS, &err));
  parsed_resp r;
  CHECK(parse_resp(&r, der, len) && r.num == PKI_OCSP_MAX_REQUESTS && verifies(&r, g_ca.key));
  free(der);
  pki_ocsp_single bad = s[0];
  bad.next_update = bad.this_update;
  CHECK(!pki_ocsp_response_build(&der, &len, &g_ca, &bad, &err) && err.code == PKI_ERR_INVALID);
  bad = s[0];
  bad.status = PKI_OCSP_REVOKED;
  bad.revocation_reason = 11;
  CHECK(!pki_ocsp_response_build(&der, &len, &g_ca, &bad, &err) && err.code == PKI_ERR_INVALID);
  bad = s[0];
  bad.id.serial_len = 0;
  CHECK(!pki_ocsp_response_build(&der, &len, &g_ca, &bad, &err) && err.code == PKI_ERR_INVALID);
  bad = s[0];
  bad.status = (pki_ocsp_cert_status)3;
  CHECK(!pki_ocsp_response_build(&der, &len, &g_ca, &bad, &err) && err.code == PKI_ERR_INVALID);
}

TEST(ed25519_ca_signs) {
  REQUIRE(setup());
  pki_ocsp_hashes h;
  pki_err err;
  REQUIRE(pki_ocsp_issuer_hashes(&h, &g_ed_ca, &err));
  pki_ocsp_single s = make_single(&h, PKI_OCSP_HASH_SHA256, PKI_OCSP_GOOD, 6);
  uint8_t *der = NULL;
  size_t len;
  REQUIRE(pki_ocsp_response_build(&der, &len, &g_ed_ca, &s, &err));
  parsed_resp r;
  CHECK(parse_resp(&r, der, len));
  CHECK(CBS_len(&r.sig) == 64);
  CHECK(cbs_is(&r.responder_key_hash, g_ed_ca.ski, 20));
  CHECK(verifies(&r, g_ed_ca.key));
  /* Not under another key, nor with the algorithm changed to ECDSA. */
  CHECK(!pki_sig_verify(&r.sig_alg, g_ca.key, CBS_data(&r.tbs), CBS_len(&r.tbs),
                        CBS_data(&r.sig), CBS_len(&r.sig), &err));
  free(der);
}

TEST(error_responses) {
  struct { pki_ocsp_response_status status; uint8_t octet; } cases[] = {
      {PKI_OCSP_MALFORMED_REQUEST, 1}, {PKI_OCSP_INTERNAL_ERROR, 2},
      {PKI_OCSP_TRY_LATER, 3},        {PKI_OCSP_SIG_REQUIRED, 5},
      {PKI_OCSP_UNAUTHORIZED, 6},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t len;
    const uint8_t *der = pki_ocsp_error_response(cases[i].status, &len);
    REQUIRE(der != NULL);
    const uint8_t want[] = {0x30, 0x03, 0x0a, 0x01, cases[i].octet};
    CHECK(len == sizeof(want) && memcmp(der, want, len) == 0);
    parsed_resp r;
    CHECK(parse_resp(&r, der, len) && r.status == cases[i].octet && r.num == 0);
  }
  size_t len;
  const uint8_t *m = pki_ocsp_malformed(&len);
  CHECK(m != NULL && len == 5 && m[4] == 1);
  CHECK(pki_ocsp_error_response(PKI_OCSP_SUCCESSFUL, &len) == NULL && len == 0);
  CHECK(pki_ocsp_error_response((pki_ocsp_response_status)4, &len) == NULL);
  CHECK(pki_ocsp_error_response((pki_ocsp_response_status)7, &len) == NULL);
  CHECK(pki_ocsp_error_response((pki_ocsp_response_status)-1, &len) == NULL);
}

int main(void) {
  RUN(parses_openssl_request);
  RUN(request_round_trip_sha1_and_sha256);
  RUN(request_optional_fields_recorded);
  RUN(request_list_bounded);
  RUN(request_serial_bounds);
  RUN(request_malformed_classes_refused);
  RUN(request_bytes_refused);
  RUN(issuer_hashes);
  RUN(response_good_reads_back_and_verifies);
  RUN(response_revoked_and_unknown);
  RUN(response_echoes_request_cert_id);
  RUN(response_times_are_generalized);
  RUN(sign_each_many);
  RUN(response_arguments_refused);
  RUN(ed25519_ca_signs);
  RUN(error_responses);
  EVP_PKEY_free(g_ca.key);
  free(g_ca.name);
  EVP_PKEY_free(g_ed_ca.key);
  free(g_ed_ca.name);
  return test_finish();
}
