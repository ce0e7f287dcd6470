#include "lib/cert_info.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>

#include "lib/der.h"
#include "lib/sig.h"

/* Each extension pkid knows, parsed from its extnValue contents. */

static int parse_basic_constraints(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS seq;
  int is_ca = 0;
  uint64_t path_len;
  int has_path_len = 0;
  if (!CBS_get_asn1(value, &seq, CBS_ASN1_SEQUENCE) ||
      !pki_der_get_optional_bool(&seq, &is_ca)) {
    goto bad;
  }
  /* DER leaves DEFAULT values out: an explicit cA FALSE is not DER. */
  if (CBS_peek_asn1_tag(&seq, CBS_ASN1_INTEGER)) {
    if (!CBS_get_asn1_uint64(&seq, &path_len) || path_len > 255) goto bad;
    has_path_len = 1;
  }
  if (CBS_len(&seq) != 0 || CBS_len(value) != 0) goto bad;
  if (has_path_len && !is_ca) goto bad; /* RFC 5280 4.2.1.9 */
  info->is_ca = is_ca;
  info->path_len = has_path_len ? (int)path_len : -1;
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed basicConstraints");
  return 0;
}

static int parse_key_usage(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS bits;
  if (!CBS_get_asn1(value, &bits, CBS_ASN1_BITSTRING) || CBS_len(value) != 0 ||
      !CBS_is_valid_asn1_bitstring(&bits) || CBS_len(&bits) < 2) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed keyUsage");
    return 0;
  }
  info->key_usage = 0;
  for (unsigned bit = 0; bit < 16; bit++) {
    if (CBS_asn1_bitstring_has_bit(&bits, bit)) info->key_usage |= 1u << bit;
  }
  if (info->key_usage == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "keyUsage with no bit set");
    return 0;
  }
  return 1;
}

