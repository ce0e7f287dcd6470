#include "server/store/status.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

/* Layout. A serial pkid's online nodes make is 0x01 | node | seq | random
 * (lib/serial.h), and a node hands its sequence numbers out in order from
 * blocks it reserved. So the records of one node, by sequence, are dense:
 * they are kept in pages of PAGE_ENTRIES consecutive sequence numbers,
 * found by (node, seq / PAGE_ENTRIES) in a small hash table of pages. An
 * entry's place gives its node and sequence, so it holds only the random
 * half of its serial: 40 bytes a certificate, where a hash table of whole
 * serials at its load factor cost 94.
 *
 * Every other serial goes to a hash table of whole serials, |others|: those
 * of the offline tool (node 0, whose sequence is the time in microseconds,
 * far too sparse for pages), serials of another form (certificates pkid did
 * not make, in tests and tools), and a serial whose page entry is already
 * another's (two serials with one node and sequence: never from pkid, but
 * the index stays correct whatever it is given). */

#define PAGE_BITS 10
#define PAGE_ENTRIES (1u << PAGE_BITS)

/* A stored OCSP response: one allocation, header then DER. A record's
 * responses, one per CertID hash (usually SHA-1 alone), are a short list. */
typedef struct response {
  struct response *next;
  int64_t next_update;
  size_t len;
  uint8_t hash; /* pki_ocsp_hash */
  uint8_t der[];
} response;

enum { ENTRY_USED = 1, ENTRY_REVOKED = 2 };

/* One certificate. Times are kept as 32-bit seconds (until 2106). */
typedef struct entry {
  response *responses;
  uint32_t not_before, not_after, revoked_at;
  uint16_t service;
  uint8_t ca, usage, reason, flags;
  uint8_t random[8]; /* the serial's last 8 octets; paged entries only */
} entry;

typedef struct page {
  uint16_t node;
  uint64_t number; /* seq / PAGE_ENTRIES */
  entry e[PAGE_ENTRIES];
} page;

/* A slot of |others|; len 0 marks an empty one. */
typedef struct other {
  uint8_t serial[PKI_SERIAL_MAX];
  uint8_t len;
  entry e;
} other;

struct pkid_status {
  page **pages; /* open addressing, NULL empty; at most half full */
  size_t page_mask;
  size_t num_pages;
  other *others; /* open addressing; at most 7/8 full */
  size_t other_mask;
  size_t num_others;
  size_t count;
  /* Both hashes are keyed with it. Keys come from issuance, not requests,
   * so no one can choose them to collide; the key is there so that records
   * loaded in another table's slot order (a snapshot) do not pile into
   * long probe runs as the table grows. */
  uint64_t seed;
};

/* split finds the node and sequence of a serial of pkid's paged form. */
static int split(const uint8_t *s, size_t len, uint16_t *node, uint64_t *seq) {
  if (len != PKI_SERIAL_LEN || s[0] != 0x01) return 0;
  *node = (uint16_t)(s[1] << 8 | s[2]);
  if (*node == 0) return 0;
  uint64_t v = 0;
  for (int i = 3; i < 11; i++) v = v << 8 | s[i];
  *seq = v;
  return 1;
}

static uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  return h;
}

static size_t page_home(const pkid_status *st, uint16_t node, uint64_t number) {
  return (size_t)mix(st->seed ^ number ^ (uint64_t)node << 48 ^ (uint64_t)node) & st->page_mask;
}

/* find_page returns the table slot of page (node, number), or the empty
 * slot where it would go. */
static page **find_page(const pkid_status *st, uint16_t node, uint64_t number) {
  size_t i = page_home(st, node, number);
  for (;;) {
    page **p = &st->pages[i];
    if (*p == NULL || ((*p)->node == node && (*p)->number == number)) return p;
    i = (i + 1) & st->page_mask;
  }
}

/* hash_serial is FNV-1a over the serial, keyed. */
static uint64_t hash_serial(uint64_t seed, const uint8_t *serial, size_t len) {
  uint64_t h = 1469598103934665603u ^ seed;
  for (size_t i = 0; i < len; i++) {
    h ^= serial[i];
    h *= 1099511628211u;
  }
  return mix(h);
}

