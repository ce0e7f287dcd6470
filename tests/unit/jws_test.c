/* jws_test: lib/jws, with requests made here the way ACME clients make
 * them: each alg signs and verifies, what RFC 8555 6.2 and RFC 7515 forbid
 * is refused with the code ACME's error types follow from, and RFC 7638
 * thumbprints match the canonical JSON jansson writes. */
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/jws.h"
#include "lib/key.h"
#include "tests/unit/test.h"

#define B64URL (PKI_BASE64_URL | PKI_BASE64_NO_PAD)

/* b64 writes |len| bytes as base64url into a static-sized buffer. */
static void b64(char *out, size_t size, const void *in, size_t len) {
  size_t n;
  pki_err err;
  if (!pki_base64_encode(out, size, &n, in, len, B64URL, &err)) out[0] = '\0';
}

/* jwk_text writes |key|'s public JWK, members in the order given here. */
static void jwk_text(char *out, size_t size, EVP_PKEY *key) {
  uint8_t a[512], b[512];
  char ea[800], eb[800];
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
      const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
      int p256 = EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) == NID_X9_62_prime256v1;
      size_t w = p256 ? 32 : 48;
      BIGNUM *x = BN_new(), *y = BN_new();
      EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec), x,
                                          y, NULL);
      BN_bn2bin_padded(a, w, x);
      BN_bn2bin_padded(b, w, y);
      BN_free(x);
      BN_free(y);
      b64(ea, sizeof(ea), a, w);
      b64(eb, sizeof(eb), b, w);
      snprintf(out, size, "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
               p256 ? "P-256" : "P-384", ea, eb);
      return;
    }
    case EVP_PKEY_RSA: {
      const RSA *rsa = EVP_PKEY_get0_RSA(key);
      size_t n = BN_bn2bin(RSA_get0_n(rsa), a), e = BN_bn2bin(RSA_get0_e(rsa), b);
      b64(ea, sizeof(ea), a, n);
      b64(eb, sizeof(eb), b, e);
      snprintf(out, size, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", ea, eb);
      return;
    }
    default: {
      size_t len = 32;
      EVP_PKEY_get_raw_public_key(key, a, &len);
      b64(ea, sizeof(ea), a, 32);
      snprintf(out, size, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", ea);
    }
  }
}

/* sign_raw signs |data| as a JWS of |alg| does: r||s for ECDSA (made here
 * from BoringSSL's DER, the other way round from lib/jws). */
static size_t sign_raw(uint8_t *sig, const char *alg, EVP_PKEY *key, const uint8_t *hmac_key,
                       size_t hmac_len, const char *data) {
  size_t len = strlen(data);
  if (strcmp(alg, "HS256") == 0) {
    unsigned n = 0;
    HMAC(EVP_sha256(), hmac_key, hmac_len, (const uint8_t *)data, len, sig, &n);
    return n;
  }
  if (strncmp(alg, "ES", 2) == 0) {
    int p256 = strcmp(alg, "ES256") == 0;
    uint8_t digest[48], der[160];
    unsigned der_len = sizeof(der);
    if (p256) {
      SHA256((const uint8_t *)data, len, digest);
    } else {
      SHA384((const uint8_t *)data, len, digest);
    }
    ECDSA_sign(0, digest, p256 ? 32 : 48, der, &der_len, EVP_PKEY_get0_EC_KEY(key));
    ECDSA_SIG *s = ECDSA_SIG_from_bytes(der, der_len);
    size_t w = p256 ? 32 : 48;
    BN_bn2bin_padded(sig, w, s->r);
    BN_bn2bin_padded(sig + w, w, s->s);
    ECDSA_SIG_free(s);
    return 2 * w;
  }
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  size_t n = 512;
  EVP_DigestSignInit(&ctx, NULL, strcmp(alg, "RS256") == 0 ? EVP_sha256() : NULL, NULL, key);
  EVP_DigestSign(&ctx, sig, &n, (const uint8_t *)data, len);
  EVP_MD_CTX_cleanup(&ctx);
  return n;
}

