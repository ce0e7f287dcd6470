/* signer_test: a worker's signers (server/ca/signer.h) over a real P-256
 * key. The pool starts empty, as in a worker that has never been idle, so
 * every nonce comes from the batches prepared when the pool runs dry:
 * each signature must verify under the CA's key and no nonce may repeat
 * (a repeated r with different messages gives the key away). */
#include "server/ca/signer.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "lib/key.h"
#include "tests/unit/test.h"

#define SIGNATURES 300 /* several dry refills, one not a whole batch */

static int cmp_r(const void *a, const void *b) { return memcmp(a, b, 32); }

/* r_of puts the r of a DER ECDSA-Sig-Value into |r|, left-padded. */
static int r_of(uint8_t r[32], const uint8_t *sig, size_t sig_len) {
  ECDSA_SIG *s = ECDSA_SIG_from_bytes(sig, sig_len);
  if (s == NULL) return 0;
  const BIGNUM *br;
  ECDSA_SIG_get0(s, &br, NULL);
  int ok = BN_bn2bin_padded(r, 32, br);
  ECDSA_SIG_free(s);
  return ok;
}

TEST(dry_pool_signs_from_batches) {
  pki_err err;
  pkid_ca ca;
  memset(&ca, 0, sizeof(ca));
  ca.issuer.key_type = PKI_KEY_ECDSA_P256;
  ca.issuer.key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(ca.issuer.key != NULL);
  pkid_cas cas = {.cas = &ca, .num_cas = 1};
  pkid_signers *s = pkid_signers_new(&cas, 512, &err);
  REQUIRE(s != NULL);
  const pki_signer *signer = pkid_signers_for(s, &ca);
  REQUIRE(signer != NULL);
  EC_KEY *ec = EVP_PKEY_get0_EC_KEY(ca.issuer.key);
  uint8_t (*rs)[32] = calloc(SIGNATURES, 32);
  REQUIRE(rs != NULL);
  size_t bad = 0;
  for (size_t i = 0; i < SIGNATURES; i++) {
    uint8_t data[24], digest[SHA256_DIGEST_LENGTH];
    RAND_bytes(data, sizeof(data));
    SHA256(data, sizeof(data), digest);
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    if (!signer->sign(signer->ctx, &sig, &sig_len, data, sizeof(data), &err) ||
        ECDSA_verify(0, digest, sizeof(digest), sig, sig_len, ec) != 1 ||
        !r_of(rs[i], sig, sig_len)) {
      bad++;
    }
    free(sig);
  }
  CHECK(bad == 0);
  qsort(rs, SIGNATURES, 32, cmp_r);
  size_t repeats = 0;
  for (size_t i = 1; i < SIGNATURES; i++) repeats += memcmp(rs[i - 1], rs[i], 32) == 0;
  CHECK(repeats == 0);
  free(rs);
  pkid_signers_free(s);
  EVP_PKEY_free(ca.issuer.key);
}

static int g_steps;

/* count_steps lets a refill go on, counting how often it was asked. */
static int count_steps(void *ctx) {
  (void)ctx;
  g_steps++;
  return 1;
}

static int sign_one(const pki_signer *signer) {
  uint8_t data[8] = {1, 2, 3}, *sig = NULL;
  size_t sig_len = 0;
  pki_err err;
  int ok = signer->sign(signer->ctx, &sig, &sig_len, data, sizeof(data), &err);
  free(sig);
  return ok;
}

/* Idle refills come a whole step at a time: a pool short of fewer nonces
 * than a step is left alone, so no batch is smaller than a step. */
TEST(idle_refill_waits_for_a_whole_step) {
  pki_err err;
  pkid_ca ca;
  memset(&ca, 0, sizeof(ca));
  ca.issuer.key_type = PKI_KEY_ECDSA_P256;
  ca.issuer.key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(ca.issuer.key != NULL);
  pkid_cas cas = {.cas = &ca, .num_cas = 1};
  pkid_signers *s = pkid_signers_new(&cas, 64, &err);
  REQUIRE(s != NULL);
  const pki_signer *signer = pkid_signers_for(s, &ca);
  REQUIRE(signer != NULL);
  g_steps = 0;
  pkid_signers_refill(s, 16, count_steps, NULL);
  CHECK(g_steps == 4); /* empty: 4 steps of 16 fill 64 */
  for (int i = 0; i < 15; i++) CHECK(sign_one(signer));
  g_steps = 0;
  pkid_signers_refill(s, 16, count_steps, NULL);
  CHECK(g_steps == 0); /* 15 short: not a whole step */
  CHECK(sign_one(signer));
  pkid_signers_refill(s, 16, count_steps, NULL);
  CHECK(g_steps == 1); /* 16 short: one step */
  g_steps = 0;
  pkid_signers_refill(s, 16, count_steps, NULL);
  CHECK(g_steps == 0); /* full again */
  pkid_signers_free(s);
  EVP_PKEY_free(ca.issuer.key);
}

/* A CA of another key type has no signer: lib/ signs with its key. */
TEST(no_signer_for_other_keys) {
  pki_err err;
  pkid_ca ca;
  memset(&ca, 0, sizeof(ca));
  ca.issuer.key_type = PKI_KEY_ECDSA_P384;
  ca.issuer.key = pki_key_generate(PKI_KEY_ECDSA_P384, 384, &err);
  REQUIRE(ca.issuer.key != NULL);
  pkid_cas cas = {.cas = &ca, .num_cas = 1};
  pkid_signers *s = pkid_signers_new(&cas, 16, &err);
  REQUIRE(s != NULL);
  CHECK(pkid_signers_for(s, &ca) == NULL);
  pkid_signers_free(s);
  EVP_PKEY_free(ca.issuer.key);
}

int main(void) {
  RUN(dry_pool_signs_from_batches);
  RUN(idle_refill_waits_for_a_whole_step);
  RUN(no_signer_for_other_keys);
  return test_finish();
}
