/* token_fuzz: bootstrap token parsing and checking on arbitrary text. */
#include <stddef.h>
#include <stdint.h>

#include "lib/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  static const uint8_t kKey[PKI_TOKEN_KEY_LEN] = {7};
  pki_token t;
  pki_err err;
  pki_token_check(&t, (const char *)data, len, kKey, 0, &err);
  return 0;
}
