/* lb_ocsp_fuzz: arbitrary bytes as the OCSP response `pkictl lb` reads
 * from a responder before it lets a certificate into haproxy
 * (client/lb_ocsp.h). It must refuse with a reason, never crash, leak or
 * read out of bounds: the whole structure is read before the signature is
 * checked, so every part of the input is reached. Checked here:
 *  - a refusal is PKI_ERR_INVALID, PKI_ERR_DENIED or out of memory, with a
 *    message, and leaves the struct zeroed;
 *  - nothing is accepted: the issuer's key is made here, once, and no
 *    input can carry its signature. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/x509.h>

#include "client/lb_ocsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *g_issuer;
static ASN1_INTEGER *g_serial;

static void init(void) {
  EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  EVP_PKEY *key = EVP_PKEY_new();
  g_issuer = X509_new();
  g_serial = ASN1_INTEGER_new();
  X509_NAME *name = X509_NAME_new();
  if (ec == NULL || key == NULL || g_issuer == NULL || g_serial == NULL || name == NULL ||
      !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(key, ec) ||
      !ASN1_INTEGER_set(g_serial, 0x0102) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"Fuzz OCSP CA", -1,
                                  -1, 0) ||
      !X509_set_version(g_issuer, X509_VERSION_3) || !X509_set_subject_name(g_issuer, name) ||
      !X509_set_issuer_name(g_issuer, name) || !X509_set_pubkey(g_issuer, key) ||
      !X509_gmtime_adj(X509_getm_notBefore(g_issuer), 0) ||
      !X509_gmtime_adj(X509_getm_notAfter(g_issuer), 86400) ||
      !X509_sign(g_issuer, key, EVP_sha256())) {
    abort();
  }
  X509_NAME_free(name);
  EVP_PKEY_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (g_issuer == NULL) init();
  lb_ocsp out;
  pki_err err;
  pki_err_clear(&err);
  static const lb_ocsp kZero;
  if (lb_ocsp_parse(&out, data, size, g_issuer, g_serial, 1796000000, &err)) abort();
  if ((err.code != PKI_ERR_INVALID && err.code != PKI_ERR_DENIED &&
       err.code != PKI_ERR_EXHAUSTED) ||
      err.msg[0] == '\0' || memcmp(&out, &kZero, sizeof(out)) != 0) {
    abort();
  }
  lb_ocsp_cleanup(&out);
  return 0;
}
