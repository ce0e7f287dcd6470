/* queue_speed measures the worker queue (pkid_queue, the server's queue.c)
 * beside Concurrency Kit's ring (ck_ring.h, Debian's libck-dev 0.7.1):
 * items moved per second from P producer threads to C consumer threads,
 * with single pops and with batched pops, in the shapes pkid uses:
 *
 *   1 thread       pushes 32, then pops them: the cost of the calls
 *                  themselves, with no cache line moving between cores
 *                  (the steadiest figure on a shared machine);
 *   1P1C, 2P2C     the plain cases, single and batched pops;
 *   1P2C batched   the jobs queue: the loop thread pushes, workers pop
 *                  batches;
 *   2P1C batched   the commit queue: workers push, the committer pops
 *                  batches.
 *
 * ck_ring is run twice: with its _mpmc functions, the contract pkid_queue
 * offers everywhere, and with the narrowest variant the shape allows
 * (_spsc, _spmc, _mpsc), which is what a port would use. ck_ring 0.7.1 has
 * no batch dequeue: a "batch" there is repeated dequeues until the batch
 * is full or the ring is empty, one compare-and-swap each, where
 * pkid_queue_pop_batch_mpmc takes the whole run with one. Both rings hold
 * 1024 slots (ck_ring keeps one free: 1023 items).
 *
 * An item counts once (one push and one pop). Threads spin (with
 * sched_yield) on full and empty, as the server's loop and workers would
 * not (they sleep on a semaphore): this is the queue's ceiling, not the
 * server's. Consumers stop when the producers have finished and the queue
 * is empty, so that no shared counter is touched per pop. Each figure is
 * the best of 3 runs, as other processes on the machine only ever make a
 * run slower.
 *
 * Usage: queue_speed [items per run, default 4000000]. Prints a table on
 * stderr and one JSON object on stdout. */
#include <ck_ring.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "server/pipeline/queue.h"

#define CAPACITY 1024
#define BATCH 32
#define MAX_THREADS 8

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* impl names a queue and the concurrency contract its calls are made
 * under. The pop and push below switch on it inside the hot loops, a
 * branch that always goes the same way, so that ck_ring's inline
 * functions are inlined as a user of the header would get them. */
typedef enum impl {
  IMPL_PKID,    /* pkid_queue_*_mpmc */
  IMPL_CK_MPMC, /* ck_ring_*_mpmc */
  IMPL_CK_SPSC,
  IMPL_CK_SPMC,
  IMPL_CK_MPSC,
} impl;

static const char *const kImplNames[] = {"pkid_queue", "ck_ring_mpmc", "ck_ring_spsc",
                                         "ck_ring_spmc", "ck_ring_mpsc"};

typedef struct run {
  pkid_queue q;
  alignas(PKID_CACHE_LINE) ck_ring_t ring;
  ck_ring_buffer_t *ring_buf; /* CAPACITY slots, ours */
  impl impl;
  size_t items; /* total over all producers */
  size_t producers;
  size_t batch; /* consumers' batch size; 1: single pops */
  /* Set once every producer has returned: an empty queue is then final. */
  alignas(PKID_CACHE_LINE) atomic_int producers_done;
  atomic_size_t checksum;
} run;

typedef struct arg {
  run *r;
  size_t id;
} arg;

static inline int push(run *r, void *item) {
  switch (r->impl) {
    case IMPL_PKID: return pkid_queue_push_mpmc(&r->q, item);
    case IMPL_CK_MPMC: return ck_ring_enqueue_mpmc(&r->ring, r->ring_buf, item);
    case IMPL_CK_SPSC: return ck_ring_enqueue_spsc(&r->ring, r->ring_buf, item);
    case IMPL_CK_SPMC: return ck_ring_enqueue_spmc(&r->ring, r->ring_buf, item);
    case IMPL_CK_MPSC: return ck_ring_enqueue_mpsc(&r->ring, r->ring_buf, item);
  }
  return 0;
}

