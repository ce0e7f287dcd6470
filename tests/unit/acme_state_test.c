/* acme_state_test: server/store/acme_state.c: an account's life (EAB key
 * made, used, the account's key changed, deactivated), every refusal of a
 * record that does not apply (each leaving the state as it was), the
 * thumbprint lookup, each() rebuilding the same state, and the EAB key
 * derivation against a vector computed apart (Python's hmac module). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/record.h"
#include "server/store/acme_state.h"
#include "tests/unit/test.h"

/* Three EC P-256 public keys (made with Python's cryptography module), and
 * their RFC 7638 thumbprints computed there, as hex. */
#define JWK_A                                                                        \
  "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"iw6ctxJUGYK_Ykm8SL1dn5li3TQlfcXeYE_b-eTKySU\"," \
  "\"y\":\"ORRs5C84Pb9EUbDZHX3gmuGTu6qMFoJu2dsad7MKA_0\"}"
#define TP_A "67e4f1c5ac0bb84ce10d1d22ef7702ef69f65d3d47be8f3f4d90e7db609b16e1"
#define JWK_B                                                                        \
  "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"CI3ls8JtnMvX8ZXEvCQurh4lkpCzuDBttg1FaopLkmI\"," \
  "\"y\":\"Wc52e6dm5eTNsRrJUGLFayAu6BzCtKLbRjmgD1vnAjk\"}"
#define TP_B "e6a1e15de3a5e098af8fff210c4f76d1cdf5d51bbe2c53c2f294fbc7b2e62033"
#define JWK_C                                                                        \
  "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"cWAtbFMIZYGh87kXM7-QPm2o4Dx8NaEdcrDmAJB0pgg\"," \
  "\"y\":\"gnvzwzsvZoaCavWBnPLlH-6VO5A4_fIAacSeJGcX734\"}"
#define TP_C "a51c4dd5d0d3d9e34390d6372dadbc9af9f7145a81c6139885f5d7eba43ad2a0"

/* JWK_A as the state keeps it: compact, keys sorted. */
#define JWK_A_SORTED                                                                 \
  "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"iw6ctxJUGYK_Ykm8SL1dn5li3TQlfcXeYE_b-eTKySU\"," \
  "\"y\":\"ORRs5C84Pb9EUbDZHX3gmuGTu6qMFoJu2dsad7MKA_0\"}"

static void from_hex(uint8_t *out, const char *hex, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned b;
    sscanf(hex + 2 * i, "%2x", &b);
    out[i] = (uint8_t)b;
  }
}

static int apply(pkid_acme_state *s, int kind, const char *service, const char *detail,
                 int64_t t, pki_err *err) {
  return pkid_acme_state_apply(s, kind, service, (const uint8_t *)detail, strlen(detail), t, err);
}

/* refused applies a record that must not apply: PKI_ERR_INVALID, and the
 * state's records unchanged. */
static size_t count_records(const pkid_acme_state *s);
static int refused(pkid_acme_state *s, int kind, const char *service, const char *detail) {
  pki_err err;
  pki_err_clear(&err);
  size_t before = count_records(s), accounts = pkid_acme_state_num_accounts(s);
  int ok = apply(s, kind, service, detail, 1800000100, &err);
  if (ok || err.code != PKI_ERR_INVALID) {
    fprintf(stderr, "  %s: %s\n", ok ? "applied" : "refused, but not as invalid", err.msg);
  }
  return !ok && err.code == PKI_ERR_INVALID && count_records(s) == before &&
         pkid_acme_state_num_accounts(s) == accounts;
}

static int count_one(void *ctx, int kind, const char *service, const uint8_t *detail,
                     size_t len, int64_t time) {
  (void)kind, (void)service, (void)detail, (void)len, (void)time;
  ++*(size_t *)ctx;
  return 1;
}

static size_t count_records(const pkid_acme_state *s) {
  size_t n = 0;
  pkid_acme_state_each(s, count_one, &n);
  return n;
}

/* sample makes kid eab-1 (vault) bound to account acct1 with JWK_A, and
 * kid eab-2 (redis) unused. */
