/* deadline.h: the times by which calls must end, in a binary min-heap, so
 * that one timer can wake the loop at the earliest and each deadline costs
 * O(log n) to add, remove or expire, whatever the number of calls: nothing
 * walks every call. A pkid_deadline is embedded in what it times (a call,
 * a session) and found again with container_of in its |fire| function.
 * Loop thread only. */
#ifndef PKID_SERVER_RPC_DEADLINE_H
#define PKID_SERVER_RPC_DEADLINE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pkid_deadline pkid_deadline;
struct pkid_deadline {
  uint64_t at_ms; /* on the loop's clock */
  size_t index;   /* its place in the heap; 0 when not in one */
  void (*fire)(pkid_deadline *d); /* what the heap's owner calls when it is due */
};

typedef struct pkid_deadlines {
  pkid_deadline **heap; /* heap[1..num]: heap[i] is due no later than heap[2i], heap[2i+1] */
  size_t num, cap;
} pkid_deadlines;

/* pkid_deadlines_add schedules |d| at |at_ms| (moving it if it was in).
 * 0 when out of memory (|d| is then not in the heap). */
int pkid_deadlines_add(pkid_deadlines *h, pkid_deadline *d, uint64_t at_ms);

/* pkid_deadlines_remove takes |d| out; nothing if it was not in. */
void pkid_deadlines_remove(pkid_deadlines *h, pkid_deadline *d);

/* pkid_deadlines_first is the earliest deadline, or NULL. */
pkid_deadline *pkid_deadlines_first(const pkid_deadlines *h);

void pkid_deadlines_cleanup(pkid_deadlines *h);

#endif /* PKID_SERVER_RPC_DEADLINE_H */
