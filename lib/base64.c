/* base64.c: see base64.h. */
#include "lib/base64.h"

#include <stdint.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

#define ALPHABETS PKI_BASE64_ANY_ALPHABET
#define PADDINGS (PKI_BASE64_PAD_REQUIRED | PKI_BASE64_PAD_OPTIONAL | PKI_BASE64_NO_PAD)

static int one_bit(unsigned v) { return v != 0 && (v & (v - 1)) == 0; }

static int encode_flags_ok(unsigned flags) {
  unsigned pad = flags & PADDINGS;
  return (flags & ~(ALPHABETS | PADDINGS)) == 0 && one_bit(flags & ALPHABETS) &&
         (pad == PKI_BASE64_PAD_REQUIRED || pad == PKI_BASE64_NO_PAD);
}

static int decode_flags_ok(unsigned flags) {
  return (flags & ~(ALPHABETS | PADDINGS)) == 0 && (flags & ALPHABETS) != 0 &&
         one_bit(flags & PADDINGS);
}

int pki_base64_encoded_len(size_t *out_len, size_t in_len, unsigned flags) {
  size_t groups = in_len / 3, rem = in_len % 3;
  /* Room for the last group and the NUL as well. */
  if (!encode_flags_ok(flags) || groups > (SIZE_MAX - 5) / 4) return 0;
  size_t tail = rem == 0 ? 0 : (flags & PKI_BASE64_NO_PAD) ? rem + 1 : 4;
  *out_len = groups * 4 + tail;
  return 1;
}

size_t pki_base64_max_decoded_len(size_t in_len) {
  /* 6 bits a character, whole bytes only; written so as not to overflow. */
  return in_len / 4 * 3 + in_len % 4 * 3 / 4;
}

/* ct_eq is 0xff when a == b and 0 otherwise, without a branch on either. */
static uint8_t ct_eq(uint8_t a, uint8_t b) {
  return (uint8_t)(((uint32_t)(a ^ b) - 1) >> 24);
}

/* ct_in_range is 0xff when lo <= a <= hi and 0 otherwise: a difference
 * that wraps sets the top bit. */
static uint8_t ct_in_range(uint8_t a, uint8_t lo, uint8_t hi) {
  uint32_t below = (uint32_t)a - lo, above = (uint32_t)hi - a;
  return (uint8_t)(((below | above) >> 31) - 1);
}

/* url_alphabet turns the standard alphabet's '+' and '/' into '-' and '_'
 * (RFC 4648 section 5), in constant time since the text may be a key. */
static void url_alphabet(char *text, size_t len) {
  for (size_t i = 0; i < len; i++) {
    uint8_t c = (uint8_t)text[i];
    c ^= (uint8_t)((ct_eq(c, '+') & ('+' ^ '-')) | (ct_eq(c, '/') & ('/' ^ '_')));
    text[i] = (char)c;
  }
}

int pki_base64_encode(char *out, size_t out_size, size_t *out_len, const uint8_t *in,
                      size_t in_len, unsigned flags, pki_err *err) {
  size_t len;
  if (!pki_base64_encoded_len(&len, in_len, flags)) {
    PKI_ERR(err, PKI_ERR_INVALID, "base64: bad flags 0x%x or %zu bytes too many to encode",
            flags, in_len);
    return 0;
  }
  if (out_size <= len) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "base64: %zu bytes need %zu characters and a NUL, the buffer holds %zu", in_len,
            len, out_size);
    return 0;
  }
  /* EVP_EncodeBlock pads the last group and writes a NUL after it, which
   * the unpadded form has no room for: the last group goes through a
   * buffer of its own. */
  size_t whole = in_len / 3 * 3;
  size_t n = EVP_EncodeBlock((uint8_t *)out, in, whole);
  if (whole < in_len) {
    uint8_t tail[5];
    EVP_EncodeBlock(tail, in + whole, in_len - whole);
    size_t keep = (flags & PKI_BASE64_NO_PAD) ? in_len - whole + 1 : 4;
    memcpy(out + n, tail, keep);
    n += keep;
    OPENSSL_cleanse(tail, sizeof(tail));
  }
  out[n] = '\0';
  if (flags & PKI_BASE64_URL) url_alphabet(out, n);
  *out_len = n;
  return 1;
}

