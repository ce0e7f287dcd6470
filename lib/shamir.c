#include "lib/shamir.h"

#include <stdio.h>
#include <string.h>

#include <openssl/mem.h>
#include <openssl/rand.h>

#define SHARE_PREFIX "pkid-share-v1:"

/* gf_mul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1. It runs the
 * same eight rounds whatever the operands, with masks instead of branches,
 * so its timing says nothing about the secret bytes it handles. */
static uint8_t gf_mul(uint8_t a, uint8_t b) {
  uint8_t r = 0;
  for (int i = 0; i < 8; i++) {
    r ^= (uint8_t)(-(b & 1) & a);
    uint8_t carry = (uint8_t)(-(a >> 7));
    a = (uint8_t)((a << 1) ^ (carry & 0x1b));
    b >>= 1;
  }
  return r;
}

/* gf_inv returns a^254, which is a^-1 for a != 0 (the multiplicative group
 * has order 255), by a fixed chain of squarings and multiplications. */
static uint8_t gf_inv(uint8_t a) {
  uint8_t r = 1;
  uint8_t s = a;
  for (int i = 0; i < 7; i++) {
    s = gf_mul(s, s); /* a^(2^(i+1)) */
    r = gf_mul(r, s); /* a^2 * a^4 * ... * a^128 = a^254 */
  }
  return r;
}

/* crc32 is the IEEE 802.3 CRC (as in zlib), bit by bit: shares are short
 * and rare, so a table is not worth its space. */
static uint32_t crc32(const uint8_t *p, size_t len) {
  uint32_t crc = 0xffffffff;
  for (size_t i = 0; i < len; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) {
      crc = (crc >> 1) ^ (0xedb88320 & (uint32_t)(-(int32_t)(crc & 1)));
    }
  }
  return ~crc;
}

int pki_shamir_split(pki_share *out_shares, const uint8_t *secret, size_t len,
                     unsigned m, unsigned n, pki_err *err) {
  if (len == 0 || len > PKI_SHAMIR_MAX_SECRET) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot split a secret of %zu bytes (1 to %d)",
            len, PKI_SHAMIR_MAX_SECRET);
    return 0;
  }
  if (m < 1 || n > 255 || m > n) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "cannot split %u-of-%u: need 1 <= M <= N <= 255", m, n);
    return 0;
  }

  uint8_t set_id[8];
  RAND_bytes(set_id, sizeof(set_id));
  for (unsigned i = 0; i < n; i++) {
    pki_share *s = &out_shares[i];
    memset(s, 0, sizeof(*s));
    memcpy(s->set_id, set_id, sizeof(set_id));
    s->m = (uint8_t)m;
    s->n = (uint8_t)n;
    s->x = (uint8_t)(i + 1);
    s->len = len;
  }

  /* One polynomial per secret byte: coef[0] is the byte, coef[1..m-1] are
   * random. Each share gets its value by Horner's rule. */
  uint8_t coef[255];
  for (size_t j = 0; j < len; j++) {
    coef[0] = secret[j];
    if (m > 1) RAND_bytes(coef + 1, m - 1);
    for (unsigned i = 0; i < n; i++) {
      uint8_t x = (uint8_t)(i + 1);
      uint8_t y = 0;
      for (unsigned k = m; k-- > 0;) y = (uint8_t)(gf_mul(y, x) ^ coef[k]);
      out_shares[i].y[j] = y;
    }
  }
  OPENSSL_cleanse(coef, sizeof(coef));
  return 1;
}

static void hex_encode(char *out, const uint8_t *in, size_t len) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * len] = '\0';
}

