#include "server/store/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/ceremony_log.h"
#include "lib/record.h"

#define SNAPSHOT_VERSION 4
#define NO_CA 0xff
#define NO_SERVICE 0xffff

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint8_t ca_index(const pkid_cas *cas, const uint8_t *name, size_t len) {
  for (size_t i = 0; i < cas->num_cas && i < NO_CA; i++) {
    const char *n = cas->cas[i].def->name;
    if (strlen(n) == len && memcmp(n, name, len) == 0) return (uint8_t)i;
  }
  return NO_CA;
}

static uint16_t service_index(const pki_catalog *cat, const uint8_t *name, size_t len) {
  for (size_t i = 0; i < cat->num_services && i < NO_SERVICE; i++) {
    const char *n = cat->services[i].name;
    if (strlen(n) == len && memcmp(n, name, len) == 0) return (uint16_t)i;
  }
  return NO_SERVICE;
}

static int add_u8_str(CBB *cbb, const char *s) {
  CBB child;
  return CBB_add_u8_length_prefixed(cbb, &child) &&
         CBB_add_bytes(&child, (const uint8_t *)s, strlen(s)) && CBB_flush(cbb);
}

static int add_u16_str(CBB *cbb, const char *s) {
  CBB child;
  return CBB_add_u16_length_prefixed(cbb, &child) &&
         CBB_add_bytes(&child, (const uint8_t *)s, strlen(s)) && CBB_flush(cbb);
}


/* --- bootstrap tokens used ------------------------------------------------ */

int pkid_store_token_take(pkid_store *st, const uint8_t id[32], pki_err *err) {
  int added;
  if (!pkid_idset_add(&st->tokens, id, &added)) {
    PKI_ERR_OOM(err);
    return 0;
  }
  if (!added) {
    PKI_ERR(err, PKI_ERR_AUTH, "bootstrap token already used");
    return 0;
  }
  return 1;
}

void pkid_store_token_release(pkid_store *st, const uint8_t id[32]) {
  pkid_idset_remove(&st->tokens, id);
}

pkid_acme_state *pkid_store_acme(pkid_store *st) { return st->acme; }

/* apply_acme applies an EVENT of an ACME kind, from the journal or a
 * snapshot, whose |service| is not NUL-terminated there. */
static int apply_acme(pkid_store *st, int kind, const uint8_t *service, size_t service_len,
                      const uint8_t *detail, size_t len, int64_t time, pki_err *err) {
  char svc[256];
  if (service_len >= sizeof(svc) ||
      (service_len > 0 && memchr(service, 0, service_len) != NULL)) {
    PKI_ERR(err, PKI_ERR_INVALID, "an ACME record's service is not a name");
    return 0;
  }
  if (service_len > 0) memcpy(svc, service, service_len);
  svc[service_len] = '\0';
  return pkid_acme_state_apply(st->acme, kind, svc, detail, len, time, err);
}

/* --- applying records ------------------------------------------------------ */

static int apply_issue(pkid_store *st, const pkid_cert_record *rec) {
  st->issued++;
  return pkid_status_put(st->status, rec);
}

/* apply_revoke marks |serial| revoked in the index and adds it to its
 * CA's CRL state; the first revocation of a serial stands. A key revoked
 * for keyCompromise is noted even when the serial was revoked before (for
 * another reason): from then on it gets no certificate. */
static int apply_revoke(pkid_store *st, const pki_serial *serial, uint8_t reason,
                        int64_t revoked_at, int64_t invalidity_date, const uint8_t *key_hash) {
  pkid_cert_record rec;
  st->revoked++;
  if (key_hash != NULL && reason == PKI_CRL_REASON_KEY_COMPROMISE &&
      !pkid_idset_add(&st->compromised, key_hash, NULL)) {
    return 0;
  }
  if (!pkid_status_get(st->status, serial->bytes, serial->len, &rec)) return 1;
  if (rec.revoked) return 1;
  rec.revoked = 1;
  rec.reason = reason;
  rec.revoked_at = revoked_at;
  if (!pkid_status_put(st->status, &rec)) return 0;
  if (rec.ca >= st->cas->num_cas) return 1; /* a CA not loaded has no CRL here */
  return pkid_ca_crls_add(&st->crls[rec.ca], serial, reason, revoked_at, invalidity_date,
                          rec.not_after);
}

/* apply_crl records that a CA's CRLs of one number are durable. */
static void apply_crl(pkid_store *st, uint8_t ca, uint64_t number, uint64_t base,
                      int64_t this_update, uint64_t cut) {
  if (ca >= st->cas->num_cas) return;
  pkid_ca_crls_made(&st->crls[ca], number, number == base, this_update, cut);
}

/* note_ceremony moves the last ceremony entry journaled on, from an EVENT
 * whose detail is the entry's line. */
static void note_ceremony(pkid_store *st, const uint8_t *line, size_t len) {
  pki_ceremony_entry e;
  pki_err err;
  if (pki_ceremony_line_parse((const char *)line, len, &e, &err) && e.seq > st->ceremony_seq) {
    st->ceremony_seq = e.seq;
    memcpy(st->ceremony_hash, e.hash, 32);
  }
}

