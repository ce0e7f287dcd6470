/* store_test: pkid's records in a real journal: every record type written
 * and read back field by field, a snapshot, a torn and a corrupted store,
 * the used-token set's delete, and the ACME state through replay and
 * snapshot. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bytestring.h>

#include "lib/catalog.h"
#include "lib/journal.h"
#include "server/ca/ca.h"
#include "server/store/status.h"
#include "server/store/store.h"
#include "tests/unit/test.h"

static char g_tmp[512];
static pki_catalog *g_cat;
static pkid_ca g_ca_list[2];
static pkid_cas g_cas;

/* new_dir gives each case a journal folder of its own. */
static const char *new_dir(const char *name) {
  static char dir[700];
  snprintf(dir, sizeof(dir), "%s/store-%s", g_tmp, name);
  return dir;
}

/* serial_n is the serial of sequence number |n| (< 8); serials carry
 * random bits, so each is made once and kept. */
static pki_serial serial_n(uint64_t n) {
  static pki_serial made[8];
  if (made[n].len == 0) {
    pki_err err;
    pki_serial_make(&made[n], 3, n, &err);
  }
  return made[n];
}

static const uint8_t kCert[] = {0x30, 0x03, 0x02, 0x01, 0x07};

/* issue_rec is an ISSUE record of |svc| by the first CA. */
static pkid_record issue_rec(uint64_t n, const char *svc, const char *who) {
  pkid_record r;
  memset(&r, 0, sizeof(r));
  r.type = PKI_REC_ISSUE;
  r.serial = serial_n(n);
  r.identity = who;
  r.ca = &g_cas.cas[0];
  r.service = svc;
  r.usage = PKI_USAGE_CLIENT;
  r.not_before = 1790000000 + (int64_t)n;
  r.not_after = 1800000000 + (int64_t)n;
  memset(r.key_hash, (int)n, sizeof(r.key_hash));
  r.cert = kCert;
  r.cert_len = sizeof(kCert);
  return r;
}

/* open_store opens |dir| into a fresh status index; close_store undoes it. */
static int open_store(pkid_store *st, const char *dir, pki_err *err) {
  pkid_status *status = pkid_status_new(16);
  if (pkid_store_open(st, dir, g_cat, &g_cas, status, &(pkid_store_options){.node = 3}, err)) return 1;
  pkid_status_free(status);
  return 0;
}

static void close_store(pkid_store *st) {
  pkid_status *status = st->status;
  pkid_store_close(st);
  pkid_status_free(status);
}

/* written_store makes a store in |dir| holding write_sample's records. */
static void write_sample(pkid_store *st);
static int written_store(const char *dir) {
  pkid_store st;
  pki_err err;
  if (!open_store(&st, dir, &err)) return 0;
  write_sample(&st);
  close_store(&st);
  return 1;
}

static int commit_apply(pkid_store *st, pkid_record *recs, size_t n) {
  const pkid_record *ptrs[16];
  pki_err err;
  for (size_t i = 0; i < n; i++) ptrs[i] = &recs[i];
  if (!pkid_store_commit(st, ptrs, n, &err)) return 0;
  for (size_t i = 0; i < n; i++) pkid_store_apply(st, &recs[i]);
  return 1;
}

/* write_sample commits one record of every type: a block, an issuance on a
 * bootstrap token (TOKEN + ISSUE), another issuance, a revocation. */
static void write_sample(pkid_store *st) {
  pkid_record recs[4];
  memset(&recs[0], 0, sizeof(recs[0]));
  recs[0].type = PKI_REC_SERIAL_BLOCK;
  recs[0].block_first = 100;
  recs[0].block_count = 50;
  recs[1] = issue_rec(1, "redis", "bootstrap:redis");
  recs[1].has_token = 1;
  memset(recs[1].token_id, 0xab, sizeof(recs[1].token_id));
  recs[2] = issue_rec(2, "vault", "spiffe://cybersec-framework.local/agents/pki-agent");
  memset(&recs[3], 0, sizeof(recs[3]));
  recs[3].type = PKI_REC_REVOKE;
  recs[3].serial = serial_n(2);
  recs[3].reason = 1;
  recs[3].revoked_at = 1795000000;
  recs[3].identity = "spiffe://cybersec-framework.local/agents/pki-agent";
  pki_err err;
  CHECK(pkid_store_token_take(st, recs[1].token_id, &err));
  CHECK(commit_apply(st, recs, 4));
}

