/* crypto_floor: N times the crypto an issuance cannot avoid, one verify and
 * two signs (the CSR's proof of possession; the certificate and its first
 * OCSP response), with ECDSA P-256 of the BoringSSL pkid links. It is the
 * floor bench/instructions.sh counts under callgrind, the same way as the
 * whole server: a fixed amount of work, so the count does not depend on a
 * clock. Usage: crypto_floor N. */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 0;
  if (n <= 0) {
    fprintf(stderr, "usage: crypto_floor N\n");
    return 2;
  }
  EC_KEY *key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  if (key == NULL || !EC_KEY_generate_key(key)) return 1;
  unsigned char digest[32] = {1, 2, 3};
  unsigned char sig[160]; /* >= ECDSA_size() for P-256 */
  unsigned sig_len = sizeof(sig);
  if (!ECDSA_sign(0, digest, sizeof(digest), sig, &sig_len, key)) return 1;
  for (long i = 0; i < n; i++) {
    unsigned char s[160];
    unsigned s_len;
    if (ECDSA_verify(0, digest, sizeof(digest), sig, sig_len, key) != 1) return 1;
    for (int k = 0; k < 2; k++) {
      s_len = sizeof(s);
      digest[0] = (unsigned char)(i + k);
      if (!ECDSA_sign(0, digest, sizeof(digest), s, &s_len, key)) return 1;
    }
    digest[0] = 1;
  }
  printf("{\"floor_units\": %ld}\n", n);
  EC_KEY_free(key);
  return 0;
}
