/* base64.h: base64 and base64url (RFC 4648), the one codec of lib/.
 *
 * Encoding goes through BoringSSL's EVP_EncodeBlock. Decoding is strict:
 * only the characters of the alphabet(s) named in |flags|, no whitespace,
 * padding as |flags| says, and canonical: the unused low bits of the last
 * symbol must be zero (RFC 4648 section 3.5). Every byte string therefore
 * has exactly one accepted spelling per alphabet and padding form; that
 * matters where text is hashed or compared (bootstrap tokens are journaled
 * by the hash of their text). Characters are mapped to values without
 * branching on them, as BoringSSL does, because PEM carries private keys.
 *
 * Callers that must accept more (whitespace between PEM lines, a '+' that a
 * form decoder turned into a space) remove it before decoding. */
#ifndef PKID_LIB_BASE64_H
#define PKID_LIB_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

/* Alphabets. Encoding takes exactly one; decoding takes one or both
 * (PKI_BASE64_ANY_ALPHABET accepts either, even mixed in one text, as OCSP
 * GET requests from field clients need: RFC 6960 appendix A.1). */
#define PKI_BASE64_STD 0x01u /* RFC 4648 section 4: A-Z a-z 0-9 + / */
#define PKI_BASE64_URL 0x02u /* RFC 4648 section 5: A-Z a-z 0-9 - _ */
#define PKI_BASE64_ANY_ALPHABET (PKI_BASE64_STD | PKI_BASE64_URL)

/* Padding, exactly one of:
 *  - PKI_BASE64_PAD_REQUIRED: '=' to a multiple of four characters
 *    (encoding: write it);
 *  - PKI_BASE64_PAD_OPTIONAL: decoding only; either the padded form or the
 *    unpadded one, never a part of the padding ("QQ=");
 *  - PKI_BASE64_NO_PAD: no '=' at all (encoding: write none), as RFC 4648
 *    section 3.2 allows where the length is known, e.g. in tokens. */
#define PKI_BASE64_PAD_REQUIRED 0x10u
#define PKI_BASE64_PAD_OPTIONAL 0x20u
#define PKI_BASE64_NO_PAD 0x40u

/* PKI_BASE64_ENCODED_MAX is the most characters |n| bytes encode to under
 * any flags (the padded length), not counting a NUL: for static buffers. */
#define PKI_BASE64_ENCODED_MAX(n) (((n) + 2) / 3 * 4)

/* pki_base64_encoded_len sets |*out_len| to the number of characters
 * pki_base64_encode writes for |in_len| bytes under |flags|, not counting
 * the NUL it writes after them. It returns 0 if that does not fit a size_t
 * or |flags| are not valid for encoding. */
int pki_base64_encoded_len(size_t *out_len, size_t in_len, unsigned flags);

/* pki_base64_max_decoded_len is the most bytes |in_len| characters can
 * decode to under any flags (fewer when there is padding). */
size_t pki_base64_max_decoded_len(size_t in_len);

/* pki_base64_encode writes |in| as base64 in the alphabet and padding form
 * of |flags| (one alphabet; PKI_BASE64_PAD_REQUIRED or PKI_BASE64_NO_PAD)
 * into |out|, NUL-terminated, and sets |*out_len| to the number of
 * characters before the NUL. |out_size| must be at least
 * pki_base64_encoded_len + 1; otherwise, or with bad |flags|, it fails with
 * PKI_ERR_INVALID. */
int pki_base64_encode(char *out, size_t out_size, size_t *out_len, const uint8_t *in,
                      size_t in_len, unsigned flags, pki_err *err);

/* pki_base64_decode decodes |in_len| characters of |in| into |out|
 * (|out_size| bytes; pki_base64_max_decoded_len(in_len) always suffices)
 * and sets |*out_len|. It fails with PKI_ERR_INVALID, saying why, for a
 * character outside the alphabets of |flags| (whitespace included), padding
 * that |flags| do not allow or that is misplaced, a length no encoder makes
 * (4n + 1), unused bits that are set, or too little room. On failure |out|
 * may hold part of the data; the caller wipes it if it was secret. */
int pki_base64_decode(uint8_t *out, size_t out_size, size_t *out_len, const char *in,
                      size_t in_len, unsigned flags, pki_err *err);

#endif /* PKID_LIB_BASE64_H */
