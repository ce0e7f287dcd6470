#include "lib/lint.h"

#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/sha.h>

#include "lib/cert_info.h"
#include "lib/der.h"
#include "lib/key.h"
#include "lib/serial.h"

#define DENY(...)                             \
  do {                                        \
    PKI_ERR(err, PKI_ERR_DENIED, __VA_ARGS__); \
    goto out;                                 \
  } while (0)

static int check_names(const pki_cert_info *c, const pki_profile *profile,
                       const pki_issuer *issuer, pki_err *err) {
  if (!c->has_san || c->num_sans == 0) {
    PKI_ERR(err, PKI_ERR_DENIED, "a leaf certificate needs subjectAltName");
    return 0;
  }
  for (size_t i = 0; i < c->num_sans; i++) {
    const pki_name *n = &c->sans[i];
    if (!pki_name_check(n->type, n->value, err)) return 0;
    if (!pki_profile_allows_name(profile, n)) {
      PKI_ERR(err, PKI_ERR_DENIED, "%s name '%s' is not in profile %s",
              pki_name_type_label(n->type), n->value, profile->name);
      return 0;
    }
    /* The issuer's name constraints (RFC 5280 4.2.1.10), by the same rule
     * the catalogue is checked with when it is loaded. */
    size_t ex = 0;
    switch (pki_name_constraints_check(n, issuer->permitted, issuer->num_permitted,
                                       issuer->excluded, issuer->num_excluded, &ex)) {
      case PKI_NAME_ALLOWED: break;
      case PKI_NAME_NOT_PERMITTED:
        PKI_ERR(err, PKI_ERR_DENIED, "%s name '%s' is outside the issuer's name constraints",
                pki_name_type_label(n->type), n->value);
        return 0;
      case PKI_NAME_EXCLUDED:
        PKI_ERR(err, PKI_ERR_DENIED,
                "%s name '%s' is outside the issuer's name constraints: it falls in excluded "
                "subtree '%s'",
                pki_name_type_label(n->type), n->value, issuer->excluded[ex].value);
        return 0;
    }
    for (size_t j = 0; j < i; j++) {
      if (c->sans[j].type == n->type && pki_name_equal(&c->sans[j], n)) {
        PKI_ERR(err, PKI_ERR_DENIED, "%s name '%s' appears twice",
                pki_name_type_label(n->type), n->value);
        return 0;
      }
    }
  }
  return 1;
}

/* url_matches: the certificate's URL is the profile's, or both are absent. */
static int url_matches(int has_ext, const char *got, const char *want) {
  if (want == NULL) return got == NULL;
  return has_ext && got != NULL && strcmp(got, want) == 0;
}

