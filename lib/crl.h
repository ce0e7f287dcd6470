/* crl.h: the CRL codec: certificate revocation lists in, signed lists out
 * (RFC 5280 section 5). No scheduling, HTTP or files here: the server's
 * pipeline decides when to build one, and lib/ only writes and reads them.
 *
 * What pkid writes (pki_crl_build), for a CA and one cRLNumber:
 *  - CertificateList v2 (5.1.2.1), signed with the CA's key, signature
 *    algorithm by key type (lib/sig.h); issuer is the CA's subject Name,
 *    byte for byte, so that relying parties match it to certificates.
 *  - thisUpdate and nextUpdate (5.1.2.4, 5.1.2.5), UTCTime through 2049 and
 *    GeneralizedTime from 2050 (pki_der_add_time); nextUpdate always.
 *  - revokedCertificates, left out when there is no entry (5.1.2.6: an empty
 *    SEQUENCE is not allowed). Entries in the order given. Each entry's
 *    reasonCode (5.3.1, non-critical) unless the reason is unspecified (0),
 *    which RFC 5280 asks to leave out; its invalidityDate (5.3.2,
 *    non-critical, GeneralizedTime) when the caller gave one.
 *  - crlExtensions: authorityKeyIdentifier (5.2.1, the CA's key id),
 *    cRLNumber (5.2.3, non-critical), and then either freshestCRL (5.2.6,
 *    non-critical: where the delta CRL is) on a complete CRL, or
 *    deltaCRLIndicator (5.2.4, critical, the BaseCRLNumber) on a delta.
 *  - No issuingDistributionPoint: each CRL covers every certificate of
 *    its CA for every reason, as does the CA's complete CRL, so the scope a
 *    delta shares with its base is the whole CA (5.2.4).
 *
 * Reading (pki_crl_parse) is strict DER and accepts what RFC 5280 allows
 * of any issuer, not only what pkid writes: v1 or v2, any entry order,
 * either time form; unknown non-critical extensions are skipped, an
 * unknown critical one (list or entry) is refused with PKI_ERR_UNSUPPORTED
 * (5.2, 5.3: a relying party must not use such a CRL). The signature is
 * checked apart (pki_crl_verify).
 *
 * Buffers lib/ hands out are freed with free(). */
#ifndef PKID_LIB_CRL_H
#define PKID_LIB_CRL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/cert.h"
#include "lib/der.h"
#include "lib/err.h"
#include "lib/serial.h"
#include "lib/sig.h"

/* CRL and CRL entry extensions (RFC 5280 5.2, 5.3). cRLDistributionPoints,
 * a certificate extension, is in der.h. */
PKI_DER_OID(PKI_OID_CRL_NUMBER, 0x55, 0x1d, 0x14);
PKI_DER_OID(PKI_OID_CRL_REASON, 0x55, 0x1d, 0x15);
PKI_DER_OID(PKI_OID_INVALIDITY_DATE, 0x55, 0x1d, 0x18);
PKI_DER_OID(PKI_OID_DELTA_CRL_INDICATOR, 0x55, 0x1d, 0x1b);
PKI_DER_OID(PKI_OID_ISSUING_DISTRIBUTION_POINT, 0x55, 0x1d, 0x1c);
PKI_DER_OID(PKI_OID_FRESHEST_CRL, 0x55, 0x1d, 0x2e);

/* CRLReason (RFC 5280 5.3.1). 7 is not used. */
typedef enum pki_crl_reason {
  PKI_CRL_REASON_UNSPECIFIED = 0,
  PKI_CRL_REASON_KEY_COMPROMISE = 1,
  PKI_CRL_REASON_CA_COMPROMISE = 2,
  PKI_CRL_REASON_AFFILIATION_CHANGED = 3,
  PKI_CRL_REASON_SUPERSEDED = 4,
  PKI_CRL_REASON_CESSATION_OF_OPERATION = 5,
  PKI_CRL_REASON_CERTIFICATE_HOLD = 6,
  PKI_CRL_REASON_REMOVE_FROM_CRL = 8,
  PKI_CRL_REASON_PRIVILEGE_WITHDRAWN = 9,
  PKI_CRL_REASON_AA_COMPROMISE = 10,
} pki_crl_reason;

