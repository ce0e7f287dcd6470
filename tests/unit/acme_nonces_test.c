/* acme_nonces_test: server/acme/nonces: each nonce once (RFC 8555 6.5),
 * none that was not made here, none older than the window, and another
 * store's (a restart, another node) refused. */
#include <string.h>

#include "server/acme/nonces.h"
#include "tests/unit/test.h"

static int use(pkid_acme_nonces *n, const char *text) {
  return pkid_acme_nonce_use(n, text, strlen(text));
}

TEST(each_nonce_once) {
  pkid_acme_nonces *n = pkid_acme_nonces_new(128);
  REQUIRE(n != NULL);
  char a[PKID_ACME_NONCE_TEXT], b[PKID_ACME_NONCE_TEXT];
  pkid_acme_nonce_make(n, a);
  pkid_acme_nonce_make(n, b);
  CHECK(strlen(a) == PKID_ACME_NONCE_TEXT - 1);
  CHECK(strcmp(a, b) != 0);
  /* base64url only (RFC 8555 6.5.1). */
  CHECK(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
        strlen(a));
  CHECK(use(n, b)); /* in any order */
  CHECK(use(n, a));
  CHECK(!use(n, a)); /* replayed */
  CHECK(!use(n, b));
  pkid_acme_nonces_free(n);
}

TEST(not_made_here) {
  pkid_acme_nonces *n = pkid_acme_nonces_new(128), *other = pkid_acme_nonces_new(128);
  char a[PKID_ACME_NONCE_TEXT];
  pkid_acme_nonce_make(other, a);
  CHECK(!use(n, a)); /* another node's, or from before a restart */
  pkid_acme_nonce_make(n, a);
  char altered[PKID_ACME_NONCE_TEXT];
  memcpy(altered, a, sizeof(altered));
  altered[3] = altered[3] == 'A' ? 'B' : 'A';
  CHECK(!use(n, altered));
  CHECK(!use(n, ""));
  CHECK(!use(n, "AAAAAAAAAAAAAAAAAAAAAA"));
  CHECK(!pkid_acme_nonce_use(n, a, strlen(a) - 1));
  char padded[PKID_ACME_NONCE_TEXT + 2];
  memcpy(padded, a, strlen(a));
  memcpy(padded + strlen(a), "==", 3);
  CHECK(!use(n, padded));
  CHECK(use(n, a)); /* the real one still is good */
  pkid_acme_nonces_free(n);
  pkid_acme_nonces_free(other);
}

TEST(older_than_the_window) {
  pkid_acme_nonces *n = pkid_acme_nonces_new(64);
  char first[PKID_ACME_NONCE_TEXT], last[PKID_ACME_NONCE_TEXT], tmp[PKID_ACME_NONCE_TEXT];
  pkid_acme_nonce_make(n, first);
  for (int i = 0; i < 63; i++) pkid_acme_nonce_make(n, tmp);
  CHECK(use(n, tmp)); /* the 64th: within */
  pkid_acme_nonce_make(n, last); /* the 65th pushes the first out */
  CHECK(!use(n, first));
  CHECK(use(n, last));
  /* A used nonce's bit, taken over by a newer one, does not make the newer
   * one used: 64 more after |tmp| land on its bit again. */
  for (int i = 0; i < 63; i++) pkid_acme_nonce_make(n, first);
  CHECK(use(n, first));
  pkid_acme_nonces_free(n);
}

TEST(many) {
  pkid_acme_nonces *n = pkid_acme_nonces_new(4096);
  static char all[4096][PKID_ACME_NONCE_TEXT];
  for (int i = 0; i < 4096; i++) pkid_acme_nonce_make(n, all[i]);
  int ok = 1;
  for (int i = 4095; i >= 0; i--) ok &= use(n, all[i]);
  for (int i = 0; i < 4096; i++) ok &= !use(n, all[i]);
  CHECK(ok);
  pkid_acme_nonces_free(n);
}

/* What a server does: each response makes the next nonce after the
 * request used its own. Making one must not clear another's "used" bit
 * (it once did, by reading the bit before it was computed). */
TEST(used_stays_used_as_more_are_made) {
  pkid_acme_nonces *n = pkid_acme_nonces_new(64);
  REQUIRE(n != NULL);
  char cur[PKID_ACME_NONCE_TEXT], used[200][PKID_ACME_NONCE_TEXT];
  pkid_acme_nonce_make(n, cur);
  int ok = 1;
  for (int i = 0; i < 200; i++) {
    ok &= use(n, cur);
    memcpy(used[i], cur, sizeof(cur));
    pkid_acme_nonce_make(n, cur);
    for (int k = i; k >= 0 && k > i - 50; k--) ok &= !use(n, used[k]);
  }
  CHECK(ok);
  pkid_acme_nonces_free(n);
}

int main(void) {
  RUN(each_nonce_once);
  RUN(used_stays_used_as_more_are_made);
  RUN(not_made_here);
  RUN(older_than_the_window);
  RUN(many);
  return test_finish();
}
