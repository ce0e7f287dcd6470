/* shamir.h: M-of-N secret sharing for the root key's custodians.
 *
 * Shamir's scheme over GF(2^8) (the AES field, x^8 + x^4 + x^3 + x + 1),
 * byte by byte: a random polynomial of degree M-1 per secret byte, share i
 * holds its value at x = i. Any M shares rebuild the secret by Lagrange
 * interpolation at 0; fewer reveal nothing about it. Field arithmetic is
 * constant time (no tables indexed by secret data).
 *
 * A share's text form is one line a custodian can keep on paper:
 *   pkid-share-v1:<set id, 16 hex>:<M>:<N>:<x>:<y, hex>:<crc32 of the rest, 8 hex>
 * The set id ties the shares of one split together; the checksum catches a
 * mistyped share before interpolation would silently give a wrong secret. */
#ifndef PKID_LIB_SHAMIR_H
#define PKID_LIB_SHAMIR_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define PKI_SHAMIR_MAX_SECRET 64
#define PKI_SHARE_TEXT_MAX 256

typedef struct pki_share {
  uint8_t set_id[8];
  uint8_t m, n, x; /* 1 <= m <= n <= 255, 1 <= x <= n */
  uint8_t y[PKI_SHAMIR_MAX_SECRET];
  size_t len; /* secret length */
} pki_share;

/* pki_shamir_split fills |out_shares| (an array of |n|) with shares of
 * |secret|, any |m| of which rebuild it. */
int pki_shamir_split(pki_share *out_shares, const uint8_t *secret, size_t len,
                     unsigned m, unsigned n, pki_err *err);

/* pki_shamir_combine rebuilds the secret from |num| shares into |out|
 * (at least PKI_SHAMIR_MAX_SECRET bytes) and sets |*out_len|. Too few
 * shares, shares of different sets, or a repeated share fail with
 * PKI_ERR_AUTH and say which. */
int pki_shamir_combine(uint8_t *out, size_t *out_len, const pki_share *shares,
                       size_t num, pki_err *err);

/* pki_share_encode writes the one-line text form into |out| (at least
 * PKI_SHARE_TEXT_MAX bytes). */
int pki_share_encode(char *out, size_t out_size, const pki_share *share,
                     pki_err *err);

/* pki_share_decode parses the text form (surrounding white space allowed)
 * and checks its checksum; PKI_ERR_INVALID says what is wrong. */
int pki_share_decode(pki_share *out, const char *text, pki_err *err);

#endif /* PKID_LIB_SHAMIR_H */
