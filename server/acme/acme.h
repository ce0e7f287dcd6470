/* acme.h: pkid's ACME server (RFC 8555), the door for the programs that
 * cannot use pkid's gRPC API: certbot, lego, uacme, Caddy, cert-manager.
 *
 * On its own HTTPS listener (the http package over TLS, with pkid's own
 * server certificate and no client certificates), under /acme/:
 *
 *   GET  directory                 the URLs below, meta.externalAccountRequired
 *   HEAD|GET new-nonce             a Replay-Nonce (6.5)
 *   GET  renewal-info/CERTID       ACME Renewal Information (RFC 9773)
 *   POST new-account               with External Account Binding (7.3, 7.3.4)
 *   POST acct/ID                   read, update contact, deactivate (7.3.2, 7.3.6)
 *   POST acct/ID/orders            the account's orders (7.1.2.1)
 *   POST key-change                (7.3.5)
 *   POST new-order                 (7.4)
 *   POST order/ID, order/ID/finalize
 *   POST authz/ID/I, chall/ID/I/J  (7.5, 7.5.1)
 *   POST cert/ID                   the PEM chain (7.4.2)
 *   POST revoke-cert               by the account or by the certificate's key (7.6)
 *
 * Every POST is a JWS (lib/jws.h) whose "nonce" pkid issued (nonces.h),
 * whose "url" is the URL requested (6.4), and which is signed by the
 * account's key ("kid") or, for new-account and revoke-cert, by the key it
 * carries ("jwk"). Every response carries a fresh Replay-Nonce, and every
 * error is an RFC 7807 problem document (problem.h).
 *
 * Policy is the catalogue's: an EAB key is bound to one catalogue service
 * (store/acme_state.h), an account to its EAB key, and an order may name
 * only that service's DNS names. A finalized order's CSR becomes an ISSUE
 * job of the pipeline, like a gRPC Issue: the same profile, lint, journal
 * and first OCSP response, with the identity "acme:ACCOUNT". Accounts are
 * journaled as EVENTs (and answered once durable); orders live in memory
 * (orders.h).
 *
 * Challenges (validate.h) run on libuv's thread pool: http-01 to port 80
 * of the name and tls-alpn-01 to port 443, resolved by the system
 * resolver. Test mode (|test_mode|, for tests on loopback in the manner of
 * Let's Encrypt's Pebble) allows other ports and a static name-to-address
 * map; pkid refuses those settings without it.
 *
 * Threads: the loop thread, but for the validations. Errors: set-up is
 * 1/0 (NULL) with a pki_err; requests are answered with problems. */
#ifndef PKID_SERVER_ACME_ACME_H
#define PKID_SERVER_ACME_ACME_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "server/ca/ca.h"
#include "server/pipeline/serials.h"
#include "server/pipeline/workers.h"
#include "server/store/acme_state.h"
#include "server/store/status.h"
#include "server/store/store.h"

#define PKID_ACME_MAX_RESOLVE 64

typedef struct pkid_acme_config {
  const char *listen; /* "HOST:PORT" */
  int test_mode;
  unsigned http_port; /* where http-01 connects; 80 unless test mode */
  unsigned tls_port;  /* where tls-alpn-01 connects; 443 unless test mode */
  /* Test mode's static map, "NAME=IP" each; a name it lacks goes to the
   * system resolver. */
  const char *resolve[PKID_ACME_MAX_RESOLVE];
  size_t num_resolve;
  unsigned validate_timeout_ms; /* each connect and read; 0: 5000 */
  unsigned validate_attempts;   /* a connection that fails is tried again; 0: 3 */
  size_t max_orders;            /* in memory at once; 0: 100000 */
  size_t max_pending_per_account; /* orders not yet finished; 0: 100 */
} pkid_acme_config;

/* What the ACME server works with; all outlive it. */
typedef struct pkid_acme_deps {
  uv_loop_t *loop;
  const pki_catalog *const *cat; /* the current catalogue (a reload replaces it) */
  const pkid_cas *cas;
  pkid_serials *serials;
  pkid_workers *workers;
  pkid_store *store;
  pkid_status *status;
  const uint8_t *eab_master; /* PKID_ACME_EAB_MASTER_LEN octets */
  SSL_CTX *ssl_ctx;          /* the listener's (a reference is taken) */
} pkid_acme_deps;

typedef struct pkid_acme pkid_acme;

/* pkid_acme_check_config refuses test mode's settings outside test mode
 * and a map entry that is not NAME=IP. */
int pkid_acme_check_config(const pkid_acme_config *cfg, pki_err *err);

/* pkid_acme_start listens and serves. */
pkid_acme *pkid_acme_start(const pkid_acme_config *cfg, const pkid_acme_deps *deps,
                           pki_err *err);

/* pkid_acme_address writes the bound "HOST:PORT". */
int pkid_acme_address(const pkid_acme *a, char *out, size_t out_size);

/* pkid_acme_stop closes the listener (within |grace_ms| for requests in
 * progress); |done| runs once it has. Work in flight (a validation, a job)
 * still comes back to the server, which pkid_acme_free frees after the
 * loop and the workers have ended. */
void pkid_acme_stop(pkid_acme *a, unsigned grace_ms, void (*done)(void *arg), void *arg);
void pkid_acme_free(pkid_acme *a);

#endif /* PKID_SERVER_ACME_ACME_H */
