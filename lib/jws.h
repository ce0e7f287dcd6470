/* jws.h: JSON Web Signatures as ACME clients send them (RFC 8555 6.2), and
 * the JSON Web Keys inside them, verified with BoringSSL; JSON through
 * jansson.
 *
 * A request body is the flattened JSON serialization (RFC 7515 7.2.2) with
 * exactly one signature: {"protected", "payload", "signature"}, each
 * base64url without padding (RFC 7515 2). What is refused, and why:
 *  - JSON that does not parse, holds a member twice (the signer and the
 *    verifier might read different values), or has members besides those
 *    three: an unprotected "header" is not allowed (RFC 8555 6.2);
 *  - a protected header that is not a JSON object, names no "alg", names
 *    "crit" (no extension is understood, RFC 7515 4.1.11), or has both or
 *    neither of "jwk" and "kid" (RFC 8555 6.2);
 *  - an "alg" other than ES256, ES384, RS256 or EdDSA (RFC 7518 3.1, RFC
 *    8037 3.1), with PKI_ERR_UNSUPPORTED: ACME's badSignatureAlgorithm. MAC
 *    algorithms are taken only by pki_jws_verify_mac, for External Account
 *    Binding (RFC 8555 7.3.4), where HS256 is the one accepted;
 *  - a "jwk" that is not a public key of the alg's type: EC P-256 for
 *    ES256, P-384 for ES384 (coordinates of the curve's full width, a
 *    point on it), RSA of 2048 to 4096 bits for RS256, OKP Ed25519 for
 *    EdDSA; one with private members ("d", ...) is refused too.
 * "nonce" and "url" are given to the caller as found (NULL if absent):
 * ACME's checks of them (a nonce it issued, the URL requested) are its
 * own. Errors: PKI_ERR_INVALID (ACME's malformed) unless said otherwise; a
 * signature that does not verify is PKI_ERR_AUTH. */
#ifndef PKID_LIB_JWS_H
#define PKID_LIB_JWS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/err.h"

/* A request body is at most this long (pkid's HTTP server enforces it). */
#define PKI_JWS_MAX 65536

typedef enum pki_jws_alg {
  PKI_JWS_ES256 = 1,
  PKI_JWS_ES384,
  PKI_JWS_RS256,
  PKI_JWS_EDDSA,
  PKI_JWS_HS256, /* External Account Binding's MAC only */
} pki_jws_alg;

typedef struct pki_jws {
  pki_jws_alg alg;
  char *nonce; /* the protected header's, NUL-terminated; NULL if absent */
  char *url;   /* likewise */
  char *kid;   /* exactly one of |kid| and |jwk| is set */
  EVP_PKEY *jwk;
  uint8_t *payload;               /* decoded; empty for POST-as-GET */
  size_t payload_len;
  uint8_t *signing_input;         /* ASCII(protected || '.' || payload) */
  size_t signing_input_len;
  uint8_t *signature;             /* decoded */
  size_t signature_len;
} pki_jws;

/* pki_jws_parse parses |body| as above, without checking the signature. */
int pki_jws_parse(pki_jws *out, const uint8_t *body, size_t len, pki_err *err);

/* pki_jws_verify checks the signature under |key| (|jws->jwk|, or the
 * account's key that |jws->kid| names), which must be of |jws->alg|'s type.
 * ECDSA signatures are r||s of the curve's width (RFC 7518 3.4). */
int pki_jws_verify(const pki_jws *jws, const EVP_PKEY *key, pki_err *err);

/* pki_jws_verify_mac checks an HS256 JWS under |key| (constant time). An
 * alg that is not HS256 is PKI_ERR_UNSUPPORTED. */
int pki_jws_verify_mac(const pki_jws *jws, const uint8_t *key, size_t key_len, pki_err *err);

/* pki_jwk_json writes |key|'s public JWK into |buf| (|size| octets;
 * PKI_JWK_JSON_MAX holds any key pkid takes), NUL-terminated, |*out_len|
 * not counting the NUL: the required members only, in lexicographic order,
 * no whitespace (RFC 7638 3.2), the form the thumbprint hashes and the
 * ACME account record keeps. */
#define PKI_JWK_JSON_MAX 1536
int pki_jwk_json(char *buf, size_t size, size_t *out_len, const EVP_PKEY *key, pki_err *err);

/* pki_jwk_thumbprint is the RFC 7638 thumbprint of |key| (SHA-256 over
 * the required members, in lexicographic order, no whitespace): the
 * account key's name in key authorizations (RFC 8555 8.1). */
int pki_jwk_thumbprint(uint8_t out[32], const EVP_PKEY *key, pki_err *err);

/* pki_jwk_parse reads a public JWK from JSON text (as in a keyChange's
 * inner JWS or an EAB payload). */
EVP_PKEY *pki_jwk_parse(const char *json, size_t len, pki_err *err);

/* pki_jws_cleanup frees what pki_jws_parse allocated; safe on a zeroed
 * struct. */
void pki_jws_cleanup(pki_jws *jws);

#endif /* PKID_LIB_JWS_H */