/* check_sample checks the state write_sample leaves, however rebuilt. */
static void check_sample(pkid_store *st) {
  pkid_cert_record rec;
  pki_serial s1 = serial_n(1), s2 = serial_n(2);
  REQUIRE(pkid_status_get(st->status, s1.bytes, s1.len, &rec));
  CHECK(rec.ca == 0 && !rec.revoked && rec.usage == PKI_USAGE_CLIENT);
  CHECK(rec.not_before == 1790000001 && rec.not_after == 1800000001);
  const pki_catalog_service *redis = pki_catalog_find_service(g_cat, "redis");
  CHECK(rec.service == (uint16_t)(redis - g_cat->services));
  REQUIRE(pkid_status_get(st->status, s2.bytes, s2.len, &rec));
  CHECK(rec.revoked && rec.reason == 1 && rec.revoked_at == 1795000000);
  CHECK(st->reserved_end == 150);
  /* The token is used: taking it again is refused as such. */
  uint8_t id[32];
  pki_err err;
  memset(id, 0xab, sizeof(id));
  CHECK(!pkid_store_token_take(st, id, &err) && err.code == PKI_ERR_AUTH);
}

/* What the journal holds, read with lib/journal's replay, not the store's. */
typedef struct raw {
  int types[8];
  int issue_ok, revoke_ok, token_ok, block_ok;
  uint64_t first_time, last_time;
} raw;

static int read_raw(void *ctx, const pki_journal_record *r, pki_err *err) {
  raw *w = ctx;
  (void)err;
  CBS cbs, serial, ca, svc, who, cert;
  uint8_t version, usage, reason, flags;
  uint16_t node;
  uint64_t a, b;
  if (w->first_time == 0) w->first_time = r->time;
  w->last_time = r->time;
  if (r->type < 8) w->types[r->type]++;
  CBS_init(&cbs, r->payload, r->len);
  /* REVOKE is at version 2 (an invalidity date and the key's hash), ISSUE
   * at 2 (the serial it renews); the others at 1. */
  uint8_t want = r->type == PKI_REC_REVOKE || r->type == PKI_REC_ISSUE ? 2 : 1;
  if (!CBS_get_u8(&cbs, &version) || version != want) return 1;
  switch (r->type) {
    case PKI_REC_SERIAL_BLOCK:
      w->block_ok += CBS_get_u16(&cbs, &node) && node == 3 && CBS_get_u64(&cbs, &a) &&
                     a == 100 && CBS_get_u64(&cbs, &b) && b == 50 && CBS_len(&cbs) == 0;
      break;
    case PKI_REC_ISSUE:
      w->issue_ok += CBS_get_u8_length_prefixed(&cbs, &serial) && CBS_len(&serial) > 8 &&
                     CBS_get_u8_length_prefixed(&cbs, &ca) &&
                     CBS_mem_equal(&ca, (const uint8_t *)g_cas.cas[0].def->name,
                                   strlen(g_cas.cas[0].def->name)) &&
                     CBS_get_u8_length_prefixed(&cbs, &svc) &&
                     CBS_get_u16_length_prefixed(&cbs, &who) && CBS_len(&who) > 0 &&
                     CBS_get_u8(&cbs, &usage) && usage == PKI_USAGE_CLIENT &&
                     CBS_get_u64(&cbs, &a) && a > 1790000000 && CBS_get_u64(&cbs, &b) &&
                     b > 1800000000 && CBS_skip(&cbs, 32) &&
                     CBS_get_u24_length_prefixed(&cbs, &cert) &&
                     CBS_mem_equal(&cert, kCert, sizeof(kCert)) &&
                     CBS_get_u8_length_prefixed(&cbs, &serial) && CBS_len(&serial) == 0 &&
                     CBS_len(&cbs) == 0;
      break;
    case PKI_REC_REVOKE:
      w->revoke_ok += CBS_get_u8_length_prefixed(&cbs, &serial) && CBS_get_u8(&cbs, &reason) &&
                      reason == 1 && CBS_get_u64(&cbs, &a) && a == 1795000000 &&
                      CBS_get_u16_length_prefixed(&cbs, &who) && CBS_get_u64(&cbs, &a) &&
                      a == 0 && CBS_get_u8(&cbs, &flags) && (flags & ~1u) == 0 &&
                      CBS_skip(&cbs, (flags & 1u) ? 32 : 0) && CBS_len(&cbs) == 0;
      break;
    case PKI_REC_TOKEN:
      w->token_ok += CBS_len(&cbs) == 32 && CBS_data(&cbs)[0] == 0xab;
      break;
  }
  return 1;
}

