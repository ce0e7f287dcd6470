/* acme_request_test: server/acme/request and orders: what each payload
 * may hold and the ACME error type of what it may not (RFC 8555 6.7), and
 * an order's life from pending to ready, invalid, expired. */
#include <stdlib.h>
#include <string.h>

#include "server/acme/orders.h"
#include "server/acme/request.h"
#include "tests/unit/test.h"

static int order(pkid_acme_order_req *o, const char *json, pkid_acme_error *type) {
  pki_err err;
  return pkid_acme_parse_order(o, (const uint8_t *)json, strlen(json), type, &err);
}

TEST(order_names) {
  pkid_acme_order_req o;
  pkid_acme_error type;
  REQUIRE(order(&o,
                "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"Postgres.Example.COM\"},"
                "{\"type\":\"dns\",\"value\":\"localhost\"},"
                "{\"type\":\"dns\",\"value\":\"postgres.example.com\"}],\"replaces\":\"a.b\"}",
                &type));
  CHECK(o.num_names == 2); /* lowercased, once */
  CHECK(strcmp(o.names[0], "postgres.example.com") == 0);
  CHECK(strcmp(o.names[1], "localhost") == 0);
  CHECK(strcmp(o.replaces, "a.b") == 0);
  /* What is refused, and as what. */
  CHECK(!order(&o, "{\"identifiers\":[{\"type\":\"ip\",\"value\":\"127.0.0.1\"}]}", &type));
  CHECK(type == PKID_ACME_UNSUPPORTED_IDENTIFIER);
  CHECK(!order(&o, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"*.example.com\"}]}", &type));
  CHECK(type == PKID_ACME_REJECTED_IDENTIFIER);
  CHECK(!order(&o, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"a..b\"}]}", &type));
  CHECK(type == PKID_ACME_REJECTED_IDENTIFIER);
  CHECK(!order(&o, "{\"identifiers\":[]}", &type));
  CHECK(type == PKID_ACME_MALFORMED);
  CHECK(!order(&o, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.b\"}],"
                   "\"notAfter\":\"2030-01-01T00:00:00Z\"}", &type));
  CHECK(type == PKID_ACME_MALFORMED);
  CHECK(!order(&o, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.b\"}],"
                   "\"identifiers\":[]}", &type)); /* a member twice */
  CHECK(!order(&o, "[1]", &type));
  CHECK(!order(&o, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"a\\u0000b\"}]}", &type));
}

TEST(account_payloads) {
  pkid_acme_account_req a;
  pkid_acme_error type;
  pki_err err;
  const char *ok = "{\"termsOfServiceAgreed\":true,\"contact\":[\"mailto:ops@example.com\"],"
                   "\"externalAccountBinding\":{\"protected\":\"x\",\"payload\":\"y\","
                   "\"signature\":\"z\"}}";
  REQUIRE(pkid_acme_parse_account(&a, (const uint8_t *)ok, strlen(ok), &type, &err));
  CHECK(a.terms_agreed && !a.only_existing && !a.deactivate);
  CHECK(strcmp(a.contact, "[\"mailto:ops@example.com\"]") == 0);
  CHECK(a.eab != NULL && strstr(a.eab, "\"signature\"") != NULL);
  pkid_acme_account_req_cleanup(&a);
  const char *bad[] = {
      "{\"contact\":[\"https://example.com/\"]}",
      "{\"contact\":\"mailto:a@b\"}",
      "{\"status\":\"valid\"}",
      "{\"termsOfServiceAgreed\":\"yes\"}",
      "{\"externalAccountBinding\":\"jws\"}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CHECK(!pkid_acme_parse_account(&a, (const uint8_t *)bad[i], strlen(bad[i]), &type, &err));
    CHECK(type == PKID_ACME_MALFORMED);
    CHECK(a.contact == NULL && a.eab == NULL);
  }
  const char *deact = "{\"status\":\"deactivated\"}";
  REQUIRE(pkid_acme_parse_account(&a, (const uint8_t *)deact, strlen(deact), &type, &err));
  CHECK(a.deactivate);
  pkid_acme_account_req_cleanup(&a);
}

