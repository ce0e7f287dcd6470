/* checkpoints.h: this node's signed checkpoints of its journal
 * (lib/checkpoint.h), so that cutting or rewriting the journal is evident
 * to anyone who kept one.
 *
 * The committer reports each durable end (pkid_checkpoints_durable, from
 * the store's on_durable). A timer on the loop signs the newest end with
 * the audit key once |interval_s| has passed since the last checkpoint, or
 * |every_records| records were appended since, whichever comes first, and
 * only if the journal grew. Each checkpoint goes to JOURNAL/checkpoint
 * (the newest, replaced atomically) and is appended to
 * JOURNAL/checkpoints.log (every one, a line-separated history); the caller
 * publishes it further (the admin endpoint, PostgreSQL).
 *
 * Copies kept elsewhere are what make tampering evident: whoever holds
 * the disk holds these files too, and a journal rewritten with its chain
 * recomputed still fails against a checkpoint taken before.
 *
 * Threads: durable on the committer; the rest on the loop. Errors: 1/0 and
 * a pki_err, as in lib/. */
#ifndef PKID_SERVER_STORE_CHECKPOINTS_H
#define PKID_SERVER_STORE_CHECKPOINTS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/err.h"
#include "lib/journal_tail.h"

typedef struct pkid_checkpoints_options {
  const char *journal_dir;
  const char *origin;     /* "pkid node 1" */
  EVP_PKEY *key;          /* Ed25519, the audit key; a reference is taken */
  uint32_t interval_s;    /* 0: PKID_CHECKPOINT_INTERVAL_S */
  uint64_t every_records; /* 0: PKID_CHECKPOINT_RECORDS */
} pkid_checkpoints_options;

#define PKID_CHECKPOINT_INTERVAL_S 60
#define PKID_CHECKPOINT_RECORDS 100000

typedef struct pkid_checkpoints pkid_checkpoints;

/* pkid_checkpoints_new starts from |end|, the journal's durable end. */
pkid_checkpoints *pkid_checkpoints_new(const pkid_checkpoints_options *o,
                                       const pki_journal_pos *end, pki_err *err);

/* pkid_checkpoints_durable records a new durable end (committer thread). */
void pkid_checkpoints_durable(pkid_checkpoints *c, const pki_journal_pos *end);

/* pkid_checkpoints_tick signs and writes a checkpoint if one is due at
 * |now_ms| (Unix ms); |*made| says whether it did. */
int pkid_checkpoints_tick(pkid_checkpoints *c, uint64_t now_ms, int *made, pki_err *err);

/* pkid_checkpoints_latest is the newest checkpoint's text (NULL before
 * the first), valid until the next tick, and the record and time it
 * names. */
const char *pkid_checkpoints_latest(const pkid_checkpoints *c, size_t *len, uint64_t *seq,
                                    uint64_t *time_ms);

void pkid_checkpoints_free(pkid_checkpoints *c);

#endif /* PKID_SERVER_STORE_CHECKPOINTS_H */
