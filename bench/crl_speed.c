/* crl_speed measures lib/crl on one core: a CA's complete CRL of N revoked
 * certificates built and signed (pki_crl_build), then read back
 * (pki_crl_parse) and its signature checked (pki_crl_verify).
 *
 * The build is timed whole; the signature is timed inside a pki_signer
 * that wraps pki_sig_sign, so that "build" is the encoding alone and
 * "sign" the hash and signature over the TBSCertList. Entries are pkid's
 * own: 19-octet serials, revocation dates over the past year, a quarter
 * each with no reason, keyCompromise with an invalidityDate, superseded
 * and cessationOfOperation. Each figure is the median of its runs.
 *
 * Usage: crl_speed [--key ecdsa-p256|ecdsa-p384|ed25519] [--runs R] [N ...]
 * (default N: 10000 100000 1000000; R: 21, 5 and 3 by size). Prints one
 * JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>

#include "lib/cert.h"
#include "lib/crl.h"
#include "lib/der.h"
#include "lib/key.h"
#include "lib/serial.h"
#include "lib/sig.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const pki_err *err) {
  fprintf(stderr, "crl_speed: %s: %s\n", what, err != NULL ? err->msg : "failed");
  exit(1);
}

/* The signer that times itself. */
typedef struct timed_signer {
  EVP_PKEY *key;
  double seconds;
} timed_signer;

static int timed_sign(void *ctx, uint8_t **out, size_t *out_len, const uint8_t *data,
                      size_t data_len, pki_err *err) {
  timed_signer *t = ctx;
  double start = now_s();
  int ok = pki_sig_sign(out, out_len, t->key, data, data_len, err);
  t->seconds += now_s() - start;
  return ok;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_RUNS 64

int main(int argc, char **argv) {
  pki_key_type type = PKI_KEY_ECDSA_P256;
  const char *key_name = "ecdsa-p256";
  int runs_arg = 0;
  size_t sizes[16];
  int num_sizes = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
      key_name = argv[++i];
      unsigned bits;
      pki_err err;
      if (!pki_key_type_parse(&type, &bits, key_name, &err) || !pki_key_type_can_sign_certs(type)) {
        die("--key", NULL);
      }
    } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs_arg = atoi(argv[++i]);
      if (runs_arg < 1 || runs_arg > MAX_RUNS) die("--runs wants 1 to 64", NULL);
    } else if (num_sizes < 16) {
      sizes[num_sizes++] = (size_t)strtoull(argv[i], NULL, 10);
    }
  }
  if (num_sizes == 0) {
    sizes[0] = 10000, sizes[1] = 100000, sizes[2] = 1000000;
    num_sizes = 3;
  }

  pki_err err;
  pki_issuer ca;
  memset(&ca, 0, sizeof(ca));
  ca.key = pki_key_generate(type, 256, &err);
  if (ca.key == NULL) die("key", &err);
  ca.key_type = type;
  CBB cbb;
  if (!CBB_init(&cbb, 64) || !pki_der_add_name(&cbb, "Bench", "Bench CRL CA") ||
      !pki_der_finish(&cbb, &ca.name, &ca.name_len)) {
    die("name", NULL);
  }
  ca.ski_len = 20;
  if (!pki_key_identifier(ca.ski, ca.key, &err)) die("ski", &err);
  timed_signer ts = {.key = ca.key};
  pki_signer with = {.sign = timed_sign, .ctx = &ts};
  int64_t now = 1767225600; /* 2026-01-01T00:00:00Z: fixed, for repeatable sizes */

  printf("{\"crl_key\": \"%s\", \"crl\": [", key_name);
  for (int s = 0; s < num_sizes; s++) {
    size_t n = sizes[s];
    pki_crl_entry *entries = malloc((n > 0 ? n : 1) * sizeof(*entries));
    if (entries == NULL) die("entries", NULL);
    for (size_t i = 0; i < n; i++) {
      pki_crl_entry *e = &entries[i];
      memset(e, 0, sizeof(*e));
      if (!pki_serial_make(&e->serial, 1, i + 1, &err)) die("serial", &err);
      e->revocation_date = now - (int64_t)((i * 7919) % (365 * 86400));
      e->reason = (int[]){-1, PKI_CRL_REASON_KEY_COMPROMISE, PKI_CRL_REASON_SUPERSEDED,
                          PKI_CRL_REASON_CESSATION_OF_OPERATION}[i % 4];
      if (i % 4 == 1) e->invalidity_date = e->revocation_date - 3600;
    }
    pki_crl_params params = {.number = 1000 + (uint64_t)s,
                             .this_update = now,
                             .next_update = now + 7 * 86400,
                             .freshest_url = "http://crl.example.test/bench/delta.crl"};
    int runs = runs_arg > 0 ? runs_arg : n <= 10000 ? 21 : n <= 100000 ? 5 : 3;
    double total[MAX_RUNS], sign[MAX_RUNS], build[MAX_RUNS], parse[MAX_RUNS],
        verify[MAX_RUNS];
    size_t der_len = 0;
    for (int r = 0; r < runs; r++) {
      uint8_t *der = NULL;
      ts.seconds = 0;
      double t0 = now_s();
      if (!pki_crl_build(&der, &der_len, &ca, &with, &params, entries, n, &err)) {
        die("build", &err);
      }
      double t1 = now_s();
      pki_crl crl;
      if (!pki_crl_parse(&crl, der, der_len, &err)) die("parse", &err);
      double t2 = now_s();
      if (!pki_crl_verify(&crl, ca.key, &err)) die("verify", &err);
      double t3 = now_s();
      if (crl.num_entries != n) die("parse: entry count", NULL);
      pki_crl_cleanup(&crl);
      free(der);
      total[r] = t1 - t0;
      sign[r] = ts.seconds;
      build[r] = total[r] - ts.seconds;
      parse[r] = t2 - t1;
      verify[r] = t3 - t2;
    }
    printf("%s{\"entries\": %zu, \"runs\": %d, \"build_ms\": %.2f, \"sign_ms\": %.2f, "
           "\"total_ms\": %.2f, \"parse_ms\": %.2f, \"verify_ms\": %.2f, \"der_bytes\": %zu, "
           "\"bytes_per_entry\": %.1f}",
           s > 0 ? ", " : "", n, runs, 1e3 * median(build, runs), 1e3 * median(sign, runs),
           1e3 * median(total, runs), 1e3 * median(parse, runs), 1e3 * median(verify, runs),
           der_len, n > 0 ? (double)der_len / (double)n : 0.0);
    fflush(stdout);
    free(entries);
  }
  printf("]}\n");
  EVP_PKEY_free(ca.key);
  free(ca.name);
  return 0;
}
