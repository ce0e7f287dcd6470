/* queue_test: server/queue.c, alone and under 4 producers and 4 consumers.
 * Run under --config=tsan too: the stress case is what ThreadSanitizer
 * checks for data races on the items and the cells. */
#include "server/pipeline/queue.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>

#include "tests/unit/test.h"

/* Items are small integers dressed as pointers; the queue never looks
 * through them. Item 0 is NULL, which must pass like any other. */
#define ITEM(i) ((void *)(uintptr_t)(i))
#define VALUE(p) ((size_t)(uintptr_t)(p))

TEST(init_rejects_bad_capacity) {
  pkid_queue q;
  CHECK(!pkid_queue_init(&q, 0));
  CHECK(!pkid_queue_init(&q, 1));
  CHECK(!pkid_queue_init(&q, 3));
  CHECK(!pkid_queue_init(&q, 1000));
  pkid_queue_cell cells[4];
  CHECK(!pkid_queue_init_with_storage(&q, cells, 6));
  CHECK(!pkid_queue_init_with_storage(&q, NULL, 4));
  REQUIRE(pkid_queue_init(&q, 2));
  CHECK(pkid_queue_capacity(&q) == 2);
  pkid_queue_cleanup(&q);
}

TEST(indices_on_separate_cache_lines) {
  CHECK(offsetof(pkid_queue, pop_pos) - offsetof(pkid_queue, push_pos) >=
        PKID_CACHE_LINE);
  CHECK(offsetof(pkid_queue, cells) - offsetof(pkid_queue, pop_pos) >=
        PKID_CACHE_LINE);
  CHECK(alignof(pkid_queue) == PKID_CACHE_LINE);
}

TEST(fifo_full_and_empty) {
  pkid_queue q;
  REQUIRE(pkid_queue_init(&q, 8));
  void *out = ITEM(99);
  CHECK(!pkid_queue_pop_mpmc(&q, &out));
  CHECK(out == ITEM(99)); /* untouched when empty */
  CHECK(pkid_queue_depth_approx(&q) == 0);
  for (size_t i = 0; i < 8; i++) CHECK(pkid_queue_push_mpmc(&q, ITEM(i)));
  CHECK(pkid_queue_depth_approx(&q) == 8);
  CHECK(!pkid_queue_push_mpmc(&q, ITEM(8))); /* full: refused at once */
  for (size_t i = 0; i < 8; i++) {
    CHECK(pkid_queue_pop_mpmc(&q, &out));
    CHECK(out == ITEM(i));
  }
  CHECK(!pkid_queue_pop_mpmc(&q, &out));
  CHECK(pkid_queue_depth_approx(&q) == 0);
  pkid_queue_cleanup(&q);
}

/* Many laps around a small ring, with the queue half full, so that every
 * cell's sequence number goes through many generations. */
TEST(wraps_around_many_laps) {
  pkid_queue_cell cells[4];
  pkid_queue q;
  REQUIRE(pkid_queue_init_with_storage(&q, cells, 4));
  size_t next_in = 0, next_out = 0;
  int ok = 1;
  for (int round = 0; round < 10000 && ok; round++) {
    ok &= pkid_queue_push_mpmc(&q, ITEM(next_in++));
    ok &= pkid_queue_push_mpmc(&q, ITEM(next_in++));
    void *out;
    ok &= pkid_queue_pop_mpmc(&q, &out) && out == ITEM(next_out++);
    ok &= pkid_queue_pop_mpmc(&q, &out) && out == ITEM(next_out++);
  }
  CHECK(ok);
  CHECK(pkid_queue_depth_approx(&q) == 0);
  pkid_queue_cleanup(&q); /* storage is ours; cleanup must not free it */
}

TEST(pop_batch) {
  pkid_queue q;
  REQUIRE(pkid_queue_init(&q, 16));
  void *out[32];
  CHECK(pkid_queue_pop_batch_mpmc(&q, out, 32) == 0);
  for (size_t i = 0; i < 10; i++) CHECK(pkid_queue_push_mpmc(&q, ITEM(i)));
  CHECK(pkid_queue_pop_batch_mpmc(&q, out, 0) == 0);
  CHECK(pkid_queue_pop_batch_mpmc(&q, out, 4) == 4);
  for (size_t i = 0; i < 4; i++) CHECK(out[i] == ITEM(i));
  CHECK(pkid_queue_depth_approx(&q) == 6);
  CHECK(pkid_queue_pop_batch_mpmc(&q, out, 32) == 6);
  for (size_t i = 0; i < 6; i++) CHECK(out[i] == ITEM(4 + i));
  /* A full ring wrapped: the batch never takes more than the capacity. */
  for (size_t i = 0; i < 16; i++) CHECK(pkid_queue_push_mpmc(&q, ITEM(100 + i)));
  CHECK(!pkid_queue_push_mpmc(&q, ITEM(0)));
  CHECK(pkid_queue_pop_batch_mpmc(&q, out, 32) == 16);
  for (size_t i = 0; i < 16; i++) CHECK(out[i] == ITEM(100 + i));
  CHECK(pkid_queue_push_mpmc(&q, ITEM(7)));
  void *one;
  CHECK(pkid_queue_pop_mpmc(&q, &one) && one == ITEM(7));
  pkid_queue_cleanup(&q);
}

