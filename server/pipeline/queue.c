#include "server/pipeline/queue.h"

#include <stdint.h>
#include <stdlib.h>

/* How the orderings fit together (Vyukov's bounded MPMC queue).
 *
 * Positions grow without bound (a 64-bit size_t does not wrap in the life
 * of a process); position p lives in cell p & mask. A cell's |seq| is the
 * only thing that hands a cell from one thread to another:
 *
 *   producer of p:  sees seq == p      (acquire)  -> writes item
 *                   stores seq = p + 1 (release)  -> item published
 *   consumer of p:  sees seq == p + 1  (acquire)  -> reads item
 *                   stores seq = p + capacity (release) -> cell free for
 *                                                   the producer of the
 *                                                   next lap
 *
 * Each release store pairs with the acquire load of the next owner, so the
 * producer's writes (the item, and whatever it points to) happen before the
 * consumer's reads, and the consumer's read of the old item happens before
 * the next lap's producer overwrites it. The plain |item| field is thus
 * never accessed by two threads without that order.
 *
 * push_pos and pop_pos only arbitrate which of several producers (or
 * consumers) owns a position: the compare-and-swap makes exactly one win,
 * and a relaxed one is enough because no data is published through these
 * counters. A stale relaxed read of them costs a failed CAS or a retry,
 * never a wrong answer: a thread acts only after seeing the cell's |seq|
 * agree with the position it read. */

static int capacity_ok(size_t capacity) {
  return capacity >= 2 && (capacity & (capacity - 1)) == 0;
}

static void init_cells(pkid_queue *q, pkid_queue_cell *cells, size_t capacity,
                       int owns) {
  for (size_t i = 0; i < capacity; i++) {
    atomic_init(&cells[i].seq, i);
    cells[i].item = NULL;
  }
  q->cells = cells;
  q->mask = capacity - 1;
  q->owns_cells = owns;
  atomic_init(&q->push_pos, 0);
  atomic_init(&q->pop_pos, 0);
}

int pkid_queue_init(pkid_queue *q, size_t capacity) {
  if (!capacity_ok(capacity) || capacity > SIZE_MAX / sizeof(pkid_queue_cell)) {
    return 0;
  }
  /* aligned_alloc wants a size that is a multiple of the alignment. Starting
   * the cells on a cache line keeps the first cells off the line of
   * whatever malloc put before them. */
  size_t bytes = capacity * sizeof(pkid_queue_cell);
  bytes = (bytes + PKID_CACHE_LINE - 1) / PKID_CACHE_LINE * PKID_CACHE_LINE;
  pkid_queue_cell *cells = aligned_alloc(PKID_CACHE_LINE, bytes);
  if (cells == NULL) return 0;
  init_cells(q, cells, capacity, 1);
  return 1;
}

int pkid_queue_init_with_storage(pkid_queue *q, pkid_queue_cell *cells,
                                 size_t capacity) {
  if (cells == NULL || !capacity_ok(capacity)) return 0;
  init_cells(q, cells, capacity, 0);
  return 1;
}

void pkid_queue_cleanup(pkid_queue *q) {
  if (q->owns_cells) free(q->cells);
  q->cells = NULL;
  q->mask = 0;
  q->owns_cells = 0;
}

/* claim takes the next position of |index| (push_pos or pop_pos) whose
 * cell is ready for it: a cell is ready for position pos when its seq is
 * pos + |ready| (0: free, for a producer; 1: holding pos's item, for a
 * consumer). It returns the cell, or NULL when the queue is full (for a
 * producer) or empty (for a consumer). */