/* pki_crl_reason_valid reports whether |reason| is a CRLReason (0 to 10,
 * but 7). */
int pki_crl_reason_valid(int reason);

/* pki_crl_reason_name is RFC 5280's name ("keyCompromise"), or NULL. */
const char *pki_crl_reason_name(int reason);

/* One revoked certificate. Times are seconds since the epoch, UTC. */
typedef struct pki_crl_entry {
  pki_serial serial;
  int64_t revocation_date;
  int reason;              /* CRLReason; 0 or -1: no reasonCode */
  int64_t invalidity_date; /* 0: no invalidityDate */
} pki_crl_entry;

/* What a CRL says of itself. */
typedef struct pki_crl_params {
  uint64_t number; /* cRLNumber; monotonic per CA, never reused */
  int64_t this_update, next_update;
  /* Delta CRL: |is_delta| and the cRLNumber of the complete CRL it is
   * relative to (the BaseCRLNumber of deltaCRLIndicator). */
  int is_delta;
  uint64_t base_number;
  /* Complete CRL: the delta CRL's URL for freshestCRL; NULL: none. */
  const char *freshest_url;
} pki_crl_params;

/* pki_crl_build writes and signs the CRL of |ca| holding |num| entries, in
 * that order, into a malloc'd DER buffer. The signature is made through
 * |with| (NULL: the CA's token or key, pki_issuer_sign). Entries are
 * checked (a serial of 1 to 20 octets, a valid reason or -1), not sorted
 * or deduplicated: that is the caller's. Built for size: one pass and one
 * buffer of about 50 octets per entry, so a million entries take a
 * fraction of a second (bench/crl_speed). */
int pki_crl_build(uint8_t **out, size_t *out_len, const pki_issuer *ca, const pki_signer *with,
                  const pki_crl_params *params, const pki_crl_entry *entries, size_t num,
                  pki_err *err);

/* A parsed CRL. Pointers into the DER (CBS) are valid while it is. */
typedef struct pki_crl {
  int version;                  /* 1 or 2 (the v2 INTEGER 1 read as 2) */
  CBS tbs;                      /* the TBSCertList element, signed */
  CBS sig_alg;                  /* the outer signatureAlgorithm element */
  CBS signature;                /* the signature BIT STRING's value */
  CBS issuer;                   /* the issuer Name element */
  int64_t this_update;
  int64_t next_update;          /* 0 when absent */
  int has_number;
  uint8_t number[20];           /* cRLNumber, big-endian, at most 20 octets (5.2.3) */
  size_t number_len;
  uint64_t number_u64;          /* the same when it fits, else UINT64_MAX */
  int is_delta;
  uint8_t base_number[20];      /* deltaCRLIndicator's BaseCRLNumber */
  size_t base_number_len;
  uint64_t base_number_u64;
  uint8_t aki[64];              /* authorityKeyIdentifier keyIdentifier */
  size_t aki_len;               /* 0 when absent */
  char freshest_url[512];       /* first URI of freshestCRL; "" when absent */
  pki_crl_entry *entries;       /* malloc'd */
  size_t num_entries;
} pki_crl;

/* pki_crl_parse reads a DER CertificateList, strictly (see the top). */
int pki_crl_parse(pki_crl *out, const uint8_t *der, size_t len, pki_err *err);

/* pki_crl_verify checks |crl|'s signature under |issuer_key|: PKI_ERR_AUTH
 * when it does not verify. */
int pki_crl_verify(const pki_crl *crl, EVP_PKEY *issuer_key, pki_err *err);

/* pki_crl_cleanup frees the entries. Safe on a zeroed struct. */
void pki_crl_cleanup(pki_crl *crl);

/* pki_crl_to_pem encodes a DER CRL as PEM ("X509 CRL", RFC 7468 5) into a
 * malloc'd, NUL-terminated buffer. */
int pki_crl_to_pem(char **out, size_t *out_len, const uint8_t *der, size_t len, pki_err *err);

#endif /* PKID_LIB_CRL_H */
