/* status_test: the status index: put, get, replace, grow, responses. */
#include <stdlib.h>
#include <string.h>

#include "server/store/status.h"
#include "tests/unit/test.h"

static pkid_cert_record rec_n(uint64_t n) {
  pkid_cert_record r;
  memset(&r, 0, sizeof(r));
  pki_err err;
  pki_serial_make(&r.serial, 7, n, &err);
  r.ca = (uint8_t)(n % 4);
  r.usage = 1;
  r.service = (uint16_t)(n % 11);
  r.not_before = 1700000000 + (int64_t)n;
  r.not_after = 1800000000 + (int64_t)n;
  return r;
}

static uint8_t *dup_bytes(const char *s) {
  uint8_t *p = malloc(strlen(s));
  memcpy(p, s, strlen(s));
  return p;
}

TEST(put_get_many_and_grow) {
  pkid_status *st = pkid_status_new(10);
  REQUIRE(st != NULL);
  pkid_cert_record *recs = malloc(50000 * sizeof(*recs));
  REQUIRE(recs != NULL);
  for (uint64_t i = 0; i < 50000; i++) {
    recs[i] = rec_n(i);
    CHECK(pkid_status_put(st, &recs[i]));
  }
  CHECK(pkid_status_count(st) == 50000);
  for (uint64_t i = 0; i < 50000; i++) {
    pkid_cert_record got;
    REQUIRE(pkid_status_get(st, recs[i].serial.bytes, recs[i].serial.len, &got));
    CHECK(got.not_after == recs[i].not_after && got.service == recs[i].service &&
          got.ca == recs[i].ca && !got.revoked);
  }
  pkid_cert_record missing = rec_n(999999);
  pkid_cert_record got;
  CHECK(!pkid_status_get(st, missing.serial.bytes, missing.serial.len, &got));
  CHECK(!pkid_status_get(st, missing.serial.bytes, 0, &got));
  free(recs);
  pkid_status_free(st);
}

TEST(revocation_drops_stale_responses) {
  pkid_status *st = pkid_status_new(1);
  pkid_cert_record r = rec_n(1);
  REQUIRE(pkid_status_put(st, &r));
  CHECK(pkid_status_set_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA1,
                                 dup_bytes("good-response"), 13, 42));
  size_t len;
  int64_t next;
  const uint8_t *der =
      pkid_status_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA1, &len, &next);
  CHECK(der != NULL && len == 13 && next == 42 && memcmp(der, "good-response", 13) == 0);
  CHECK(pkid_status_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA256, &len,
                             &next) == NULL);
  /* The same status again keeps the response... */
  REQUIRE(pkid_status_put(st, &r));
  CHECK(pkid_status_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA1, &len,
                             &next) != NULL);
  /* ...a revocation drops it: it would still say "good". */
  r.revoked = 1;
  r.reason = 1;
  r.revoked_at = 1750000000;
  REQUIRE(pkid_status_put(st, &r));
  CHECK(pkid_status_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA1, &len,
                             &next) == NULL);
  pkid_cert_record got;
  REQUIRE(pkid_status_get(st, r.serial.bytes, r.serial.len, &got));
  CHECK(got.revoked && got.reason == 1 && got.revoked_at == 1750000000);
  /* A response for an unknown serial is refused and freed. */
  pkid_cert_record other = rec_n(2);
  CHECK(!pkid_status_set_response(st, other.serial.bytes, other.serial.len,
                                  PKI_OCSP_HASH_SHA1, dup_bytes("x"), 1, 1));
  pkid_status_free(st);
}

static int count_fn(void *ctx, const pkid_cert_record *rec) {
  (void)rec;
  (*(int *)ctx)++;
  return 1;
}

TEST(foreach_visits_all) {
  pkid_status *st = pkid_status_new(1);
  for (uint64_t i = 0; i < 3000; i++) {
    pkid_cert_record r = rec_n(i);
    REQUIRE(pkid_status_put(st, &r));
  }
  int n = 0;
  pkid_status_foreach(st, count_fn, &n);
  CHECK(n == 3000);
  pkid_status_free(st);
}

/* other_n is a serial of another form than pkid's online nodes make: the
 * offline tool's (node 0), shorter ones, and ones not starting 0x01. */
static pkid_cert_record other_n(uint64_t n) {
  pkid_cert_record r = rec_n(n);
  switch (n % 3) {
    case 0: r.serial.bytes[1] = r.serial.bytes[2] = 0; break; /* node 0 */
    case 1: r.serial.len = 1 + n % 18; break;
    default: r.serial.bytes[0] = 0x42; break;
  }
  return r;
}

TEST(serials_of_every_form_side_by_side) {
  pkid_status *st = pkid_status_new(1);
  REQUIRE(st != NULL);
  pkid_cert_record *a = malloc(3000 * sizeof(*a)), *b = malloc(3000 * sizeof(*b));
  REQUIRE(a != NULL && b != NULL);
  for (uint64_t i = 0; i < 3000; i++) {
    a[i] = rec_n(i);
    b[i] = other_n(i);
    b[i].not_after = (int64_t)i;
    REQUIRE(pkid_status_put(st, &a[i]));
    REQUIRE(pkid_status_put(st, &b[i])); /* a short one may replace an earlier one */
  }
  for (uint64_t i = 0; i < 3000; i++) {
    pkid_cert_record got;
    REQUIRE(pkid_status_get(st, a[i].serial.bytes, a[i].serial.len, &got));
    CHECK(got.serial.len == a[i].serial.len &&
          memcmp(got.serial.bytes, a[i].serial.bytes, a[i].serial.len) == 0 &&
          got.not_after == a[i].not_after);
    REQUIRE(pkid_status_get(st, b[i].serial.bytes, b[i].serial.len, &got));
    CHECK(got.serial.len == b[i].serial.len && got.not_after >= (int64_t)i);
  }
  free(a);
  free(b);
  pkid_status_free(st);
}

