#include "lib/sig.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/mem.h>

#include "lib/der.h"

const EVP_MD *pki_sig_md(pki_key_type type) {
  switch (type) {
    case PKI_KEY_ECDSA_P256: return EVP_sha256();
    case PKI_KEY_ECDSA_P384: return EVP_sha384();
    default: return NULL;
  }
}

int pki_sig_add_alg(CBB *cbb, pki_key_type type, pki_err *err) {
  CBB alg;
  int ok;
  if (!CBB_add_asn1(cbb, &alg, CBS_ASN1_SEQUENCE)) goto oom;
  /* ECDSA and Ed25519 AlgorithmIdentifiers have no parameters (RFC 5758
   * 3.2, RFC 8410 3). */
  switch (type) {
    case PKI_KEY_ECDSA_P256:
      ok = pki_der_add_oid(&alg, PKI_OID_ECDSA_SHA256, sizeof(PKI_OID_ECDSA_SHA256));
      break;
    case PKI_KEY_ECDSA_P384:
      ok = pki_der_add_oid(&alg, PKI_OID_ECDSA_SHA384, sizeof(PKI_OID_ECDSA_SHA384));
      break;
    case PKI_KEY_ED25519:
      ok = pki_der_add_oid(&alg, PKI_OID_ED25519, sizeof(PKI_OID_ED25519));
      break;
    default:
      PKI_ERR(err, PKI_ERR_UNSUPPORTED, "a %s key cannot sign certificates",
              pki_key_type_name(type, 0));
      return 0;
  }
  if (!ok || !CBB_flush(cbb)) goto oom;
  return 1;
oom:
  PKI_ERR_OOM(err);
  return 0;
}

int pki_sig_sign(uint8_t **out, size_t *out_len, EVP_PKEY *key,
                 const uint8_t *data, size_t data_len, pki_err *err) {
  pki_key_type type;
  unsigned bits;
  if (!pki_key_describe(&type, &bits, key, err)) return 0;
  if (!pki_key_type_can_sign_certs(type)) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "a %s key cannot sign certificates",
            pki_key_type_name(type, bits));
    return 0;
  }
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  uint8_t *sig = NULL;
  size_t sig_len = 0;
  if (!EVP_DigestSignInit(&ctx, NULL, pki_sig_md(type), NULL, key) ||
      !EVP_DigestSign(&ctx, NULL, &sig_len, data, data_len) ||
      (sig = malloc(sig_len)) == NULL ||
      !EVP_DigestSign(&ctx, sig, &sig_len, data, data_len)) {
    EVP_MD_CTX_cleanup(&ctx);
    free(sig);
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "signing failed");
    return 0;
  }
  EVP_MD_CTX_cleanup(&ctx);
  *out = sig;
  *out_len = sig_len;
  return 1;
}

/* verify_params checks an AlgorithmIdentifier's parameters: absent for
 * ECDSA and Ed25519; NULL or absent for RSA PKCS#1 v1.5 (RFC 4055 5). */
static int params_ok(CBS *alg, int null_allowed) {
  if (CBS_len(alg) == 0) return 1;
  CBS null;
  return null_allowed && CBS_get_asn1(alg, &null, CBS_ASN1_NULL) &&
         CBS_len(&null) == 0 && CBS_len(alg) == 0;
}

int pki_sig_verify(const CBS *alg_in, EVP_PKEY *key, const uint8_t *data,
                   size_t data_len, const uint8_t *sig, size_t sig_len,
                   pki_err *err) {
  CBS alg_el = *alg_in, alg, oid;
  if (!CBS_get_asn1(&alg_el, &alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed signature AlgorithmIdentifier");
    return 0;
  }
  int key_id = EVP_PKEY_id(key);
  const EVP_MD *md = NULL;
  int want_id, null_ok = 0;
  if (PKI_DER_OID_IS(&oid, PKI_OID_ECDSA_SHA256)) {
    md = EVP_sha256(), want_id = EVP_PKEY_EC;
  } else if (PKI_DER_OID_IS(&oid, PKI_OID_ECDSA_SHA384)) {
    md = EVP_sha384(), want_id = EVP_PKEY_EC;
  } else if (PKI_DER_OID_IS(&oid, PKI_OID_ECDSA_SHA512)) {
    md = EVP_sha512(), want_id = EVP_PKEY_EC;
  } else if (PKI_DER_OID_IS(&oid, PKI_OID_ED25519)) {
    want_id = EVP_PKEY_ED25519;
  } else if (PKI_DER_OID_IS(&oid, PKI_OID_RSA_SHA256)) {
    md = EVP_sha256(), want_id = EVP_PKEY_RSA, null_ok = 1;
  } else if (PKI_DER_OID_IS(&oid, PKI_OID_RSA_SHA384)) {
    md = EVP_sha384(), want_id = EVP_PKEY_RSA, null_ok = 1;
  } else if (PKI_DER_OID_IS(&oid, PKI_OID_RSA_SHA512)) {
    md = EVP_sha512(), want_id = EVP_PKEY_RSA, null_ok = 1;
  } else {
    char *text = CBS_asn1_oid_to_text(&oid);
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "signature algorithm %s is not supported",
            text != NULL ? text : "(malformed OID)");
    OPENSSL_free(text);
    return 0;
  }
  if (!params_ok(&alg, null_ok) || CBS_len(&alg_el) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed signature algorithm parameters");
    return 0;
  }
  if (key_id != want_id) {
    PKI_ERR(err, PKI_ERR_INVALID, "signature algorithm does not match the key type");
    return 0;
  }
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  errno = 0; /* for PKI_ERR_CRYPTO */
  int ok = EVP_DigestVerifyInit(&ctx, NULL, md, NULL, key) &&
           EVP_DigestVerify(&ctx, sig, sig_len, data, data_len);
  EVP_MD_CTX_cleanup(&ctx);
  if (!ok) {
    /* The reason is ours to report (this also empties the queue); an
     * allocation that failed is not a bad signature. */
    PKI_ERR_CRYPTO(err, PKI_ERR_AUTH, "signature does not verify");
    return 0;
  }
  return 1;
}
