/* problem.h: ACME's errors as RFC 7807 problem documents (RFC 8555 6.7).
 *
 * Every error pkid's ACME server answers is one of these types, in the
 * namespace "urn:ietf:params:acme:error:", sent as
 * "Content-Type: application/problem+json" with the HTTP status below and
 * a detail for a human. The status follows RFC 8555 where it says one
 * (badNonce 400, 6.5; rateLimited 429 with Retry-After, 6.6) and otherwise
 * what Let's Encrypt's Boulder answers (403 for unauthorized and
 * orderNotReady, 500 for serverInternal, 400 for the rest), so that
 * clients that branch on the status behave. */
#ifndef PKID_SERVER_ACME_PROBLEM_H
#define PKID_SERVER_ACME_PROBLEM_H

#include <stddef.h>

typedef enum pkid_acme_error {
  PKID_ACME_ACCOUNT_DOES_NOT_EXIST,
  PKID_ACME_ALREADY_REVOKED,
  PKID_ACME_BAD_CSR,
  PKID_ACME_BAD_NONCE,
  PKID_ACME_BAD_PUBLIC_KEY,
  PKID_ACME_BAD_REVOCATION_REASON,
  PKID_ACME_BAD_SIGNATURE_ALGORITHM,
  PKID_ACME_CONNECTION,
  PKID_ACME_EXTERNAL_ACCOUNT_REQUIRED,
  PKID_ACME_INCORRECT_RESPONSE,
  PKID_ACME_MALFORMED,
  PKID_ACME_ORDER_NOT_READY,
  PKID_ACME_RATE_LIMITED,
  PKID_ACME_REJECTED_IDENTIFIER,
  PKID_ACME_SERVER_INTERNAL,
  PKID_ACME_TLS,
  PKID_ACME_UNAUTHORIZED,
  PKID_ACME_UNSUPPORTED_IDENTIFIER,
  PKID_ACME_NUM_ERRORS,
} pkid_acme_error;

/* pkid_acme_error_type is the type's URN; pkid_acme_error_status its
 * HTTP status. */
const char *pkid_acme_error_type(pkid_acme_error e);
int pkid_acme_error_status(pkid_acme_error e);

/* pkid_acme_problem writes {"type", "detail", "status"} as JSON into a
 * malloc'd NUL-terminated buffer (|*len| excludes the NUL); |detail| is
 * escaped as JSON requires (RFC 8259 7), its octets outside ASCII as '?'
 * when it is not UTF-8. NULL when memory runs out. */
char *pkid_acme_problem(pkid_acme_error e, const char *detail, size_t *len);

#endif /* PKID_SERVER_ACME_PROBLEM_H */
