/* pem_test: lib/pem's writer byte for byte against BoringSSL's
 * PEM_write_bio, and read back by PEM_read_bio; its reader on what tools
 * write (explanatory text, several blocks, CRLF, other line lengths) and
 * on what it must refuse: a missing or mismatched END line, bad base64,
 * RFC 1421 headers; and the DER fallback certificate files rely on. */
#include "lib/pem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/mem.h>
#include <openssl/pem.h>

#include "tests/unit/test.h"

static const char *const kCert[] = {"CERTIFICATE"};

static void fill(uint8_t *p, size_t len) {
  for (size_t i = 0; i < len; i++) p[i] = (uint8_t)(i * 37 + 11);
}

/* decode_text decodes NUL-terminated |text| for |labels|. */
static int decode_text(uint8_t **out, size_t *out_len, const char **label,
                       const char *const *labels, size_t num, const char *text, unsigned flags,
                       pki_err *err) {
  pki_err_clear(err);
  return pki_pem_decode(out, out_len, label, labels, num, (const uint8_t *)text, strlen(text),
                        flags, err);
}

/* refused expects decoding |text| for CERTIFICATE to fail with |code|. */
static int refused(const char *text, pki_err_code code, const char *needle) {
  uint8_t *out = NULL;
  size_t len = 0;
  pki_err err;
  if (decode_text(&out, &len, NULL, kCert, 1, text, 0, &err)) {
    fprintf(stderr, "  decoded, should be refused: %s\n", text);
    free(out);
    return 0;
  }
  if (out != NULL || err.code != code || strstr(err.msg, needle) == NULL) {
    fprintf(stderr, "  want %s mentioning '%s', got %s: %s\n", pki_err_code_name(code), needle,
            pki_err_code_name(err.code), err.msg);
    return 0;
  }
  return 1;
}

TEST(matches_boringssl_writer) {
  static const size_t kLens[] = {1, 2, 3, 47, 48, 49, 96, 100, 1000};
  uint8_t data[1000];
  fill(data, sizeof(data));
  for (size_t i = 0; i < sizeof(kLens) / sizeof(kLens[0]); i++) {
    size_t len = kLens[i];
    char *text = NULL;
    size_t text_len = 0;
    pki_err err;
    REQUIRE(pki_pem_append(&text, &text_len, "CERTIFICATE", data, len, &err));
    CHECK(strlen(text) == text_len);
    /* The same bytes as BoringSSL writes... */
    BIO *bio = BIO_new(BIO_s_mem());
    REQUIRE(bio != NULL);
    REQUIRE(PEM_write_bio(bio, "CERTIFICATE", "", data, (long)len) > 0);
    const uint8_t *want;
    size_t want_len;
    REQUIRE(BIO_mem_contents(bio, &want, &want_len));
    CHECK(want_len == text_len && memcmp(want, text, text_len) == 0);
    BIO_free(bio);
    /* ... and BoringSSL reads them back. */
    bio = BIO_new_mem_buf(text, (int)text_len);
    char *name = NULL, *header = NULL;
    uint8_t *back = NULL;
    long back_len = 0;
    CHECK(bio != NULL && PEM_read_bio(bio, &name, &header, &back, &back_len));
    CHECK(name != NULL && strcmp(name, "CERTIFICATE") == 0 && (size_t)back_len == len &&
          memcmp(back, data, len) == 0);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(back);
    BIO_free(bio);
    free(text);
  }
}

TEST(round_trip) {
  uint8_t data[300];
  fill(data, sizeof(data));
  for (size_t len = 0; len <= sizeof(data); len += len < 100 ? 1 : 50) {
    char *text = NULL;
    size_t text_len = 0;
    pki_err err;
    REQUIRE(pki_pem_append(&text, &text_len, "PRIVATE KEY", data, len, &err));
    /* Lines of 64 characters but the last (RFC 7468 section 2). */
    const char *body = strchr(text, '\n') + 1, *end = strstr(text, "-----END ");
    REQUIRE(end != NULL);
    for (const char *p = body; p < end;) {
      const char *nl = strchr(p, '\n');
      CHECK(nl - p == 64 || (nl + 1 == end && nl - p > 0 && nl - p <= 64));
      p = nl + 1;
    }
    CHECK(strcmp(end, "-----END PRIVATE KEY-----\n") == 0);
    static const char *const kKey[] = {"PRIVATE KEY"};
    uint8_t *back = NULL;
    size_t back_len = 0;
    const char *label = NULL;
    CHECK(pki_pem_decode(&back, &back_len, &label, kKey, 1, (const uint8_t *)text, text_len, 0,
                         &err));
    CHECK(label == kKey[0] && back_len == len && memcmp(back, data, len) == 0);
    free(back);
    free(text);
  }
}