static pkid_acme_state *sample(void) {
  pkid_acme_state *s = pkid_acme_state_new();
  pki_err err;
  if (s == NULL) return NULL;
  if (!apply(s, PKI_EVENT_EAB_CREATED, "vault", "eab-1", 1800000000, &err) ||
      !apply(s, PKI_EVENT_EAB_CREATED, "redis", "eab-2", 1800000001, &err) ||
      !apply(s, PKI_EVENT_EAB_USED, "vault",
             "{\"kid\":\"eab-1\",\"account\":\"acct1\",\"jwk\":" JWK_A
             ",\"contact\":[\"mailto:ops@example.com\"]}",
             1800000002, &err)) {
    fprintf(stderr, "  sample: %s\n", err.msg);
    pkid_acme_state_free(s);
    return NULL;
  }
  return s;
}

TEST(account_life) {
  pkid_acme_state *s = sample();
  REQUIRE(s != NULL);
  pki_err err;
  const pkid_acme_eab *e = pkid_acme_state_eab(s, "eab-1");
  REQUIRE(e != NULL);
  CHECK(strcmp(e->service, "vault") == 0 && strcmp(e->account, "acct1") == 0);
  CHECK(e->created == 1800000000);
  e = pkid_acme_state_eab(s, "eab-2");
  REQUIRE(e != NULL);
  CHECK(strcmp(e->service, "redis") == 0 && e->account[0] == '\0');
  CHECK(pkid_acme_state_eab(s, "eab-3") == NULL);

  const pkid_acme_account *a = pkid_acme_state_account(s, "acct1");
  REQUIRE(a != NULL);
  uint8_t tp_a[32], tp_b[32];
  from_hex(tp_a, TP_A, 32);
  from_hex(tp_b, TP_B, 32);
  CHECK(strcmp(a->service, "vault") == 0 && strcmp(a->kid, "eab-1") == 0);
  CHECK(strcmp(a->jwk, JWK_A_SORTED) == 0);
  CHECK(memcmp(a->thumbprint, tp_a, 32) == 0);
  CHECK(strcmp(a->contact, "[\"mailto:ops@example.com\"]") == 0);
  CHECK(!a->deactivated && a->created == 1800000002);
  CHECK(pkid_acme_state_num_accounts(s) == 1);
  CHECK(pkid_acme_state_account(s, "acct2") == NULL);

  /* A contact update, then a key change (RFC 8555 7.3.2, 7.3.5). */
  REQUIRE(apply(s, PKI_EVENT_ACME_ACCOUNT, "vault", "{\"account\":\"acct1\",\"contact\":[]}",
                1800000003, &err));
  a = pkid_acme_state_account(s, "acct1");
  CHECK(strcmp(a->contact, "[]") == 0);
  REQUIRE(apply(s, PKI_EVENT_ACME_ACCOUNT, "vault",
                "{\"account\":\"acct1\",\"jwk\":" JWK_B "}", 1800000004, &err));
  a = pkid_acme_state_account(s, "acct1");
  CHECK(memcmp(a->thumbprint, tp_b, 32) == 0 && strstr(a->jwk, "CI3ls8") != NULL);
  CHECK(!a->deactivated);

  /* Deactivated (7.3.6): final. */
  REQUIRE(apply(s, PKI_EVENT_ACME_ACCOUNT, "vault",
                "{\"account\":\"acct1\",\"status\":\"deactivated\"}", 1800000005, &err));
  a = pkid_acme_state_account(s, "acct1");
  CHECK(a->deactivated);
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "vault",
                "{\"account\":\"acct1\",\"contact\":[\"mailto:x@example.com\"]}"));
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "vault",
                "{\"account\":\"acct1\",\"status\":\"deactivated\"}"));
  /* Its key still names it: a new account cannot take it. */
  CHECK(pkid_acme_state_account_by_key(s, tp_b) == a);
  CHECK(refused(s, PKI_EVENT_EAB_USED, "redis",
                "{\"kid\":\"eab-2\",\"account\":\"acct2\",\"jwk\":" JWK_B "}"));
  CHECK(count_records(s) == 6);

  /* Other kinds are not the state's: ignored, not kept. */
  CHECK(apply(s, PKI_EVENT_RELOAD, "", "catalogue reloaded", 1800000006, &err));
  CHECK(count_records(s) == 6);
  pkid_acme_state_free(s);
}

