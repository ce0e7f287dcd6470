#include "lib/csr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/mem.h>

#include "lib/der.h"
#include "lib/sig.h"

/* parse_extension_request reads the Extensions of an extensionRequest
 * attribute (PKCS#9) and keeps the requested subjectAltName. Other
 * requested extensions are ignored: the profile decides them. */
static int parse_extension_request(pki_csr *out, CBS *values, pki_err *err) {
  CBS exts;
  if (!CBS_get_asn1(values, &exts, CBS_ASN1_SEQUENCE) || CBS_len(values) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "CSR: malformed extensionRequest");
    return 0;
  }
  int seen_san = 0;
  while (CBS_len(&exts) > 0) {
    CBS ext, oid, value;
    int critical = 0;
    if (!CBS_get_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&ext, &oid, CBS_ASN1_OBJECT) ||
        !pki_der_get_optional_bool(&ext, &critical) ||
        !CBS_get_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) || CBS_len(&ext) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "CSR: malformed requested extension");
      return 0;
    }
    if (!PKI_DER_OID_IS(&oid, PKI_OID_SUBJECT_ALT_NAME)) continue;
    CBS seq;
    if (seen_san || !CBS_get_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
        CBS_len(&value) != 0 || CBS_len(&seq) == 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "CSR: malformed requested subjectAltName");
      return 0;
    }
    seen_san = 1;
    while (CBS_len(&seq) > 0) {
      if (!pki_der_get_general_name(&seq, &out->names, &out->num_names, err)) {
        pki_err_prefix(err, "CSR: requested subjectAltName: ");
        return 0;
      }
      const pki_name *n = &out->names[out->num_names - 1];
      if (!pki_name_check(n->type, n->value, err)) {
        pki_err_prefix(err, "CSR: requested subjectAltName: ");
        return 0;
      }
    }
  }
  return 1;
}

static int parse_attributes(pki_csr *out, CBS *attrs, pki_err *err) {
  while (CBS_len(attrs) > 0) {
    CBS attr, oid, values;
    if (!CBS_get_asn1(attrs, &attr, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&attr, &oid, CBS_ASN1_OBJECT) ||
        !CBS_get_asn1(&attr, &values, CBS_ASN1_SET) || CBS_len(&attr) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "CSR: malformed attribute");
      return 0;
    }
    /* Other attributes (challengePassword, ...) mean nothing to pkid. */
    if (PKI_DER_OID_IS(&oid, PKI_OID_EXTENSION_REQUEST) &&
        !parse_extension_request(out, &values, err)) {
      return 0;
    }
  }
  return 1;
}

int pki_csr_parse(pki_csr *out, const uint8_t *der, size_t len, pki_err *err) {
  memset(out, 0, sizeof(*out));
  CBS cbs, req, info_el, info, sig_alg, sig, attrs, spki;
  uint64_t version;
  uint8_t unused;
  if (len > PKI_CSR_MAX_LEN) {
    PKI_ERR(err, PKI_ERR_INVALID, "CSR: %zu bytes is larger than the %d allowed", len,
            PKI_CSR_MAX_LEN);
    return 0;
  }
  CBS_init(&cbs, der, len);
  if (!CBS_get_asn1(&cbs, &req, CBS_ASN1_SEQUENCE) || CBS_len(&cbs) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "CSR: not a DER CertificationRequest%s",
            CBS_len(&cbs) != 0 ? " (trailing data)" : "");
    return 0;
  }
  if (!CBS_get_asn1_element(&req, &info_el, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&req, &sig_alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&req, &sig, CBS_ASN1_BITSTRING) || CBS_len(&req) != 0 ||
      !CBS_get_u8(&sig, &unused) || unused != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "CSR: malformed CertificationRequest");
    return 0;
  }
  info = info_el;
  if (!CBS_get_asn1(&info, &info, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_uint64(&info, &version) ||
      !CBS_get_asn1_element(&info, &out->subject, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&info, &out->spki, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&info, &attrs, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
      CBS_len(&info) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "CSR: malformed CertificationRequestInfo");
    goto fail;
  }
  if (version != 0) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "CSR: version %llu (only version 1, encoded 0)",
            (unsigned long long)version);
    goto fail;
  }
  if (!pki_der_name_get_cn(&out->subject, out->common_name, sizeof(out->common_name))) {
    out->common_name[0] = '\0';
  }
  spki = out->spki;
  errno = 0; /* for PKI_ERR_CRYPTO */
  out->key = EVP_parse_public_key(&spki);
  if (out->key == NULL || CBS_len(&spki) != 0) {
    PKI_ERR_CRYPTO(err, PKI_ERR_UNSUPPORTED,
            "CSR: public key is malformed or of an unsupported type "
            "(accepted: ECDSA P-256/P-384, Ed25519, RSA 2048-4096)");
    goto fail;
  }
  if (!pki_key_describe(&out->key_type, &out->key_bits, out->key, err)) {
    pki_err_prefix(err, "CSR: ");
    goto fail;
  }
  if (!parse_attributes(out, &attrs, err)) goto fail;
  /* Proof of possession: the request is signed by the key it carries. */
  if (!pki_sig_verify(&sig_alg, out->key, CBS_data(&info_el), CBS_len(&info_el),
                      CBS_data(&sig), CBS_len(&sig), err)) {
    pki_err_prefix(err, "CSR: ");
    if (err->code == PKI_ERR_AUTH) {
      pki_err_prefix(err, "proof of possession failed: ");
    }
    goto fail;
  }
  return 1;