int pki_shamir_combine(uint8_t *out, size_t *out_len, const pki_share *shares,
                       size_t num, pki_err *err) {
  *out_len = 0;
  if (num == 0) {
    PKI_ERR(err, PKI_ERR_AUTH, "no shares given");
    return 0;
  }
  /* Every given share is checked against the first: same set, same M, N and
   * length, a valid and distinct x. Interpolation then uses the first M of
   * them; any extra shares are checked for consistency of their labels but
   * do not enter the computation. */
  const pki_share *first = &shares[0];
  for (size_t i = 0; i < num; i++) {
    const pki_share *s = &shares[i];
    if (s->m < 1 || s->m > s->n || s->x < 1 || s->x > s->n || s->len < 1 ||
        s->len > PKI_SHAMIR_MAX_SECRET) {
      PKI_ERR(err, PKI_ERR_INVALID, "share %zu is malformed", i + 1);
      return 0;
    }
    if (memcmp(s->set_id, first->set_id, sizeof(s->set_id)) != 0) {
      char a[17], b[17];
      hex_encode(a, s->set_id, sizeof(s->set_id));
      hex_encode(b, first->set_id, sizeof(first->set_id));
      PKI_ERR(err, PKI_ERR_AUTH,
              "share %zu belongs to another set (set id %s, not %s)", i + 1, a,
              b);
      return 0;
    }
    if (s->m != first->m || s->n != first->n || s->len != first->len) {
      PKI_ERR(err, PKI_ERR_AUTH,
              "share %zu does not match share 1 (%u-of-%u of %zu bytes, not "
              "%u-of-%u of %zu bytes)",
              i + 1, s->m, s->n, s->len, first->m, first->n, first->len);
      return 0;
    }
    for (size_t k = 0; k < i; k++) {
      if (shares[k].x == s->x) {
        PKI_ERR(err, PKI_ERR_AUTH, "shares %zu and %zu are both share number %u",
                k + 1, i + 1, s->x);
        return 0;
      }
    }
  }
  unsigned m = first->m;
  if (num < m) {
    PKI_ERR(err, PKI_ERR_AUTH, "too few shares: %zu given, %u needed", num, m);
    return 0;
  }

  /* Lagrange interpolation at 0: secret = sum_i y_i * l_i with
   * l_i = prod_{k != i} x_k / (x_k - x_i); subtraction is XOR here. */
  size_t len = first->len;
  memset(out, 0, len);
  for (unsigned i = 0; i < m; i++) {
    uint8_t num_prod = 1, den_prod = 1;
    for (unsigned k = 0; k < m; k++) {
      if (k == i) continue;
      num_prod = gf_mul(num_prod, shares[k].x);
      den_prod = gf_mul(den_prod, (uint8_t)(shares[k].x ^ shares[i].x));
    }
    uint8_t l = gf_mul(num_prod, gf_inv(den_prod));
    for (size_t j = 0; j < len; j++) out[j] ^= gf_mul(shares[i].y[j], l);
  }
  *out_len = len;
  return 1;
}

int pki_share_encode(char *out, size_t out_size, const pki_share *share,
                     pki_err *err) {
  if (share->m < 1 || share->m > share->n || share->x < 1 ||
      share->x > share->n || share->len < 1 ||
      share->len > PKI_SHAMIR_MAX_SECRET) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot encode a malformed share");
    return 0;
  }
  char id_hex[17];
  char y_hex[2 * PKI_SHAMIR_MAX_SECRET + 1];
  hex_encode(id_hex, share->set_id, sizeof(share->set_id));
  hex_encode(y_hex, share->y, share->len);
  char body[PKI_SHARE_TEXT_MAX];
  int body_len = snprintf(body, sizeof(body), SHARE_PREFIX "%s:%u:%u:%u:%s",
                          id_hex, share->m, share->n, share->x, y_hex);
  /* The longest body is 14 + 16 + 3 * 4 + 1 + 128 = 171 bytes. */
  uint32_t crc = crc32((const uint8_t *)body, (size_t)body_len);
  int n = snprintf(out, out_size, "%s:%08x", body, crc);
  OPENSSL_cleanse(y_hex, sizeof(y_hex));
  OPENSSL_cleanse(body, sizeof(body));
  if (n < 0 || (size_t)n >= out_size) {
    if (out_size > 0) out[0] = '\0';
    PKI_ERR(err, PKI_ERR_INVALID, "share text does not fit in %zu bytes",
            out_size);
    return 0;
  }
  return 1;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* hex_decode decodes exactly |len| bytes from |2 * len| hex digits (either
 * case). */
