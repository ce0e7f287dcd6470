#include "lib/token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/crypto.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "lib/file.h"

static const char kPrefix[] = "pkid-bt1.";
static const char kB64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* b64url_encode writes unpadded base64url (RFC 4648 5). */
static size_t b64url_encode(char *out, const uint8_t *in, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    out[n++] = kB64url[(v >> 18) & 63];
    out[n++] = kB64url[(v >> 12) & 63];
    if (i + 1 < len) out[n++] = kB64url[(v >> 6) & 63];
    if (i + 2 < len) out[n++] = kB64url[v & 63];
  }
  out[n] = '\0';
  return n;
}

static int b64url_value(char c) {
  const char *p = c != '\0' ? strchr(kB64url, c) : NULL;
  return p != NULL ? (int)(p - kB64url) : -1;
}

/* b64url_decode reads unpadded, canonical base64url; 0 on any other
 * character, a length no encoder makes, or unused bits that are set. */
static int b64url_decode(uint8_t *out, size_t out_size, size_t *out_len, const char *in,
                         size_t len) {
  if (len % 4 == 1) return 0;
  size_t n = 0;
  for (size_t i = 0; i < len; i += 4) {
    uint32_t v = 0;
    size_t chunk = len - i < 4 ? len - i : 4;
    for (size_t j = 0; j < 4; j++) {
      int d = j < chunk ? b64url_value(in[i + j]) : 0;
      if (d < 0) return 0;
      v = v << 6 | (uint32_t)d;
    }
    size_t bytes = chunk - 1;
    /* Canonical only: the bits past the last byte must be zero. Otherwise
     * two texts would decode to one token and, hashed apart, both be
     * "unused". */
    if ((v & ((1u << (24 - 8 * bytes)) - 1)) != 0) return 0;
    if (n + bytes > out_size) return 0;
    for (size_t j = 0; j < bytes; j++) out[n++] = (uint8_t)(v >> (16 - 8 * j));
  }
  *out_len = n;
  return 1;
}

int pki_token_make(char *out, size_t out_size, const uint8_t key[PKI_TOKEN_KEY_LEN],
                   const char *service, int64_t expires, pki_err *err) {
  uint8_t payload[1 + 255 + 8 + 16], mac[SHA256_DIGEST_LENGTH];
  size_t svc_len = strlen(service);
  if (svc_len == 0 || svc_len > 255) {
    PKI_ERR(err, PKI_ERR_INVALID, "service name must be 1 to 255 bytes");
    return 0;
  }
  size_t n = 0;
  payload[n++] = (uint8_t)svc_len;
  memcpy(payload + n, service, svc_len);
  n += svc_len;
  for (int i = 0; i < 8; i++) payload[n++] = (uint8_t)((uint64_t)expires >> (56 - 8 * i));
  RAND_bytes(payload + n, 16);
  n += 16;
  unsigned mac_len = 0;
  HMAC(EVP_sha256(), key, PKI_TOKEN_KEY_LEN, payload, n, mac, &mac_len);
  char p64[sizeof(payload) * 4 / 3 + 4], m64[64];
  b64url_encode(p64, payload, n);
  b64url_encode(m64, mac, mac_len);
  int w = snprintf(out, out_size, "%s%s.%s", kPrefix, p64, m64);
  if (w < 0 || (size_t)w >= out_size) {
    PKI_ERR(err, PKI_ERR_INVALID, "token buffer too small");
    return 0;
  }
  return 1;
}

int pki_token_check(pki_token *out, const char *text, size_t len,
                    const uint8_t key[PKI_TOKEN_KEY_LEN], int64_t now, pki_err *err) {
  memset(out, 0, sizeof(*out));
  size_t prefix = sizeof(kPrefix) - 1;
  const char *dot = len > prefix ? memchr(text + prefix, '.', len - prefix) : NULL;
  uint8_t payload[1 + 255 + 8 + 16], mac[64], want[SHA256_DIGEST_LENGTH];
  size_t payload_len, mac_len;
  if (len > PKI_TOKEN_MAX_TEXT || len <= prefix || memcmp(text, kPrefix, prefix) != 0 ||
      dot == NULL ||
      !b64url_decode(payload, sizeof(payload), &payload_len, text + prefix,
                     (size_t)(dot - (text + prefix))) ||
      !b64url_decode(mac, sizeof(mac), &mac_len, dot + 1, len - (size_t)(dot + 1 - text))) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed bootstrap token");
    return 0;
  }
  unsigned want_len = 0;
  HMAC(EVP_sha256(), key, PKI_TOKEN_KEY_LEN, payload, payload_len, want, &want_len);
  if (mac_len != want_len || CRYPTO_memcmp(mac, want, want_len) != 0) {
    PKI_ERR(err, PKI_ERR_AUTH, "bootstrap token is not valid");
    return 0;
  }
  /* The MAC holds: the payload is ours, so its layout is too. */
  CBS cbs, svc;
  uint64_t expires;
  CBS_init(&cbs, payload, payload_len);
  if (!CBS_get_u8_length_prefixed(&cbs, &svc) || CBS_len(&svc) == 0 ||
      CBS_contains_zero_byte(&svc) || !CBS_get_u64(&cbs, &expires) || CBS_len(&cbs) != 16) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed bootstrap token");
    return 0;
  }
  memcpy(out->service, CBS_data(&svc), CBS_len(&svc));
  out->expires = (int64_t)expires;
  if (out->expires <= now) {
    PKI_ERR(err, PKI_ERR_AUTH, "bootstrap token expired");
    return 0;
  }
  SHA256((const uint8_t *)text, len, out->id);
  return 1;
}

int pki_token_key_load(uint8_t out[PKI_TOKEN_KEY_LEN], const char *path, int create,
                       pki_err *err) {
  uint8_t *data = NULL;
  size_t len;
  if (pki_file_read(&data, &len, path, 4096, err)) {
    int ok = len == PKI_TOKEN_KEY_LEN;
    if (ok) memcpy(out, data, len);
    OPENSSL_cleanse(data, len);
    free(data);
    if (!ok) PKI_ERR(err, PKI_ERR_INVALID, "%s: a token key is %d bytes", path, PKI_TOKEN_KEY_LEN);
    return ok;
  }
  if (err->code != PKI_ERR_NOT_FOUND || !create) return 0;
  uint8_t key[PKI_TOKEN_KEY_LEN];
  RAND_bytes(key, sizeof(key));
  char dir[1024];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash != NULL) *slash = '\0';
  int ok = (slash == NULL || pki_mkdirs(dir, 0700, err)) &&
           pki_file_write_atomic(path, key, sizeof(key), 0600, err);
  if (ok) memcpy(out, key, sizeof(key));
  OPENSSL_cleanse(key, sizeof(key));
  return ok;
}
