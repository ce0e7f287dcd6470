/* crl_http.h: CRLs and CA certificates over HTTP, beside the OCSP
 * responder on its listener (the host of the catalogue's crl_url and
 * ca_issuers_url, which certificates carry):
 *
 *   GET|HEAD /crl/<ca>.crl        an online CA's complete CRL, DER
 *   GET|HEAD /crl/<ca>-delta.crl  its delta CRL (RFC 5280 5.2.4), DER
 *   GET|HEAD /crl/<root>.crl      the offline root's CRL: the file a ceremony
 *                                 left in pki/crl/, read at start and reload
 *   GET|HEAD /ca/<ca>.crt         a CA's certificate, DER, the root's too
 *                                 (AIA caIssuers, RFC 5280 4.2.2.1)
 *
 * Media types application/pkix-crl and application/pkix-cert (RFC 2585).
 * Cache headers, as RFC 5019 6.2 has them for OCSP: Last-Modified is
 * thisUpdate, Expires is nextUpdate, Cache-Control "public, no-transform,
 * max-age=" the seconds left to nextUpdate; a strong ETag names the CRL by
 * CA, kind and cRLNumber (a number is never reused, so neither is a tag),
 * and If-None-Match with it answers 304 Not Modified. A CA certificate's
 * tag is taken from its signature, and it is cached for a day.
 *
 * A CA not in the catalogue, or not loaded: 404. An online CA whose first
 * CRL is not built yet (pkid just started): 503 with Retry-After. Bodies
 * are served from the published CRL itself, never copied per client
 * (pkid_http_respond_shared). Loop thread only. */
#ifndef PKID_SERVER_HTTP_CRL_HTTP_H
#define PKID_SERVER_HTTP_CRL_HTTP_H

#include "lib/err.h"
#include "server/ca/ca.h"
#include "server/http/http.h"
#include "server/store/crls.h"
#include "server/store/store.h"

typedef struct pkid_crl_http pkid_crl_http;

/* pkid_crl_http_new adds the routes to |srv| (which must outlive the
 * requests; free this after it stops). |root_name| is the catalogue's
 * root CA name (copied). */
pkid_crl_http *pkid_crl_http_new(pkid_http_server *srv, pkid_store *store, const pkid_cas *cas,
                                 const char *root_name, pki_err *err);

/* pkid_crl_http_set_root makes |root| the root CRL served (a reference is
 * taken; NULL: none, 404), replacing the previous one. */
void pkid_crl_http_set_root(pkid_crl_http *h, pkid_crl_blob *root);

/* pkid_crl_http_load_root reads the root's CRL from |path| (DER or PEM),
 * checks that the root signed it, serves it and sets its metrics. On
 * failure the one served before stays. */
int pkid_crl_http_load_root(pkid_crl_http *h, const char *path, pki_err *err);

void pkid_crl_http_free(pkid_crl_http *h);

#endif /* PKID_SERVER_HTTP_CRL_HTTP_H */
