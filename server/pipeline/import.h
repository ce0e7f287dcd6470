/* import.h: certificates pkid's intermediates signed offline, or another
 * node of the fleet signed, made known to this pkid: journaled (an ISSUE
 * record whose identity is "offline-ceremony", or "fleet:node N"), in the
 * status index, answered by OCSP, revocable like any other; and the
 * fleet's revocations.
 *
 * pkictl's ceremonies leave a copy of each such certificate in the pki
 * tree's issued/ folder (lib/pki_tree.h). pkid reads the folder at start
 * and at each reload and imports what it does not know yet: a certificate
 * goes in only if one of the loaded CAs signed it (its AKI names the CA and
 * the CA's key verifies its signature). Imports go through the worker pool
 * like issuances (the worker signs the first OCSP response; the committer
 * journals the record), as many at once as the pool takes; the rest follow
 * as those finish. Loop thread. Errors: 1/0 and a pki_err; a file that is
 * not a certificate of ours is logged and passed over. */
#ifndef PKID_SERVER_PIPELINE_IMPORT_H
#define PKID_SERVER_PIPELINE_IMPORT_H

#include "lib/catalog.h"
#include "lib/err.h"
#include "server/ca/ca.h"
#include "server/pipeline/workers.h"
#include "server/store/store.h"

typedef struct pkid_import pkid_import;

/* pkid_import_new prepares imports from |pki_dir| into |store| through
 * |workers|; |cat| names services (pkid_import_set_catalog after a reload). */
pkid_import *pkid_import_new(const char *pki_dir, const pkid_cas *cas, pkid_store *store,
                             pkid_workers *workers, pki_err *err);
void pkid_import_set_catalog(pkid_import *imp, const pki_catalog *cat);

/* pkid_import_scan reads the issued/ folder and starts importing what pkid
 * does not know. A scan while one is in progress only adds to it. */
int pkid_import_scan(pkid_import *imp, pki_err *err);

/* The fleet (server/fleet/follow.h): what another node issued or revoked,
 * taken in the order the fleet's database gives, journaled here with the
 * identity "fleet:node N" and applied like this node's own.
 *
 * pkid_import_fleet_cert imports a certificate as above (one of the loaded
 * CAs must have signed it: the database is not trusted to vouch for a
 * certificate). It takes |der|. pkid_import_fleet_revoke revokes a
 * certificate this node knows, after any import in flight that may be it;
 * one unknown here or revoked already is passed over. Neither is claimed
 * in the fleet's database again (the job's fleet_seq, |seq| here). Both
 * return 0 only when out of memory: the change was not taken, and the
 * caller must hand it over again (follow.h, pkid_follow_retry). */
int pkid_import_fleet_cert(pkid_import *imp, uint64_t seq, uint16_t node, uint8_t *der,
                           size_t len);
int pkid_import_fleet_revoke(pkid_import *imp, uint64_t seq, uint16_t node,
                             const pki_serial *serial, uint8_t reason, int64_t revoked_at,
                             int64_t invalidity_date);

/* pkid_import_on_done has |fn| called after each import finishes, with its
 * fleet_seq (0: not the fleet's) and, if it failed, why: the caller hands
 * over more, and learns of a change of the fleet that was not journaled. */
void pkid_import_on_done(pkid_import *imp,
                         void (*fn)(void *ctx, uint64_t fleet_seq, const pki_err *failure),
                         void *ctx);

/* pkid_import_pending is how many certificates wait or are in flight. */
size_t pkid_import_pending(const pkid_import *imp);

/* pkid_import_stop: the pool is about to stop; nothing more is submitted.
 * pkid_import_free then frees what still waits (no import may be in
 * flight: the pool has stopped). */
void pkid_import_stop(pkid_import *imp);
void pkid_import_free(pkid_import *imp);

#endif /* PKID_SERVER_PIPELINE_IMPORT_H */
