/* ocsp_http.h: the OCSP responder: lib/ocsp's codec over HTTP/1.1 (RFC
 * 6960 Appendix A, RFC 5019), on its own listener, answering from the
 * status index and the responses stored in it.
 *
 * GET {prefix}{url-encoded base64 of the DER request} and POST {prefix}
 * with Content-Type application/ocsp-request. Every answer is HTTP 200
 * with Content-Type application/ocsp-response: OCSP carries its errors in
 * the response status (malformedRequest, unauthorized, tryLater). Other
 * HTTP statuses are for HTTP problems: 415 for a POST of another type,
 * and http.h's limits.
 *
 * How a request is answered (one CertID, the RFC 5019 case):
 *  - The CertID names one of the loaded CAs (pki_ocsp_cert_id_matches on
 *    each CA's hashes), else unauthorized.
 *  - Its serial is in the status index under that CA: the stored response
 *    for the CertID's hash algorithm is served from memory if it is fresh
 *    (more than PKID_OCSP_MIN_REMAINING_S before its nextUpdate). If there
 *    is none (a SHA-256 CertID the first time, or after a restart) or it is
 *    stale, one is signed now with the CA's signer, stored and served.
 *    Such signing is bounded by the number of certificates, not by what
 *    clients send, so it is not rate limited.
 *  - Unknown serial of one of our CAs: a signed "unknown", valid for
 *    PKID_OCSP_UNKNOWN_VALIDITY_S, not stored (anyone can make up serials,
 *    so storing them would let anyone fill memory). Signing it spends a
 *    token of a per-process bucket (PKID_OCSP_ON_DEMAND_RATE per second):
 *    when empty, the answer is the unsigned tryLater.
 *  - Several CertIDs (up to PKI_OCSP_MAX_REQUESTS, all of one CA, else
 *    unauthorized): one response with all of them, signed now, echoing
 *    each CertID, spending a token.
 *
 * Refresh policy: a response is valid for PKID_OCSP_VALIDITY_S (24 h)
 * from its thisUpdate (the time it was signed, also producedAt). A timer
 * re-signs stored responses once less than half of that remains, and signs
 * the SHA-1 response of any certificate that has none (after a restart
 * the index comes back from the journal without responses), in bounded
 * batches: every PKID_OCSP_REFRESH_TICK_MS it examines at most
 * PKID_OCSP_REFRESH_SCAN records and signs at most PKID_OCSP_REFRESH_BATCH,
 * so the loop is never held for more than a few milliseconds. Records past
 * their notAfter are not refreshed (asked about, they are signed on
 * demand). Revoked certificates keep being answered "revoked".
 *
 * Cache headers (RFC 5019 6.2) on successful responses: Last-Modified is
 * thisUpdate, Expires is nextUpdate, Cache-Control: max-age is the
 * seconds left to nextUpdate, with public, no-transform, must-revalidate;
 * ETag is the hex of the last 16 octets of the response, which lie inside
 * its signature: a response signed again gets a new ETag, the same stored
 * response always the same one, and serving it costs no hashing.
 *
 * Loop thread only. Metrics: pkid_m.ocsp_result[], ocsp_response_seconds,
 * ocsp_signed_on_demand, ocsp_refreshed (see metrics.h; nothing is counted
 * if pkid_metrics_init was not called). */
#ifndef PKID_SERVER_HTTP_OCSP_HTTP_H
#define PKID_SERVER_HTTP_OCSP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "lib/err.h"
#include "server/ca/ca.h"
#include "server/http/http.h"
#include "server/store/status.h"

/* PKID_OCSP_VALIDITY_S, how long a response is valid, is the status
 * index's (store/status.h). */
#define PKID_OCSP_REFRESH_BEFORE_S (PKID_OCSP_VALIDITY_S / 2)
#define PKID_OCSP_MIN_REMAINING_S 300
#define PKID_OCSP_UNKNOWN_VALIDITY_S 3600
#define PKID_OCSP_ON_DEMAND_RATE 1000
#define PKID_OCSP_REFRESH_TICK_MS 200
#define PKID_OCSP_REFRESH_SCAN 8192
#define PKID_OCSP_REFRESH_BATCH 64

typedef struct pkid_ocsp_http pkid_ocsp_http;

/* pkid_ocsp_http_start serves OCSP for |cas| from |status| (both must
 * outlive the responder) on |listen|: "HOST:PORT", or "HOST:PORT/PATH/"
 * when the responder URL in the certificates has a path (then GET requests
 * are read after "/PATH/"). Port 0 lets the kernel choose; the bound
 * address is logged as {"event":"listening","ocsp":"HOST:PORT"}. */
pkid_ocsp_http *pkid_ocsp_http_start(uv_loop_t *loop, const char *listen, const pkid_cas *cas,
                                     pkid_status *status, pki_err *err);

/* pkid_ocsp_http_start_with is pkid_ocsp_http_start with HTTP limits
 * (NULL: http.h's defaults) and an on-demand signing rate per second (0:
 * PKID_OCSP_ON_DEMAND_RATE). */
pkid_ocsp_http *pkid_ocsp_http_start_with(uv_loop_t *loop, const char *listen,
                                          const pkid_cas *cas, pkid_status *status,
                                          const pkid_http_limits *limits,
                                          unsigned on_demand_rate, pki_err *err);

/* pkid_ocsp_http_port is the bound port; pkid_ocsp_http_address writes
 * "HOST:PORT". */
int pkid_ocsp_http_port(const pkid_ocsp_http *o);
int pkid_ocsp_http_address(const pkid_ocsp_http *o, char *out, size_t out_size);

/* pkid_ocsp_http_server is the responder's HTTP server, for other routes
 * on the same listener (crl_http.h). */
pkid_http_server *pkid_ocsp_http_server(pkid_ocsp_http *o);

/* pkid_ocsp_presign signs and stores the SHA-1 response about |rec|, which
 * must be in the status index already (pkid_status_put): call it when an
 * issuance or a revocation has become durable. Inline on the loop thread:
 * one signature, tens of microseconds. */
int pkid_ocsp_presign(pkid_ocsp_http *o, const pkid_cert_record *rec, pki_err *err);

/* pkid_ocsp_http_stop stops gracefully (see pkid_http_stop, 5 s grace);
 * |done| runs once everything is closed and freed. */
void pkid_ocsp_http_stop(pkid_ocsp_http *o, void (*done)(void *arg), void *arg);

#endif /* PKID_SERVER_HTTP_OCSP_HTTP_H */
