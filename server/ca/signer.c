#include "server/ca/signer.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "lib/ecdsa_batch.h"

/* A dry pool is refilled by this many nonces on the request path: one
 * signature waits for them (about 0.3 ms), the next ones do not, and the
 * batch's one inversion costs each nonce under 0.5 us. */
#define DRY_REFILL 32

struct pkid_signers {
  const pkid_cas *cas;
  pki_ecdsa_pool **pools; /* one per CA; NULL for other key types */
  pki_signer *signers;    /* one per CA, each over its pool */
};

/* pool_sign has pki_sig_sign's contract: SHA-256 of the data, then a
 * prepared nonce, from a batch prepared now when none is left. */
static int pool_sign(void *ctx, uint8_t **out, size_t *out_len, const uint8_t *data,
                     size_t data_len, pki_err *err) {
  pki_ecdsa_pool *pool = ctx;
  if (pki_ecdsa_pool_available(pool) == 0 && !pki_ecdsa_pool_refill(pool, DRY_REFILL, err)) {
    return 0;
  }
  uint8_t digest[SHA256_DIGEST_LENGTH], sig[PKI_ECDSA_P256_SIG_MAX];
  size_t sig_len;
  SHA256(data, data_len, digest);
  if (!pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), digest, err)) return 0;
  *out = malloc(sig_len);
  if (*out == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(*out, sig, sig_len);
  *out_len = sig_len;
  return 1;
}

pkid_signers *pkid_signers_new(const pkid_cas *cas, size_t pool_capacity, pki_err *err) {
  size_t n = cas->num_cas > 0 ? cas->num_cas : 1;
  pkid_signers *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  s->cas = cas;
  if ((s->pools = calloc(n, sizeof(*s->pools))) == NULL ||
      (s->signers = calloc(n, sizeof(*s->signers))) == NULL) {
    pkid_signers_free(s);
    PKI_ERR_OOM(err);
    return NULL;
  }
  for (size_t i = 0; i < cas->num_cas; i++) {
    const pki_issuer *issuer = &cas->cas[i].issuer;
    /* A key in a token makes its own nonces: no pool (lib/pkcs11.h). */
    if (issuer->key_type != PKI_KEY_ECDSA_P256 || issuer->token != NULL) continue;
    if ((s->pools[i] = pki_ecdsa_pool_new(issuer->key, pool_capacity, err)) == NULL) {
      pkid_signers_free(s);
      return NULL;
    }
    s->signers[i] = (pki_signer){pool_sign, s->pools[i]};
  }
  return s;
}

void pkid_signers_free(pkid_signers *s) {
  if (s == NULL) return;
  for (size_t i = 0; s->pools != NULL && i < s->cas->num_cas; i++) {
    pki_ecdsa_pool_free(s->pools[i]);
  }
  free(s->pools);
  free(s->signers);
  free(s);
}

const pki_signer *pkid_signers_for(const pkid_signers *s, const pkid_ca *ca) {
  if (s == NULL || ca == NULL) return NULL;
  size_t i = pkid_cas_index(s->cas, ca);
  return i < s->cas->num_cas && s->pools[i] != NULL ? &s->signers[i] : NULL;
}

void pkid_signers_refill(pkid_signers *s, size_t step, int (*keep_going)(void *ctx),
                         void *ctx) {
  for (size_t i = 0; i < s->cas->num_cas; i++) {
    pki_ecdsa_pool *pool = s->pools[i];
    while (pool != NULL &&
           pki_ecdsa_pool_capacity(pool) - pki_ecdsa_pool_available(pool) >= step &&
           keep_going(ctx)) {
      pki_err err;
      if (!pki_ecdsa_pool_refill(pool, step, &err)) break;
    }
  }
}
