/* ecdsa_batch_test: lib/ecdsa_batch.c against RFC 6979's known answers,
 * BoringSSL's ECDSA_verify, OpenSSL's command line and BN_mod_inverse, and
 * the property that matters most: no nonce is ever used twice. */
#include "lib/ecdsa_batch.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "lib/key.h"
#include "tests/unit/test.h"

/* How many signatures the pool test makes (-D to change it). 10,000 take
 * under 2 s here even under ASan or TSan. */
#ifndef ECDSA_BATCH_SIGNATURES
#define ECDSA_BATCH_SIGNATURES 10000
#endif

/* How many pool signatures OpenSSL's command line must verify. */
#define OPENSSL_CLI_SIGNATURES 24

static int hex_decode(uint8_t *out, size_t out_len, const char *hex) {
  if (strlen(hex) != 2 * out_len) return 0;
  for (size_t i = 0; i < out_len; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
    out[i] = (uint8_t)v;
  }
  return 1;
}

static BIGNUM *bn_hex(const char *hex) {
  BIGNUM *bn = NULL;
  return BN_hex2bn(&bn, hex) > 0 ? bn : NULL;
}

/* p256_key_from_private builds a full key pair (with its public point)
 * from a private scalar given in hex. */
static EVP_PKEY *p256_key_from_private(const char *d_hex) {
  EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  BIGNUM *d = bn_hex(d_hex);
  EC_POINT *pub = ec != NULL ? EC_POINT_new(EC_KEY_get0_group(ec)) : NULL;
  EVP_PKEY *key = EVP_PKEY_new();
  int ok = ec != NULL && d != NULL && pub != NULL && key != NULL &&
           EC_KEY_set_private_key(ec, d) &&
           EC_POINT_mul(EC_KEY_get0_group(ec), pub, d, NULL, NULL, NULL) &&
           EC_KEY_set_public_key(ec, pub) && EVP_PKEY_set1_EC_KEY(key, ec);
  BN_free(d);
  EC_POINT_free(pub);
  EC_KEY_free(ec);
  if (!ok) {
    EVP_PKEY_free(key);
    return NULL;
  }
  return key;
}

/* verify_der checks |sig| over |digest| with BoringSSL's own verifier. */
static int verify_der(const EVP_PKEY *key, const uint8_t *digest,
                      size_t digest_len, const uint8_t *sig, size_t sig_len) {
  return ECDSA_verify(0, digest, digest_len, sig, sig_len,
                      EVP_PKEY_get0_EC_KEY(key)) == 1;
}

/* r_of extracts r from a DER signature as 32 big-endian bytes. */
static int r_of(uint8_t out[32], const uint8_t *sig, size_t sig_len) {
  ECDSA_SIG *s = ECDSA_SIG_from_bytes(sig, sig_len);
  if (s == NULL) return 0;
  const BIGNUM *r;
  ECDSA_SIG_get0(s, &r, NULL);
  int ok = BN_bn2bin_padded(out, 32, r);
  ECDSA_SIG_free(s);
  return ok;
}

/* RFC 6979 A.2.5: P-256, private key x, with the deterministic k of each
 * message. SHA-512 (64 octets, longer than n) exercises bits2int. */
static const char kRfcX[] =
    "C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721";
static const char kRfcUx[] =
    "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6";
static const char kRfcUy[] =
    "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";

typedef struct rfc_vector {
  const char *message;
  int sha512; /* else SHA-256 */
  const char *k, *r, *s;
} rfc_vector;

static const rfc_vector kRfcVectors[] = {
    {"sample", 0,
     "A6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60",
     "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716",
     "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"},
    {"test", 0,
     "D16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0",
     "F1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367",
     "019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083"},
    {"sample", 1,
     "5FA81C63109BADB88C1F367B47DA606DA28CAD69AA22C4FE6AD7DF73A7173AA5",
     "8496A60B5E9B47C825488827E0495B0E3FA109EC4568FD3F8D1097678EB97F00",
     "2362AB1ADBE2B8ADF9CB9EDAB740EA6049C028114F2460F96554F61FAE3302FE"},
};

