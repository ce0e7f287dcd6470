/* wake_test: server/pipeline/wake.c, the sleep and wake-up of the
 * pipeline's threads. A burst of pushes hands one sleeper one wake; and,
 * over thousands of bursts with the consumers asleep in between, no wake
 * is lost (a lost one leaves items queued and every consumer asleep,
 * which the deadline turns into a failure instead of a hang). Run under
 * --config=tsan too. */
#include "server/pipeline/wake.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>

#include "server/pipeline/queue.h"
#include "tests/unit/test.h"

#define DEADLINE_S 20.0

typedef struct fixture {
  pkid_wake wk;
  pkid_queue q;
  atomic_int stop;
  atomic_size_t consumed;
} fixture;

static int ready(void *ctx) {
  fixture *f = ctx;
  return pkid_queue_depth_approx(&f->q) > 0 || atomic_load(&f->stop);
}

/* consumer pops what it can and sleeps when the queue is empty, as the
 * workers and the committer do. */
static void *consumer(void *arg) {
  fixture *f = arg;
  void *batch[16];
  while (!atomic_load(&f->stop)) {
    size_t n = pkid_queue_pop_batch_mpmc(&f->q, batch, 16);
    if (n > 0) {
      atomic_fetch_add(&f->consumed, n);
      continue;
    }
    pkid_wake_wait(&f->wk, ready, f);
  }
  return NULL;
}

static void fixture_init(fixture *f) {
  REQUIRE(pkid_wake_init(&f->wk));
  REQUIRE(pkid_queue_init(&f->q, 1024));
  atomic_init(&f->stop, 0);
  atomic_init(&f->consumed, 0);
}

static void fixture_cleanup(fixture *f) {
  pkid_queue_cleanup(&f->q);
  pkid_wake_cleanup(&f->wk);
}

static unsigned asleep_now(pkid_wake *wk) {
  pthread_mutex_lock(&wk->mu);
  unsigned n = wk->asleep;
  pthread_mutex_unlock(&wk->mu);
  return n;
}

/* wait_asleep waits (bounded) until |n| consumers sleep. */
static int wait_asleep(pkid_wake *wk, unsigned n) {
  double deadline = test_now() + DEADLINE_S;
  while (asleep_now(wk) != n) {
    if (test_now() > deadline) return 0;
    sched_yield();
  }
  return 1;
}

TEST(nobody_asleep_nothing_to_do) {
  fixture f;
  fixture_init(&f);
  pkid_wake_one(&f.wk);
  pkid_wake_all(&f.wk);
  CHECK(f.wk.asleep == 0);
  CHECK(f.wk.wakes == 0); /* nothing handed out to nobody */
  /* Ready at once: the wait returns without sleeping. */
  atomic_store(&f.stop, 1);
  pkid_wake_wait(&f.wk, ready, &f);
  CHECK(f.wk.asleep == 0);
  fixture_cleanup(&f);
}

/* held_consumer sleeps until woken, then waits for |go| before taking
 * anything: the wakes handed out meanwhile are counted undisturbed. */
typedef struct held {
  fixture *f;
  atomic_int go;
} held;

static void *held_consumer(void *arg) {
  held *h = arg;
  pkid_wake_wait(&h->f->wk, ready, h->f);
  while (!atomic_load(&h->go)) sched_yield();
  void *batch[16];
  atomic_fetch_add(&h->f->consumed, pkid_queue_pop_batch_mpmc(&h->f->q, batch, 16));
  return NULL;
}

static unsigned long handed_now(pkid_wake *wk) {
  pthread_mutex_lock(&wk->mu);
  unsigned long n = wk->handed;
  pthread_mutex_unlock(&wk->mu);
  return n;
}

