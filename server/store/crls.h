/* crls.h: what the CRLs of one online CA are made of, kept beside the
 * status index: its revoked certificates in the order their revocations
 * became durable, the numbers of its CRLs, the complete CRL its deltas
 * refer to, and the CRLs last published (RFC 5280 section 5).
 *
 * The store fills it from the journal (REVOKE and CRL records, replayed or
 * new) and snapshots it; the pipeline's CRL builder (pipeline/crl.h) picks
 * entries from it and publishes what it built; the HTTP front end serves
 * what is published. Loop thread only: no locks.
 *
 * Order and cuts. Each revocation of one of the CA's certificates gets the
 * next ordinal (1, 2, ...). A CRL is built from every entry up to a cut (an
 * ordinal): what was durable when its build began. Replay gives the same
 * ordinals, as it applies the same records in the same order.
 *
 * Entries leave the complete CRL once their certificate has expired and
 * they have appeared on one CRL issued after that (RFC 5280 3.3: "an entry
 * MUST NOT be removed from the CRL until it appears on one regularly
 * scheduled CRL issued beyond the revoked certificate's validity period").
 * With the last published CRL's thisUpdate T and cut C, an entry is
 * dropped when its ordinal is at most C (it was on that CRL, or dropped
 * before) and its certificate's notAfter is before T. The rule needs no
 * state per entry, and replay reaches the same decisions.
 *
 * Deltas (RFC 5280 5.2.4). The base is a complete CRL made on schedule; a
 * delta lists what changed since: entries revoked after the base's cut,
 * and entries the base holds that have since been dropped, with reason
 * removeFromCRL (5.3.1), so that the base and the delta together say what
 * the complete CRL issued at the same time says. Every build makes both,
 * with one cRLNumber (5.2.3: a delta and a complete CRL issued together
 * MUST share it), except the very first, which has no base to refer to.
 * A new base purges the entries neither it nor any later CRL can hold. */
#ifndef PKID_SERVER_STORE_CRLS_H
#define PKID_SERVER_STORE_CRLS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/crl.h"
#include "lib/serial.h"

/* One revoked certificate of the CA. */
typedef struct pkid_revoked {
  uint8_t serial[PKI_SERIAL_MAX];
  uint8_t serial_len;
  uint8_t reason;          /* CRLReason */
  uint64_t ord;            /* 1, 2, ... per CA, in durable order */
  int64_t revoked_at;      /* seconds */
  int64_t invalidity_date; /* 0: not given */
  int64_t not_after;       /* the certificate's */
} pkid_revoked;

/* A CRL as served: DER, shared by every response that sends it (|refs|),
 * and by the writing of its files. */
typedef struct pkid_crl_blob {
  int refs;
  uint64_t number;
  int64_t this_update, next_update;
  size_t num_entries;
  uint8_t *der; /* malloc'd */
  size_t len;
} pkid_crl_blob;

/* pkid_crl_blob_new wraps |der| (malloc'd; taken over, freed with the
 * blob, also on failure) in a blob holding one reference. */
pkid_crl_blob *pkid_crl_blob_new(uint8_t *der, size_t len, uint64_t number,
                                 int64_t this_update, int64_t next_update, size_t num_entries);
void pkid_crl_blob_ref(pkid_crl_blob *b);
/* pkid_crl_blob_unref drops a reference (NULL is fine); the last frees it.
 * Its signature fits a release callback (void *). */
void pkid_crl_blob_unref(void *b);

typedef struct pkid_ca_crls {
  pkid_revoked *entries; /* by ordinal, increasing; dropped ones purged at a new base */
  size_t num_entries, cap_entries;
  /* Where each serial's entry is, for pkid_ca_crls_find: open addressing,
   * slots hold an index into |entries| plus one (0: empty), at most half
   * full; rebuilt when it grows and after a purge. */
  uint32_t *slots;
  size_t slot_mask;
  uint64_t last_ord; /* the ordinal of the last entry added */
  /* The last CRL made durable (its record is in the journal). */
  uint64_t number;        /* its cRLNumber; 0: none yet */
  int64_t last_this_update;
  uint64_t last_cut;
  /* The base of the deltas: a complete CRL and the drop rule it was built
   * with (the T and C of the CRL before it). */
  uint64_t base_number; /* 0: none yet */
  int64_t base_this_update;
  uint64_t base_cut;
  int64_t base_drop_t;
  uint64_t base_drop_cut;
  /* Published, to be served (NULL until the first build of this run). */
  pkid_crl_blob *full, *delta;
} pkid_ca_crls;

/* pkid_ca_crls_add appends a revocation (the next ordinal). 0 only when
 * out of memory (nothing changed). */
int pkid_ca_crls_add(pkid_ca_crls *c, const pki_serial *serial, uint8_t reason,
                     int64_t revoked_at, int64_t invalidity_date, int64_t not_after);

/* pkid_ca_crls_cut is the ordinal of the last entry added: a build taken
 * now covers every entry up to it. */
uint64_t pkid_ca_crls_cut(const pkid_ca_crls *c);

/* pkid_ca_crls_find returns the entry of |serial|, or NULL (never revoked,
 * or purged after it left the CRLs). A hash lookup: a client asking for
 * the status of one revoked certificate over and over must not make the
 * loop walk a million entries each time. */
const pkid_revoked *pkid_ca_crls_find(const pkid_ca_crls *c, const pki_serial *serial);

/* pkid_ca_crls_select picks the entries of the CRLs built at |cut|: the
 * complete CRL's into |*out_full|, the delta's into |*out_delta|, both
 * malloc'd (NULL when empty). The delta is relative to the current base,
 * also when the complete CRL built with it becomes the next base: a delta
 * whose BaseCRLNumber were its own cRLNumber would say nothing (and
 * OpenSSL ignores a delta not newer than its base). With no base yet
 * there is no delta. 0 only when out of memory. */
int pkid_ca_crls_select(const pkid_ca_crls *c, uint64_t cut, pki_crl_entry **out_full,
                        size_t *out_num_full, pki_crl_entry **out_delta, size_t *out_num_delta);

/* pkid_ca_crls_made records that the CRLs numbered |number|, built at
 * |cut| with thisUpdate |this_update|, are durable; |is_base| when the
 * complete one became the new base (number == its own base number). */
void pkid_ca_crls_made(pkid_ca_crls *c, uint64_t number, int is_base, int64_t this_update,
                       uint64_t cut);

/* pkid_ca_crls_publish makes |full| and |delta| (references taken over)
 * the ones served, dropping the previous ones' references. */
void pkid_ca_crls_publish(pkid_ca_crls *c, pkid_crl_blob *full, pkid_crl_blob *delta);

/* pkid_ca_crls_cleanup frees the entries and drops the published blobs. */
void pkid_ca_crls_cleanup(pkid_ca_crls *c);

#endif /* PKID_SERVER_STORE_CRLS_H */
