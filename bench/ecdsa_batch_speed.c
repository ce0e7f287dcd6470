/* ecdsa_batch_speed measures lib/ecdsa_batch.c on one core, beside
 * BoringSSL's ECDSA_sign with the same key:
 *  - sign_per_s: signatures per second from a filled pool, refill excluded
 *    (the request path when workers refill while idle);
 *  - refill_us_per_nonce: the cost of preparing one nonce in a refill
 *    (kG, batch inversion, k^-1 r d), off the request path;
 *  - combined_per_s: signatures per second counting both, i.e. a worker
 *    that is never idle;
 *  - inline_sign_per_s: an empty pool, every nonce computed on the spot;
 *  - ecdsa_sign_per_s: ECDSA_sign.
 * Usage: ecdsa_batch_speed [seconds per measurement, default 1]. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "lib/ecdsa_batch.h"
#include "lib/key.h"

#define POOL 4096

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what, const pki_err *err) {
  fprintf(stderr, "ecdsa_batch_speed: %s: %s\n", what,
          err != NULL ? err->msg : "failed");
  return 1;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  pki_err err;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  if (key == NULL) return fail("key", &err);
  pki_ecdsa_pool *pool = pki_ecdsa_pool_new(key, POOL, &err);
  if (pool == NULL) return fail("pool", &err);
  uint8_t digest[32] = {1, 2, 3};
  uint8_t sig[PKI_ECDSA_P256_SIG_MAX];
  size_t sig_len;

  /* Refill from empty, and sign until empty, alternately; only the
   * measured half of each round is counted. */
  double refill_time = 0, sign_time = 0;
  long refilled = 0, signed_n = 0;
  double start = now_s();
  while (now_s() - start < 2 * secs) {
    double t0 = now_s();
    if (!pki_ecdsa_pool_refill(pool, POOL, &err)) return fail("refill", &err);
    double t1 = now_s();
    for (int i = 0; i < POOL; i++) {
      digest[0] = (uint8_t)i;
      if (!pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), digest, &err)) {
        return fail("sign", &err);
      }
    }
    double t2 = now_s();
    refill_time += t1 - t0;
    sign_time += t2 - t1;
    refilled += POOL;
    signed_n += POOL;
  }
  double sign_rate = (double)signed_n / sign_time;
  double refill_us = refill_time / (double)refilled * 1e6;
  double combined = (double)signed_n / (sign_time + refill_time);

  /* Empty pool: the inline fallback. */
  long n = 0;
  double end;
  start = now_s();
  do {
    for (int i = 0; i < 100; i++) {
      if (!pki_ecdsa_pool_sign(pool, sig, &sig_len, sizeof(sig), digest, &err)) {
        return fail("inline sign", &err);
      }
    }
    n += 100;
    end = now_s();
  } while (end - start < secs);
  double inline_rate = (double)n / (end - start);

  /* BoringSSL's ECDSA_sign with the same key. */
  const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
  uint8_t der[160];
  unsigned der_len;
  n = 0;
  start = now_s();
  do {
    for (int i = 0; i < 100; i++) {
      der_len = sizeof(der);
      if (!ECDSA_sign(0, digest, sizeof(digest), der, &der_len, ec)) {
        return fail("ECDSA_sign", NULL);
      }
    }
    n += 100;
    end = now_s();
  } while (end - start < secs);
  double ecdsa_rate = (double)n / (end - start);

  printf("{\"pool_sign_per_s\": %.0f, \"pool_sign_us\": %.2f, "
         "\"refill_us_per_nonce\": %.2f, \"combined_per_s\": %.0f, "
         "\"inline_sign_per_s\": %.0f, \"ecdsa_sign_per_s\": %.0f}\n",
         sign_rate, 1e6 / sign_rate, refill_us, combined, inline_rate,
         ecdsa_rate);
  pki_ecdsa_pool_free(pool);
  EVP_PKEY_free(key);
  return 0;
}