TEST(every_record_type_round_trips) {
  const char *dir = new_dir("records");
  pki_err err;
  pkid_store st;
  REQUIRE(open_store(&st, dir, &err));
  write_sample(&st);
  check_sample(&st);
  close_store(&st);

  /* Replayed from the journal alone (no snapshot was written). */
  REQUIRE(open_store(&st, dir, &err));
  CHECK(st.replayed == 5); /* block, token, issue, issue, revoke */
  check_sample(&st);
  close_store(&st);

  /* The records themselves, as an independent reader sees them. The token
   * is written just before the issuance it authorized. */
  raw w;
  memset(&w, 0, sizeof(w));
  pki_journal *j = pki_journal_open(dir, NULL, read_raw, &w, &err);
  REQUIRE(j != NULL);
  pki_journal_close(j);
  CHECK(w.types[PKI_REC_SERIAL_BLOCK] == 1 && w.types[PKI_REC_ISSUE] == 2 &&
        w.types[PKI_REC_REVOKE] == 1 && w.types[PKI_REC_TOKEN] == 1);
  CHECK(w.block_ok == 1 && w.issue_ok == 2 && w.revoke_ok == 1 && w.token_ok == 1);
  /* Record times are Unix milliseconds (store.h): within this decade. */
  CHECK(w.first_time > 1700000000000ull && w.first_time < 2000000000000ull);
}

TEST(snapshot_round_trips) {
  const char *dir = new_dir("snapshot");
  pki_err err;
  pkid_store st;
  REQUIRE(open_store(&st, dir, &err));
  write_sample(&st);
  REQUIRE(pkid_store_snapshot(&st, &err));
  close_store(&st);

  REQUIRE(open_store(&st, dir, &err));
  CHECK(st.replayed == 0); /* everything came from the snapshot */
  CHECK(pkid_status_count(st.status) == 2);
  check_sample(&st);
  /* Records after the snapshot are replayed on top of it. */
  pkid_record more = issue_rec(3, "vault", "x");
  CHECK(commit_apply(&st, &more, 1));
  close_store(&st);
  REQUIRE(open_store(&st, dir, &err));
  CHECK(st.replayed == 1 && pkid_status_count(st.status) == 3);
  check_sample(&st);
  close_store(&st);
}

/* crl_sample commits two issuances of one key (4, 5) and one of another
 * (6), revokes 4 for keyCompromise with its key's hash and an invalidity
 * date, and journals CRL 3 (the base) built after it. */
static void crl_sample(pkid_store *st) {
  pkid_record recs[5];
  recs[0] = issue_rec(4, "vault", "x");
  recs[1] = issue_rec(5, "vault", "x");
  memcpy(recs[1].key_hash, recs[0].key_hash, sizeof(recs[1].key_hash));
  recs[2] = issue_rec(6, "vault", "x");
  memset(&recs[3], 0, sizeof(recs[3]));
  recs[3].type = PKI_REC_REVOKE;
  recs[3].serial = serial_n(4);
  recs[3].reason = PKI_CRL_REASON_KEY_COMPROMISE;
  recs[3].revoked_at = 1795000100;
  recs[3].invalidity_date = 1794000000;
  recs[3].has_key_hash = 1;
  memcpy(recs[3].key_hash, recs[0].key_hash, sizeof(recs[3].key_hash));
  recs[3].identity = "x";
  memset(&recs[4], 0, sizeof(recs[4]));
  recs[4].type = PKI_REC_CRL;
  recs[4].ca = &g_cas.cas[0];
  recs[4].identity = "pkid";
  recs[4].crl_number = 3;
  recs[4].crl_base = 3;
  recs[4].crl_this_update = 1795000200;
  recs[4].crl_next_update = 1795086600;
  recs[4].crl_cut = 1;
  recs[4].crl_entries = 1;
  recs[4].crl_delta_entries = 0;
  memset(recs[4].crl_hash, 0x11, sizeof(recs[4].crl_hash));
  CHECK(commit_apply(st, recs, 5));
  /* What the pipeline's committer does once the revocation is durable;
   * at open, the store fills its set from the journal itself. */
  CHECK(pkid_store_commit_note_compromised(st, recs[3].key_hash));
}

