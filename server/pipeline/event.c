/* event.c: audit events journaled through the pipeline (see event.h). */
#include "server/pipeline/event.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "server/pipeline/job.h"

typedef struct event_job {
  pkid_job job;
  char service[256]; /* a u8-len field of the record */
  char detail[PKID_EVENT_DETAIL_MAX + 4];
  pkid_event_done_fn done;
  void *ctx;
} event_job;

/* copy_cut copies |s| into |dst| of |size|, cutting a longer one at a
 * UTF-8 boundary and marking the cut with "...". */
static void copy_cut(char *dst, size_t size, const char *s) {
  size_t n = strlen(s);
  if (n < size) {
    memcpy(dst, s, n + 1);
    return;
  }
  n = size - 4;
  while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--; /* not inside a character */
  memcpy(dst, s, n);
  memcpy(dst + n, "...", 4);
}

static void on_done(pkid_job *job) {
  event_job *e = (event_job *)((char *)job - offsetof(event_job, job));
  if (e->done != NULL) {
    e->done(e->ctx, job->ok, &job->err);
  } else if (!job->ok) {
    pki_log("error", "event_not_journaled", "identity", job->identity, "detail", e->detail,
            "error", job->err.msg, NULL);
  }
  pkid_job_cleanup(job);
  free(e);
}

int pkid_event_submit(pkid_workers *w, const pkid_event *ev, pkid_event_done_fn done,
                      void *ctx, pki_err *err) {
  event_job *e = calloc(1, sizeof(*e));
  if (e == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  int64_t now = (int64_t)time(NULL);
  pkid_job_init(&e->job, PKI_REC_EVENT, on_done);
  pkid_job_set_identity(&e->job, ev->identity != NULL ? ev->identity : "");
  copy_cut(e->service, sizeof(e->service), ev->service != NULL ? ev->service : "");
  copy_cut(e->detail, PKID_EVENT_DETAIL_MAX, ev->detail != NULL ? ev->detail : "");
  pkid_record *rec = &e->job.rec;
  rec->event_kind = (uint8_t)ev->kind;
  rec->event_outcome = (uint8_t)ev->outcome;
  rec->service = e->service;
  rec->detail = e->detail;
  if (ev->serial != NULL) rec->serial = *ev->serial;
  rec->event_count = ev->count != 0 ? ev->count : 1;
  rec->event_first = ev->first != 0 ? ev->first : now;
  rec->event_last = ev->last != 0 ? ev->last : rec->event_first;
  e->done = done;
  e->ctx = ctx;
  if (!pkid_workers_submit(w, &e->job, err)) {
    free(e);
    return 0;
  }
  return 1;
}