TEST(refusals) {
  pkid_acme_state *s = sample();
  REQUIRE(s != NULL);
  pki_err err;
  /* An EAB key used: unknown, used already, or another service's. */
  CHECK(refused(s, PKI_EVENT_EAB_USED, "redis",
                "{\"kid\":\"eab-9\",\"account\":\"acct2\",\"jwk\":" JWK_B "}"));
  CHECK(refused(s, PKI_EVENT_EAB_USED, "vault",
                "{\"kid\":\"eab-1\",\"account\":\"acct2\",\"jwk\":" JWK_B "}"));
  CHECK(refused(s, PKI_EVENT_EAB_USED, "vault",
                "{\"kid\":\"eab-2\",\"account\":\"acct2\",\"jwk\":" JWK_B "}"));
  /* An account id or a key twice. */
  CHECK(refused(s, PKI_EVENT_EAB_USED, "redis",
                "{\"kid\":\"eab-2\",\"account\":\"acct1\",\"jwk\":" JWK_B "}"));
  CHECK(refused(s, PKI_EVENT_EAB_USED, "redis",
                "{\"kid\":\"eab-2\",\"account\":\"acct2\",\"jwk\":" JWK_A "}"));
  /* A kid made twice. */
  CHECK(refused(s, PKI_EVENT_EAB_CREATED, "redis", "eab-1"));
  /* Changes to an account that is not there, or of another service. */
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "vault", "{\"account\":\"acct9\",\"contact\":[]}"));
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "redis", "{\"account\":\"acct1\",\"contact\":[]}"));
  /* A key change to a key another account has. */
  REQUIRE(apply(s, PKI_EVENT_EAB_USED, "redis",
                "{\"kid\":\"eab-2\",\"account\":\"acct2\",\"jwk\":" JWK_B "}", 1800000010, &err));
  CHECK(strcmp(pkid_acme_state_account(s, "acct2")->contact, "[]") == 0); /* absent */
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "vault",
                "{\"account\":\"acct1\",\"jwk\":" JWK_B "}"));
  /* Malformed JSON, and members that are wrong or missing. */
  CHECK(apply(s, PKI_EVENT_EAB_CREATED, "redis", "eab-3", 1800000011, &err));
  static const char *const kBad[] = {
      "{\"kid\":\"eab-3\",\"account\":\"acct3\",\"jwk\":" JWK_C,  /* cut short */
      "[\"eab-3\"]",                                              /* not an object */
      "",
      "{\"kid\":\"eab-3\",\"kid\":\"eab-3\",\"account\":\"acct3\",\"jwk\":" JWK_C "}",
      "{\"account\":\"acct3\",\"jwk\":" JWK_C "}",                /* no kid */
      "{\"kid\":\"eab-3\",\"jwk\":" JWK_C "}",                    /* no account */
      "{\"kid\":\"eab-3\",\"account\":\"acct3\"}",                /* no jwk */
      "{\"kid\":\"eab-3\",\"account\":\"acct3\",\"jwk\":\"" TP_C "\"}",
      "{\"kid\":\"eab-3\",\"account\":\"acct3\",\"jwk\":{\"kty\":\"EC\"}}",
      "{\"kid\":\"eab-3\",\"account\":\"acct/3\",\"jwk\":" JWK_C "}",
      "{\"kid\":\"eab-3\",\"account\":\"a12345678901234567890123456789012\",\"jwk\":" JWK_C "}",
      "{\"kid\":\"eab-3\",\"account\":\"\",\"jwk\":" JWK_C "}",
      "{\"kid\":3,\"account\":\"acct3\",\"jwk\":" JWK_C "}",
      "{\"kid\":\"eab-3\",\"account\":\"acct3\",\"jwk\":" JWK_C ",\"contact\":\"x\"}",
      "{\"kid\":\"eab-3\",\"account\":\"acct3\",\"jwk\":" JWK_C ",\"contact\":[1]}",
      "{\"kid\":\"eab-3\",\"account\":\"acct3\",\"jwk\":" JWK_C ",\"status\":\"valid\"}",
  };
  for (size_t i = 0; i < sizeof(kBad) / sizeof(kBad[0]); i++) {
    if (!refused(s, PKI_EVENT_EAB_USED, "redis", kBad[i])) {
      fprintf(stderr, "  kBad[%zu] not refused\n", i);
      CHECK(0);
    }
  }
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "redis", "{\"account\":\"acct2\"}")); /* no change */
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "redis",
                "{\"account\":\"acct2\",\"status\":\"revoked\"}"));
  CHECK(refused(s, PKI_EVENT_ACME_ACCOUNT, "redis", "{\"account\":\"acct2\",\"contact\":"));
  /* Kids: empty, overlong (65), not printable; a service named. */
  CHECK(refused(s, PKI_EVENT_EAB_CREATED, "redis", ""));
  CHECK(refused(s, PKI_EVENT_EAB_CREATED, "redis",
                "eab-0123456789012345678901234567890123456789012345678901234567890"));
  CHECK(refused(s, PKI_EVENT_EAB_CREATED, "redis", "eab-\n"));
  CHECK(refused(s, PKI_EVENT_EAB_CREATED, "", "eab-4"));
  CHECK(pkid_acme_state_eab(s, "eab-4") == NULL);
  /* 64 octets is the most, and is taken. */
  CHECK(apply(s, PKI_EVENT_EAB_CREATED, "redis",
              "eab-012345678901234567890123456789012345678901234567890123456789", 1800000012,
              &err));
  /* None of the refusals changed what is there. */
  const pkid_acme_account *a = pkid_acme_state_account(s, "acct1");
  uint8_t tp_a[32];
  from_hex(tp_a, TP_A, 32);
  CHECK(a != NULL && memcmp(a->thumbprint, tp_a, 32) == 0 && !a->deactivated);
  CHECK(pkid_acme_state_eab(s, "eab-3")->account[0] == '\0');
  CHECK(pkid_acme_state_num_accounts(s) == 2);
  pkid_acme_state_free(s);
}

