/* workers.h: the worker pool between the event loop and the journal.
 *
 *   loop --jobs queue--> N workers --commit queue--> committer --done queue--> loop
 *
 * The loop submits jobs; a worker takes them in batches (up to
 * PKID_WORKER_BATCH) and does the signing (pkid_issue_run); the committer
 * takes every signed job waiting and makes them durable together with one
 * call to |commit| (one journal append, one fdatasync: group commit); then
 * one uv_async_send wakes the loop, which gives each job back to its owner
 * (job->done). No client hears "issued" before |commit| returned.
 *
 * Each worker signs with its own signers (ca/signer.h): batched ECDSA
 * pools, which it refills while its queue is empty, so a signature on the
 * request path costs two multiplications.
 *
 * All queues are the lock-free MPMC ring of queue.h; a worker or the
 * committer sleeps while its queue is empty and is woken only if it sleeps
 * (wake.h), so a burst of jobs costs one wake-up, not one per job.
 * Submission never blocks: when the pool holds
 * |capacity| jobs, pkid_workers_submit returns 0 and the caller answers
 * RESOURCE_EXHAUSTED at once.
 *
 * Errors: pkid_workers_new and pkid_workers_submit return NULL/0 with a
 * pki_err; what happens to a job is in the job (job.h). */
#ifndef PKID_SERVER_PIPELINE_WORKERS_H
#define PKID_SERVER_PIPELINE_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "lib/err.h"
#include "server/ca/ca.h"
#include "server/pipeline/job.h"

#define PKID_WORKER_BATCH 64
#define PKID_COMMIT_BATCH 512

typedef struct pkid_workers pkid_workers;

/* pkid_commit_fn makes |n| signed jobs durable (on the committer thread).
 * Jobs that did not sign (ok == 0) are passed too, for the audit trail.
 * On failure it returns 0: every job of the batch is then failed with the
 * error, and nothing was issued. */
typedef int (*pkid_commit_fn)(void *ctx, pkid_job **jobs, size_t n, pki_err *err);

typedef struct pkid_workers_stats {
  uint64_t jobs_done;
  uint64_t worker_batches;  /* batches workers took */
  uint64_t commit_batches;  /* commits (fdatasyncs) */
  uint64_t commit_ns_total; /* time spent in commit */
  size_t depth;             /* jobs waiting for a worker, approximately */
  size_t in_flight;         /* jobs submitted and not yet done */
} pkid_workers_stats;

/* pkid_workers_new starts |num_threads| workers and the committer. |cas|
 * are the CAs the workers sign for (each prepares its own ECDSA nonces). */
pkid_workers *pkid_workers_new(uv_loop_t *loop, unsigned num_threads, size_t capacity,
                               const pkid_cas *cas, pkid_commit_fn commit, void *commit_ctx,
                               pki_err *err);

/* pkid_workers_submit hands |job| to the pool until job->done. When the
 * pool holds |capacity| jobs it fails at once with PKI_ERR_EXHAUSTED (the
 * job stays the caller's, and its done is never called). Loop thread. */
int pkid_workers_submit(pkid_workers *w, pkid_job *job, pki_err *err);

/* pkid_workers_last_commit is 1 when the last commit succeeded (or none
 * ran yet); else 0, with that commit's error in |out|. Any thread. */
int pkid_workers_last_commit(pkid_workers *w, pki_err *out);

/* pkid_workers_on_commit_state asks for |fn(ctx)| on the loop thread each
 * time the commits go from succeeding to failing or back (before the
 * jobs of that commit are given back), so that readiness follows the
 * journal at once. */
void pkid_workers_on_commit_state(pkid_workers *w, void (*fn)(void *ctx), void *ctx);

/* pkid_workers_stats_get reads the counters (loop thread). */
void pkid_workers_stats_get(pkid_workers *w, pkid_workers_stats *out);

/* pkid_workers_free lets the workers finish and commit what they hold,
 * gives it back to the owners and joins the threads. Loop thread, with the loop
 * stopped; the memory is freed when the loop next runs its close
 * callbacks (uv_run once more before uv_loop_close). */
void pkid_workers_free(pkid_workers *w);

#endif /* PKID_SERVER_PIPELINE_WORKERS_H */