static pkid_queue_cell *claim(pkid_queue *q, atomic_size_t *index, size_t ready,
                              size_t *out_pos) {
  size_t pos = atomic_load_explicit(index, memory_order_relaxed);
  for (;;) {
    pkid_queue_cell *cell = &q->cells[pos & q->mask];
    /* Acquire: pairs with the release of whoever made the cell ready (the
     * consumer that freed it on the previous lap, or the producer that
     * filled it), so what they did to it is done before we touch it. */
    size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
    intptr_t diff = (intptr_t)seq - (intptr_t)(pos + ready);
    if (diff == 0) {
      /* Ready for pos: claim pos. On failure the CAS reloads pos with the
       * current value and we look again. */
      if (atomic_compare_exchange_weak_explicit(index, &pos, pos + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        *out_pos = pos;
        return cell;
      }
    } else if (diff < 0) {
      /* A producer's cell still holds the previous lap's item (full); a
       * consumer's is not yet written for this lap (empty). */
      return NULL;
    } else {
      /* Another thread took pos and is past it; catch up. */
      pos = atomic_load_explicit(index, memory_order_relaxed);
    }
  }
}

int pkid_queue_push_mpmc(pkid_queue *q, void *item) {
  size_t pos;
  pkid_queue_cell *cell = claim(q, &q->push_pos, 0, &pos);
  if (cell == NULL) return 0;
  cell->item = item;
  /* Release: publishes the item (and what it points to) to the consumer
   * whose acquire load sees pos + 1. */
  atomic_store_explicit(&cell->seq, pos + 1, memory_order_release);
  return 1;
}

int pkid_queue_pop_mpmc(pkid_queue *q, void **out) {
  size_t pos;
  pkid_queue_cell *cell = claim(q, &q->pop_pos, 1, &pos);
  if (cell == NULL) return 0;
  *out = cell->item;
  /* Release: our read of the item is done before the next lap's producer,
   * which acquires this value, writes over it. */
  atomic_store_explicit(&cell->seq, pos + q->mask + 1, memory_order_release);
  return 1;
}

size_t pkid_queue_pop_batch_mpmc(pkid_queue *q, void **out, size_t max) {
  if (max == 0) return 0;
  size_t pos = atomic_load_explicit(&q->pop_pos, memory_order_relaxed);
  size_t n;
  for (;;) {
    pkid_queue_cell *first = &q->cells[pos & q->mask];
    size_t seq = atomic_load_explicit(&first->seq, memory_order_acquire);
    intptr_t diff = (intptr_t)seq - (intptr_t)(pos + 1);
    if (diff < 0) return 0; /* empty, as in pkid_queue_pop_mpmc */
    if (diff > 0) {
      pos = atomic_load_explicit(&q->pop_pos, memory_order_relaxed);
      continue;
    }
    /* Count the run of cells from pos that producers have published. The
     * acquire loads make their items visible once the run is ours. */
    n = 1;
    while (n < max && n <= q->mask) {
      pkid_queue_cell *cell = &q->cells[(pos + n) & q->mask];
      seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
      if (seq != pos + n + 1) break;
      n++;
    }
    /* Claim the whole run at once. If pop_pos is still pos, no consumer
     * owns any of these positions, and none of these cells can change
     * until we release it: only the consumer of a position writes its
     * cell's seq after the producer has published it. */
    if (atomic_compare_exchange_weak_explicit(&q->pop_pos, &pos, pos + n,
                                              memory_order_relaxed,
                                              memory_order_relaxed)) {
      break;
    }
  }
  for (size_t i = 0; i < n; i++) {
    pkid_queue_cell *cell = &q->cells[(pos + i) & q->mask];
    out[i] = cell->item;
    atomic_store_explicit(&cell->seq, pos + i + q->mask + 1,
                          memory_order_release);
  }
  return n;
}

size_t pkid_queue_depth_approx(pkid_queue *q) {
  /* The two counters are read at different instants, so the difference can
   * be momentarily below 0 or above the capacity; clamp it. */
  size_t pop = atomic_load_explicit(&q->pop_pos, memory_order_relaxed);
  size_t push = atomic_load_explicit(&q->push_pos, memory_order_relaxed);
  intptr_t depth = (intptr_t)(push - pop);
  if (depth < 0) return 0;
  if ((size_t)depth > q->mask + 1) return q->mask + 1;
  return (size_t)depth;
}

size_t pkid_queue_capacity(const pkid_queue *q) { return q->mask + 1; }