static int replay_record(void *ctx, const pki_journal_record *r, pki_err *err) {
  pkid_store *st = ctx;
  pki_parsed_record p;
  st->replayed++;
  if (!pki_record_parse(r, &p, err)) return 0;
  switch (p.type) {
    case PKI_REC_SERIAL_BLOCK:
      if (p.block_node == st->node && p.block_first + p.block_count > st->reserved_end) {
        st->reserved_end = p.block_first + p.block_count;
      }
      return 1;
    case PKI_REC_ISSUE: {
      pkid_cert_record rec;
      memset(&rec, 0, sizeof(rec));
      rec.serial = p.serial;
      rec.ca = ca_index(st->cas, p.ca.data, p.ca.len);
      rec.service = service_index(st->cat, p.service.data, p.service.len);
      rec.usage = p.usage;
      rec.not_before = (int64_t)p.not_before;
      rec.not_after = (int64_t)p.not_after;
      if (!apply_issue(st, &rec)) goto oom;
      return 1;
    }
    case PKI_REC_TOKEN:
      if (!pkid_store_token_take(st, p.token_id, err)) {
        /* Already there: a token is recorded once, so this is damage. */
        if (err->code == PKI_ERR_AUTH) {
          PKI_ERR(err, PKI_ERR_INVALID, "journal record %llu: a bootstrap token used twice",
                  (unsigned long long)r->seq);
        }
        return 0;
      }
      return 1;
    case PKI_REC_REVOKE:
      if (!apply_revoke(st, &p.serial, p.reason, (int64_t)p.revoked_at,
                        (int64_t)p.invalidity_date,
                        (p.flags & PKI_REVOKE_HAS_KEY) ? p.key_hash : NULL)) {
        goto oom;
      }
      return 1;
    case PKI_REC_CRL:
      apply_crl(st, ca_index(st->cas, p.ca.data, p.ca.len), p.crl_number, p.crl_base,
                (int64_t)p.crl_this_update, p.crl_cut);
      return 1;
    case PKI_REC_EVENT:
      /* The audit trail's alone, but for where the ceremony import is and
       * the ACME state. */
      if (p.event_kind == PKI_EVENT_CEREMONY) note_ceremony(st, p.detail.data, p.detail.len);
      if (p.event_kind == PKI_EVENT_EAB_CREATED || p.event_kind == PKI_EVENT_EAB_USED ||
          p.event_kind == PKI_EVENT_ACME_ACCOUNT) {
        /* Checked before it was journaled: one that does not apply now is
         * damage, and the state after it could not be trusted. */
        if (!apply_acme(st, p.event_kind, p.service.data, p.service.len, p.detail.data,
                        p.detail.len, (int64_t)p.event_first, err)) {
          pki_err_prefix(err, "journal record %llu: ", (unsigned long long)r->seq);
          return 0;
        }
      }
      return 1;
  }
  return 1;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory replaying the journal");
  return 0;
}

/* --- snapshots --------------------------------------------------------------
 *
 * u8 version=4, u16 node, u64 reserved_end,
 * u16 count + u8-len CA names, u16 count + u8-len service names,
 * u64 records, each: u8-len serial, u8 CA (index into the names, 0xff
 * none), u16 service (index, 0xffff none), u8 usage, u8 revoked, u8 reason,
 * u64 notBefore, u64 notAfter, u64 revokedAt;
 * u64 tokens used, each 32 octets;
 * (version 2 on:) u64 keys revoked for keyCompromise, each 32 octets;
 * u16 CAs with CRL state, each: u8 CA (index into the names), u64 last
 * ordinal, u64 cRLNumber, u64 last thisUpdate, u64 last cut, u64 base
 * number, u64 base thisUpdate, u64 base cut, u64 base drop thisUpdate,
 * u64 base drop cut, u64 entries, each: u8-len serial, u8 reason, u64
 * ordinal, u64 revokedAt, u64 invalidityDate, u64 notAfter;
 * (version 3 on:) u64 the last ceremony log entry journaled, 32 octets its
 * hash;
 * (version 4 on:) u32 ACME records (acme_state.h), in the order applied,
 * each: u8 kind, u8-len service, u32-len detail, u64 time (s): the EVENT
 * records' own fields, applied again at load as a replay would. An
 * older snapshot loads with no ACME state: it was written before any.
 * Names are stored so that a catalogue reordered between runs still maps.
 * A version 1 snapshot has no CRL state: its revoked certificates become
 * the CRL entries, in index order, and numbering starts afresh. */

typedef struct snap_writer {
  CBB *cbb;
  int ok;
} snap_writer;

static int add_u8_bytes(CBB *cbb, const uint8_t *p, size_t len) {
  CBB child;
  return CBB_add_u8_length_prefixed(cbb, &child) && CBB_add_bytes(&child, p, len) &&
         CBB_flush(cbb);
}

static int write_record(void *ctx, const pkid_cert_record *rec) {
  snap_writer *w = ctx;
  w->ok = add_u8_bytes(w->cbb, rec->serial.bytes, rec->serial.len) &&
          CBB_add_u8(w->cbb, rec->ca) && CBB_add_u16(w->cbb, rec->service) &&
          CBB_add_u8(w->cbb, rec->usage) && CBB_add_u8(w->cbb, rec->revoked) &&
          CBB_add_u8(w->cbb, rec->reason) && CBB_add_u64(w->cbb, (uint64_t)rec->not_before) &&
          CBB_add_u64(w->cbb, (uint64_t)rec->not_after) &&
          CBB_add_u64(w->cbb, (uint64_t)rec->revoked_at);
  return w->ok;
}

