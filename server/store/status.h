/* status.h: what pkid knows of every certificate it issued: the status
 * index, and the OCSP responses signed ahead for each.
 *
 * Rebuilt at start from the journal (snapshot + replay) and updated by the
 * loop thread as issuances and revocations become durable. Loop thread
 * only: no locks.
 *
 * Memory: 40 bytes a certificate (status.c: the records of each node in
 * pages by sequence number, so an entry holds only the random half of its
 * serial), plus the pre-signed responses themselves (about 300 bytes each),
 * counted apart. Serials of another form cost 64 bytes in a hash table of
 * their own.
 *
 * Errors: functions that insert return 0 only when out of memory; look-ups
 * return 0 for "not there". */
#ifndef PKID_SERVER_STORE_STATUS_H
#define PKID_SERVER_STORE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/ocsp.h"
#include "lib/serial.h"

/* How long a pre-signed OCSP response is valid (its nextUpdate - thisUpdate);
 * responses are signed again when less than half of it remains. */
#define PKID_OCSP_VALIDITY_S (24 * 3600)

typedef struct pkid_cert_record {
  pki_serial serial;
  uint8_t ca;        /* index into pkid_cas.cas */
  uint8_t usage;     /* pki_usage */
  uint8_t revoked;   /* 1 once revoked */
  uint8_t reason;    /* CRLReason, when revoked */
  uint16_t service;  /* index into the catalogue's services; 0xffff unknown */
  int64_t not_before, not_after;
  int64_t revoked_at; /* 0 unless revoked */
} pkid_cert_record;

typedef struct pkid_status pkid_status;

/* pkid_cert_record_ocsp fills what an OCSP response says of |rec| (RFC
 * 6960 4.2.1): good, or revoked with its time and reason. Every response
 * pkid signs (at issuance, at revocation, on refresh, on demand) takes its
 * status from here. The reason is left out when it is unspecified (0), as
 * RFC 5280 5.3.1 asks of CRL entries, so that OCSP and the CRLs say the
 * same; values that are no CRLReason (7, and above 10) are left out too. */
void pkid_cert_record_ocsp(const pkid_cert_record *rec, pki_ocsp_single *out);

/* pkid_status_new makes an empty index sized for about |expected| entries
 * (it grows as needed). */
pkid_status *pkid_status_new(size_t expected);
void pkid_status_free(pkid_status *st);

/* pkid_status_reserve grows the table for |n| records at once. Loading many
 * records (a snapshot) must reserve first: inserted in another table's slot
 * order into a growing table, they would pile into long probe runs. */
int pkid_status_reserve(pkid_status *st, size_t n);

/* pkid_status_put inserts or replaces the record of |rec->serial|. Replacing
 * keeps the stored responses unless the status changed (revocation drops
 * them: they would say "good"). Returns 0 only when out of memory. */
int pkid_status_put(pkid_status *st, const pkid_cert_record *rec);

/* pkid_status_get copies the record of |serial| into |out|; 0 if unknown. */
int pkid_status_get(const pkid_status *st, const uint8_t *serial, size_t serial_len,
                    pkid_cert_record *out);

/* pkid_status_count is the number of records. */
size_t pkid_status_count(const pkid_status *st);

/* pkid_status_set_response stores a signed OCSP response for |serial| and
 * |hash|, taking ownership of |der| (malloc'd) and freeing the one it
 * replaces. |next_update| is when it must have been replaced. Returns 0 if
 * the serial is unknown (|der| is then freed). */
int pkid_status_set_response(pkid_status *st, const uint8_t *serial, size_t serial_len,
                             pki_ocsp_hash hash, uint8_t *der, size_t der_len,
                             int64_t next_update);

/* pkid_status_response returns the stored response for |serial| and
 * |hash|, or NULL. The pointer is valid until the next change to that
 * serial. */
const uint8_t *pkid_status_response(const pkid_status *st, const uint8_t *serial,
                                    size_t serial_len, pki_ocsp_hash hash, size_t *out_len,
                                    int64_t *out_next_update);

/* pkid_status_foreach_from visits at most |max| records from the position
 * |*cursor| (0 to begin), updating the cursor; it wraps to 0 after the last
 * record. Table growth between calls may revisit or skip a few records,
 * which suits its use: background sweeps such as OCSP refresh, whose cost
 * per call must not grow with the index. */
void pkid_status_foreach_from(const pkid_status *st, size_t *cursor, size_t max,
                              int (*fn)(void *ctx, const pkid_cert_record *rec), void *ctx);

/* pkid_status_remap_services rewrites every record's service index
 * through |map| (old index -> new, 0xffff for a service that is gone):
 * after the catalogue is reloaded with services added, removed or
 * reordered. */
void pkid_status_remap_services(pkid_status *st, const uint16_t *map, size_t map_len);

/* pkid_status_foreach calls |fn| for every record (in no order) until it
 * returns 0; used to refresh responses before nextUpdate and to write
 * snapshots. */
void pkid_status_foreach(const pkid_status *st,
                         int (*fn)(void *ctx, const pkid_cert_record *rec), void *ctx);

#endif /* PKID_SERVER_STORE_STATUS_H */
