/* pkcs11_test: lib/pkcs11 against a real token: SoftHSM2, with a store
 * this test makes in $TEST_TMPDIR (its own SOFTHSM2_CONF) and a token it
 * initializes with softhsm2-util.
 *
 * Each key type signs what verifies under BoringSSL; URIs that carry a
 * PIN, name no module or no object are refused; a wrong PIN, a missing
 * object and a key of another type are named; a label is never reused;
 * threads sign at once on one key; a token whose store goes away fails
 * calls with PKI_ERR_UNAVAILABLE, and recovers once it is back. */
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/pkcs11.h"
#include "tests/unit/test.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define PIN "unit-test-pin"
#define TOKEN "pkcs11:token=unit?module-path=" MODULE

static char g_store[512], g_away[512];

static const uint8_t *pin(void) { return (const uint8_t *)PIN; }

/* setup makes the store and the token once, before the cases. */
static int setup(void) {
  const char *tmp = getenv("TEST_TMPDIR");
  if (tmp == NULL) tmp = "/tmp";
  char conf[600], cmd[1400];
  snprintf(g_store, sizeof(g_store), "%s/pkcs11-test-store", tmp);
  snprintf(g_away, sizeof(g_away), "%s.away", g_store);
  snprintf(conf, sizeof(conf), "%s/pkcs11-test.conf", tmp);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s' && mkdir -p '%s'", g_store, g_away, g_store);
  if (system(cmd) != 0) return 0;
  FILE *f = fopen(conf, "w");
  if (f == NULL) return 0;
  fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
          g_store);
  fclose(f);
  setenv("SOFTHSM2_CONF", conf, 1);
  snprintf(cmd, sizeof(cmd),
           "softhsm2-util --init-token --free --label unit --so-pin so-pin-1 --pin %s "
           ">/dev/null",
           PIN);
  return system(cmd) == 0;
}

/* verifies checks |sig| over |data| under |pub| as pki_sig_sign's output. */
static int verifies(EVP_PKEY *pub, pki_key_type type, const uint8_t *sig, size_t sig_len,
                    const uint8_t *data, size_t len) {
  const EVP_MD *md = type == PKI_KEY_ECDSA_P256   ? EVP_sha256()
                     : type == PKI_KEY_ECDSA_P384 ? EVP_sha384()
                                                  : NULL;
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  int ok = EVP_DigestVerifyInit(&ctx, NULL, md, NULL, pub) &&
           EVP_DigestVerify(&ctx, sig, sig_len, data, len);
  EVP_MD_CTX_cleanup(&ctx);
  return ok;
}

static void sign_and_verify(pki_key_type type, const char *label) {
  pki_err err;
  pki_p11_key *k = pki_p11_key_generate(TOKEN, label, type, pin(), strlen(PIN), &err);
  if (k == NULL) fprintf(stderr, "  %s\n", err.msg);
  REQUIRE(k != NULL);
  CHECK(pki_p11_key_ready(k));
  static const uint8_t data[] = "a TBSCertificate, say";
  uint8_t *sig = NULL;
  size_t sig_len = 0;
  REQUIRE(pki_p11_key_sign(k, &sig, &sig_len, data, sizeof(data), &err));
  CHECK(verifies(pki_p11_key_public(k), type, sig, sig_len, data, sizeof(data)));
  CHECK(!verifies(pki_p11_key_public(k), type, sig, sig_len, data, sizeof(data) - 1));
  free(sig);
  /* Opened again by the URI the generation gave, checked against its
   * public key. */
  pki_p11_key *again = pki_p11_key_open(pki_p11_key_uri(k), type, pki_p11_key_public(k), pin(),
                                        strlen(PIN), &err);
  if (again == NULL) fprintf(stderr, "  %s\n", err.msg);
  CHECK(again != NULL);
  pki_p11_key_free(again);
  pki_p11_key_free(k);
}

