#include "lib/key.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/dsa.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "tests/unit/test.h"

/* Tests seal with the cheapest cost opening accepts, to stay fast. */
#define TEST_LOG2N 10

static const uint8_t kPass[] = "correct horse battery staple";
#define PASS_LEN (sizeof(kPass) - 1)

static char tmp_root[PATH_MAX];

static void tmp_path(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/%s", tmp_root, name);
}

/* same_private_key compares two keys by their PKCS#8 encodings. */
static int same_private_key(const EVP_PKEY *a, const EVP_PKEY *b) {
  CBB ca, cb;
  uint8_t *da = NULL, *db = NULL;
  size_t la = 0, lb = 0;
  int ok = CBB_init(&ca, 256) && EVP_marshal_private_key(&ca, a) &&
           CBB_finish(&ca, &da, &la);
  if (!ok) CBB_cleanup(&ca);
  int ok2 = CBB_init(&cb, 256) && EVP_marshal_private_key(&cb, b) &&
            CBB_finish(&cb, &db, &lb);
  if (!ok2) CBB_cleanup(&cb);
  int same = ok && ok2 && la == lb && memcmp(da, db, la) == 0;
  OPENSSL_free(da);
  OPENSSL_free(db);
  return same;
}

/* pem_to_der and der_to_pem let tests alter the DER inside a sealed key. */
static int pem_to_der(uint8_t **der, long *der_len, const char *pem,
                      size_t pem_len) {
  BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
  char *name = NULL, *header = NULL;
  int ok = bio != NULL && PEM_read_bio(bio, &name, &header, der, der_len);
  OPENSSL_free(name);
  OPENSSL_free(header);
  BIO_free(bio);
  return ok;
}

static char *der_to_pem(const char *name, const uint8_t *der, size_t der_len,
                        size_t *out_len) {
  BIO *bio = BIO_new(BIO_s_mem());
  if (bio == NULL) return NULL;
  char *out = NULL;
  if (PEM_write_bio(bio, name, "", der, (long)der_len) > 0) {
    const uint8_t *contents;
    size_t len;
    if (BIO_mem_contents(bio, &contents, &len)) {
      out = malloc(len + 1);
      if (out != NULL) {
        memcpy(out, contents, len);
        out[len] = '\0';
        *out_len = len;
      }
    }
  }
  BIO_free(bio);
  return out;
}

/* open_der wraps |der| as a sealed key and tries to open it. */
static EVP_PKEY *open_der(const uint8_t *der, size_t der_len, pki_err *err) {
  size_t pem_len = 0;
  char *pem = der_to_pem("PKID SEALED PRIVATE KEY", der, der_len, &pem_len);
  if (pem == NULL) return NULL;
  EVP_PKEY *key = pki_key_open(pem, pem_len, kPass, PASS_LEN, err);
  free(pem);
  return key;
}

TEST(type_parse_and_name) {
  static const char *kNames[] = {"ecdsa-p256", "ecdsa-p384", "ed25519",
                                 "rsa-2048",   "rsa-3072",   "rsa-4096"};
  pki_err err = {0};
  for (size_t i = 0; i < sizeof(kNames) / sizeof(kNames[0]); i++) {
    pki_key_type type;
    unsigned bits;
    CHECK(pki_key_type_parse(&type, &bits, kNames[i], &err));
    CHECK(strcmp(pki_key_type_name(type, bits), kNames[i]) == 0);
  }
  pki_key_type type;
  unsigned bits;
  CHECK(pki_key_type_parse(&type, &bits, "ecdsa-p384", &err));
  CHECK(type == PKI_KEY_ECDSA_P384 && bits == 384);
  CHECK(pki_key_type_parse(&type, &bits, "ed25519", &err));
  CHECK(type == PKI_KEY_ED25519 && bits == 256);
  CHECK(!pki_key_type_parse(&type, &bits, "rsa-1024", &err));
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  CHECK(strstr(err.msg, "rsa-1024") != NULL);
  CHECK(!pki_key_type_parse(&type, &bits, "ECDSA-P256", &err));
  CHECK(!pki_key_type_parse(&type, &bits, "", &err));
  CHECK(strcmp(pki_key_type_name(PKI_KEY_RSA, 2304), "rsa") == 0);
  CHECK(strcmp(pki_key_type_name(PKI_KEY_NONE, 0), "none") == 0);
}

