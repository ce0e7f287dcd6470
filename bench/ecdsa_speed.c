/* ecdsa_speed measures raw ECDSA P-256 sign and verify per second of the
 * BoringSSL that pkid links, on one core: the crypto floor that issuance is
 * compared with. Usage: ecdsa_speed [seconds per operation, default 1]. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  EC_KEY *key = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  if (key == NULL || !EC_KEY_generate_key(key)) return 1;
  unsigned char digest[32] = {1, 2, 3};
  unsigned char sig[160]; /* >= ECDSA_size() for P-256 */
  unsigned sig_len = 0;

  long n = 0;
  double start = now_s(), end;
  do {
    for (int i = 0; i < 100; i++) {
      sig_len = sizeof(sig);
      if (!ECDSA_sign(0, digest, sizeof(digest), sig, &sig_len, key)) return 1;
    }
    n += 100;
    end = now_s();
  } while (end - start < secs);
  double sign_rate = (double)n / (end - start);

  n = 0;
  start = now_s();
  do {
    for (int i = 0; i < 100; i++) {
      if (ECDSA_verify(0, digest, sizeof(digest), sig, sig_len, key) != 1) return 1;
    }
    n += 100;
    end = now_s();
  } while (end - start < secs);
  double verify_rate = (double)n / (end - start);

  printf("{\"ecdsa_p256_sign_per_s\": %.0f, \"ecdsa_p256_verify_per_s\": %.0f}\n",
         sign_rate, verify_rate);
  EC_KEY_free(key);
  return 0;
}
