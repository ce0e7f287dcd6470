/* store.h: pkid's embedded store: its records in the journal (lib/journal.h)
 * and the state they rebuild at start.
 *
 * Record types and payloads (big-endian, lengths prefixed as noted):
 *   1 SERIAL_BLOCK  u8 version=1, u16 node, u64 first, u64 count
 *                   sequence numbers [first, first+count) of |node| are
 *                   reserved: written before any of them is used, so none is
 *                   used twice whatever crashes.
 *   2 ISSUE         u8 version=1, u8-len serial, u8-len CA name, u8-len
 *                   service, u16-len identity (who asked), u8 usage,
 *                   u64 notBefore, u64 notAfter, 32-octet SHA-256 of the
 *                   subject public key, u24-len certificate DER
 *   3 REVOKE        u8 version=1, u8-len serial, u8 reason, u64 revokedAt,
 *                   u16-len identity (who revoked)
 *   4 TOKEN         u8 version=1, 32-octet id (SHA-256 of a bootstrap token):
 *                   the token is used; written in the same group commit as,
 *                   and before, the ISSUE record it authorized
 * Record times are Unix milliseconds. A snapshot holds the status index and
 * the highest reserved sequence number (see store.c for its layout).
 *
 * Threads: open, snapshot and close run on the loop thread while no job is
 * in flight; pkid_store_commit runs on the committer thread only;
 * pkid_store_apply on the loop thread. */
#ifndef PKID_SERVER_STORE_H
#define PKID_SERVER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/journal.h"
#include "server/ca.h"
#include "server/job.h"
#include "server/status.h"

enum {
  PKID_REC_SERIAL_BLOCK = 1,
  PKID_REC_ISSUE = 2,
  PKID_REC_REVOKE = 3,
  PKID_REC_TOKEN = 4,
};

typedef struct pkid_store {
  pki_journal *journal;
  const pki_catalog *cat;
  const pkid_cas *cas;
  pkid_status *status; /* filled at open; the loop's from then on */
  uint16_t node;
  uint64_t reserved_end; /* this node's sequence numbers below it are taken */
  uint64_t replayed;     /* records replayed at open */
  uint64_t issued, revoked; /* records of each kind seen (replayed and new) */
  /* Bootstrap tokens used, or in use by a job in flight: a set of ids. */
  uint8_t (*tokens)[32];
  size_t tokens_mask, num_tokens;
} pkid_store;

/* pkid_store_open opens the journal in |dir|, loads the newest snapshot and
 * replays the records after it into |status|. Corruption stops it with the
 * journal's error (file and offset). */
int pkid_store_open(pkid_store *out, const char *dir, const pki_catalog *cat,
                    const pkid_cas *cas, pkid_status *status, uint16_t node, pki_err *err);

/* pkid_store_reserve appends a SERIAL_BLOCK record for |count| sequence
 * numbers after every earlier block, durably, and returns the first.
 * Loop thread, before the workers start (later reservations are jobs). */
int pkid_store_reserve(pkid_store *st, uint64_t count, uint64_t *out_first, pki_err *err);

/* pkid_store_commit is the worker pool's commit function (ctx: the store):
 * one journal append, one fdatasync, for every successful job. */
int pkid_store_commit(void *ctx, pkid_job **jobs, size_t n, pki_err *err);

/* pkid_store_apply updates the status index for a committed job. */
void pkid_store_apply(pkid_store *st, const pkid_job *job);

/* pkid_store_snapshot saves the status index so the next start replays
 * only what follows. No job may be in flight. */
int pkid_store_snapshot(pkid_store *st, pki_err *err);

/* pkid_store_token_take marks a bootstrap token as used; 0 if it already
 * was (or out of memory). pkid_store_token_release gives it back when the
 * issuance it authorized failed. Loop thread. */
int pkid_store_token_take(pkid_store *st, const uint8_t id[32]);
void pkid_store_token_release(pkid_store *st, const uint8_t id[32]);

void pkid_store_close(pkid_store *st);

#endif /* PKID_SERVER_STORE_H */
