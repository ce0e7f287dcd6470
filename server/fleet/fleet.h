/* fleet.h: this node in a fleet of pkid nodes that share one PostgreSQL
 * (pkid --postgres CONNINFO; deploy/postgres/ holds the schema).
 *
 * Each node keeps its own journal as its durability point and audit trail;
 * PostgreSQL is the fleet's inventory. This layer does three things today:
 *
 *   Node identity. A node's id (--node, the serial prefix) is leased in
 *   pkid_nodes. A node takes it at start and renews it every lease/3; the
 *   holder is its journal (a random id kept in JOURNAL/fleet-holder, so a
 *   node restarted on its journal is the same holder and takes its id back
 *   at once). While another holder's lease is live, pkid refuses to start:
 *   two live nodes never issue under one prefix, so serials never collide.
 *
 *   Inventory. A thread ships the journal's ISSUE, REVOKE and TOKEN records
 *   into pkid_certificates, pkid_revocations and pkid_tokens, in batches,
 *   each batch one transaction that also moves the node's cursor (the
 *   journal position after the last record shipped, kept in pkid_nodes).
 *   Rows are keyed (serial, token id) and inserted ON CONFLICT DO NOTHING,
 *   so a batch sent twice changes nothing; the cursor makes a node that was
 *   killed or cut off resume exactly where its last committed batch ended.
 *   It reads only what the committer made durable (lib/journal_tail.h).
 *
 *   Claims. What must hold across the fleet is decided in PostgreSQL before
 *   it is journaled: a bootstrap token's use (a unique key) and a
 *   revocation (pkid_fleet_claim, on the committer thread).
 *
 * Failure: with PostgreSQL unreachable the node keeps issuing (its journal
 * is durable) and ships when it is back; metrics say so. Claims fail with
 * UNAVAILABLE meanwhile: Revoke and bootstrap wait for the fleet. A node
 * that finds at renewal that another holder took its id (its lease ran out
 * while it was cut off, and another node started with the same --node)
 * calls |on_lost|: pkid stops, since it can no longer prove its serials
 * unique.
 *
 * Threads: start and stop on the loop thread; pkid_fleet_durable on the
 * thread that appended (the store's on_durable); pkid_fleet_claim on the
 * committer; pkid_fleet_ready from any.
 * Errors: 1/0 and a pki_err, as in lib/. */
#ifndef PKID_SERVER_FLEET_FLEET_H
#define PKID_SERVER_FLEET_FLEET_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "lib/journal_tail.h"
#include "server/store/store.h"

typedef struct pkid_fleet_options {
  const char *conninfo;    /* libpq connection string (--postgres) */
  uint16_t node;           /* --node */
  const char *journal_dir; /* where the records are, and fleet-holder */
  uint32_t lease_s;        /* 0: PKID_FLEET_LEASE_S */
  uint64_t max_lag;        /* records; 0: PKID_FLEET_MAX_LAG */
  void (*on_lost)(void *ctx); /* the lease was taken by another holder */
  void *on_lost_ctx;
} pkid_fleet_options;

/* A lease outlives a few missed renewals (every lease/3) but a node killed
 * by mistake is replaceable by another journal within half a minute. */
#define PKID_FLEET_LEASE_S 30
/* Behind by more than this while connected, a node is not ready (/readyz):
 * it issues faster than it ships, and haproxy sends work elsewhere. */
#define PKID_FLEET_MAX_LAG 100000
/* Records per shipping transaction. */
#define PKID_FLEET_BATCH 500

typedef struct pkid_fleet pkid_fleet;

/* pkid_fleet_start connects to PostgreSQL, applies the schema migrations
 * the database lacks (deploy/postgres/migrations/, under an advisory lock,
 * so nodes starting together apply each once), takes the node's lease and
 * starts the fleet thread, shipping from the node's cursor up to |end|
 * (the journal's durable end at open). Fails with PKI_ERR_EXISTS when
 * another live node holds the id (naming it), PKI_ERR_UNAVAILABLE when
 * PostgreSQL cannot be reached, PKI_ERR_PRECONDITION when its schema is
 * not one this pkid can use. */
pkid_fleet *pkid_fleet_start(const pkid_fleet_options *o, const pki_journal_pos *end,
                             pki_err *err);

/* pkid_fleet_durable tells the shipper that the journal is durable up to
 * |end| (the store's on_durable callback; |ctx| is the fleet). */
void pkid_fleet_durable(void *ctx, const pki_journal_pos *end);

/* pkid_fleet_claim records |rec| in PostgreSQL before it is journaled (the
 * store's fleet_claim; |ctx| is the fleet): a REVOKE into pkid_revocations
 * (a serial the fleet has revoked already is left as it is), an ISSUE's
 * bootstrap token into pkid_tokens, whose unique key refuses a token used
 * on any node (PKI_ERR_AUTH). While the shipper is disconnected it fails
 * at once with PKI_ERR_UNAVAILABLE: what needs the fleet waits for it,
 * issuance without a token does not. A claim whose commit then fails
 * stays: a revocation is then the fleet's anyway, a token is spent (fail
 * closed). Committer thread, on a connection of its own. */
int pkid_fleet_claim(void *ctx, const pkid_record *rec, pki_err *err);

/* pkid_fleet_checkpoint publishes a checkpoint this node signed of its
 * journal (server/store/checkpoints.h) into pkid_checkpoints, away from
 * the node's disk; only the newest waiting is sent. Any thread. */
void pkid_fleet_checkpoint(pkid_fleet *f, const char *text, size_t len, uint64_t seq,
                           uint64_t time_ms);

/* pkid_fleet_ready is 0 while PostgreSQL is reachable and shipping lags by
 * more than max_lag records; 1 otherwise (an unreachable database does not
 * stop issuance, see above). */
int pkid_fleet_ready(pkid_fleet *f);

/* pkid_fleet_stop ships what is durable (for at most a few seconds), stops
 * the thread, releases the lease (so the id is free at once) and frees |f|
 * (NULL is fine). */
void pkid_fleet_stop(pkid_fleet *f);

#endif /* PKID_SERVER_FLEET_FLEET_H */
