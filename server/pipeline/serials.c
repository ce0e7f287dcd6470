#include "server/pipeline/serials.h"

#include <stddef.h>
#include <string.h>

#include "lib/log.h"

int pkid_serials_init(pkid_serials *s, pkid_store *store, uint16_t node, pki_err *err) {
  memset(s, 0, sizeof(*s));
  s->node = node;
  s->store = store;
  if (!pkid_store_reserve(store, PKID_SERIAL_BLOCK, &s->next, err)) return 0;
  s->end = s->next + PKID_SERIAL_BLOCK;
  return 1;
}

/* on_reserved: the next block is durable (or failed: the next serial
 * handed out tries again). */
static void on_reserved(pkid_job *job) {
  pkid_serials *s = (pkid_serials *)((char *)job - offsetof(pkid_serials, reserve));
  s->reserving = 0;
  if (job->ok) {
    pkid_store_apply(s->store, &job->rec);
    s->end = job->rec.block_first + job->rec.block_count;
  } else {
    pki_log("error", "serial_reserve_failed", "reason", job->err.msg, NULL);
  }
  pkid_job_cleanup(job);
}

/* reserve_ahead asks for the next block once half of the current one is
 * used. A full pool is not an error here: the next serial tries again. */
static void reserve_ahead(pkid_serials *s) {
  if (s->reserving || s->end - s->next > PKID_SERIAL_BLOCK / 2) return;
  pkid_job_init(&s->reserve, PKI_REC_SERIAL_BLOCK, on_reserved);
  s->reserve.rec.block_first = s->end;
  s->reserve.rec.block_count = PKID_SERIAL_BLOCK;
  pki_err err;
  if (pkid_workers_submit(s->workers, &s->reserve, &err)) s->reserving = 1;
}

int pkid_serials_next(pkid_serials *s, pki_serial *out, pki_err *err) {
  if (s->next >= s->end) {
    reserve_ahead(s);
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "serial numbers are being reserved; retry");
    return 0;
  }
  if (!pki_serial_make(out, s->node, s->next, err)) return 0;
  s->next++;
  reserve_ahead(s);
  return 1;
}
