/* print.h: how pkictl's summaries (inspect, crl inspect) print octets,
 * times and names, so that the two say them the same way. */
#ifndef PKID_CLIENT_PRINT_H
#define PKID_CLIENT_PRINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/bytestring.h>

/* print_hex prints |len| octets in lower-case hex, |sep| between them. */
void print_hex(FILE *out, const uint8_t *p, size_t len, const char *sep);

/* print_time prints Unix time |t| as 2026-12-01T12:00:00Z ("-" if out of
 * range). */
void print_time(FILE *out, int64_t t);

/* print_name prints a DER Name as "O=..., CN=...", other attributes by
 * dotted OID; octets outside printable ASCII print as '?', since a name
 * is whatever its issuer wrote. */
void print_name(FILE *out, const CBS *name_el);

/* print_sha256_line prints the summary line of |der|'s SHA-256
 * fingerprint ("  SHA-256:  ab:cd:..."). */
void print_sha256_line(FILE *out, const uint8_t *der, size_t len);

#endif /* PKID_CLIENT_PRINT_H */