TEST(can_sign_certs) {
  CHECK(pki_key_type_can_sign_certs(PKI_KEY_ECDSA_P256));
  CHECK(pki_key_type_can_sign_certs(PKI_KEY_ECDSA_P384));
  CHECK(pki_key_type_can_sign_certs(PKI_KEY_ED25519));
  CHECK(!pki_key_type_can_sign_certs(PKI_KEY_RSA));
  CHECK(!pki_key_type_can_sign_certs(PKI_KEY_NONE));
}

TEST(generate_and_describe_every_type) {
  static const struct {
    pki_key_type type;
    unsigned bits;
  } kCases[] = {
      {PKI_KEY_ECDSA_P256, 256}, {PKI_KEY_ECDSA_P384, 384},
      {PKI_KEY_ED25519, 256},    {PKI_KEY_RSA, 2048},
      {PKI_KEY_RSA, 3072},       {PKI_KEY_RSA, 4096},
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    pki_err err = {0};
    EVP_PKEY *key = pki_key_generate(kCases[i].type, kCases[i].bits, &err);
    CHECK(key != NULL);
    if (key == NULL) continue;
    pki_key_type type;
    unsigned bits;
    CHECK(pki_key_describe(&type, &bits, key, &err));
    CHECK(type == kCases[i].type && bits == kCases[i].bits);
    EVP_PKEY_free(key);
  }
}

TEST(generate_refuses_other_sizes) {
  pki_err err = {0};
  CHECK(pki_key_generate(PKI_KEY_RSA, 1024, &err) == NULL);
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  CHECK(pki_key_generate(PKI_KEY_RSA, 2050, &err) == NULL);
  CHECK(pki_key_generate(PKI_KEY_NONE, 0, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
}

static EVP_PKEY *ec_key_on(int nid) {
  EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
  EVP_PKEY *key = EVP_PKEY_new();
  if (ec == NULL || key == NULL || !EC_KEY_generate_key(ec) ||
      !EVP_PKEY_assign_EC_KEY(key, ec)) {
    EC_KEY_free(ec);
    EVP_PKEY_free(key);
    return NULL;
  }
  return key;
}

TEST(describe_refuses_other_curves) {
  int nids[] = {NID_secp521r1, NID_secp224r1};
  const char *names[] = {"P-521", "P-224"};
  for (int i = 0; i < 2; i++) {
    EVP_PKEY *key = ec_key_on(nids[i]);
    REQUIRE(key != NULL);
    pki_err err = {0};
    pki_key_type type;
    unsigned bits;
    CHECK(!pki_key_describe(&type, &bits, key, &err));
    CHECK(err.code == PKI_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, names[i]) != NULL);
    EVP_PKEY_free(key);
  }
}

TEST(describe_refuses_small_rsa) {
  RSA *rsa = RSA_new();
  BIGNUM *e = BN_new();
  EVP_PKEY *key = EVP_PKEY_new();
  REQUIRE(rsa != NULL && e != NULL && key != NULL);
  CHECK(BN_set_word(e, RSA_F4));
  CHECK(RSA_generate_key_ex(rsa, 1024, e, NULL));
  CHECK(EVP_PKEY_assign_RSA(key, rsa));
  BN_free(e);
  pki_err err = {0};
  pki_key_type type;
  unsigned bits;
  CHECK(!pki_key_describe(&type, &bits, key, &err));
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  CHECK(strstr(err.msg, "RSA key of 1024 bits") != NULL);
  EVP_PKEY_free(key);
}

/* rsa_public_of_bits makes an RSA public key with a modulus of |bits| bits.
 * Generating a real 8192-bit key takes far too long for a unit test, and
 * pki_key_describe only looks at the size. */
static EVP_PKEY *rsa_public_of_bits(int bits) {
  RSA *rsa = RSA_new();
  BIGNUM *n = BN_new(), *e = BN_new();
  EVP_PKEY *key = EVP_PKEY_new();
  if (rsa == NULL || n == NULL || e == NULL || key == NULL ||
      !BN_set_bit(n, bits - 1) || !BN_set_bit(n, 0) ||
      !BN_set_word(e, RSA_F4) || !RSA_set0_key(rsa, n, e, NULL)) {
    RSA_free(rsa);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(key);
    return NULL;
  }
  if (!EVP_PKEY_assign_RSA(key, rsa)) {
    RSA_free(rsa);
    EVP_PKEY_free(key);
    return NULL;
  }
  return key;
}

TEST(describe_rsa_bounds) {
  static const struct {
    int bits;
    int ok;
  } kCases[] = {{2047, 0}, {2048, 1}, {2304, 1}, {4096, 1}, {4097, 0},
                {8192, 0}};
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    EVP_PKEY *key = rsa_public_of_bits(kCases[i].bits);
    REQUIRE(key != NULL);
    pki_err err = {0};
    pki_key_type type;
    unsigned bits;
    int ok = pki_key_describe(&type, &bits, key, &err);
    CHECK(ok == kCases[i].ok);
    if (ok) CHECK(type == PKI_KEY_RSA && bits == (unsigned)kCases[i].bits);
    if (!ok) {
      char want[64];
      snprintf(want, sizeof(want), "RSA key of %d bits", kCases[i].bits);
      CHECK(err.code == PKI_ERR_UNSUPPORTED);
      CHECK(strstr(err.msg, want) != NULL);
    }
    EVP_PKEY_free(key);
  }
}

