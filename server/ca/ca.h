/* ca.h: the online CAs pkid signs with, loaded from a pki/ tree.
 *
 * The ca layer is the bottom of the server: it knows the catalogue and the
 * pki/ tree (lib/) and nothing of requests, connections or the journal.
 * Errors: 1/0 and a pki_err, as in lib/. A loaded pkid_cas is read-only
 * and shared by every thread.
 *
 * Every intermediate of the catalogue whose certificate and key (sealed,
 * or in a PKCS#11 token: lib/pkcs11.h) are in the tree is loaded at start
 * (the root never is: it stays offline).
 * Each keeps its chain (itself and its parents below the root) as DER for
 * IssueResponse.chain, and its trust store file for GetTrustBundle. */
#ifndef PKID_SERVER_CA_CA_H
#define PKID_SERVER_CA_CA_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/cert.h"
#include "lib/err.h"
#include "lib/ocsp.h"

#define PKID_MAX_CHAIN 8

typedef struct pkid_ca {
  const pki_catalog_ca *def;
  pki_issuer issuer;
  pki_ocsp_signer ocsp; /* signs OCSP responses about what it issued (RFC 6960
                         * 4.2.2.2: the CA itself is the responder) */
  uint8_t *chain[PKID_MAX_CHAIN]; /* DER: this CA first, then its parents, root excluded */
  size_t chain_len[PKID_MAX_CHAIN];
  size_t num_chain;
  uint8_t *parents_and_root[PKID_MAX_CHAIN]; /* DER: parents, then the root */
  size_t parents_and_root_len[PKID_MAX_CHAIN];
  size_t num_parents_and_root;
  char *truststore_pem; /* this CA, its parents and the root, PEM */
  size_t truststore_len;
} pkid_ca;

typedef struct pkid_cas {
  uint8_t *root; /* the root certificate, DER */
  size_t root_len;
  pkid_ca *cas;
  size_t num_cas;
} pkid_cas;

/* pkid_cas_load loads every intermediate of |cat| from |dir|, opening the
 * sealed keys with |secret|. A CA missing from the tree is an error. */
int pkid_cas_load(pkid_cas *out, const pki_catalog *cat, const char *dir,
                  const uint8_t *secret, size_t secret_len, pki_err *err);

/* pkid_cas_find returns the loaded CA named |name|, or NULL. */
const pkid_ca *pkid_cas_find(const pkid_cas *cas, const char *name);

/* pkid_cas_index is |ca|'s position in |cas->cas|, the number the status
 * index keeps for it. */
size_t pkid_cas_index(const pkid_cas *cas, const pkid_ca *ca);

/* pkid_cas_at returns the CA at |index|, or NULL past the end (a record
 * naming a CA that is not loaded). */
const pkid_ca *pkid_cas_at(const pkid_cas *cas, size_t index);

/* pkid_cas_num_tokens counts the CAs whose keys are in PKCS#11 tokens. */
size_t pkid_cas_num_tokens(const pkid_cas *cas);

/* pkid_cas_tokens_ready reports whether every such CA can sign: no call
 * has found its token failing since it was opened or recovered. */
int pkid_cas_tokens_ready(const pkid_cas *cas);

/* pkid_cas_tokens_recover tries to make every token CA that is not ready
 * usable again (pki_p11_key_recover). It blocks on the tokens: run it off
 * the loop. 0 and the first failure while any is still away. */
int pkid_cas_tokens_recover(const pkid_cas *cas, pki_err *err);

void pkid_cas_cleanup(pkid_cas *cas);

#endif /* PKID_SERVER_CA_CA_H */
