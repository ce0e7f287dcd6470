/* cert.h: building and signing X.509 certificates (RFC 5280).
 *
 * pki_cert_issue is the one way lib/ makes a certificate: it writes the
 * TBSCertificate in DER with CBB from a profile and a request, lints the
 * result against the profile and the issuer (lint.h), and only then signs.
 *
 * Field choices, for every certificate:
 *  - version 3, a serial from serial.h, signature algorithm by issuer key;
 *  - subject "O=<organization>, CN=<name>", UTF8String;
 *  - extensions in this order: basicConstraints (critical; CA:FALSE on
 *    leaves), keyUsage (critical), extKeyUsage (leaves), subjectKeyIdentifier
 *    (SHA-1 of the public key, RFC 5280 4.2.1.2 method 1),
 *    authorityKeyIdentifier (the issuer's), subjectAltName (leaves; critical
 *    only if the subject is empty, which pkid never makes),
 *    cRLDistributionPoints (one URI, the issuer's CRL; all but the root,
 *    when the catalogue has crl_url), authorityInfoAccess (the OCSP URL on
 *    leaves, then caIssuers, the issuer's certificate, on all but the root
 *    when the catalogue has ca_issuers_url; left out when it would be
 *    empty), nameConstraints (critical; CAs whose profile has them). */
#ifndef PKID_LIB_CERT_H
#define PKID_LIB_CERT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/err.h"
#include "lib/key.h"
#include "lib/names.h"
#include "lib/pkcs11.h"
#include "lib/profile.h"
#include "lib/serial.h"
#include "lib/sig.h"

/* A CA as a signer: its key and what certificates it signs must agree with. */
typedef struct pki_issuer {
  EVP_PKEY *key; /* owned (a reference taken at init); the public half only
                  * when |token| holds the private key */
  pki_p11_key *token; /* owned: the key is in this PKCS#11 token, or NULL */
  pki_key_type key_type;
  uint8_t *name; /* DER Name element, the issuer field of what it signs */
  size_t name_len;
  uint8_t ski[20]; /* its key identifier, the AKI of what it signs */
  size_t ski_len;
  int64_t not_before, not_after;
  int path_len; /* -1 for none */
  pki_name *permitted, *excluded; /* its nameConstraints */
  size_t num_permitted, num_excluded;
  uint8_t *cert; /* its certificate (DER); NULL for a root being made */
  size_t cert_len;
} pki_issuer;

/* pki_issuer_init loads a CA from its certificate and private key. It fails
 * if the certificate is not a CA's, cannot sign certificates, or does not
 * hold |key|'s public key. */
int pki_issuer_init(pki_issuer *out, const uint8_t *cert_der, size_t cert_len,
                    EVP_PKEY *key, pki_err *err);

/* pki_issuer_init_self prepares a root to sign its own certificate: the
 * name and validity are those the root certificate will have. */
int pki_issuer_init_self(pki_issuer *out, EVP_PKEY *key, const pki_profile *profile,
                         int64_t not_before, int64_t not_after, pki_err *err);

/* pki_issuer_set_token says |issuer|'s private key is in |token| (a
 * reference is taken): it signs through the token from then on. */
void pki_issuer_set_token(pki_issuer *issuer, pki_p11_key *token);

/* pki_issuer_sign is the one place certificates, CRLs and OCSP responses
 * are signed: through |with| (the worker pool's batched ECDSA) when not
 * NULL, else through the issuer's token when its key is in one, else with
 * its key (pki_sig_sign). The contract is pki_sig_sign's. */
int pki_issuer_sign(const pki_issuer *issuer, const pki_signer *with, uint8_t **out,
                    size_t *out_len, const uint8_t *data, size_t data_len, pki_err *err);

/* pki_issuer_cleanup frees it. Safe on a zeroed struct. */
void pki_issuer_cleanup(pki_issuer *issuer);

/* pki_key_identifier computes a SubjectKeyIdentifier: SHA-1 over the
 * subjectPublicKey BIT STRING's value (RFC 5280 4.2.1.2, method 1). */
int pki_key_identifier(uint8_t out[20], const EVP_PKEY *key, pki_err *err);

typedef struct pki_issue_request {
  const pki_profile *profile;
  pki_serial serial;
  int64_t not_before, not_after; /* see pki_validity */
  const uint8_t *spki; /* the subject's DER SubjectPublicKeyInfo */
  size_t spki_len;
  /* The SANs to include, each of which the profile must allow; NULL to
   * include all of the profile's names. Ignored for CA profiles. */
  const pki_name *names;
  size_t num_names;
} pki_issue_request;

/* pki_validity sets the validity of a certificate issued at |now|: from
 * PKI_BACKDATE_S before it (not before the issuer's notBefore), for
 * |lifetime_s| after |now|, and never past the issuer's notAfter. */
void pki_validity(int64_t *out_not_before, int64_t *out_not_after,
                  const pki_issuer *issuer, uint32_t lifetime_s, int64_t now);

/* pki_cert_build_tbs writes the TBSCertificate for |req| into a malloc'd
 * buffer. It does not lint; pki_cert_issue does. */
int pki_cert_build_tbs(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                       const pki_issue_request *req, pki_err *err);

/* pki_cert_sign wraps a TBSCertificate into a signed Certificate, signed
 * by |signer| (NULL: the issuer's key, directly). */
int pki_cert_sign(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                  const pki_signer *signer, const uint8_t *tbs, size_t tbs_len, pki_err *err);

/* pki_cert_issue builds, lints and signs; the DER certificate is malloc'd.
 * A request outside the profile fails with PKI_ERR_DENIED and the reason. */
int pki_cert_issue(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                   const pki_issue_request *req, pki_err *err);

/* pki_cert_issue_with is pki_cert_issue signing through |signer|. */
int pki_cert_issue_with(uint8_t **out, size_t *out_len, const pki_issuer *issuer,
                        const pki_signer *signer, const pki_issue_request *req, pki_err *err);

#endif /* PKID_LIB_CERT_H */
