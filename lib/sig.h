/* sig.h: signature algorithms, for certificates, CSRs and (later) OCSP.
 *
 * A CA key's type fixes its algorithm: ECDSA P-256 with SHA-256, P-384 with
 * SHA-384 (RFC 5758 3.2), Ed25519 (RFC 8410). Verification also accepts
 * what subjects sign CSRs with: ECDSA with SHA-256/384/512, Ed25519, and
 * RSA PKCS#1 v1.5 with SHA-256/384/512 (RFC 4055). */
#ifndef PKID_LIB_SIG_H
#define PKID_LIB_SIG_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>

#include "lib/err.h"
#include "lib/key.h"

/* pki_sig_md returns the digest a CA key of |type| signs with; NULL for
 * Ed25519, which hashes internally. */
const EVP_MD *pki_sig_md(pki_key_type type);

/* pki_sig_add_alg writes the AlgorithmIdentifier that a key of |type|
 * signs with. */
int pki_sig_add_alg(CBB *cbb, pki_key_type type, pki_err *err);

/* pki_sig_sign signs |data| with |key| (a CA key type) into a malloc'd
 * buffer: a DER ECDSA-Sig-Value or 64 Ed25519 octets. */
int pki_sig_sign(uint8_t **out, size_t *out_len, EVP_PKEY *key,
                 const uint8_t *data, size_t data_len, pki_err *err);

/* A pki_signer signs with a CA key some other way than pki_sig_sign: the
 * worker pool's batched ECDSA, from nonces prepared ahead. |sign| has
 * pki_sig_sign's contract (it signs the data, not a digest) and must give
 * a signature that verifies under the CA's public key. */
typedef struct pki_signer {
  int (*sign)(void *ctx, uint8_t **out, size_t *out_len, const uint8_t *data,
              size_t data_len, pki_err *err);
  void *ctx;
} pki_signer;

/* pki_sig_verify checks |sig| over |data| under |key|, with the algorithm
 * named by the AlgorithmIdentifier element |alg|, which must suit the key.
 * A bad signature fails with PKI_ERR_AUTH, an algorithm pkid does not take
 * with PKI_ERR_UNSUPPORTED. */
int pki_sig_verify(const CBS *alg, EVP_PKEY *key, const uint8_t *data,
                   size_t data_len, const uint8_t *sig, size_t sig_len,
                   pki_err *err);

#endif /* PKID_LIB_SIG_H */
