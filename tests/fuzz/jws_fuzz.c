/* jws_fuzz: an ACME request body (a flattened JWS) parsed and, when it
 * parses, checked under its own JWK, a MAC key, and as a bare JWK. */
#include <stddef.h>
#include <stdint.h>

#include "lib/jws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  static const uint8_t kMacKey[32] = {1};
  pki_jws jws;
  pki_err err;
  if (pki_jws_parse(&jws, data, len, &err)) {
    if (jws.jwk != NULL) {
      pki_jws_verify(&jws, jws.jwk, &err);
      uint8_t thumbprint[32];
      pki_jwk_thumbprint(thumbprint, jws.jwk, &err);
    }
    pki_jws_verify_mac(&jws, kMacKey, sizeof(kMacKey), &err);
    pki_jws_cleanup(&jws);
  }
  EVP_PKEY_free(pki_jwk_parse((const char *)data, len, &err));
  return 0;
}