TEST(describe_refuses_other_algorithms) {
  EVP_PKEY *key = EVP_PKEY_new();
  DSA *dsa = DSA_new();
  REQUIRE(key != NULL && dsa != NULL);
  REQUIRE(EVP_PKEY_assign_DSA(key, dsa));
  pki_err err = {0};
  pki_key_type type;
  unsigned bits;
  CHECK(!pki_key_describe(&type, &bits, key, &err));
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  CHECK(strstr(err.msg, "DSA") != NULL);
  EVP_PKEY_free(key);

  EVP_PKEY *x = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
  REQUIRE(ctx != NULL);
  CHECK(EVP_PKEY_keygen_init(ctx) && EVP_PKEY_keygen(ctx, &x));
  EVP_PKEY_CTX_free(ctx);
  REQUIRE(x != NULL);
  CHECK(!pki_key_describe(&type, &bits, x, &err));
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  CHECK(strstr(err.msg, "X25519") != NULL);
  EVP_PKEY_free(x);
}

TEST(pem_round_trip_every_type) {
  static const struct {
    pki_key_type type;
    unsigned bits;
  } kCases[] = {{PKI_KEY_ECDSA_P256, 256},
                {PKI_KEY_ECDSA_P384, 384},
                {PKI_KEY_ED25519, 256},
                {PKI_KEY_RSA, 2048}};
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    pki_err err = {0};
    EVP_PKEY *key = pki_key_generate(kCases[i].type, kCases[i].bits, &err);
    REQUIRE(key != NULL);
    char path[PATH_MAX + 32];
    tmp_path(path, sizeof(path), "plain.pem");
    umask(022);
    CHECK(pki_key_write_pem(path, key, &err));
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
    EVP_PKEY *back = pki_key_read_pem(path, &err);
    CHECK(back != NULL);
    if (back != NULL) {
      CHECK(same_private_key(key, back));
      CHECK(EVP_PKEY_cmp(key, back) == 1);
    }
    /* The file is PKCS#8 PEM. */
    FILE *f = fopen(path, "r");
    char line[80] = {0};
    CHECK(f != NULL && fgets(line, sizeof(line), f) != NULL);
    CHECK(strcmp(line, "-----BEGIN PRIVATE KEY-----\n") == 0);
    if (f != NULL) fclose(f);
    EVP_PKEY_free(back);
    EVP_PKEY_free(key);
  }
}

