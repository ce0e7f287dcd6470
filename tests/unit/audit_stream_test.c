/* audit_stream_test: the pure parts of StreamAudit (server/api/audit_stream.h):
 * a request's filter checked and made canonical, an event packed as an
 * AuditEvent whose strings are UTF-8 and whose json is pki_audit_json's,
 * and the seek from from_seq to its segment by the segment headers. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/mem.h>

#include "lib/audit.h"
#include "lib/journal.h"
#include "lib/journal_tail.h"
#include "proto/pki/v1/pki.pb-c.h"
#include "server/api/audit_stream.h"
#include "tests/unit/test.h"

static char tmp_root[PATH_MAX];

static int query_fails(const char *service, const char *identity, const char *serial,
                       const char *kind, const char *words) {
  pkid_audit_query q;
  pki_err err;
  pki_err_clear(&err);
  if (pkid_audit_query_init(&q, 0, 0, service, identity, serial, kind, &err)) return 0;
  if (err.code != PKI_ERR_INVALID || strstr(err.msg, words) == NULL) {
    fprintf(stderr, "  got: %s\n", err.msg);
    return 0;
  }
  return 1;
}

TEST(query_checks_and_canonicalizes) {
  pkid_audit_query q;
  pki_err err;
  REQUIRE(pkid_audit_query_init(&q, 0, 1, "", "", "", "", &err));
  CHECK(q.from_seq == 1 && q.follow == 1);
  CHECK(q.filter.service == NULL && q.filter.identity == NULL && q.filter.serial == NULL &&
        q.filter.kind == NULL && q.filter.from_ms == 0 && q.filter.to_ms == 0);
  /* Upper case and colons, as openssl prints serials: the hex records use. */
  REQUIRE(pkid_audit_query_init(&q, 42, 0, "vault", "spiffe://x/y", "7F:0A:BC", "revoke", &err));
  CHECK(q.from_seq == 42);
  CHECK(strcmp(q.filter.serial, "7f0abc") == 0);
  CHECK(strcmp(q.filter.service, "vault") == 0 && strcmp(q.filter.identity, "spiffe://x/y") == 0);
  CHECK(strcmp(q.filter.kind, "revoke") == 0);
  CHECK(query_fails("", "", "xyz", "", "serial"));
  CHECK(query_fails("", "", "00", "", "serial"));
  char long_serial[64];
  memset(long_serial, 'a', 42);
  long_serial[42] = '\0';
  CHECK(query_fails("", "", long_serial, "", "serial"));
  CHECK(query_fails("", "", "", "issued", "kind"));
  CHECK(query_fails("", "", "", "record_9", "kind"));
  char name[300];
  memset(name, 's', 299);
  name[299] = '\0';
  CHECK(query_fails(name, "", "", "", "service"));
  char id[1100];
  memset(id, 'i', 1099);
  id[1099] = '\0';
  CHECK(query_fails("", id, "", "", "identity"));
}

TEST(kinds_are_audit_h_names) {
  const char *known[] = {"issue",  "revoke",      "token_used", "crl",         "serial_block",
                         "refused", "reload",     "lb_rotation", "ceremony",   "eab_created",
                         "eab_used", "event_200"};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    CHECK(pkid_audit_kind_known(known[i]));
  }
  CHECK(!pkid_audit_kind_known(""));
  CHECK(!pkid_audit_kind_known("Issue"));
  CHECK(!pkid_audit_kind_known("event_256"));
  CHECK(!pkid_audit_kind_known("record_9"));
}

TEST(event_packs_with_utf8_strings_and_the_json) {
  static const uint8_t identity[] = {'s', 'p', 0xff, 'x', 0, 'y', 0xc3, 0xa9};
  static const uint8_t cert[] = {0x30, 0x00};
  static const uint8_t key_hash[32] = {1};
  pki_journal_record r = {.seq = 77, .time = 1700000000123ull, .type = PKI_REC_ISSUE};
  pki_parsed_record p;
  memset(&p, 0, sizeof(p));
  p.type = PKI_REC_ISSUE;
  p.version = 1;
  p.serial.len = 3;
  memcpy(p.serial.bytes, "\x01\xab\x0f", 3);
  p.identity = (pki_bytes){identity, sizeof(identity)};
  p.service = (pki_bytes){(const uint8_t *)"vault", 5};
  p.ca = (pki_bytes){(const uint8_t *)"infrastructure-ca", 17};
  p.cert = (pki_bytes){cert, sizeof(cert)};
  p.key_hash = key_hash;
  p.usage = 1;
  uint8_t *msg;
  size_t len;
  pki_err err;
  REQUIRE(pkid_audit_event_pack(&r, &p, &msg, &len, &err));
  Pki__V1__AuditEvent *ev = pki__v1__audit_event__unpack(NULL, len, msg);
  free(msg);
  REQUIRE(ev != NULL);
  CHECK(ev->seq == 77 && ev->time_ms == 1700000000123ll);
  CHECK(strcmp(ev->kind, "issue") == 0 && strcmp(ev->outcome, "ok") == 0);
  CHECK(strcmp(ev->service, "vault") == 0 && strcmp(ev->serial, "01ab0f") == 0);
  /* 0xff and NUL are not UTF-8 text: U+FFFD each; the é stays. */
  CHECK(strcmp(ev->identity, "sp\xef\xbf\xbdx\xef\xbf\xbdy\xc3\xa9") == 0);
  char *json;
  size_t json_len;
  REQUIRE(pki_audit_json(&r, &p, &json, &json_len, &err));
  CHECK(strcmp(ev->json, json) == 0);
  OPENSSL_free(json);
  pki__v1__audit_event__free_unpacked(ev, NULL);
}