TEST(thumbprint_lookup_follows_key_change) {
  pkid_acme_state *s = sample();
  REQUIRE(s != NULL);
  pki_err err;
  uint8_t tp_a[32], tp_c[32];
  from_hex(tp_a, TP_A, 32);
  from_hex(tp_c, TP_C, 32);
  const pkid_acme_account *a = pkid_acme_state_account_by_key(s, tp_a);
  CHECK(a != NULL && strcmp(a->id, "acct1") == 0);
  CHECK(pkid_acme_state_account_by_key(s, tp_c) == NULL);
  REQUIRE(apply(s, PKI_EVENT_ACME_ACCOUNT, "vault",
                "{\"account\":\"acct1\",\"jwk\":" JWK_C "}", 1800000003, &err));
  CHECK(pkid_acme_state_account_by_key(s, tp_a) == NULL);
  a = pkid_acme_state_account_by_key(s, tp_c);
  CHECK(a != NULL && strcmp(a->id, "acct1") == 0);
  /* The old key is free again: another account may have it. */
  REQUIRE(apply(s, PKI_EVENT_EAB_USED, "redis",
                "{\"kid\":\"eab-2\",\"account\":\"acct2\",\"jwk\":" JWK_A "}", 1800000004, &err));
  a = pkid_acme_state_account_by_key(s, tp_a);
  CHECK(a != NULL && strcmp(a->id, "acct2") == 0 && strcmp(a->service, "redis") == 0);
  pkid_acme_state_free(s);
}

static int replay_into(void *ctx, int kind, const char *service, const uint8_t *detail,
                       size_t len, int64_t time) {
  pki_err err;
  return pkid_acme_state_apply(ctx, kind, service, detail, len, time, &err);
}

