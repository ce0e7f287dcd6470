/* crls_test: what a CA's CRLs are made of (server/store/crls.h) and the id
 * set beside it (server/store/idset.h): which entries a complete CRL and a
 * delta hold, when an entry may leave (RFC 5280 3.3), removeFromCRL in the
 * delta for what the base still holds (5.3.1), and the purge at a new
 * base. Then the id set: add, find, remove, growth, and runs of colliding
 * home slots. */
#include <stdlib.h>
#include <string.h>

#include "server/store/crls.h"
#include "server/store/idset.h"
#include "tests/unit/test.h"

static pki_serial serial_of(int i) {
  pki_serial s;
  memset(&s, 0, sizeof(s));
  s.len = 19;
  s.bytes[0] = 0x01;
  s.bytes[17] = (uint8_t)(i >> 8);
  s.bytes[18] = (uint8_t)i;
  return s;
}

static int serial_is(const pki_crl_entry *e, int i) {
  pki_serial s = serial_of(i);
  return e->serial.len == s.len && memcmp(e->serial.bytes, s.bytes, s.len) == 0;
}

/* add revokes certificate |i| (keyCompromise at time 1000 + i) expiring at
 * |not_after|. */
static int add(pkid_ca_crls *c, int i, int64_t not_after) {
  pki_serial s = serial_of(i);
  return pkid_ca_crls_add(c, &s, PKI_CRL_REASON_KEY_COMPROMISE, 1000 + i, 0, not_after);
}

typedef struct picked {
  pki_crl_entry *full, *delta;
  size_t num_full, num_delta;
} picked;

static int pick(picked *p, const pkid_ca_crls *c) {
  return pkid_ca_crls_select(c, pkid_ca_crls_cut(c), &p->full, &p->num_full, &p->delta,
                             &p->num_delta);
}

static void unpick(picked *p) {
  free(p->full);
  free(p->delta);
  memset(p, 0, sizeof(*p));
}

/* holds reports whether |entries| holds certificate |i| with |reason|. */
static int holds(const pki_crl_entry *entries, size_t n, int i, int reason) {
  for (size_t k = 0; k < n; k++) {
    if (serial_is(&entries[k], i)) return entries[k].reason == reason;
  }
  return 0;
}

TEST(first_build_has_no_delta) {
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  REQUIRE(add(&c, 1, 5000));
  REQUIRE(add(&c, 2, 5000));
  CHECK(pkid_ca_crls_cut(&c) == 2);
  picked p;
  REQUIRE(pick(&p, &c));
  CHECK(p.num_full == 2 && serial_is(&p.full[0], 1) && serial_is(&p.full[1], 2));
  CHECK(p.full[0].reason == PKI_CRL_REASON_KEY_COMPROMISE && p.full[0].revocation_date == 1001);
  CHECK(p.delta == NULL && p.num_delta == 0); /* no base to refer to */
  unpick(&p);
  pkid_ca_crls_cleanup(&c);
}

TEST(cut_bounds_what_is_built) {
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  for (int i = 1; i <= 5; i++) REQUIRE(add(&c, i, 5000));
  picked p;
  memset(&p, 0, sizeof(p));
  /* A build taken when only three were durable holds those three. */
  REQUIRE(pkid_ca_crls_select(&c, 3, &p.full, &p.num_full, &p.delta, &p.num_delta));
  CHECK(p.num_full == 3 && serial_is(&p.full[2], 3));
  unpick(&p);
  pkid_ca_crls_cleanup(&c);
}

TEST(delta_lists_what_came_after_the_base) {
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  REQUIRE(add(&c, 1, 5000));
  /* CRL 1 is the base, built at cut 1. */
  pkid_ca_crls_made(&c, 1, 1, 100, 1);
  REQUIRE(add(&c, 2, 5000));
  REQUIRE(add(&c, 3, 5000));
  picked p;
  REQUIRE(pick(&p, &c));
  CHECK(p.num_full == 3);
  CHECK(p.num_delta == 2 && holds(p.delta, p.num_delta, 2, PKI_CRL_REASON_KEY_COMPROMISE) &&
        holds(p.delta, p.num_delta, 3, PKI_CRL_REASON_KEY_COMPROMISE));
  CHECK(!holds(p.delta, p.num_delta, 1, PKI_CRL_REASON_KEY_COMPROMISE));
  unpick(&p);
  /* CRL 2, not a base: the deltas still refer to 1. */
  pkid_ca_crls_made(&c, 2, 0, 200, 3);
  CHECK(c.number == 2 && c.base_number == 1);
  REQUIRE(pick(&p, &c));
  CHECK(p.num_delta == 2);
  unpick(&p);
  pkid_ca_crls_cleanup(&c);
}