static int write_id(void *ctx, const uint8_t id[32]) { return CBB_add_bytes(ctx, id, 32); }

static int count_acme(void *ctx, int kind, const char *service, const uint8_t *detail,
                      size_t len, int64_t time) {
  (void)kind, (void)service, (void)detail, (void)len, (void)time;
  return ++*(uint32_t *)ctx != 0; /* 0 on overflow: 2^32 records will not fit */
}

static int write_acme(void *ctx, int kind, const char *service, const uint8_t *detail,
                      size_t len, int64_t time) {
  CBB *cbb = ctx;
  return len <= UINT32_MAX && CBB_add_u8(cbb, (uint8_t)kind) && add_u8_str(cbb, service) &&
         CBB_add_u32(cbb, (uint32_t)len) && CBB_add_bytes(cbb, detail, len) &&
         CBB_add_u64(cbb, (uint64_t)time);
}

static int write_crls(CBB *cbb, const pkid_ca_crls *c, uint8_t ca) {
  if (!CBB_add_u8(cbb, ca) || !CBB_add_u64(cbb, c->last_ord) || !CBB_add_u64(cbb, c->number) ||
      !CBB_add_u64(cbb, (uint64_t)c->last_this_update) || !CBB_add_u64(cbb, c->last_cut) ||
      !CBB_add_u64(cbb, c->base_number) || !CBB_add_u64(cbb, (uint64_t)c->base_this_update) ||
      !CBB_add_u64(cbb, c->base_cut) || !CBB_add_u64(cbb, (uint64_t)c->base_drop_t) ||
      !CBB_add_u64(cbb, c->base_drop_cut) || !CBB_add_u64(cbb, c->num_entries)) {
    return 0;
  }
  for (size_t i = 0; i < c->num_entries; i++) {
    const pkid_revoked *e = &c->entries[i];
    if (!add_u8_bytes(cbb, e->serial, e->serial_len) || !CBB_add_u8(cbb, e->reason) ||
        !CBB_add_u64(cbb, e->ord) || !CBB_add_u64(cbb, (uint64_t)e->revoked_at) ||
        !CBB_add_u64(cbb, (uint64_t)e->invalidity_date) ||
        !CBB_add_u64(cbb, (uint64_t)e->not_after)) {
      return 0;
    }
  }
  return 1;
}

int pkid_store_snapshot(pkid_store *st, pki_err *err) {
  CBB cbb;
  uint8_t *state = NULL;
  size_t len;
  if (!CBB_init(&cbb, 64 + pkid_status_count(st->status) * 48) ||
      !CBB_add_u8(&cbb, SNAPSHOT_VERSION) || !CBB_add_u16(&cbb, st->node) ||
      !CBB_add_u64(&cbb, st->reserved_end) || !CBB_add_u16(&cbb, (uint16_t)st->cas->num_cas)) {
    goto oom;
  }
  for (size_t i = 0; i < st->cas->num_cas; i++) {
    if (!add_u8_str(&cbb, st->cas->cas[i].def->name)) goto oom;
  }
  if (!CBB_add_u16(&cbb, (uint16_t)st->cat->num_services)) goto oom;
  for (size_t i = 0; i < st->cat->num_services; i++) {
    if (!add_u8_str(&cbb, st->cat->services[i].name)) goto oom;
  }
  if (!CBB_add_u64(&cbb, pkid_status_count(st->status))) goto oom;
  snap_writer w = {&cbb, 1};
  pkid_status_foreach(st->status, write_record, &w);
  if (!w.ok || !CBB_add_u64(&cbb, st->tokens.count) ||
      !pkid_idset_foreach(&st->tokens, write_id, &cbb) ||
      !CBB_add_u64(&cbb, st->compromised.count) ||
      !pkid_idset_foreach(&st->compromised, write_id, &cbb) ||
      !CBB_add_u16(&cbb, (uint16_t)st->cas->num_cas)) {
    goto oom;
  }
  for (size_t i = 0; i < st->cas->num_cas; i++) {
    if (!write_crls(&cbb, &st->crls[i], (uint8_t)i)) goto oom;
  }
  uint32_t num_acme = 0;
  if (!CBB_add_u64(&cbb, st->ceremony_seq) || !CBB_add_bytes(&cbb, st->ceremony_hash, 32) ||
      !pkid_acme_state_each(st->acme, count_acme, &num_acme) ||
      !CBB_add_u32(&cbb, num_acme) || !pkid_acme_state_each(st->acme, write_acme, &cbb) ||
      !CBB_finish(&cbb, &state, &len)) {
    goto oom;
  }
  int ok = pki_journal_snapshot(st->journal, state, len, err);
  OPENSSL_free(state);
  return ok;
oom:
  CBB_cleanup(&cbb);
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory writing a snapshot");
  return 0;
}

static int load_names(CBS *cbs, CBS *names, uint16_t *num) {
  if (!CBS_get_u16(cbs, num) || *num > 4096) return 0;
  for (uint16_t i = 0; i < *num; i++) {
    if (!CBS_get_u8_length_prefixed(cbs, &names[i])) return 0;
  }
  return 1;
}

