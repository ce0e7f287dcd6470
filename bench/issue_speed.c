/* issue_speed measures lib/ on one core: certificates built, linted and
 * signed per second, with and without parsing and checking a CSR first,
 * beside the raw ECDSA P-256 sign rate of the same BoringSSL. It prints
 * one JSON object. Usage: issue_speed [seconds per measurement, default 2]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/ecdsa.h>
#include <openssl/ec_key.h>
#include <openssl/mem.h>

#include "lib/catalog.h"
#include "lib/cert.h"
#include "lib/csr.h"
#include "lib/key.h"
#include "lib/profile.h"
#include "lib/serial.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noreturn)) static void die(const char *what, const pki_err *err) {
  fprintf(stderr, "issue_speed: %s: %s\n", what, err != NULL ? err->msg : "failed");
  exit(1);
}

/* make_ca issues a CA certificate for |ca| signed by |parent| (NULL: self). */
static void make_ca(pki_issuer *out, const pki_catalog *cat, const pki_catalog_ca *ca,
                    const pki_issuer *parent) {
  pki_err err;
  pki_profile profile;
  EVP_PKEY *key = pki_key_generate(ca->key_type, ca->key_bits, &err);
  if (key == NULL || !pki_profile_for_ca(&profile, cat, ca, &err)) die("CA key", &err);
  int64_t now = (int64_t)time(NULL);
  pki_issuer self;
  if (parent == NULL) {
    if (!pki_issuer_init_self(&self, key, &profile, now - 300,
                              now + (int64_t)profile.validity_s, &err)) {
      die("root", &err);
    }
    parent = &self;
  }
  CBB cbb;
  uint8_t *spki, *der;
  size_t spki_len, der_len;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, key) ||
      !CBB_finish(&cbb, &spki, &spki_len)) {
    die("spki", NULL);
  }
  pki_issue_request req = {.profile = &profile, .spki = spki, .spki_len = spki_len};
  pki_serial_make(&req.serial, 0, 1, &err);
  pki_validity(&req.not_before, &req.not_after, parent, profile.validity_s, now);
  if (!pki_cert_issue(&der, &der_len, parent, &req, &err)) die("CA issue", &err);
  if (parent == &self) pki_issuer_cleanup(&self);
  if (!pki_issuer_init(out, der, der_len, key, &err)) die("issuer", &err);
  free(der);
  OPENSSL_free(spki);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 2.0;
  pki_err err;
  pki_catalog *cat = pki_catalog_default(&err);
  if (cat == NULL) die("catalogue", &err);
  const pki_catalog_service *svc = pki_catalog_find_service(cat, "vault");
  pki_issuer root, infra;
  make_ca(&root, cat, pki_catalog_root(cat), NULL);
  make_ca(&infra, cat, pki_catalog_find_ca(cat, svc->ca), &root);

  pki_profile profile;
  if (!pki_profile_for_service(&profile, cat, svc, PKI_USAGE_SERVER, &err)) die("profile", &err);
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  uint8_t *csr_der;
  size_t csr_len;
  if (key == NULL ||
      !pki_csr_build(&csr_der, &csr_len, key, svc->name, profile.names, profile.num_names,
                     &err)) {
    die("CSR", &err);
  }

  /* 1. Build + lint + sign, from a key already parsed. */
  pki_csr csr;
  if (!pki_csr_parse(&csr, csr_der, csr_len, &err)) die("CSR parse", &err);
  long n = 0;
  double start = now_s(), end;
  do {
    for (int i = 0; i < 50; i++) {
      pki_issue_request req = {.profile = &profile,
                               .spki = CBS_data(&csr.spki),
                               .spki_len = CBS_len(&csr.spki)};
      pki_serial_make(&req.serial, 1, (uint64_t)n + (uint64_t)i, &err);
      pki_validity(&req.not_before, &req.not_after, &infra, profile.validity_s,
                   (int64_t)time(NULL));
      uint8_t *der;
      size_t der_len;
      if (!pki_cert_issue(&der, &der_len, &infra, &req, &err)) die("issue", &err);
      free(der);
    }
    n += 50;
    end = now_s();
  } while (end - start < secs);
  double issue_rate = (double)n / (end - start);
  pki_csr_cleanup(&csr);

  /* 2. CSR parse + proof-of-possession check + build + lint + sign. */
  n = 0;
  start = now_s();
  do {
    for (int i = 0; i < 50; i++) {
      if (!pki_csr_parse(&csr, csr_der, csr_len, &err)) die("CSR parse", &err);
      pki_issue_request req = {.profile = &profile,
                               .spki = CBS_data(&csr.spki),
                               .spki_len = CBS_len(&csr.spki),
                               .names = csr.names,
                               .num_names = csr.num_names};
      pki_serial_make(&req.serial, 1, (uint64_t)n + (uint64_t)i, &err);
      pki_validity(&req.not_before, &req.not_after, &infra, profile.validity_s,
                   (int64_t)time(NULL));
      uint8_t *der;
      size_t der_len;
      if (!pki_cert_issue(&der, &der_len, &infra, &req, &err)) die("issue", &err);
      free(der);
      pki_csr_cleanup(&csr);
    }
    n += 50;
    end = now_s();
  } while (end - start < secs);
  double csr_issue_rate = (double)n / (end - start);

  /* 3. Raw ECDSA P-256 signatures of a digest, the floor of (1). */
  const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(infra.key);
  uint8_t digest[32] = {1}, sig[128];
  unsigned sig_len;
  n = 0;
  start = now_s();
  do {
    for (int i = 0; i < 50; i++) {
      sig_len = sizeof(sig);
      if (!ECDSA_sign(0, digest, sizeof(digest), sig, &sig_len, ec)) die("sign", NULL);
    }
    n += 50;
    end = now_s();
  } while (end - start < secs);
  double sign_rate = (double)n / (end - start);

  printf("{\"certs_per_s\": %.0f, \"us_per_cert\": %.1f, "
         "\"csr_check_and_certs_per_s\": %.0f, \"us_per_csr_and_cert\": %.1f, "
         "\"ecdsa_p256_sign_per_s\": %.0f, \"us_per_sign\": %.1f}\n",
         issue_rate, 1e6 / issue_rate, csr_issue_rate, 1e6 / csr_issue_rate, sign_rate,
         1e6 / sign_rate);
  free(csr_der);
  EVP_PKEY_free(key);
  pki_profile_cleanup(&profile);
  pki_issuer_cleanup(&infra);
  pki_issuer_cleanup(&root);
  pki_catalog_free(cat);
  return 0;
}