/* RFC 5280 3.3: an entry stays until it has appeared on one CRL issued
 * after its certificate expired. */
TEST(expired_entry_leaves_after_one_more_crl) {
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  REQUIRE(add(&c, 1, 150)); /* expires at 150 */
  REQUIRE(add(&c, 2, 5000));
  pkid_ca_crls_made(&c, 1, 1, 100, 2); /* base at 100: both still valid */
  picked p;
  REQUIRE(pick(&p, &c));
  CHECK(p.num_full == 2);
  unpick(&p);
  /* CRL 2 at 200, past the expiry: it must still list entry 1. The build
   * of CRL 2 used the rule of CRL 1 (thisUpdate 100), which kept it. */
  pkid_ca_crls_made(&c, 2, 0, 200, 2);
  /* Now entry 1 was on a CRL issued after it expired: it may leave. */
  REQUIRE(pick(&p, &c));
  CHECK(p.num_full == 1 && serial_is(&p.full[0], 2));
  /* The base (CRL 1) holds it still: the delta says removeFromCRL. */
  CHECK(p.num_delta == 1 && holds(p.delta, 1, 1, PKI_CRL_REASON_REMOVE_FROM_CRL));
  unpick(&p);
  CHECK(pkid_ca_crls_find(&c, &(pki_serial){0}) == NULL);
  pki_serial s1 = serial_of(1);
  CHECK(pkid_ca_crls_find(&c, &s1) != NULL); /* kept until a new base */
  pkid_ca_crls_cleanup(&c);
}

TEST(new_base_purges_what_it_left_out) {
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  REQUIRE(add(&c, 1, 150));
  REQUIRE(add(&c, 2, 5000));
  pkid_ca_crls_made(&c, 1, 1, 100, 2);
  pkid_ca_crls_made(&c, 2, 0, 200, 2);
  /* CRL 3, a new base built with CRL 2's rule: entry 1 is out of it. */
  picked p;
  REQUIRE(pick(&p, &c));
  CHECK(p.num_full == 1);
  unpick(&p);
  pkid_ca_crls_made(&c, 3, 1, 300, 2);
  CHECK(c.base_number == 3 && c.num_entries == 1);
  pki_serial s1 = serial_of(1), s2 = serial_of(2);
  CHECK(pkid_ca_crls_find(&c, &s1) == NULL);
  CHECK(pkid_ca_crls_find(&c, &s2) != NULL);
  /* The new base holds entry 2; the delta after it is empty, not a
   * removeFromCRL for the entry the new base never had. */
  REQUIRE(pick(&p, &c));
  CHECK(p.num_full == 1 && p.num_delta == 0);
  unpick(&p);
  /* Ordinals go on from where they were. */
  REQUIRE(add(&c, 3, 5000));
  CHECK(pkid_ca_crls_cut(&c) == 3);
  pkid_ca_crls_cleanup(&c);
}

TEST(numbers_never_go_back) {
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  pkid_ca_crls_made(&c, 7, 1, 100, 0);
  pkid_ca_crls_made(&c, 5, 0, 100, 0); /* an older record replayed late */
  CHECK(c.number == 7);
  pkid_ca_crls_cleanup(&c);
}

TEST(blobs_are_shared_until_the_last_reference) {
  uint8_t *der = malloc(4);
  REQUIRE(der != NULL);
  memcpy(der, "\x30\x02\x05\x00", 4);
  pkid_crl_blob *b = pkid_crl_blob_new(der, 4, 9, 100, 200, 0);
  REQUIRE(b != NULL);
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  pkid_crl_blob_ref(b);              /* a response in flight */
  pkid_ca_crls_publish(&c, b, NULL); /* the store's */
  CHECK(c.full == b && b->refs == 2);
  pkid_ca_crls_publish(&c, NULL, NULL); /* replaced: the response holds on */
  CHECK(b->refs == 1 && b->number == 9 && b->der[0] == 0x30);
  pkid_crl_blob_unref(b); /* freed here (ASan would see a leak otherwise) */
  pkid_crl_blob_unref(NULL);
  pkid_ca_crls_cleanup(&c);
}