static void check_crl_sample(pkid_store *st) {
  const pkid_ca_crls *c = &st->crls[0];
  CHECK(c->number == 3 && c->base_number == 3 && c->last_cut == 1);
  CHECK(c->last_this_update == 1795000200 && c->base_this_update == 1795000200);
  CHECK(pkid_ca_crls_cut(c) == 1);
  pki_serial s4 = serial_n(4);
  const pkid_revoked *e = pkid_ca_crls_find(c, &s4);
  REQUIRE(e != NULL);
  CHECK(e->reason == PKI_CRL_REASON_KEY_COMPROMISE && e->revoked_at == 1795000100);
  CHECK(e->invalidity_date == 1794000000 && e->not_after == 1800000004 && e->ord == 1);
  uint8_t key4[32], key6[32];
  memset(key4, 4, sizeof(key4));
  memset(key6, 6, sizeof(key6));
  CHECK(pkid_idset_has(&st->compromised, key4) && !pkid_idset_has(&st->compromised, key6));
  CHECK(pkid_store_commit_key_compromised(st, key4));
  CHECK(!pkid_store_commit_key_compromised(st, key6));
}

/* The CRL state and the compromised keys come back the same from the
 * journal alone and from a snapshot; the key search finds the other
 * certificate of the key, and not the revoked one or the other key's. */
TEST(crl_state_and_compromised_keys_survive) {
  const char *dir = new_dir("crl");
  pki_err err;
  pkid_store st;
  REQUIRE(open_store(&st, dir, &err));
  crl_sample(&st);
  check_crl_sample(&st);
  uint8_t key_hash[32];
  pki_serial *found = NULL;
  size_t num_found = 0;
  pki_serial s4 = serial_n(4), s5 = serial_n(5);
  REQUIRE(pkid_store_key_search(&st, &s4, key_hash, 1, 1795000300, NULL, 0, &found,
                                &num_found, &err));
  CHECK(key_hash[0] == 4 && key_hash[31] == 4);
  CHECK(num_found == 1 && found != NULL && found[0].len == s5.len &&
        memcmp(found[0].bytes, s5.bytes, s5.len) == 0);
  free(found);
  /* Past the certificates' notAfter nothing is left to revoke. */
  found = NULL;
  REQUIRE(pkid_store_key_search(&st, &s4, key_hash, 1, 1900000000, NULL, 0, &found,
                                &num_found, &err));
  CHECK(num_found == 0 && found == NULL);
  pki_serial unknown = serial_n(7);
  CHECK(!pkid_store_key_search(&st, &unknown, key_hash, 0, 1795000300, NULL, 0, &found,
                               &num_found, &err) &&
        err.code == PKI_ERR_NOT_FOUND);
  close_store(&st);

  REQUIRE(open_store(&st, dir, &err)); /* replayed */
  CHECK(st.replayed == 5);
  check_crl_sample(&st);
  REQUIRE(pkid_store_snapshot(&st, &err));
  close_store(&st);

  REQUIRE(open_store(&st, dir, &err)); /* from the snapshot */
  CHECK(st.replayed == 0);
  check_crl_sample(&st);
  close_store(&st);
}