TEST(same_node_and_sequence_other_random) {
  /* Never made by pkid, but the index must keep both apart. */
  pkid_status *st = pkid_status_new(1);
  pkid_cert_record a = rec_n(5), b = a;
  b.serial.bytes[18] ^= 1;
  b.not_after = 42;
  REQUIRE(pkid_status_put(st, &a));
  REQUIRE(pkid_status_put(st, &b));
  CHECK(pkid_status_count(st) == 2);
  pkid_cert_record got;
  REQUIRE(pkid_status_get(st, a.serial.bytes, a.serial.len, &got));
  CHECK(got.not_after == a.not_after);
  REQUIRE(pkid_status_get(st, b.serial.bytes, b.serial.len, &got));
  CHECK(got.not_after == 42);
  /* A third random on the same sequence is unknown. */
  pkid_cert_record c = a;
  c.serial.bytes[18] ^= 2;
  CHECK(!pkid_status_get(st, c.serial.bytes, c.serial.len, &got));
  CHECK(pkid_status_set_response(st, b.serial.bytes, b.serial.len, PKI_OCSP_HASH_SHA1,
                                 dup_bytes("b"), 1, 7));
  size_t len;
  CHECK(pkid_status_response(st, a.serial.bytes, a.serial.len, PKI_OCSP_HASH_SHA1, &len,
                             NULL) == NULL);
  pkid_status_free(st);
}

TEST(each_hash_keeps_its_response) {
  pkid_status *st = pkid_status_new(1);
  pkid_cert_record r = rec_n(9);
  REQUIRE(pkid_status_put(st, &r));
  CHECK(pkid_status_set_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA256,
                                 dup_bytes("two"), 3, 2));
  CHECK(pkid_status_set_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA1,
                                 dup_bytes("one"), 3, 1));
  CHECK(pkid_status_set_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA256,
                                 dup_bytes("TWO"), 3, 3));
  size_t len;
  int64_t next;
  const uint8_t *der =
      pkid_status_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA1, &len, &next);
  CHECK(der != NULL && len == 3 && next == 1 && memcmp(der, "one", 3) == 0);
  der = pkid_status_response(st, r.serial.bytes, r.serial.len, PKI_OCSP_HASH_SHA256, &len,
                             &next);
  CHECK(der != NULL && len == 3 && next == 3 && memcmp(der, "TWO", 3) == 0);
  pkid_status_free(st);
}

typedef struct sweep {
  uint8_t *seen; /* by sequence number */
  int twice;
} sweep;

static int mark_fn(void *ctx, const pkid_cert_record *rec) {
  sweep *s = ctx;
  uint64_t seq = 0;
  for (int i = 3; i < 11; i++) seq = seq << 8 | rec->serial.bytes[i];
  if (rec->serial.bytes[1] == 0 && rec->serial.bytes[2] == 0) seq += 100000; /* node 0 */
  if (s->seen[seq]++) s->twice = 1;
  return 1;
}

TEST(sweeps_in_slices_visit_each_record_once) {
  pkid_status *st = pkid_status_new(1);
  /* Pages of three nodes with gaps, and the offline tool's serials. */
  size_t n = 0;
  for (uint64_t i = 1; i < 9000; i += (i % 2000 == 0) ? 1500 : 1) {
    pkid_cert_record r = rec_n(i);
    r.serial.bytes[2] = (uint8_t)(1 + i % 3);
    REQUIRE(pkid_status_put(st, &r));
    n++;
  }
  for (uint64_t i = 0; i < 500; i++) {
    pkid_cert_record r = rec_n(i);
    r.serial.bytes[1] = r.serial.bytes[2] = 0;
    REQUIRE(pkid_status_put(st, &r));
    n++;
  }
  REQUIRE(pkid_status_count(st) == n);
  sweep s = {calloc(200000, 1), 0};
  size_t cursor = 0, slices = 0;
  do {
    pkid_status_foreach_from(st, &cursor, 700, mark_fn, &s);
    slices++;
  } while (cursor != 0 && slices < 1000);
  size_t total = 0;
  for (size_t i = 0; i < 200000; i++) total += s.seen[i];
  CHECK(total == n && !s.twice);
  CHECK(slices >= n / 700);
  free(s.seen);
  pkid_status_free(st);
}

TEST(remap_services_reaches_every_record) {
  pkid_status *st = pkid_status_new(1);
  pkid_cert_record a = rec_n(3), b = other_n(3);
  a.service = 1;
  b.service = 2;
  REQUIRE(pkid_status_put(st, &a) && pkid_status_put(st, &b));
  uint16_t map[] = {0, 7, 0xffff};
  pkid_status_remap_services(st, map, 3);
  pkid_cert_record got;
  REQUIRE(pkid_status_get(st, a.serial.bytes, a.serial.len, &got));
  CHECK(got.service == 7);
  REQUIRE(pkid_status_get(st, b.serial.bytes, b.serial.len, &got));
  CHECK(got.service == 0xffff);
  pkid_status_free(st);
}

int main(void) {
  RUN(put_get_many_and_grow);
  RUN(revocation_drops_stale_responses);
  RUN(foreach_visits_all);
  RUN(serials_of_every_form_side_by_side);
  RUN(same_node_and_sequence_other_random);
  RUN(each_hash_keeps_its_response);
  RUN(sweeps_in_slices_visit_each_record_once);
  RUN(remap_services_reaches_every_record);
  return test_finish();
}
