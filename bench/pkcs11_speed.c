/* pkcs11_speed measures one signature through a PKCS#11 token (lib/pkcs11:
 * C_Sign on a pooled session, r||s re-encoded) beside the same signature
 * with the key in memory (lib/sig, BoringSSL), on one core, for each CA
 * key type: what a token-held CA adds to every certificate and OCSP
 * response.
 *
 *   pkcs11_speed [seconds per measure, default 1] [module, default SoftHSM2's]
 *
 * For SoftHSM2 it makes a store and a token of its own in $TMPDIR (its own
 * SOFTHSM2_CONF), removed at the end. Prints one JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/key.h"
#include "lib/pkcs11.h"
#include "lib/sig.h"

#define PIN "bench-pin"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const uint8_t kData[512] = {1}; /* about a TBSCertificate */

/* rate signs for |secs| through |token| or, when NULL, with |key|. */
static double rate(pki_p11_key *token, EVP_PKEY *key, double secs) {
  long n = 0;
  double start = now_s(), end;
  do {
    for (int i = 0; i < 20; i++) {
      uint8_t *sig = NULL;
      size_t len;
      pki_err err;
      int ok = token != NULL ? pki_p11_key_sign(token, &sig, &len, kData, sizeof(kData), &err)
                             : pki_sig_sign(&sig, &len, key, kData, sizeof(kData), &err);
      if (!ok) {
        fprintf(stderr, "pkcs11_speed: %s\n", err.msg);
        exit(1);
      }
      free(sig);
    }
    n += 20;
    end = now_s();
  } while (end - start < secs);
  return (double)n / (end - start);
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  const char *module = argc > 2 ? argv[2] : "/usr/lib/softhsm/libsofthsm2.so";
  const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
  char dir[512], conf[600], cmd[2048], token_uri[1024];
  snprintf(dir, sizeof(dir), "%s/pkcs11-speed.%d", tmp, (int)getpid());
  snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
  snprintf(cmd, sizeof(cmd),
           "mkdir -p '%s/tokens' && printf 'directories.tokendir = %s/tokens\\n"
           "objectstore.backend = file\\nlog.level = ERROR\\n' > '%s' && SOFTHSM2_CONF='%s' "
           "softhsm2-util --init-token --free --label bench --so-pin so-pin-0 --pin %s "
           ">/dev/null",
           dir, dir, conf, conf, PIN);
  if (system(cmd) != 0) {
    fprintf(stderr, "pkcs11_speed: cannot make a SoftHSM2 token in %s\n", dir);
    return 1;
  }
  setenv("SOFTHSM2_CONF", conf, 1);
  snprintf(token_uri, sizeof(token_uri), "pkcs11:token=bench?module-path=%s", module);
  static const pki_key_type kTypes[] = {PKI_KEY_ECDSA_P256, PKI_KEY_ECDSA_P384,
                                        PKI_KEY_ED25519};
  printf("{\"tool\": \"pkcs11_speed\", \"module\": \"%s\", \"seconds\": %.1f", module, secs);
  int rc = 0;
  for (size_t i = 0; i < sizeof(kTypes) / sizeof(kTypes[0]); i++) {
    const char *name = pki_key_type_name(kTypes[i], 0);
    pki_err err;
    pki_p11_key *token = pki_p11_key_generate(token_uri, name, kTypes[i], (const uint8_t *)PIN,
                                              strlen(PIN), &err);
    EVP_PKEY *key = pki_key_generate(kTypes[i], 0, &err);
    if (token == NULL || key == NULL) {
      fprintf(stderr, "pkcs11_speed: %s\n", err.msg);
      rc = 1;
      break;
    }
    double in_token = rate(token, NULL, secs), in_memory = rate(NULL, key, secs);
    printf(", \"%s\": {\"token_signs_per_s\": %.0f, \"memory_signs_per_s\": %.0f, "
           "\"token_us_per_sign\": %.1f, \"memory_us_per_sign\": %.1f}",
           name, in_token, in_memory, 1e6 / in_token, 1e6 / in_memory);
    pki_p11_key_free(token);
    EVP_PKEY_free(key);
  }
  printf("}\n");
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0) rc = 1;
  return rc;
}
