/* deadline_test: the rpc layer's deadline heap: always the earliest first,
 * through adds, moves and removals in any order. */
#include <stdlib.h>
#include <string.h>

#include "server/rpc/deadline.h"
#include "tests/unit/test.h"

#define N 2000

/* heap_ok checks the heap property and every entry's index. */
static int heap_ok(const pkid_deadlines *h) {
  for (size_t i = 1; i <= h->num; i++) {
    if (h->heap[i]->index != i) return 0;
    if (i > 1 && h->heap[i / 2]->at_ms > h->heap[i]->at_ms) return 0;
  }
  return 1;
}

TEST(empty_heap) {
  pkid_deadlines h;
  memset(&h, 0, sizeof(h));
  CHECK(pkid_deadlines_first(&h) == NULL);
  pkid_deadline d = {0};
  pkid_deadlines_remove(&h, &d); /* not in: nothing happens */
  CHECK(h.num == 0);
  pkid_deadlines_cleanup(&h);
}

TEST(pops_in_order_with_removals_and_moves) {
  static pkid_deadline ds[N];
  pkid_deadlines h;
  memset(&h, 0, sizeof(h));
  memset(ds, 0, sizeof(ds));
  srand(7);
  for (int i = 0; i < N; i++) REQUIRE(pkid_deadlines_add(&h, &ds[i], (uint64_t)(rand() % 5000)));
  CHECK(h.num == N && heap_ok(&h));
  /* Remove a third (calls that finished), move a third (a new deadline). */
  for (int i = 0; i < N; i += 3) pkid_deadlines_remove(&h, &ds[i]);
  for (int i = 1; i < N; i += 3) REQUIRE(pkid_deadlines_add(&h, &ds[i], (uint64_t)(rand() % 5000)));
  CHECK(heap_ok(&h));
  CHECK(h.num == N - (N + 2) / 3);
  for (int i = 0; i < N; i += 3) CHECK(ds[i].index == 0);
  /* Expire everything: never earlier than the one before. */
  uint64_t last = 0;
  int ordered = 1;
  size_t popped = 0;
  pkid_deadline *d;
  while ((d = pkid_deadlines_first(&h)) != NULL) {
    ordered &= d->at_ms >= last;
    last = d->at_ms;
    pkid_deadlines_remove(&h, d);
    popped++;
    if (popped % 97 == 0) ordered &= heap_ok(&h);
  }
  CHECK(ordered);
  CHECK(popped == (size_t)(N - (N + 2) / 3));
  pkid_deadlines_cleanup(&h);
}

int main(void) {
  RUN(empty_heap);
  RUN(pops_in_order_with_removals_and_moves);
  return test_finish();
}
