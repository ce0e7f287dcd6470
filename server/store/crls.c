#include "server/store/crls.h"

#include <stdlib.h>
#include <string.h>

pkid_crl_blob *pkid_crl_blob_new(uint8_t *der, size_t len, uint64_t number,
                                 int64_t this_update, int64_t next_update, size_t num_entries) {
  pkid_crl_blob *b = malloc(sizeof(*b));
  if (b == NULL) {
    free(der);
    return NULL;
  }
  b->refs = 1;
  b->number = number;
  b->this_update = this_update;
  b->next_update = next_update;
  b->num_entries = num_entries;
  b->der = der;
  b->len = len;
  return b;
}

void pkid_crl_blob_ref(pkid_crl_blob *b) { b->refs++; }

void pkid_crl_blob_unref(void *p) {
  pkid_crl_blob *b = p;
  if (b != NULL && --b->refs == 0) {
    free(b->der);
    free(b);
  }
}

/* serial_hash is FNV-1a over the serial's octets: serials carry random
 * bits, so no one picks colliding ones, and all octets count. */
static size_t serial_hash(const uint8_t *bytes, size_t len) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < len; i++) h = (h ^ bytes[i]) * UINT64_C(0x100000001b3);
  return (size_t)(h ^ (h >> 32));
}

static void slot_put(pkid_ca_crls *c, size_t i) {
  const pkid_revoked *e = &c->entries[i];
  size_t at = serial_hash(e->serial, e->serial_len) & c->slot_mask;
  while (c->slots[at] != 0) at = (at + 1) & c->slot_mask;
  c->slots[at] = (uint32_t)(i + 1);
}

/* grow makes a table for |want| entries (at most half full) and places
 * every entry in it. 0 when out of memory: the old table stays. */
static int grow(pkid_ca_crls *c, size_t want) {
  size_t n = 64;
  while (n < 2 * want) n *= 2;
  uint32_t *slots = calloc(n, sizeof(*slots));
  if (slots == NULL) return 0;
  free(c->slots);
  c->slots = slots;
  c->slot_mask = n - 1;
  for (size_t i = 0; i < c->num_entries; i++) slot_put(c, i);
  return 1;
}

int pkid_ca_crls_add(pkid_ca_crls *c, const pki_serial *serial, uint8_t reason,
                     int64_t revoked_at, int64_t invalidity_date, int64_t not_after) {
  if (serial->len == 0 || serial->len > PKI_SERIAL_MAX) return 1; /* not a serial we issue */
  if (c->num_entries >= UINT32_MAX - 1) return 0;
  if (c->num_entries == c->cap_entries) {
    size_t cap = c->cap_entries == 0 ? 64 : c->cap_entries * 2;
    pkid_revoked *e = realloc(c->entries, cap * sizeof(*e));
    if (e == NULL) return 0;
    c->entries = e;
    c->cap_entries = cap;
  }
  if (c->slots == NULL || 2 * (c->num_entries + 1) > c->slot_mask + 1) {
    if (!grow(c, c->num_entries + 1)) return 0;
  }
  pkid_revoked *e = &c->entries[c->num_entries];
  memset(e, 0, sizeof(*e));
  memcpy(e->serial, serial->bytes, serial->len);
  e->serial_len = (uint8_t)serial->len;
  e->reason = reason;
  e->ord = ++c->last_ord;
  e->revoked_at = revoked_at;
  e->invalidity_date = invalidity_date;
  e->not_after = not_after;
  slot_put(c, c->num_entries++);
  return 1;
}

const pkid_revoked *pkid_ca_crls_find(const pkid_ca_crls *c, const pki_serial *serial) {
  if (c->slots == NULL) return NULL;
  size_t at = serial_hash(serial->bytes, serial->len) & c->slot_mask;
  for (; c->slots[at] != 0; at = (at + 1) & c->slot_mask) {
    const pkid_revoked *e = &c->entries[c->slots[at] - 1];
    if (e->serial_len == serial->len && memcmp(e->serial, serial->bytes, serial->len) == 0) {
      return e;
    }
  }
  return NULL;
}

uint64_t pkid_ca_crls_cut(const pkid_ca_crls *c) { return c->last_ord; }

