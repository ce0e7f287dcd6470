/* lb.h: the load balancer's hot certificate rotation (`pkictl lb`).
 *
 * It owns service-certificates/load-balancer/ as the seed lays it out:
 *   active/lb-current.crt, .key (0600), -chain.crt   what haproxy serves
 *   active/lb-current.pem (0600)                     the same as one file,
 *       certificate, chain and key: what haproxy's `crt` loads
 *   active/lb-current.pem.ocsp                       its stapled OCSP
 *       response, DER, which haproxy loads beside a `crt` file at start
 *   rotation/lb-next.crt, .key (0600), -chain.crt    made ahead through pkid
 *   backup/lb-backup-<UTC>.crt, .key, -chain.crt     the replaced ones
 *
 * A rotation (lb_rotate), each step one JSON log line:
 *  1. the next certificate is validated (lb_validate): it chains to the
 *     root with serverAuth (BoringSSL's X509 verifier), its key matches, it
 *     has at least 24 hours left (the seed's `-checkend 86400`), its SANs
 *     cover the catalogue's names, it comes from the catalogue's CA for the
 *     service, and pkid's OCSP responder says good (a signed response,
 *     checked here, which is also the one stapled). Any failure refuses
 *     the rotation before haproxy is touched;
 *  2. the current files are copied to backup/ (a retention of N);
 *  3. the swap: through haproxy's runtime API (`set ssl cert NAME <<` with
 *     certificate, chain and key, `set ssl cert NAME.ocsp <<` with the
 *     response, `commit ssl cert NAME`; `abort ssl cert NAME` on any error;
 *     management guide 9.3), or, without a socket, the files first and a
 *     graceful reload (SIGUSR2 to the master of `haproxy -W`, or a
 *     command);
 *  4. a probe handshake through the frontend must see the new certificate
 *     (SHA-256 of its DER); otherwise the previous one is put back the same
 *     way (rollback) and the rotation fails;
 *  5. active/ is replaced atomically (with the API: after the probe, so a
 *     restart of haproxy serves what it served; the bundle first, as the
 *     commit point), rotation/ emptied, and a new next certificate made
 *     through pkid.
 *
 * Functions return 1 on success and 0 on failure with a pki_err. */
#ifndef PKID_CLIENT_LB_H
#define PKID_CLIENT_LB_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/base.h>
#include <openssl/x509.h>

#include "client/lb_ocsp.h"
#include "client/metrics_http.h"
#include "client/pkiclient.h"
#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/pki_tree.h"

#define LB_SERVICE "load-balancer"
/* The seed's `openssl x509 -checkend 86400`. */
#define LB_MIN_LIFE_S 86400
#define LB_DEFAULT_BACKUPS 5

typedef struct lb_config {
  const char *pki;
  const pki_catalog *cat;
  const pki_catalog_service *svc; /* the load balancer's, from |cat| */
  /* The swap: the runtime API when |haproxy_socket| is set, else a reload. */
  const char *haproxy_socket;
  const char *haproxy_cert; /* the crt path as haproxy's configuration names it */
  long reload_pid;          /* SIGUSR2 to haproxy's master, or */
  const char *reload_command;
  const char *probe;      /* HOST:PORT of the frontend */
  const char *probe_name; /* SNI; NULL: none */
  unsigned backups;       /* backup/ keeps this many; 0: LB_DEFAULT_BACKUPS */
  const char *metrics_file;
  metrics_http *metrics_http; /* `lb watch --metrics-listen`; NULL: none */
  const char *ocsp_url; /* NULL: the certificate's AIA */
  uint64_t timeout_ms;
  uint64_t reload_wait_ms; /* how long a reload may take to show in the probe */
  /* pkid, as the caller authenticates (pkiclient.h). */
  pkc_options pkid;
} lb_config;

/* One certificate with its chain and key, as read from its three files. */
typedef struct lb_cert {
  X509 *cert;
  STACK_OF(X509) *chain;
  EVP_PKEY *key;
  char *cert_pem, *chain_pem, *key_pem; /* the files' text; key_pem wiped at cleanup */
  uint8_t sha256[32];
  char serial[80]; /* lower-case hex */
  int64_t not_after;
} lb_cert;

void lb_cert_cleanup(lb_cert *c);

/* The files of a certificate: |base| without ".crt". */
typedef struct lb_paths {
  char crt[PKI_PATH_MAX], key[PKI_PATH_MAX], chain[PKI_PATH_MAX];
} lb_paths;

int lb_paths_make(lb_paths *out, const char *dir, const char *name, pki_err *err);

/* lb_cert_load reads a certificate's three files. */
int lb_cert_load(lb_cert *out, const lb_paths *paths, pki_err *err);

/* lb_ocsp_fetch asks the responder about |c| (issued by its chain's first
 * certificate) and checks the answer: a successful basic response for
 * this CertID, signed by the issuer (pkid's CAs sign their own, RFC 6960
 * 4.2.2.2), current. */
int lb_ocsp_fetch(lb_ocsp *out, const lb_config *cfg, const lb_cert *c, pki_err *err);

/* lb_validate runs the checks of step 1 on |next|, at |now|; the OCSP
 * response it fetched is left in |out_ocsp| (zeroed first) when it passed.
 * |*out_check| names the check that failed ("chain", "key", "lifetime",
 * "names", "issuer", "ocsp"). */
int lb_validate(const lb_config *cfg, const lb_cert *next, int64_t now, lb_ocsp *out_ocsp,
                const char **out_check, pki_err *err);

/* lb_probe makes one TLS handshake with |cfg->probe| and returns the
 * SHA-256 of the certificate it was shown, and its serial. */
int lb_probe(const lb_config *cfg, uint8_t out_sha256[32], char *out_serial,
             size_t serial_size, pki_err *err);

/* lb_make_next has pkid issue a new next certificate into rotation/. */
int lb_make_next(const lb_config *cfg, pki_err *err);

/* lb_staple fetches the serving certificate's OCSP response and hands it
 * to haproxy (`set ssl ocsp-response`, with the API) and to the .ocsp file
 * beside the bundle. |*out_next_update| gets its nextUpdate. */
int lb_staple(const lb_config *cfg, int64_t *out_next_update, pki_err *err);

/* The outcome of lb_rotate. */
typedef enum lb_result {
  LB_NOT_DUE = 0,  /* nothing to do */
  LB_ROTATED,      /* swapped, probed, promoted */
  LB_REFUSED,      /* the next certificate failed validation; haproxy untouched */
  LB_SWAP_FAILED,  /* haproxy refused the swap (aborted) */
  LB_ROLLED_BACK,  /* the probe did not see it; the previous one is back */
  LB_ERROR,        /* something else; see the error */
} lb_result;

const char *lb_result_name(lb_result r);

/* lb_rotate rotates when the current certificate is within the service's
 * renew_before of its end (or is missing), or always with |force|. It
 * writes the metrics file after any attempt. */
lb_result lb_rotate(const lb_config *cfg, int force, pki_err *err);

/* lb_ensure_bundle writes active/lb-current.pem (0600) from the active
 * certificate, chain and key when it is missing: the file haproxy's `crt`
 * names must exist before haproxy starts. When it exists and holds another
 * certificate than lb-current.crt (pkictl stopped in a promotion, which
 * writes the bundle first), the three files are made again from it. */
int lb_ensure_bundle(const lb_config *cfg, pki_err *err);

/* lb_write_metrics publishes the Prometheus page to the metrics file and
 * the --metrics-listen page (see lb.c). */
void lb_write_metrics(const lb_config *cfg);

#endif /* PKID_CLIENT_LB_H */