TEST(p256_signs) { sign_and_verify(PKI_KEY_ECDSA_P256, "p256"); }
TEST(p384_signs) { sign_and_verify(PKI_KEY_ECDSA_P384, "p384"); }
TEST(ed25519_signs) { sign_and_verify(PKI_KEY_ED25519, "ed25519"); }

TEST(label_never_reused) {
  pki_err err;
  pki_p11_key *k = pki_p11_key_generate(TOKEN, "p256", PKI_KEY_ECDSA_P256, pin(), strlen(PIN),
                                        &err);
  CHECK(k == NULL);
  CHECK(err.code == PKI_ERR_EXISTS);
  pki_p11_key_free(k);
}

TEST(uris_refused) {
  static const struct {
    const char *uri;
    const char *words;
  } kCases[] = {
      {"pkcs11:token=unit;object=p256;pin-value=" PIN "?module-path=" MODULE, "carries a PIN"},
      {"pkcs11:token=unit;object=p256?module-path=" MODULE "&pin-source=file:/x", "carries a PIN"},
      {"pkcs11:token=unit;object=p256", "names no module"},
      {"pkcs11:token=unit?module-path=" MODULE, "names no object"},
      {"pkcs11:token=unit;object=p256;type=public?module-path=" MODULE, "not a private key"},
      {"https://example.com/", "not a PKCS#11 URI"},
      {"pkcs11:token=unit;object=p256?module-path=/nonexistent/module.so", "not found"},
      {"pkcs11:token=nope;object=p256?module-path=" MODULE, "no token matches"},
      {"pkcs11:token=unit;object=nope?module-path=" MODULE, "object missing"},
  };
  EVP_PKEY *any = EVP_PKEY_new();
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    pki_err err;
    pki_p11_key *k = pki_p11_key_open(kCases[i].uri, PKI_KEY_ECDSA_P256, any, pin(),
                                      strlen(PIN), &err);
    CHECK(k == NULL);
    if (k == NULL && strstr(err.msg, kCases[i].words) == NULL) {
      fprintf(stderr, "  %s: '%s' lacks '%s'\n", kCases[i].uri, err.msg, kCases[i].words);
      CHECK(0);
    }
    pki_p11_key_free(k);
  }
  EVP_PKEY_free(any);
}

TEST(wrong_pin_type_and_key_named) {
  pki_err err;
  pki_p11_key *a = pki_p11_key_generate(TOKEN, "checks", PKI_KEY_ECDSA_P256, pin(), strlen(PIN),
                                        &err);
  pki_p11_key *b = pki_p11_key_generate(TOKEN, "other", PKI_KEY_ECDSA_P256, pin(), strlen(PIN),
                                        &err);
  REQUIRE(a != NULL && b != NULL);
  const char *uri = pki_p11_key_uri(a);
  pki_p11_key *k = pki_p11_key_open(uri, PKI_KEY_ECDSA_P256, pki_p11_key_public(a),
                                    (const uint8_t *)"wrong", 5, &err);
  CHECK(k == NULL && err.code == PKI_ERR_AUTH && strstr(err.msg, "wrong PIN") != NULL);
  k = pki_p11_key_open(uri, PKI_KEY_ED25519, pki_p11_key_public(a), pin(), strlen(PIN), &err);
  CHECK(k == NULL && err.code == PKI_ERR_UNSUPPORTED &&
        strstr(err.msg, "holds an ecdsa-p256 key, not the ed25519 key") != NULL);
  /* The object is there but is not the certificate's key. */
  k = pki_p11_key_open(uri, PKI_KEY_ECDSA_P256, pki_p11_key_public(b), pin(), strlen(PIN), &err);
  CHECK(k == NULL && strstr(err.msg, "does not match the CA certificate") != NULL);
  /* A key pki_p11_key_destroy removed is gone from the token. */
  char *copy = strdup(pki_p11_key_uri(b));
  EVP_PKEY *pub = pki_p11_key_public(b);
  EVP_PKEY_up_ref(pub);
  CHECK(pki_p11_key_destroy(b, &err));
  k = pki_p11_key_open(copy, PKI_KEY_ECDSA_P256, pub, pin(), strlen(PIN), &err);
  CHECK(k == NULL && strstr(err.msg, "object missing") != NULL);
  EVP_PKEY_free(pub);
  free(copy);
  pki_p11_key_free(a);
}

