#include "server/acme/nonces.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "lib/base64.h"

#define MAC_LEN 8
#define RAW_LEN (8 + MAC_LEN)

struct pkid_acme_nonces {
  uint8_t key[32];
  uint64_t next;   /* the sequence number of the next nonce */
  size_t window;   /* bits in |used| */
  uint64_t *used;  /* bit s % window: nonce s was used */
};

pkid_acme_nonces *pkid_acme_nonces_new(size_t window) {
  if (window < 64) window = 64;
  window = (window + 63) / 64 * 64;
  pkid_acme_nonces *n = calloc(1, sizeof(*n));
  if (n == NULL || (n->used = calloc(window / 64, sizeof(uint64_t))) == NULL) {
    free(n);
    return NULL;
  }
  n->window = window;
  RAND_bytes(n->key, sizeof(n->key));
  return n;
}

void pkid_acme_nonces_free(pkid_acme_nonces *n) {
  if (n == NULL) return;
  OPENSSL_cleanse(n->key, sizeof(n->key));
  free(n->used);
  free(n);
}

static void mac(const pkid_acme_nonces *n, const uint8_t seq[8], uint8_t out[MAC_LEN]) {
  uint8_t full[32];
  unsigned len = 0;
  HMAC(EVP_sha256(), n->key, sizeof(n->key), seq, 8, full, &len);
  memcpy(out, full, MAC_LEN);
}

static uint64_t *word(const pkid_acme_nonces *n, uint64_t seq, uint64_t *bit) {
  size_t i = (size_t)(seq % n->window);
  *bit = (uint64_t)1 << (i % 64);
  return &n->used[i / 64];
}

void pkid_acme_nonce_make(pkid_acme_nonces *n, char out[PKID_ACME_NONCE_TEXT]) {
  uint64_t seq = n->next++, bit;
  /* Its bit last served the nonce |window| before it, now out of use.
   * (word() sets |bit|: it must run before ~bit is read, so not in one
   * expression, whose operands C leaves unordered.) */
  uint64_t *w = word(n, seq, &bit);
  *w &= ~bit;
  uint8_t raw[RAW_LEN];
  for (int i = 0; i < 8; i++) raw[i] = (uint8_t)(seq >> (56 - 8 * i));
  mac(n, raw, raw + 8);
  size_t len;
  pki_err err;
  pki_base64_encode(out, PKID_ACME_NONCE_TEXT, &len, raw, sizeof(raw),
                    PKI_BASE64_URL | PKI_BASE64_NO_PAD, &err);
}

int pkid_acme_nonce_use(pkid_acme_nonces *n, const char *text, size_t len) {
  uint8_t raw[RAW_LEN + 2], want[MAC_LEN];
  size_t raw_len;
  pki_err err;
  if (len != PKID_ACME_NONCE_TEXT - 1 ||
      !pki_base64_decode(raw, sizeof(raw), &raw_len, text, len,
                         PKI_BASE64_URL | PKI_BASE64_NO_PAD, &err) ||
      raw_len != RAW_LEN) {
    return 0;
  }
  mac(n, raw, want);
  if (CRYPTO_memcmp(want, raw + 8, MAC_LEN) != 0) return 0;
  uint64_t seq = 0, bit;
  for (int i = 0; i < 8; i++) seq = seq << 8 | raw[i];
  /* Made here (the MAC says so), so seq < next; within the window? */
  if (seq >= n->next || n->next - seq > n->window) return 0;
  uint64_t *w = word(n, seq, &bit);
  if (*w & bit) return 0;
  *w |= bit;
  return 1;
}