/* Finding is by hash: every one of many entries is found, a serial never
 * revoked is not, and a purge leaves the rest findable. */
TEST(find_many_and_after_a_purge) {
  pkid_ca_crls c;
  memset(&c, 0, sizeof(c));
  enum { N = 5000 };
  for (int i = 1; i <= N; i++) REQUIRE(add(&c, i, i % 2 ? 150 : 5000));
  int all = 1;
  for (int i = 1; i <= N; i++) {
    pki_serial s = serial_of(i);
    const pkid_revoked *e = pkid_ca_crls_find(&c, &s);
    all &= e != NULL && e->ord == (uint64_t)i;
  }
  CHECK(all);
  pki_serial never = serial_of(N + 1);
  CHECK(pkid_ca_crls_find(&c, &never) == NULL);
  /* The odd ones expire at 150; after two CRLs and a base they are gone. */
  pkid_ca_crls_made(&c, 1, 1, 100, N);
  pkid_ca_crls_made(&c, 2, 0, 200, N);
  pkid_ca_crls_made(&c, 3, 1, 300, N);
  CHECK(c.num_entries == N / 2);
  int odd_gone = 1, even_found = 1;
  for (int i = 1; i <= N; i++) {
    pki_serial s = serial_of(i);
    const pkid_revoked *e = pkid_ca_crls_find(&c, &s);
    if (i % 2) {
      odd_gone &= e == NULL;
    } else {
      even_found &= e != NULL && serial_is(&(pki_crl_entry){.serial = s}, i);
    }
  }
  CHECK(odd_gone && even_found);
  pkid_ca_crls_cleanup(&c);
}

/* ---- idset -------------------------------------------------------------- */

static void id_of(uint8_t id[32], unsigned i) {
  memset(id, 0, 32);
  id[0] = (uint8_t)(i % 3); /* few home slots: long probe runs */
  id[1] = 1;                /* never the all-zero id */
  id[30] = (uint8_t)(i >> 8);
  id[31] = (uint8_t)i;
}

static int count_one(void *ctx, const uint8_t id[32]) {
  (void)id;
  (*(size_t *)ctx)++;
  return 1;
}

TEST(idset_adds_finds_and_removes) {
  pkid_idset s;
  memset(&s, 0, sizeof(s));
  uint8_t id[32];
  id_of(id, 1);
  CHECK(!pkid_idset_has(&s, id)); /* empty, never allocated */
  enum { N = 3000 };
  for (unsigned i = 0; i < N; i++) {
    int added = 0;
    id_of(id, i);
    REQUIRE(pkid_idset_add(&s, id, &added));
    CHECK(added);
  }
  int added = 1;
  id_of(id, 5);
  REQUIRE(pkid_idset_add(&s, id, &added));
  CHECK(!added && s.count == N);
  CHECK(s.mask + 1 >= 2 * s.count); /* at most half full */
  /* Remove every other one, from the middle of the runs. */
  for (unsigned i = 0; i < N; i += 2) {
    id_of(id, i);
    pkid_idset_remove(&s, id);
  }
  int odd_found = 1, even_gone = 1;
  for (unsigned i = 0; i < N; i++) {
    id_of(id, i);
    if (i % 2) {
      odd_found &= pkid_idset_has(&s, id);
    } else {
      even_gone &= !pkid_idset_has(&s, id);
    }
  }
  CHECK(odd_found && even_gone && s.count == N / 2);
  size_t seen = 0;
  CHECK(pkid_idset_foreach(&s, count_one, &seen) && seen == N / 2);
  uint8_t absent[32];
  memset(absent, 0x55, sizeof(absent));
  pkid_idset_remove(&s, absent);
  CHECK(s.count == N / 2);
  pkid_idset_cleanup(&s);
  CHECK(s.count == 0 && !pkid_idset_has(&s, id));
}

int main(void) {
  RUN(first_build_has_no_delta);
  RUN(cut_bounds_what_is_built);
  RUN(delta_lists_what_came_after_the_base);
  RUN(expired_entry_leaves_after_one_more_crl);
  RUN(new_base_purges_what_it_left_out);
  RUN(numbers_never_go_back);
  RUN(find_many_and_after_a_purge);
  RUN(blobs_are_shared_until_the_last_reference);
  RUN(idset_adds_finds_and_removes);
  return test_finish();
}
