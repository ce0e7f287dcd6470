#include "server/pipeline/wake.h"

int pkid_wake_init(pkid_wake *wk) {
  wk->asleep = wk->wakes = 0;
  wk->handed = 0;
  atomic_init(&wk->asleep_hint, 0);
  if (pthread_mutex_init(&wk->mu, NULL) != 0) return 0;
  if (pthread_cond_init(&wk->cond, NULL) != 0) {
    pthread_mutex_destroy(&wk->mu);
    return 0;
  }
  return 1;
}

void pkid_wake_cleanup(pkid_wake *wk) {
  pthread_cond_destroy(&wk->cond);
  pthread_mutex_destroy(&wk->mu);
}

void pkid_wake_wait(pkid_wake *wk, int (*ready)(void *ctx), void *ctx) {
  pthread_mutex_lock(&wk->mu);
  wk->asleep++;
  atomic_store(&wk->asleep_hint, wk->asleep);
  /* Counted asleep before looking at the queue (wake.h: no wake is lost). */
  atomic_thread_fence(memory_order_seq_cst);
  for (;;) {
    if (wk->wakes > 0) {
      /* A producer counted us awake already when it handed this out. */
      wk->wakes--;
      break;
    }
    if (ready(ctx)) {
      wk->asleep--;
      atomic_store(&wk->asleep_hint, wk->asleep);
      break;
    }
    pthread_cond_wait(&wk->cond, &wk->mu);
  }
  pthread_mutex_unlock(&wk->mu);
}

/* hand_out gives up to |n| of the sleepers a wake each and returns how
 * many it gave (under |mu|). */
static unsigned hand_out(pkid_wake *wk, unsigned n) {
  if (n > wk->asleep) n = wk->asleep;
  wk->asleep -= n;
  wk->wakes += n;
  wk->handed += n;
  atomic_store(&wk->asleep_hint, wk->asleep);
  return n;
}

/* wake_up wakes |n| waiters, after the lock is given back: a waiter woken
 * while the waker still holds |mu| would only sleep again on |mu|, one
 * more context switch. No signal is lost meanwhile: a waiter looks at
 * |wakes| under |mu| before it waits. */
static void wake_up(pkid_wake *wk, unsigned n) {
  if (n == 1) {
    pthread_cond_signal(&wk->cond);
  } else if (n > 1) {
    pthread_cond_broadcast(&wk->cond);
  }
}

void pkid_wake_one(pkid_wake *wk) {
  /* The push before the look at the sleepers (wake.h: no wake is lost). */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&wk->asleep_hint, memory_order_relaxed) == 0) return;
  pthread_mutex_lock(&wk->mu);
  unsigned n = hand_out(wk, 1);
  pthread_mutex_unlock(&wk->mu);
  wake_up(wk, n);
}

void pkid_wake_all(pkid_wake *wk) {
  /* No fence: the lock orders this against every sleeper's count, and a
   * sleeper that locks after it sees what the caller stored before. */
  pthread_mutex_lock(&wk->mu);
  unsigned n = hand_out(wk, wk->asleep);
  pthread_mutex_unlock(&wk->mu);
  wake_up(wk, n);
}