TEST(burst_hands_one_sleeper_one_wake) {
  fixture f;
  fixture_init(&f);
  held h = {&f, 0};
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, held_consumer, &h) == 0);
  REQUIRE(wait_asleep(&f.wk, 1));
  /* Ten pushes, each followed by a wake, as ten jobs submitted while a
   * worker sleeps: the first hands it its wake; the other nine find
   * nobody left to wake, and make no system call. */
  for (uintptr_t i = 0; i < 10; i++) {
    REQUIRE(pkid_queue_push_mpmc(&f.q, (void *)i));
    pkid_wake_one(&f.wk);
  }
  CHECK(handed_now(&f.wk) == 1);
  atomic_store(&h.go, 1);
  pthread_join(t, NULL);
  CHECK(atomic_load(&f.consumed) == 10);
  /* The wake handed out was taken: none is left for a sleeper-to-be. */
  CHECK(f.wk.wakes == 0);
  CHECK(f.wk.asleep == 0);
  fixture_cleanup(&f);
}

TEST(wake_all_wakes_every_sleeper) {
  fixture f;
  fixture_init(&f);
  pthread_t t[3];
  for (int i = 0; i < 3; i++) REQUIRE(pthread_create(&t[i], NULL, consumer, &f) == 0);
  REQUIRE(wait_asleep(&f.wk, 3));
  atomic_store(&f.stop, 1);
  pkid_wake_all(&f.wk);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  CHECK(f.wk.handed == 3);
  CHECK(f.wk.wakes == 0);
  CHECK(f.wk.asleep == 0);
  fixture_cleanup(&f);
}

#define CONSUMERS 3
#define BURSTS 4000

/* Bursts of 1 to 4 items from the main thread and a second producer, each
 * waited out before the next, so that the consumers fall asleep between
 * them and every burst goes through the sleep and the wake-up. */
typedef struct producer_arg {
  fixture *f;
  atomic_size_t burst; /* the burst the second producer should add to */
  atomic_size_t done;  /* the last burst it added to */
} producer_arg;

static void *second_producer(void *arg) {
  producer_arg *p = arg;
  size_t seen = 0;
  double deadline = test_now() + DEADLINE_S;
  while (seen < BURSTS && test_now() < deadline) {
    size_t b = atomic_load(&p->burst);
    if (b == seen) {
      sched_yield();
      continue;
    }
    seen = b;
    while (!pkid_queue_push_mpmc(&p->f->q, NULL)) sched_yield();
    pkid_wake_one(&p->f->wk);
    atomic_store(&p->done, b);
  }
  return NULL;
}

TEST(no_wake_lost_over_many_bursts) {
  fixture f;
  fixture_init(&f);
  pthread_t cons[CONSUMERS], prod;
  for (int i = 0; i < CONSUMERS; i++) {
    REQUIRE(pthread_create(&cons[i], NULL, consumer, &f) == 0);
  }
  producer_arg p = {&f, 0, 0};
  REQUIRE(pthread_create(&prod, NULL, second_producer, &p) == 0);
  size_t pushed = 0;
  int lost = 0;
  double deadline = test_now() + DEADLINE_S;
  for (size_t b = 1; b <= BURSTS && !lost; b++) {
    size_t n = 1 + b % 4;
    atomic_store(&p.burst, b);
    for (size_t i = 0; i < n; i++) {
      while (!pkid_queue_push_mpmc(&f.q, NULL)) sched_yield();
      pkid_wake_one(&f.wk);
    }
    pushed += n + 1;
    /* Wait for the burst to be taken: a lost wake leaves it queued. */
    while (atomic_load(&p.done) != b || atomic_load(&f.consumed) != pushed) {
      if (test_now() > deadline) {
        lost = 1;
        break;
      }
      sched_yield();
    }
  }
  if (lost) {
    fprintf(stderr, "  %zu of %zu items taken; %zu queued\n", atomic_load(&f.consumed), pushed,
            pkid_queue_depth_approx(&f.q));
  }
  CHECK(!lost);
  atomic_store(&f.stop, 1);
  pkid_wake_all(&f.wk);
  for (int i = 0; i < CONSUMERS; i++) pthread_join(cons[i], NULL);
  atomic_store(&p.burst, BURSTS); /* lets a stuck producer out */
  pthread_join(prod, NULL);
  CHECK(f.wk.asleep == 0);
  fixture_cleanup(&f);
}

int main(void) {
  RUN(nobody_asleep_nothing_to_do);
  RUN(burst_hands_one_sleeper_one_wake);
  RUN(wake_all_wakes_every_sleeper);
  RUN(no_wake_lost_over_many_bursts);
  return test_finish();
}