static inline int ck_pop_one(run *r, void **out) {
  switch (r->impl) {
    case IMPL_CK_MPMC: return ck_ring_dequeue_mpmc(&r->ring, r->ring_buf, out);
    case IMPL_CK_SPSC: return ck_ring_dequeue_spsc(&r->ring, r->ring_buf, out);
    case IMPL_CK_SPMC: return ck_ring_dequeue_spmc(&r->ring, r->ring_buf, out);
    case IMPL_CK_MPSC: return ck_ring_dequeue_mpsc(&r->ring, r->ring_buf, out);
    case IMPL_PKID: break;
  }
  return 0;
}

/* pop takes up to |r->batch| items into |out| and returns how many. */
static inline size_t pop(run *r, void **out) {
  if (r->impl == IMPL_PKID) {
    return r->batch == 1 ? (size_t)pkid_queue_pop_mpmc(&r->q, &out[0])
                         : pkid_queue_pop_batch_mpmc(&r->q, out, r->batch);
  }
  size_t n = 0;
  while (n < r->batch && ck_pop_one(r, &out[n])) n++;
  return n;
}

static void *producer(void *p) {
  arg *a = p;
  run *r = a->r;
  for (size_t i = a->id; i < r->items; i += r->producers) {
    while (!push(r, (void *)(uintptr_t)(i + 1))) {
      sched_yield();
    }
  }
  return NULL;
}

static void *consumer(void *p) {
  arg *a = p;
  run *r = a->r;
  void *buf[BATCH];
  size_t sum = 0;
  for (;;) {
    size_t n = pop(r, buf);
    if (n == 0) {
      /* Read the flag first: if it was set, every push happened before
       * this second look, and empty means done. */
      if (atomic_load(&r->producers_done) && (n = pop(r, buf)) == 0) break;
      if (n == 0) {
        sched_yield();
        continue;
      }
    }
    for (size_t i = 0; i < n; i++) sum += (uintptr_t)buf[i];
  }
  atomic_fetch_add(&r->checksum, sum);
  return NULL;
}

/* one_thread moves |r->items| items through the queue on the calling
 * thread, BATCH pushes then pops at a time. */
static void one_thread(run *r) {
  void *buf[BATCH];
  size_t sum = 0;
  for (size_t i = 0; i < r->items; i += BATCH) {
    for (size_t j = 0; j < BATCH; j++) push(r, (void *)(uintptr_t)(i + j + 1));
    for (size_t got = 0; got < BATCH;) {
      size_t n = pop(r, buf);
      for (size_t j = 0; j < n; j++) sum += (uintptr_t)buf[j];
      got += n;
    }
  }
  atomic_store(&r->checksum, sum);
}

/* measure returns items per second, or -1 if an item went missing or the
 * queue could not be made. With no producers and no consumers the calling
 * thread does both (one_thread). */
static double measure(impl im, size_t producers, size_t consumers, size_t batch, size_t items) {
  static run r;
  r.impl = im;
  if (im == IMPL_PKID) {
    if (!pkid_queue_init(&r.q, CAPACITY)) return -1;
  } else {
    r.ring_buf = aligned_alloc(PKID_CACHE_LINE, CAPACITY * sizeof(ck_ring_buffer_t));
    if (r.ring_buf == NULL) return -1;
    ck_ring_init(&r.ring, CAPACITY);
  }
  if (producers == 0) items -= items % BATCH;
  r.items = items;
  r.producers = producers;
  r.batch = batch;
  atomic_init(&r.producers_done, 0);
  atomic_init(&r.checksum, 0);
  pthread_t pt[MAX_THREADS], ct[MAX_THREADS];
  arg pa[MAX_THREADS], ca[MAX_THREADS];
  double start = now_s();
  if (producers == 0) one_thread(&r);
  for (size_t i = 0; i < consumers; i++) {
    ca[i] = (arg){&r, i};
    pthread_create(&ct[i], NULL, consumer, &ca[i]);
  }
  for (size_t i = 0; i < producers; i++) {
    pa[i] = (arg){&r, i};
    pthread_create(&pt[i], NULL, producer, &pa[i]);
  }
  for (size_t i = 0; i < producers; i++) pthread_join(pt[i], NULL);
  atomic_store(&r.producers_done, 1);
  for (size_t i = 0; i < consumers; i++) pthread_join(ct[i], NULL);
  double secs = now_s() - start;
  if (im == IMPL_PKID) {
    pkid_queue_cleanup(&r.q);
  } else {
    free(r.ring_buf);
    r.ring_buf = NULL;
  }
  size_t want = items * (items + 1) / 2; /* items 1..items */
  if (atomic_load(&r.checksum) != want) return -1;
  return (double)items / secs;
}