/* crls_from_index makes the CRL entries of a version 1 snapshot's revoked
 * certificates. */
static int add_revoked_entry(void *ctx, const pkid_cert_record *rec) {
  pkid_store *st = ctx;
  if (!rec->revoked || rec->ca >= st->cas->num_cas) return 1;
  return pkid_ca_crls_add(&st->crls[rec->ca], &rec->serial, rec->reason, rec->revoked_at, 0,
                          rec->not_after);
}

/* load_crls reads one CA's CRL state; a CA that is not loaded now is read
 * and dropped. 0 when malformed, -1 when out of memory. */
static int load_crls(pkid_store *st, CBS *cbs, const CBS *ca_names, uint16_t num_ca) {
  uint8_t ca;
  uint64_t last_ord, number, last_t, last_cut, base, base_t, base_cut, drop_t, drop_cut, n;
  if (!CBS_get_u8(cbs, &ca) || !CBS_get_u64(cbs, &last_ord) || !CBS_get_u64(cbs, &number) ||
      !CBS_get_u64(cbs, &last_t) || !CBS_get_u64(cbs, &last_cut) || !CBS_get_u64(cbs, &base) ||
      !CBS_get_u64(cbs, &base_t) || !CBS_get_u64(cbs, &base_cut) ||
      !CBS_get_u64(cbs, &drop_t) || !CBS_get_u64(cbs, &drop_cut) || !CBS_get_u64(cbs, &n) ||
      ca >= num_ca || n > CBS_len(cbs) / 34) {
    return 0;
  }
  uint8_t idx = ca_index(st->cas, CBS_data(&ca_names[ca]), CBS_len(&ca_names[ca]));
  pkid_ca_crls *c = idx < st->cas->num_cas ? &st->crls[idx] : NULL;
  if (c != NULL) {
    c->number = number;
    c->last_this_update = (int64_t)last_t;
    c->last_cut = last_cut;
    c->base_number = base;
    c->base_this_update = (int64_t)base_t;
    c->base_cut = base_cut;
    c->base_drop_t = (int64_t)drop_t;
    c->base_drop_cut = drop_cut;
  }
  for (uint64_t i = 0; i < n; i++) {
    pki_serial serial;
    uint8_t reason;
    uint64_t ord, at, invalidity, not_after;
    if (!pki_cbs_get_serial(cbs, &serial) || !CBS_get_u8(cbs, &reason) || !CBS_get_u64(cbs, &ord) ||
        !CBS_get_u64(cbs, &at) || !CBS_get_u64(cbs, &invalidity) ||
        !CBS_get_u64(cbs, &not_after) || ord > last_ord) {
      return 0;
    }
    if (c == NULL) continue;
    /* Ordinals are kept as they were: entries purged at a base leave gaps. */
    c->last_ord = ord - 1;
    if (!pkid_ca_crls_add(c, &serial, reason, (int64_t)at, (int64_t)invalidity,
                          (int64_t)not_after)) {
      return -1;
    }
  }
  if (c != NULL) c->last_ord = last_ord;
  return 1;
}

