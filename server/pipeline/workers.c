#include "server/pipeline/workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "server/ca/signer.h"
#include "server/metrics/metrics.h"
#include "server/pipeline/issue.h"
#include "server/pipeline/queue.h"
#include "server/pipeline/wake.h"

#define MAX_THREADS 64
/* Nonces each worker keeps ready per CA, and how many it prepares at a
 * time while idle (so a new job waits at most one small refill). */
#define POOL_CAPACITY 512
#define REFILL_STEP 16

struct pkid_workers {
  /* Each queue holds at most |capacity| jobs, since no more are in flight:
   * pushes between stages can never fail. */
  pkid_queue jobs, commits, done;
  /* Workers sleep on |jobs_wake| while |jobs| is empty, the committer on
   * |commits_wake| while |commits| is (wake.h). */
  pkid_wake jobs_wake, commits_wake;
  int wakes_made; /* how many of the two exist */
  uv_async_t async;
  pthread_t threads[MAX_THREADS];
  pkid_signers *signers[MAX_THREADS]; /* each worker's own */
  unsigned num_threads;               /* started */
  pthread_t committer;
  int committer_started;
  atomic_int stopping;
  size_t capacity;
  size_t in_flight; /* loop thread only */
  pkid_commit_fn commit;
  void *commit_ctx;
  atomic_uint_least64_t jobs_done, worker_batches, commit_batches, commit_ns_total;
  /* The last commit's outcome: |commit_ok|, else its error, under the lock
   * (taken only when a commit fails and when the error is read). */
  atomic_int commit_ok;
  pthread_mutex_t commit_err_lock;
  pki_err commit_err;
  int seen_ok; /* loop thread: commit_ok when |on_state| last ran */
  void (*on_state)(void *ctx);
  void *state_ctx;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A stage's queue and whether its thread should stop waiting on it. */
typedef struct stage {
  pkid_workers *w;
  pkid_queue *q;
  int stop_at; /* the |stopping| value past which an empty queue ends it */
} stage;

static int stage_ready(void *ctx) {
  const stage *st = ctx;
  return pkid_queue_depth_approx(st->q) > 0 || atomic_load(&st->w->stopping) >= st->stop_at;
}

/* take pops up to |max| items from the stage's queue, sleeping while it is
 * empty. Returns 0 once stopping and nothing is left. */
static size_t take(stage *st, pkid_wake *wk, void **out, size_t max) {
  for (;;) {
    size_t n = pkid_queue_pop_batch_mpmc(st->q, out, max);
    if (n > 0) return n;
    if (atomic_load(&st->w->stopping) >= st->stop_at && pkid_queue_depth_approx(st->q) == 0) {
      return 0;
    }
    pkid_wake_wait(wk, stage_ready, st);
  }
}

typedef struct worker_arg {
  pkid_workers *w;
  pkid_signers *signers;
} worker_arg;

/* keep_refilling: nonces are prepared only while no job waits, so the
 * work moves off the request path into idle time. */
static int keep_refilling(void *ctx) {
  pkid_workers *w = ctx;
  return pkid_queue_depth_approx(&w->jobs) == 0 && !atomic_load(&w->stopping);
}

static void run_job(pkid_job *job, const pkid_signers *signers) {
  if (atomic_load_explicit(&job->cancelled, memory_order_relaxed)) {
    job->ok = 0;
    PKI_ERR(&job->err, PKI_ERR_UNAVAILABLE, "the call went away before its job was signed");
    return;
  }
  job->signer = pkid_signers_for(signers, job->rec.ca);
  switch (job->rec.type) {
    case PKI_REC_ISSUE: pkid_issue_run(job); break;
    case PKI_REC_REVOKE: pkid_revoke_run(job); break;
    default: job->ok = 1; break; /* a reservation only needs the journal */
  }
}

static void *worker_main(void *arg) {
  pthread_setname_np(pthread_self(), "pkid-worker"); /* top -H, perf */
  pkid_workers *w = ((worker_arg *)arg)->w;
  pkid_signers *signers = ((worker_arg *)arg)->signers;
  free(arg);
  void *batch[PKID_WORKER_BATCH];
  stage jobs = {w, &w->jobs, 1};
  size_t n;
  for (;;) {
    if (pkid_queue_depth_approx(&w->jobs) == 0) {
      pkid_signers_refill(signers, REFILL_STEP, keep_refilling, w);
    }
    if ((n = take(&jobs, &w->jobs_wake, batch, PKID_WORKER_BATCH)) == 0) break;
    for (size_t i = 0; i < n; i++) run_job(batch[i], signers);
    atomic_fetch_add(&w->worker_batches, 1);
    pkid_histogram_observe(pkid_m.worker_batch_size, (double)n);
    for (size_t i = 0; i < n; i++) pkid_queue_push_mpmc(&w->commits, batch[i]);
    pkid_wake_one(&w->commits_wake);
  }
  return NULL;
}

static void *committer_main(void *arg) {
  pthread_setname_np(pthread_self(), "pkid-commit"); /* top -H, perf */
  pkid_workers *w = arg;
  void *batch[PKID_COMMIT_BATCH];
  /* The committer ends only once the workers have all exited (stopping
   * 2) and it has committed all they left. */
  stage commits = {w, &w->commits, 2};
  for (;;) {
    size_t n = take(&commits, &w->commits_wake, batch, PKID_COMMIT_BATCH);
    if (n == 0) break;
    pki_err err;
    pki_err_clear(&err);
    uint64_t start = now_ns();
    int ok = w->commit(w->commit_ctx, (pkid_job **)batch, n, &err);
    uint64_t took = now_ns() - start;
    atomic_fetch_add(&w->commit_ns_total, took);
    atomic_fetch_add(&w->commit_batches, 1);
    pkid_histogram_observe(pkid_m.commit_batch_size, (double)n);
    pkid_histogram_observe(pkid_m.fsync_duration, (double)took / 1e9);
    if (!ok) {
      pkid_counter_add(pkid_m.commit_failures, 1);
      /* Not durable: not issued. */
      for (size_t i = 0; i < n; i++) {
        pkid_job *job = batch[i];
        job->ok = 0;
        job->err = err;
      }
      pthread_mutex_lock(&w->commit_err_lock);
      w->commit_err = err;
      pthread_mutex_unlock(&w->commit_err_lock);
    }
    atomic_store(&w->commit_ok, ok);
    for (size_t i = 0; i < n; i++) pkid_queue_push_mpmc(&w->done, batch[i]);
    uv_async_send(&w->async);
  }
  return NULL;
}

static void on_async(uv_async_t *async) {
  pkid_workers *w = async->data;
  void *batch[256];
  size_t n;
  int ok = atomic_load(&w->commit_ok);
  if (ok != w->seen_ok) {
    w->seen_ok = ok;
    if (w->on_state != NULL) w->on_state(w->state_ctx);
  }
  while ((n = pkid_queue_pop_batch_mpmc(&w->done, batch, 256)) > 0) {
    for (size_t i = 0; i < n; i++) {
      pkid_job *job = batch[i];
      w->in_flight--;
      atomic_fetch_add(&w->jobs_done, 1);
      job->done(job);
    }
  }
  pkid_gauge_set(pkid_m.queue_depth, (double)pkid_queue_depth_approx(&w->jobs));
  pkid_gauge_set(pkid_m.pipeline_in_flight, (double)w->in_flight);
}

/* destroy frees what pkid_workers_new made; the threads have stopped. */
static void destroy(pkid_workers *w) {
  for (unsigned t = 0; t < MAX_THREADS; t++) pkid_signers_free(w->signers[t]);
  if (w->wakes_made > 0) pkid_wake_cleanup(&w->jobs_wake);
  if (w->wakes_made > 1) pkid_wake_cleanup(&w->commits_wake);
  pkid_queue_cleanup(&w->jobs);
  pkid_queue_cleanup(&w->commits);
  pkid_queue_cleanup(&w->done);
  pthread_mutex_destroy(&w->commit_err_lock);
  free(w);
}

/* stop_threads lets every started thread finish and joins it. */
static void stop_threads(pkid_workers *w) {
  atomic_store(&w->stopping, 1);
  pkid_wake_all(&w->jobs_wake);
  for (unsigned i = 0; i < w->num_threads; i++) pthread_join(w->threads[i], NULL);
  atomic_store(&w->stopping, 2);
  if (w->committer_started) {
    pkid_wake_all(&w->commits_wake);
    pthread_join(w->committer, NULL);
  }
}

pkid_workers *pkid_workers_new(uv_loop_t *loop, unsigned num_threads, size_t capacity,
                               const pkid_cas *cas, pkid_commit_fn commit, void *commit_ctx,
                               pki_err *err) {
  if (num_threads == 0 || num_threads > MAX_THREADS) {
    PKI_ERR(err, PKI_ERR_INVALID, "workers must be 1 to %d", MAX_THREADS);
    return NULL;
  }
  size_t cap = 2;
  while (cap < capacity) cap *= 2;
  pkid_workers *w = aligned_alloc(PKID_CACHE_LINE, (sizeof(*w) + PKID_CACHE_LINE - 1) /
                                                       PKID_CACHE_LINE * PKID_CACHE_LINE);
  if (w == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  memset(w, 0, sizeof(*w));
  w->capacity = capacity;
  pkid_gauge_set(pkid_m.pipeline_capacity, (double)capacity);
  w->commit = commit;
  w->commit_ctx = commit_ctx;
  atomic_init(&w->commit_ok, 1);
  w->seen_ok = 1;
  pthread_mutex_init(&w->commit_err_lock, NULL);
  if (!pkid_queue_init(&w->jobs, cap) || !pkid_queue_init(&w->commits, cap) ||
      !pkid_queue_init(&w->done, cap)) {
    PKI_ERR_OOM(err);
    destroy(w);
    return NULL;
  }
  /* Each worker's signers, made here so that a failure is reported. */
  for (unsigned t = 0; t < num_threads; t++) {
    if ((w->signers[t] = pkid_signers_new(cas, POOL_CAPACITY, err)) == NULL) {
      destroy(w);
      return NULL;
    }
  }
  if (!pkid_wake_init(&w->jobs_wake)) goto no_wake;
  w->wakes_made = 1;
  if (!pkid_wake_init(&w->commits_wake)) goto no_wake;
  w->wakes_made = 2;
  int rc = pthread_create(&w->committer, NULL, committer_main, w);
  if (rc != 0) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "cannot start the committer thread: %s", strerror(rc));
    destroy(w);
    return NULL;
  }
  w->committer_started = 1;
  for (unsigned i = 0; i < num_threads; i++) {
    worker_arg *a = malloc(sizeof(*a));
    if (a == NULL) {
      PKI_ERR_OOM(err);
      goto fail_threads;
    }
    a->w = w;
    a->signers = w->signers[i];
    if ((rc = pthread_create(&w->threads[i], NULL, worker_main, a)) != 0) {
      free(a);
      PKI_ERR(err, PKI_ERR_EXHAUSTED, "cannot start worker thread %u: %s", i, strerror(rc));
      goto fail_threads;
    }
    w->num_threads++;
  }
  /* Only now, when nothing can fail any more: the handle would need
   * closing through the loop. */
  uv_async_init(loop, &w->async, on_async);
  w->async.data = w;
  return w;
no_wake:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "cannot make the pool's mutexes and condition variables");
  destroy(w);
  return NULL;
