#include "lib/cert.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/cert_info.h"
#include "lib/der.h"
#include "lib/lint.h"
#include "lib/sig.h"

/* spk_identifier hashes the subjectPublicKey of a DER SPKI element. */
static int spk_identifier(uint8_t out[20], const uint8_t *spki, size_t spki_len) {
  CBS cbs, seq, alg, spk;
  CBS_init(&cbs, spki, spki_len);
  if (!CBS_get_asn1(&cbs, &seq, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&seq, &alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&seq, &spk, CBS_ASN1_BITSTRING) || !CBS_skip(&spk, 1)) {
    return 0;
  }
  SHA1(CBS_data(&spk), CBS_len(&spk), out);
  return 1;
}

int pki_key_identifier(uint8_t out[20], const EVP_PKEY *key, pki_err *err) {
  CBB cbb;
  uint8_t *spki = NULL;
  size_t spki_len;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, key) ||
      !CBB_finish(&cbb, &spki, &spki_len)) {
    CBB_cleanup(&cbb);
    ERR_clear_error();
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot encode the public key");
    return 0;
  }
  int ok = spk_identifier(out, spki, spki_len);
  OPENSSL_free(spki);
  if (!ok) PKI_ERR(err, PKI_ERR_INTERNAL, "cannot hash the public key");
  return ok;
}

static int copy_names(pki_name **out, size_t *num_out, const pki_name *in, size_t num,
                      pki_err *err) {
  for (size_t i = 0; i < num; i++) {
    if (!pki_names_push(out, num_out, in[i].type, in[i].value, strlen(in[i].value), err)) {
      return 0;
    }
  }
  return 1;
}

int pki_issuer_init(pki_issuer *out, const uint8_t *cert_der, size_t cert_len,
                    EVP_PKEY *key, pki_err *err) {
  memset(out, 0, sizeof(*out));
  pki_cert_info info;
  uint8_t key_id[20];
  if (!pki_cert_info_parse(&info, cert_der, cert_len, err)) {
    pki_err_prefix(err, "CA certificate: ");
    return 0;
  }
  if (!info.is_ca || !(info.key_usage & PKI_KU_KEY_CERT_SIGN)) {
    PKI_ERR(err, PKI_ERR_INVALID, "the certificate is not a CA certificate");
    goto fail;
  }
  if (!pki_key_identifier(key_id, key, err)) goto fail;
  uint8_t cert_key_id[20];
  if (!spk_identifier(cert_key_id, CBS_data(&info.spki), CBS_len(&info.spki)) ||
      memcmp(key_id, cert_key_id, 20) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "the CA key does not match the CA certificate");
    goto fail;
  }
  unsigned bits;
  if (!pki_key_describe(&out->key_type, &bits, key, err)) goto fail;
  if (!pki_key_type_can_sign_certs(out->key_type)) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "a %s key cannot sign certificates",
            pki_key_type_name(out->key_type, bits));
    goto fail;
  }
  if (!info.has_ski || CBS_len(&info.ski) > sizeof(out->ski)) {
    PKI_ERR(err, PKI_ERR_INVALID, "the CA certificate has no usable subjectKeyIdentifier");
    goto fail;
  }
  out->ski_len = CBS_len(&info.ski);
  memcpy(out->ski, CBS_data(&info.ski), out->ski_len);
  out->not_before = info.not_before;
  out->not_after = info.not_after;
  out->path_len = info.path_len;
  out->cert = OPENSSL_malloc(cert_len);
  if (!CBS_stow(&info.subject, &out->name, &out->name_len) || out->cert == NULL) {
    PKI_ERR_OOM(err);
    goto fail;
  }
  memcpy(out->cert, cert_der, cert_len);
  out->cert_len = cert_len;
  if (!copy_names(&out->permitted, &out->num_permitted, info.permitted,
                  info.num_permitted, err) ||
      !copy_names(&out->excluded, &out->num_excluded, info.excluded, info.num_excluded,
                  err)) {
    goto fail;
  }
  EVP_PKEY_up_ref(key);
  out->key = key;
  pki_cert_info_cleanup(&info);
  return 1;