static int load_snapshot(void *ctx, uint64_t seq, const uint8_t *state, size_t len,
                         pki_err *err) {
  pkid_store *st = ctx;
  (void)seq;
  CBS cbs, *ca_names = NULL, *svc_names = NULL;
  uint8_t version, *ca_map = NULL;
  uint16_t *svc_map = NULL;
  uint16_t node, num_ca, num_svc;
  uint64_t reserved_end, count;
  int ok = 0;
  CBS_init(&cbs, state, len);
  ca_names = calloc(4096, sizeof(CBS));
  svc_names = calloc(4096, sizeof(CBS));
  ca_map = calloc(4096, sizeof(*ca_map));
  svc_map = calloc(4096, sizeof(*svc_map));
  if (ca_names == NULL || svc_names == NULL || ca_map == NULL || svc_map == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  if (!CBS_get_u8(&cbs, &version) || version == 0 || version > SNAPSHOT_VERSION ||
      !CBS_get_u16(&cbs, &node) || !CBS_get_u64(&cbs, &reserved_end) ||
      !load_names(&cbs, ca_names, &num_ca) || !load_names(&cbs, svc_names, &num_svc) ||
      !CBS_get_u64(&cbs, &count)) {
    goto bad;
  }
  if (node == st->node) st->reserved_end = reserved_end;
  /* The names' indexes now, once, rather than a search of the catalogue for
   * each of millions of records. */
  for (uint16_t i = 0; i < num_ca; i++) {
    ca_map[i] = ca_index(st->cas, CBS_data(&ca_names[i]), CBS_len(&ca_names[i]));
  }
  for (uint16_t i = 0; i < num_svc; i++) {
    svc_map[i] = service_index(st->cat, CBS_data(&svc_names[i]), CBS_len(&svc_names[i]));
  }
  /* Each record is at least 32 bytes: a count beyond that is damage. */
  if (count > CBS_len(&cbs) / 32 ||
      !pkid_status_reserve(st->status, pkid_status_count(st->status) + (size_t)count)) {
    goto bad;
  }
  for (uint64_t i = 0; i < count; i++) {
    pkid_cert_record rec;
    uint8_t ca, usage, revoked, reason;
    uint16_t svc;
    uint64_t nb, na, at;
    memset(&rec, 0, sizeof(rec));
    if (!pki_cbs_get_serial(&cbs, &rec.serial) || !CBS_get_u8(&cbs, &ca) ||
        !CBS_get_u16(&cbs, &svc) || !CBS_get_u8(&cbs, &usage) ||
        !CBS_get_u8(&cbs, &revoked) || !CBS_get_u8(&cbs, &reason) ||
        !CBS_get_u64(&cbs, &nb) || !CBS_get_u64(&cbs, &na) || !CBS_get_u64(&cbs, &at)) {
      goto bad;
    }
    rec.ca = ca < num_ca ? ca_map[ca] : NO_CA;
    rec.service = svc < num_svc ? svc_map[svc] : NO_SERVICE;
    rec.usage = usage;
    rec.revoked = revoked != 0;
    rec.reason = reason;
    rec.not_before = (int64_t)nb;
    rec.not_after = (int64_t)na;
    rec.revoked_at = (int64_t)at;
    if (!pkid_status_put(st->status, &rec)) goto oom;
  }
  uint64_t num_ids;
  if (!CBS_get_u64(&cbs, &num_ids) || num_ids > CBS_len(&cbs) / 32) goto bad;
  for (uint64_t i = 0; i < num_ids; i++) {
    CBS id;
    if (!CBS_get_bytes(&cbs, &id, 32)) goto bad;
    if (!pkid_store_token_take(st, CBS_data(&id), err)) {
      if (err->code == PKI_ERR_AUTH) goto bad; /* twice in the snapshot */
      goto out;
    }
  }
  if (version == 1) {
    pkid_status_foreach(st->status, add_revoked_entry, st);
  } else {
    if (!CBS_get_u64(&cbs, &num_ids) || num_ids > CBS_len(&cbs) / 32) goto bad;
    for (uint64_t i = 0; i < num_ids; i++) {
      CBS id;
      if (!CBS_get_bytes(&cbs, &id, 32)) goto bad;
      if (!pkid_idset_add(&st->compromised, CBS_data(&id), NULL)) goto oom;
    }
    uint16_t num_crls;
    if (!CBS_get_u16(&cbs, &num_crls)) goto bad;
    for (uint16_t i = 0; i < num_crls; i++) {
      int r = load_crls(st, &cbs, ca_names, num_ca);
      if (r == 0) goto bad;
      if (r < 0) goto oom;
    }
  }
  if (version >= 3) {
    CBS hash;
    if (!CBS_get_u64(&cbs, &st->ceremony_seq) || !CBS_get_bytes(&cbs, &hash, 32)) goto bad;
    memcpy(st->ceremony_hash, CBS_data(&hash), 32);
  }
  if (version >= 4) {
    uint32_t num_acme;
    /* Each record is at least 14 octets: a count beyond that is damage. */
    if (!CBS_get_u32(&cbs, &num_acme) || num_acme > CBS_len(&cbs) / 14) goto bad;
    for (uint32_t i = 0; i < num_acme; i++) {
      uint8_t kind;
      uint32_t detail_len;
      uint64_t t;
      CBS svc, detail;
      if (!CBS_get_u8(&cbs, &kind) || !CBS_get_u8_length_prefixed(&cbs, &svc) ||
          !CBS_get_u32(&cbs, &detail_len) || !CBS_get_bytes(&cbs, &detail, detail_len) ||
          !CBS_get_u64(&cbs, &t)) {
        goto bad;
      }
      if (!apply_acme(st, kind, CBS_data(&svc), CBS_len(&svc), CBS_data(&detail),
                      CBS_len(&detail), (int64_t)t, err)) {
        pki_err_prefix(err, "snapshot ACME record %u: ", (unsigned)i);
        goto out;
      }
    }
  }
  if (CBS_len(&cbs) != 0) goto bad;
  ok = 1;
  goto out;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "snapshot state is malformed");
  goto out;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory loading the snapshot");
out:
  free(ca_names);
  free(svc_names);
  free(ca_map);
  free(svc_map);
  return ok;
}

/* --- open, commit, apply ------------------------------------------------------ */

static int copy_id(void *ctx, const uint8_t id[32]) {
  return pkid_idset_add(ctx, id, NULL);
}

int pkid_store_open(pkid_store *out, const char *dir, const pki_catalog *cat,
                    const pkid_cas *cas, pkid_status *status, const pkid_store_options *opts,
                    pki_err *err) {
  memset(out, 0, sizeof(*out));
  out->cat = cat;
  out->cas = cas;
  out->status = status;
  out->node = opts->node;
  out->crls = calloc(cas->num_cas > 0 ? cas->num_cas : 1, sizeof(*out->crls));
  out->acme = pkid_acme_state_new();
  if (out->crls == NULL || out->acme == NULL) {
    PKI_ERR_OOM(err);
    pkid_store_close(out);
    return 0;
  }
  pki_journal_options jopts = {.on_snapshot = load_snapshot,
                               .segment_bytes = opts->segment_bytes};
  out->journal = pki_journal_open(dir, &jopts, replay_record, out, err);
  if (out->journal == NULL) {
    pki_err_prefix(err, "journal %s: ", dir);
    pkid_store_close(out);
    return 0;
  }
  /* The committer's own copy of the compromised keys, from here on its. */
  if (!pkid_idset_foreach(&out->compromised, copy_id, &out->commit_compromised)) {
    PKI_ERR_OOM(err);
    pkid_store_close(out);
    return 0;
  }
  return 1;
}

