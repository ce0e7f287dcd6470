#include "server/workers.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/metrics.h"
#include "server/queue.h"

#include <openssl/digest.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/ecdsa_batch.h"

#define MAX_THREADS 64
#define MAX_CAS 16
/* Nonces each worker keeps ready per CA, and how many it prepares at a
 * time while idle (so a new job waits at most one small refill). */
#define POOL_CAPACITY 512
#define REFILL_STEP 16

/* A worker's own signing state: one ECDSA pool per P-256 CA. Only its
 * thread touches it. */
typedef struct pool_signer {
  pki_ecdsa_pool *pool;
  EVP_PKEY *key; /* the CA's, for when the pool has run dry */
} pool_signer;

typedef struct worker_state {
  pki_ecdsa_pool *pools[MAX_CAS];
  pool_signer ctxs[MAX_CAS];
  pki_signer signers[MAX_CAS];
} worker_state;

struct pkid_workers {
  /* Each queue holds at most |capacity| jobs, since no more are in flight:
   * pushes between stages can never fail. */
  pkid_queue jobs, commits, done;
  sem_t jobs_ready, commits_ready;
  uv_async_t async;
  pthread_t threads[MAX_THREADS];
  worker_state states[MAX_THREADS];
  unsigned num_threads;
  const pkid_cas *cas;
  pthread_t committer;
  atomic_int stopping;
  size_t capacity;
  size_t in_flight; /* loop thread only */
  pkid_commit_fn commit;
  void *commit_ctx;
  pkid_done_fn on_done;
  void *done_ctx;
  atomic_uint_least64_t jobs_done, worker_batches, commit_batches, commit_ns_total;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* take waits for items on |q| (counted by |ready|) and pops up to |max|.
 * Each pushed item is posted once; a batch pop consumes the posts of the
 * items it took where they have arrived (a late post only causes one empty
 * wake-up later). Returns 0 when stopping and nothing is left. */
static size_t take(pkid_workers *w, pkid_queue *q, sem_t *ready, void **out, size_t max) {
  for (;;) {
    while (sem_wait(ready) != 0 && errno == EINTR) {
    }
    size_t n = pkid_queue_pop_batch_mpmc(q, out, max);
    for (size_t i = 1; i < n; i++) {
      if (sem_trywait(ready) != 0) break;
    }
    if (n > 0) return n;
    if (atomic_load(&w->stopping) && pkid_queue_depth_approx(q) == 0) return 0;
  }
}

/* pool_sign is a pki_signer over an ECDSA pool: SHA-256, then a prepared
 * nonce. Under sustained load the pool runs dry; BoringSSL's own signing is
 * then faster than preparing a nonce inline, so it signs directly. */
static int pool_sign(void *ctx, uint8_t **out, size_t *out_len, const uint8_t *data,
                     size_t data_len, pki_err *err) {
  pool_signer *ps = ctx;
  if (pki_ecdsa_pool_available(ps->pool) == 0) {
    return pki_sig_sign(out, out_len, ps->key, data, data_len, err);
  }
  uint8_t digest[SHA256_DIGEST_LENGTH], sig[PKI_ECDSA_P256_SIG_MAX];
  size_t sig_len;
  SHA256(data, data_len, digest);
  if (!pki_ecdsa_pool_sign(ps->pool, sig, &sig_len, sizeof(sig), digest, err)) return 0;
  *out = malloc(sig_len);
  if (*out == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(*out, sig, sig_len);
  *out_len = sig_len;
  return 1;
}

typedef struct worker_arg {
  pkid_workers *w;
  worker_state *state;
} worker_arg;

/* refill_while_idle prepares nonces in small steps for as long as no job
 * waits: the work moves off the request path into idle time. */
static void refill_while_idle(pkid_workers *w, worker_state *st) {
  for (size_t i = 0; w->cas != NULL && i < w->cas->num_cas && i < MAX_CAS; i++) {
    pki_ecdsa_pool *pool = st->pools[i];
    while (pool != NULL && pki_ecdsa_pool_available(pool) < POOL_CAPACITY &&
           pkid_queue_depth_approx(&w->jobs) == 0 && !atomic_load(&w->stopping)) {
      pki_err err;
      if (!pki_ecdsa_pool_refill(pool, REFILL_STEP, &err)) break;
    }
  }
}

static void *worker_main(void *arg) {
  pkid_workers *w = ((worker_arg *)arg)->w;
  worker_state *st = ((worker_arg *)arg)->state;
  free(arg);
  void *batch[PKID_WORKER_BATCH];
  size_t n;
  for (;;) {
    if (pkid_queue_depth_approx(&w->jobs) == 0) refill_while_idle(w, st);
    if ((n = take(w, &w->jobs, &w->jobs_ready, batch, PKID_WORKER_BATCH)) == 0) break;
    for (size_t i = 0; i < n; i++) {
      pkid_job *job = batch[i];
      size_t ca = job->ca != NULL && w->cas != NULL ? (size_t)(job->ca - w->cas->cas) : MAX_CAS;
      job->signer = ca < MAX_CAS && st->pools[ca] != NULL ? &st->signers[ca] : NULL;
      /* Signing happens here; a reservation only needs the journal. */
      if (job->kind == PKID_JOB_ISSUE) {
        pkid_issue_run(job);
      } else if (job->kind == PKID_JOB_REVOKE) {
        pkid_revoke_run(job);
      } else {
        job->ok = 1;
      }
    }
    atomic_fetch_add(&w->worker_batches, 1);
    pkid_histogram_observe(pkid_m.worker_batch_size, (double)n);
    for (size_t i = 0; i < n; i++) {
      pkid_queue_push_mpmc(&w->commits, batch[i]);
      sem_post(&w->commits_ready);
    }
  }
  /* The last worker out wakes the committer so it can see the end. */
  sem_post(&w->commits_ready);
  return NULL;
}

static void *committer_main(void *arg) {
  pkid_workers *w = arg;
  void *batch[PKID_COMMIT_BATCH];
  for (;;) {
    size_t n = take(w, &w->commits, &w->commits_ready, batch, PKID_COMMIT_BATCH);
    if (n == 0) {
      if (atomic_load(&w->stopping) == 2) break; /* workers have all exited */
      continue;
    }
    if (w->commit != NULL) {
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
        /* Not durable: not issued. */
        for (size_t i = 0; i < n; i++) {
          pkid_job *job = batch[i];
          job->ok = 0;
          job->err = err;
        }
      }
    }
    for (size_t i = 0; i < n; i++) pkid_queue_push_mpmc(&w->done, batch[i]);
    uv_async_send(&w->async);
  }
  return NULL;
}

static void on_async(uv_async_t *async) {
  pkid_workers *w = async->data;
  void *batch[256];
  size_t n;
  while ((n = pkid_queue_pop_batch_mpmc(&w->done, batch, 256)) > 0) {
    for (size_t i = 0; i < n; i++) {
      w->in_flight--;
      atomic_fetch_add(&w->jobs_done, 1);
      w->on_done(w->done_ctx, batch[i]);
    }
  }
}

pkid_workers *pkid_workers_new(uv_loop_t *loop, unsigned num_threads, size_t capacity,
                               const pkid_cas *cas, pkid_commit_fn commit, void *commit_ctx,
                               pkid_done_fn done, void *done_ctx, pki_err *err) {
  if (num_threads == 0 || num_threads > MAX_THREADS) {
    PKI_ERR(err, PKI_ERR_INVALID, "workers must be 1 to %d", MAX_THREADS);
    return NULL;
  }
  size_t cap = 2;
  while (cap < capacity) cap *= 2;
  pkid_workers *w = aligned_alloc(PKID_CACHE_LINE, (sizeof(*w) + PKID_CACHE_LINE - 1) /
                                                       PKID_CACHE_LINE * PKID_CACHE_LINE);
  if (w == NULL) goto oom;
  memset(w, 0, sizeof(*w));
  if (!pkid_queue_init(&w->jobs, cap) || !pkid_queue_init(&w->commits, cap) ||
      !pkid_queue_init(&w->done, cap)) {
    pkid_queue_cleanup(&w->jobs);
    pkid_queue_cleanup(&w->commits);
    free(w);
    goto oom;
  }
  w->capacity = capacity;
  w->cas = cas;
  /* Each worker's pools, made here so a failure is reported, not hidden. */
  for (unsigned t = 0; t < num_threads; t++) {
    for (size_t i = 0; cas != NULL && i < cas->num_cas && i < MAX_CAS; i++) {
      if (cas->cas[i].issuer.key_type != PKI_KEY_ECDSA_P256) continue;
      w->states[t].pools[i] = pki_ecdsa_pool_new(cas->cas[i].issuer.key, POOL_CAPACITY, err);
      if (w->states[t].pools[i] == NULL) goto fail_pools;
      w->states[t].ctxs[i] = (pool_signer){w->states[t].pools[i], cas->cas[i].issuer.key};
      w->states[t].signers[i] = (pki_signer){pool_sign, &w->states[t].ctxs[i]};
    }
  }
  w->commit = commit;
  w->commit_ctx = commit_ctx;
  w->on_done = done;
  w->done_ctx = done_ctx;
  sem_init(&w->jobs_ready, 0, 0);
  sem_init(&w->commits_ready, 0, 0);
  uv_async_init(loop, &w->async, on_async);
  w->async.data = w;
  pthread_create(&w->committer, NULL, committer_main, w);
  for (unsigned i = 0; i < num_threads; i++) {
    worker_arg *a = malloc(sizeof(*a));
    if (a == NULL) abort(); /* tiny; at start-up only */
    a->w = w;
    a->state = &w->states[i];
    pthread_create(&w->threads[i], NULL, worker_main, a);
  }
  w->num_threads = num_threads;
  return w;
fail_pools:
  for (unsigned t = 0; t < num_threads; t++) {
    for (size_t i = 0; i < MAX_CAS; i++) pki_ecdsa_pool_free(w->states[t].pools[i]);
  }
  pkid_queue_cleanup(&w->jobs);
  pkid_queue_cleanup(&w->commits);
  pkid_queue_cleanup(&w->done);
  free(w);
  return NULL;
oom:
  PKI_ERR_OOM(err);
  return NULL;
}

int pkid_workers_submit(pkid_workers *w, pkid_job *job) {
  if (w->in_flight >= w->capacity) return 0;
  if (!pkid_queue_push_mpmc(&w->jobs, job)) return 0;
  w->in_flight++;
  sem_post(&w->jobs_ready);
  return 1;
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
static void on_async_closed(uv_handle_t *handle) {
  pkid_workers *w = handle->data;
  for (unsigned t = 0; t < w->num_threads; t++) {
    for (size_t i = 0; i < MAX_CAS; i++) pki_ecdsa_pool_free(w->states[t].pools[i]);
  }
  pkid_queue_cleanup(&w->jobs);
  pkid_queue_cleanup(&w->commits);
  pkid_queue_cleanup(&w->done);
  free(w);
}

void pkid_workers_free(pkid_workers *w) {
  if (w == NULL) return;
  atomic_store(&w->stopping, 1);
  for (unsigned i = 0; i < w->num_threads; i++) sem_post(&w->jobs_ready);
  for (unsigned i = 0; i < w->num_threads; i++) pthread_join(w->threads[i], NULL);
  atomic_store(&w->stopping, 2);
  sem_post(&w->commits_ready);
  pthread_join(w->committer, NULL);
  on_async(&w->async); /* deliver what was committed last */
  sem_destroy(&w->jobs_ready);
  sem_destroy(&w->commits_ready);
  uv_close((uv_handle_t *)&w->async, on_async_closed);
}