int pki_lint_tbs(const uint8_t *tbs, size_t tbs_len, const pki_profile *profile,
                 const pki_issuer *issuer, pki_err *err) {
  pki_cert_info c;
  int ok = 0;
  if (!pki_cert_info_parse_tbs(&c, tbs, tbs_len, err)) {
    pki_err_prefix(err, "lint: ");
    return 0;
  }

  /* Serial (RFC 5280 4.1.2.2): positive, at most 20 octets as encoded, a
   * leading zero octet included (as the CA/Browser Forum reads it). */
  if (CBS_len(&c.serial) > PKI_SERIAL_MAX) DENY("serial is longer than 20 octets");
  if (!CBS_is_unsigned_asn1_integer(&c.serial) ||
      (CBS_len(&c.serial) == 1 && CBS_data(&c.serial)[0] == 0)) {
    DENY("serial is not a positive integer");
  }

  /* Issuer and validity. */
  if (!CBS_mem_equal(&c.issuer, issuer->name, issuer->name_len)) {
    DENY("issuer name differs from the CA's subject");
  }
  if (c.not_after <= c.not_before) DENY("notAfter is not after notBefore");
  if (c.not_after - c.not_before > (int64_t)profile->validity_s + PKI_BACKDATE_S) {
    DENY("lifetime of %lld s exceeds profile %s's %u s",
         (long long)(c.not_after - c.not_before), profile->name, profile->validity_s);
  }
  if (c.not_before < issuer->not_before || c.not_after > issuer->not_after) {
    DENY("validity is outside the issuer's");
  }

  /* Subject: pkid always names the subject, so the SAN need not be critical. */
  char cn[256];
  if (!pki_der_name_get_cn(&c.subject, cn, sizeof(cn)) ||
      strcmp(cn, profile->common_name) != 0) {
    DENY("subject CN is not '%s'", profile->common_name);
  }

  /* The subject key: a type pkid accepts, and a CA key that can sign. */
  CBS spki = c.spki;
  EVP_PKEY *key = EVP_parse_public_key(&spki);
  if (key == NULL) {
    ERR_clear_error();
    DENY("subject public key is malformed or unsupported");
  }
  pki_key_type type;
  unsigned bits;
  int key_ok = pki_key_describe(&type, &bits, key, err);
  EVP_PKEY_free(key);
  if (!key_ok) goto out;
  if (profile->is_ca && !pki_key_type_can_sign_certs(type)) {
    DENY("a %s key cannot be a CA key", pki_key_type_name(type, bits));
  }

  /* Extensions every certificate needs. */
  if (!c.has_basic_constraints || !c.basic_constraints_critical) {
    DENY("basicConstraints must be present and critical");
  }
  if (c.is_ca != profile->is_ca) {
    DENY("basicConstraints cA is %s, profile %s wants %s", c.is_ca ? "TRUE" : "FALSE",
         profile->name, profile->is_ca ? "TRUE" : "FALSE");
  }
  if (!c.has_key_usage || !c.key_usage_critical) DENY("keyUsage must be present and critical");
  if (c.key_usage != profile->key_usage) DENY("keyUsage differs from profile %s", profile->name);
  uint8_t ski[20];
  SHA1(CBS_data(&c.subject_public_key), CBS_len(&c.subject_public_key), ski);
  if (!c.has_ski || !CBS_mem_equal(&c.ski, ski, sizeof(ski))) {
    DENY("subjectKeyIdentifier is missing or does not match the key");
  }
  if (!c.has_aki || !CBS_mem_equal(&c.aki, issuer->ski, issuer->ski_len)) {
    DENY("authorityKeyIdentifier is missing or is not the issuer's key identifier");
  }
  if (c.num_unknown_extensions > 0) DENY("certificate has extensions outside the profile");
  /* A CA below a path length limit must itself be shorter (4.2.1.9). */
  if (profile->is_ca && issuer->path_len >= 0 && issuer->cert != NULL) {
    if (issuer->path_len == 0) DENY("the issuer's path length forbids a CA below it");
    if (c.path_len < 0 || c.path_len >= issuer->path_len) {
      DENY("path length must be below the issuer's %d", issuer->path_len);
    }
  }

  /* Where the issuer publishes its CRL and certificate: exactly the
   * profile's, or nothing when the profile has none (RFC 5280 4.2.1.13,
   * 4.2.2.1). */
  if (profile->crl_url == NULL) {
    if (c.has_crl_dp) DENY("profile %s has no cRLDistributionPoints", profile->name);
  } else if (!url_matches(c.has_crl_dp, c.crl_url, profile->crl_url) || c.crl_dp_other ||
             c.crl_dp_critical) {
    DENY("cRLDistributionPoints must be one non-critical point, fullName '%s', no reasons "
         "or cRLIssuer",
         profile->crl_url);
  }
  if (c.has_aia != (profile->ocsp_url != NULL || profile->ca_issuers_url != NULL) ||
      c.aia_other) {
    DENY("authorityInfoAccess differs from profile %s", profile->name);
  }
  if (!url_matches(c.has_aia, c.ocsp_url, profile->ocsp_url)) {
    DENY("OCSP URL is not '%s'", profile->ocsp_url != NULL ? profile->ocsp_url : "(none)");
  }
  if (!url_matches(c.has_aia, c.ca_issuers_url, profile->ca_issuers_url)) {
    DENY("caIssuers URL is not '%s'",
         profile->ca_issuers_url != NULL ? profile->ca_issuers_url : "(none)");
  }

  if (profile->is_ca) {
    if (c.path_len != profile->path_len) DENY("path length differs from profile");
    if (c.has_ext_key_usage || c.has_san || c.ocsp_url != NULL) {
      DENY("CA certificates here carry no extKeyUsage, subjectAltName or OCSP URL");
    }
    if ((size_t)c.num_permitted != profile->num_permitted ||
        (size_t)c.num_excluded != profile->num_excluded ||
        (c.has_name_constraints && c.num_permitted + c.num_excluded == 0)) {
      DENY("nameConstraints differ from profile %s", profile->name);
    }
  } else {
    if (!c.has_ext_key_usage || c.ext_key_usage_other ||
        c.ext_key_usage != profile->usages) {
      DENY("extKeyUsage differs from profile %s", profile->name);
    }
    if (c.has_name_constraints) DENY("a leaf cannot carry nameConstraints");
    if (!check_names(&c, profile, issuer, err)) goto out;
  }
  ok = 1;
out:
  pki_cert_info_cleanup(&c);
  return ok;
}
