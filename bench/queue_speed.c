/* queue_speed measures the worker queue (server/queue.c): items moved per
 * second from P producer threads to C consumer threads, for 1P1C and 2P2C,
 * with single pops and with batched pops. An item counts once (one push
 * and one pop). Threads spin (with sched_yield) on full and empty, as the
 * server's loop and workers would not: this is the queue's ceiling, not
 * the server's. Each figure is the best of 3 runs, as other processes on
 * the machine only ever make a run slower.
 * Usage: queue_speed [items per run, default 4000000]. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "server/queue.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct run {
  pkid_queue q;
  size_t items;       /* total over all producers */
  size_t producers;
  size_t batch;       /* consumers' batch size; 1: pkid_queue_pop_mpmc */
  atomic_size_t consumed;
  atomic_size_t checksum;
} run;

typedef struct arg {
  run *r;
  size_t id;
} arg;

static void *producer(void *p) {
  arg *a = p;
  run *r = a->r;
  for (size_t i = a->id; i < r->items; i += r->producers) {
    while (!pkid_queue_push_mpmc(&r->q, (void *)(uintptr_t)(i + 1))) {
      sched_yield();
    }
  }
  return NULL;
}

static void *consumer(void *p) {
  arg *a = p;
  run *r = a->r;
  void *buf[64];
  size_t sum = 0;
  while (atomic_load_explicit(&r->consumed, memory_order_relaxed) < r->items) {
    size_t n = r->batch == 1 ? (size_t)pkid_queue_pop_mpmc(&r->q, &buf[0])
                             : pkid_queue_pop_batch_mpmc(&r->q, buf, r->batch);
    if (n == 0) {
      sched_yield();
      continue;
    }
    for (size_t i = 0; i < n; i++) sum += (uintptr_t)buf[i];
    atomic_fetch_add_explicit(&r->consumed, n, memory_order_relaxed);
  }
  atomic_fetch_add(&r->checksum, sum);
  return NULL;
}

/* measure returns items per second, or -1 if an item went missing. */
static double measure(size_t producers, size_t consumers, size_t batch,
                      size_t items) {
  static run r;
  if (!pkid_queue_init(&r.q, 1024)) return -1;
  r.items = items;
  r.producers = producers;
  r.batch = batch;
  atomic_init(&r.consumed, 0);
  atomic_init(&r.checksum, 0);
  pthread_t pt[8], ct[8];
  arg pa[8], ca[8];
  double start = now_s();
  for (size_t i = 0; i < consumers; i++) {
    ca[i] = (arg){&r, i};
    pthread_create(&ct[i], NULL, consumer, &ca[i]);
  }
  for (size_t i = 0; i < producers; i++) {
    pa[i] = (arg){&r, i};
    pthread_create(&pt[i], NULL, producer, &pa[i]);
  }
  for (size_t i = 0; i < producers; i++) pthread_join(pt[i], NULL);
  for (size_t i = 0; i < consumers; i++) pthread_join(ct[i], NULL);
  double secs = now_s() - start;
  pkid_queue_cleanup(&r.q);
  size_t want = items * (items + 1) / 2; /* items 1..items */
  if (atomic_load(&r.checksum) != want) return -1;
  return (double)items / secs;
}

static double best_of_3(size_t producers, size_t consumers, size_t batch,
                        size_t items) {
  double best = 0;
  for (int i = 0; i < 3; i++) {
    double rate = measure(producers, consumers, batch, items);
    if (rate < 0) return -1;
    if (rate > best) best = rate;
  }
  return best;
}

int main(int argc, char **argv) {
  size_t items = argc > 1 ? (size_t)atol(argv[1]) : 4000000;
  double p1c1 = best_of_3(1, 1, 1, items);
  double p1c1b = best_of_3(1, 1, 32, items);
  double p2c2 = best_of_3(2, 2, 1, items);
  double p2c2b = best_of_3(2, 2, 32, items);
  if (p1c1 < 0 || p1c1b < 0 || p2c2 < 0 || p2c2b < 0) {
    fprintf(stderr, "queue_speed: items went missing\n");
    return 1;
  }
  printf("{\"queue_1p1c_items_per_s\": %.0f, \"queue_1p1c_batch32_items_per_s\": %.0f, "
         "\"queue_2p2c_items_per_s\": %.0f, \"queue_2p2c_batch32_items_per_s\": %.0f, "
         "\"cpus\": %ld}\n",
         p1c1, p1c1b, p2c2, p2c2b, sysconf(_SC_NPROCESSORS_ONLN));
  return 0;
}