/* find_other returns the slot of |serial| in |others|, or the empty slot
 * where it would go. */
static other *find_other(const pkid_status *st, const uint8_t *serial, size_t len) {
  size_t i = (size_t)hash_serial(st->seed, serial, len) & st->other_mask;
  for (;;) {
    other *o = &st->others[i];
    if (o->len == 0 || (o->len == len && memcmp(o->serial, serial, len) == 0)) return o;
    i = (i + 1) & st->other_mask;
  }
}

static int grow_pages(pkid_status *st) {
  size_t old_cap = st->page_mask + 1;
  page **old = st->pages, **pages = calloc(old_cap * 2, sizeof(*pages));
  if (pages == NULL) return 0;
  st->pages = pages;
  st->page_mask = old_cap * 2 - 1;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i] != NULL) *find_page(st, old[i]->node, old[i]->number) = old[i];
  }
  free(old);
  return 1;
}

static int grow_others(pkid_status *st) {
  size_t old_cap = st->other_mask + 1;
  other *old = st->others, *others = calloc(old_cap * 2, sizeof(*others));
  if (others == NULL) return 0;
  st->others = others;
  st->other_mask = old_cap * 2 - 1;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].len != 0) *find_other(st, old[i].serial, old[i].len) = old[i];
  }
  free(old);
  return 1;
}

static uint32_t clamp_time(int64_t t) {
  if (t < 0) return 0;
  if (t > (int64_t)UINT32_MAX) return UINT32_MAX;
  return (uint32_t)t;
}

/* lookup returns the entry of |serial|, or NULL. */
static entry *lookup(const pkid_status *st, const uint8_t *serial, size_t len) {
  if (len == 0 || len > PKI_SERIAL_MAX) return NULL;
  uint16_t node;
  uint64_t seq;
  if (split(serial, len, &node, &seq)) {
    page *p = *find_page(st, node, seq >> PAGE_BITS);
    entry *e = p != NULL ? &p->e[seq & (PAGE_ENTRIES - 1)] : NULL;
    if (e != NULL && (e->flags & ENTRY_USED) && memcmp(e->random, serial + 11, 8) == 0) {
      return e;
    }
    if (st->num_others == 0) return NULL;
  }
  other *o = find_other(st, serial, len);
  return o->len != 0 ? &o->e : NULL;
}

/* place returns the entry of |serial|, making an empty one (flags 0) if it
 * has none; NULL when out of memory. */
static entry *place(pkid_status *st, const uint8_t *serial, size_t len) {
  entry *e = lookup(st, serial, len);
  if (e != NULL) return e;
  uint16_t node;
  uint64_t seq;
  if (split(serial, len, &node, &seq)) {
    page **slot = find_page(st, node, seq >> PAGE_BITS);
    if (*slot == NULL) {
      if (st->num_pages + 1 > (st->page_mask + 1) / 2) {
        if (!grow_pages(st)) return NULL;
        slot = find_page(st, node, seq >> PAGE_BITS);
      }
      if ((*slot = calloc(1, sizeof(page))) == NULL) return NULL;
      (*slot)->node = node;
      (*slot)->number = seq >> PAGE_BITS;
      st->num_pages++;
    }
    e = &(*slot)->e[seq & (PAGE_ENTRIES - 1)];
    if (!(e->flags & ENTRY_USED)) {
      memcpy(e->random, serial + 11, 8);
      return e;
    }
    /* Another serial holds this node and sequence: |others| keeps it. */
  }
  if (st->num_others + 1 > (st->other_mask + 1) / 8 * 7 && !grow_others(st)) return NULL;
  other *o = find_other(st, serial, len);
  memcpy(o->serial, serial, len);
  o->len = (uint8_t)len;
  st->num_others++;
  return &o->e;
}

static void free_responses(entry *e) {
  for (response *r = e->responses, *next; r != NULL; r = next) {
    next = r->next;
    free(r);
  }
  e->responses = NULL;
}

int pkid_status_reserve(pkid_status *st, size_t n) {
  /* Dense sequences fill pages; sparser ones grow the table as they come. */
  size_t pages = st->num_pages + n / PAGE_ENTRIES + 1;
  while (pages > (st->page_mask + 1) / 2) {
    if (!grow_pages(st)) return 0;
  }
  return 1;
}