/* encode_record writes the payload of |rec|'s record into |cbb|. */
static int encode_record(CBB *cbb, const pkid_store *st, const pkid_record *rec) {
  CBB serial, cert;
  uint8_t version = rec->type == PKI_REC_ISSUE   ? PKI_ISSUE_VERSION
                    : rec->type == PKI_REC_REVOKE  ? PKI_REVOKE_VERSION
                    : rec->type == PKI_REC_CRL   ? PKI_CRL_VERSION
                    : rec->type == PKI_REC_EVENT ? PKI_EVENT_VERSION
                                                 : PKI_RECORD_VERSION;
  if (!CBB_add_u8(cbb, version)) return 0;
  switch (rec->type) {
    case PKI_REC_SERIAL_BLOCK:
      return CBB_add_u16(cbb, st->node) && CBB_add_u64(cbb, rec->block_first) &&
             CBB_add_u64(cbb, rec->block_count);
    case PKI_REC_ISSUE:
      return CBB_add_u8_length_prefixed(cbb, &serial) &&
             CBB_add_bytes(&serial, rec->serial.bytes, rec->serial.len) && CBB_flush(cbb) &&
             add_u8_str(cbb, rec->ca->def->name) && add_u8_str(cbb, rec->service) &&
             add_u16_str(cbb, rec->identity) && CBB_add_u8(cbb, (uint8_t)rec->usage) &&
             CBB_add_u64(cbb, (uint64_t)rec->not_before) &&
             CBB_add_u64(cbb, (uint64_t)rec->not_after) &&
             CBB_add_bytes(cbb, rec->key_hash, sizeof(rec->key_hash)) &&
             CBB_add_u24_length_prefixed(cbb, &cert) &&
             CBB_add_bytes(&cert, rec->cert, rec->cert_len) && CBB_flush(cbb) &&
             CBB_add_u8_length_prefixed(cbb, &serial) &&
             CBB_add_bytes(&serial, rec->renews.bytes, rec->renews.len) && CBB_flush(cbb);
    case PKI_REC_REVOKE: {
      uint8_t flags = (rec->has_key_hash ? PKI_REVOKE_HAS_KEY : 0) | (rec->by_key ? PKI_REVOKE_BY_KEY : 0);
      return CBB_add_u8_length_prefixed(cbb, &serial) &&
             CBB_add_bytes(&serial, rec->serial.bytes, rec->serial.len) && CBB_flush(cbb) &&
             CBB_add_u8(cbb, rec->reason) && CBB_add_u64(cbb, (uint64_t)rec->revoked_at) &&
             add_u16_str(cbb, rec->identity) &&
             CBB_add_u64(cbb, (uint64_t)rec->invalidity_date) && CBB_add_u8(cbb, flags) &&
             (!rec->has_key_hash || CBB_add_bytes(cbb, rec->key_hash, sizeof(rec->key_hash)));
    }
    case PKI_REC_TOKEN:
      return CBB_add_bytes(cbb, rec->token_id, sizeof(rec->token_id));
    case PKI_REC_CRL:
      return add_u8_str(cbb, rec->ca->def->name) && CBB_add_u64(cbb, rec->crl_number) &&
             CBB_add_u64(cbb, rec->crl_base) &&
             CBB_add_u64(cbb, (uint64_t)rec->crl_this_update) &&
             CBB_add_u64(cbb, (uint64_t)rec->crl_next_update) && CBB_add_u64(cbb, rec->crl_cut) &&
             CBB_add_u32(cbb, rec->crl_entries) && CBB_add_u32(cbb, rec->crl_delta_entries) &&
             CBB_add_bytes(cbb, rec->crl_hash, 32) && CBB_add_bytes(cbb, rec->crl_delta_hash, 32);
    case PKI_REC_EVENT:
      return CBB_add_u8(cbb, rec->event_kind) && CBB_add_u8(cbb, rec->event_outcome) &&
             add_u16_str(cbb, rec->identity) &&
             add_u8_str(cbb, rec->service != NULL ? rec->service : "") &&
             CBB_add_u8_length_prefixed(cbb, &serial) &&
             CBB_add_bytes(&serial, rec->serial.bytes, rec->serial.len) && CBB_flush(cbb) &&
             CBB_add_u32(cbb, rec->event_count) && CBB_add_u64(cbb, (uint64_t)rec->event_first) &&
             CBB_add_u64(cbb, (uint64_t)rec->event_last) &&
             add_u16_str(cbb, rec->detail != NULL ? rec->detail : "");
  }
  return 0;
}

/* add_entry encodes one record of |type| (the record's own, or TOKEN for
 * the token an issuance used) as journal entry |e|. */
static int add_entry(pki_journal_entry *e, uint8_t **payload, const pkid_store *st,
                     const pkid_record *rec, pki_record_type type, uint64_t t) {
  pkid_record token;
  CBB cbb;
  size_t len;
  if (type == PKI_REC_TOKEN && rec->type != PKI_REC_TOKEN) {
    memset(&token, 0, sizeof(token));
    token.type = PKI_REC_TOKEN;
    memcpy(token.token_id, rec->token_id, sizeof(token.token_id));
    rec = &token;
  }
  if (!CBB_init(&cbb, 64 + rec->cert_len) || !encode_record(&cbb, st, rec) ||
      !CBB_finish(&cbb, payload, &len)) {
    CBB_cleanup(&cbb);
    return 0;
  }
  *e = (pki_journal_entry){.type = (uint8_t)type, .time = t, .payload = *payload, .len = len};
  return 1;
}

