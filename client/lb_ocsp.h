/* lb_ocsp.h: the load balancer's OCSP exchange with pkid's responder
 * (RFC 6960, with RFC 5019's profile): one SHA-1 CertID request by GET,
 * and a strict reading of the answer, which is also what haproxy staples.
 *
 * pkid's CAs sign the responses about their certificates themselves (RFC
 * 6960 4.2.2.2, no delegated responder): a response counts only when the
 * issuer's key verifies it, it is about this certificate (hash algorithm,
 * issuer name and key hashes, serial), and it is current (RFC 5019 4).
 * Functions return 1 on success and 0 with a pki_err: PKI_ERR_INVALID for
 * what does not parse or is not current, PKI_ERR_DENIED for a refusal
 * (not successful, or not signed by the issuer), PKI_ERR_UNAVAILABLE when
 * the responder cannot be reached. */
#ifndef PKID_CLIENT_LB_OCSP_H
#define PKID_CLIENT_LB_OCSP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "lib/err.h"

/* What the responder said, the response checked. */
typedef struct lb_ocsp {
  uint8_t *der; /* the OCSPResponse, malloc'd */
  size_t der_len;
  int status; /* 0 good, 1 revoked, 2 unknown (RFC 6960 4.2.1 CertStatus) */
  int64_t this_update, next_update; /* next_update 0 when absent */
} lb_ocsp;

/* lb_ocsp_cleanup frees |o|'s response; safe on a zeroed struct. */
void lb_ocsp_cleanup(lb_ocsp *o);

/* lb_ocsp_request builds an OCSPRequest (DER, OPENSSL_malloc'd) with one
 * Request for |serial| of |issuer|, a SHA-1 CertID, no extensions (RFC
 * 5019 2.1.1). */
int lb_ocsp_request(uint8_t **out, size_t *out_len, X509 *issuer, const ASN1_INTEGER *serial);

/* lb_ocsp_parse checks a DER OCSPResponse about |serial| of |issuer| at
 * |now| and fills |out| (zeroed first; a copy of |der| on success). The
 * signature is checked last, so every part of the input is read whatever
 * key signed it (tests/fuzz/lb_ocsp_fuzz.c). */
int lb_ocsp_parse(lb_ocsp *out, const uint8_t *der, size_t len, X509 *issuer,
                  const ASN1_INTEGER *serial, int64_t now, pki_err *err);

/* lb_ocsp_get asks the responder at |base_url| ("http://host:port/path/")
 * about |cert|, issued by |issuer|: GET {url}/{url-encoded base64 of the
 * request} (RFC 6960 Appendix A.1), bounded by |timeout_ms|. */
int lb_ocsp_get(lb_ocsp *out, const char *base_url, X509 *cert, X509 *issuer,
                uint64_t timeout_ms, pki_err *err);

#endif /* PKID_CLIENT_LB_OCSP_H */