pkid_status *pkid_status_new(size_t expected) {
  pkid_status *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  RAND_bytes((uint8_t *)&st->seed, sizeof(st->seed));
  st->page_mask = 15;
  st->other_mask = 63;
  st->pages = calloc(st->page_mask + 1, sizeof(*st->pages));
  st->others = calloc(st->other_mask + 1, sizeof(*st->others));
  if (st->pages == NULL || st->others == NULL || !pkid_status_reserve(st, expected)) {
    pkid_status_free(st);
    return NULL;
  }
  return st;
}

void pkid_status_free(pkid_status *st) {
  if (st == NULL) return;
  if (st->pages != NULL) {
    for (size_t i = 0; i <= st->page_mask; i++) {
      if (st->pages[i] == NULL) continue;
      for (size_t j = 0; j < PAGE_ENTRIES; j++) free_responses(&st->pages[i]->e[j]);
      free(st->pages[i]);
    }
  }
  if (st->others != NULL) {
    for (size_t i = 0; i <= st->other_mask; i++) free_responses(&st->others[i].e);
  }
  free(st->pages);
  free(st->others);
  free(st);
}

int pkid_status_put(pkid_status *st, const pkid_cert_record *rec) {
  if (rec->serial.len == 0 || rec->serial.len > PKI_SERIAL_MAX) return 0;
  entry *e = place(st, rec->serial.bytes, rec->serial.len);
  if (e == NULL) return 0;
  if (!(e->flags & ENTRY_USED)) {
    st->count++;
  } else if (!(e->flags & ENTRY_REVOKED) != !rec->revoked) {
    /* Responses signed before the change say the old status. */
    free_responses(e);
  }
  e->ca = rec->ca;
  e->usage = rec->usage;
  e->reason = rec->reason;
  e->flags = (uint8_t)(ENTRY_USED | (rec->revoked ? ENTRY_REVOKED : 0));
  e->service = rec->service;
  e->not_before = clamp_time(rec->not_before);
  e->not_after = clamp_time(rec->not_after);
  e->revoked_at = clamp_time(rec->revoked_at);
  return 1;
}

/* to_record fills |out| from |e|, whose serial is |serial| (|len| octets)
 * or, for a paged entry (serial NULL), made from |node| and |seq|. */
static void to_record(const entry *e, const uint8_t *serial, size_t len, uint16_t node,
                      uint64_t seq, pkid_cert_record *out) {
  memset(out, 0, sizeof(*out));
  if (serial != NULL) {
    memcpy(out->serial.bytes, serial, len);
    out->serial.len = len;
  } else {
    uint8_t *s = out->serial.bytes;
    s[0] = 0x01;
    s[1] = (uint8_t)(node >> 8);
    s[2] = (uint8_t)node;
    for (int i = 0; i < 8; i++) s[3 + i] = (uint8_t)(seq >> (56 - 8 * i));
    memcpy(s + 11, e->random, 8);
    out->serial.len = PKI_SERIAL_LEN;
  }
  out->ca = e->ca;
  out->usage = e->usage;
  out->revoked = (e->flags & ENTRY_REVOKED) != 0;
  out->reason = e->reason;
  out->service = e->service;
  out->not_before = e->not_before;
  out->not_after = e->not_after;
  out->revoked_at = e->revoked_at;
}

int pkid_status_get(const pkid_status *st, const uint8_t *serial, size_t serial_len,
                    pkid_cert_record *out) {
  const entry *e = lookup(st, serial, serial_len);
  if (e == NULL) return 0;
  to_record(e, serial, serial_len, 0, 0, out);
  return 1;
}

size_t pkid_status_count(const pkid_status *st) { return st->count; }

int pkid_status_set_response(pkid_status *st, const uint8_t *serial, size_t serial_len,
                             pki_ocsp_hash hash, uint8_t *der, size_t der_len,
                             int64_t next_update) {
  entry *e = (unsigned)hash < PKI_OCSP_NUM_HASHES ? lookup(st, serial, serial_len) : NULL;
  response *r = e != NULL ? malloc(sizeof(*r) + der_len) : NULL;
  if (r == NULL) {
    free(der);
    return 0;
  }
  r->next_update = next_update;
  r->len = der_len;
  r->hash = (uint8_t)hash;
  memcpy(r->der, der, der_len);
  free(der);
  response **at = &e->responses;
  while (*at != NULL && (*at)->hash != hash) at = &(*at)->next;
  r->next = *at != NULL ? (*at)->next : NULL;
  free(*at);
  *at = r;
  return 1;
}

