/* agent_crl.h: the agent's CRL keeping: one PEM file holding the current
 * complete CRL of a CA and of every CA above it, up to the root, for a TLS
 * server that checks client certificates against CRLs (haproxy's
 * crl-file), optionally pushed into haproxy at once.
 *
 * Why every CA up to the root: haproxy sets OpenSSL's X509_V_FLAG_CRL_CHECK
 * and CRL_CHECK_ALL for a crl-file, so each certificate of the client's
 * chain is checked, and a chain whose CA has no CRL in the file fails
 * ("unable to get certificate CRL"): the intermediate's CRL covers the
 * client, the root's (signed in a ceremony) covers the intermediate.
 *
 * Each pass, for each CA: a conditional GET of its complete CRL (the
 * catalogue's <crl_url><ca>.crl, or --crl-base-url), checked as `pkictl
 * crl fetch` checks (client/crl_cmd.h: issuer, key id, cRLSign, signature
 * under the tree's copy of the CA's certificate, complete not delta, never
 * older than the one held). When anything changed, the file is rebuilt
 * (nearest CA first) and replaced atomically, only if its bytes differ.
 * A CA whose fetch fails keeps the CRL held: one CA's outage does not hold
 * back another's revocations. While any CA has no CRL at all, nothing is
 * written: a file missing a CA's CRL would make haproxy refuse every
 * client of that CA.
 *
 * The CRLs held start from the file itself (each block checked the same
 * way), so a restarted agent neither rewrites an unchanged file nor
 * accepts an older CRL than it had written.
 *
 * haproxy: after a write, and at start, `set ssl crl-file NAME` with the
 * file's PEM and `commit ssl crl-file NAME` (client/haproxy.h); a push
 * that fails is tried again every pass until one succeeds. NAME is the
 * crl-file path as haproxy's configuration writes it (by default the
 * file's path).
 *
 * A CRL whose thisUpdate is a little ahead of this clock (pkid's clock
 * ahead of ours) is held back until then: OpenSSL treats it as not yet
 * valid and haproxy would refuse every client meanwhile. Errors are
 * logged (JSON lines, lib/log.h) and retried at the next pass. */
#ifndef PKID_CLIENT_AGENT_CRL_H
#define PKID_CLIENT_AGENT_CRL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/http_get.h"
#include "lib/catalog.h"
#include "lib/crl.h"
#include "lib/err.h"

#define AGENT_CRL_MAX_CAS 8

typedef struct agent_crl_opts {
  const char *file;           /* the PEM file to keep */
  const char *ca;             /* the CA whose clients are checked */
  const char *pki;            /* the tree holding the CAs' certificates */
  const char *base_url;       /* NULL: the catalogue's crl_url */
  const char *haproxy_socket; /* NULL: no push */
  const char *haproxy_name;   /* NULL: |file| */
  size_t max_bytes;           /* per CRL; 0: HTTP_GET_DEFAULT_MAX_BODY */
  uint64_t timeout_ms;        /* per request, and per haproxy command */
} agent_crl_opts;

typedef struct agent_crl_ca {
  const pki_catalog_ca *ca;
  char url[2048];
  char cert_path[1024];
  uint8_t *der; /* the CRL held, DER; NULL: none yet */
  size_t der_len;
  pki_crl crl;  /* parsed from |der| */
  char etag[HTTP_GET_ETAG_MAX];
  uint64_t ok_total, error_total;
} agent_crl_ca;

typedef struct agent_crl {
  agent_crl_opts o;
  agent_crl_ca cas[AGENT_CRL_MAX_CAS]; /* nearest first, the root last */
  size_t num_cas;
  int push_pending; /* haproxy has not taken the file as it is */
  uint64_t push_ok_total, push_error_total;
} agent_crl;

/* agent_crl_init resolves the CA chain of |o->ca| and its URLs, and reads
 * the CRLs the file holds. |o|'s strings and |cat| must outlive |k|. */
int agent_crl_init(agent_crl *k, const agent_crl_opts *o, const pki_catalog *cat,
                   pki_err *err);

void agent_crl_cleanup(agent_crl *k);

/* agent_crl_pass fetches every CA's CRL and writes the file if it changed
 * (|*out_written| set then). It returns 1 when every CA's fetch went well
 * and the file is complete and current; 0 otherwise (logged). */
int agent_crl_pass(agent_crl *k, int *out_written);

/* agent_crl_push pushes the file to haproxy when a push is pending and a
 * socket was given; 1 when nothing is left to push. */
int agent_crl_push(agent_crl *k);

/* agent_crl_metrics appends Prometheus text to |buf| (of |size|, |*len|
 * used): each CA's nextUpdate and fetch counts, and haproxy pushes. */
void agent_crl_metrics(const agent_crl *k, char *buf, size_t size, size_t *len);

#endif /* PKID_CLIENT_AGENT_CRL_H */
