/* queue.h: the bounded lock-free queue between the event loop and the
 * workers.
 *
 * A multi-producer multi-consumer ring of pointers after Dmitry Vyukov's
 * "bounded MPMC queue": every cell carries a sequence number that says whose
 * turn it is (a producer's or a consumer's, and of which lap), so producers
 * and consumers each claim a position with one compare-and-swap and then
 * own their cell alone. No mutex anywhere; a full queue is reported at once
 * (the server answers RESOURCE_EXHAUSTED) instead of waiting.
 *
 * The concurrency contract is in each function's name, as in Concurrency
 * Kit (ck_ring_enqueue_mpmc): _mpmc functions may be called by any number
 * of threads at once. pkid_queue_init* and pkid_queue_cleanup may not run
 * concurrently with anything else on the same queue.
 *
 * The queue stores pointers and never looks through them: what an item
 * points to is handed over from the pushing thread to the popping thread
 * (everything the producer wrote before the push is visible to the consumer
 * after the pop). NULL may be pushed like any other pointer. */
#ifndef PKID_SERVER_PIPELINE_QUEUE_H
#define PKID_SERVER_PIPELINE_QUEUE_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>

/* PKID_CACHE_LINE is the padding unit that keeps producers' and consumers'
 * hot indices from sharing a cache line (false sharing would make every
 * push invalidate the consumers' line and the reverse). */
#define PKID_CACHE_LINE 64

/* pkid_queue_cell is one slot. |seq| == position: free for the producer of
 * that position; |seq| == position + 1: holds that position's item, for its
 * consumer. Exposed only so that callers can provide the storage. */
typedef struct pkid_queue_cell {
  atomic_size_t seq;
  void *item;
} pkid_queue_cell;

/* pkid_queue is the queue itself. It is over-aligned (64 bytes): put it in
 * static storage, on the stack, inside a struct, or allocate it with
 * aligned_alloc; plain malloc does not promise the alignment. */
typedef struct pkid_queue {
  /* Producers' next position. Only producers write it. */
  alignas(PKID_CACHE_LINE) atomic_size_t push_pos;
  /* Consumers' next position. Only consumers write it. */
  alignas(PKID_CACHE_LINE) atomic_size_t pop_pos;
  /* Read-only after init, on a line of their own so that the writes above
   * never evict them from other cores' caches. */
  alignas(PKID_CACHE_LINE) pkid_queue_cell *cells;
  size_t mask;     /* capacity - 1 */
  int owns_cells;  /* cells were allocated by pkid_queue_init */
} pkid_queue;

/* pkid_queue_init makes |q| an empty queue of |capacity| items, with storage
 * it allocates. |capacity| must be a power of two, at least 2 (with one
 * cell a freshly filled cell would look free to the next lap's producer).
 * Returns 1, or 0 for a bad capacity or when out of memory (then |q| needs
 * no cleanup). */
int pkid_queue_init(pkid_queue *q, size_t capacity);

/* pkid_queue_init_with_storage is pkid_queue_init on caller-owned storage:
 * |cells| holds |capacity| cells and must outlive the queue; the queue
 * never frees it. */
int pkid_queue_init_with_storage(pkid_queue *q, pkid_queue_cell *cells,
                                 size_t capacity);

/* pkid_queue_cleanup frees the storage pkid_queue_init allocated. Items
 * still queued are dropped without being looked at: drain the queue first
 * if they own memory. */
void pkid_queue_cleanup(pkid_queue *q);

/* pkid_queue_push_mpmc appends |item|. Returns 1, or 0 at once when the
 * queue is full (never waits). "Full" also covers the brief moment when
 * the oldest item has been claimed by a consumer that has not finished
 * taking it out. */
int pkid_queue_push_mpmc(pkid_queue *q, void *item);

/* pkid_queue_pop_mpmc takes the oldest item into |*out|. Returns 1, or 0
 * at once when the queue is empty (|*out| untouched). */
int pkid_queue_pop_mpmc(pkid_queue *q, void **out);

/* pkid_queue_pop_batch_mpmc takes up to |max| of the oldest items into
 * |out[0..n)| in queue order, with one compare-and-swap for the whole run,
 * and returns n (0 when the queue is empty). It takes the run of items
 * that are ready at the front: it may return fewer than are queued when a
 * producer further back has not finished writing its item. */
size_t pkid_queue_pop_batch_mpmc(pkid_queue *q, void **out, size_t max);

/* pkid_queue_depth_approx returns the number of queued items as seen at
 * some instant during the call, for metrics only: with other threads
 * running it may be stale by the time it returns. Always <= capacity. */
size_t pkid_queue_depth_approx(pkid_queue *q);

/* pkid_queue_capacity returns the capacity given at init. */
size_t pkid_queue_capacity(const pkid_queue *q);

#endif /* PKID_SERVER_PIPELINE_QUEUE_H */