/* make_jws writes a flattened JWS of |header| (JSON) and |payload|. */
static void make_jws(char *out, size_t size, const char *alg, const char *header,
                     const char *payload, EVP_PKEY *key, const uint8_t *hmac_key,
                     size_t hmac_len) {
  char p[4096], pl[4096], input[8200], s[1024];
  uint8_t sig[512];
  b64(p, sizeof(p), header, strlen(header));
  b64(pl, sizeof(pl), payload, strlen(payload));
  snprintf(input, sizeof(input), "%s.%s", p, pl);
  size_t n = sign_raw(sig, alg, key, hmac_key, hmac_len, input);
  b64(s, sizeof(s), sig, n);
  snprintf(out, size, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", p, pl, s);
}

static EVP_PKEY *key_of(const char *alg) {
  pki_err err;
  if (strcmp(alg, "ES256") == 0) return pki_key_generate(PKI_KEY_ECDSA_P256, 0, &err);
  if (strcmp(alg, "ES384") == 0) return pki_key_generate(PKI_KEY_ECDSA_P384, 0, &err);
  if (strcmp(alg, "RS256") == 0) return pki_key_generate(PKI_KEY_RSA, 2048, &err);
  return pki_key_generate(PKI_KEY_ED25519, 0, &err);
}

static int parse(pki_jws *jws, const char *body, pki_err *err) {
  return pki_jws_parse(jws, (const uint8_t *)body, strlen(body), err);
}

TEST(each_alg_verifies_with_its_jwk) {
  static const char *const kAlgs[] = {"ES256", "ES384", "RS256", "EdDSA"};
  for (size_t i = 0; i < 4; i++) {
    EVP_PKEY *key = key_of(kAlgs[i]);
    REQUIRE(key != NULL);
    char jwk[2048], header[4096], body[16384];
    jwk_text(jwk, sizeof(jwk), key);
    snprintf(header, sizeof(header),
             "{\"alg\":\"%s\",\"jwk\":%s,\"nonce\":\"n0nce\",\"url\":\"https://ca/acme/new-acct\"}",
             kAlgs[i], jwk);
    make_jws(body, sizeof(body), kAlgs[i], header, "{\"termsOfServiceAgreed\":true}", key, NULL,
             0);
    pki_jws jws;
    pki_err err;
    REQUIRE(parse(&jws, body, &err));
    CHECK(strcmp(jws.nonce, "n0nce") == 0);
    CHECK(strcmp(jws.url, "https://ca/acme/new-acct") == 0);
    CHECK(jws.kid == NULL && jws.jwk != NULL);
    CHECK(EVP_PKEY_cmp(jws.jwk, key) == 1);
    CHECK(jws.payload_len == strlen("{\"termsOfServiceAgreed\":true}"));
    if (!pki_jws_verify(&jws, jws.jwk, &err)) {
      fprintf(stderr, "  %s: %s\n", kAlgs[i], err.msg);
      CHECK(0);
    }
    /* One bit of the signing input changed: refused as a bad signature. */
    jws.signing_input[jws.signing_input_len - 1] ^= 1;
    CHECK(!pki_jws_verify(&jws, jws.jwk, &err) && err.code == PKI_ERR_AUTH);
    pki_jws_cleanup(&jws);
    EVP_PKEY_free(key);
  }
}

TEST(kid_and_post_as_get) {
  EVP_PKEY *key = key_of("ES256");
  char body[4096];
  make_jws(body, sizeof(body), "ES256",
           "{\"alg\":\"ES256\",\"kid\":\"https://ca/acme/acct/1\",\"nonce\":\"x\",\"url\":\"u\"}",
           "", key, NULL, 0);
  pki_jws jws;
  pki_err err;
  REQUIRE(parse(&jws, body, &err));
  CHECK(strcmp(jws.kid, "https://ca/acme/acct/1") == 0 && jws.jwk == NULL);
  CHECK(jws.payload_len == 0); /* POST-as-GET (RFC 8555 6.3) */
  CHECK(pki_jws_verify(&jws, key, &err));
  /* Another account's key does not verify it. */
  EVP_PKEY *other = key_of("ES256");
  CHECK(!pki_jws_verify(&jws, other, &err) && err.code == PKI_ERR_AUTH);
  /* A key of another type than the alg's. */
  EVP_PKEY *p384 = key_of("ES384");
  CHECK(!pki_jws_verify(&jws, p384, &err) && err.code == PKI_ERR_UNSUPPORTED);
  pki_jws_cleanup(&jws);
  EVP_PKEY_free(key);
  EVP_PKEY_free(other);
  EVP_PKEY_free(p384);
}

TEST(eab_mac) {
  static const uint8_t kMacKey[32] = {7, 7, 7};
  EVP_PKEY *account = key_of("ES256");
  char jwk[1024], header[2048], body[8192];
  jwk_text(jwk, sizeof(jwk), account);
  snprintf(header, sizeof(header), "{\"alg\":\"HS256\",\"kid\":\"eab-1\",\"url\":\"u\"}");
  make_jws(body, sizeof(body), "HS256", header, jwk, NULL, kMacKey, sizeof(kMacKey));
  pki_jws jws;
  pki_err err;
  REQUIRE(parse(&jws, body, &err));
  CHECK(pki_jws_verify_mac(&jws, kMacKey, sizeof(kMacKey), &err));
  uint8_t wrong[32] = {7, 7, 8};
  CHECK(!pki_jws_verify_mac(&jws, wrong, sizeof(wrong), &err) && err.code == PKI_ERR_AUTH);
  /* A MAC never signs a request. */
  CHECK(!pki_jws_verify(&jws, account, &err) && err.code == PKI_ERR_UNSUPPORTED);
  /* The payload is the account's JWK (RFC 8555 7.3.4). */
  EVP_PKEY *inner = pki_jwk_parse((const char *)jws.payload, jws.payload_len, &err);
  CHECK(inner != NULL && EVP_PKEY_cmp(inner, account) == 1);
  EVP_PKEY_free(inner);
  pki_jws_cleanup(&jws);
  /* And an ES256 JWS is not a MAC. */
  make_jws(body, sizeof(body), "ES256", "{\"alg\":\"ES256\",\"kid\":\"k\"}", "", account, NULL, 0);
  REQUIRE(parse(&jws, body, &err));
  CHECK(!pki_jws_verify_mac(&jws, kMacKey, sizeof(kMacKey), &err) &&
        err.code == PKI_ERR_UNSUPPORTED);
  pki_jws_cleanup(&jws);
  EVP_PKEY_free(account);
}

/* refused_header makes a JWS of |header| and expects |code| and |words|. */
static void refused_header(const char *header, pki_err_code code, const char *words) {
  EVP_PKEY *key = key_of("ES256");
  char body[8192];
  make_jws(body, sizeof(body), "ES256", header, "{}", key, NULL, 0);
  pki_jws jws;
  pki_err err;
  int ok = parse(&jws, body, &err);
  CHECK(!ok);
  if (!ok && (err.code != code || strstr(err.msg, words) == NULL)) {
    fprintf(stderr, "  %s: got %d '%s', want %d '%s'\n", header, err.code, err.msg, code, words);
    CHECK(0);
  }
  if (ok) pki_jws_cleanup(&jws);
  EVP_PKEY_free(key);
}

TEST(headers_refused) {
  refused_header("{\"alg\":\"none\",\"kid\":\"k\"}", PKI_ERR_UNSUPPORTED, "alg \"none\"");
  refused_header("{\"alg\":\"RS512\",\"kid\":\"k\"}", PKI_ERR_UNSUPPORTED, "alg \"RS512\"");
  refused_header("{\"kid\":\"k\"}", PKI_ERR_INVALID, "no \"alg\"");
  refused_header("{\"alg\":\"ES256\"}", PKI_ERR_INVALID, "exactly one of \"jwk\" and \"kid\"");
  refused_header("{\"alg\":\"ES256\",\"kid\":\"k\",\"jwk\":{\"kty\":\"EC\"}}", PKI_ERR_INVALID,
                 "exactly one of");
  refused_header("{\"alg\":\"ES256\",\"kid\":\"k\",\"crit\":[\"b64\"]}", PKI_ERR_INVALID,
                 "crit");
  refused_header("{\"alg\":\"ES256\",\"kid\":\"k\",\"kid\":\"other\"}", PKI_ERR_INVALID,
                 "duplicate");
  refused_header("{\"alg\":\"ES256\",\"kid\":7}", PKI_ERR_INVALID, "\"kid\" is not a string");
  refused_header("[\"alg\"]", PKI_ERR_INVALID, "not a JSON object");
  refused_header("{\"alg\":\"ES256\",\"kid\":\"k\"", PKI_ERR_INVALID, "not JSON");
  refused_header("{\"alg\":\"ES256\",\"kid\":\"k\\u0000x\"}", PKI_ERR_INVALID, "JSON");
}

TEST(jwks_refused) {
  static const struct {
    const char *jwk;
    pki_err_code code;
    const char *words;
  } kCases[] = {
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\",\"y\":\"AAAA\"}", PKI_ERR_INVALID,
       "octets"},
      /* x = y = 1 is not a point of P-256 (32 octets each). */
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\","
       "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}",
       PKI_ERR_INVALID, "not a point"},
      {"{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\"}", PKI_ERR_UNSUPPORTED,
       "P-521"},
      {"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\",\"d\":\"AA\"}",
       PKI_ERR_INVALID, "private key member \"d\""},
      {"{\"kty\":\"oct\",\"k\":\"AAAA\"}", PKI_ERR_INVALID, "private key member \"k\""},
      {"{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}", PKI_ERR_UNSUPPORTED, "X25519"},
      {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}", PKI_ERR_INVALID, "32 octets"},
      {"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}", PKI_ERR_UNSUPPORTED, "bits"},
      {"{\"kty\":\"DSA\"}", PKI_ERR_UNSUPPORTED, "DSA"},
      {"{\"crv\":\"P-256\"}", PKI_ERR_INVALID, "no \"kty\""},
      {"\"EC\"", PKI_ERR_INVALID, "not a JSON object"},
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    char header[4096];
    snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"jwk\":%s}", kCases[i].jwk);
    refused_header(header, kCases[i].code, kCases[i].words);
  }
  /* A padded base64url JWK member: one spelling per value (RFC 7515 2). */
  refused_header("{\"alg\":\"ES256\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA==\"}}",
                 PKI_ERR_INVALID, "x: ");
}