/* Threads that sign at once on one key, each verifying what it got. */
typedef struct signer_arg {
  pki_p11_key *key;
  int n, ok, unavailable, other;
} signer_arg;

static void *sign_loop(void *p) {
  signer_arg *a = p;
  static const uint8_t data[] = "signed by many threads";
  for (int i = 0; i < a->n; i++) {
    uint8_t *sig = NULL;
    size_t len = 0;
    pki_err err;
    if (pki_p11_key_sign(a->key, &sig, &len, data, sizeof(data), &err)) {
      a->ok += verifies(pki_p11_key_public(a->key), PKI_KEY_ECDSA_P256, sig, len, data,
                        sizeof(data));
    } else if (err.code == PKI_ERR_UNAVAILABLE) {
      a->unavailable++;
    } else {
      a->other++;
    }
    free(sig);
  }
  return NULL;
}

static void run_signers(pki_p11_key *k, signer_arg *args, int threads, int n) {
  pthread_t t[8];
  for (int i = 0; i < threads; i++) {
    args[i] = (signer_arg){.key = k, .n = n};
    pthread_create(&t[i], NULL, sign_loop, &args[i]);
  }
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
}

TEST(threads_sign_at_once) {
  pki_err err;
  pki_p11_key *k = pki_p11_key_generate(TOKEN, "threads", PKI_KEY_ECDSA_P256, pin(),
                                        strlen(PIN), &err);
  REQUIRE(k != NULL);
  signer_arg args[4];
  run_signers(k, args, 4, 200);
  for (int i = 0; i < 4; i++) CHECK(args[i].ok == 200);
  pki_p11_key_free(k);
}

TEST(store_away_then_back) {
  pki_err err;
  pki_p11_key *k = pki_p11_key_generate(TOKEN, "away", PKI_KEY_ECDSA_P256, pin(), strlen(PIN),
                                        &err);
  REQUIRE(k != NULL);
  REQUIRE(rename(g_store, g_away) == 0);
  signer_arg args[4];
  run_signers(k, args, 4, 50);
  int ok = 0, unavailable = 0, other = 0;
  for (int i = 0; i < 4; i++) {
    ok += args[i].ok;
    unavailable += args[i].unavailable;
    other += args[i].other;
  }
  /* The first failure marks the module broken: every later call fails at
   * once, without touching the token. */
  CHECK(ok == 0);
  CHECK(unavailable == 200);
  CHECK(other == 0);
  CHECK(!pki_p11_key_ready(k));
  CHECK(!pki_p11_key_recover(k, &err));
  CHECK(err.code == PKI_ERR_UNAVAILABLE);
  REQUIRE(rename(g_away, g_store) == 0);
  CHECK(pki_p11_key_recover(k, &err));
  CHECK(pki_p11_key_ready(k));
  run_signers(k, args, 4, 50);
  for (int i = 0; i < 4; i++) CHECK(args[i].ok == 50);
  pki_p11_key_free(k);
}

int main(void) {
  if (!setup()) {
    fprintf(stderr, "pkcs11_test: cannot make the SoftHSM2 token (is softhsm2 installed?)\n");
    return 1;
  }
  RUN(p256_signs);
  RUN(p384_signs);
  RUN(ed25519_signs);
  RUN(label_never_reused);
  RUN(uris_refused);
  RUN(wrong_pin_type_and_key_named);
  RUN(threads_sign_at_once);
  RUN(store_away_then_back);
  return test_finish();
}