int pkid_store_commit(pkid_store *st, const pkid_record *const *recs, size_t n, pki_err *err) {
  /* After a failure the journal takes nothing more; pkid is on its way
   * down, to be restarted: for the clients, that is "retry". */
  if (pki_journal_failed(st->journal)) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "pkid's journal failed; it is restarting");
    return 0;
  }
  /* At most two entries per change: a used token, then the issuance. */
  pki_journal_entry *entries = calloc(2 * n + 1, sizeof(*entries));
  uint8_t **payloads = calloc(2 * n + 1, sizeof(*payloads));
  size_t num = 0;
  int ok = 0;
  if (entries == NULL || payloads == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  uint64_t t = now_ms();
  for (size_t i = 0; i < n; i++) {
    if (recs[i]->type == PKI_REC_ISSUE && recs[i]->has_token) {
      if (!add_entry(&entries[num], &payloads[num], st, recs[i], PKI_REC_TOKEN, t)) goto oom;
      num++;
    }
    if (!add_entry(&entries[num], &payloads[num], st, recs[i], recs[i]->type, t)) goto oom;
    num++;
  }
  ok = num == 0 || pki_journal_append(st->journal, entries, num, err);
  if (ok && num > 0 && st->on_durable != NULL) {
    pki_journal_pos end;
    pki_journal_durable_end(st->journal, &end);
    st->on_durable(st->on_durable_ctx, &end);
  }
  goto out;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory encoding a journal record");
out:
  for (size_t i = 0; payloads != NULL && i < num; i++) OPENSSL_free(payloads[i]);
  free(payloads);
  free(entries);
  return ok;
}

int pkid_store_reserve(pkid_store *st, uint64_t count, uint64_t *out_first, pki_err *err) {
  pkid_record rec = {.type = PKI_REC_SERIAL_BLOCK,
                     .block_first = st->reserved_end > 0 ? st->reserved_end : 1,
                     .block_count = count};
  const pkid_record *recs[1] = {&rec};
  if (!pkid_store_commit(st, recs, 1, err)) return 0;
  pkid_store_apply(st, &rec);
  *out_first = rec.block_first;
  return 1;
}

/* --- keys revoked for keyCompromise (committer thread) ---------------------- */

int pkid_store_commit_key_compromised(const pkid_store *st, const uint8_t key_hash[32]) {
  return pkid_idset_has(&st->commit_compromised, key_hash);
}

int pkid_store_commit_note_compromised(pkid_store *st, const uint8_t key_hash[32]) {
  return pkid_idset_add(&st->commit_compromised, key_hash, NULL);
}

/* A search of history for one key: first the key of the serial named,
 * then (|collect|) every unexpired certificate of that key, struck out
 * again when a later REVOKE record names it. */
typedef struct key_search {
  const pki_serial *named;
  uint8_t key[32];
  int have_key;
  int collect;
  int64_t now;
  pki_serial *found;
  size_t num_found, cap_found;
  pkid_idset live; /* SHA-256 of each found serial not revoked since */
  int oom;
} key_search;

static int same_serial(const pki_serial *a, const pki_serial *b) {
  return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

static void search_issue(key_search *ks, const pki_serial *serial, int64_t not_after,
                         const uint8_t key[32]) {
  if (!ks->collect) {
    if (same_serial(serial, ks->named)) {
      memcpy(ks->key, key, 32);
      ks->have_key = 1;
    }
    return;
  }
  if (memcmp(key, ks->key, 32) != 0 || same_serial(serial, ks->named) || not_after <= ks->now) {
    return;
  }
  if (ks->num_found == ks->cap_found) {
    size_t cap = ks->cap_found == 0 ? 16 : ks->cap_found * 2;
    pki_serial *f = realloc(ks->found, cap * sizeof(*f));
    if (f == NULL) {
      ks->oom = 1;
      return;
    }
    ks->found = f;
    ks->cap_found = cap;
  }
  ks->found[ks->num_found++] = *serial;
  uint8_t id[32];
  SHA256(serial->bytes, serial->len, id);
  if (!pkid_idset_add(&ks->live, id, NULL)) ks->oom = 1;
}

static void search_revoke(key_search *ks, const pki_serial *serial) {
  if (!ks->collect || ks->live.count == 0) return;
  uint8_t id[32];
  SHA256(serial->bytes, serial->len, id);
  pkid_idset_remove(&ks->live, id);
}

static int search_record(void *ctx, const pki_journal_record *r, pki_err *err) {
  key_search *ks = ctx;
  if (r->type != PKI_REC_ISSUE && r->type != PKI_REC_REVOKE) return 1;
  pki_parsed_record p;
  if (!pki_record_parse(r, &p, err)) return 0;
  if (p.type == PKI_REC_REVOKE) {
    search_revoke(ks, &p.serial);
  } else {
    search_issue(ks, &p.serial, (int64_t)p.not_after, p.key_hash);
  }
  if (ks->oom) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory searching the journal for a key");
    return 0;
  }
  return 1;
}

