/* validate.h: checking ACME challenges by connecting to the name's server
 * (RFC 8555 8), as the CA's validator does.
 *
 * http-01 (RFC 8555 8.3): GET http://NAME/.well-known/acme-challenge/TOKEN
 * (Host: NAME), connecting to the address, must answer 200 with the key
 * authorization as its body, whitespace at the end ignored. Redirects are
 * not followed; the body may be at most 8 KiB.
 *
 * tls-alpn-01 (RFC 8737 3): a TLS connection to the address, offering
 * only the ALPN protocol "acme-tls/1" and the name in SNI, must negotiate
 * that protocol (TLS 1.2 or later) and present a certificate whose
 * subjectAltName holds exactly that dNSName and nothing else, and whose
 * critical acmeIdentifier extension (id-pe-acmeIdentifier,
 * 1.3.6.1.5.5.7.1.31) holds the SHA-256 of the key authorization. The
 * certificate is not otherwise validated (it is self-signed, on purpose).
 *
 * Blocking, and bounded: the connect and each read or write of the
 * handshake wait at most |timeout_ms|. Run it off pkid's loop. The address
 * is "HOST:PORT" with HOST an IP address: the caller has resolved the name
 * (the system resolver, or test mode's static map and port).
 *
 * Errors, and the ACME types they become (RFC 8555 6.7):
 *  - PKI_ERR_UNAVAILABLE: no connection, or a timeout (connection);
 *  - PKI_ERR_INVALID: the TLS handshake failed or did not settle on
 *    acme-tls/1 (tls);
 *  - PKI_ERR_AUTH: the answer is not the one the challenge asks for: another
 *    status or body, a response that does not parse, a certificate that is
 *    not the challenge's (incorrectResponse). */
#ifndef PKID_SERVER_ACME_VALIDATE_H
#define PKID_SERVER_ACME_VALIDATE_H

#include "lib/err.h"

int pkid_acme_http01(const char *name, const char *address, const char *token,
                     const char *key_authorization, unsigned timeout_ms, pki_err *err);

int pkid_acme_tls_alpn01(const char *name, const char *address, const char *key_authorization,
                         unsigned timeout_ms, pki_err *err);

#endif /* PKID_SERVER_ACME_VALIDATE_H */
