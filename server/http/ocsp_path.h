/* ocsp_path.h: reading an OCSP request out of a GET request-target
 * (RFC 6960 Appendix A.1: GET {url}/{url-encoding of base-64 encoding of
 * the DER encoding of the OCSPRequest}).
 *
 * Pure functions, no I/O, fuzzed by tests/fuzz/ocsp_http_fuzz.c. What is
 * tolerated, because clients in the field do it: base64 '+', '/' and '='
 * sent as is or percent-encoded; the URL-safe alphabet ('-', '_'); missing
 * padding; a space where a '+' was (a '+' decoded as a form field); a
 * query string, which is ignored. */
#ifndef PKID_SERVER_HTTP_OCSP_PATH_H
#define PKID_SERVER_HTTP_OCSP_PATH_H

#include <stddef.h>
#include <stdint.h>

/* pkid_percent_decode decodes %XX escapes of |in| into |out| (at least
 * |len| bytes; |out| may be |in|). 0 for a '%' not followed by two hex
 * digits. */
int pkid_percent_decode(char *out, size_t *out_len, const char *in, size_t len);

/* pkid_ocsp_base64_decode decodes standard or URL-safe base64, padded or
 * not, with a space for '+', into |out| (|out_cap| bytes), with lib/'s
 * strict codec. 0 for any other character, misplaced padding, a length
 * that cannot be base64, non-canonical final bits, or too little room. */
int pkid_ocsp_base64_decode(uint8_t *out, size_t out_cap, size_t *out_len, const char *in,
                            size_t len);

/* pkid_ocsp_get_request extracts the DER request from the request-target
 * |path| of a GET sent to the responder URL whose path is |prefix| (which
 * starts and ends with '/', "/" at least): the rest of the path, without
 * the query string, percent-decoded then base64-decoded into |out|. 0 if
 * |path| is not under |prefix| or the encoding is bad. */
int pkid_ocsp_get_request(uint8_t *out, size_t out_cap, size_t *out_len, const char *path,
                          size_t path_len, const char *prefix);

#endif /* PKID_SERVER_HTTP_OCSP_PATH_H */
