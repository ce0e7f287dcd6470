/* profile.h: what one kind of certificate may contain.
 *
 * A profile is derived from the catalogue: a service's server or client
 * certificate, or a CA. Building a certificate takes its fields from the
 * profile, and lint checks what was built against the same profile, so a
 * certificate outside its profile is never signed. */
#ifndef PKID_LIB_PROFILE_H
#define PKID_LIB_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/names.h"
#include "lib/usage.h"

/* Certificates start this long before issuance, so that peers whose clocks
 * are a little behind accept them at once. */
#define PKI_BACKDATE_S 300

typedef struct pki_profile {
  char name[160]; /* "vault/server", "ca/agents-ca": for messages */
  int is_ca;
  int path_len;        /* CA: pathLenConstraint, -1 for none */
  unsigned usages;     /* leaf: PKI_USAGE_* for extKeyUsage */
  unsigned key_usage;  /* PKI_KU_* */
  uint32_t validity_s; /* longest lifetime, backdating aside */
  const char *organization; /* subject O */
  const char *common_name;  /* subject CN */
  pki_name *names;          /* leaf: the SANs it may hold (owned) */
  size_t num_names;
  const pki_name *permitted; /* CA: nameConstraints (the catalogue's) */
  size_t num_permitted;
  const pki_name *excluded;
  size_t num_excluded;
  const char *ocsp_url; /* leaf: AIA OCSP URL; NULL for CAs */
  /* Where the issuing CA publishes its CRL (cRLDistributionPoints, RFC 5280
   * 4.2.1.13) and its certificate (AIA caIssuers, 4.2.2.1): leaves and CAs
   * below another CA; NULL for the root, and when the catalogue sets no
   * base. */
  const char *crl_url;
  const char *ca_issuers_url;
} pki_profile;

/* pki_profile_for_service fills |out| for |svc|'s certificate of |usage|:
 * names are the service's identity URI first, then its other names. The
 * strings point into |cat|, which must outlive |out|. */
int pki_profile_for_service(pki_profile *out, const pki_catalog *cat,
                            const pki_catalog_service *svc, pki_usage usage,
                            pki_err *err);

/* pki_profile_for_ca fills |out| for the CA certificate of |ca|. */
int pki_profile_for_ca(pki_profile *out, const pki_catalog *cat,
                       const pki_catalog_ca *ca, pki_err *err);

/* pki_profile_cleanup frees what the profile owns. Safe on a zeroed one. */
void pki_profile_cleanup(pki_profile *profile);

/* pki_profile_allows_name reports whether |name| is one the profile lists. */
int pki_profile_allows_name(const pki_profile *profile, const pki_name *name);

#endif /* PKID_LIB_PROFILE_H */
