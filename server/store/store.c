#include "server/store/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>

#define RECORD_VERSION 1
#define SNAPSHOT_VERSION 1
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

static int get_serial(CBS *cbs, pki_serial *out) {
  CBS s;
  if (!CBS_get_u8_length_prefixed(cbs, &s) || CBS_len(&s) == 0 ||
      CBS_len(&s) > PKI_SERIAL_MAX) {
    return 0;
  }
  memset(out, 0, sizeof(*out));
  memcpy(out->bytes, CBS_data(&s), CBS_len(&s));
  out->len = CBS_len(&s);
  return 1;
}

/* --- bootstrap tokens used --------------------------------------------------
 * An open-addressing set of 32-octet ids; the ids are SHA-256 outputs, so
 * their first octets are a fine hash. An all-zero id never occurs. */

static int token_slot(const pkid_store *st, const uint8_t id[32], size_t *out) {
  uint64_t h;
  memcpy(&h, id, sizeof(h));
  size_t i = (size_t)h & st->tokens_mask;
  static const uint8_t kZero[32];
  for (;;) {
    if (memcmp(st->tokens[i], id, 32) == 0) {
      *out = i;
      return 1;
    }
    if (memcmp(st->tokens[i], kZero, 32) == 0) {
      *out = i;
      return 0;
    }
    i = (i + 1) & st->tokens_mask;
  }
}

static int token_grow(pkid_store *st) {
  size_t old_cap = st->tokens == NULL ? 0 : st->tokens_mask + 1;
  size_t cap = old_cap == 0 ? 64 : old_cap * 2;
  uint8_t(*old)[32] = st->tokens;
  st->tokens = calloc(cap, 32);
  if (st->tokens == NULL) {
    st->tokens = old;
    return 0;
  }
  st->tokens_mask = cap - 1;
  static const uint8_t kZero[32];
  for (size_t i = 0; i < old_cap; i++) {
    if (memcmp(old[i], kZero, 32) == 0) continue;
    size_t slot;
    token_slot(st, old[i], &slot);
    memcpy(st->tokens[slot], old[i], 32);
  }
  free(old);
  return 1;
}

int pkid_store_token_take(pkid_store *st, const uint8_t id[32], pki_err *err) {
  if ((st->tokens == NULL || (st->num_tokens + 1) * 2 > st->tokens_mask + 1) &&
      !token_grow(st)) {
    PKI_ERR_OOM(err);
    return 0;
  }
  size_t slot;
  if (token_slot(st, id, &slot)) {
    PKI_ERR(err, PKI_ERR_AUTH, "bootstrap token already used");
    return 0;
  }
  memcpy(st->tokens[slot], id, 32);
  st->num_tokens++;
  return 1;
}

void pkid_store_token_release(pkid_store *st, const uint8_t id[32]) {
  size_t slot;
  if (st->tokens == NULL || !token_slot(st, id, &slot)) return;
  /* Re-insert the run after the freed slot so probes still find it. */
  memset(st->tokens[slot], 0, 32);
  st->num_tokens--;
  static const uint8_t kZero[32];
  for (size_t i = (slot + 1) & st->tokens_mask; memcmp(st->tokens[i], kZero, 32) != 0;
       i = (i + 1) & st->tokens_mask) {
    uint8_t moved[32];
    memcpy(moved, st->tokens[i], 32);
    memset(st->tokens[i], 0, 32);
    size_t to;
    token_slot(st, moved, &to);
    memcpy(st->tokens[to], moved, 32);
  }
}

/* --- applying records ------------------------------------------------------ */

static int apply_issue(pkid_store *st, const pkid_cert_record *rec) {
  st->issued++;
  return pkid_status_put(st->status, rec);
}

static int apply_revoke(pkid_store *st, const pki_serial *serial, uint8_t reason,
                        int64_t revoked_at) {
  pkid_cert_record rec;
  st->revoked++;
  if (!pkid_status_get(st->status, serial->bytes, serial->len, &rec)) return 1;
  if (rec.revoked) return 1; /* the first revocation stands */
  rec.revoked = 1;
  rec.reason = reason;
  rec.revoked_at = revoked_at;
  return pkid_status_put(st->status, &rec);
}