fail:
  pki_csr_cleanup(out);
  return 0;
}

void pki_csr_cleanup(pki_csr *csr) {
  if (csr == NULL) return;
  EVP_PKEY_free(csr->key);
  pki_names_free(csr->names, csr->num_names);
  memset(csr, 0, sizeof(*csr));
}

/* csr_sig_alg writes the AlgorithmIdentifier a subject key of |type| signs
 * its CSR with. */
static int csr_sig_alg(CBB *cbb, pki_key_type type) {
  CBB alg, null;
  const uint8_t *oid;
  size_t oid_len;
  int rsa = 0;
  switch (type) {
    case PKI_KEY_ECDSA_P256:
      oid = PKI_OID_ECDSA_SHA256, oid_len = sizeof(PKI_OID_ECDSA_SHA256);
      break;
    case PKI_KEY_ECDSA_P384:
      oid = PKI_OID_ECDSA_SHA384, oid_len = sizeof(PKI_OID_ECDSA_SHA384);
      break;
    case PKI_KEY_ED25519:
      oid = PKI_OID_ED25519, oid_len = sizeof(PKI_OID_ED25519);
      break;
    case PKI_KEY_RSA:
      oid = PKI_OID_RSA_SHA256, oid_len = sizeof(PKI_OID_RSA_SHA256);
      rsa = 1;
      break;
    default:
      return 0;
  }
  return CBB_add_asn1(cbb, &alg, CBS_ASN1_SEQUENCE) &&
         pki_der_add_oid(&alg, oid, oid_len) &&
         (!rsa || CBB_add_asn1(&alg, &null, CBS_ASN1_NULL)) && CBB_flush(cbb);
}

int pki_csr_build(uint8_t **out, size_t *out_len, EVP_PKEY *key,
                  const char *common_name, const pki_name *names,
                  size_t num_names, pki_err *err) {
  pki_key_type type;
  unsigned bits;
  if (!pki_key_describe(&type, &bits, key, err)) return 0;
  CBB info, seq, attrs, attr, values, exts, ext, value, san;
  uint8_t *info_der = NULL, *sig = NULL;
  size_t info_len, sig_len;
  const EVP_MD *md;
  CBB cbb;
  CBB_zero(&cbb);

  if (!CBB_init(&info, 512) || !CBB_add_asn1(&info, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1_uint64(&seq, 0) || !pki_der_add_name(&seq, NULL, common_name) ||
      !EVP_marshal_public_key(&seq, key) ||
      !CBB_add_asn1(&seq, &attrs, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0)) {
    goto oom;
  }
  if (num_names > 0) {
    if (!CBB_add_asn1(&attrs, &attr, CBS_ASN1_SEQUENCE) ||
        !pki_der_add_oid(&attr, PKI_OID_EXTENSION_REQUEST, sizeof(PKI_OID_EXTENSION_REQUEST)) ||
        !CBB_add_asn1(&attr, &values, CBS_ASN1_SET) ||
        !CBB_add_asn1(&values, &exts, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
        !pki_der_add_oid(&ext, PKI_OID_SUBJECT_ALT_NAME, sizeof(PKI_OID_SUBJECT_ALT_NAME)) ||
        !CBB_add_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) ||
        !CBB_add_asn1(&value, &san, CBS_ASN1_SEQUENCE)) {
      goto oom;
    }
    for (size_t i = 0; i < num_names; i++) {
      if (!pki_der_add_general_name(&san, &names[i], err)) goto fail;
    }
  }
  if (!CBB_finish(&info, &info_der, &info_len)) goto oom;

  /* The digest matches the key's strength; Ed25519 hashes internally. */
  md = type == PKI_KEY_ECDSA_P384 ? EVP_sha384()
       : type == PKI_KEY_ED25519  ? NULL
                                  : EVP_sha256();
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  if (!EVP_DigestSignInit(&ctx, NULL, md, NULL, key) ||
      !EVP_DigestSign(&ctx, NULL, &sig_len, info_der, info_len) ||
      (sig = malloc(sig_len)) == NULL ||
      !EVP_DigestSign(&ctx, sig, &sig_len, info_der, info_len)) {
    EVP_MD_CTX_cleanup(&ctx);
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "signing the CSR failed");
    goto fail;
  }
  EVP_MD_CTX_cleanup(&ctx);

  CBB req, bits_cbb;
  if (!CBB_init(&cbb, info_len + sig_len + 64) ||
      !CBB_add_asn1(&cbb, &req, CBS_ASN1_SEQUENCE) ||
      !CBB_add_bytes(&req, info_der, info_len) || !csr_sig_alg(&req, type) ||
      !CBB_add_asn1(&req, &bits_cbb, CBS_ASN1_BITSTRING) || !CBB_add_u8(&bits_cbb, 0) ||
      !CBB_add_bytes(&bits_cbb, sig, sig_len) || !pki_der_finish(&cbb, out, out_len)) {
    goto oom;
  }
  OPENSSL_free(info_der);
  free(sig);
  return 1;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory building a CSR");
fail:
  CBB_cleanup(&info);
  CBB_cleanup(&cbb);
  OPENSSL_free(info_der);
  free(sig);
  return 0;
}
