/* refusals.h: refused requests on the audit trail, aggregated.
 *
 * Every gRPC call pkid ends with an error, and every refused answer in a
 * stream, is noted here (by the rpc layer's on_refused hook and the api's
 * stream answers). A refusal is worth a record (who was told no, and why,
 * is what an auditor asks first), but a client that sends a million bad
 * requests must not write a million records: refusals are counted per
 * (identity, method, status, reason) and each window ends in one EVENT
 * record per key (lib/record.h, kind refused) with the count and the
 * window's first and last refusal. A window holds at most
 * PKID_REFUSAL_KEYS keys; refusals past them are counted under one key
 * whose identity is "*", so that the trail still says how many there were.
 *
 * A key whose record could not be submitted (the pool full: the very
 * overload that refuses requests) stays and is tried again at the next
 * tick, so a count is never lost while pkid runs; what a kill -9 takes is
 * the current window (at most window_s of counts), which the note in
 * README.md says.
 *
 * Loop thread. */
#ifndef PKID_SERVER_API_REFUSALS_H
#define PKID_SERVER_API_REFUSALS_H

#include <stdint.h>

#include "lib/err.h"
#include "server/pipeline/workers.h"

#define PKID_REFUSAL_KEYS 256

typedef struct pkid_refusals pkid_refusals;

/* pkid_refusals_new journals through |workers| every |window_s| seconds. */
pkid_refusals *pkid_refusals_new(pkid_workers *workers, uint32_t window_s, pki_err *err);

/* pkid_refusals_note counts one refusal at Unix time |now|. |identity| ""
 * is a caller without a client certificate; |service| (NULL: none) is the
 * caller's catalogue service; |method| the gRPC method's name ("Issue"). */
void pkid_refusals_note(pkid_refusals *r, const char *identity, const char *service,
                        const char *method, int grpc_status, const char *reason, int64_t now);

/* pkid_refusals_tick journals the window once it is |window_s| old;
 * pkid_refusals_flush journals it now (at drain). */
void pkid_refusals_tick(pkid_refusals *r, int64_t now);
void pkid_refusals_flush(pkid_refusals *r);

void pkid_refusals_free(pkid_refusals *r);

#endif /* PKID_SERVER_API_REFUSALS_H */
