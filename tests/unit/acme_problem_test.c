/* acme_problem_test: server/acme/problem: each type's URN and status (RFC
 * 8555 6.7), and a problem document that jansson reads back whole, escapes
 * and all, even from a detail that is not UTF-8. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "server/acme/problem.h"
#include "tests/unit/test.h"

TEST(types_and_statuses) {
  CHECK(strcmp(pkid_acme_error_type(PKID_ACME_BAD_NONCE), "urn:ietf:params:acme:error:badNonce") ==
        0);
  CHECK(pkid_acme_error_status(PKID_ACME_BAD_NONCE) == 400);
  CHECK(pkid_acme_error_status(PKID_ACME_UNAUTHORIZED) == 403);
  CHECK(pkid_acme_error_status(PKID_ACME_RATE_LIMITED) == 429);
  CHECK(pkid_acme_error_status(PKID_ACME_SERVER_INTERNAL) == 500);
  for (int e = 0; e < PKID_ACME_NUM_ERRORS; e++) {
    const char *t = pkid_acme_error_type((pkid_acme_error)e);
    CHECK(t != NULL && strncmp(t, "urn:ietf:params:acme:error:", 27) == 0 && strlen(t) > 27);
  }
  /* Out of range: serverInternal, not a crash. */
  CHECK(strcmp(pkid_acme_error_type(PKID_ACME_NUM_ERRORS),
               "urn:ietf:params:acme:error:serverInternal") == 0);
}

static void check_doc(pkid_acme_error e, const char *detail, const char *want_detail) {
  size_t len = 0;
  char *text = pkid_acme_problem(e, detail, &len);
  REQUIRE(text != NULL && len == strlen(text));
  json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  REQUIRE(doc != NULL);
  CHECK(strcmp(json_string_value(json_object_get(doc, "type")), pkid_acme_error_type(e)) == 0);
  CHECK(strcmp(json_string_value(json_object_get(doc, "detail")), want_detail) == 0);
  CHECK(json_integer_value(json_object_get(doc, "status")) == pkid_acme_error_status(e));
  /* badSignatureAlgorithm lists what is accepted (RFC 8555 6.2). */
  json_t *algs = json_object_get(doc, "algorithms");
  if (e == PKID_ACME_BAD_SIGNATURE_ALGORITHM) {
    CHECK(json_array_size(algs) == 4);
    CHECK(strcmp(json_string_value(json_array_get(algs, 0)), "ES256") == 0);
    CHECK(json_object_size(doc) == 4);
  } else {
    CHECK(algs == NULL && json_object_size(doc) == 3);
  }
  json_decref(doc);
  free(text);
}

TEST(documents) {
  check_doc(PKID_ACME_REJECTED_IDENTIFIER, "\"evil.example\" is not a name of service postgres",
            "\"evil.example\" is not a name of service postgres");
  check_doc(PKID_ACME_MALFORMED, "line\nbreak\\ and \x01 control", "line\nbreak\\ and \x01 control");
  check_doc(PKID_ACME_MALFORMED, "caf\xc3\xa9", "caf\xc3\xa9");       /* UTF-8 kept */
  check_doc(PKID_ACME_MALFORMED, "bad \xff\xfe bytes", "bad ?? bytes"); /* not UTF-8 */
  check_doc(PKID_ACME_BAD_NONCE, NULL, "");
  check_doc(PKID_ACME_BAD_SIGNATURE_ALGORITHM, "HS256", "HS256");
}

int main(void) {
  RUN(types_and_statuses);
  RUN(documents);
  return test_finish();
}