TEST(rfc6979_known_answers) {
  pki_err err;
  EVP_PKEY *key = p256_key_from_private(kRfcX);
  REQUIRE(key != NULL);
  /* The key is the RFC's: its public point matches. */
  BIGNUM *ux = BN_new(), *uy = BN_new(), *want_ux = bn_hex(kRfcUx),
         *want_uy = bn_hex(kRfcUy);
  const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
  CHECK(EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec),
                                            EC_KEY_get0_public_key(ec), ux, uy,
                                            NULL));
  CHECK(BN_cmp(ux, want_ux) == 0 && BN_cmp(uy, want_uy) == 0);
  BN_free(ux), BN_free(uy), BN_free(want_ux), BN_free(want_uy);

  pki_ecdsa_pool *pool = pki_ecdsa_pool_new(key, 4, &err);
  REQUIRE(pool != NULL);
  for (size_t i = 0; i < sizeof(kRfcVectors) / sizeof(kRfcVectors[0]); i++) {
    const rfc_vector *v = &kRfcVectors[i];
    uint8_t digest[64], k[32], sig[PKI_ECDSA_P256_SIG_MAX];
    size_t digest_len, sig_len = 0;
    const uint8_t *msg = (const uint8_t *)v->message;
    if (v->sha512) {
      SHA512(msg, strlen(v->message), digest);
      digest_len = 64;
    } else {
      SHA256(msg, strlen(v->message), digest);
      digest_len = 32;
    }
    CHECK(hex_decode(k, sizeof(k), v->k));
    CHECK(pki_ecdsa_sign_with_k_for_testing(pool, sig, &sig_len, sizeof(sig),
                                            digest, digest_len, k, sizeof(k),
                                            &err));
    ECDSA_SIG *got = ECDSA_SIG_from_bytes(sig, sig_len);
    BIGNUM *want_r = bn_hex(v->r), *want_s = bn_hex(v->s);
    CHECK(got != NULL);
    if (got != NULL) {
      const BIGNUM *r, *s;
      ECDSA_SIG_get0(got, &r, &s);
      CHECK(BN_cmp(r, want_r) == 0);
      CHECK(BN_cmp(s, want_s) == 0);
    }
    /* ECDSA_verify truncates long digests the same way (bits2int). */
    CHECK(verify_der(key, digest, digest_len, sig, sig_len));
    ECDSA_SIG_free(got);
    BN_free(want_r), BN_free(want_s);
  }
  /* k outside [1, n-1] is refused. */
  uint8_t zero[32] = {0}, digest[32] = {0}, sig[PKI_ECDSA_P256_SIG_MAX];
  size_t sig_len;
  CHECK(!pki_ecdsa_sign_with_k_for_testing(pool, sig, &sig_len, sizeof(sig),
                                           digest, 32, zero, 32, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  pki_ecdsa_pool_free(pool);
  EVP_PKEY_free(key);
}

static int cmp_r(const void *a, const void *b) { return memcmp(a, b, 32); }

/* The main property: ECDSA_BATCH_SIGNATURES signatures from one pool, all
 * valid, and no r twice. r = x(kG) is the same for k and n - k only, so
 * distinct r's mean no nonce was used twice (nor a nonce and its
 * negation, which leaks the key just as well). */
TEST(pool_signatures_verify_and_never_repeat_a_nonce) {
  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  pki_ecdsa_pool *pool = pki_ecdsa_pool_new(key, 1000, &err);
  REQUIRE(pool != NULL);
  CHECK(pki_ecdsa_pool_capacity(pool) == 1000);
  CHECK(pki_ecdsa_pool_available(pool) == 0);
  uint8_t (*rs)[32] = malloc((size_t)ECDSA_BATCH_SIGNATURES * 32);
  REQUIRE(rs != NULL);
  size_t bad = 0, refills = 0;
  for (size_t i = 0; i < ECDSA_BATCH_SIGNATURES; i++) {
    if (pki_ecdsa_pool_available(pool) == 0) {
      /* 1000 is not a multiple of the inversion batch (128): the last
       * batch of each refill is a short one. */
      if (!pki_ecdsa_pool_refill(pool, 5000, &err)) {
        CHECK(0);
        break;
      }
      refills++;
      CHECK(pki_ecdsa_pool_available(pool) == 1000); /* stops when full */
    }
    uint8_t data[16], digest[32], sig[PKI_ECDSA_P256_SIG_MAX];
    size_t sig_len = 0;
    RAND_bytes(data, sizeof(data));
    SHA256(data, sizeof(data), digest);
    size_t before = pki_ecdsa_pool_available(pool);
    if (!pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), digest, &err) ||
        pki_ecdsa_pool_available(pool) != before - 1 ||
        !verify_der(key, digest, 32, sig, sig_len) ||
        !r_of(rs[i], sig, sig_len)) {
      bad++;
      memset(rs[i], 0, 32);
    }
  }
  CHECK(bad == 0);
  CHECK(refills == (ECDSA_BATCH_SIGNATURES + 999) / 1000);
  qsort(rs, ECDSA_BATCH_SIGNATURES, 32, cmp_r);
  size_t repeats = 0;
  for (size_t i = 1; i < ECDSA_BATCH_SIGNATURES; i++) {
    if (memcmp(rs[i - 1], rs[i], 32) == 0) repeats++;
  }
  CHECK(repeats == 0);
  printf("  %d signatures verified, %zu repeated r\n", ECDSA_BATCH_SIGNATURES,
         repeats);
  free(rs);
  pki_ecdsa_pool_free(pool);
  EVP_PKEY_free(key);
}