/* dropped: the entry has left the complete CRLs built after a CRL with
 * thisUpdate |t| and cut |cut| (see the top of crls.h). */
static int dropped(const pkid_revoked *e, int64_t t, uint64_t cut) {
  return e->ord <= cut && e->not_after < t;
}

static void to_entry(pki_crl_entry *out, const pkid_revoked *e, int reason) {
  memset(out, 0, sizeof(*out));
  memcpy(out->serial.bytes, e->serial, e->serial_len);
  out->serial.len = e->serial_len;
  out->revocation_date = e->revoked_at;
  out->reason = reason;
  out->invalidity_date = e->invalidity_date;
}

int pkid_ca_crls_select(const pkid_ca_crls *c, uint64_t cut, pki_crl_entry **out_full,
                        size_t *out_num_full, pki_crl_entry **out_delta, size_t *out_num_delta) {
  *out_full = *out_delta = NULL;
  *out_num_full = *out_num_delta = 0;
  size_t n = 0;
  while (n < c->num_entries && c->entries[n].ord <= cut) n++;
  if (n == 0) return 1;
  pki_crl_entry *full = malloc(n * sizeof(*full));
  int has_base = c->base_number != 0;
  pki_crl_entry *delta = has_base ? malloc(n * sizeof(*delta)) : NULL;
  if (full == NULL || (has_base && delta == NULL)) {
    free(full);
    free(delta);
    return 0;
  }
  size_t num_full = 0, num_delta = 0;
  for (size_t i = 0; i < n; i++) {
    const pkid_revoked *e = &c->entries[i];
    int in_full = !dropped(e, c->last_this_update, c->last_cut);
    if (in_full) to_entry(&full[num_full++], e, e->reason);
    if (!has_base) continue;
    if (e->ord > c->base_cut) {
      if (in_full) to_entry(&delta[num_delta++], e, e->reason);
    } else if (!dropped(e, c->base_drop_t, c->base_drop_cut) && !in_full) {
      /* In the base, gone since: the delta says so (RFC 5280 5.3.1). */
      to_entry(&delta[num_delta++], e, PKI_CRL_REASON_REMOVE_FROM_CRL);
    }
  }
  if (num_full == 0) {
    free(full);
    full = NULL;
  }
  if (num_delta == 0) {
    free(delta);
    delta = NULL;
  }
  *out_full = full;
  *out_num_full = num_full;
  *out_delta = delta;
  *out_num_delta = num_delta;
  return 1;
}

void pkid_ca_crls_made(pkid_ca_crls *c, uint64_t number, int is_base, int64_t this_update,
                       uint64_t cut) {
  if (is_base) {
    c->base_number = number;
    c->base_this_update = this_update;
    c->base_cut = cut;
    c->base_drop_t = c->last_this_update;
    c->base_drop_cut = c->last_cut;
    /* What the base left out, no later CRL holds: dropping is for good. */
    size_t kept = 0;
    for (size_t i = 0; i < c->num_entries; i++) {
      if (!dropped(&c->entries[i], c->base_drop_t, c->base_drop_cut)) {
        c->entries[kept++] = c->entries[i];
      }
    }
    c->num_entries = kept;
    /* Fewer entries, same table: re-placed, with no allocation to fail. */
    if (c->slots != NULL) {
      memset(c->slots, 0, (c->slot_mask + 1) * sizeof(*c->slots));
      for (size_t i = 0; i < kept; i++) slot_put(c, i);
    }
  }
  if (number > c->number) c->number = number;
  c->last_this_update = this_update;
  c->last_cut = cut;
}

void pkid_ca_crls_publish(pkid_ca_crls *c, pkid_crl_blob *full, pkid_crl_blob *delta) {
  pkid_crl_blob_unref(c->full);
  pkid_crl_blob_unref(c->delta);
  c->full = full;
  c->delta = delta;
}

void pkid_ca_crls_cleanup(pkid_ca_crls *c) {
  free(c->entries);
  free(c->slots);
  pkid_crl_blob_unref(c->full);
  pkid_crl_blob_unref(c->delta);
  memset(c, 0, sizeof(*c));
}
