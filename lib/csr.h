/* csr.h: PKCS#10 certification requests (RFC 2986).
 *
 * A CSR carries the subject's public key and is signed with the matching
 * private key: checking that signature is the proof of possession pkid
 * requires before it certifies a key. pkid takes from a CSR only the key
 * and, if present, the names requested in an extensionRequest's
 * subjectAltName; what a certificate finally holds is decided by the
 * catalogue profile, never by the request. */
#ifndef PKID_LIB_CSR_H
#define PKID_LIB_CSR_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>

#include "lib/err.h"
#include "lib/key.h"
#include "lib/names.h"

#define PKI_CSR_MAX_LEN 16384 /* larger than any CSR pkid accepts */

typedef struct pki_csr {
  CBS subject; /* Name element; points into the parsed buffer */
  CBS spki;    /* SubjectPublicKeyInfo element; points into the parsed buffer */
  EVP_PKEY *key; /* owned */
  pki_key_type key_type;
  unsigned key_bits;
  char common_name[256]; /* the subject CN, "" when there is none */
  pki_name *names; /* SANs the request asks for; owned */
  size_t num_names;
} pki_csr;

/* pki_csr_parse reads a DER CSR, checks it is well formed, that its key is
 * one pkid accepts and that it is signed by that key. Failures:
 * PKI_ERR_INVALID (malformed, with where), PKI_ERR_UNSUPPORTED (key type or
 * size, signature algorithm), PKI_ERR_AUTH (the signature does not verify).
 * |der| must outlive |out|. On failure |out| needs no cleanup. */
int pki_csr_parse(pki_csr *out, const uint8_t *der, size_t len, pki_err *err);

/* pki_csr_cleanup frees what pki_csr_parse allocated. Safe on a zeroed struct. */
void pki_csr_cleanup(pki_csr *csr);

/* pki_csr_build makes a DER CSR for |key| with subject CN |common_name|
 * (may be NULL) and |names| requested as subjectAltName, signed by |key|
 * (SHA-256 for ECDSA P-256 and RSA, SHA-384 for P-384). */
int pki_csr_build(uint8_t **out, size_t *out_len, EVP_PKEY *key,
                  const char *common_name, const pki_name *names,
                  size_t num_names, pki_err *err);

#endif /* PKID_LIB_CSR_H */