const uint8_t *pkid_status_response(const pkid_status *st, const uint8_t *serial,
                                    size_t serial_len, pki_ocsp_hash hash, size_t *out_len,
                                    int64_t *out_next_update) {
  const entry *e = lookup(st, serial, serial_len);
  const response *r = e != NULL ? e->responses : NULL;
  while (r != NULL && r->hash != hash) r = r->next;
  if (r == NULL) return NULL;
  *out_len = r->len;
  if (out_next_update != NULL) *out_next_update = r->next_update;
  return r->der;
}

/* Positions, for walks: the pages' entries first, PAGE_ENTRIES for each
 * slot of the page table, then the slots of |others|. */
static size_t num_positions(const pkid_status *st) {
  return (st->page_mask + 1) * PAGE_ENTRIES + st->other_mask + 1;
}

/* visit calls |fn| on the record at position |*pos| if there is one, and
 * moves |*pos| to the next position worth looking at. Returns -1 for no
 * record there, else what |fn| returned. */
static int visit(const pkid_status *st, size_t *pos,
                 int (*fn)(void *ctx, const pkid_cert_record *rec), void *ctx) {
  size_t paged = (st->page_mask + 1) * PAGE_ENTRIES;
  pkid_cert_record rec;
  if (*pos < paged) {
    const page *p = st->pages[*pos / PAGE_ENTRIES];
    if (p == NULL) {
      *pos += PAGE_ENTRIES; /* an empty slot of the table: skip all of it */
      return -1;
    }
    size_t j = (*pos)++ % PAGE_ENTRIES;
    if (!(p->e[j].flags & ENTRY_USED)) return -1;
    to_record(&p->e[j], NULL, 0, p->node, p->number << PAGE_BITS | j, &rec);
  } else {
    const other *o = &st->others[(*pos)++ - paged];
    if (o->len == 0) return -1;
    to_record(&o->e, o->serial, o->len, 0, 0, &rec);
  }
  return fn(ctx, &rec) != 0;
}

void pkid_status_foreach_from(const pkid_status *st, size_t *cursor, size_t max,
                              int (*fn)(void *ctx, const pkid_cert_record *rec), void *ctx) {
  size_t pos = *cursor, seen = 0, end = num_positions(st);
  while (pos < end && seen < max) {
    int r = visit(st, &pos, fn, ctx);
    if (r < 0) continue;
    seen++;
    if (r == 0) break;
  }
  *cursor = pos >= end ? 0 : pos;
}

void pkid_status_foreach(const pkid_status *st,
                         int (*fn)(void *ctx, const pkid_cert_record *rec), void *ctx) {
  size_t pos = 0, end = num_positions(st);
  while (pos < end) {
    if (visit(st, &pos, fn, ctx) == 0) return;
  }
}

void pkid_status_remap_services(pkid_status *st, const uint16_t *map, size_t map_len) {
  for (size_t i = 0; i <= st->page_mask; i++) {
    page *p = st->pages[i];
    for (size_t j = 0; p != NULL && j < PAGE_ENTRIES; j++) {
      entry *e = &p->e[j];
      if (e->flags & ENTRY_USED) e->service = e->service < map_len ? map[e->service] : 0xffff;
    }
  }
  for (size_t i = 0; i <= st->other_mask; i++) {
    entry *e = &st->others[i].e;
    if (e->flags & ENTRY_USED) e->service = e->service < map_len ? map[e->service] : 0xffff;
  }
}

void pkid_cert_record_ocsp(const pkid_cert_record *rec, pki_ocsp_single *out) {
  out->status = rec->revoked ? PKI_OCSP_REVOKED : PKI_OCSP_GOOD;
  out->revocation_time = rec->revoked ? rec->revoked_at : 0;
  out->revocation_reason =
      rec->revoked && rec->reason != 0 && rec->reason != 7 && rec->reason <= 10 ? rec->reason
                                                                                : -1;
}
