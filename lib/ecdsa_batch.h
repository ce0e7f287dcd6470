/* ecdsa_batch.h: ECDSA P-256 signing with nonces prepared ahead, in batches.
 *
 * An ECDSA signature (FIPS 186-4 6.4, SEC 1 4.1.3) is r = x(kG) mod n and
 * s = k^-1 (e + r d) mod n. Everything but e (the digest) can be computed
 * before the request arrives: a pool draws k, computes r with the
 * constant-time fixed-base multiplication, and inverts a whole batch of k
 * with one modular inversion (Montgomery's trick); it even folds the key in,
 * keeping k^-1 r d. Signing a digest is then s = k^-1 e + k^-1 r d: one
 * modular multiplication, one addition, and DER encoding.
 *
 * A nonce used twice gives the key away (two equations in k and d), so each
 * prepared pair is used once: pki_ecdsa_pool_sign takes the pair out of the
 * pool before using it and wipes it afterwards, whatever the outcome.
 *
 * Threads: a pool has one owner. No function here may be called on the same
 * pool from two threads at once (one pool per worker thread, refilled by
 * that worker when it is idle or between batches). Different pools, even
 * for the same key, are independent. */
#ifndef PKID_LIB_ECDSA_BATCH_H
#define PKID_LIB_ECDSA_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h>
#include <openssl/evp.h>

#include "lib/err.h"

/* PKI_ECDSA_P256_SIG_MAX is the longest DER ECDSA-Sig-Value for P-256:
 * SEQUENCE { INTEGER r, INTEGER s }, each up to 33 octets. */
#define PKI_ECDSA_P256_SIG_MAX 72

/* PKI_ECDSA_INVERT_BATCH is how many nonces share one modular inversion
 * during a refill. The inversion (a ~256-step exponentiation) then costs
 * about as much per nonce as the three multiplications Montgomery's trick
 * adds for each. */
#define PKI_ECDSA_INVERT_BATCH 128

typedef struct pki_ecdsa_pool pki_ecdsa_pool;

/* pki_ecdsa_pool_new makes an empty pool for the ECDSA P-256 private key
 * |key|, holding up to |capacity| (>= 1) prepared nonces. The pool keeps
 * its own copy of the private scalar, not a reference to |key|. Another
 * key type fails with PKI_ERR_UNSUPPORTED. Free with pki_ecdsa_pool_free. */
pki_ecdsa_pool *pki_ecdsa_pool_new(const EVP_PKEY *key, size_t capacity,
                                   pki_err *err);

/* pki_ecdsa_pool_free wipes the key and every unused nonce and frees
 * |pool|. NULL is allowed. */
void pki_ecdsa_pool_free(pki_ecdsa_pool *pool);

/* pki_ecdsa_pool_refill prepares up to |count| more nonces, stopping when
 * the pool is full. Fresh k come from the CSPRNG. On failure the pool keeps
 * the nonces it had before the failing batch and is still usable. Not
 * thread-safe: the owner calls it off the request path. */
int pki_ecdsa_pool_refill(pki_ecdsa_pool *pool, size_t count, pki_err *err);

/* pki_ecdsa_pool_available returns how many prepared nonces are left. */
size_t pki_ecdsa_pool_available(const pki_ecdsa_pool *pool);

/* pki_ecdsa_pool_capacity returns the capacity given at creation. */
size_t pki_ecdsa_pool_capacity(const pki_ecdsa_pool *pool);

/* pki_ecdsa_pool_sign signs |digest|, the SHA-256 of the data (for a
 * certificate, of the TBSCertificate), with the pool's key, writing a DER
 * ECDSA-Sig-Value of |*out_len| bytes into |out_der|, which holds
 * |max_len| bytes (PKI_ECDSA_P256_SIG_MAX is always enough; less fails with
 * PKI_ERR_INVALID). It uses a prepared nonce, or computes one on the spot
 * when the pool is empty (correct, just slower). Not thread-safe: only the
 * pool's owner may call it. */
int pki_ecdsa_pool_sign(pki_ecdsa_pool *pool, uint8_t *out_der,
                        size_t *out_len, size_t max_len,
                        const uint8_t digest[32], pki_err *err);

/* Test hooks. They bypass the pool's guarantees and exist only so that
 * unit tests can check the arithmetic against known answers. */

/* pki_ecdsa_sign_with_k_for_testing signs a digest of any length (reduced
 * by bits2int, RFC 6979 2.3.2) with the nonce |k| (big-endian, |k_len|
 * bytes, 1 <= k < n) instead of a random one, so that the result can be
 * compared with RFC 6979's vectors. Never use it to sign anything real. */
int pki_ecdsa_sign_with_k_for_testing(pki_ecdsa_pool *pool, uint8_t *out_der,
                                      size_t *out_len, size_t max_len,
                                      const uint8_t *digest, size_t digest_len,
                                      const uint8_t *k, size_t k_len,
                                      pki_err *err);

/* pki_ecdsa_batch_invert_for_testing replaces each of |values[0..count)|
 * (each in [1, n), count <= PKI_ECDSA_INVERT_BATCH) by its inverse mod the
 * P-256 group order n, with the batch inversion the pool uses. */
int pki_ecdsa_batch_invert_for_testing(pki_ecdsa_pool *pool, BIGNUM **values,
                                       size_t count, pki_err *err);

#endif /* PKID_LIB_ECDSA_BATCH_H */
