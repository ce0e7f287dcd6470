/* checkpoint_test: lib/checkpoint, signed heads of a journal: the text
 * round-trips, the signature binds every field and the key, the one
 * canonical form is the only one read, and pki_journal_verify_dir_at finds
 * the chain hash a checkpoint names in a real journal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/curve25519.h>
#include <openssl/evp.h>

#include "lib/checkpoint.h"
#include "lib/journal.h"
#include "tests/unit/test.h"

static EVP_PKEY *key_from_seed(uint8_t seed) {
  uint8_t raw[32];
  memset(raw, seed, sizeof(raw));
  return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw, sizeof(raw));
}

static EVP_PKEY *public_of(EVP_PKEY *key) {
  uint8_t pub[32];
  size_t len = sizeof(pub);
  EVP_PKEY_get_raw_public_key(key, pub, &len);
  return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, len);
}

/* sample signs a checkpoint of seq 1204 with |key|; the text is malloc'd. */
static char *sample(EVP_PKEY *key, size_t *len) {
  pki_checkpoint cp;
  memset(&cp, 0, sizeof(cp));
  snprintf(cp.origin, sizeof(cp.origin), "pkid node 1");
  cp.seq = 1204;
  for (int i = 0; i < PKI_JOURNAL_HASH_LEN; i++) cp.chain[i] = (uint8_t)(i * 7);
  cp.time_ms = 1796224000123;
  char *text = NULL;
  pki_err err;
  if (!pki_checkpoint_sign(&text, len, &cp, key, &err)) return NULL;
  return text;
}

TEST(signs_parses_and_verifies) {
  EVP_PKEY *key = key_from_seed(1), *pub = public_of(key);
  size_t len;
  char *text = sample(key, &len);
  REQUIRE(text != NULL);
  CHECK(strncmp(text, "pkid journal checkpoint\norigin pkid node 1\nseq 1204\nchain 00070e15",
                66) == 0);
  CHECK(strstr(text, "\ntime 1796224000123\n\n\xe2\x80\x94 pkid-audit ") != NULL);
  pki_checkpoint cp;
  pki_err err;
  REQUIRE(pki_checkpoint_parse(&cp, (const uint8_t *)text, len, &err));
  CHECK(cp.seq == 1204 && cp.time_ms == 1796224000123 && strcmp(cp.origin, "pkid node 1") == 0);
  CHECK(cp.chain[1] == 7 && cp.chain[31] == (uint8_t)(31 * 7));
  CHECK(pki_checkpoint_verify(&cp, pub, &err));
  free(text);
  EVP_PKEY_free(pub);
  EVP_PKEY_free(key);
}

TEST(any_change_or_another_key_fails) {
  EVP_PKEY *key = key_from_seed(1), *other = key_from_seed(2);
  EVP_PKEY *pub = public_of(key), *other_pub = public_of(other);
  size_t len;
  char *text = sample(key, &len);
  REQUIRE(text != NULL);
  pki_checkpoint cp;
  pki_err err;
  REQUIRE(pki_checkpoint_parse(&cp, (const uint8_t *)text, len, &err));
  CHECK(!pki_checkpoint_verify(&cp, other_pub, &err) && err.code == PKI_ERR_AUTH);
  CHECK(strstr(err.msg, "another key") != NULL);
  /* A later seq under the same signature: parses, does not verify. */
  char *seq = strstr(text, "seq 1204");
  REQUIRE(seq != NULL);
  seq[7] = '5';
  REQUIRE(pki_checkpoint_parse(&cp, (const uint8_t *)text, len, &err));
  CHECK(!pki_checkpoint_verify(&cp, pub, &err) && err.code == PKI_ERR_AUTH);
  CHECK(strstr(err.msg, "altered") != NULL);
  free(text);
  EVP_PKEY_free(pub);
  EVP_PKEY_free(other_pub);
  EVP_PKEY_free(key);
  EVP_PKEY_free(other);
}

/* refused: |text| with |from| replaced by |to| does not parse. */
static int refused(const char *text, const char *from, const char *to) {
  const char *at = strstr(text, from);
  if (at == NULL) return 0;
  char buf[2048];
  snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  pki_checkpoint cp;
  pki_err err;
  return !pki_checkpoint_parse(&cp, (const uint8_t *)buf, strlen(buf), &err) &&
         err.code == PKI_ERR_INVALID;
}