/* search_pass reads history, then the records of this commit ahead. */
static int search_pass(pkid_store *st, key_search *ks, const pkid_record *const *pending,
                       size_t num_pending, pki_err *err) {
  if (!pki_journal_read_all(st->journal, search_record, ks, err)) return 0;
  for (size_t i = 0; i < num_pending; i++) {
    const pkid_record *p = pending[i];
    if (p->type == PKI_REC_ISSUE) {
      search_issue(ks, &p->serial, p->not_after, p->key_hash);
    } else if (p->type == PKI_REC_REVOKE) {
      search_revoke(ks, &p->serial);
    }
  }
  if (ks->oom) {
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory searching the journal for a key");
    return 0;
  }
  return 1;
}

int pkid_store_key_search(pkid_store *st, const pki_serial *serial, uint8_t key_hash[32],
                          int same_key, int64_t now, const pkid_record *const *pending,
                          size_t num_pending, pki_serial **out, size_t *out_num, pki_err *err) {
  key_search ks;
  memset(&ks, 0, sizeof(ks));
  ks.named = serial;
  ks.now = now;
  *out = NULL;
  *out_num = 0;
  int ok = 0;
  if (!search_pass(st, &ks, pending, num_pending, err)) goto out;
  if (!ks.have_key) {
    char hex[2 * PKI_SERIAL_MAX + 1];
    pki_serial_to_hex(hex, serial);
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "the journal has no issuance of %s", hex);
    goto out;
  }
  memcpy(key_hash, ks.key, 32);
  if (same_key) {
    ks.collect = 1;
    if (!search_pass(st, &ks, pending, num_pending, err)) goto out;
    size_t n = 0;
    for (size_t i = 0; i < ks.num_found; i++) {
      uint8_t id[32];
      SHA256(ks.found[i].bytes, ks.found[i].len, id);
      if (pkid_idset_has(&ks.live, id)) ks.found[n++] = ks.found[i];
    }
    if (n > 0) {
      *out = ks.found;
      *out_num = n;
      ks.found = NULL;
    }
  }
  ok = 1;
out:
  free(ks.found);
  pkid_idset_cleanup(&ks.live);
  return ok;
}

void pkid_store_apply(pkid_store *st, const pkid_record *rec) {
  switch (rec->type) {
    case PKI_REC_ISSUE: {
      pkid_cert_record c;
      memset(&c, 0, sizeof(c));
      c.serial = rec->serial;
      c.ca = (uint8_t)pkid_cas_index(st->cas, rec->ca);
      /* By name: the catalogue may have been reloaded since the job began. */
      c.service = service_index(st->cat, (const uint8_t *)rec->service, strlen(rec->service));
      c.usage = (uint8_t)rec->usage;
      c.not_before = rec->not_before;
      c.not_after = rec->not_after;
      apply_issue(st, &c);
      break;
    }
    case PKI_REC_REVOKE:
      apply_revoke(st, &rec->serial, rec->reason, rec->revoked_at, rec->invalidity_date,
                   rec->has_key_hash ? rec->key_hash : NULL);
      break;
    case PKI_REC_CRL:
      apply_crl(st, (uint8_t)pkid_cas_index(st->cas, rec->ca), rec->crl_number, rec->crl_base,
                rec->crl_this_update, rec->crl_cut);
      break;
    case PKI_REC_SERIAL_BLOCK:
      if (rec->block_first + rec->block_count > st->reserved_end) {
        st->reserved_end = rec->block_first + rec->block_count;
      }
      break;
    case PKI_REC_TOKEN:
      break; /* taken on the loop thread before the commit */
    case PKI_REC_EVENT:
      /* No state here: the ceremony import moves ceremony_seq itself, and
       * the ACME server and the api apply their records to the ACME
       * state (pkid_store_acme) once durable. */
      break;
  }
}

void pkid_store_close(pkid_store *st) {
  if (st == NULL) return;
  pki_journal_close(st->journal);
  st->journal = NULL;
  pkid_idset_cleanup(&st->tokens);
  pkid_idset_cleanup(&st->compromised);
  pkid_idset_cleanup(&st->commit_compromised);
  pkid_idset_cleanup(&st->key_searched);
  pkid_idset_cleanup(&st->same_key_searched);
  for (size_t i = 0; st->crls != NULL && i < st->cas->num_cas; i++) {
    pkid_ca_crls_cleanup(&st->crls[i]);
  }
  free(st->crls);
  st->crls = NULL;
  pkid_acme_state_free(st->acme);
  st->acme = NULL;
}

void pkid_store_note_key_search(pkid_store *st, const pki_serial *serial, int same_key) {
  uint8_t id[32];
  SHA256(serial->bytes, serial->len, id);
  /* Out of memory only costs a repeat its shortcut. */
  (void)pkid_idset_add(same_key ? &st->same_key_searched : &st->key_searched, id, NULL);
}

int pkid_store_key_searched(const pkid_store *st, const pki_serial *serial, int same_key) {
  uint8_t id[32];
  SHA256(serial->bytes, serial->len, id);
  /* A search for the other certificates found the key too. */
  return pkid_idset_has(&st->same_key_searched, id) ||
         (!same_key && pkid_idset_has(&st->key_searched, id));
}