static double best_of_3(impl im, size_t producers, size_t consumers, size_t batch,
                        size_t items) {
  double best = 0;
  for (int i = 0; i < 3; i++) {
    double rate = measure(im, producers, consumers, batch, items);
    if (rate < 0) return -1;
    if (rate > best) best = rate;
  }
  return best;
}

typedef struct scenario {
  const char *key;   /* in the JSON names */
  const char *title; /* in the table */
  size_t producers, consumers, batch;
  impl fitted; /* the narrowest ck_ring variant for this shape */
  double rate[3]; /* pkid_queue, ck_ring mpmc, ck_ring fitted */
} scenario;

int main(int argc, char **argv) {
  size_t items = argc > 1 ? (size_t)atol(argv[1]) : 4000000;
  scenario sc[] = {
      {"1thread", "1 thread, single pops", 0, 0, 1, IMPL_CK_SPSC, {0}},
      {"1thread_batch32", "1 thread, batches of 32", 0, 0, BATCH, IMPL_CK_SPSC, {0}},
      {"1p1c", "1P1C, single pops", 1, 1, 1, IMPL_CK_SPSC, {0}},
      {"1p1c_batch32", "1P1C, batches of 32", 1, 1, BATCH, IMPL_CK_SPSC, {0}},
      {"2p2c", "2P2C, single pops", 2, 2, 1, IMPL_CK_MPMC, {0}},
      {"2p2c_batch32", "2P2C, batches of 32", 2, 2, BATCH, IMPL_CK_MPMC, {0}},
      {"1p2c_batch32", "1P2C, batches of 32 (jobs)", 1, 2, BATCH, IMPL_CK_SPMC, {0}},
      {"2p1c_batch32", "2P1C, batches of 32 (commits)", 2, 1, BATCH, IMPL_CK_MPSC, {0}},
  };
  size_t num = sizeof(sc) / sizeof(sc[0]);
  for (size_t i = 0; i < num; i++) {
    scenario *s = &sc[i];
    impl impls[3] = {IMPL_PKID, IMPL_CK_MPMC, s->fitted};
    for (int k = 0; k < 3; k++) {
      if (k == 2 && s->fitted == IMPL_CK_MPMC) {
        s->rate[2] = s->rate[1];
        continue;
      }
      s->rate[k] = best_of_3(impls[k], s->producers, s->consumers, s->batch, items);
      if (s->rate[k] < 0) {
        fprintf(stderr, "queue_speed: %s, %s: items went missing\n", kImplNames[impls[k]],
                s->title);
        return 1;
      }
    }
  }

  fprintf(stderr, "million items/s, best of 3 runs of %zu items\n", items);
  fprintf(stderr, "%-30s %10s %13s   %s\n", "scenario", "pkid_queue", "ck_ring_mpmc",
          "ck_ring, narrowest variant");
  for (size_t i = 0; i < num; i++) {
    const scenario *s = &sc[i];
    fprintf(stderr, "%-30s %10.2f %13.2f   %6.2f %s\n", s->title, s->rate[0] / 1e6,
            s->rate[1] / 1e6, s->rate[2] / 1e6, kImplNames[s->fitted]);
  }

  printf("{");
  for (size_t i = 0; i < num; i++) {
    const scenario *s = &sc[i];
    printf("\"queue_%s_items_per_s\": %.0f, \"ck_ring_mpmc_%s_items_per_s\": %.0f, ", s->key,
           s->rate[0], s->key, s->rate[1]);
    if (s->fitted != IMPL_CK_MPMC) {
      printf("\"%s_%s_items_per_s\": %.0f, ", kImplNames[s->fitted], s->key, s->rate[2]);
    }
  }
  printf("\"items\": %zu, \"cpus\": %ld}\n", items, sysconf(_SC_NPROCESSORS_ONLN));
  return 0;
}
