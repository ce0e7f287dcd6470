/* serials.h: the serial numbers this node hands out, from blocks reserved
 * in the journal before any of their numbers is used (store.h,
 * SERIAL_BLOCK): whatever crashes, no serial is issued twice.
 *
 * The first block is reserved at start, directly; the next one through the
 * worker pool (a job of its own) as soon as half of the current block is
 * used, so issuance never waits for it. Loop thread only. Errors: 1/0 and
 * a pki_err. */
#ifndef PKID_SERVER_PIPELINE_SERIALS_H
#define PKID_SERVER_PIPELINE_SERIALS_H

#include <stdint.h>

#include "lib/err.h"
#include "lib/serial.h"
#include "server/pipeline/job.h"
#include "server/pipeline/workers.h"
#include "server/store/store.h"

/* Sequence numbers are reserved in blocks of this many. */
#define PKID_SERIAL_BLOCK 65536

typedef struct pkid_serials {
  uint16_t node;     /* this node's serial prefix */
  uint64_t next;     /* the next sequence number to use */
  uint64_t end;      /* the end of the reserved blocks */
  int reserving;     /* |reserve| is in the pool */
  pkid_job reserve;  /* the reservation in flight */
  pkid_store *store;
  pkid_workers *workers;
} pkid_serials;

/* pkid_serials_init reserves the first block in |store| (durably, before
 * anything is issued); later blocks go through |workers|, which may be
 * set afterwards but before the first pkid_serials_next. */
int pkid_serials_init(pkid_serials *s, pkid_store *store, uint16_t node, pki_err *err);

/* pkid_serials_next gives the next serial. When a burst has used the
 * whole reserved range before the next block was durable it fails with
 * PKI_ERR_UNAVAILABLE: a retry moments later succeeds. */
int pkid_serials_next(pkid_serials *s, pki_serial *out, pki_err *err);

#endif /* PKID_SERVER_PIPELINE_SERIALS_H */