/* An empty pool still signs, computing a nonce on the spot; a partly
 * filled one uses its nonces first, then falls back. */
TEST(empty_pool_falls_back_inline) {
  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  pki_ecdsa_pool *pool = pki_ecdsa_pool_new(key, 8, &err);
  REQUIRE(pool != NULL);
  CHECK(pki_ecdsa_pool_refill(pool, 3, &err));
  CHECK(pki_ecdsa_pool_available(pool) == 3);
  uint8_t rs[40][32];
  for (size_t i = 0; i < 40; i++) {
    uint8_t digest[32], sig[PKI_ECDSA_P256_SIG_MAX];
    size_t sig_len = 0;
    RAND_bytes(digest, sizeof(digest));
    CHECK(pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), digest, &err));
    CHECK(pki_ecdsa_pool_available(pool) == (i < 3 ? 2 - i : 0));
    CHECK(verify_der(key, digest, 32, sig, sig_len));
    CHECK(r_of(rs[i], sig, sig_len));
  }
  qsort(rs, 40, 32, cmp_r);
  for (size_t i = 1; i < 40; i++) CHECK(memcmp(rs[i - 1], rs[i], 32) != 0);
  /* Digests at the edges: zero, and all ones (>= n, reduced). */
  uint8_t edges[2][32];
  memset(edges[0], 0, 32);
  memset(edges[1], 0xff, 32);
  for (int i = 0; i < 2; i++) {
    uint8_t sig[PKI_ECDSA_P256_SIG_MAX];
    size_t sig_len = 0;
    CHECK(pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), edges[i], &err));
    CHECK(verify_der(key, edges[i], 32, sig, sig_len));
  }
  pki_ecdsa_pool_free(pool);
  EVP_PKEY_free(key);
}

/* A signature that does not fit fails, and its nonce is gone anyway: a
 * pair leaves the pool before it is used, never to come back. */
TEST(small_buffer_fails_and_burns_the_nonce) {
  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  pki_ecdsa_pool *pool = pki_ecdsa_pool_new(key, 2, &err);
  REQUIRE(pool != NULL);
  REQUIRE(pki_ecdsa_pool_refill(pool, 2, &err));
  uint8_t digest[32] = {1}, sig[PKI_ECDSA_P256_SIG_MAX];
  size_t sig_len = 0;
  CHECK(!pki_ecdsa_pool_sign(pool, sig, &sig_len, 20, digest, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(pki_ecdsa_pool_available(pool) == 1);
  CHECK(pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), digest, &err));
  CHECK(verify_der(key, digest, 32, sig, sig_len));
  CHECK(pki_ecdsa_pool_available(pool) == 0);
  pki_ecdsa_pool_free(pool);
  EVP_PKEY_free(key);
}

TEST(rejects_other_keys) {
  pki_err err;
  EVP_PKEY *p384 = pki_key_generate(PKI_KEY_ECDSA_P384, 384, &err);
  EVP_PKEY *ed = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  EVP_PKEY *p256 = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(p384 != NULL && ed != NULL && p256 != NULL);
  CHECK(pki_ecdsa_pool_new(p384, 4, &err) == NULL);
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  CHECK(pki_ecdsa_pool_new(ed, 4, &err) == NULL);
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  CHECK(pki_ecdsa_pool_new(p256, 0, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  pki_ecdsa_pool_free(NULL);
  EVP_PKEY_free(p384);
  EVP_PKEY_free(ed);
  EVP_PKEY_free(p256);
}

/* Montgomery's trick against one BN_mod_inverse per value, for batches of
 * several sizes, with 1 and n - 1 among the values. */
TEST(batch_inversion_matches_bn_mod_inverse) {
  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  pki_ecdsa_pool *pool = pki_ecdsa_pool_new(key, 1, &err);
  REQUIRE(pool != NULL);
  const BIGNUM *n =
      EC_GROUP_get0_order(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key)));
  BN_CTX *ctx = BN_CTX_new();
  REQUIRE(ctx != NULL);
  static const size_t sizes[] = {1, 2, 3, 17, PKI_ECDSA_INVERT_BATCH};
  for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
    size_t m = sizes[t];
    BIGNUM *vals[PKI_ECDSA_INVERT_BATCH], *want[PKI_ECDSA_INVERT_BATCH];
    for (size_t i = 0; i < m; i++) {
      vals[i] = BN_new();
      REQUIRE(vals[i] != NULL && BN_rand_range_ex(vals[i], 1, n));
    }
    if (m >= 3) {
      BN_one(vals[0]);
      BN_copy(vals[m - 1], n);
      BN_sub_word(vals[m - 1], 1);
    }
    for (size_t i = 0; i < m; i++) {
      want[i] = BN_mod_inverse(NULL, vals[i], n, ctx);
      REQUIRE(want[i] != NULL);
    }
    CHECK(pki_ecdsa_batch_invert_for_testing(pool, vals, m, &err));
    size_t wrong = 0;
    for (size_t i = 0; i < m; i++) {
      if (BN_cmp(vals[i], want[i]) != 0) wrong++;
      BN_free(vals[i]);
      BN_free(want[i]);
    }
    CHECK(wrong == 0);
  }
  /* Zero has no inverse; the hook refuses it rather than invert garbage. */
  BIGNUM *zero = BN_new();
  CHECK(zero != NULL && !pki_ecdsa_batch_invert_for_testing(pool, &zero, 1, &err));
  BN_free(zero);
  BN_CTX_free(ctx);
  pki_ecdsa_pool_free(pool);
  EVP_PKEY_free(key);
}

