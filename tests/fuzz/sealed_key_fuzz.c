/* sealed_key_fuzz: pki_key_open on arbitrary text with a fixed secret. The
 * seed corpus holds a key sealed under that secret (log2N 10), so mutations
 * reach the decryption and the PKCS#8 parser, not only the framing. Fuzzing
 * builds (PKID_FUZZING) cap scrypt's cost in lib/key.c. */
#include <stdint.h>
#include <stdlib.h>

#include "lib/key.h"

#define FUZZ_SECRET "pkid-fuzz-secret"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pki_err err = {0};
  EVP_PKEY *key = pki_key_open((const char *)data, size,
                               (const uint8_t *)FUZZ_SECRET,
                               sizeof(FUZZ_SECRET) - 1, &err);
  if (key == NULL && err.code != PKI_ERR_INVALID &&
      err.code != PKI_ERR_AUTH) {
    abort();
  }
  EVP_PKEY_free(key);
  return 0;
}
