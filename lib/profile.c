#include "lib/profile.h"

#include <stdio.h>
#include <string.h>

#include "lib/der.h"

int pki_profile_for_service(pki_profile *out, const pki_catalog *cat,
                            const pki_catalog_service *svc, pki_usage usage,
                            pki_err *err) {
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof(out->name), "%s/%s", svc->name,
           usage == PKI_USAGE_SERVER ? "server" : "client");
  out->path_len = -1;
  out->usages = (unsigned)usage;
  /* digitalSignature is all TLS 1.3 and ECDHE suites need of a leaf key. */
  out->key_usage = PKI_KU_DIGITAL_SIGNATURE;
  out->validity_s = svc->validity_s;
  out->organization = cat->organization;
  out->common_name = svc->name;
  out->ocsp_url = cat->ocsp_url;
  const pki_catalog_ca *ca = pki_catalog_find_ca(cat, svc->ca);
  if (ca != NULL) {
    out->crl_url = ca->crl_url;
    out->ca_issuers_url = ca->cert_url;
  }
  if (!pki_names_push(&out->names, &out->num_names, PKI_NAME_URI, svc->identity,
                      strlen(svc->identity), err)) {
    return 0;
  }
  for (size_t i = 0; i < svc->num_names; i++) {
    const pki_name *n = &svc->names[i];
    if (!pki_names_push(&out->names, &out->num_names, n->type, n->value,
                        strlen(n->value), err)) {
      pki_profile_cleanup(out);
      return 0;
    }
  }
  return 1;
}

int pki_profile_for_ca(pki_profile *out, const pki_catalog *cat,
                       const pki_catalog_ca *ca, pki_err *err) {
  (void)err;
  memset(out, 0, sizeof(*out));
  snprintf(out->name, sizeof(out->name), "ca/%s", ca->name);
  out->is_ca = 1;
  out->path_len = ca->path_len;
  out->key_usage = PKI_KU_KEY_CERT_SIGN | PKI_KU_CRL_SIGN;
  /* An online intermediate signs OCSP responses itself (RFC 6960 4.2.2.2),
   * which is a signature on something other than a certificate or CRL. */
  if (ca->parent != NULL) out->key_usage |= PKI_KU_DIGITAL_SIGNATURE;
  out->validity_s = ca->validity_days * 86400u;
  out->organization = cat->organization;
  out->common_name = ca->common_name;
  out->permitted = ca->permitted;
  out->num_permitted = ca->num_permitted;
  out->excluded = ca->excluded;
  out->num_excluded = ca->num_excluded;
  /* A CA below another points at its issuer's CRL, which is where it is
   * revoked (for the intermediates, the root's CRL made in a ceremony).
   * CAs carry no OCSP URL: with the root's key offline nothing could sign
   * a response for the intermediates, and pkid's responder is for leaves. */
  const pki_catalog_ca *parent = pki_catalog_find_ca(cat, ca->parent);
  if (parent != NULL) {
    out->crl_url = parent->crl_url;
    out->ca_issuers_url = parent->cert_url;
  }
  return 1;
}

void pki_profile_cleanup(pki_profile *profile) {
  if (profile == NULL) return;
  pki_names_free(profile->names, profile->num_names);
  memset(profile, 0, sizeof(*profile));
}

int pki_profile_allows_name(const pki_profile *profile, const pki_name *name) {
  for (size_t i = 0; i < profile->num_names; i++) {
    if (profile->names[i].type == name->type && pki_name_equal(&profile->names[i], name)) {
      return 1;
    }
  }
  return 0;
}
