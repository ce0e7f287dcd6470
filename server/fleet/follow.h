/* follow.h: what the other nodes of the fleet issue and revoke, read from
 * the fleet's PostgreSQL as it happens, so that every node answers
 * GetStatus, OCSP and CRLs for every certificate of the fleet and applies
 * a revocation made anywhere (the caller journals and applies each change:
 * server/pipeline/import.h).
 *
 * Every certificate and revocation row has a fleet_seq, visible in
 * increasing order (deploy/postgres/migrations/0003_follow.sql), so the
 * follower's cursor is one number. A thread LISTENs to pkid_fleet on its
 * own connection, and on each notification, and every second besides (a
 * notification is lost with a connection), reads the rows after its
 * cursor that other nodes made, oldest first, into a bounded queue the
 * loop takes from. The cursor of what this node has journaled is kept in
 * JOURNAL/fleet-follow (pkid_follow_applied), so a restart reads only what
 * came since; without it, everything is read again and what the node
 * knows already, the caller passes over.
 *
 * With PostgreSQL unreachable it retries with backoff; nothing is missed,
 * as the cursor stays where it was. A database found behind the cursor at
 * a reconnection (a standby promoted without the last rows) is read again
 * from the start.
 *
 * Threads: start, take and stop on the loop thread; |on_changes| is called
 * on the follower's thread. Errors: 1/0 and a pki_err, as in lib/. */
#ifndef PKID_SERVER_FLEET_FOLLOW_H
#define PKID_SERVER_FLEET_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "lib/serial.h"
#include "server/store/store.h"

/* One change another node made. */
typedef struct pkid_fleet_change {
  pki_record_type type; /* PKI_REC_ISSUE or PKI_REC_REVOKE */
  uint64_t fleet_seq;
  uint16_t node; /* the node that issued or revoked */
  pki_serial serial;
  uint8_t *der; /* ISSUE: the certificate (owned; pkid_follow_change_free) */
  size_t der_len;
  uint8_t reason; /* REVOKE: CRLReason, and when */
  int64_t revoked_at, invalidity_date;
} pkid_fleet_change;

typedef struct pkid_follow_options {
  const char *conninfo;
  uint16_t node; /* this node: its own changes are not followed */
  const char *journal_dir; /* where the cursor is kept; NULL: nowhere */
  /* Called on the follower's thread when changes wait in the queue. */
  void (*on_changes)(void *ctx);
  void *ctx;
} pkid_follow_options;

/* Changes queued for the loop at most; the follower reads no further
 * while the queue is full. */
#define PKID_FOLLOW_QUEUE 4096

typedef struct pkid_follow pkid_follow;

/* pkid_follow_start starts the follower's thread (it connects there). */
pkid_follow *pkid_follow_start(const pkid_follow_options *o, pki_err *err);

/* pkid_follow_take moves up to |max| queued changes, oldest first, into
 * |out| and returns how many. */
size_t pkid_follow_take(pkid_follow *f, pkid_fleet_change *out, size_t max);

/* pkid_follow_applied says that every change taken so far is journaled
 * here (the import has nothing pending): the thread saves the cursor. */
void pkid_follow_applied(pkid_follow *f);

/* pkid_follow_retry says that the change at |seq| (its fleet_seq) could
 * not be journaled here (the disk full, say): the follower reads again
 * from just before it, after a pause, and in this run never saves the
 * cursor past it, so that a restart reads it again too. A change is
 * never passed over for a failure that may go away. Loop thread. */
void pkid_follow_retry(pkid_follow *f, uint64_t seq);

/* pkid_follow_caught_up is 1 once the follower has read every change that
 * was in the database when it first connected and the loop has taken
 * them all. */
int pkid_follow_caught_up(pkid_follow *f);

void pkid_follow_change_free(pkid_fleet_change *c);

/* pkid_follow_stop stops the thread and frees |f| and what it still holds
 * (NULL is fine). */
void pkid_follow_stop(pkid_follow *f);

#endif /* PKID_SERVER_FLEET_FOLLOW_H */
