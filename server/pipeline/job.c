#include "server/pipeline/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pkid_job_init(pkid_job *job, pkid_record_type type, pkid_job_done_fn done) {
  memset(job, 0, sizeof(*job));
  atomic_init(&job->cancelled, 0);
  job->rec.type = type;
  job->rec.identity = job->identity;
  job->done = done;
}

void pkid_job_set_identity(pkid_job *job, const char *identity) {
  snprintf(job->identity, sizeof(job->identity), "%s", identity);
  job->rec.identity = job->identity;
}

void pkid_job_cleanup(pkid_job *job) {
  if (job == NULL) return;
  free(job->csr);
  free(job->cert);
  free(job->ocsp);
  job->csr = job->cert = job->ocsp = NULL;
  job->rec.cert = NULL;
}

void pkid_job_apply(pkid_job *job, pkid_store *store) {
  pkid_store_apply(store, &job->rec);
  if (job->rec.type == PKID_REC_REVOKE) {
    pkid_cert_record rec;
    if (pkid_status_get(store->status, job->rec.serial.bytes, job->rec.serial.len, &rec) &&
        (rec.revoked_at != job->rec.revoked_at || rec.reason != job->rec.reason)) {
      job->rec.revoked_at = rec.revoked_at;
      job->rec.reason = rec.reason;
      free(job->ocsp);
      job->ocsp = NULL;
    }
  }
  if (job->ocsp != NULL) {
    pkid_status_set_response(store->status, job->rec.serial.bytes, job->rec.serial.len,
                             PKI_OCSP_HASH_SHA1, job->ocsp, job->ocsp_len, job->ocsp_next_update);
    job->ocsp = NULL; /* the index owns it now */
  }
}

int pkid_jobs_commit(void *ctx, pkid_job **jobs, size_t n, pki_err *err) {
  const pkid_record **recs = malloc((n > 0 ? n : 1) * sizeof(*recs));
  if (recs == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  size_t num = 0;
  for (size_t i = 0; i < n; i++) {
    if (jobs[i]->ok) recs[num++] = &jobs[i]->rec;
  }
  int ok = pkid_store_commit(ctx, recs, num, err);
  free(recs);
  return ok;
}