TEST(labels) {
  char *text = NULL;
  size_t len = 0;
  pki_err err;
  /* RFC 7468 section 3: printable ASCII, '-' and ' ' only inside. */
  CHECK(pki_pem_append(&text, &len, "X509 CRL", (const uint8_t *)"x", 1, &err));
  CHECK(pki_pem_append(&text, &len, "A-B", (const uint8_t *)"x", 1, &err));
  size_t before = len;
  static const char *const kBad[] = {"", "-A", "A-", " A", "A ", "A--B", "A  B", "A\nB",
                                     "A\tB", "\xc3\xa9"};
  for (size_t i = 0; i < sizeof(kBad) / sizeof(kBad[0]); i++) {
    CHECK(!pki_pem_append(&text, &len, kBad[i], (const uint8_t *)"x", 1, &err));
    CHECK(err.code == PKI_ERR_INVALID);
  }
  char longest[PKI_PEM_LABEL_MAX + 2];
  memset(longest, 'A', sizeof(longest));
  longest[PKI_PEM_LABEL_MAX + 1] = '\0';
  CHECK(!pki_pem_append(&text, &len, longest, (const uint8_t *)"x", 1, &err));
  longest[PKI_PEM_LABEL_MAX] = '\0';
  CHECK(pki_pem_append(&text, &len, longest, (const uint8_t *)"x", 1, &err));
  /* A failed append leaves the text as it was. */
  CHECK(before < len && strncmp(text + before, "-----BEGIN AAAA", 15) == 0);
  CHECK(strstr(text, "-----BEGIN X509 CRL-----\neA==\n-----END X509 CRL-----\n"
                     "-----BEGIN A-B-----\neA==\n-----END A-B-----\n") == text);
  free(text);
}

TEST(multiple_blocks) {
  char *text = NULL;
  size_t len = 0;
  pki_err err;
  REQUIRE(pki_pem_append(&text, &len, "EC PARAMETERS", (const uint8_t *)"params", 6, &err));
  REQUIRE(pki_pem_append(&text, &len, "CERTIFICATE", (const uint8_t *)"first", 5, &err));
  REQUIRE(pki_pem_append(&text, &len, "PRIVATE KEY", (const uint8_t *)"key", 3, &err));
  REQUIRE(pki_pem_append(&text, &len, "CERTIFICATE", (const uint8_t *)"second", 6, &err));
  uint8_t *out = NULL;
  size_t out_len = 0;
  const char *label = NULL;
  /* The first block of a wanted label; others are passed over. */
  CHECK(decode_text(&out, &out_len, &label, kCert, 1, text, 0, &err));
  CHECK(label == kCert[0] && out_len == 5 && memcmp(out, "first", 5) == 0);
  free(out);
  static const char *const kKey[] = {"RSA PRIVATE KEY", "PRIVATE KEY"};
  CHECK(decode_text(&out, &out_len, &label, kKey, 2, text, 0, &err));
  CHECK(label == kKey[1] && out_len == 3 && memcmp(out, "key", 3) == 0);
  free(out);
  /* With several labels, the first in the text wins, not in the list. */
  static const char *const kEither[] = {"PRIVATE KEY", "CERTIFICATE"};
  CHECK(decode_text(&out, &out_len, &label, kEither, 2, text, 0, &err));
  CHECK(label == kEither[1] && out_len == 5);
  free(out);
  static const char *const kNone[] = {"X509 CRL", "PUBLIC KEY"};
  CHECK(!decode_text(&out, &out_len, &label, kNone, 2, text, 0, &err));
  CHECK(err.code == PKI_ERR_NOT_FOUND && out == NULL && label == NULL);
  CHECK(strstr(err.msg, "'X509 CRL' or 'PUBLIC KEY'") != NULL);
  free(text);
}

TEST(what_tools_write) {
  /* `openssl x509 -text` puts text before the block, CRLF comes from
   * Windows, other encoders wrap at 76 (MIME) or not at all, and
   * whitespace trails. "AAECAwQFBgcICQ..." is the bytes 0, 1, 2, ... */
  static const char kText[] =
      "Certificate:\r\n    Data: ...\r\n"
      "-----BEGIN CERTIFICATE-----  \r\n"
      "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\r\n"
      "OTo7PD0+P0BBQkNERUZHSElKS0xNTk9Q\t\r\n"
      "-----END CERTIFICATE-----\r\n"
      "trailing words\n";
  uint8_t *out = NULL;
  size_t out_len = 0;
  pki_err err;
  CHECK(decode_text(&out, &out_len, NULL, kCert, 1, kText, 0, &err));
  int bytes_ok = out_len == 81;
  for (size_t i = 0; bytes_ok && i < out_len; i++) bytes_ok = out[i] == i;
  CHECK(bytes_ok);
  free(out);
  /* An END line with nothing after it; an empty block. */
  CHECK(decode_text(&out, &out_len, NULL, kCert, 1,
                    "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----", 0, &err));
  CHECK(out_len == 3);
  free(out);
  CHECK(decode_text(&out, &out_len, NULL, kCert, 1,
                    "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", 0, &err));
  CHECK(out != NULL && out_len == 0);
  free(out);
}

