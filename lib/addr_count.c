#include "lib/addr_count.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/siphash.h>

/* One address (or /64): 16 octets, IPv4 as ::ffff:a.b.c.d. count 0: free. */
typedef struct entry {
  uint8_t key[16];
  unsigned count;
} entry;

struct pki_addr_count {
  uint64_t sip_key[2];
  entry *slots;
  size_t mask; /* capacity - 1, a power of two */
  size_t used;
};

/* key_of writes |addr|'s key; 0 for a family that is not limited. */
static int key_of(const struct sockaddr *addr, uint8_t key[16]) {
  memset(key, 0, 16);
  if (addr->sa_family == AF_INET) {
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
    return 1;
  }
  if (addr->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    /* An IPv4-mapped address is that IPv4 host; any other, its /64. */
    memcpy(key, a, memcmp(a, kMapped, 12) == 0 ? 16 : 8);
    return 1;
  }
  return 0;
}

/* find returns the slot holding |key|, or the free slot where it would go. */
static entry *find(const pki_addr_count *c, const uint8_t key[16]) {
  size_t i = (size_t)SIPHASH_24(c->sip_key, key, 16) & c->mask;
  for (;;) {
    entry *e = &c->slots[i];
    if (e->count == 0 || memcmp(e->key, key, 16) == 0) return e;
    i = (i + 1) & c->mask;
  }
}

static int grow(pki_addr_count *c) {
  size_t old_cap = c->mask + 1;
  entry *old = c->slots, *slots = calloc(old_cap * 2, sizeof(entry));
  if (slots == NULL) return 0;
  c->slots = slots;
  c->mask = old_cap * 2 - 1;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].count != 0) *find(c, old[i].key) = old[i];
  }
  free(old);
  return 1;
}

pki_addr_count *pki_addr_count_new(void) {
  pki_addr_count *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->mask = 63;
  c->slots = calloc(c->mask + 1, sizeof(entry));
  if (c->slots == NULL) {
    free(c);
    return NULL;
  }
  RAND_bytes((uint8_t *)c->sip_key, sizeof(c->sip_key));
  return c;
}

void pki_addr_count_free(pki_addr_count *c) {
  if (c == NULL) return;
  free(c->slots);
  free(c);
}

int pki_addr_count_add(pki_addr_count *c, const struct sockaddr *addr, unsigned max) {
  uint8_t key[16];
  if (!key_of(addr, key)) return 1;
  /* At most half full, so probe runs stay short. */
  if ((c->used + 1) * 2 > c->mask + 1 && !grow(c)) return 0;
  entry *e = find(c, key);
  if (e->count >= max) return 0;
  if (e->count == 0) {
    memcpy(e->key, key, 16);
    c->used++;
  }
  e->count++;
  return 1;
}

void pki_addr_count_remove(pki_addr_count *c, const struct sockaddr *addr) {
  uint8_t key[16];
  if (!key_of(addr, key)) return;
  entry *e = find(c, key);
  if (e->count == 0 || --e->count > 0) return;
  /* The slot is free: move the rest of its probe run back (backward-shift
   * deletion), so that later look-ups still find them. */
  c->used--;
  size_t i = (size_t)(e - c->slots);
  for (size_t j = (i + 1) & c->mask; c->slots[j].count != 0; j = (j + 1) & c->mask) {
    entry moved = c->slots[j];
    c->slots[j].count = 0;
    *find(c, moved.key) = moved;
  }
}

unsigned pki_addr_count_get(const pki_addr_count *c, const struct sockaddr *addr) {
  uint8_t key[16];
  if (!key_of(addr, key)) return 0;
  return find(c, key)->count;
}