/* write_text writes |text| to |name| under the temp dir; returns the path. */
static void write_text(char *path, size_t size, const char *name,
                       const char *text) {
  tmp_path(path, size, name);
  FILE *f = fopen(path, "w");
  if (f != NULL) {
    fputs(text, f);
    fclose(f);
  }
}

TEST(read_traditional_ec_and_rsa) {
  pki_err err = {0};
  EVP_PKEY *ec_key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  EVP_PKEY *rsa_key = pki_key_generate(PKI_KEY_RSA, 2048, &err);
  REQUIRE(ec_key != NULL && rsa_key != NULL);

  /* "EC PARAMETERS" first, as "openssl ecparam -genkey" writes it. */
  CBB cbb;
  uint8_t *der = NULL;
  size_t der_len = 0;
  REQUIRE(CBB_init(&cbb, 256));
  REQUIRE(EC_KEY_marshal_private_key(&cbb, EVP_PKEY_get0_EC_KEY(ec_key), 0));
  REQUIRE(CBB_finish(&cbb, &der, &der_len));
  static const uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
                                     0x3d, 0x03, 0x01, 0x07};
  size_t params_len = 0, key_len = 0;
  char *params = der_to_pem("EC PARAMETERS", kP256Oid, sizeof(kP256Oid),
                            &params_len);
  char *key_pem = der_to_pem("EC PRIVATE KEY", der, der_len, &key_len);
  OPENSSL_free(der);
  REQUIRE(params != NULL && key_pem != NULL);
  char both[4096];
  snprintf(both, sizeof(both), "%s%s", params, key_pem);
  free(params);
  free(key_pem);
  char path[PATH_MAX + 32];
  write_text(path, sizeof(path), "ec.pem", both);
  EVP_PKEY *back = pki_key_read_pem(path, &err);
  CHECK(back != NULL && same_private_key(back, ec_key));
  EVP_PKEY_free(back);

  REQUIRE(CBB_init(&cbb, 2048));
  REQUIRE(RSA_marshal_private_key(&cbb, EVP_PKEY_get0_RSA(rsa_key)));
  REQUIRE(CBB_finish(&cbb, &der, &der_len));
  key_pem = der_to_pem("RSA PRIVATE KEY", der, der_len, &key_len);
  OPENSSL_free(der);
  REQUIRE(key_pem != NULL);
  write_text(path, sizeof(path), "rsa.pem", key_pem);
  free(key_pem);
  back = pki_key_read_pem(path, &err);
  CHECK(back != NULL && same_private_key(back, rsa_key));
  EVP_PKEY_free(back);

  EVP_PKEY_free(ec_key);
  EVP_PKEY_free(rsa_key);
}

TEST(read_pem_errors) {
  pki_err err = {0};
  char path[PATH_MAX + 32];
  tmp_path(path, sizeof(path), "does-not-exist.pem");
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_NOT_FOUND);

  write_text(path, sizeof(path), "empty.pem", "");
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);

  write_text(path, sizeof(path), "cert.pem",
             "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "no PEM private key") != NULL);

  write_text(path, sizeof(path), "garbage.pem",
             "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);

  write_text(path, sizeof(path), "badb64.pem",
             "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n");
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);

  write_text(path, sizeof(path), "enc.pem",
             "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
             "-----END ENCRYPTED PRIVATE KEY-----\n");
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_UNSUPPORTED);

  write_text(path, sizeof(path), "legacy.pem",
             "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
             "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n"
             "AAAA\n-----END RSA PRIVATE KEY-----\n");
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
}

