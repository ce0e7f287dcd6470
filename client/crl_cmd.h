/* crl_cmd.h: `pkictl crl fetch` and `pkictl crl inspect`, and the checks
 * that the agent's CRL keeping (client/agent_crl.c) shares with them.
 *
 *   pkictl crl fetch (--ca NAME [--delta] | --url URL) --out FILE [--pem]
 *       [--pki DIR | --ca-file FILE] [--base-url URL] [--max-size 256M]
 *       [--timeout-ms N] [--catalog FILE]
 *   pkictl crl inspect FILE [--pki DIR | --ca-file FILE] [--catalog FILE]
 *
 * A CRL is written only once it is known good (RFC 5280 6.3.3): it parses
 * strictly (lib/crl.h), its issuer is the CA's subject byte for byte, its
 * authority key identifier (if any) is the CA's key id, the CA may sign
 * CRLs (keyUsage cRLSign, 4.2.1.3), its signature verifies under the CA's
 * key, it is of the kind asked for (complete or delta, 5.2.4), and it is
 * not older than the one already held: a lower cRLNumber (5.2.3) is a
 * replay, refused, since it would un-revoke what the newer one revoked.
 *
 * fetch: the URL is --url, or the catalogue's CRL URL of --ca (RFC 5280
 * 4.2.1.13; <crl_url><ca>.crl, or -delta.crl), with --base-url in place of
 * the catalogue's crl_url. The issuing CA's certificate is --ca-file, or
 * --ca's in the --pki tree, or (--url alone) the tree's CA whose subject
 * is the CRL's issuer. The request is conditional (If-None-Match) when
 * FILE and FILE.etag exist: 304 leaves both as they are. FILE (DER, or PEM
 * with --pem) and then FILE.etag are replaced atomically.
 *
 * inspect: a DER or PEM file; every "X509 CRL" block of a PEM file (the
 * agent writes one per CA): issuer, number, complete or delta, this and
 * next update, the delta's location (freshestCRL), entries with reason and
 * invalidity date; with --pki or --ca-file, whether the signature
 * verifies. */
#ifndef PKID_CLIENT_CRL_CMD_H
#define PKID_CLIENT_CRL_CMD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/http_get.h"
#include "lib/catalog.h"
#include "lib/crl.h"
#include "lib/err.h"

/* crl_cmd_main runs `pkictl crl ...`; argv[0] is "crl". It returns the
 * exit status: 0, 1 on failure, 2 on a usage error. */
int crl_cmd_main(int argc, char **argv);

/* crl_parse_size reads "1048576", "512K", "256M" or "1G" (powers of 1024). */
int crl_parse_size(size_t *out, const char *text);

/* crl_check_issuer checks that the parsed |crl| was issued and signed by
 * the CA whose certificate (DER) is |ca_der|: PKI_ERR_AUTH when the name,
 * key id or signature do not match, PKI_ERR_DENIED when the CA may not
 * sign CRLs. */
int crl_check_issuer(const pki_crl *crl, const uint8_t *ca_der, size_t ca_len, pki_err *err);

/* crl_number_cmp orders two CRLs of one issuer by cRLNumber: <0, 0, >0. A
 * CRL without a number sorts before any with one. */
int crl_number_cmp(const pki_crl *a, const pki_crl *b);

/* crl_decode reads a CRL file's text: DER, or the first "X509 CRL" PEM
 * block, into malloc'd DER. */
int crl_decode(uint8_t **out, size_t *out_len, const uint8_t *text, size_t text_len,
               pki_err *err);

/* crl_next_pem finds the next "X509 CRL" block of |text| from |*pos| on,
 * decodes it into malloc'd DER and moves |*pos| past it. 0 with
 * PKI_ERR_NOT_FOUND when there is none left. */
int crl_next_pem(uint8_t **out, size_t *out_len, const char *text, size_t text_len,
                 size_t *pos, pki_err *err);

/* What a fetch asks for. */
enum { CRL_WANT_ANY = 0, CRL_WANT_COMPLETE, CRL_WANT_DELTA };

typedef struct crl_source {
  const char *url;
  const char *etag;             /* If-None-Match, or NULL */
  const uint8_t *ca_der;        /* the issuing CA's certificate; NULL: */
  size_t ca_len;
  const pki_catalog *cat;       /* the catalogue CA, in the |pki| tree, */
  const char *pki;              /* whose subject is the CRL's issuer */
  int want;                     /* CRL_WANT_* */
  const pki_crl *held;          /* the CRL held now, or NULL; a floor if of the same issuer */
  size_t max_bytes;             /* 0: HTTP_GET_DEFAULT_MAX_BODY */
  uint64_t timeout_ms;          /* 0: HTTP_GET_DEFAULT_TIMEOUT_MS */
} crl_source;

typedef enum crl_outcome {
  CRL_NEW = 1,          /* a newer CRL, checked: |der| and |crl| */
  CRL_NOT_MODIFIED,     /* 304: what is held is current */
  CRL_SAME,             /* 200 with the cRLNumber held: nothing new */
} crl_outcome;

typedef struct crl_fetched {
  crl_outcome outcome;
  uint8_t *der; /* CRL_NEW: the CRL, DER, malloc'd */
  size_t der_len;
  pki_crl crl;  /* CRL_NEW: parsed, pointing into |der| */
  int stale;    /* CRL_NEW: its nextUpdate has passed */
  char etag[HTTP_GET_ETAG_MAX]; /* the response's ETag, "" when none */
} crl_fetched;

void crl_fetched_cleanup(crl_fetched *f);

/* crl_fetch_checked GETs |src->url| and, on 200, checks the CRL as the
 * top of this file says. A 404 is PKI_ERR_NOT_FOUND, 503 and other 5xx
 * PKI_ERR_UNAVAILABLE, each with the server's words. */
int crl_fetch_checked(crl_fetched *out, const crl_source *src, pki_err *err);

/* crl_print writes one CRL the way `pkictl inspect` writes a certificate. */
void crl_print(FILE *out, const pki_crl *crl, const uint8_t *der, size_t len);

/* crl_ca_chain lists |ca| and the CAs above it, up to the root, into
 * |out| (nearest first); it returns how many, 0 if |ca| is unknown or the
 * chain is longer than |max|. */
size_t crl_ca_chain(const pki_catalog_ca **out, size_t max, const pki_catalog *cat,
                    const char *ca);

/* crl_url_of writes |ca|'s CRL URL: |base| (ending in '/') or the
 * catalogue's crl_url, then "<ca>.crl" or "<ca>-delta.crl". */
int crl_url_of(char *out, size_t size, const pki_catalog *cat, const pki_catalog_ca *ca,
               const char *base, int delta, pki_err *err);

#endif /* PKID_CLIENT_CRL_CMD_H */
