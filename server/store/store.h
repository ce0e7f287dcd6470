/* store.h: pkid's embedded store: its records in the journal (lib/journal.h)
 * and the state they rebuild at start (the status index, the reserved
 * serials, the used bootstrap tokens, the ACME accounts).
 *
 * The store layer sits on the ca layer and below everything that handles
 * requests: it knows records, never jobs, calls or connections. Errors: 1/0
 * and a pki_err, as in lib/.
 *
 * Records: their types and payloads are lib/record.h's, which every reader
 * of a journal shares (pkid's replay, the fleet's shipping, pkictl audit).
 *
 * A snapshot holds the status index, the CRL state of each CA (crls.h),
 * the keys revoked for keyCompromise, the highest reserved sequence number,
 * the used tokens, the last ceremony log entry journaled and the ACME
 * state's records (acme_state.h) (its layout is in store.c).
 *
 * Threads: open, reserve, snapshot and close run on the loop thread while
 * no commit is in flight; pkid_store_commit and the commit_* functions run
 * on one thread at a time (the committer); pkid_store_apply, the token set,
 * the CRL state and the ACME state on the loop thread. */
#ifndef PKID_SERVER_STORE_STORE_H
#define PKID_SERVER_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/journal.h"
#include "lib/journal_tail.h"
#include "lib/record.h"
#include "lib/serial.h"
#include "lib/usage.h"
#include "server/ca/ca.h"
#include "server/store/acme_state.h"
#include "server/store/crls.h"
#include "server/store/idset.h"
#include "server/store/status.h"

/* pkid_record: one change to the store, what its journal record says. An
 * ISSUE that used a bootstrap token (|has_token|) is written as two
 * records, TOKEN then ISSUE. Pointers are borrowed for the call. */
typedef struct pkid_record {
  pki_record_type type;
  /* ISSUE and REVOKE */
  pki_serial serial;
  const char *identity; /* who asked */
  /* ISSUE */
  const pkid_ca *ca;
  const char *service; /* the catalogue service's name */
  pki_usage usage;
  int64_t not_before, not_after;
  uint8_t key_hash[32]; /* SHA-256 of the subject's SubjectPublicKeyInfo */
  const uint8_t *cert;
  size_t cert_len;
  int has_token;
  uint8_t token_id[32];
  pki_serial renews; /* len 0: not a renewal */
  /* REVOKE */
  uint8_t reason; /* CRLReason */
  int64_t revoked_at;
  int64_t invalidity_date; /* 0: not given */
  int has_key_hash;        /* key_hash is the subject key's (keyCompromise) */
  int by_key;              /* one of the certificates of a compromised key */
  /* CRL (|ca| too) */
  uint64_t crl_number, crl_base;
  int64_t crl_this_update, crl_next_update;
  uint64_t crl_cut;
  uint32_t crl_entries, crl_delta_entries;
  uint8_t crl_hash[32], crl_delta_hash[32];
  /* SERIAL_BLOCK */
  uint64_t block_first, block_count;
  /* EVENT (|identity|, |service| (NULL: none) and |serial| (len 0: none)
   * too); lib/record.h */
  uint8_t event_kind;    /* pki_event_kind */
  uint8_t event_outcome; /* pki_event_outcome */
  uint32_t event_count;
  int64_t event_first, event_last;
  const char *detail; /* NULL: none */
} pkid_record;

/* The identity of a record this node journaled for a change another node
 * of the fleet made ("fleet:node 2"; server/fleet/follow.h): it is in the
 * fleet's database already, so it is not shipped, and not claimed. */
#define PKID_FLEET_WHO "fleet:"

typedef struct pkid_store {
  pki_journal *journal;
  const pki_catalog *cat; /* replaced by a reload (loop thread) */
  const pkid_cas *cas;
  pkid_status *status; /* filled at open; the loop's from then on */
  uint16_t node;
  uint64_t reserved_end; /* this node's sequence numbers below it are taken */
  uint64_t replayed;     /* records replayed at open */
  uint64_t issued, revoked; /* records of each kind seen (replayed and new) */
  /* Bootstrap tokens used, or in use by an issuance in flight. */
  pkid_idset tokens;
  /* The CRL state of each loaded CA, by index in |cas| (loop thread). */
  pkid_ca_crls *crls;
  /* Keys revoked for keyCompromise (SHA-256 of the SubjectPublicKeyInfo):
   * the loop's copy, and the committer's, which refuses to journal an
   * issuance for one of them. Both are filled at open. */
  pkid_idset compromised;
  pkid_idset commit_compromised;
  /* SHA-256 of the serials whose keyCompromise revocation searched the
   * journal in this run, and whether for the key's other certificates
   * too (loop thread): a repeat finds nothing new, so it is answered
   * without holding every commit while the journal is read again. */
  pkid_idset key_searched, same_key_searched;
  /* The last entry of the ceremony log (lib/ceremony_log.h) journaled:
   * seq 0 none. Replayed, kept in snapshots, and moved on by the import
   * (server/pipeline/ceremonies.h) as it commits more (loop thread). */
  uint64_t ceremony_seq;
  uint8_t ceremony_hash[32];
  /* The ACME server's accounts and EAB keys (loop thread): the replay
   * and a snapshot's load apply their records; at run time whoever
   * journaled one applies it once it is durable (acme_state.h). */
  pkid_acme_state *acme;
  /* Called after every append that made records durable, on the thread
   * that appended (the committer; the loop for a reservation), with the
   * journal's new durable end: the fleet's shipping follows it. NULL:
   * nobody follows. Set before the first commit. */
  void (*on_durable)(void *ctx, const pki_journal_pos *end);
  void *on_durable_ctx;
  /* Called by pkid_jobs_commit on the committer thread for each REVOKE and
   * each ISSUE that uses a bootstrap token, before any of the commit is
   * appended: the fleet records the claim in PostgreSQL (server/fleet),
   * so a token is used once across nodes and a revocation is the fleet's
   * before it is acknowledged. 0 with |err| set refuses that one change.
   * NULL: a node alone, which claims nothing. Set before the first commit. */
  int (*fleet_claim)(void *ctx, const pkid_record *rec, pki_err *err);
  void *fleet_claim_ctx;
} pkid_store;