static int replay_record(void *ctx, const pki_journal_record *r, pki_err *err) {
  pkid_store *st = ctx;
  CBS cbs;
  uint8_t version;
  CBS_init(&cbs, r->payload, r->len);
  st->replayed++;
  if (!CBS_get_u8(&cbs, &version) || version != RECORD_VERSION) goto bad;
  switch (r->type) {
    case PKID_REC_SERIAL_BLOCK: {
      uint16_t node;
      uint64_t first, count;
      if (!CBS_get_u16(&cbs, &node) || !CBS_get_u64(&cbs, &first) ||
          !CBS_get_u64(&cbs, &count) || CBS_len(&cbs) != 0) {
        goto bad;
      }
      if (node == st->node && first + count > st->reserved_end) st->reserved_end = first + count;
      return 1;
    }
    case PKID_REC_ISSUE: {
      pkid_cert_record rec;
      CBS ca, service, identity, cert;
      uint8_t usage;
      uint64_t nb, na;
      memset(&rec, 0, sizeof(rec));
      if (!get_serial(&cbs, &rec.serial) || !CBS_get_u8_length_prefixed(&cbs, &ca) ||
          !CBS_get_u8_length_prefixed(&cbs, &service) ||
          !CBS_get_u16_length_prefixed(&cbs, &identity) || !CBS_get_u8(&cbs, &usage) ||
          !CBS_get_u64(&cbs, &nb) || !CBS_get_u64(&cbs, &na) || !CBS_skip(&cbs, 32) ||
          !CBS_get_u24_length_prefixed(&cbs, &cert) || CBS_len(&cbs) != 0) {
        goto bad;
      }
      rec.ca = ca_index(st->cas, CBS_data(&ca), CBS_len(&ca));
      rec.service = service_index(st->cat, CBS_data(&service), CBS_len(&service));
      rec.usage = usage;
      rec.not_before = (int64_t)nb;
      rec.not_after = (int64_t)na;
      if (!apply_issue(st, &rec)) goto oom;
      return 1;
    }
    case PKID_REC_TOKEN: {
      CBS id;
      if (!CBS_get_bytes(&cbs, &id, 32) || CBS_len(&cbs) != 0) goto bad;
      if (!pkid_store_token_take(st, CBS_data(&id), err)) {
        /* Already there: a token is recorded once, so this is damage. */
        if (err->code == PKI_ERR_AUTH) {
          PKI_ERR(err, PKI_ERR_INVALID, "journal record %llu: a bootstrap token used twice",
                  (unsigned long long)r->seq);
        }
        return 0;
      }
      return 1;
    }
    case PKID_REC_REVOKE: {
      pki_serial serial;
      uint8_t reason;
      uint64_t at;
      CBS by;
      if (!get_serial(&cbs, &serial) || !CBS_get_u8(&cbs, &reason) ||
          !CBS_get_u64(&cbs, &at) || !CBS_get_u16_length_prefixed(&cbs, &by) ||
          CBS_len(&cbs) != 0) {
        goto bad;
      }
      if (!apply_revoke(st, &serial, reason, (int64_t)at)) goto oom;
      return 1;
    }
    default:
      /* A newer pkid's record: refuse rather than silently drop state. */
      PKI_ERR(err, PKI_ERR_UNSUPPORTED, "journal record %llu has unknown type %u",
              (unsigned long long)r->seq, r->type);
      return 0;
  }
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "journal record %llu (type %u) is malformed",
          (unsigned long long)r->seq, r->type);
  return 0;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory replaying the journal");
  return 0;
}

/* --- snapshots --------------------------------------------------------------
 *
 * u8 version=1, u16 node, u64 reserved_end,
 * u16 count + u8-len CA names, u16 count + u8-len service names,
 * u64 records, each: u8-len serial, u8 CA (index into the names, 0xff
 * none), u16 service (index, 0xffff none), u8 usage, u8 revoked, u8 reason,
 * u64 notBefore, u64 notAfter, u64 revokedAt;
 * u64 tokens used, each 32 octets.
 * Names are stored so that a catalogue reordered between runs still maps. */

typedef struct snap_writer {
  CBB *cbb;
  int ok;
} snap_writer;

