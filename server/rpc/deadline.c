#include "server/rpc/deadline.h"

#include <stdlib.h>

static void place(pkid_deadlines *h, size_t i, pkid_deadline *d) {
  h->heap[i] = d;
  d->index = i;
}

static void sift_up(pkid_deadlines *h, size_t i) {
  pkid_deadline *d = h->heap[i];
  while (i > 1 && h->heap[i / 2]->at_ms > d->at_ms) {
    place(h, i, h->heap[i / 2]);
    i /= 2;
  }
  place(h, i, d);
}

static void sift_down(pkid_deadlines *h, size_t i) {
  pkid_deadline *d = h->heap[i];
  for (;;) {
    size_t child = 2 * i;
    if (child > h->num) break;
    if (child + 1 <= h->num && h->heap[child + 1]->at_ms < h->heap[child]->at_ms) child++;
    if (h->heap[child]->at_ms >= d->at_ms) break;
    place(h, i, h->heap[child]);
    i = child;
  }
  place(h, i, d);
}

int pkid_deadlines_add(pkid_deadlines *h, pkid_deadline *d, uint64_t at_ms) {
  pkid_deadlines_remove(h, d);
  if (h->num + 1 >= h->cap) {
    size_t cap = h->cap == 0 ? 64 : h->cap * 2;
    pkid_deadline **heap = realloc(h->heap, cap * sizeof(*heap));
    if (heap == NULL) return 0;
    h->heap = heap;
    h->cap = cap;
  }
  d->at_ms = at_ms;
  place(h, ++h->num, d);
  sift_up(h, h->num);
  return 1;
}

void pkid_deadlines_remove(pkid_deadlines *h, pkid_deadline *d) {
  size_t i = d->index;
  if (i == 0 || i > h->num || h->heap[i] != d) return;
  d->index = 0;
  pkid_deadline *last = h->heap[h->num--];
  if (i > h->num) return; /* it was the last */
  place(h, i, last);
  /* The moved one may belong above or below its new place. */
  sift_up(h, i);
  sift_down(h, last->index);
}

pkid_deadline *pkid_deadlines_first(const pkid_deadlines *h) {
  return h->num > 0 ? h->heap[1] : NULL;
}

void pkid_deadlines_cleanup(pkid_deadlines *h) {
  free(h->heap);
  h->heap = NULL;
  h->num = h->cap = 0;
}