TEST(sealed_round_trip_ca_types) {
  pki_key_type types[] = {PKI_KEY_ECDSA_P256, PKI_KEY_ECDSA_P384,
                          PKI_KEY_ED25519};
  unsigned bits[] = {256, 384, 256};
  for (int i = 0; i < 3; i++) {
    pki_err err = {0};
    EVP_PKEY *key = pki_key_generate(types[i], bits[i], &err);
    REQUIRE(key != NULL);
    char *pem = NULL;
    size_t pem_len = 0;
    CHECK(pki_key_seal(&pem, &pem_len, key, kPass, PASS_LEN, TEST_LOG2N,
                       &err));
    REQUIRE(pem != NULL);
    CHECK(strlen(pem) == pem_len);
    CHECK(strncmp(pem, "-----BEGIN PKID SEALED PRIVATE KEY-----\n", 40) == 0);
    /* Lines of 64 characters at most. */
    int long_lines = 0;
    for (const char *p = pem; *p != '\0';) {
      const char *nl = strchr(p, '\n');
      if (nl == NULL) break;
      if (nl - p > 64) long_lines++;
      p = nl + 1;
    }
    CHECK(long_lines == 0);
    EVP_PKEY *back = pki_key_open(pem, pem_len, kPass, PASS_LEN, &err);
    CHECK(back != NULL && same_private_key(key, back));
    EVP_PKEY_free(back);
    /* Sealing twice gives different text (fresh salt and nonce). */
    char *pem2 = NULL;
    size_t pem2_len = 0;
    CHECK(pki_key_seal(&pem2, &pem2_len, key, kPass, PASS_LEN, TEST_LOG2N,
                       &err));
    CHECK(pem2 != NULL && strcmp(pem, pem2) != 0);
    free(pem2);
    free(pem);
    EVP_PKEY_free(key);
  }
}