TEST(only_the_canonical_form_is_read) {
  EVP_PKEY *key = key_from_seed(1);
  size_t len;
  char *text = sample(key, &len);
  REQUIRE(text != NULL);
  CHECK(refused(text, "pkid journal checkpoint", "pkid journal checkpoint v2"));
  CHECK(refused(text, "seq 1204", "seq 01204"));
  CHECK(refused(text, "seq 1204", "seq 0"));
  CHECK(refused(text, "seq 1204", "seq -1"));
  CHECK(refused(text, "seq 1204", "seq 99999999999999999999"));
  CHECK(refused(text, "chain 00070e", "chain 00070E"));
  CHECK(refused(text, "chain 00070e", "chain 0007"));
  CHECK(refused(text, "origin pkid", "origin \tpkid"));
  CHECK(refused(text, "\n\n\xe2\x80\x94", "\n\xe2\x80\x94"));            /* no blank line */
  CHECK(refused(text, "\ntime", "\r\ntime"));                           /* CRLF */
  CHECK(refused(text, "\xe2\x80\x94 pkid-audit ", "- pkid-audit "));   /* not an em dash */
  CHECK(refused(text, "\xe2\x80\x94 pkid-audit ", "\xe2\x80\x94 pkid-audit !")); /* base64 */
  /* Nothing after the signature line, and the text whole. */
  char longer[2048];
  snprintf(longer, sizeof(longer), "%sextra\n", text);
  pki_checkpoint cp;
  pki_err err;
  CHECK(!pki_checkpoint_parse(&cp, (const uint8_t *)longer, strlen(longer), &err));
  CHECK(!pki_checkpoint_parse(&cp, (const uint8_t *)text, len - 1, &err));
  free(text);
  EVP_PKEY_free(key);
}

TEST(signing_needs_an_ed25519_key_and_a_record) {
  EVP_PKEY *ec = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
  REQUIRE(ctx != NULL && EVP_PKEY_keygen_init(ctx) &&
          EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1) &&
          EVP_PKEY_keygen(ctx, &ec));
  EVP_PKEY_CTX_free(ctx);
  pki_checkpoint cp;
  memset(&cp, 0, sizeof(cp));
  snprintf(cp.origin, sizeof(cp.origin), "pkid node 1");
  cp.seq = 1;
  char *text = NULL;
  size_t len;
  pki_err err;
  CHECK(!pki_checkpoint_sign(&text, &len, &cp, ec, &err) && text == NULL);
  EVP_PKEY *key = key_from_seed(3);
  cp.seq = 0;
  CHECK(!pki_checkpoint_sign(&text, &len, &cp, key, &err));
  EVP_PKEY_free(key);
  EVP_PKEY_free(ec);
}

/* A real journal: the chain hash after each record is what
 * pki_journal_verify_dir_at reports for it. */
TEST(verify_dir_at_finds_the_chain_of_a_record) {
  char dir[512];
  const char *tmp = getenv("TEST_TMPDIR");
  snprintf(dir, sizeof(dir), "%s/checkpoint_journal", tmp != NULL ? tmp : "/tmp");
  pki_err err;
  pki_journal *j = pki_journal_open(dir, NULL, NULL, NULL, &err);
  REQUIRE(j != NULL);
  uint8_t after3[PKI_JOURNAL_HASH_LEN];
  for (int i = 1; i <= 5; i++) {
    uint8_t payload[4] = {(uint8_t)i};
    pki_journal_entry e = {.type = 9, .time = 1000 + (uint64_t)i, .payload = payload, .len = 4};
    REQUIRE(pki_journal_append(j, &e, 1, &err));
    if (i == 3) pki_journal_last_hash(j, after3);
  }
  pki_journal_close(j);
  pki_journal_verify_result *res = calloc(1, sizeof(*res));
  REQUIRE(res != NULL);
  CHECK(pki_journal_verify_dir_at(dir, 3, res, &err));
  CHECK(res->mark_found && memcmp(res->mark_chain, after3, PKI_JOURNAL_HASH_LEN) == 0);
  CHECK(pki_journal_verify_dir_at(dir, 6, res, &err) && !res->mark_found && res->last_seq == 5);
  free(res);
}

int main(void) {
  RUN(signs_parses_and_verifies);
  RUN(any_change_or_another_key_fails);
  RUN(only_the_canonical_form_is_read);
  RUN(signing_needs_an_ed25519_key_and_a_record);
  RUN(verify_dir_at_finds_the_chain_of_a_record);
  return test_finish();
}
