/* crl.h: the CRL builder: when each online CA's CRLs are made, and how
 * they become durable, served and written (RFC 5280 section 5).
 *
 * One build makes a CA's complete CRL and its delta CRL, with one
 * cRLNumber, from the entries of its CRL state (store/crls.h) up to a cut:
 *
 *   loop: pick entries, number N  --uv work-->  build and sign both CRLs
 *   --worker pool (a CRL job)-->  committer: a CRL record in the journal
 *   --loop: publish (HTTP serves them from then on)  --uv work-->  write
 *   pki/crl/<ca>.crl, .crl.pem, -delta.crl, -delta.crl.pem atomically.
 *
 * Signing is off the loop (libuv's thread pool, with the CA's key: a
 * million entries take a fraction of a second), and so is writing. The
 * number is journaled before anything is published: a crash never leaves
 * a CRL served whose number the next run would use again (5.2.3), and the
 * journal names every CRL ever served (number, times, entries, SHA-256).
 *
 * When. A timer ticks every |batch_ms|; at a tick, a CA with no build in
 * flight gets one if it has none published yet (just started), if
 * revocations became durable since its last build (so a burst of
 * revocations yields one CRL per tick, not one each), or if its last build
 * is |delta_interval_s| old. A build is a new base (its complete CRL is
 * the one the deltas refer to) when the base is |interval_s| old. A
 * failed build (signing, journal) is tried again after 5 s.
 *
 * Validity: complete CRLs' nextUpdate is thisUpdate + |validity_s|;
 * deltas', thisUpdate + 2 x |delta_interval_s| (the next delta is due
 * long before). A CRL past half its validity without a newer one is what
 * deploy/prometheus alerts on.
 *
 * Loop thread. Errors: pkid_crl_builder_new returns NULL with a pki_err;
 * failed builds are logged and counted (pkid_crl_builds_total). */
#ifndef PKID_SERVER_PIPELINE_CRL_H
#define PKID_SERVER_PIPELINE_CRL_H

#include <stdint.h>

#include <uv.h>

#include "lib/err.h"
#include "server/ca/ca.h"
#include "server/pipeline/workers.h"
#include "server/store/store.h"

typedef struct pkid_crl_options {
  uint32_t interval_s;       /* a new base at least this often (default 1 h) */
  uint32_t delta_interval_s; /* a build at least this often (default 5 min) */
  uint32_t validity_s;       /* complete CRLs' nextUpdate - thisUpdate (default 24 h) */
  uint32_t batch_ms;         /* the tick (default 1000) */
  const char *pki_dir;       /* files go to <pki_dir>/crl/; NULL: no files */
  /* In a fleet (server/fleet/), this node's id; 0: a node alone. A fleet's
   * nodes each sign the same CAs' CRLs, served behind one load balancer,
   * and a relying party must see one increasing cRLNumber per CA (RFC
   * 5280 5.2.3), whichever node answers: so the number is the time, in
   * milliseconds, shifted left 15 bits, with the node's id in those bits.
   * Numbers then grow with time across nodes (as far as their clocks
   * agree), never repeat between nodes (nor do the ETags made from them),
   * and on each node still grow by at least one per build. Alone, they
   * count 1, 2, .... */
  uint16_t fleet_node;
} pkid_crl_options;

/* pkid_crl_next_number is the cRLNumber after |last| for a build at
 * |now_ms| (see fleet_node). */
uint64_t pkid_crl_next_number(uint64_t last, uint16_t fleet_node, uint64_t now_ms);

#define PKID_CRL_INTERVAL_S 3600
#define PKID_CRL_DELTA_INTERVAL_S 300
#define PKID_CRL_VALIDITY_S (24 * 3600)
#define PKID_CRL_BATCH_MS 1000

typedef struct pkid_crl_builder pkid_crl_builder;

/* pkid_crl_builder_new starts building for every CA of |cas| (|workers|,
 * |store| and |cas| must outlive it); zero fields of |opts| take the
 * defaults. The first builds start at once. */
pkid_crl_builder *pkid_crl_builder_new(uv_loop_t *loop, pkid_workers *workers, pkid_store *store,
                                       const pkid_cas *cas, const pkid_crl_options *opts,
                                       pki_err *err);

/* pkid_crl_builder_stop starts no more builds; those in flight finish as
 * the loop runs (one waiting for the pool is dropped). Call it before
 * pkid_workers_free. */
void pkid_crl_builder_stop(pkid_crl_builder *b);

/* pkid_crl_builder_free frees it once the loop has run out (NULL is
 * fine). */
void pkid_crl_builder_free(pkid_crl_builder *b);

#endif /* PKID_SERVER_PIPELINE_CRL_H */
