#include "server/store/idset.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t kEmpty[32];

static int is_empty(const uint8_t id[32]) { return memcmp(id, kEmpty, 32) == 0; }

/* find returns the slot holding |id|, or the empty slot where it would go
 * (|*found| says which). */
static size_t find(const pkid_idset *s, const uint8_t id[32], int *found) {
  uint64_t h;
  memcpy(&h, id, sizeof(h));
  for (size_t i = (size_t)h & s->mask;; i = (i + 1) & s->mask) {
    if (memcmp(s->ids[i], id, 32) == 0) {
      *found = 1;
      return i;
    }
    if (is_empty(s->ids[i])) {
      *found = 0;
      return i;
    }
  }
}

static int grow(pkid_idset *s) {
  size_t old_cap = s->ids == NULL ? 0 : s->mask + 1;
  size_t cap = old_cap == 0 ? 64 : old_cap * 2;
  uint8_t(*old)[32] = s->ids;
  uint8_t(*ids)[32] = calloc(cap, 32);
  if (ids == NULL) return 0;
  s->ids = ids;
  s->mask = cap - 1;
  for (size_t i = 0; i < old_cap; i++) {
    if (is_empty(old[i])) continue;
    int found;
    memcpy(s->ids[find(s, old[i], &found)], old[i], 32);
  }
  free(old);
  return 1;
}

int pkid_idset_add(pkid_idset *s, const uint8_t id[32], int *out_added) {
  if (out_added != NULL) *out_added = 0;
  if (is_empty(id)) return 1; /* cannot be stored; no digest is all zero */
  if ((s->ids == NULL || (s->count + 1) * 2 > s->mask + 1) && !grow(s)) return 0;
  int found;
  size_t i = find(s, id, &found);
  if (found) return 1;
  memcpy(s->ids[i], id, 32);
  s->count++;
  if (out_added != NULL) *out_added = 1;
  return 1;
}

int pkid_idset_has(const pkid_idset *s, const uint8_t id[32]) {
  if (s->ids == NULL || is_empty(id)) return 0;
  int found;
  find(s, id, &found);
  return found;
}

void pkid_idset_remove(pkid_idset *s, const uint8_t id[32]) {
  int found;
  if (s->ids == NULL || is_empty(id)) return;
  size_t slot = find(s, id, &found);
  if (!found) return;
  memset(s->ids[slot], 0, 32);
  s->count--;
  /* Put the rest of the probe run back, so that look-ups still reach it. */
  for (size_t i = (slot + 1) & s->mask; !is_empty(s->ids[i]); i = (i + 1) & s->mask) {
    uint8_t moved[32];
    memcpy(moved, s->ids[i], 32);
    memset(s->ids[i], 0, 32);
    memcpy(s->ids[find(s, moved, &found)], moved, 32);
  }
}

int pkid_idset_foreach(const pkid_idset *s, int (*fn)(void *ctx, const uint8_t id[32]),
                       void *ctx) {
  for (size_t i = 0; s->ids != NULL && i <= s->mask; i++) {
    if (!is_empty(s->ids[i]) && !fn(ctx, s->ids[i])) return 0;
  }
  return 1;
}

void pkid_idset_cleanup(pkid_idset *s) {
  free(s->ids);
  memset(s, 0, sizeof(*s));
}