TEST(finalize_and_revoke) {
  pkid_acme_error type;
  pki_err err;
  uint8_t *der;
  size_t len;
  int reason;
  const char *f = "{\"csr\":\"MIIB\"}";
  REQUIRE(pkid_acme_parse_finalize(&der, &len, (const uint8_t *)f, strlen(f), &type, &err));
  CHECK(len == 3 && der[0] == 0x30);
  free(der);
  const char *badcsr = "{\"csr\":\"MII+\"}"; /* standard base64, not base64url */
  CHECK(!pkid_acme_parse_finalize(&der, &len, (const uint8_t *)badcsr, strlen(badcsr), &type,
                                  &err));
  CHECK(type == PKID_ACME_BAD_CSR);
  const char *r = "{\"certificate\":\"MIIB\",\"reason\":4}";
  REQUIRE(pkid_acme_parse_revoke(&der, &len, &reason, (const uint8_t *)r, strlen(r), &type,
                                 &err));
  CHECK(reason == 4);
  free(der);
  const char *reasons[] = {"{\"certificate\":\"MIIB\",\"reason\":7}",
                           "{\"certificate\":\"MIIB\",\"reason\":8}",
                           "{\"certificate\":\"MIIB\",\"reason\":11}",
                           "{\"certificate\":\"MIIB\",\"reason\":\"4\"}"};
  for (size_t i = 0; i < 4; i++) {
    CHECK(!pkid_acme_parse_revoke(&der, &len, &reason, (const uint8_t *)reasons[i],
                                  strlen(reasons[i]), &type, &err));
    CHECK(type == PKID_ACME_BAD_REVOCATION_REASON);
  }
}

TEST(order_life) {
  pkid_acme_orders *o = pkid_acme_orders_new(4, 2);
  REQUIRE(o != NULL);
  pkid_acme_order_req req;
  pkid_acme_error type;
  REQUIRE(order(&req,
                "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.example\"},"
                "{\"type\":\"dns\",\"value\":\"b.example\"}]}",
                &type));
  pki_err err;
  int64_t t = 1000000;
  pkid_acme_order *a = pkid_acme_order_new(o, "acct1", "svc", &req, t, &err);
  REQUIRE(a != NULL);
  CHECK(a->status == PKID_ACME_PENDING && a->num_authz == 2);
  CHECK(strlen(a->authz[0].chall[0].token) == PKID_ACME_TOKEN_TEXT - 1);
  CHECK(strcmp(a->authz[0].chall[0].token, a->authz[0].chall[1].token) != 0);
  CHECK(pkid_acme_order_find(o, a->id, strlen(a->id), t) == a);
  /* Per account, at most 2 unfinished. */
  pkid_acme_order *b = pkid_acme_order_new(o, "acct1", "svc", &req, t, &err);
  REQUIRE(b != NULL);
  CHECK(pkid_acme_order_new(o, "acct1", "svc", &req, t, &err) == NULL);
  CHECK(err.code == PKI_ERR_EXHAUSTED);
  /* One valid authorization is not enough; two make the order ready. */
  a->authz[0].status = PKID_ACME_VALID;
  pkid_acme_order_update(o, a);
  CHECK(a->status == PKID_ACME_PENDING);
  a->authz[1].status = PKID_ACME_VALID;
  pkid_acme_order_update(o, a);
  CHECK(a->status == PKID_ACME_READY);
  /* An invalid authorization makes its order invalid, with its error. */
  b->authz[1].status = PKID_ACME_INVALID;
  b->authz[1].chall[0].error.set = 1;
  b->authz[1].chall[0].error.type = PKID_ACME_CONNECTION;
  pkid_acme_order_update(o, b);
  CHECK(b->status == PKID_ACME_INVALID && b->error.type == PKID_ACME_CONNECTION);
  /* A finished order frees its place in the account's limit; another
   * account's orders never took one. */
  pkid_acme_order *c = pkid_acme_order_new(o, "acct1", "svc", &req, t, &err);
  CHECK(c != NULL);
  CHECK(pkid_acme_order_new(o, "acct1", "svc", &req, t, &err) == NULL);
  CHECK(pkid_acme_order_new(o, "acct2", "svc", &req, t, &err) != NULL);
  /* Processing orders outlive their expiry; the others go. */
  a->status = PKID_ACME_PROCESSING;
  CHECK(pkid_acme_orders_sweep(o, t + PKID_ACME_PENDING_S) == 1);
  CHECK(pkid_acme_order_find(o, a->id, strlen(a->id), t + PKID_ACME_PENDING_S) == a);
  char *pem = strdup("-----BEGIN CERTIFICATE-----\n");
  pkid_acme_order_finish(o, a, pem, strlen(pem), NULL, t + 10);
  CHECK(a->status == PKID_ACME_VALID);
  CHECK(pkid_acme_order_find(o, a->id, strlen(a->id), t + 10 + PKID_ACME_VALID_S) == NULL);
  CHECK(pkid_acme_orders_sweep(o, t + 10 + PKID_ACME_VALID_S) == 0);
  CHECK(pkid_acme_order_find(o, "short", 5, t) == NULL);
  pkid_acme_orders_free(o);
}

int main(void) {
  RUN(order_names);
  RUN(account_payloads);
  RUN(finalize_and_revoke);
  RUN(order_life);
  return test_finish();
}
