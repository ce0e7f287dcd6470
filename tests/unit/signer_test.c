/* signer_test: a worker's signers (server/ca/signer.h) over a real key.
 * The pool starts empty, as in a worker that has never been idle, so the
 * first nonces come from the batches prepared when the pool runs dry:
 * each signature must verify under the CA's key and no nonce may repeat
 * (a repeated r with different messages gives the key away). Idle
 * refills come a whole step at a time. */
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

/* fixture is one CA of |type| with a fresh key, and its signers. */
typedef struct fixture {
  pkid_ca ca;
  pkid_cas cas;
  pkid_signers *signers;
} fixture;

static int fixture_init(fixture *f, pki_key_type type, unsigned bits, size_t pool) {
  pki_err err;
  memset(f, 0, sizeof(*f));
  f->ca.issuer.key_type = type;
  if ((f->ca.issuer.key = pki_key_generate(type, bits, &err)) == NULL) return 0;
  f->cas = (pkid_cas){.cas = &f->ca, .num_cas = 1};
  return (f->signers = pkid_signers_new(&f->cas, pool, &err)) != NULL;
}

static void fixture_cleanup(fixture *f) {
  pkid_signers_free(f->signers);
  EVP_PKEY_free(f->ca.issuer.key);
}

static int cmp_r(const void *a, const void *b) { return memcmp(a, b, 32); }

/* sign_one signs 24 random bytes; with |r|, checks the signature under
 * |key| and puts its r there, left-padded. */
static int sign_one(const pki_signer *signer, EVP_PKEY *key, uint8_t r[32]) {
  uint8_t data[24], digest[SHA256_DIGEST_LENGTH], *sig = NULL;
  size_t sig_len = 0;
  pki_err err;
  RAND_bytes(data, sizeof(data));
  int ok = signer->sign(signer->ctx, &sig, &sig_len, data, sizeof(data), &err);
  if (ok && r != NULL) {
    SHA256(data, sizeof(data), digest);
    ECDSA_SIG *s = ECDSA_SIG_from_bytes(sig, sig_len);
    const BIGNUM *br = NULL;
    if (s != NULL) ECDSA_SIG_get0(s, &br, NULL);
    ok = s != NULL &&
         ECDSA_verify(0, digest, sizeof(digest), sig, sig_len, EVP_PKEY_get0_EC_KEY(key)) == 1 &&
         BN_bn2bin_padded(r, 32, br);
    ECDSA_SIG_free(s);
  }
  free(sig);
  return ok;
}

TEST(dry_pool_signs_from_batches) {
  fixture f;
  REQUIRE(fixture_init(&f, PKI_KEY_ECDSA_P256, 256, 512));
  const pki_signer *signer = pkid_signers_for(f.signers, &f.ca);
  REQUIRE(signer != NULL);
  uint8_t (*rs)[32] = calloc(SIGNATURES, 32);
  REQUIRE(rs != NULL);
  size_t bad = 0;
  for (size_t i = 0; i < SIGNATURES; i++) bad += !sign_one(signer, f.ca.issuer.key, rs[i]);
  CHECK(bad == 0);
  qsort(rs, SIGNATURES, 32, cmp_r);
  size_t repeats = 0;
  for (size_t i = 1; i < SIGNATURES; i++) repeats += memcmp(rs[i - 1], rs[i], 32) == 0;
  CHECK(repeats == 0);
  free(rs);
  fixture_cleanup(&f);
}

static int g_steps;

/* count_steps lets a refill go on, counting how often it was asked. */
static int count_steps(void *ctx) {
  (void)ctx;
  g_steps++;
  return 1;
}

/* Idle refills come a whole step at a time: a pool short of fewer nonces
 * than a step is left alone, so no batch is smaller than a step. */
TEST(idle_refill_waits_for_a_whole_step) {
  fixture f;
  REQUIRE(fixture_init(&f, PKI_KEY_ECDSA_P256, 256, 64));
  const pki_signer *signer = pkid_signers_for(f.signers, &f.ca);
  REQUIRE(signer != NULL);
  g_steps = 0;
  pkid_signers_refill(f.signers, 16, count_steps, NULL);
  CHECK(g_steps == 4); /* empty: 4 steps of 16 fill 64 */
  for (int i = 0; i < 15; i++) CHECK(sign_one(signer, f.ca.issuer.key, NULL));
  g_steps = 0;
  pkid_signers_refill(f.signers, 16, count_steps, NULL);
  CHECK(g_steps == 0); /* 15 short: not a whole step */
  CHECK(sign_one(signer, f.ca.issuer.key, NULL));
  pkid_signers_refill(f.signers, 16, count_steps, NULL);
  CHECK(g_steps == 1); /* 16 short: one step */
  g_steps = 0;
  pkid_signers_refill(f.signers, 16, count_steps, NULL);
  CHECK(g_steps == 0); /* full again */
  fixture_cleanup(&f);
}

/* A CA of another key type has no signer: lib/ signs with its key. */
TEST(no_signer_for_other_keys) {
  fixture f;
  REQUIRE(fixture_init(&f, PKI_KEY_ECDSA_P384, 384, 16));
  CHECK(pkid_signers_for(f.signers, &f.ca) == NULL);
  fixture_cleanup(&f);
}

int main(void) {
  RUN(dry_pool_signs_from_batches);
  RUN(idle_refill_waits_for_a_whole_step);
  RUN(no_signer_for_other_keys);
  return test_finish();
}