typedef struct first_rec {
  uint64_t seq, segment;
  size_t n;
} first_rec;

static int note_first(void *ctx, const pki_journal_record *r, pki_err *err) {
  (void)err;
  first_rec *f = ctx;
  if (f->n++ == 0) {
    f->seq = r->seq;
    f->segment = r->segment;
  }
  return 1;
}

/* find_in reads from |pos| to the record |seq| and says in which segment
 * it was. */
typedef struct find {
  uint64_t want, segment;
  int found, ordered;
  uint64_t next;
} find;

static int find_rec(void *ctx, const pki_journal_record *r, pki_err *err) {
  (void)err;
  find *f = ctx;
  if (f->next != 0 && r->seq != f->next) f->ordered = 0;
  f->next = r->seq + 1;
  if (r->seq == f->want) {
    f->found = 1;
    f->segment = r->segment;
  }
  return 1;
}

TEST(seek_finds_the_segment_of_from_seq) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/seek", tmp_root);
  pki_err err;
  pki_journal_options o = {.segment_bytes = 4096};
  pki_journal *j = pki_journal_open(dir, &o, NULL, NULL, &err);
  REQUIRE(j != NULL);
  for (uint64_t i = 1; i <= 400; i++) {
    char payload[32];
    int n = snprintf(payload, sizeof(payload), "record %llu", (unsigned long long)i);
    pki_journal_entry e = {.type = 7, .time = i, .payload = (const uint8_t *)payload,
                           .len = (size_t)n};
    REQUIRE(pki_journal_append(j, &e, 1, &err));
  }
  pki_journal_pos end;
  pki_journal_durable_end(j, &end);
  REQUIRE(end.segment > 5);
  uint64_t froms[] = {1, 2, 37, 150, 151, 399, 400, 401, 10000};
  for (size_t i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
    pki_journal_pos pos;
    REQUIRE(pkid_audit_seek(dir, froms[i], &end, &pos, &err));
    CHECK(pos.offset == 0 && pos.next_seq <= froms[i]);
    first_rec f = {0, 0, 0};
    pki_journal_pos at = pos;
    size_t n;
    REQUIRE(pki_journal_tail_read(dir, &at, &end, 1, note_first, &f, &n, &err));
    /* Reading from there checks: the header it starts from is consistent. */
    CHECK(n == 1 && f.seq == pos.next_seq && f.segment == pos.segment);
    if (froms[i] > 400) {
      CHECK(pos.segment == end.segment); /* not yet written: the last segment */
      continue;
    }
    /* The record is in that very segment, not a later one: the seek took
     * the last segment that starts at or before it. */
    find fd = {.want = froms[i], .ordered = 1};
    at = pos;
    REQUIRE(pki_journal_tail_read(dir, &at, &end, 100000, find_rec, &fd, &n, &err));
    CHECK(fd.found && fd.ordered && fd.segment == pos.segment);
    CHECK(at.next_seq == 401);
  }
  pki_journal_close(j);
}

int main(void) {
  snprintf(tmp_root, sizeof(tmp_root), "%s/audit_stream_XXXXXX",
           getenv("TEST_TMPDIR") != NULL ? getenv("TEST_TMPDIR") : "/tmp");
  if (mkdtemp(tmp_root) == NULL) return 1;
  RUN(query_checks_and_canonicalizes);
  RUN(kinds_are_audit_h_names);
  RUN(event_packs_with_utf8_strings_and_the_json);
  RUN(seek_finds_the_segment_of_from_seq);
  return test_finish();
}