static int parse_ext_key_usage(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS seq;
  if (!CBS_get_asn1(value, &seq, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      CBS_len(&seq) == 0) {
    goto bad;
  }
  while (CBS_len(&seq) > 0) {
    CBS oid;
    if (!CBS_get_asn1(&seq, &oid, CBS_ASN1_OBJECT)) goto bad;
    if (PKI_DER_OID_IS(&oid, PKI_OID_KP_SERVER_AUTH)) {
      info->ext_key_usage |= PKI_USAGE_SERVER;
    } else if (PKI_DER_OID_IS(&oid, PKI_OID_KP_CLIENT_AUTH)) {
      info->ext_key_usage |= PKI_USAGE_CLIENT;
    } else {
      info->ext_key_usage_other = 1;
    }
  }
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed extKeyUsage");
  return 0;
}

static int parse_ski(pki_cert_info *info, CBS *value, pki_err *err) {
  if (!CBS_get_asn1(value, &info->ski, CBS_ASN1_OCTETSTRING) || CBS_len(value) != 0 ||
      CBS_len(&info->ski) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed subjectKeyIdentifier");
    return 0;
  }
  return 1;
}

static int parse_aki(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS seq;
  if (!CBS_get_asn1(value, &seq, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      !CBS_get_asn1(&seq, &info->aki, CBS_ASN1_CONTEXT_SPECIFIC | 0) ||
      CBS_len(&info->aki) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "malformed authorityKeyIdentifier (pkid needs a keyIdentifier)");
    return 0;
  }
  /* authorityCertIssuer and authorityCertSerialNumber may follow; pkid
   * chains by key identifier and does not need them. */
  return 1;
}

static int parse_san(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS seq;
  if (!CBS_get_asn1(value, &seq, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      CBS_len(&seq) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed subjectAltName");
    return 0;
  }
  while (CBS_len(&seq) > 0) {
    if (!pki_der_get_general_name(&seq, &info->sans, &info->num_sans, err)) {
      pki_err_prefix(err, "subjectAltName: ");
      return 0;
    }
  }
  return 1;
}

static int parse_subtrees(CBS *trees, pki_name **out, size_t *num, pki_err *err) {
  if (CBS_len(trees) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "empty GeneralSubtrees");
    return 0;
  }
  while (CBS_len(trees) > 0) {
    if (!pki_der_get_subtree(trees, out, num, err)) return 0;
  }
  return 1;
}

static int parse_name_constraints(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS seq, permitted, excluded;
  int has_permitted, has_excluded;
  if (!CBS_get_asn1(value, &seq, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      !CBS_get_optional_asn1(&seq, &permitted, &has_permitted,
                             CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
      !CBS_get_optional_asn1(&seq, &excluded, &has_excluded,
                             CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1) ||
      CBS_len(&seq) != 0 || (!has_permitted && !has_excluded)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed nameConstraints");
    return 0;
  }
  if ((has_permitted &&
       !parse_subtrees(&permitted, &info->permitted, &info->num_permitted, err)) ||
      (has_excluded &&
       !parse_subtrees(&excluded, &info->excluded, &info->num_excluded, err))) {
    pki_err_prefix(err, "nameConstraints: ");
    return 0;
  }
  return 1;
}

/* uri_ok: a URI's IA5String contents, neither empty nor holding a NUL. */
static int uri_ok(const CBS *uri) {
  return CBS_len(uri) > 0 && !CBS_contains_zero_byte(uri);
}

/* copy_uri copies them into |*out|; it fails only for memory. */
static int copy_uri(const CBS *uri, char **out, pki_err *err) {
  if (!CBS_strdup(uri, out)) {
    ERR_clear_error();
    PKI_ERR_OOM(err);
    return 0;
  }
  return 1;
}

static int parse_aia(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS seq;
  if (!CBS_get_asn1(value, &seq, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      CBS_len(&seq) == 0) {
    goto bad;
  }
  while (CBS_len(&seq) > 0) {
    CBS desc, method, location;
    if (!CBS_get_asn1(&seq, &desc, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&desc, &method, CBS_ASN1_OBJECT) ||
        !CBS_get_any_asn1_element(&desc, &location, NULL, NULL) || CBS_len(&desc) != 0) {
      goto bad;
    }
    if (PKI_DER_OID_IS(&method, PKI_OID_AD_OCSP) && info->ocsp_url == NULL) {
      CBS uri;
      if (!CBS_get_asn1(&location, &uri, CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_URI) ||
          !uri_ok(&uri)) {
        goto bad;
      }
      if (!copy_uri(&uri, &info->ocsp_url, err)) return 0;
    } else if (PKI_DER_OID_IS(&method, PKI_OID_AD_CA_ISSUERS) &&
               info->ca_issuers_url == NULL &&
               CBS_peek_asn1_tag(&location, CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_URI)) {
      /* A directoryName is allowed here too (an LDAP directory); pkid
       * writes a URI and counts anything else as other. */
      CBS uri;
      if (!CBS_get_asn1(&location, &uri, CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_URI) ||
          !uri_ok(&uri)) {
        goto bad;
      }
      if (!copy_uri(&uri, &info->ca_issuers_url, err)) return 0;
    } else {
      info->aia_other = 1;
    }
  }
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed authorityInfoAccess");
  return 0;
}

/* parse_crl_dp reads cRLDistributionPoints (RFC 5280 4.2.1.13):
 *   SEQUENCE SIZE (1..MAX) OF DistributionPoint ::= SEQUENCE {
 *     distributionPoint [0] DistributionPointName OPTIONAL,  -- explicit: a CHOICE
 *     reasons           [1] ReasonFlags OPTIONAL,
 *     cRLIssuer         [2] GeneralNames OPTIONAL }
 *   DistributionPointName ::= CHOICE {
 *     fullName                [0] GeneralNames,
 *     nameRelativeToCRLIssuer [1] RelativeDistinguishedName }
 * It keeps the first fullName URI and notes that there is more. */
static int parse_crl_dp(pki_cert_info *info, CBS *value, pki_err *err) {
  CBS points;
  size_t num_points = 0;
  if (!CBS_get_asn1(value, &points, CBS_ASN1_SEQUENCE) || CBS_len(value) != 0 ||
      CBS_len(&points) == 0) {
    goto bad;
  }
  while (CBS_len(&points) > 0) {
    CBS dp, name, reasons, issuer, full, relative;
    int has_name, has_reasons, has_issuer, has_full, has_relative;
    if (!CBS_get_asn1(&points, &dp, CBS_ASN1_SEQUENCE) ||
        !CBS_get_optional_asn1(&dp, &name, &has_name,
                               CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
        !CBS_get_optional_asn1(&dp, &reasons, &has_reasons, CBS_ASN1_CONTEXT_SPECIFIC | 1) ||
        !CBS_get_optional_asn1(&dp, &issuer, &has_issuer,
                               CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 2) ||
        CBS_len(&dp) != 0 ||
        /* "either distributionPoint or cRLIssuer MUST be present" */
        (!has_name && !has_issuer)) {
      goto bad;
    }
    if (num_points++ > 0 || has_reasons || has_issuer) info->crl_dp_other = 1;
    if (!has_name) continue;
    if (!CBS_get_optional_asn1(&name, &full, &has_full,
                               CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
        !CBS_get_optional_asn1(&name, &relative, &has_relative,
                               CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1) ||
        CBS_len(&name) != 0 || has_full == has_relative ||
        (has_full && CBS_len(&full) == 0)) {
      goto bad;
    }
    if (has_relative) {
      info->crl_dp_other = 1;
      continue;
    }
    while (CBS_len(&full) > 0) {
      CBS general_name;
      unsigned tag;
      if (!CBS_get_any_asn1(&full, &general_name, &tag)) goto bad;
      if (tag != (CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_URI) || info->crl_url != NULL) {
        info->crl_dp_other = 1;
        continue;
      }
      if (!uri_ok(&general_name)) goto bad;
      if (!copy_uri(&general_name, &info->crl_url, err)) return 0;
    }
  }
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed cRLDistributionPoints");
  return 0;
}

typedef struct ext_kind {
  const uint8_t *oid;
  size_t oid_len;
  const char *name;
  int (*parse)(pki_cert_info *info, CBS *value, pki_err *err);
  size_t present_offset; /* offsetof the has_ flag */
  size_t critical_offset; /* offsetof where criticality is kept, or 0 */
} ext_kind;

#define EXT(oid, name, fn, has, crit) \
  {oid, sizeof(oid), name, fn, offsetof(pki_cert_info, has), crit}

static const ext_kind kExtensions[] = {
    EXT(PKI_OID_BASIC_CONSTRAINTS, "basicConstraints", parse_basic_constraints,
        has_basic_constraints, offsetof(pki_cert_info, basic_constraints_critical)),
    EXT(PKI_OID_KEY_USAGE, "keyUsage", parse_key_usage, has_key_usage,
        offsetof(pki_cert_info, key_usage_critical)),
    EXT(PKI_OID_EXT_KEY_USAGE, "extKeyUsage", parse_ext_key_usage, has_ext_key_usage, 0),
    EXT(PKI_OID_SUBJECT_KEY_ID, "subjectKeyIdentifier", parse_ski, has_ski, 0),
    EXT(PKI_OID_AUTHORITY_KEY_ID, "authorityKeyIdentifier", parse_aki, has_aki, 0),
    EXT(PKI_OID_SUBJECT_ALT_NAME, "subjectAltName", parse_san, has_san,
        offsetof(pki_cert_info, san_critical)),
    EXT(PKI_OID_NAME_CONSTRAINTS, "nameConstraints", parse_name_constraints,
        has_name_constraints, 0),
    EXT(PKI_OID_AUTHORITY_INFO_ACCESS, "authorityInfoAccess", parse_aia, has_aia, 0),
    EXT(PKI_OID_CRL_DISTRIBUTION_POINTS, "cRLDistributionPoints", parse_crl_dp, has_crl_dp,
        offsetof(pki_cert_info, crl_dp_critical)),
};

static int parse_extensions(pki_cert_info *info, CBS *exts, pki_err *err) {
  CBS seq;
  if (!CBS_get_asn1(exts, &seq, CBS_ASN1_SEQUENCE) || CBS_len(exts) != 0 ||
      CBS_len(&seq) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed extensions");
    return 0;
  }
  while (CBS_len(&seq) > 0) {
    CBS ext, oid, value;
    int critical = 0;
    if (!CBS_get_asn1(&seq, &ext, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&ext, &oid, CBS_ASN1_OBJECT) ||
        !pki_der_get_optional_bool(&ext, &critical) ||
        !CBS_get_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) || CBS_len(&ext) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed extension");
      return 0;
    }
    const ext_kind *kind = NULL;
    for (size_t i = 0; i < sizeof(kExtensions) / sizeof(kExtensions[0]); i++) {
      if (CBS_mem_equal(&oid, kExtensions[i].oid, kExtensions[i].oid_len)) {
        kind = &kExtensions[i];
      }
    }
    if (kind == NULL) {
      if (critical) {
        char *text = CBS_asn1_oid_to_text(&oid);
        PKI_ERR(err, PKI_ERR_UNSUPPORTED, "unknown critical extension %s",
                text != NULL ? text : "(malformed OID)");
        OPENSSL_free(text);
        return 0;
      }
      info->num_unknown_extensions++;
      continue;
    }
    int *present = (int *)((char *)info + kind->present_offset);
    if (*present) {
      /* RFC 5280 4.2: an extension appears at most once. */
      PKI_ERR(err, PKI_ERR_INVALID, "extension %s appears twice", kind->name);
      return 0;
    }
    *present = 1;
    if (kind->critical_offset != 0) {
      *(int *)((char *)info + kind->critical_offset) = critical;
    }
    if (!kind->parse(info, &value, err)) return 0;
  }
  return 1;
}

static int parse_tbs(pki_cert_info *info, CBS *tbs_el, pki_err *err) {
  CBS tbs, version, validity, spki_copy, spki_alg, spk, exts;
  int has_version, has_exts;
  uint64_t v = 0;
  info->tbs = *tbs_el;
  info->path_len = -1;
  if (!CBS_get_asn1(tbs_el, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBS_get_optional_asn1(&tbs, &version, &has_version,
                             CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0)) {
    goto bad;
  }
  if (has_version &&
      (!CBS_get_asn1_uint64(&version, &v) || CBS_len(&version) != 0 || v > 2)) {
    goto bad;
  }
  if (v != 2) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "only X.509 version 3 certificates are accepted");
    return 0;
  }
  if (!CBS_get_asn1(&tbs, &info->serial, CBS_ASN1_INTEGER) ||
      !CBS_is_valid_asn1_integer(&info->serial, NULL) ||
      !CBS_get_asn1_element(&tbs, &info->tbs_sig_alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&tbs, &info->issuer, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&tbs, &validity, CBS_ASN1_SEQUENCE) ||
      !pki_der_get_time(&validity, &info->not_before) ||
      !pki_der_get_time(&validity, &info->not_after) || CBS_len(&validity) != 0 ||
      !CBS_get_asn1_element(&tbs, &info->subject, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&tbs, &info->spki, CBS_ASN1_SEQUENCE)) {
    goto bad;
  }
  spki_copy = info->spki;
  if (!CBS_get_asn1(&spki_copy, &spki_copy, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&spki_copy, &spki_alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&spki_copy, &spk, CBS_ASN1_BITSTRING) || CBS_len(&spki_copy) != 0 ||
      !CBS_skip(&spk, 1)) {
    goto bad;
  }
  info->subject_public_key = spk;
  /* issuerUniqueID [1] and subjectUniqueID [2] are not used (RFC 5280
   * 4.1.2.8: CAs conforming to the profile MUST NOT generate them). */
  if (!CBS_get_optional_asn1(&tbs, &exts, &has_exts,
                             CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 3) ||
      CBS_len(&tbs) != 0) {
    goto bad;
  }
  if (has_exts && !parse_extensions(info, &exts, err)) return 0;
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "malformed TBSCertificate");
  return 0;
}

int pki_cert_info_parse_tbs(pki_cert_info *out, const uint8_t *der, size_t len,
                            pki_err *err) {
  memset(out, 0, sizeof(*out));
  CBS cbs, tbs;
  CBS_init(&cbs, der, len);
  if (!CBS_get_asn1_element(&cbs, &tbs, CBS_ASN1_SEQUENCE) || CBS_len(&cbs) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a DER TBSCertificate");
    return 0;
  }
  if (!parse_tbs(out, &tbs, err)) {
    pki_cert_info_cleanup(out);
    return 0;
  }
  return 1;
}

int pki_cert_info_parse(pki_cert_info *out, const uint8_t *der, size_t len,
                        pki_err *err) {
  memset(out, 0, sizeof(*out));
  CBS cbs, cert, tbs, sig;
  uint8_t unused;
  CBS_init(&cbs, der, len);
  if (!CBS_get_asn1(&cbs, &cert, CBS_ASN1_SEQUENCE) || CBS_len(&cbs) != 0 ||
      !CBS_get_asn1_element(&cert, &tbs, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1_element(&cert, &out->sig_alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&cert, &sig, CBS_ASN1_BITSTRING) || CBS_len(&cert) != 0 ||
      !CBS_get_u8(&sig, &unused) || unused != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "not a DER X.509 certificate");
    return 0;
  }
  out->signature = sig;
  if (!parse_tbs(out, &tbs, err)) {
    pki_cert_info_cleanup(out);
    return 0;
  }
  if (!CBS_mem_equal(&out->sig_alg, CBS_data(&out->tbs_sig_alg),
                     CBS_len(&out->tbs_sig_alg))) {
    /* RFC 5280 4.1.1.2: the two must be the same. */
    PKI_ERR(err, PKI_ERR_INVALID, "signature algorithms inside and outside the TBS differ");
    pki_cert_info_cleanup(out);
    return 0;
  }
  return 1;
}

void pki_cert_info_cleanup(pki_cert_info *info) {
  if (info == NULL) return;
  pki_names_free(info->sans, info->num_sans);
  pki_names_free(info->permitted, info->num_permitted);
  pki_names_free(info->excluded, info->num_excluded);
  /* From CBS_strdup. */
  OPENSSL_free(info->ocsp_url);
  OPENSSL_free(info->ca_issuers_url);
  OPENSSL_free(info->crl_url);
  memset(info, 0, sizeof(*info));
}

const char *pki_cert_info_identity(const pki_cert_info *info) {
  for (size_t i = 0; i < info->num_sans; i++) {
    if (info->sans[i].type == PKI_NAME_URI) return info->sans[i].value;
  }
  return NULL;
}

int pki_cert_verify_signature(const pki_cert_info *info, const CBS *issuer_spki,
                              pki_err *err) {
  CBS spki = *issuer_spki;
  EVP_PKEY *key = EVP_parse_public_key(&spki);
  if (key == NULL || CBS_len(&spki) != 0) {
    ERR_clear_error();
    EVP_PKEY_free(key);
    PKI_ERR(err, PKI_ERR_INVALID, "issuer public key is malformed or unsupported");
    return 0;
  }
  int ok = pki_sig_verify(&info->sig_alg, key, CBS_data(&info->tbs), CBS_len(&info->tbs),
                          CBS_data(&info->signature), CBS_len(&info->signature), err);
  EVP_PKEY_free(key);
  return ok;
}