fail:
  pki_cert_info_cleanup(&info);
  pki_issuer_cleanup(out);
  return 0;
}

int pki_issuer_init_self(pki_issuer *out, EVP_PKEY *key, const pki_profile *profile,
                         int64_t not_before, int64_t not_after, pki_err *err) {
  memset(out, 0, sizeof(*out));
  unsigned bits;
  if (!pki_key_describe(&out->key_type, &bits, key, err)) return 0;
  if (!pki_key_type_can_sign_certs(out->key_type)) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "a %s key cannot sign certificates",
            pki_key_type_name(out->key_type, bits));
    return 0;
  }
  if (!pki_key_identifier(out->ski, key, err)) return 0;
  out->ski_len = 20;
  CBB cbb;
  if (!CBB_init(&cbb, 128) ||
      !pki_der_add_name(&cbb, profile->organization, profile->common_name) ||
      !CBB_finish(&cbb, &out->name, &out->name_len)) {
    CBB_cleanup(&cbb);
    PKI_ERR_OOM(err);
    return 0;
  }
  out->not_before = not_before;
  out->not_after = not_after;
  out->path_len = -1;
  EVP_PKEY_up_ref(key);
  out->key = key;
  return 1;
}

void pki_issuer_set_token(pki_issuer *issuer, pki_p11_key *token) {
  pki_p11_key_free(issuer->token);
  issuer->token = pki_p11_key_up_ref(token);
}

int pki_issuer_sign(const pki_issuer *issuer, const pki_signer *with, uint8_t **out,
                    size_t *out_len, const uint8_t *data, size_t data_len, pki_err *err) {
  if (with != NULL) return with->sign(with->ctx, out, out_len, data, data_len, err);
  if (issuer->token != NULL) {
    return pki_p11_key_sign(issuer->token, out, out_len, data, data_len, err);
  }
  return pki_sig_sign(out, out_len, issuer->key, data, data_len, err);
}

void pki_issuer_cleanup(pki_issuer *issuer) {
  if (issuer == NULL) return;
  pki_p11_key_free(issuer->token);
  EVP_PKEY_free(issuer->key);
  OPENSSL_free(issuer->name);
  OPENSSL_free(issuer->cert);
  pki_names_free(issuer->permitted, issuer->num_permitted);
  pki_names_free(issuer->excluded, issuer->num_excluded);
  memset(issuer, 0, sizeof(*issuer));
}

void pki_validity(int64_t *out_not_before, int64_t *out_not_after,
                  const pki_issuer *issuer, uint32_t lifetime_s, int64_t now) {
  int64_t not_before = now - PKI_BACKDATE_S;
  if (not_before < issuer->not_before) not_before = issuer->not_before;
  int64_t not_after = now + (int64_t)lifetime_s;
  if (issuer->not_after != 0 && not_after > issuer->not_after) {
    not_after = issuer->not_after;
  }
  *out_not_before = not_before;
  *out_not_after = not_after;
}

/* ext_begin opens an Extension and its extnValue OCTET STRING; the caller
 * writes the value into |value| and calls CBB_flush on |exts|. */
static int ext_begin(CBB *exts, CBB *ext, CBB *value, const uint8_t *oid,
                     size_t oid_len, int critical) {
  return CBB_add_asn1(exts, ext, CBS_ASN1_SEQUENCE) &&
         pki_der_add_oid(ext, oid, oid_len) &&
         (!critical || CBB_add_asn1_bool(ext, 1)) &&
         CBB_add_asn1(ext, value, CBS_ASN1_OCTETSTRING);
}

/* add_key_usage writes the keyUsage BIT STRING in DER: bits numbered from
 * the most significant bit of the first octet, trailing zero bits dropped
 * and counted in the leading "unused bits" octet (X.690 11.2.2). */