/* last_segment finds the newest segment file of |dir|. */
static void last_segment(char *out, size_t size, const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char best[64] = "";
  while (d != NULL && (e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n > 4 && strcmp(e->d_name + n - 4, ".seg") == 0 && strcmp(e->d_name, best) > 0) {
      snprintf(best, sizeof(best), "%s", e->d_name);
    }
  }
  if (d != NULL) closedir(d);
  snprintf(out, size, "%s/%s", dir, best);
}

TEST(torn_tail_is_cut) {
  const char *dir = new_dir("torn");
  pki_err err;
  pkid_store st;
  REQUIRE(written_store(dir));
  /* A crash in the middle of writing the last record (the revocation). */
  char seg[800];
  last_segment(seg, sizeof(seg), dir);
  struct stat sb;
  REQUIRE(stat(seg, &sb) == 0);
  REQUIRE(truncate(seg, sb.st_size - 7) == 0);

  REQUIRE(open_store(&st, dir, &err));
  CHECK(st.replayed == 4); /* the revocation was never acknowledged */
  pkid_cert_record rec;
  pki_serial s2 = serial_n(2);
  REQUIRE(pkid_status_get(st.status, s2.bytes, s2.len, &rec));
  CHECK(!rec.revoked);
  pki_journal_stats stats;
  pki_journal_get_stats(st.journal, &stats);
  CHECK(stats.truncated_bytes > 0);
  close_store(&st);
}

TEST(corruption_stops_the_store) {
  const char *dir = new_dir("corrupt");
  pki_err err;
  pkid_store st;
  REQUIRE(written_store(dir));
  /* Another commit after the sample's: damage under a later append is in
   * one that was acknowledged (a torn last append is cut instead). */
  REQUIRE(open_store(&st, dir, &err));
  pkid_record more;
  memset(&more, 0, sizeof(more));
  more.type = PKI_REC_SERIAL_BLOCK;
  more.block_first = 150;
  more.block_count = 50;
  CHECK(commit_apply(&st, &more, 1));
  close_store(&st);
  /* One byte flipped inside the first record's payload. */
  char seg[800];
  last_segment(seg, sizeof(seg), dir);
  int fd = open(seg, O_RDWR);
  REQUIRE(fd >= 0);
  uint8_t b;
  off_t at = PKI_JOURNAL_SEG_HEADER_LEN + PKI_JOURNAL_REC_HEADER_LEN + 2;
  REQUIRE(pread(fd, &b, 1, at) == 1);
  b ^= 0x40;
  REQUIRE(pwrite(fd, &b, 1, at) == 1);
  close(fd);

  pki_err_clear(&err);
  CHECK(!open_store(&st, dir, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, ".seg") != NULL); /* it says where */
}

TEST(unknown_record_type_is_refused) {
  const char *dir = new_dir("unknown");
  pki_err err;
  pki_journal *j = pki_journal_open(dir, NULL, NULL, NULL, &err);
  REQUIRE(j != NULL);
  static const uint8_t payload[] = {1, 2, 3};
  pki_journal_entry e = {.type = 77, .time = 1, .payload = payload, .len = sizeof(payload)};
  REQUIRE(pki_journal_append(j, &e, 1, &err));
  pki_journal_close(j);
  pkid_store st;
  CHECK(!open_store(&st, dir, &err));
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
}

TEST(token_set_delete_keeps_the_others) {
  const char *dir = new_dir("tokens");
  pki_err err;
  pkid_store st;
  REQUIRE(open_store(&st, dir, &err));
  /* Ids that share their first octets land in one probe run; enough of
   * them to make the set grow several times. */
  enum { N = 1000 };
  uint8_t ids[N][32];
  for (int i = 0; i < N; i++) {
    memset(ids[i], 0, 32);
    ids[i][0] = (uint8_t)(i % 4); /* few home slots: long runs */
    ids[i][1] = 1;                /* never the all-zero id, which marks a free slot */
    ids[i][30] = (uint8_t)(i >> 8);
    ids[i][31] = (uint8_t)i;
    CHECK(pkid_store_token_take(&st, ids[i], &err));
  }
  CHECK(st.tokens.count == N);
  /* Release every third one, from the middle of the runs. */
  for (int i = 0; i < N; i += 3) pkid_store_token_release(&st, ids[i]);
  int others_found = 1, released_free = 1;
  for (int i = 0; i < N; i++) {
    int taken = !pkid_store_token_take(&st, ids[i], &err) && err.code == PKI_ERR_AUTH;
    if (i % 3 == 0) {
      released_free &= !taken; /* the take just made it used again */
    } else {
      others_found &= taken;
    }
  }
  CHECK(others_found);
  CHECK(released_free);
  CHECK(st.tokens.count == N);
  /* Releasing what is not there changes nothing. */
  uint8_t absent[32];
  memset(absent, 0x55, sizeof(absent));
  pkid_store_token_release(&st, absent);
  CHECK(st.tokens.count == N);
  close_store(&st);
}

