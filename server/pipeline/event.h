/* event.h: an audit event on its way to the journal: an operation that
 * changed no certificate (a refusal, a catalogue reload, a load balancer's
 * rotation, an ACME key), written as an EVENT record (lib/record.h) by the
 * same committer and group commit as issuances, so that the trail has one
 * order and one chain.
 *
 * pkid_event_submit copies the event into a job it allocates, hands it to
 * the worker pool (workers.h; no worker signs anything for it) and, when
 * the committer has made it durable or failed it, calls |done| on the loop
 * thread, then frees the job. Loop thread.
 *
 * Errors: pkid_event_submit fails (0 with a pki_err, |done| never called)
 * when the pool is full (PKI_ERR_EXHAUSTED) or out of memory; the caller
 * decides whether to try again. */
#ifndef PKID_SERVER_PIPELINE_EVENT_H
#define PKID_SERVER_PIPELINE_EVENT_H

#include <stdint.h>

#include "lib/err.h"
#include "lib/record.h"
#include "lib/serial.h"
#include "server/pipeline/workers.h"

/* The longest detail an event keeps; longer ones are cut (at a UTF-8
 * boundary) and end in "...". */
#define PKID_EVENT_DETAIL_MAX 8192 /* a ceremony log line fits whole */

typedef struct pkid_event {
  pki_event_kind kind;
  pki_event_outcome outcome;
  const char *identity; /* who */
  const char *service;  /* NULL: none */
  const pki_serial *serial; /* NULL: none */
  uint32_t count;       /* 0 is taken as 1 */
  int64_t first, last;  /* s; 0: now */
  const char *detail;   /* NULL: none */
} pkid_event;

/* pkid_event_done_fn: |ok| and the record durable, or failed (|err|) and
 * nothing recorded. */
typedef void (*pkid_event_done_fn)(void *ctx, int ok, const pki_err *err);

/* pkid_event_submit journals |ev|; |done| (may be NULL) hears the outcome.
 * With |done| NULL a failure is logged. */
int pkid_event_submit(pkid_workers *w, const pkid_event *ev, pkid_event_done_fn done,
                      void *ctx, pki_err *err);

#endif /* PKID_SERVER_PIPELINE_EVENT_H */
