/* crl_builder_test: the CRL builder (server/pipeline/crl.h) with the real
 * store, journal and worker pool on a libuv loop: revocations become a
 * complete and a delta CRL, signed off the loop (libuv's thread pool),
 * journaled by the committer before they are published, and written to
 * the pki/ tree; a restart replays the CRL records, so numbers go on and
 * the delta still refers to the base. Run under ThreadSanitizer in CI:
 * the builds, the workers and the committer run at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <uv.h>

#include "lib/catalog.h"
#include "lib/crl.h"
#include "lib/der.h"
#include "lib/file.h"
#include "lib/key.h"
#include "lib/serial.h"
#include "server/ca/ca.h"
#include "server/metrics/metrics.h"
#include "server/pipeline/crl.h"
#include "server/pipeline/job.h"
#include "server/pipeline/workers.h"
#include "server/store/status.h"
#include "server/store/store.h"
#include "tests/unit/test.h"
#include "tests/unit/test_ca.h"

static char g_tmp[512];
static pki_catalog *g_cat;
static pkid_ca g_ca;
static pkid_cas g_cas;

/* make_ca gives the one CA a fresh P-256 key and a name: enough to sign
 * CRLs (the builder needs no certificate). */
static int make_ca(void) {
  g_ca.def = pki_catalog_find_ca(g_cat, "agents-ca");
  g_cas.cas = &g_ca;
  g_cas.num_cas = 1;
  return g_ca.def != NULL && test_make_ca(&g_ca.issuer, PKI_KEY_ECDSA_P256, "Test Agents CA");
}

static pki_serial serial_n(uint64_t n) {
  pki_serial s;
  pki_err err;
  pki_serial_make(&s, 3, n, &err);
  return s;
}

static const uint8_t kCert[] = {0x30, 0x03, 0x02, 0x01, 0x07};

/* revoke_some commits the issuance and revocation of certificates
 * |from| .. |to| - 1 (before any worker runs: the test is the journal's
 * only writer then). */
static int revoke_some(pkid_store *st, uint64_t from, uint64_t to) {
  for (uint64_t n = from; n < to; n++) {
    pkid_record recs[2];
    memset(recs, 0, sizeof(recs));
    pki_serial s = serial_n(n);
    recs[0].type = PKI_REC_ISSUE;
    recs[0].serial = s;
    recs[0].identity = "x";
    recs[0].ca = &g_ca;
    recs[0].service = "pki-agent";
    recs[0].usage = PKI_USAGE_CLIENT;
    recs[0].not_before = 1700000000;
    recs[0].not_after = 4000000000;
    recs[0].cert = kCert;
    recs[0].cert_len = sizeof(kCert);
    recs[1].type = PKI_REC_REVOKE;
    recs[1].serial = s;
    recs[1].reason = PKI_CRL_REASON_SUPERSEDED;
    recs[1].revoked_at = 1790000000 + (int64_t)n;
    recs[1].identity = "x";
    const pkid_record *ptrs[2] = {&recs[0], &recs[1]};
    pki_err err;
    if (!pkid_store_commit(st, ptrs, 2, &err)) return 0;
    pkid_store_apply(st, &recs[0]);
    pkid_store_apply(st, &recs[1]);
  }
  return 1;
}

/* What a run waits for: a published complete CRL of |want_number| or
 * more, with its delta. */
typedef struct run_state {
  pkid_store *store;
  uint64_t want_number;
  int done;
  int ticks;
} run_state;

static void on_poll(uv_timer_t *t) {
  run_state *r = t->data;
  const pkid_ca_crls *c = &r->store->crls[0];
  r->ticks++;
  if ((c->full != NULL && c->delta != NULL && c->full->number >= r->want_number) ||
      r->ticks > 1000 /* 10 s: bounded */) {
    r->done = 1;
    uv_stop(t->loop);
  }
}