static int write_record(void *ctx, const pkid_cert_record *rec) {
  snap_writer *w = ctx;
  CBB serial;
  w->ok = CBB_add_u8_length_prefixed(w->cbb, &serial) &&
          CBB_add_bytes(&serial, rec->serial.bytes, rec->serial.len) && CBB_flush(w->cbb) &&
          CBB_add_u8(w->cbb, rec->ca) && CBB_add_u16(w->cbb, rec->service) &&
          CBB_add_u8(w->cbb, rec->usage) && CBB_add_u8(w->cbb, rec->revoked) &&
          CBB_add_u8(w->cbb, rec->reason) && CBB_add_u64(w->cbb, (uint64_t)rec->not_before) &&
          CBB_add_u64(w->cbb, (uint64_t)rec->not_after) &&
          CBB_add_u64(w->cbb, (uint64_t)rec->revoked_at);
  return w->ok;
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
  if (!w.ok || !CBB_add_u64(&cbb, st->num_tokens)) goto oom;
  static const uint8_t kZero[32];
  for (size_t i = 0; st->tokens != NULL && i <= st->tokens_mask; i++) {
    if (memcmp(st->tokens[i], kZero, 32) != 0 && !CBB_add_bytes(&cbb, st->tokens[i], 32)) {
      goto oom;
    }
  }
  if (!CBB_finish(&cbb, &state, &len)) goto oom;
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

static int load_snapshot(void *ctx, uint64_t seq, const uint8_t *state, size_t len,
                         pki_err *err) {
  pkid_store *st = ctx;
  (void)seq;
  CBS cbs, *ca_names = NULL, *svc_names = NULL;
  uint8_t version;
  uint16_t node, num_ca, num_svc;
  uint64_t reserved_end, count;
  int ok = 0;
  CBS_init(&cbs, state, len);
  ca_names = calloc(4096, sizeof(CBS));
  svc_names = calloc(4096, sizeof(CBS));
  if (ca_names == NULL || svc_names == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  if (!CBS_get_u8(&cbs, &version) || version != SNAPSHOT_VERSION ||
      !CBS_get_u16(&cbs, &node) || !CBS_get_u64(&cbs, &reserved_end) ||
      !load_names(&cbs, ca_names, &num_ca) || !load_names(&cbs, svc_names, &num_svc) ||
      !CBS_get_u64(&cbs, &count)) {
    goto bad;
  }
  if (node == st->node) st->reserved_end = reserved_end;
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
    if (!get_serial(&cbs, &rec.serial) || !CBS_get_u8(&cbs, &ca) ||
        !CBS_get_u16(&cbs, &svc) || !CBS_get_u8(&cbs, &usage) ||
        !CBS_get_u8(&cbs, &revoked) || !CBS_get_u8(&cbs, &reason) ||
        !CBS_get_u64(&cbs, &nb) || !CBS_get_u64(&cbs, &na) || !CBS_get_u64(&cbs, &at)) {
      goto bad;
    }
    rec.ca = ca < num_ca ? ca_index(st->cas, CBS_data(&ca_names[ca]), CBS_len(&ca_names[ca]))
                         : NO_CA;
    rec.service = svc < num_svc ? service_index(st->cat, CBS_data(&svc_names[svc]),
                                                CBS_len(&svc_names[svc]))
                                : NO_SERVICE;
    rec.usage = usage;
    rec.revoked = revoked != 0;
    rec.reason = reason;
    rec.not_before = (int64_t)nb;
    rec.not_after = (int64_t)na;
    rec.revoked_at = (int64_t)at;
    if (!pkid_status_put(st->status, &rec)) {
      PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory loading the snapshot");
      goto out;
    }
  }
  uint64_t num_tokens;
  if (!CBS_get_u64(&cbs, &num_tokens)) goto bad;
  for (uint64_t i = 0; i < num_tokens; i++) {
    CBS id;
    if (!CBS_get_bytes(&cbs, &id, 32)) goto bad;
    if (!pkid_store_token_take(st, CBS_data(&id), err)) {
      if (err->code == PKI_ERR_AUTH) goto bad; /* twice in the snapshot */
      goto out;
    }
  }
  if (CBS_len(&cbs) != 0) goto bad;
  ok = 1;
  goto out;
bad:
  PKI_ERR(err, PKI_ERR_INVALID, "snapshot state is malformed");
out:
  free(ca_names);
  free(svc_names);
  return ok;
}

/* --- open, commit, apply ------------------------------------------------------ */

int pkid_store_open(pkid_store *out, const char *dir, const pki_catalog *cat,
                    const pkid_cas *cas, pkid_status *status, const pkid_store_options *opts,
                    pki_err *err) {
  memset(out, 0, sizeof(*out));
  out->cat = cat;
  out->cas = cas;
  out->status = status;
  out->node = opts->node;
  pki_journal_options jopts = {.on_snapshot = load_snapshot,
                               .segment_bytes = opts->segment_bytes};
  out->journal = pki_journal_open(dir, &jopts, replay_record, out, err);
  if (out->journal == NULL) {
    pki_err_prefix(err, "journal %s: ", dir);
    return 0;
  }
  return 1;
}

/* encode_record writes the payload of |rec|'s record into |cbb|. */
static int encode_record(CBB *cbb, const pkid_store *st, const pkid_record *rec) {
  CBB serial, cert;
  if (!CBB_add_u8(cbb, RECORD_VERSION)) return 0;
  switch (rec->type) {
    case PKID_REC_SERIAL_BLOCK:
      return CBB_add_u16(cbb, st->node) && CBB_add_u64(cbb, rec->block_first) &&
             CBB_add_u64(cbb, rec->block_count);
    case PKID_REC_ISSUE:
      return CBB_add_u8_length_prefixed(cbb, &serial) &&
             CBB_add_bytes(&serial, rec->serial.bytes, rec->serial.len) && CBB_flush(cbb) &&
             add_u8_str(cbb, rec->ca->def->name) && add_u8_str(cbb, rec->service) &&
             add_u16_str(cbb, rec->identity) && CBB_add_u8(cbb, (uint8_t)rec->usage) &&
             CBB_add_u64(cbb, (uint64_t)rec->not_before) &&
             CBB_add_u64(cbb, (uint64_t)rec->not_after) &&
             CBB_add_bytes(cbb, rec->key_hash, sizeof(rec->key_hash)) &&
             CBB_add_u24_length_prefixed(cbb, &cert) &&
             CBB_add_bytes(&cert, rec->cert, rec->cert_len) && CBB_flush(cbb);
    case PKID_REC_REVOKE:
      return CBB_add_u8_length_prefixed(cbb, &serial) &&
             CBB_add_bytes(&serial, rec->serial.bytes, rec->serial.len) && CBB_flush(cbb) &&
             CBB_add_u8(cbb, rec->reason) && CBB_add_u64(cbb, (uint64_t)rec->revoked_at) &&
             add_u16_str(cbb, rec->identity);
    case PKID_REC_TOKEN:
      return CBB_add_bytes(cbb, rec->token_id, sizeof(rec->token_id));
  }
  return 0;
}

/* add_entry encodes one record of |type| (the record's own, or TOKEN for
 * the token an issuance used) as journal entry |e|. */
static int add_entry(pki_journal_entry *e, uint8_t **payload, const pkid_store *st,
                     const pkid_record *rec, pkid_record_type type, uint64_t t) {
  pkid_record token;
  CBB cbb;
  size_t len;
  if (type == PKID_REC_TOKEN && rec->type != PKID_REC_TOKEN) {
    memset(&token, 0, sizeof(token));
    token.type = PKID_REC_TOKEN;
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
    if (recs[i]->type == PKID_REC_ISSUE && recs[i]->has_token) {
      if (!add_entry(&entries[num], &payloads[num], st, recs[i], PKID_REC_TOKEN, t)) goto oom;
      num++;
    }
    if (!add_entry(&entries[num], &payloads[num], st, recs[i], recs[i]->type, t)) goto oom;
    num++;
  }
  ok = num == 0 || pki_journal_append(st->journal, entries, num, err);
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
  pkid_record rec = {.type = PKID_REC_SERIAL_BLOCK,
                     .block_first = st->reserved_end > 0 ? st->reserved_end : 1,
                     .block_count = count};
  const pkid_record *recs[1] = {&rec};
  if (!pkid_store_commit(st, recs, 1, err)) return 0;
  pkid_store_apply(st, &rec);
  *out_first = rec.block_first;
  return 1;
}

void pkid_store_apply(pkid_store *st, const pkid_record *rec) {
  switch (rec->type) {
    case PKID_REC_ISSUE: {
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
    case PKID_REC_REVOKE:
      apply_revoke(st, &rec->serial, rec->reason, rec->revoked_at);
      break;
    case PKID_REC_SERIAL_BLOCK:
      if (rec->block_first + rec->block_count > st->reserved_end) {
        st->reserved_end = rec->block_first + rec->block_count;
      }
      break;
    case PKID_REC_TOKEN:
      break; /* taken on the loop thread before the commit */
  }
}

void pkid_store_close(pkid_store *st) {
  if (st == NULL) return;
  pki_journal_close(st->journal);
  st->journal = NULL;
  free(st->tokens);
  st->tokens = NULL;
}
