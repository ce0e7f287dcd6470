/* request.h: the payloads of ACME requests (RFC 8555 7), parsed and
 * checked before anything acts on them.
 *
 * Each function takes a JWS payload (JSON, already verified) and fills a
 * plain struct, or fails with the ACME error type the client is told and a
 * detail (|*type| and |err|). Only what pkid acts on is kept; members a
 * later RFC adds are ignored, as RFC 8555 7.1 asks of servers, but a
 * member pkid knows must have its type. No network, no state: the fuzz
 * target (tests/fuzz/acme_request_fuzz.c) runs them on anything.
 *
 * Errors: 0 with |*type| (PKID_ACME_MALFORMED unless said otherwise) and a
 * pki_err whose message is the problem's detail. */
#ifndef PKID_SERVER_ACME_REQUEST_H
#define PKID_SERVER_ACME_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "server/acme/problem.h"

/* An order names at most this many identifiers: more than any catalogue
 * service holds. */
#define PKID_ACME_MAX_IDENTIFIERS 32
#define PKID_ACME_MAX_NAME 253 /* a DNS name's longest text (RFC 1035 2.3.4) */

/* newAccount and the account's own URL (RFC 8555 7.3). */
typedef struct pkid_acme_account_req {
  char *contact;            /* a JSON array's compact text; NULL: not given */
  int terms_agreed;         /* termsOfServiceAgreed */
  int only_existing;        /* onlyReturnExisting */
  int deactivate;           /* "status": "deactivated" (7.3.6) */
  char *eab;                /* externalAccountBinding, compact JSON; NULL: none */
} pkid_acme_account_req;

int pkid_acme_parse_account(pkid_acme_account_req *out, const uint8_t *payload, size_t len,
                            pkid_acme_error *type, pki_err *err);
void pkid_acme_account_req_cleanup(pkid_acme_account_req *r);

/* newOrder (RFC 8555 7.4): identifiers of type "dns", lowercased, without
 * duplicates; a wildcard is refused (rejectedIdentifier: it needs dns-01,
 * which pkid does not offer, RFC 8555 7.1.3), another type is
 * unsupportedIdentifier. notBefore/notAfter are refused: the catalogue
 * sets a certificate's lifetime. "replaces" (RFC 9773 5) is kept. */
typedef struct pkid_acme_order_req {
  char names[PKID_ACME_MAX_IDENTIFIERS][PKID_ACME_MAX_NAME + 1];
  size_t num_names;
  char replaces[256]; /* "" when absent */
} pkid_acme_order_req;

int pkid_acme_parse_order(pkid_acme_order_req *out, const uint8_t *payload, size_t len,
                          pkid_acme_error *type, pki_err *err);

/* finalize (RFC 8555 7.4): {"csr": base64url DER}; |*csr| is malloc'd.
 * A CSR that is not base64url is badCSR. */
int pkid_acme_parse_finalize(uint8_t **csr, size_t *csr_len, const uint8_t *payload,
                             size_t len, pkid_acme_error *type, pki_err *err);

/* revokeCert (RFC 8555 7.6): {"certificate": base64url DER, "reason":
 * CRLReason}; |*cert| is malloc'd; |*reason| 0 when absent. A reason RFC
 * 5280 5.3.1 does not define, or removeFromCRL, is badRevocationReason. */
int pkid_acme_parse_revoke(uint8_t **cert, size_t *cert_len, int *reason,
                           const uint8_t *payload, size_t len, pkid_acme_error *type,
                           pki_err *err);

/* keyChange's inner payload (RFC 8555 7.3.5): {"account": URL, "oldKey":
 * JWK}; both malloc'd (oldKey as compact JSON). */
int pkid_acme_parse_key_change(char **account, char **old_key, const uint8_t *payload,
                               size_t len, pkid_acme_error *type, pki_err *err);

/* pkid_acme_post_as_get: the payload is empty (RFC 8555 6.3). */
int pkid_acme_post_as_get(size_t payload_len);

#endif /* PKID_SERVER_ACME_REQUEST_H */
