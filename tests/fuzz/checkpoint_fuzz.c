/* checkpoint_fuzz: lib/checkpoint's parser and signature check on
 * arbitrary text; what parses must verify or fail cleanly. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  static EVP_PKEY *pub = NULL;
  if (pub == NULL) {
    uint8_t raw[32];
    memset(raw, 1, sizeof(raw));
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, sizeof(raw));
    uint8_t p[32];
    size_t p_len = sizeof(p);
    EVP_PKEY_get_raw_public_key(key, p, &p_len);
    pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p, p_len);
    EVP_PKEY_free(key);
  }
  pki_checkpoint cp;
  pki_err err;
  if (pki_checkpoint_parse(&cp, data, len, &err)) pki_checkpoint_verify(&cp, pub, &err);
  return 0;
}