static void close_one(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* run_builder runs the pipeline and the builder until |want_number| is
 * published, then stops them as pkid does. The published CRLs are copied
 * into |full| and |delta| (malloc'd DER). */
static int run_builder(pkid_store *st, uint64_t want_number, const char *pki_dir, uint8_t **full,
                       size_t *full_len, uint8_t **delta, size_t *delta_len) {
  pki_err err;
  uv_loop_t loop;
  uv_loop_init(&loop);
  pkid_workers *w = pkid_workers_new(&loop, 2, 256, &g_cas, pkid_jobs_commit, st, &err);
  if (w == NULL) return 0;
  pkid_crl_options o = {.interval_s = 3600, .delta_interval_s = 3600, .validity_s = 86400,
                        .batch_ms = 10, .pki_dir = pki_dir};
  pkid_crl_builder *b = pkid_crl_builder_new(&loop, w, st, &g_cas, &o, &err);
  if (b == NULL) return 0;
  run_state r = {.store = st, .want_number = want_number};
  uv_timer_t poll;
  uv_timer_init(&loop, &poll);
  poll.data = &r;
  uv_timer_start(&poll, on_poll, 10, 10);
  uv_run(&loop, UV_RUN_DEFAULT);
  pkid_crl_builder_stop(b);
  pkid_workers_free(w);
  uv_walk(&loop, close_one, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  pkid_crl_builder_free(b);
  const pkid_ca_crls *c = &st->crls[0];
  if (c->full == NULL || c->delta == NULL || c->full->number < want_number) return 0;
  *full = malloc(c->full->len);
  *delta = malloc(c->delta->len);
  if (*full == NULL || *delta == NULL) return 0;
  memcpy(*full, c->full->der, c->full->len);
  *full_len = c->full->len;
  memcpy(*delta, c->delta->der, c->delta->len);
  *delta_len = c->delta->len;
  return 1;
}

static int parsed(pki_crl *crl, const uint8_t *der, size_t len) {
  pki_err err;
  if (!pki_crl_parse(crl, der, len, &err)) {
    fprintf(stderr, "  parse: %s\n", err.msg);
    return 0;
  }
  if (!pki_crl_verify(crl, g_ca.issuer.key, &err)) {
    fprintf(stderr, "  verify: %s\n", err.msg);
    pki_crl_cleanup(crl);
    return 0;
  }
  return 1;
}

/* same_file: the file the builder wrote holds |der|. */
static int same_file(const char *path, const uint8_t *der, size_t len) {
  uint8_t *got = NULL;
  size_t got_len = 0;
  pki_err err;
  int ok = pki_file_read(&got, &got_len, path, 1 << 24, &err) && got_len == len &&
           memcmp(got, der, len) == 0;
  free(got);
  return ok;
}

TEST(revocations_become_crls_and_numbers_go_on) {
  char dir[700], pki[700], path[800];
  snprintf(dir, sizeof(dir), "%s/journal", g_tmp);
  snprintf(pki, sizeof(pki), "%s/pki", g_tmp);
  pki_err err;
  pkid_status *status = pkid_status_new(16);
  pkid_store st;
  REQUIRE(pkid_store_open(&st, dir, g_cat, &g_cas, status, &(pkid_store_options){.node = 3}, &err));
  REQUIRE(revoke_some(&st, 1, 101));
  uint8_t *full = NULL, *delta = NULL;
  size_t full_len, delta_len;
  /* The first build (1) has no base to refer to; the next tick makes 2
   * with a delta against 1. */
  REQUIRE(run_builder(&st, 2, pki, &full, &full_len, &delta, &delta_len));
  pki_crl crl;
  REQUIRE(parsed(&crl, full, full_len));
  CHECK(!crl.is_delta && crl.number_u64 == 2 && crl.num_entries == 100);
  CHECK(crl.entries[0].reason == PKI_CRL_REASON_SUPERSEDED);
  pki_crl_cleanup(&crl);
  REQUIRE(parsed(&crl, delta, delta_len));
  CHECK(crl.is_delta && crl.number_u64 == 2 && crl.base_number_u64 == 1 && crl.num_entries == 0);
  pki_crl_cleanup(&crl);
  snprintf(path, sizeof(path), "%s/crl/agents-ca.crl", pki);
  CHECK(same_file(path, full, full_len));
  snprintf(path, sizeof(path), "%s/crl/agents-ca-delta.crl", pki);
  CHECK(same_file(path, delta, delta_len));
  free(full);
  free(delta);
  uint64_t number = st.crls[0].number;
  pkid_store_close(&st);
  pkid_status_free(status);

  /* A restart replays the CRL records: the number goes on from there, the
   * base stays, and the delta lists what came after it. */
  status = pkid_status_new(16);
  REQUIRE(pkid_store_open(&st, dir, g_cat, &g_cas, status, &(pkid_store_options){.node = 3}, &err));
  CHECK(st.crls[0].number == number && st.crls[0].base_number == 1);
  REQUIRE(revoke_some(&st, 101, 151));
  REQUIRE(run_builder(&st, number + 1, NULL, &full, &full_len, &delta, &delta_len));
  REQUIRE(parsed(&crl, full, full_len));
  CHECK(crl.number_u64 == number + 1 && crl.num_entries == 150);
  pki_crl_cleanup(&crl);
  REQUIRE(parsed(&crl, delta, delta_len));
  CHECK(crl.is_delta && crl.number_u64 == number + 1 && crl.base_number_u64 == 1 &&
        crl.num_entries == 50);
  pki_crl_cleanup(&crl);
  free(full);
  free(delta);
  pkid_store_close(&st);
  pkid_status_free(status);
}

/* In a fleet the number is the time in ms over the node's 15 bits: unique
 * between nodes, growing with time across them, and growing on one node
 * even when its clock steps back (pipeline/crl.h, fleet_node). */
TEST(fleet_numbers_grow_across_nodes_and_never_collide) {
  CHECK(pkid_crl_next_number(41, 0, 1700000000000) == 42); /* alone: counts */
  uint64_t t = 1700000000000;
  uint64_t a = pkid_crl_next_number(0, 1, t), b = pkid_crl_next_number(0, 2, t);
  CHECK(a != b);
  CHECK((a & 0x7fff) == 1 && (b & 0x7fff) == 2);
  CHECK(a >> 15 == t && b >> 15 == t);
  /* Node 2, a millisecond later, is above node 1's: one order per CA. */
  CHECK(pkid_crl_next_number(b, 2, t + 1) > a);
  CHECK(pkid_crl_next_number(a, 1, t + 5) > pkid_crl_next_number(b, 2, t + 1));
  /* Two builds in one millisecond, or a clock stepped back: still more. */
  uint64_t again = pkid_crl_next_number(a, 1, t);
  CHECK(again > a && (again & 0x7fff) == 1);
  CHECK(pkid_crl_next_number(again, 1, t - 60000) > again);
  /* A node that joins a fleet after counting alone goes on upwards. */
  CHECK(pkid_crl_next_number(7, 3, t) > 7);
  /* Within the 20 octets RFC 5280 5.2.3 allows, and 63 bits for years. */
  CHECK(pkid_crl_next_number(0, 32767, UINT64_C(253402300799000)) < (UINT64_C(1) << 63));
}

int main(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(g_tmp, sizeof(g_tmp), "%s", tmp != NULL ? tmp : "/tmp");
  pki_err err;
  g_cat = pki_catalog_default(&err);
  if (g_cat == NULL || !pkid_metrics_init() || !make_ca()) return 1;
  RUN(revocations_become_crls_and_numbers_go_on);
  RUN(fleet_numbers_grow_across_nodes_and_never_collide);
  EVP_PKEY_free(g_ca.issuer.key);
  free(g_ca.issuer.name);
  pki_catalog_free(g_cat);
  int rc = test_finish();
  pkid_registry_free(pkid_m.reg);
  return rc;
}