static int write_file(const char *path, const uint8_t *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return 0;
  int ok = fwrite(data, 1, len, f) == len;
  return fclose(f) == 0 && ok;
}

/* openssl_verify runs `openssl dgst -sha256 -verify` and returns its exit
 * status (-1 if it could not run). */
static int openssl_verify(const char *dir, int i, const char *data_name) {
  char cmd[3 * PATH_MAX];
  snprintf(cmd, sizeof(cmd),
           "openssl dgst -sha256 -verify '%s/pub.pem' -signature "
           "'%s/sig%d.der' '%s/%s' >/dev/null 2>&1",
           dir, dir, i, dir, data_name);
  int status = system(cmd);
  if (status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

/* A second implementation judges the pool's output: OpenSSL's command
 * line verifies signatures of SHA-256(data) from the pool, and rejects one
 * over altered data. */
TEST(openssl_cli_verifies_pool_signatures) {
  const char *tmp = getenv("TEST_TMPDIR");
  if (tmp == NULL || tmp[0] == '\0') tmp = "/tmp";
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/ecdsa_batch_openssl", tmp);
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
  REQUIRE(system(cmd) == 0);

  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof(path), "%s/pub.pem", dir);
  FILE *f = fopen(path, "w");
  REQUIRE(f != NULL);
  CHECK(PEM_write_PUBKEY(f, key));
  fclose(f);

  pki_ecdsa_pool *pool = pki_ecdsa_pool_new(key, 64, &err);
  REQUIRE(pool != NULL);
  REQUIRE(pki_ecdsa_pool_refill(pool, 64, &err));
  int verified = 0;
  for (int i = 0; i < OPENSSL_CLI_SIGNATURES; i++) {
    uint8_t data[100], digest[32], sig[PKI_ECDSA_P256_SIG_MAX];
    size_t sig_len = 0;
    RAND_bytes(data, sizeof(data));
    SHA256(data, sizeof(data), digest);
    CHECK(pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), digest, &err));
    char name[32];
    snprintf(name, sizeof(name), "data%d.bin", i);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    CHECK(write_file(path, data, sizeof(data)));
    snprintf(path, sizeof(path), "%s/sig%d.der", dir, i);
    CHECK(write_file(path, sig, sig_len));
    if (openssl_verify(dir, i, name) == 0) verified++;
    if (i == 0) {
      /* The same signature over altered data must fail. */
      data[0] ^= 1;
      snprintf(path, sizeof(path), "%s/altered.bin", dir);
      CHECK(write_file(path, data, sizeof(data)));
      CHECK(openssl_verify(dir, i, "altered.bin") == 1);
    }
  }
  printf("  openssl dgst -verify accepted %d of %d pool signatures\n", verified,
         OPENSSL_CLI_SIGNATURES);
  CHECK(verified == OPENSSL_CLI_SIGNATURES);
  pki_ecdsa_pool_free(pool);
  EVP_PKEY_free(key);
}

int main(void) {
  RUN(rfc6979_known_answers);
  RUN(batch_inversion_matches_bn_mod_inverse);
  RUN(pool_signatures_verify_and_never_repeat_a_nonce);
  RUN(empty_pool_falls_back_inline);
  RUN(small_buffer_fails_and_burns_the_nonce);
  RUN(rejects_other_keys);
  RUN(openssl_cli_verifies_pool_signatures);
  return test_finish();
}