/* symbol_value maps |c| to its 6-bit value, accepting '+' '/' where |std|
 * is 0xff and '-' '_' where |url| is; 0xff for any other character. */
static uint8_t symbol_value(uint8_t c, uint8_t std, uint8_t url) {
  uint8_t upper = ct_in_range(c, 'A', 'Z');
  uint8_t lower = ct_in_range(c, 'a', 'z');
  uint8_t digit = ct_in_range(c, '0', '9');
  uint8_t v62 = (uint8_t)((std & ct_eq(c, '+')) | (url & ct_eq(c, '-')));
  uint8_t v63 = (uint8_t)((std & ct_eq(c, '/')) | (url & ct_eq(c, '_')));
  uint8_t value = (uint8_t)((upper & (uint8_t)(c - 'A')) | (lower & (uint8_t)(c - 'a' + 26)) |
                            (digit & (uint8_t)(c - '0' + 52)) | (v62 & 62) | (v63 & 63));
  return (uint8_t)(value | (uint8_t)~(upper | lower | digit | v62 | v63));
}

int pki_base64_decode(uint8_t *out, size_t out_size, size_t *out_len, const char *in,
                      size_t in_len, unsigned flags, pki_err *err) {
  if (!decode_flags_ok(flags)) {
    PKI_ERR(err, PKI_ERR_INVALID, "base64: bad flags 0x%x", flags);
    return 0;
  }
  size_t pad = 0;
  while (pad < in_len && in[in_len - 1 - pad] == '=') pad++;
  size_t data_len = in_len - pad;
  if (pad > 0 && (flags & PKI_BASE64_NO_PAD)) {
    PKI_ERR(err, PKI_ERR_INVALID, "base64: padding ('=') is not allowed here");
    return 0;
  }
  /* Padding, where there is any, completes the last group of four, and is
   * never more than two characters (RFC 4648 section 4). */
  if ((pad > 0 || (flags & PKI_BASE64_PAD_REQUIRED)) && (in_len % 4 != 0 || pad > 2)) {
    PKI_ERR(err, PKI_ERR_INVALID, "base64: %zu characters with %zu '=' are not padded right",
            in_len, pad);
    return 0;
  }
  if (data_len % 4 == 1) {
    PKI_ERR(err, PKI_ERR_INVALID, "base64: no encoder makes %zu characters", data_len);
    return 0;
  }
  size_t need = data_len / 4 * 3 + (data_len % 4 == 0 ? 0 : data_len % 4 - 1);
  if (need > out_size) {
    PKI_ERR(err, PKI_ERR_INVALID, "base64: decodes to %zu bytes, more than the %zu allowed",
            need, out_size);
    return 0;
  }
  uint8_t std = (flags & PKI_BASE64_STD) ? 0xff : 0, url = (flags & PKI_BASE64_URL) ? 0xff : 0;
  uint32_t acc = 0;
  unsigned bits = 0;
  size_t n = 0;
  for (size_t i = 0; i < data_len; i++) {
    uint8_t v = symbol_value((uint8_t)in[i], std, url);
    if (v == 0xff) {
      /* The byte itself is not base64 data, so naming it reveals none. */
      PKI_ERR(err, PKI_ERR_INVALID, "base64: byte 0x%02x at offset %zu is not in the alphabet",
              (unsigned)(uint8_t)in[i], i);
      return 0;
    }
    acc = acc << 6 | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  /* Canonical only (RFC 4648 section 3.5): the bits of the last character
   * past the last byte must be zero, or one byte string would have several
   * spellings. */
  if (acc != 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "base64: the last character has unused bits set (not the canonical encoding)");
    return 0;
  }
  *out_len = n;
  return 1;
}
