/* cert_info.h: reading an X.509 certificate (RFC 5280) into its fields.
 *
 * The parser is strict DER through CBS: it accepts what pkid and other
 * careful CAs issue and refuses the rest with a reason. It is used to lint
 * what pkid is about to sign, to load CA certificates, to read a caller's
 * client certificate and for `pkictl inspect`.
 *
 * The CBS fields point into the buffer given to the parser, which must
 * outlive the pki_cert_info; names are copied and freed by
 * pki_cert_info_cleanup. */
#ifndef PKID_LIB_CERT_INFO_H
#define PKID_LIB_CERT_INFO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>

#include "lib/err.h"
#include "lib/names.h"
#include "lib/usage.h"

typedef struct pki_cert_info {
  CBS tbs;            /* the TBSCertificate element, as signed */
  CBS serial;         /* INTEGER contents */
  CBS tbs_sig_alg;    /* AlgorithmIdentifier element inside the TBS */
  CBS issuer;         /* Name element */
  CBS subject;        /* Name element */
  CBS spki;           /* SubjectPublicKeyInfo element */
  CBS subject_public_key; /* the key's BIT STRING contents, unused-bits octet excluded */
  int64_t not_before, not_after;
  /* For a whole Certificate; empty for a bare TBSCertificate. */
  CBS sig_alg;   /* outer AlgorithmIdentifier element */
  CBS signature; /* signature octets */

  int has_basic_constraints, basic_constraints_critical;
  int is_ca;
  int path_len; /* -1 when absent */
  int has_key_usage, key_usage_critical;
  unsigned key_usage; /* PKI_KU_* bits */
  int has_ext_key_usage;
  unsigned ext_key_usage; /* PKI_USAGE_SERVER | PKI_USAGE_CLIENT */
  int ext_key_usage_other; /* other purposes were listed */
  int has_ski, has_aki;
  CBS ski, aki; /* key identifiers */
  int has_san, san_critical;
  pki_name *sans;
  size_t num_sans;
  int has_name_constraints;
  pki_name *permitted, *excluded;
  size_t num_permitted, num_excluded;
  /* authorityInfoAccess (RFC 5280 4.2.2.1): the first URI of each method
   * pkid knows, NULL when absent; |aia_other| when it holds anything else
   * (another method, a second location, a caIssuers that is no URI). */
  int has_aia;
  char *ocsp_url;       /* id-ad-ocsp */
  char *ca_issuers_url; /* id-ad-caIssuers: the issuer's certificate */
  int aia_other;
  /* cRLDistributionPoints (4.2.1.13): the first URI of the first point's
   * fullName, NULL when absent; |crl_dp_other| when the extension says more
   * than that one URI (more points or names, reasons, a cRLIssuer, a name
   * relative to the issuer). */
  int has_crl_dp, crl_dp_critical;
  char *crl_url;
  int crl_dp_other;
  unsigned num_unknown_extensions; /* non-critical ones pkid does not know */
} pki_cert_info;

/* pki_cert_info_parse reads a DER Certificate; trailing data is refused.
 * Unknown critical extensions fail with PKI_ERR_UNSUPPORTED. */
int pki_cert_info_parse(pki_cert_info *out, const uint8_t *der, size_t len,
                        pki_err *err);

/* pki_cert_info_parse_tbs reads a bare DER TBSCertificate. */
int pki_cert_info_parse_tbs(pki_cert_info *out, const uint8_t *der, size_t len,
                            pki_err *err);

/* pki_cert_info_cleanup frees what the parse allocated; the struct may then
 * be parsed into again. Safe on a zeroed struct. */
void pki_cert_info_cleanup(pki_cert_info *info);

/* pki_cert_info_identity returns the first URI SAN (the caller's identity
 * in pkid's certificates), or NULL. */
const char *pki_cert_info_identity(const pki_cert_info *info);

/* pki_cert_verify_signature checks that |info| (a whole Certificate) is
 * signed by the key in the SubjectPublicKeyInfo element |issuer_spki|. */
int pki_cert_verify_signature(const pki_cert_info *info, const CBS *issuer_spki,
                              pki_err *err);

#endif /* PKID_LIB_CERT_INFO_H */
