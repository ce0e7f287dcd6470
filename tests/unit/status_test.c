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

int main(void) {
  RUN(put_get_many_and_grow);
  RUN(revocation_drops_stale_responses);
  RUN(foreach_visits_all);
  return test_finish();
}