static int stop_at_second(void *ctx, int kind, const char *service, const uint8_t *detail,
                          size_t len, int64_t time) {
  (void)kind, (void)service, (void)detail, (void)len, (void)time;
  return ++*(int *)ctx < 2;
}

TEST(each_rebuilds_the_same_state) {
  pkid_acme_state *s = sample();
  REQUIRE(s != NULL);
  pki_err err;
  REQUIRE(apply(s, PKI_EVENT_ACME_ACCOUNT, "vault",
                "{\"account\":\"acct1\",\"jwk\":" JWK_B "}", 1800000003, &err));
  REQUIRE(apply(s, PKI_EVENT_EAB_USED, "redis",
                "{\"kid\":\"eab-2\",\"account\":\"acct2\",\"jwk\":" JWK_A "}", 1800000004, &err));
  REQUIRE(apply(s, PKI_EVENT_ACME_ACCOUNT, "redis",
                "{\"account\":\"acct2\",\"status\":\"deactivated\"}", 1800000005, &err));
  pkid_acme_state *t = pkid_acme_state_new();
  REQUIRE(t != NULL);
  CHECK(pkid_acme_state_each(s, replay_into, t));
  CHECK(count_records(t) == count_records(s) && count_records(t) == 6);
  CHECK(pkid_acme_state_num_accounts(t) == 2);
  const char *const ids[] = {"acct1", "acct2"};
  for (size_t i = 0; i < 2; i++) {
    const pkid_acme_account *a = pkid_acme_state_account(s, ids[i]);
    const pkid_acme_account *b = pkid_acme_state_account(t, ids[i]);
    REQUIRE(a != NULL && b != NULL);
    CHECK(strcmp(a->service, b->service) == 0 && strcmp(a->kid, b->kid) == 0);
    CHECK(strcmp(a->jwk, b->jwk) == 0 && strcmp(a->contact, b->contact) == 0);
    CHECK(memcmp(a->thumbprint, b->thumbprint, 32) == 0);
    CHECK(a->deactivated == b->deactivated && a->created == b->created);
    CHECK(pkid_acme_state_account_by_key(t, a->thumbprint) == b);
  }
  CHECK(pkid_acme_state_account(t, "acct2")->deactivated);
  const pkid_acme_eab *e = pkid_acme_state_eab(t, "eab-2");
  CHECK(e != NULL && strcmp(e->account, "acct2") == 0 && e->created == 1800000001);
  /* each stops at the first 0. */
  int calls = 0;
  CHECK(!pkid_acme_state_each(s, stop_at_second, &calls) && calls == 2);
  pkid_acme_state_free(t);
  pkid_acme_state_free(s);
}

TEST(eab_key_vector) {
  /* Python: hmac.new(bytes(range(32)), b"pkid acme eab v1\x00" +
   * b"eab-AAECAwQFBgcICQoLDA0ODw", hashlib.sha256).hexdigest() */
  uint8_t master[PKID_ACME_EAB_MASTER_LEN], want[PKID_ACME_EAB_KEY_LEN],
      got[PKID_ACME_EAB_KEY_LEN], other[PKID_ACME_EAB_KEY_LEN];
  for (size_t i = 0; i < sizeof(master); i++) master[i] = (uint8_t)i;
  from_hex(want, "0911b8e7969d9b29dbc81df14139459d2f01b9364cfad46b36b0cc3c6c69a762", 32);
  pkid_acme_eab_key(got, master, "eab-AAECAwQFBgcICQoLDA0ODw");
  CHECK(memcmp(got, want, sizeof(want)) == 0);
  pkid_acme_eab_key(other, master, "eab-AAECAwQFBgcICQoLDA0ODx");
  CHECK(memcmp(got, other, sizeof(got)) != 0);
}

int main(void) {
  RUN(account_life);
  RUN(refusals);
  RUN(thumbprint_lookup_follows_key_change);
  RUN(each_rebuilds_the_same_state);
  RUN(eab_key_vector);
  return test_finish();
}