TEST(missing_or_wrong_end) {
  CHECK(refused("-----BEGIN CERTIFICATE-----\nAAEC\n", PKI_ERR_INVALID, "no END line"));
  CHECK(refused("-----BEGIN CERTIFICATE-----\nAAEC\n-----BEGIN CERTIFICATE-----\nAAEC\n"
                "-----END CERTIFICATE-----\n",
                PKI_ERR_INVALID, "no END line"));
  CHECK(refused("-----BEGIN CERTIFICATE-----\nAAEC\n-----END PRIVATE KEY-----\n",
                PKI_ERR_INVALID, "mismatched END"));
  CHECK(refused("-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE\n", PKI_ERR_INVALID,
                "END"));
  /* A block of another label needs its END too: it cannot be skipped. */
  CHECK(refused("-----BEGIN PRIVATE KEY-----\nAAEC\n", PKI_ERR_INVALID, "'PRIVATE KEY'"));
}

TEST(bad_base64) {
  CHECK(refused("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                PKI_ERR_INVALID, "not valid base64"));
  /* Standard alphabet, padded, canonical. */
  CHECK(refused("-----BEGIN CERTIFICATE-----\nZh==\n-----END CERTIFICATE-----\n",
                PKI_ERR_INVALID, "base64"));
  CHECK(refused("-----BEGIN CERTIFICATE-----\nZg\n-----END CERTIFICATE-----\n",
                PKI_ERR_INVALID, "base64"));
  CHECK(refused("-----BEGIN CERTIFICATE-----\n-_8=\n-----END CERTIFICATE-----\n",
                PKI_ERR_INVALID, "base64"));
  CHECK(refused("-----BEGIN CERTIFICATE-----\nZg==\nZg==\n-----END CERTIFICATE-----\n",
                PKI_ERR_INVALID, "base64"));
  /* A '+' is base64; ':' past the first line is not a header, just bad. */
  CHECK(refused("-----BEGIN CERTIFICATE-----\nAAEC\nAA:C\n-----END CERTIFICATE-----\n",
                PKI_ERR_INVALID, "base64"));
}

TEST(rfc1421_headers_refused) {
  CHECK(refused("-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\n"
                "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAEC\n"
                "-----END CERTIFICATE-----\n",
                PKI_ERR_UNSUPPORTED, "RFC 1421"));
}

TEST(der_fallback) {
  /* No armour at all: DER, returned as it is, when the caller allows it. */
  static const uint8_t kDer[] = {0x30, 0x03, 0x02, 0x01, 0x05, 0x00, 0x2d};
  uint8_t *out = NULL;
  size_t out_len = 0;
  const char *label = kCert[0];
  pki_err err;
  CHECK(pki_pem_decode(&out, &out_len, &label, kCert, 1, kDer, sizeof(kDer), PKI_PEM_OR_DER,
                       &err));
  CHECK(label == NULL && out_len == sizeof(kDer) && memcmp(out, kDer, sizeof(kDer)) == 0);
  free(out);
  CHECK(pki_pem_decode(&out, &out_len, NULL, kCert, 1, kDer, 0, PKI_PEM_OR_DER, &err));
  CHECK(out != NULL && out_len == 0);
  free(out);
  /* Without the flag, such text has no block. */
  CHECK(!pki_pem_decode(&out, &out_len, NULL, kCert, 1, kDer, sizeof(kDer), 0, &err));
  CHECK(err.code == PKI_ERR_NOT_FOUND);
  /* With armour of another label, it is not taken for DER. */
  CHECK(!decode_text(&out, &out_len, NULL, kCert, 1,
                     "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n",
                     PKI_PEM_OR_DER, &err));
  CHECK(err.code == PKI_ERR_NOT_FOUND && out == NULL);
  /* And armour is armour however it is broken. */
  CHECK(!decode_text(&out, &out_len, NULL, kCert, 1, "junk -----BEGIN CERTIFICATE-----\n",
                     PKI_PEM_OR_DER, &err));
  CHECK(!pki_pem_decode(&out, &out_len, NULL, kCert, 0, kDer, sizeof(kDer), PKI_PEM_OR_DER,
                        &err));
  CHECK(err.code == PKI_ERR_INVALID);
}

int main(void) {
  RUN(matches_boringssl_writer);
  RUN(round_trip);
  RUN(labels);
  RUN(multiple_blocks);
  RUN(what_tools_write);
  RUN(missing_or_wrong_end);
  RUN(bad_base64);
  RUN(rfc1421_headers_refused);
  RUN(der_fallback);
  return test_finish();
}
