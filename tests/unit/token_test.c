/* token_test: bootstrap tokens: made, checked, refused. */
#include <string.h>

#include "lib/token.h"
#include "tests/unit/test.h"

static const uint8_t kKey[PKI_TOKEN_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const uint8_t kOtherKey[PKI_TOKEN_KEY_LEN] = {9, 9, 9};

TEST(round_trip) {
  char text[PKI_TOKEN_MAX_TEXT];
  pki_err err;
  REQUIRE(pki_token_make(text, sizeof(text), kKey, "vault", 2000000000, &err));
  CHECK(strncmp(text, "pkid-bt1.", 9) == 0);
  pki_token t;
  REQUIRE(pki_token_check(&t, text, strlen(text), kKey, 1900000000, &err));
  CHECK(strcmp(t.service, "vault") == 0 && t.expires == 2000000000);
  /* Two tokens for the same service differ, and so do their ids. */
  char text2[PKI_TOKEN_MAX_TEXT];
  pki_token t2;
  REQUIRE(pki_token_make(text2, sizeof(text2), kKey, "vault", 2000000000, &err));
  REQUIRE(pki_token_check(&t2, text2, strlen(text2), kKey, 1900000000, &err));
  CHECK(strcmp(text, text2) != 0 && memcmp(t.id, t2.id, sizeof(t.id)) != 0);
}

TEST(refusals) {
  char text[PKI_TOKEN_MAX_TEXT];
  pki_err err;
  pki_token t;
  REQUIRE(pki_token_make(text, sizeof(text), kKey, "redis", 2000000000, &err));
  size_t len = strlen(text);
  CHECK(!pki_token_check(&t, text, len, kOtherKey, 1900000000, &err) &&
        err.code == PKI_ERR_AUTH);
  CHECK(!pki_token_check(&t, text, len, kKey, 2000000000, &err) && err.code == PKI_ERR_AUTH &&
        strstr(err.msg, "expired") != NULL);
  /* Every single-character change is refused. */
  int all_refused = 1;
  for (size_t i = 0; i < len; i++) {
    char copy[PKI_TOKEN_MAX_TEXT];
    memcpy(copy, text, len + 1);
    copy[i] = copy[i] == 'A' ? 'B' : 'A';
    if (pki_token_check(&t, copy, len, kKey, 1900000000, &err)) all_refused = 0;
  }
  CHECK(all_refused);
  /* Every truncation too. */
  for (size_t n = 0; n < len; n++) {
    if (pki_token_check(&t, text, n, kKey, 1900000000, &err)) all_refused = 0;
  }
  CHECK(all_refused);
  CHECK(!pki_token_check(&t, "garbage", 7, kKey, 0, &err) && err.code == PKI_ERR_INVALID);
  CHECK(!pki_token_make(text, sizeof(text), kKey, "", 1, &err));
}

int main(void) {
  RUN(round_trip);
  RUN(refusals);
  return test_finish();
}