static int add_key_usage(CBB *cbb, unsigned ku) {
  uint8_t octets[2] = {0, 0};
  for (unsigned bit = 0; bit < 16; bit++) {
    if (ku & (1u << bit)) octets[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
  }
  size_t len = octets[1] != 0 ? 2 : 1;
  uint8_t last = octets[len - 1];
  uint8_t unused = 0;
  while (unused < 7 && !(last & (1u << unused))) unused++;
  CBB bits;
  return CBB_add_asn1(cbb, &bits, CBS_ASN1_BITSTRING) && CBB_add_u8(&bits, unused) &&
         CBB_add_bytes(&bits, octets, len) && CBB_flush(cbb);
}

/* add_uri writes a GeneralName uniformResourceIdentifier [6] (IA5String). */
static int add_uri(CBB *cbb, const char *uri) {
  CBB loc;
  return CBB_add_asn1(cbb, &loc, CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_URI) &&
         CBB_add_bytes(&loc, (const uint8_t *)uri, strlen(uri)) && CBB_flush(cbb);
}

static int add_extensions(CBB *tbs, const pki_issuer *issuer, const pki_issue_request *req,
                          const uint8_t ski[20], pki_err *err) {
  const pki_profile *p = req->profile;
  CBB outer, exts, ext, value, seq, child, desc;
  if (!CBB_add_asn1(tbs, &outer, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 3) ||
      !CBB_add_asn1(&outer, &exts, CBS_ASN1_SEQUENCE)) {
    goto oom;
  }
  /* basicConstraints (RFC 5280 4.2.1.9): critical; cA omitted when FALSE. */
  if (!ext_begin(&exts, &ext, &value, PKI_OID_BASIC_CONSTRAINTS,
                 sizeof(PKI_OID_BASIC_CONSTRAINTS), 1) ||
      !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
      (p->is_ca && !CBB_add_asn1_bool(&seq, 1)) ||
      (p->is_ca && p->path_len >= 0 && !CBB_add_asn1_uint64(&seq, (uint64_t)p->path_len)) ||
      !CBB_flush(&exts)) {
    goto oom;
  }
  /* keyUsage (4.2.1.3): critical. */
  if (!ext_begin(&exts, &ext, &value, PKI_OID_KEY_USAGE, sizeof(PKI_OID_KEY_USAGE), 1) ||
      !add_key_usage(&value, p->key_usage) || !CBB_flush(&exts)) {
    goto oom;
  }
  /* extKeyUsage (4.2.1.12): leaves only. */
  if (!p->is_ca) {
    if (!ext_begin(&exts, &ext, &value, PKI_OID_EXT_KEY_USAGE,
                   sizeof(PKI_OID_EXT_KEY_USAGE), 0) ||
        !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
        ((p->usages & PKI_USAGE_SERVER) &&
         !pki_der_add_oid(&seq, PKI_OID_KP_SERVER_AUTH, sizeof(PKI_OID_KP_SERVER_AUTH))) ||
        ((p->usages & PKI_USAGE_CLIENT) &&
         !pki_der_add_oid(&seq, PKI_OID_KP_CLIENT_AUTH, sizeof(PKI_OID_KP_CLIENT_AUTH))) ||
        !CBB_flush(&exts)) {
      goto oom;
    }
  }
  /* subjectKeyIdentifier (4.2.1.2) and authorityKeyIdentifier (4.2.1.1). */
  if (!ext_begin(&exts, &ext, &value, PKI_OID_SUBJECT_KEY_ID,
                 sizeof(PKI_OID_SUBJECT_KEY_ID), 0) ||
      !CBB_add_asn1_octet_string(&value, ski, 20) || !CBB_flush(&exts) ||
      !ext_begin(&exts, &ext, &value, PKI_OID_AUTHORITY_KEY_ID,
                 sizeof(PKI_OID_AUTHORITY_KEY_ID), 0) ||
      !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&seq, &child, CBS_ASN1_CONTEXT_SPECIFIC | 0) ||
      !CBB_add_bytes(&child, issuer->ski, issuer->ski_len) || !CBB_flush(&exts)) {
    goto oom;
  }
  if (!p->is_ca) {
    /* subjectAltName (4.2.1.6): the subject is never empty here, so the
     * extension is not critical. */
    const pki_name *names = req->names != NULL ? req->names : p->names;
    size_t num = req->names != NULL ? req->num_names : p->num_names;
    if (!ext_begin(&exts, &ext, &value, PKI_OID_SUBJECT_ALT_NAME,
                   sizeof(PKI_OID_SUBJECT_ALT_NAME), 0) ||
        !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE)) {
      goto oom;
    }
    for (size_t i = 0; i < num; i++) {
      if (!pki_der_add_general_name(&seq, &names[i], err)) return 0;
    }
    if (!CBB_flush(&exts)) goto oom;
  }
  /* cRLDistributionPoints (4.2.1.13): not critical; one DistributionPoint
   * whose distributionPoint (explicit [0], a CHOICE) is a fullName [0] of
   * one URI, with no reasons (the CRL covers all of them) and no cRLIssuer
   * (the CA signs its own CRL). */
  if (p->crl_url != NULL) {
    CBB point, dp_name, full_name;
    if (!ext_begin(&exts, &ext, &value, PKI_OID_CRL_DISTRIBUTION_POINTS,
                   sizeof(PKI_OID_CRL_DISTRIBUTION_POINTS), 0) ||
        !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&seq, &point, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&point, &dp_name, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
        !CBB_add_asn1(&dp_name, &full_name,
                      CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
        !add_uri(&full_name, p->crl_url) || !CBB_flush(&exts)) {
      goto oom;
    }
  }
  /* authorityInfoAccess (4.2.2.1): where to ask OCSP about a leaf, and
   * where the issuer's certificate is (caIssuers), for relying parties
   * that were not sent the chain. */
  if (p->ocsp_url != NULL || p->ca_issuers_url != NULL) {
    if (!ext_begin(&exts, &ext, &value, PKI_OID_AUTHORITY_INFO_ACCESS,
                   sizeof(PKI_OID_AUTHORITY_INFO_ACCESS), 0) ||
        !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE)) {
      goto oom;
    }
    if (p->ocsp_url != NULL &&
        (!CBB_add_asn1(&seq, &desc, CBS_ASN1_SEQUENCE) ||
         !pki_der_add_oid(&desc, PKI_OID_AD_OCSP, sizeof(PKI_OID_AD_OCSP)) ||
         !add_uri(&desc, p->ocsp_url) || !CBB_flush(&seq))) {
      goto oom;
    }
    if (p->ca_issuers_url != NULL &&
        (!CBB_add_asn1(&seq, &desc, CBS_ASN1_SEQUENCE) ||
         !pki_der_add_oid(&desc, PKI_OID_AD_CA_ISSUERS, sizeof(PKI_OID_AD_CA_ISSUERS)) ||
         !add_uri(&desc, p->ca_issuers_url) || !CBB_flush(&seq))) {
      goto oom;
    }
    if (!CBB_flush(&exts)) goto oom;
  }
  /* nameConstraints (4.2.1.10): critical, CAs only. */
  if (p->is_ca && (p->num_permitted > 0 || p->num_excluded > 0)) {
    if (!ext_begin(&exts, &ext, &value, PKI_OID_NAME_CONSTRAINTS,
                   sizeof(PKI_OID_NAME_CONSTRAINTS), 1) ||
        !CBB_add_asn1(&value, &seq, CBS_ASN1_SEQUENCE)) {
      goto oom;
    }
    if (p->num_permitted > 0) {
      if (!CBB_add_asn1(&seq, &child, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0)) {
        goto oom;
      }
      for (size_t i = 0; i < p->num_permitted; i++) {
        if (!pki_der_add_subtree(&child, &p->permitted[i], err)) return 0;
      }
    }
    if (p->num_excluded > 0) {
      if (!CBB_add_asn1(&seq, &child, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1)) {
        goto oom;
      }
      for (size_t i = 0; i < p->num_excluded; i++) {
        if (!pki_der_add_subtree(&child, &p->excluded[i], err)) return 0;
      }
    }
    if (!CBB_flush(&exts)) goto oom;
  }
  if (!CBB_flush(tbs)) goto oom;
  return 1;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory encoding extensions");
  return 0;
}

