/* ceremonies.h: the offline ceremonies' log (lib/ceremony_log.h) imported
 * into pkid's journal, so that the root's and the intermediates' offline
 * signatures are on the same chain as everything pkid signs.
 *
 * At start and at each reload pkid reads PKI/ceremony.log and checks it
 * against what the journal holds: the log must still have the last entry
 * journaled (the store's ceremony_seq), with the same hash. A log that is
 * shorter, or whose entry there differs, was cut or rewritten: pkid
 * refuses to start (a reload logs it and imports nothing), naming both.
 * The entries after it are journaled one at a time, in order, as EVENT
 * records of kind PKI_EVENT_CEREMONY: identity "ceremony:<kind>", service
 * the name signed, serial the certificate's, time the step's, detail the
 * entry's line, whole. A failed commit stops the import; the next reload
 * takes it up from the last entry journaled. Loop thread. */
#ifndef PKID_SERVER_PIPELINE_CEREMONIES_H
#define PKID_SERVER_PIPELINE_CEREMONIES_H

#include <stddef.h>

#include "lib/err.h"
#include "server/pipeline/workers.h"
#include "server/store/store.h"

typedef struct pkid_ceremonies pkid_ceremonies;

pkid_ceremonies *pkid_ceremonies_new(const char *pki_dir, pkid_workers *workers,
                                     pkid_store *store, pki_err *err);

/* pkid_ceremonies_scan reads the log, checks it and starts journaling what
 * is new. A scan while an import is in flight only checks the log. */
int pkid_ceremonies_scan(pkid_ceremonies *c, pki_err *err);

/* pkid_ceremonies_free, once the workers are freed (no entry in flight). */
void pkid_ceremonies_free(pkid_ceremonies *c);

#endif /* PKID_SERVER_PIPELINE_CEREMONIES_H */
