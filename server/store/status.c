#include "server/store/status.h"

#include <stdlib.h>
#include <string.h>

/* A stored OCSP response: one allocation, header then DER. */
typedef struct response {
  int64_t next_update;
  size_t len;
  uint8_t der[];
} response;

/* One slot of the table. serial_len 0 marks an empty slot. Times are kept
 * as 32-bit seconds (until 2106), which keeps a slot at 56 bytes. */
typedef struct slot {
  uint8_t serial[PKI_SERIAL_MAX];
  uint8_t serial_len;
  uint8_t ca, usage, revoked, reason;
  uint16_t service;
  uint32_t not_before, not_after, revoked_at;
  response *responses[PKI_OCSP_NUM_HASHES];
} slot;

struct pkid_status {
  slot *slots;
  size_t mask; /* capacity - 1; capacity is a power of two */
  size_t count;
};

/* hash_serial is FNV-1a over the serial; serials come from issuance, not
 * from requests, so no one can choose keys to collide. */
static uint64_t hash_serial(const uint8_t *serial, size_t len) {
  uint64_t h = 1469598103934665603u;
  for (size_t i = 0; i < len; i++) {
    h ^= serial[i];
    h *= 1099511628211u;
  }
  return h ^ (h >> 29);
}

static uint32_t clamp_time(int64_t t) {
  if (t < 0) return 0;
  if (t > (int64_t)UINT32_MAX) return UINT32_MAX;
  return (uint32_t)t;
}

/* find returns the slot of |serial|, or the empty slot where it would go. */
static slot *find(const pkid_status *st, const uint8_t *serial, size_t len) {
  size_t i = (size_t)hash_serial(serial, len) & st->mask;
  for (;;) {
    slot *s = &st->slots[i];
    if (s->serial_len == 0 || (s->serial_len == len && memcmp(s->serial, serial, len) == 0)) {
      return s;
    }
    i = (i + 1) & st->mask;
  }
}

static int grow(pkid_status *st) {
  size_t old_cap = st->mask + 1, cap = old_cap * 2;
  slot *old = st->slots;
  slot *slots = calloc(cap, sizeof(slot));
  if (slots == NULL) return 0;
  st->slots = slots;
  st->mask = cap - 1;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].serial_len == 0) continue;
    *find(st, old[i].serial, old[i].serial_len) = old[i];
  }
  free(old);
  return 1;
}

int pkid_status_reserve(pkid_status *st, size_t n) {
  while (n > (st->mask + 1) / 8 * 7) {
    if (!grow(st)) return 0;
  }
  return 1;
}

pkid_status *pkid_status_new(size_t expected) {
  pkid_status *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  size_t cap = 1024;
  while (cap / 8 * 7 < expected) cap *= 2;
  st->slots = calloc(cap, sizeof(slot));
  if (st->slots == NULL) {
    free(st);
    return NULL;
  }
  st->mask = cap - 1;
  return st;
}

void pkid_status_free(pkid_status *st) {
  if (st == NULL) return;
  for (size_t i = 0; i <= st->mask; i++) {
    for (int h = 0; h < PKI_OCSP_NUM_HASHES; h++) free(st->slots[i].responses[h]);
  }
  free(st->slots);
  free(st);
}

int pkid_status_put(pkid_status *st, const pkid_cert_record *rec) {
  if (rec->serial.len == 0 || rec->serial.len > PKI_SERIAL_MAX) return 0;
  /* At most 7/8 full, so probes stay short and always find an empty slot. */
  if ((st->count + 1) > (st->mask + 1) / 8 * 7 && !grow(st)) return 0;
  slot *s = find(st, rec->serial.bytes, rec->serial.len);
  if (s->serial_len == 0) {
    st->count++;
    memcpy(s->serial, rec->serial.bytes, rec->serial.len);
    s->serial_len = (uint8_t)rec->serial.len;
  } else if (s->revoked != rec->revoked) {
    /* Responses signed before the change say the old status. */
    for (int h = 0; h < PKI_OCSP_NUM_HASHES; h++) {
      free(s->responses[h]);
      s->responses[h] = NULL;
    }
  }
  s->ca = rec->ca;
  s->usage = rec->usage;
  s->revoked = rec->revoked;
  s->reason = rec->reason;
  s->service = rec->service;
  s->not_before = clamp_time(rec->not_before);
  s->not_after = clamp_time(rec->not_after);
  s->revoked_at = clamp_time(rec->revoked_at);
  return 1;
}