/* An EC P-256 public key (made with Python's cryptography module) and its
 * RFC 7638 thumbprint, computed there; then another key. */
#define ACME_JWK                                                                     \
  "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"iw6ctxJUGYK_Ykm8SL1dn5li3TQlfcXeYE_b-eTKySU\"," \
  "\"y\":\"ORRs5C84Pb9EUbDZHX3gmuGTu6qMFoJu2dsad7MKA_0\"}"
static const uint8_t kAcmeThumbprint[32] = {
    0x67, 0xe4, 0xf1, 0xc5, 0xac, 0x0b, 0xb8, 0x4c, 0xe1, 0x0d, 0x1d, 0x22, 0xef, 0x77, 0x02, 0xef,
    0x69, 0xf6, 0x5d, 0x3d, 0x47, 0xbe, 0x8f, 0x3f, 0x4d, 0x90, 0xe7, 0xdb, 0x60, 0x9b, 0x16, 0xe1};
#define ACME_JWK_2                                                                   \
  "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"CI3ls8JtnMvX8ZXEvCQurh4lkpCzuDBttg1FaopLkmI\"," \
  "\"y\":\"Wc52e6dm5eTNsRrJUGLFayAu6BzCtKLbRjmgD1vnAjk\"}"

/* acme_event is an EVENT record of an ACME kind, as the api and the ACME
 * server journal them. */
static pkid_record acme_event(uint8_t kind, const char *service, const char *detail,
                              int64_t t) {
  pkid_record r;
  memset(&r, 0, sizeof(r));
  r.type = PKI_REC_EVENT;
  r.event_kind = kind;
  r.event_outcome = PKI_OUTCOME_OK;
  r.identity = "spiffe://cybersec-framework.local/agents/pki-agent";
  r.service = service;
  r.event_count = 1;
  r.event_first = r.event_last = t;
  r.detail = detail;
  return r;
}

/* commit_acme journals |rec| and, once durable, applies it to the ACME
 * state, as its submitter does at run time. */
static int commit_acme(pkid_store *st, pkid_record *rec) {
  pki_err err;
  return commit_apply(st, rec, 1) &&
         pkid_acme_state_apply(pkid_store_acme(st), rec->event_kind, rec->service,
                               (const uint8_t *)rec->detail, strlen(rec->detail),
                               rec->event_first, &err);
}

static void check_acme(pkid_store *st, const char *jwk_x) {
  const pkid_acme_state *acme = pkid_store_acme(st);
  REQUIRE(acme != NULL);
  const pkid_acme_eab *e = pkid_acme_state_eab(acme, "eab-store-1");
  REQUIRE(e != NULL);
  CHECK(strcmp(e->service, "vault") == 0 && strcmp(e->account, "acct1") == 0);
  CHECK(e->created == 1800000000);
  CHECK(pkid_acme_state_num_accounts(acme) == 1);
  const pkid_acme_account *a = pkid_acme_state_account(acme, "acct1");
  REQUIRE(a != NULL);
  CHECK(strcmp(a->service, "vault") == 0 && strcmp(a->kid, "eab-store-1") == 0);
  CHECK(strstr(a->jwk, jwk_x) != NULL && a->created == 1800000001 && !a->deactivated);
  CHECK(strcmp(a->contact, "[\"mailto:ops@example.com\"]") == 0);
  CHECK(pkid_acme_state_account_by_key(acme, a->thumbprint) == a);
}