static int hex_decode(uint8_t *out, const char *in, size_t len) {
  for (size_t i = 0; i < len; i++) {
    int hi = hex_value(in[2 * i]), lo = hex_value(in[2 * i + 1]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 1;
}

/* parse_small parses a decimal number 1..255 with no sign, no leading zero
 * and nothing else around it. */
static int parse_small(uint8_t *out, const char *p, size_t len) {
  if (len < 1 || len > 3 || p[0] == '0') return 0;
  unsigned v = 0;
  for (size_t i = 0; i < len; i++) {
    if (p[i] < '0' || p[i] > '9') return 0;
    v = v * 10 + (unsigned)(p[i] - '0');
  }
  if (v > 255) return 0;
  *out = (uint8_t)v;
  return 1;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
         c == '\f';
}

int pki_share_decode(pki_share *out, const char *text, pki_err *err) {
  memset(out, 0, sizeof(*out));
  size_t len = strlen(text);
  while (len > 0 && is_space(*text)) {
    text++;
    len--;
  }
  while (len > 0 && is_space(text[len - 1])) len--;
  if (len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "share: empty");
    return 0;
  }
  if (len >= PKI_SHARE_TEXT_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "share: too long to be a share");
    return 0;
  }
  size_t prefix_len = strlen(SHARE_PREFIX);
  if (len < prefix_len || memcmp(text, SHARE_PREFIX, prefix_len) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "share: does not start with \"%s\"",
            SHARE_PREFIX);
    return 0;
  }

  /* Six fields follow the prefix: set id, M, N, x, y, checksum. */
  const char *field[6];
  size_t field_len[6];
  size_t num_fields = 0;
  const char *p = text + prefix_len, *end = text + len;
  for (;;) {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *stop = colon != NULL ? colon : end;
    if (num_fields == 6) {
      PKI_ERR(err, PKI_ERR_INVALID, "share: more than 7 fields");
      return 0;
    }
    field[num_fields] = p;
    field_len[num_fields] = (size_t)(stop - p);
    num_fields++;
    if (colon == NULL) break;
    p = colon + 1;
  }
  if (num_fields != 6) {
    PKI_ERR(err, PKI_ERR_INVALID, "share: %zu fields, expected 7",
            num_fields + 1);
    return 0;
  }

  /* The checksum is over the text before the last colon, hex digits taken
   * in lower case, so a share copied in capitals still checks. */
  uint32_t want;
  uint8_t crc_bytes[4];
  if (field_len[5] != 8 || !hex_decode(crc_bytes, field[5], 4)) {
    PKI_ERR(err, PKI_ERR_INVALID, "share: the checksum is not 8 hex digits");
    return 0;
  }
  want = (uint32_t)crc_bytes[0] << 24 | (uint32_t)crc_bytes[1] << 16 |
         (uint32_t)crc_bytes[2] << 8 | crc_bytes[3];
  char lower[PKI_SHARE_TEXT_MAX];
  size_t body_len = (size_t)(field[5] - 1 - text);
  for (size_t i = 0; i < body_len; i++) {
    char c = text[i];
    lower[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
  }
  uint32_t got = crc32((const uint8_t *)lower, body_len);
  OPENSSL_cleanse(lower, sizeof(lower));
  if (got != want) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "share: checksum mismatch (the share is mistyped or damaged)");
    return 0;
  }

  if (field_len[0] != 16 || !hex_decode(out->set_id, field[0], 8)) {
    PKI_ERR(err, PKI_ERR_INVALID, "share: the set id is not 16 hex digits");
    goto fail;
  }
  if (!parse_small(&out->m, field[1], field_len[1]) ||
      !parse_small(&out->n, field[2], field_len[2]) ||
      !parse_small(&out->x, field[3], field_len[3])) {
    PKI_ERR(err, PKI_ERR_INVALID, "share: M, N and x must be numbers 1 to 255");
    goto fail;
  }
  if (out->m > out->n || out->x > out->n) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "share: inconsistent numbers (M=%u, N=%u, x=%u; need M <= N and "
            "x <= N)",
            out->m, out->n, out->x);
    goto fail;
  }
  if (field_len[4] < 2 || field_len[4] > 2 * PKI_SHAMIR_MAX_SECRET ||
      field_len[4] % 2 != 0 || !hex_decode(out->y, field[4], field_len[4] / 2)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "share: the value must be 2 to %d hex digits, an even number",
            2 * PKI_SHAMIR_MAX_SECRET);
    goto fail;
  }
  out->len = field_len[4] / 2;
  return 1;

fail:
  OPENSSL_cleanse(out, sizeof(*out));
  return 0;
}