int pki_cert_build_tbs(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                       const pki_issue_request *req, pki_err *err) {
  const pki_profile *p = req->profile;
  uint8_t ski[20];
  if (!spk_identifier(ski, req->spki, req->spki_len)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed subject public key");
    return 0;
  }
  if (req->serial.len == 0 || req->serial.len > PKI_SERIAL_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "serial of %zu octets", req->serial.len);
    return 0;
  }
  CBB cbb, tbs, version, serial, validity;
  if (!CBB_init(&cbb, 1024) || !CBB_add_asn1(&cbb, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1(&tbs, &version, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
      !CBB_add_asn1_uint64(&version, 2) ||
      !CBB_add_asn1(&tbs, &serial, CBS_ASN1_INTEGER) ||
      /* A leading zero octet keeps a serial with its top bit set positive. */
      ((req->serial.bytes[0] & 0x80) && !CBB_add_u8(&serial, 0)) ||
      !CBB_add_bytes(&serial, req->serial.bytes, req->serial.len) ||
      !CBB_flush(&tbs)) {
    goto oom;
  }
  if (!pki_sig_add_alg(&tbs, issuer->key_type, err)) goto fail;
  if (!CBB_add_bytes(&tbs, issuer->name, issuer->name_len) ||
      !CBB_add_asn1(&tbs, &validity, CBS_ASN1_SEQUENCE) ||
      !pki_der_add_time(&validity, req->not_before) ||
      !pki_der_add_time(&validity, req->not_after) ||
      !pki_der_add_name(&tbs, p->organization, p->common_name) ||
      !CBB_add_bytes(&tbs, req->spki, req->spki_len)) {
    PKI_ERR(err, PKI_ERR_INVALID, "cannot encode the names or validity");
    goto fail;
  }
  if (!add_extensions(&tbs, issuer, req, ski, err)) goto fail;
  if (!pki_der_finish(&cbb, out, out_len)) goto oom;
  return 1;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory encoding a certificate");
fail:
  CBB_cleanup(&cbb);
  return 0;
}

int pki_cert_sign(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                  const pki_signer *signer, const uint8_t *tbs, size_t tbs_len, pki_err *err) {
  uint8_t *sig = NULL;
  size_t sig_len;
  if (!pki_issuer_sign(issuer, signer, &sig, &sig_len, tbs, tbs_len, err)) return 0;
  CBB cbb, cert, bits;
  if (!CBB_init(&cbb, tbs_len + sig_len + 32) ||
      !CBB_add_asn1(&cbb, &cert, CBS_ASN1_SEQUENCE) ||
      !CBB_add_bytes(&cert, tbs, tbs_len) ||
      !pki_sig_add_alg(&cert, issuer->key_type, err) ||
      !CBB_add_asn1(&cert, &bits, CBS_ASN1_BITSTRING) || !CBB_add_u8(&bits, 0) ||
      !CBB_add_bytes(&bits, sig, sig_len) || !pki_der_finish(&cbb, out, out_len)) {
    CBB_cleanup(&cbb);
    free(sig);
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory encoding a certificate");
    return 0;
  }
  free(sig);
  return 1;
}

int pki_cert_issue_with(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                        const pki_signer *signer, const pki_issue_request *req, pki_err *err) {
  uint8_t *tbs = NULL;
  size_t tbs_len;
  if (!pki_cert_build_tbs(&tbs, &tbs_len, issuer, req, err)) return 0;
  int ok = pki_lint_tbs(tbs, tbs_len, req->profile, issuer, err) &&
           pki_cert_sign(out, out_len, issuer, signer, tbs, tbs_len, err);
  free(tbs);
  return ok;
}

int pki_cert_issue(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                   const pki_issue_request *req, pki_err *err) {
  return pki_cert_issue_with(out, out_len, issuer, NULL, req, err);
}
