#include "server/pipeline/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crl.h"

void pkid_job_init(pkid_job *job, pki_record_type type, pkid_job_done_fn done) {
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
  free(job->same_key_recs);
  job->csr = job->cert = job->ocsp = NULL;
  job->same_key_recs = NULL;
  job->num_same_key = 0;
  job->rec.cert = NULL;
}

void pkid_job_apply(pkid_job *job, pkid_store *store) {
  pkid_store_apply(store, &job->rec);
  for (size_t i = 0; i < job->num_same_key; i++) {
    pkid_store_apply(store, &job->same_key_recs[i]);
  }
  if (job->rec.type == PKI_REC_REVOKE && job->rec.has_key_hash) {
    pkid_store_note_key_search(store, &job->rec.serial, job->same_key);
  }
  if (job->rec.type == PKI_REC_REVOKE) {
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

/* The records of one commit, growing: a revocation by key adds many. */
typedef struct commit_recs {
  const pkid_record **recs;
  size_t num, cap;
} commit_recs;

static int push_rec(commit_recs *c, const pkid_record *rec) {
  if (c->num == c->cap) {
    size_t cap = c->cap * 2;
    const pkid_record **r = realloc(c->recs, cap * sizeof(*r));
    if (r == NULL) return 0;
    c->recs = r;
    c->cap = cap;
  }
  c->recs[c->num++] = rec;
  return 1;
}

/* prepare_key_revocation fills a keyCompromise revocation's key hash and,
 * with same_key, the REVOKE records of the key's other certificates. */
static int prepare_key_revocation(pkid_store *st, pkid_job *job, const commit_recs *ahead) {
  pki_serial *others = NULL;
  size_t num_others = 0;
  if (!pkid_store_key_search(st, &job->rec.serial, job->rec.key_hash, job->same_key, job->now,
                             ahead->recs, ahead->num, &others, &num_others, &job->err)) {
    return 0;
  }
  job->rec.has_key_hash = 1;
  if (num_others > 0) {
    job->same_key_recs = calloc(num_others, sizeof(pkid_record));
    if (job->same_key_recs == NULL) {
      free(others);
      PKI_ERR_OOM(&job->err);
      return 0;
    }
    for (size_t i = 0; i < num_others; i++) {
      pkid_record *r = &job->same_key_recs[i];
      *r = job->rec;
      r->serial = others[i];
      r->by_key = 1;
    }
    job->num_same_key = num_others;
  }
  free(others);
  return 1;
}

/* claim records what |job| takes from the fleet (its revocations, its
 * bootstrap token) in the fleet's database before anything of it is
 * journaled (store.h, fleet_claim). A lone node claims nothing. */
static int claim(pkid_store *st, pkid_job *job) {
  if (st->fleet_claim == NULL || job->fleet_seq != 0) return 1;
  int needs = job->rec.type == PKI_REC_REVOKE ||
              (job->rec.type == PKI_REC_ISSUE && job->rec.has_token);
  if (needs && !st->fleet_claim(st->fleet_claim_ctx, &job->rec, &job->err)) return 0;
  for (size_t k = 0; k < job->num_same_key; k++) {
    if (!st->fleet_claim(st->fleet_claim_ctx, &job->same_key_recs[k], &job->err)) return 0;
  }
  return 1;
}

int pkid_jobs_commit(void *ctx, pkid_job **jobs, size_t n, pki_err *err) {
  pkid_store *st = ctx;
  commit_recs c = {malloc(2 * (n + 1) * sizeof(*c.recs)), 0, 2 * (n + 1)};
  /* Keys this commit adds to the committer's set: taken out again if the
   * commit fails, as nothing of it is then durable. */
  uint8_t(*added)[32] = malloc((n > 0 ? n : 1) * 32);
  size_t num_added = 0;
  int ok = 0;
  if (c.recs == NULL || added == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    pkid_job *job = jobs[i];
    if (!job->ok) continue;
    if (job->rec.type == PKI_REC_ISSUE &&
        pkid_store_commit_key_compromised(st, job->rec.key_hash)) {
      job->ok = 0;
      PKI_ERR(&job->err, PKI_ERR_DENIED,
              "this key was revoked for keyCompromise: make a new key and ask again");
      continue;
    }
    int key_compromise =
        job->rec.type == PKI_REC_REVOKE && job->rec.reason == PKI_CRL_REASON_KEY_COMPROMISE;
    if (key_compromise && !prepare_key_revocation(st, job, &c)) {
      job->ok = 0;
      continue;
    }
    if (!claim(st, job)) {
      job->ok = 0;
      continue;
    }
    if (key_compromise) {
      if (!pkid_store_commit_key_compromised(st, job->rec.key_hash)) {
        if (!pkid_store_commit_note_compromised(st, job->rec.key_hash)) {
          PKI_ERR_OOM(&job->err);
          job->ok = 0;
          continue;
        }
        memcpy(added[num_added++], job->rec.key_hash, 32);
      }
    }
    if (!push_rec(&c, &job->rec)) goto oom;
    for (size_t k = 0; k < job->num_same_key; k++) {
      if (!push_rec(&c, &job->same_key_recs[k])) goto oom;
    }
  }
  ok = pkid_store_commit(st, c.recs, c.num, err);
  goto out;
oom:
  PKI_ERR_OOM(err);
out:
  if (!ok) {
    for (size_t k = 0; k < num_added; k++) {
      pkid_idset_remove(&st->commit_compromised, added[k]);
    }
  }
  free(added);
  free(c.recs);
  return ok;
}
