/* lint.h: the check before signing.
 *
 * pki_lint_tbs parses a TBSCertificate as a relying party would (with
 * cert_info.h, not with the builder's own state) and refuses it unless
 * every field is what the profile and the issuer allow: RFC 5280 rules
 * (version, serial, validity order, extensions present and critical where
 * required, key identifiers), the profile (CA or leaf, key usage, extended
 * key usage, names, lifetime, the OCSP, CRL and caIssuers URLs), and the issuer (issuer name,
 * validity inside the issuer's, path length, name constraints). The first
 * problem found is the error: PKI_ERR_DENIED with the reason. */
#ifndef PKID_LIB_LINT_H
#define PKID_LIB_LINT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/cert.h"
#include "lib/err.h"
#include "lib/profile.h"

int pki_lint_tbs(const uint8_t *tbs, size_t tbs_len, const pki_profile *profile,
                 const pki_issuer *issuer, pki_err *err);

#endif /* PKID_LIB_LINT_H */