fail_threads:
  stop_threads(w);
  destroy(w);
  return NULL;
}

int pkid_workers_submit(pkid_workers *w, pkid_job *job, pki_err *err) {
  if (w->in_flight >= w->capacity || !pkid_queue_push_mpmc(&w->jobs, job)) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "pkid is at capacity; retry later");
    return 0;
  }
  w->in_flight++;
  pkid_gauge_set(pkid_m.pipeline_in_flight, (double)w->in_flight);
  pkid_wake_one(&w->jobs_wake);
  return 1;
}

void pkid_workers_on_commit_state(pkid_workers *w, void (*fn)(void *ctx), void *ctx) {
  w->on_state = fn;
  w->state_ctx = ctx;
}

int pkid_workers_last_commit(pkid_workers *w, pki_err *out) {
  if (atomic_load(&w->commit_ok)) return 1;
  pthread_mutex_lock(&w->commit_err_lock);
  *out = w->commit_err;
  pthread_mutex_unlock(&w->commit_err_lock);
  return 0;
}

void pkid_workers_stats_get(pkid_workers *w, pkid_workers_stats *out) {
  out->jobs_done = atomic_load(&w->jobs_done);
  out->worker_batches = atomic_load(&w->worker_batches);
  out->commit_batches = atomic_load(&w->commit_batches);
  out->commit_ns_total = atomic_load(&w->commit_ns_total);
  out->depth = pkid_queue_depth_approx(&w->jobs);
  out->in_flight = w->in_flight;
}

/* on_async_closed frees the pool once libuv is done with its handle. */
static void on_async_closed(uv_handle_t *handle) { destroy(handle->data); }

void pkid_workers_free(pkid_workers *w) {
  if (w == NULL) return;
  stop_threads(w);
  on_async(&w->async); /* give back what was committed last */
  uv_close((uv_handle_t *)&w->async, on_async_closed);
}