TEST(bodies_refused) {
  static const struct {
    const char *body;
    const char *words;
  } kCases[] = {
      {"{\"protected\":\"e30\",\"payload\":\"\",\"signature\":\"\",\"header\":{}}",
       "\"header\""},
      {"{\"protected\":\"e30\",\"payload\":\"\",\"signatures\":[]}", "\"signatures\""},
      {"{\"protected\":\"e30\",\"payload\":\"\"}", "no \"signature\""},
      {"{\"protected\":\"e30\",\"protected\":\"e30\",\"payload\":\"\",\"signature\":\"\"}",
       "duplicate"},
      {"{\"protected\":\"e30=\",\"payload\":\"\",\"signature\":\"\"}", "protected"},
      {"{\"protected\":\"e30\",\"payload\":\"\",\"signature\":\"\"} trailing", "not JSON"},
      {"eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "not JSON"}, /* compact serialization */
      {"", "not JSON"},
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    pki_jws jws;
    pki_err err;
    int ok = parse(&jws, kCases[i].body, &err);
    CHECK(!ok);
    if (!ok && strstr(err.msg, kCases[i].words) == NULL) {
      fprintf(stderr, "  %s: '%s' lacks '%s'\n", kCases[i].body, err.msg, kCases[i].words);
      CHECK(0);
    }
    if (ok) pki_jws_cleanup(&jws);
  }
  /* A wrong-length ECDSA signature is a bad signature, not a crash. */
  EVP_PKEY *key = key_of("ES256");
  pki_jws jws;
  pki_err err;
  REQUIRE(parse(&jws, "{\"protected\":\"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ\",\"payload\":\"\","
                      "\"signature\":\"AAAA\"}",
                &err));
  CHECK(!pki_jws_verify(&jws, key, &err) && err.code == PKI_ERR_AUTH);
  pki_jws_cleanup(&jws);
  EVP_PKEY_free(key);
}

TEST(thumbprints_match_canonical_json) {
  static const char *const kAlgs[] = {"ES256", "ES384", "RS256", "EdDSA"};
  for (size_t i = 0; i < 4; i++) {
    EVP_PKEY *key = key_of(kAlgs[i]);
    char jwk[2048];
    jwk_text(jwk, sizeof(jwk), key);
    /* RFC 7638 3: the required members, sorted, no whitespace; here
     * written by jansson from the JWK the test made. */
    json_t *v = json_loads(jwk, 0, NULL);
    REQUIRE(v != NULL);
    char *canonical = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    uint8_t want[32], got[32];
    SHA256((const uint8_t *)canonical, strlen(canonical), want);
    pki_err err;
    CHECK(pki_jwk_thumbprint(got, key, &err));
    CHECK(memcmp(want, got, 32) == 0);
    free(canonical);
    json_decref(v);
    EVP_PKEY_free(key);
  }
}

/* Requests made by Python cryptography (tests/fuzz/corpus/jws_fuzz, which
 * seeds the fuzz target too): an implementation we did not write. */
static int g_argc;
static char **g_argv;

TEST(python_made_requests_verify) {
  int seen = 0;
  for (int i = 1; i < g_argc; i++) {
    FILE *f = fopen(g_argv[i], "rb");
    REQUIRE(f != NULL);
    static char body[PKI_JWS_MAX];
    size_t len = fread(body, 1, sizeof(body), f);
    fclose(f);
    pki_jws jws;
    pki_err err;
    if (strstr(g_argv[i], "bare_jwk") != NULL) {
      EVP_PKEY *key = pki_jwk_parse(body, len, &err);
      CHECK(key != NULL);
      EVP_PKEY_free(key);
      seen++;
      continue;
    }
    if (!pki_jws_parse(&jws, (const uint8_t *)body, len, &err)) {
      fprintf(stderr, "  %s: %s\n", g_argv[i], err.msg);
      CHECK(0);
      continue;
    }
    if (strstr(g_argv[i], "eab_hs256") != NULL) {
      uint8_t key[32];
      memset(key, 'k', sizeof(key));
      CHECK(pki_jws_verify_mac(&jws, key, sizeof(key), &err));
      seen++;
    } else if (jws.jwk != NULL) {
      if (!pki_jws_verify(&jws, jws.jwk, &err)) {
        fprintf(stderr, "  %s: %s\n", g_argv[i], err.msg);
        CHECK(0);
      }
      seen++;
    } else {
      CHECK(jws.kid != NULL && jws.payload_len == 0);
      seen++;
    }
    pki_jws_cleanup(&jws);
  }
  CHECK(seen >= 6);
}

int main(int argc, char **argv) {
  g_argc = argc;
  g_argv = argv;
  RUN(python_made_requests_verify);
  RUN(each_alg_verifies_with_its_jwk);
  RUN(kid_and_post_as_get);
  RUN(eab_mac);
  RUN(headers_refused);
  RUN(jwks_refused);
  RUN(bodies_refused);
  RUN(thumbprints_match_canonical_json);
  return test_finish();
}
