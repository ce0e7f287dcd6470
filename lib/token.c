#include "lib/token.h"

#include <errno.h>
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

#include "lib/base64.h"
#include "lib/file.h"

static const char kPrefix[] = "pkid-bt1.";
/* Unpadded base64url (RFC 4648 section 5), the form tokens have always
 * had: '.' delimits the parts, so padding would add nothing. */
static const unsigned kTokenBase64 = PKI_BASE64_URL | PKI_BASE64_NO_PAD;

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
  char p64[PKI_BASE64_ENCODED_MAX(sizeof(payload)) + 1];
  char m64[PKI_BASE64_ENCODED_MAX(sizeof(mac)) + 1];
  size_t p64_len, m64_len;
  if (!pki_base64_encode(p64, sizeof(p64), &p64_len, payload, n, kTokenBase64, err) ||
      !pki_base64_encode(m64, sizeof(m64), &m64_len, mac, mac_len, kTokenBase64, err)) {
    return 0;
  }
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
  pki_err b64_err;
  /* Canonical base64url only: two spellings of one token would hash to two
   * ids, and the second would pass as unused. */
  if (len > PKI_TOKEN_MAX_TEXT || len <= prefix || memcmp(text, kPrefix, prefix) != 0 ||
      dot == NULL ||
      !pki_base64_decode(payload, sizeof(payload), &payload_len, text + prefix,
                         (size_t)(dot - (text + prefix)), kTokenBase64, &b64_err) ||
      !pki_base64_decode(mac, sizeof(mac), &mac_len, dot + 1, len - (size_t)(dot + 1 - text),
                         kTokenBase64, &b64_err)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed bootstrap token");
    return 0;
  }
  unsigned want_len = 0;
  /* HMAC allocates its digest state, so it can fail: then |want| holds
   * nothing to compare with. */
  errno = 0; /* for PKI_ERR_CRYPTO */
  if (HMAC(EVP_sha256(), key, PKI_TOKEN_KEY_LEN, payload, payload_len, want, &want_len) ==
      NULL) {
    PKI_ERR_CRYPTO(err, PKI_ERR_INTERNAL, "cannot compute the token's HMAC");
    return 0;
  }
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