static void to_record(const slot *s, pkid_cert_record *out) {
  memset(out, 0, sizeof(*out));
  memcpy(out->serial.bytes, s->serial, s->serial_len);
  out->serial.len = s->serial_len;
  out->ca = s->ca;
  out->usage = s->usage;
  out->revoked = s->revoked;
  out->reason = s->reason;
  out->service = s->service;
  out->not_before = s->not_before;
  out->not_after = s->not_after;
  out->revoked_at = s->revoked_at;
}

int pkid_status_get(const pkid_status *st, const uint8_t *serial, size_t serial_len,
                    pkid_cert_record *out) {
  if (serial_len == 0 || serial_len > PKI_SERIAL_MAX) return 0;
  const slot *s = find(st, serial, serial_len);
  if (s->serial_len == 0) return 0;
  to_record(s, out);
  return 1;
}

size_t pkid_status_count(const pkid_status *st) { return st->count; }

int pkid_status_set_response(pkid_status *st, const uint8_t *serial, size_t serial_len,
                             pki_ocsp_hash hash, uint8_t *der, size_t der_len,
                             int64_t next_update) {
  slot *s = serial_len > 0 && serial_len <= PKI_SERIAL_MAX ? find(st, serial, serial_len)
                                                           : NULL;
  response *r = NULL;
  if (s != NULL && s->serial_len != 0 && (unsigned)hash < PKI_OCSP_NUM_HASHES) {
    r = malloc(sizeof(*r) + der_len);
  }
  if (r == NULL) {
    free(der);
    return 0;
  }
  r->next_update = next_update;
  r->len = der_len;
  memcpy(r->der, der, der_len);
  free(der);
  free(s->responses[hash]);
  s->responses[hash] = r;
  return 1;
}

const uint8_t *pkid_status_response(const pkid_status *st, const uint8_t *serial,
                                    size_t serial_len, pki_ocsp_hash hash, size_t *out_len,
                                    int64_t *out_next_update) {
  if (serial_len == 0 || serial_len > PKI_SERIAL_MAX || (unsigned)hash >= PKI_OCSP_NUM_HASHES) {
    return NULL;
  }
  const slot *s = find(st, serial, serial_len);
  if (s->serial_len == 0 || s->responses[hash] == NULL) return NULL;
  *out_len = s->responses[hash]->len;
  if (out_next_update != NULL) *out_next_update = s->responses[hash]->next_update;
  return s->responses[hash]->der;
}

void pkid_status_foreach_from(const pkid_status *st, size_t *cursor, size_t max,
                              int (*fn)(void *ctx, const pkid_cert_record *rec), void *ctx) {
  size_t i = *cursor, seen = 0;
  for (; i <= st->mask && seen < max; i++) {
    if (st->slots[i].serial_len == 0) continue;
    seen++;
    pkid_cert_record rec;
    to_record(&st->slots[i], &rec);
    if (!fn(ctx, &rec)) {
      i++;
      break;
    }
  }
  *cursor = i > st->mask ? 0 : i;
}

void pkid_status_remap_services(pkid_status *st, const uint16_t *map, size_t map_len) {
  for (size_t i = 0; i <= st->mask; i++) {
    slot *s = &st->slots[i];
    if (s->serial_len == 0) continue;
    s->service = s->service < map_len ? map[s->service] : 0xffff;
  }
}

void pkid_status_foreach(const pkid_status *st,
                         int (*fn)(void *ctx, const pkid_cert_record *rec), void *ctx) {
  for (size_t i = 0; i <= st->mask; i++) {
    if (st->slots[i].serial_len == 0) continue;
    pkid_cert_record rec;
    to_record(&st->slots[i], &rec);
    if (!fn(ctx, &rec)) return;
  }
}

void pkid_cert_record_ocsp(const pkid_cert_record *rec, pki_ocsp_single *out) {
  out->status = rec->revoked ? PKI_OCSP_REVOKED : PKI_OCSP_GOOD;
  out->revocation_time = rec->revoked ? rec->revoked_at : 0;
  out->revocation_reason =
      rec->revoked && rec->reason != 0 && rec->reason != 7 && rec->reason <= 10 ? rec->reason
                                                                                : -1;
}