TEST(sealed_wrong_secret_is_auth) {
  pki_err err = {0};
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  REQUIRE(key != NULL);
  char *pem = NULL;
  size_t pem_len = 0;
  REQUIRE(pki_key_seal(&pem, &pem_len, key, kPass, PASS_LEN, TEST_LOG2N,
                       &err));
  static const uint8_t kWrong[] = "correct horse battery stapler";
  CHECK(pki_key_open(pem, pem_len, kWrong, sizeof(kWrong) - 1, &err) == NULL);
  CHECK(err.code == PKI_ERR_AUTH);
  CHECK(strcmp(err.msg,
               "wrong passphrase or shares (the key did not decrypt)") == 0);
  /* A prefix of the right secret is a different secret. */
  CHECK(pki_key_open(pem, pem_len, kPass, PASS_LEN - 1, &err) == NULL);
  CHECK(err.code == PKI_ERR_AUTH);
  CHECK(pki_key_open(pem, pem_len, kPass, 0, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  free(pem);
  EVP_PKEY_free(key);
}

TEST(sealed_every_flipped_byte_fails) {
  pki_err err = {0};
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  REQUIRE(key != NULL);
  char *pem = NULL;
  size_t pem_len = 0;
  REQUIRE(pki_key_seal(&pem, &pem_len, key, kPass, PASS_LEN, TEST_LOG2N,
                       &err));
  uint8_t *der = NULL;
  long der_len = 0;
  REQUIRE(pem_to_der(&der, &der_len, pem, pem_len));
  int opened = 0, other_codes = 0;
  for (long i = 0; i < der_len; i++) {
    uint8_t saved = der[i];
    der[i] ^= 0x01;
    EVP_PKEY *back = open_der(der, (size_t)der_len, &err);
    if (back != NULL) opened++;
    else if (err.code != PKI_ERR_AUTH && err.code != PKI_ERR_INVALID) {
      other_codes++;
    }
    EVP_PKEY_free(back);
    der[i] = saved;
  }
  CHECK(opened == 0);
  CHECK(other_codes == 0);
  /* The untouched DER still opens, so the loop tested the right thing. */
  EVP_PKEY *back = open_der(der, (size_t)der_len, &err);
  CHECK(back != NULL);
  EVP_PKEY_free(back);
  OPENSSL_free(der);
  free(pem);
  EVP_PKEY_free(key);
}

TEST(sealed_changed_parameters_fail_auth) {
  /* The parameters are authenticated: a changed salt or a changed (valid)
   * cost must fail as AUTH, not derive another key and go on. */
  pki_err err = {0};
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  REQUIRE(key != NULL);
  char *pem = NULL;
  size_t pem_len = 0;
  REQUIRE(pki_key_seal(&pem, &pem_len, key, kPass, PASS_LEN, TEST_LOG2N,
                       &err));
  uint8_t *der = NULL;
  long der_len = 0;
  REQUIRE(pem_to_der(&der, &der_len, pem, pem_len));
  /* SEQUENCE hdr(2) version(3) SEQUENCE hdr(2) log2N: 02 01 0a */
  REQUIRE(der_len > 10 && der[7] == 0x02 && der[8] == 0x01 && der[9] == 10);
  der[9] = 11;
  CHECK(open_der(der, (size_t)der_len, &err) == NULL);
  CHECK(err.code == PKI_ERR_AUTH);
  der[9] = 10;
  OPENSSL_free(der);
  free(pem);
  EVP_PKEY_free(key);
}

TEST(sealed_truncated_is_invalid) {
  pki_err err = {0};
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  char *pem = NULL;
  size_t pem_len = 0;
  REQUIRE(pki_key_seal(&pem, &pem_len, key, kPass, PASS_LEN, TEST_LOG2N,
                       &err));
  uint8_t *der = NULL;
  long der_len = 0;
  REQUIRE(pem_to_der(&der, &der_len, pem, pem_len));
  int wrong = 0;
  for (long len = 1; len < der_len; len++) {
    EVP_PKEY *back = open_der(der, (size_t)len, &err);
    if (back != NULL || err.code != PKI_ERR_INVALID) wrong++;
    EVP_PKEY_free(back);
  }
  CHECK(wrong == 0);
  /* Trailing data after the DER is refused too. */
  uint8_t *longer = malloc((size_t)der_len + 1);
  REQUIRE(longer != NULL);
  memcpy(longer, der, (size_t)der_len);
  longer[der_len] = 0;
  CHECK(open_der(longer, (size_t)der_len + 1, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  free(longer);
  /* Nothing between the armour lines. */
  static const char kEmpty[] = "-----BEGIN PKID SEALED PRIVATE KEY-----\n"
                               "-----END PKID SEALED PRIVATE KEY-----\n";
  CHECK(pki_key_open(kEmpty, strlen(kEmpty), kPass, PASS_LEN, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  /* Cut text. */
  CHECK(pki_key_open(pem, pem_len / 2, kPass, PASS_LEN, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  OPENSSL_free(der);
  free(pem);
  EVP_PKEY_free(key);
}

TEST(sealed_not_a_sealed_key_is_invalid) {
  pki_err err = {0};
  static const char kJunk[] = "hello, world\n";
  CHECK(pki_key_open(kJunk, strlen(kJunk), kPass, PASS_LEN, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(pki_key_open("", 0, kPass, PASS_LEN, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  /* A plain key is not a sealed key. */
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  REQUIRE(key != NULL);
  char path[PATH_MAX + 32];
  tmp_path(path, sizeof(path), "plain2.pem");
  REQUIRE(pki_key_write_pem(path, key, &err));
  FILE *f = fopen(path, "r");
  REQUIRE(f != NULL);
  char text[1024];
  size_t n = fread(text, 1, sizeof(text), f);
  fclose(f);
  CHECK(pki_key_open(text, n, kPass, PASS_LEN, &err) == NULL);
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "PRIVATE KEY") != NULL);
  EVP_PKEY_free(key);
}

/* build_sealed makes a SealedKey DER from chosen fields, to reach the
 * parser's range checks with otherwise well-formed input. */
static int build_sealed(uint8_t **out, size_t *out_len, uint64_t version,
                        uint64_t log2n, uint64_t r, uint64_t p,
                        size_t salt_len, uint64_t aead, size_t nonce_len,
                        size_t ct_len) {
  uint8_t zeros[64] = {0};
  CBB cbb, seq, kdf;
  if (!CBB_init(&cbb, 128) || !CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1_uint64(&seq, version) ||
      !CBB_add_asn1(&seq, &kdf, CBS_ASN1_SEQUENCE) ||
      !CBB_add_asn1_uint64(&kdf, log2n) || !CBB_add_asn1_uint64(&kdf, r) ||
      !CBB_add_asn1_uint64(&kdf, p) ||
      !CBB_add_asn1_octet_string(&kdf, zeros, salt_len) ||
      !CBB_add_asn1_uint64(&seq, aead) ||
      !CBB_add_asn1_octet_string(&seq, zeros, nonce_len) ||
      !CBB_add_asn1_octet_string(&seq, zeros, ct_len) ||
      !CBB_finish(&cbb, out, out_len)) {
    CBB_cleanup(&cbb);
    return 0;
  }
  return 1;
}

static pki_err_code open_built(uint64_t version, uint64_t log2n, uint64_t r,
                               uint64_t p, size_t salt_len, uint64_t aead,
                               size_t nonce_len, size_t ct_len) {
  uint8_t *der = NULL;
  size_t der_len = 0;
  if (!build_sealed(&der, &der_len, version, log2n, r, p, salt_len, aead,
                    nonce_len, ct_len)) {
    return PKI_ERR_INTERNAL;
  }
  pki_err err = {0};
  EVP_PKEY *key = open_der(der, der_len, &err);
  OPENSSL_free(der);
  if (key != NULL) {
    EVP_PKEY_free(key);
    return PKI_OK;
  }
  return err.code;
}

TEST(sealed_hostile_parameters_refused) {
  /* Well-formed, in range: decrypts nothing, so AUTH. */
  CHECK(open_built(1, 10, 8, 1, 16, 1, 12, 64) == PKI_ERR_AUTH);
  /* Each field out of range is INVALID, before any scrypt work. */
  CHECK(open_built(2, 10, 8, 1, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 9, 8, 1, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 21, 8, 1, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 62, 8, 1, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 10, 0, 1, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 10, 17, 1, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 10, 8, 0, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 10, 8, 5, 16, 1, 12, 64) == PKI_ERR_INVALID);
  /* Within each bound, but together over the memory cap (2 GiB). */
  CHECK(open_built(1, 20, 16, 1, 16, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 10, 8, 1, 15, 1, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 10, 8, 1, 16, 2, 12, 64) == PKI_ERR_INVALID);
  CHECK(open_built(1, 10, 8, 1, 16, 1, 16, 64) == PKI_ERR_INVALID);
  /* Shorter than a GCM tag. */
  CHECK(open_built(1, 10, 8, 1, 16, 1, 12, 15) == PKI_ERR_INVALID);
}

TEST(seal_refuses_bad_arguments) {
  pki_err err = {0};
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ED25519, 256, &err);
  REQUIRE(key != NULL);
  char *pem = NULL;
  size_t pem_len = 0;
  CHECK(!pki_key_seal(&pem, &pem_len, key, kPass, PASS_LEN, 9, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(!pki_key_seal(&pem, &pem_len, key, kPass, PASS_LEN, 21, &err));
  CHECK(!pki_key_seal(&pem, &pem_len, key, kPass, 0, TEST_LOG2N, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(pem == NULL);
  EVP_PKEY_free(key);
}

TEST(sealed_file_round_trip) {
  /* The file functions use the default cost (log2N 15), once each. */
  pki_err err = {0};
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(key != NULL);
  char path[PATH_MAX + 32];
  tmp_path(path, sizeof(path), "root.sealed");
  umask(022);
  CHECK(pki_key_write_sealed(path, key, kPass, PASS_LEN, &err));
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
  EVP_PKEY *back = pki_key_read_sealed(path, kPass, PASS_LEN, &err);
  CHECK(back != NULL && same_private_key(key, back));
  EVP_PKEY_free(back);
  /* A plain key file is not readable as sealed, and vice versa. */
  CHECK(pki_key_read_pem(path, &err) == NULL);
  CHECK(err.code == PKI_ERR_UNSUPPORTED);
  tmp_path(path, sizeof(path), "missing.sealed");
  CHECK(pki_key_read_sealed(path, kPass, PASS_LEN, &err) == NULL);
  CHECK(err.code == PKI_ERR_NOT_FOUND);
  EVP_PKEY_free(key);
}

TEST(spki_sha256_known_answer) {
  /* RFC 8032 section 7.1, test 1: the public key of this seed is
   * d75a9801...; its SPKI is a fixed 12-byte prefix and the key. */
  static const uint8_t kSeed[32] = {
      0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
      0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
      0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60};
  static const uint8_t kSpki[44] = {
      0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21,
      0x00, 0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b,
      0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda,
      0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
  EVP_PKEY *key =
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, kSeed, 32);
  REQUIRE(key != NULL);
  uint8_t got[32], want[32];
  pki_err err = {0};
  CHECK(pki_spki_sha256(got, key, &err));
  SHA256(kSpki, sizeof(kSpki), want);
  CHECK(memcmp(got, want, 32) == 0);
  EVP_PKEY_free(key);

  /* Different keys, different hashes. */
  EVP_PKEY *a = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  EVP_PKEY *b = pki_key_generate(PKI_KEY_ECDSA_P256, 256, &err);
  REQUIRE(a != NULL && b != NULL);
  uint8_t ha[32], hb[32];
  CHECK(pki_spki_sha256(ha, a, &err) && pki_spki_sha256(hb, b, &err));
  CHECK(memcmp(ha, hb, 32) != 0);
  EVP_PKEY_free(a);
  EVP_PKEY_free(b);
}

int main(void) {
  const char *base = getenv("TEST_TMPDIR");
  if (base == NULL || base[0] == '\0') base = "/tmp";
  snprintf(tmp_root, sizeof(tmp_root), "%s/key_test.XXXXXX", base);
  if (mkdtemp(tmp_root) == NULL) {
    perror("mkdtemp");
    return 2;
  }
  RUN(type_parse_and_name);
  RUN(can_sign_certs);
  RUN(generate_and_describe_every_type);
  RUN(generate_refuses_other_sizes);
  RUN(describe_refuses_other_curves);
  RUN(describe_refuses_small_rsa);
  RUN(describe_rsa_bounds);
  RUN(describe_refuses_other_algorithms);
  RUN(pem_round_trip_every_type);
  RUN(read_traditional_ec_and_rsa);
  RUN(read_pem_errors);
  RUN(sealed_round_trip_ca_types);
  RUN(sealed_wrong_secret_is_auth);
  RUN(sealed_every_flipped_byte_fails);
  RUN(sealed_changed_parameters_fail_auth);
  RUN(sealed_truncated_is_invalid);
  RUN(sealed_not_a_sealed_key_is_invalid);
  RUN(sealed_hostile_parameters_refused);
  RUN(seal_refuses_bad_arguments);
  RUN(sealed_file_round_trip);
  RUN(spki_sha256_known_answer);
  return test_finish();
}