typedef struct pkid_store_options {
  uint16_t node;          /* this node's serial prefix */
  uint64_t segment_bytes; /* journal segments roll at this size; 0: the journal's default */
} pkid_store_options;

/* pkid_store_open opens the journal in |dir|, loads the newest snapshot and
 * replays the records after it into |status|. Corruption stops it with the
 * journal's error (file and offset). */
int pkid_store_open(pkid_store *out, const char *dir, const pki_catalog *cat,
                    const pkid_cas *cas, pkid_status *status, const pkid_store_options *opts,
                    pki_err *err);

/* pkid_store_reserve appends a SERIAL_BLOCK record for |count| sequence
 * numbers after every earlier block, durably, and returns the first. Loop
 * thread, before any commit can run (later reservations are commits). */
int pkid_store_reserve(pkid_store *st, uint64_t count, uint64_t *out_first, pki_err *err);

/* pkid_store_commit appends the journal records of |n| changes and makes
 * them durable: one append, one fdatasync (group commit). On failure none
 * of them may be reported as done: the caller fails them all. Once the
 * journal has failed for good, commits fail with PKI_ERR_UNAVAILABLE. */
int pkid_store_commit(pkid_store *st, const pkid_record *const *recs, size_t n, pki_err *err);

/* pkid_store_commit_key_compromised reports whether |key_hash| was revoked
 * for keyCompromise by a durable record. Committer thread. */
int pkid_store_commit_key_compromised(const pkid_store *st, const uint8_t key_hash[32]);

/* pkid_store_commit_note_compromised adds a key whose keyCompromise
 * revocation has just become durable to the committer's set. 0 only when
 * out of memory. Committer thread. */
int pkid_store_commit_note_compromised(pkid_store *st, const uint8_t key_hash[32]);

/* pkid_store_key_search answers what a keyCompromise revocation of
 * |serial| needs, from the whole journal (pki_journal_read_all), on the
 * committer thread, which holds every other commit meanwhile: the SHA-256
 * of its subject key into |key_hash|, and with |same_key| the serials of
 * every other certificate of that key, unexpired at |now| and not revoked,
 * into |*out| (malloc'd; NULL when none). |pending| are the records of the
 * same commit ahead of this one, not yet in the journal. A serial the
 * journal has no ISSUE record of fails with PKI_ERR_NOT_FOUND. */
int pkid_store_key_search(pkid_store *st, const pki_serial *serial, uint8_t key_hash[32],
                          int same_key, int64_t now, const pkid_record *const *pending,
                          size_t num_pending, pki_serial **out, size_t *out_num, pki_err *err);

/* pkid_store_note_key_search records that a keyCompromise revocation of
 * |serial| searched the journal (with |same_key|: for the key's other
 * certificates too); pkid_store_key_searched asks whether one like it
 * (|same_key| or not) already did. Loop thread. */
void pkid_store_note_key_search(pkid_store *st, const pki_serial *serial, int same_key);
int pkid_store_key_searched(const pkid_store *st, const pki_serial *serial, int same_key);

/* pkid_store_apply updates the status index, the CRL state, the
 * compromised keys and the reserved serials for a committed change. Loop
 * thread. */
void pkid_store_apply(pkid_store *st, const pkid_record *rec);

/* pkid_store_snapshot saves the state so that the next start replays only
 * what follows. No commit may be in flight. */
int pkid_store_snapshot(pkid_store *st, pki_err *err);

/* pkid_store_token_take marks a bootstrap token as used. It fails with
 * PKI_ERR_AUTH if it was used already and PKI_ERR_EXHAUSTED when out of
 * memory. pkid_store_token_release gives it back when the issuance it
 * authorized failed. Loop thread. */
int pkid_store_token_take(pkid_store *st, const uint8_t id[32], pki_err *err);
void pkid_store_token_release(pkid_store *st, const uint8_t id[32]);

/* pkid_store_acme is the ACME state, the store's from open to close: the
 * ACME server and the api apply their records to it once durable, so a
 * later snapshot keeps them. Loop thread. */
pkid_acme_state *pkid_store_acme(pkid_store *st);

void pkid_store_close(pkid_store *st);

#endif /* PKID_SERVER_STORE_STORE_H */