/* The stress case: NPROD producers push disjoint numbered items, NCONS
 * consumers (half with single pops, half with batches) take them. Every
 * item must arrive exactly once, and a consumer must see any one
 * producer's items in the order they were pushed (positions are claimed in
 * push order, and a consumer claims increasing positions). */
#define NPROD 4
#define NCONS 4
#ifndef QUEUE_STRESS_ITEMS
#define QUEUE_STRESS_ITEMS 200000
#endif
#define STRESS_DEADLINE_S 20.0

typedef struct stress {
  pkid_queue q;
  atomic_uchar *seen;      /* per item: how many times it was popped */
  atomic_size_t consumed;  /* items popped so far, over all consumers */
  atomic_int order_errors;
  atomic_int timed_out;
  double deadline;
} stress;

typedef struct worker_arg {
  stress *s;
  size_t id;
} worker_arg;

/* Item numbers interleave producers: item = i * NPROD + producer. */
static void *producer(void *p) {
  worker_arg *a = p;
  for (size_t i = a->id; i < QUEUE_STRESS_ITEMS; i += NPROD) {
    while (!pkid_queue_push_mpmc(&a->s->q, ITEM(i))) {
      if (test_now() > a->s->deadline) {
        atomic_store(&a->s->timed_out, 1);
        return NULL;
      }
      sched_yield(); /* full: let a consumer run (2 cores, 8 threads) */
    }
  }
  return NULL;
}

static void *consumer(void *p) {
  worker_arg *a = p;
  stress *s = a->s;
  size_t last[NPROD];
  int have_last[NPROD] = {0};
  void *batch[16];
  while (atomic_load(&s->consumed) < QUEUE_STRESS_ITEMS) {
    size_t n;
    if (a->id % 2 == 0) {
      n = pkid_queue_pop_mpmc(&s->q, &batch[0]);
    } else {
      n = pkid_queue_pop_batch_mpmc(&s->q, batch, 16);
    }
    if (n == 0) {
      if (test_now() > s->deadline) {
        atomic_store(&s->timed_out, 1);
        return NULL;
      }
      sched_yield();
      continue;
    }
    for (size_t i = 0; i < n; i++) {
      size_t v = VALUE(batch[i]);
      if (v >= QUEUE_STRESS_ITEMS) {
        atomic_fetch_add(&s->order_errors, 1);
        continue;
      }
      atomic_fetch_add_explicit(&s->seen[v], 1, memory_order_relaxed);
      size_t prod = v % NPROD;
      if (have_last[prod] && v <= last[prod]) {
        atomic_fetch_add(&s->order_errors, 1);
      }
      last[prod] = v;
      have_last[prod] = 1;
    }
    atomic_fetch_add(&s->consumed, n);
  }
  return NULL;
}

TEST(stress_4_producers_4_consumers) {
  static stress s;
  /* A small ring: thousands of laps, and producers often find it full. */
  REQUIRE(pkid_queue_init(&s.q, 64));
  s.seen = calloc(QUEUE_STRESS_ITEMS, sizeof(*s.seen));
  REQUIRE(s.seen != NULL);
  atomic_init(&s.consumed, 0);
  atomic_init(&s.order_errors, 0);
  atomic_init(&s.timed_out, 0);
  s.deadline = test_now() + STRESS_DEADLINE_S;

  pthread_t prod[NPROD], cons[NCONS];
  worker_arg pa[NPROD], ca[NCONS];
  for (size_t i = 0; i < NCONS; i++) {
    ca[i] = (worker_arg){&s, i};
    REQUIRE(pthread_create(&cons[i], NULL, consumer, &ca[i]) == 0);
  }
  for (size_t i = 0; i < NPROD; i++) {
    pa[i] = (worker_arg){&s, i};
    REQUIRE(pthread_create(&prod[i], NULL, producer, &pa[i]) == 0);
  }
  for (size_t i = 0; i < NPROD; i++) pthread_join(prod[i], NULL);
  for (size_t i = 0; i < NCONS; i++) pthread_join(cons[i], NULL);

  CHECK(!atomic_load(&s.timed_out));
  CHECK(atomic_load(&s.consumed) == QUEUE_STRESS_ITEMS);
  CHECK(atomic_load(&s.order_errors) == 0);
  size_t missing = 0, duplicated = 0;
  for (size_t i = 0; i < QUEUE_STRESS_ITEMS; i++) {
    unsigned char c = atomic_load(&s.seen[i]);
    if (c == 0) missing++;
    if (c > 1) duplicated++;
  }
  if (missing != 0 || duplicated != 0) {
    fprintf(stderr, "  %zu items missing, %zu duplicated\n", missing, duplicated);
  }
  CHECK(missing == 0);
  CHECK(duplicated == 0);
  CHECK(pkid_queue_depth_approx(&s.q) == 0);
  free(s.seen);
  pkid_queue_cleanup(&s.q);
}

int main(void) {
  RUN(init_rejects_bad_capacity);
  RUN(indices_on_separate_cache_lines);
  RUN(fifo_full_and_empty);
  RUN(wraps_around_many_laps);
  RUN(pop_batch);
  RUN(stress_4_producers_4_consumers);
  return test_finish();
}
