/* token.h: one-time bootstrap tokens, for a service's first enrollment.
 *
 * A service that has no certificate yet cannot authenticate with one; an
 * operator gives it a token instead (`pkictl token create`), good for one
 * Issue of that service's certificate before it expires. A token is
 *
 *   pkid-bt1.<base64url payload>.<base64url HMAC-SHA256(key, payload)>
 *   payload = u8-len service name, u64 expiry (Unix seconds), 16 random octets
 *
 * with a 32-octet key that pkid and pkictl share (pki/bootstrap/token.key,
 * 0600). pkid checks the MAC in constant time, the expiry, and that the
 * token was never used: its SHA-256 is journaled when it is consumed. */
#ifndef PKID_LIB_TOKEN_H
#define PKID_LIB_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define PKI_TOKEN_KEY_LEN 32
#define PKI_TOKEN_MAX_TEXT 512

typedef struct pki_token {
  char service[256];
  int64_t expires;
  uint8_t id[32]; /* SHA-256 of the whole token text: what is journaled */
} pki_token;

/* pki_token_make writes a new token for |service|, valid until |expires|,
 * into |out| (at least PKI_TOKEN_MAX_TEXT bytes). */
int pki_token_make(char *out, size_t out_size, const uint8_t key[PKI_TOKEN_KEY_LEN],
                   const char *service, int64_t expires, pki_err *err);

/* pki_token_check parses |text| and checks its MAC and expiry against
 * |now|. A malformed token fails with PKI_ERR_INVALID, a bad MAC or an
 * expired token with PKI_ERR_AUTH. It does not know whether the token was
 * used: the caller checks |out->id| against what was consumed. */
int pki_token_check(pki_token *out, const char *text, size_t len,
                    const uint8_t key[PKI_TOKEN_KEY_LEN], int64_t now, pki_err *err);

/* pki_token_key_load reads the 32-octet key from |path|; with |create|, a
 * missing key file is made (random, mode 0600). */
int pki_token_key_load(uint8_t out[PKI_TOKEN_KEY_LEN], const char *path, int create,
                       pki_err *err);

#endif /* PKID_LIB_TOKEN_H */
