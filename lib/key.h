/* key.h: key pairs: the types pkid accepts, generation, and files.
 *
 * Subject keys (in CSRs) may be ECDSA P-256 or P-384, Ed25519, or RSA of
 * 2048 to 4096 bits. CA keys may be ECDSA P-256 (the default), P-384 or
 * Ed25519.
 *
 * Files:
 *  - a plain private key is PKCS#8 in PEM (label "PRIVATE KEY"), mode 0600;
 *  - a sealed private key (a CA key at rest) is PKCS#8 DER encrypted with
 *    an AEAD (AES-256-GCM) under a key derived from a secret by scrypt
 *    (RFC 7914), in PEM (label "PKID SEALED PRIVATE KEY"), mode 0600. The
 *    scrypt parameters, salt and nonce are stored in the clear and bound to
 *    the ciphertext as additional data. A wrong secret fails to open with
 *    PKI_ERR_AUTH.
 * Every write is atomic: a reader sees the old file or the new one. */
#ifndef PKID_LIB_KEY_H
#define PKID_LIB_KEY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/err.h"

typedef enum pki_key_type {
  PKI_KEY_NONE = 0,
  PKI_KEY_ECDSA_P256,
  PKI_KEY_ECDSA_P384,
  PKI_KEY_ED25519,
  PKI_KEY_RSA,
} pki_key_type;

/* pki_key_type_parse parses "ecdsa-p256", "ecdsa-p384", "ed25519",
 * "rsa-2048", "rsa-3072" or "rsa-4096" into a type and a size in bits (the
 * curve size for ECDSA, 256 for Ed25519). */
int pki_key_type_parse(pki_key_type *out_type, unsigned *out_bits,
                       const char *text, pki_err *err);

/* pki_key_type_name returns the text form pki_key_type_parse accepts.
 * It returns a static string. */
const char *pki_key_type_name(pki_key_type type, unsigned bits);

/* pki_key_generate makes a fresh key pair from the CSPRNG. |bits| matters
 * only for RSA. The caller frees the result with EVP_PKEY_free. */
EVP_PKEY *pki_key_generate(pki_key_type type, unsigned bits, pki_err *err);

/* pki_key_describe tells the type and size of |key|, and fails with
 * PKI_ERR_UNSUPPORTED for any key pkid does not accept as a subject key
 * (another curve, RSA under 2048 or over 4096 bits, DSA, ...). */
int pki_key_describe(pki_key_type *out_type, unsigned *out_bits,
                     const EVP_PKEY *key, pki_err *err);

/* pki_key_type_can_sign_certs reports whether |type| may be a CA key. */
int pki_key_type_can_sign_certs(pki_key_type type);

/* pki_key_write_pem writes |key|'s private key to |path| as PKCS#8 PEM with
 * mode 0600, atomically. */
int pki_key_write_pem(const char *path, const EVP_PKEY *key, pki_err *err);

/* pki_key_read_pem reads a PKCS#8 (or traditional EC/RSA) PEM private key. */
EVP_PKEY *pki_key_read_pem(const char *path, pki_err *err);

/* pki_scrypt_cost is the scrypt work factor, log2(N), used when sealing.
 * 15 (N = 32768, r = 8, p = 1: 32 MiB, ~0.1 s) is the default; opening
 * accepts 10..20. */
#define PKI_SCRYPT_LOG2N_DEFAULT 15

/* pki_key_seal encrypts |key| under |secret| (a passphrase or a random
 * secret rebuilt from shares) and returns the PEM text in |*out| (malloc'd,
 * NUL-terminated; |*out_len| excludes the NUL). */
int pki_key_seal(char **out, size_t *out_len, const EVP_PKEY *key,
                 const uint8_t *secret, size_t secret_len, unsigned log2n,
                 pki_err *err);

/* pki_key_open decrypts what pki_key_seal made. A wrong secret or altered
 * text fails with PKI_ERR_AUTH; text that is not a sealed key fails with
 * PKI_ERR_INVALID. */
EVP_PKEY *pki_key_open(const char *pem, size_t pem_len, const uint8_t *secret,
                       size_t secret_len, pki_err *err);

/* pki_key_write_sealed and pki_key_read_sealed do the same to a file (0600). */
int pki_key_write_sealed(const char *path, const EVP_PKEY *key,
                         const uint8_t *secret, size_t secret_len,
                         pki_err *err);
EVP_PKEY *pki_key_read_sealed(const char *path, const uint8_t *secret,
                              size_t secret_len, pki_err *err);

/* pki_spki_sha256 writes the SHA-256 of |key|'s DER SubjectPublicKeyInfo to
 * |out|: the "key hash" the journal records. */
int pki_spki_sha256(uint8_t out[32], const EVP_PKEY *key, pki_err *err);

#endif /* PKID_LIB_KEY_H */
