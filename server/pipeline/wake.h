/* wake.h: how a pipeline thread sleeps while its queue is empty, and how
 * the threads that fill the queue wake it, with a system call only when a
 * thread is asleep and nobody has woken it yet.
 *
 *   consumer:  n = pop(q); if (n == 0) pkid_wake_wait(&wk, ready, q);
 *   producer:  push(q, item); pkid_wake_one(&wk);
 *
 * Why not a semaphore posted once per item: glibc's sem_post makes a
 * futex call whenever a thread waits on the semaphore, so ten jobs
 * submitted while a worker sleeps cost ten calls, and the worker, once
 * up, takes all ten in one batch anyway (issue 16 counted 0.7 futex calls
 * per certificate on the event loop at the peak). Here a wake is handed to
 * one sleeper and the sleeper is then no longer counted, so the other nine
 * pushes see nobody to wake and cost an atomic load each.
 *
 * No wake is lost: the consumer counts itself asleep and then checks
 * |ready|; the producer pushes and then reads the count; a sequentially
 * consistent fence on each side between the two (the store-buffering
 * pattern) means at least one of them sees the other's write, so either
 * the consumer sees the item or the producer sees the sleeper.
 *
 * Threads: any number of consumers and producers; pkid_wake_init and
 * pkid_wake_cleanup alone. */
#ifndef PKID_SERVER_PIPELINE_WAKE_H
#define PKID_SERVER_PIPELINE_WAKE_H

#include <pthread.h>
#include <stdatomic.h>

typedef struct pkid_wake {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  /* Under |mu|: consumers asleep (or about to be) that no wake was handed
   * to, and wakes handed out that no consumer has taken yet. */
  unsigned asleep, wakes;
  unsigned long handed; /* under |mu|: wakes handed out since init */
  /* |asleep| as last written, read without |mu| by producers: the fast
   * path of pkid_wake_one when nobody sleeps. */
  atomic_uint asleep_hint;
} pkid_wake;

/* pkid_wake_init returns 1, or 0 when the mutex or condition variable
 * cannot be made (then |wk| needs no cleanup). */
int pkid_wake_init(pkid_wake *wk);
void pkid_wake_cleanup(pkid_wake *wk);

/* pkid_wake_wait returns once |ready(ctx)| is true or a producer has
 * woken this thread (the caller then looks at its queue again: another
 * consumer may have taken the item first). |ready| is called under the
 * lock; it must not block, and must be true once the caller should stop
 * waiting for good (when stopping). */
void pkid_wake_wait(pkid_wake *wk, int (*ready)(void *ctx), void *ctx);

/* pkid_wake_one wakes one sleeping consumer not yet woken, if there is
 * one. Call it after the push that the consumer should see. */
void pkid_wake_one(pkid_wake *wk);

/* pkid_wake_all wakes every sleeping consumer (to stop). */
void pkid_wake_all(pkid_wake *wk);

#endif /* PKID_SERVER_PIPELINE_WAKE_H */