/* The ACME state comes back from the journal alone, from a snapshot, and
 * from a snapshot with records after it; a record that does not apply
 * stops the store, naming it. */
TEST(acme_state_survives) {
  const char *dir = new_dir("acme");
  pki_err err;
  pkid_store st;
  REQUIRE(open_store(&st, dir, &err));
  CHECK(pkid_acme_state_num_accounts(pkid_store_acme(&st)) == 0);
  pkid_record rec = acme_event(PKI_EVENT_EAB_CREATED, "vault", "eab-store-1", 1800000000);
  REQUIRE(commit_acme(&st, &rec));
  rec = acme_event(PKI_EVENT_EAB_USED, "vault",
                   "{\"account\":\"acct1\",\"contact\":[\"mailto:ops@example.com\"],"
                   "\"jwk\":" ACME_JWK ",\"kid\":\"eab-store-1\"}",
                   1800000001);
  REQUIRE(commit_acme(&st, &rec));
  check_acme(&st, "iw6ctxJUGYK");
  CHECK(memcmp(pkid_acme_state_account(pkid_store_acme(&st), "acct1")->thumbprint,
               kAcmeThumbprint, 32) == 0);
  close_store(&st);

  REQUIRE(open_store(&st, dir, &err)); /* replayed */
  CHECK(st.replayed == 2);
  check_acme(&st, "iw6ctxJUGYK");
  CHECK(memcmp(pkid_acme_state_account(pkid_store_acme(&st), "acct1")->thumbprint,
               kAcmeThumbprint, 32) == 0);
  REQUIRE(pkid_store_snapshot(&st, &err));
  close_store(&st);

  REQUIRE(open_store(&st, dir, &err)); /* from the snapshot */
  CHECK(st.replayed == 0);
  check_acme(&st, "iw6ctxJUGYK");
  /* A key change after the snapshot: replayed on top of it. */
  rec = acme_event(PKI_EVENT_ACME_ACCOUNT, "vault",
                   "{\"account\":\"acct1\",\"jwk\":" ACME_JWK_2 "}", 1800000002);
  REQUIRE(commit_acme(&st, &rec));
  close_store(&st);
  REQUIRE(open_store(&st, dir, &err));
  CHECK(st.replayed == 1);
  check_acme(&st, "CI3ls8JtnMvX8");
  CHECK(pkid_acme_state_account_by_key(pkid_store_acme(&st), kAcmeThumbprint) == NULL);
  /* And a record that cannot apply (a kid nobody made), journaled past
   * the checks: the next open refuses the journal, saying which record. */
  rec = acme_event(PKI_EVENT_EAB_USED, "vault",
                   "{\"account\":\"acct2\",\"jwk\":" ACME_JWK ",\"kid\":\"eab-none\"}",
                   1800000003);
  REQUIRE(commit_apply(&st, &rec, 1));
  uint64_t seq = pki_journal_next_seq(st.journal) - 1;
  close_store(&st);
  pki_err_clear(&err);
  CHECK(!open_store(&st, dir, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  char want[64];
  snprintf(want, sizeof(want), "journal record %llu: ", (unsigned long long)seq);
  CHECK(strstr(err.msg, want) != NULL && strstr(err.msg, "eab-none") != NULL);
}

int main(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g_tmp, sizeof(g_tmp), "%s", tmp != NULL ? tmp : "/tmp");
  pki_err err;
  g_cat = pki_catalog_default(&err);
  if (g_cat == NULL) return 1;
  /* The store names CAs only: a CA without its keys is enough. */
  g_ca_list[0].def = pki_catalog_find_ca(g_cat, "agents-ca");
  g_cas.cas = g_ca_list;
  g_cas.num_cas = 1;
  RUN(every_record_type_round_trips);
  RUN(snapshot_round_trips);
  RUN(crl_state_and_compromised_keys_survive);
  RUN(torn_tail_is_cut);
  RUN(corruption_stops_the_store);
  RUN(unknown_record_type_is_refused);
  RUN(token_set_delete_keeps_the_others);
  RUN(acme_state_survives);
  pki_catalog_free(g_cat);
  return test_finish();
}
