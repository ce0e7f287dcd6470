/* base64_test: lib/base64 against RFC 4648's test vectors (section 10) in
 * both alphabets, padded and not; against a bit-by-bit encoder written
 * here for every length 0..64; and the strictness that makes each byte
 * string's spelling unique: set unused bits, stray characters and
 * misplaced padding are refused. */
#include "lib/base64.h"

#include <stdint.h>
#include <string.h>

#include "tests/unit/test.h"

#define STD_PAD (PKI_BASE64_STD | PKI_BASE64_PAD_REQUIRED)
#define STD_NOPAD (PKI_BASE64_STD | PKI_BASE64_NO_PAD)
#define URL_PAD (PKI_BASE64_URL | PKI_BASE64_PAD_REQUIRED)
#define URL_NOPAD (PKI_BASE64_URL | PKI_BASE64_NO_PAD)
/* What OCSP GET requests need (RFC 6960 A.1): either alphabet, padded or
 * not. */
#define LENIENT (PKI_BASE64_ANY_ALPHABET | PKI_BASE64_PAD_OPTIONAL)

static const unsigned kEncodeFlags[] = {STD_PAD, STD_NOPAD, URL_PAD, URL_NOPAD};

/* encodes_to encodes |in| under |flags| and compares with |want|. */
static int encodes_to(const char *in, size_t in_len, unsigned flags, const char *want) {
  char out[256];
  size_t out_len = 0, want_len = strlen(want), len = 0;
  pki_err err;
  int ok = pki_base64_encode(out, sizeof(out), &out_len, (const uint8_t *)in, in_len, flags,
                             &err) &&
           pki_base64_encoded_len(&len, in_len, flags) && len == out_len &&
           out_len == want_len && memcmp(out, want, want_len) == 0 && out[out_len] == '\0';
  if (!ok) fprintf(stderr, "  encode 0x%x: got '%.*s', want '%s'\n", flags, (int)out_len, out, want);
  return ok;
}

/* decodes_to decodes |in| under |flags| and compares with |want|. */
static int decodes_to(const char *in, unsigned flags, const char *want, size_t want_len) {
  uint8_t out[256];
  size_t out_len = 0;
  pki_err err;
  int ok = pki_base64_decode(out, sizeof(out), &out_len, in, strlen(in), flags, &err) &&
           out_len == want_len && memcmp(out, want, want_len) == 0;
  if (!ok) fprintf(stderr, "  decode '%s' 0x%x failed: %s\n", in, flags, err.msg);
  return ok;
}

/* refused decodes |in| under |flags| and expects PKI_ERR_INVALID. */
static int refused(const char *in, size_t len, unsigned flags) {
  uint8_t out[256];
  size_t out_len = 0;
  pki_err err;
  pki_err_clear(&err);
  if (pki_base64_decode(out, sizeof(out), &out_len, in, len, flags, &err)) {
    fprintf(stderr, "  '%.*s' (0x%x) decoded, should be refused\n", (int)len, in, flags);
    return 0;
  }
  return err.code == PKI_ERR_INVALID && err.msg[0] != '\0';
}

TEST(rfc4648_vectors) {
  static const struct {
    const char *in, *padded, *unpadded;
  } kVectors[] = {
      {"", "", ""},
      {"f", "Zg==", "Zg"},
      {"fo", "Zm8=", "Zm8"},
      {"foo", "Zm9v", "Zm9v"},
      {"foob", "Zm9vYg==", "Zm9vYg"},
      {"fooba", "Zm9vYmE=", "Zm9vYmE"},
      {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
  };
  for (size_t i = 0; i < sizeof(kVectors) / sizeof(kVectors[0]); i++) {
    const char *in = kVectors[i].in;
    size_t len = strlen(in);
    /* No 62 or 63 in these: both alphabets spell them alike. */
    CHECK(encodes_to(in, len, STD_PAD, kVectors[i].padded));
    CHECK(encodes_to(in, len, URL_PAD, kVectors[i].padded));
    CHECK(encodes_to(in, len, STD_NOPAD, kVectors[i].unpadded));
    CHECK(encodes_to(in, len, URL_NOPAD, kVectors[i].unpadded));
    CHECK(decodes_to(kVectors[i].padded, STD_PAD, in, len));
    CHECK(decodes_to(kVectors[i].padded, URL_PAD, in, len));
    CHECK(decodes_to(kVectors[i].unpadded, STD_NOPAD, in, len));
    CHECK(decodes_to(kVectors[i].unpadded, URL_NOPAD, in, len));
    CHECK(decodes_to(kVectors[i].padded, LENIENT, in, len));
    CHECK(decodes_to(kVectors[i].unpadded, LENIENT, in, len));
  }
}

TEST(the_two_alphabets) {
  /* 0xfb 0xff: 111110 111111 1111(00), the values 62, 63 and 60. */
  static const char kBytes[] = "\xfb\xff";
  CHECK(encodes_to(kBytes, 2, STD_PAD, "+/8="));
  CHECK(encodes_to(kBytes, 2, URL_PAD, "-_8="));
  CHECK(encodes_to(kBytes, 2, URL_NOPAD, "-_8"));
  CHECK(encodes_to("\xff\xff\xff", 3, STD_PAD, "////"));
  CHECK(encodes_to("\xff\xff\xff", 3, URL_PAD, "____"));
  CHECK(decodes_to("+/8=", STD_PAD, kBytes, 2));
  CHECK(decodes_to("-_8", URL_NOPAD, kBytes, 2));
  CHECK(refused("+/8=", 4, URL_PAD));
  CHECK(refused("-_8", 3, STD_NOPAD));
  /* Either alphabet, even mixed, when both are allowed. */
  CHECK(decodes_to("+_8", LENIENT, kBytes, 2));
  CHECK(decodes_to("-/8=", LENIENT, kBytes, 2));
}

TEST(non_canonical_refused) {
  /* "f" is 011001 10(0000): "Zg"; "Zh" sets an unused bit. */
  CHECK(refused("Zh==", 4, STD_PAD));
  CHECK(refused("Zh", 2, URL_NOPAD));
  CHECK(refused("Zh", 2, LENIENT));
  CHECK(refused("Z/==", 4, STD_PAD));
  /* "fo" is 011001 100110 1111(00): "Zm8"; "Zm9" and "Zm/" set unused bits. */
  CHECK(refused("Zm9=", 4, STD_PAD));
  CHECK(refused("Zm9", 3, URL_NOPAD));
  CHECK(refused("Zm_", 3, URL_NOPAD));
  CHECK(decodes_to("Zm8", URL_NOPAD, "fo", 2));
}

TEST(one_spelling_per_byte_string) {
  /* Every text of 2 and of 3 symbols: exactly one decodes to each 1- and
   * 2-byte string, so no two texts name the same bytes. */
  static const char kUrl[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static uint8_t seen[65536];
  memset(seen, 0, sizeof(seen));
  size_t accepted = 0, twice = 0;
  for (int a = 0; a < 64; a++) {
    for (int b = 0; b < 64; b++) {
      char text[2] = {kUrl[a], kUrl[b]};
      uint8_t out[2];
      size_t len;
      pki_err err;
      if (pki_base64_decode(out, sizeof(out), &len, text, 2, URL_NOPAD, &err)) {
        accepted++;
        if (len != 1 || seen[out[0]]++) twice++;
      }
    }
  }
  CHECK(accepted == 256 && twice == 0);
  memset(seen, 0, sizeof(seen));
  accepted = twice = 0;
  for (int a = 0; a < 64; a++) {
    for (int b = 0; b < 64; b++) {
      for (int c = 0; c < 64; c++) {
        char text[3] = {kUrl[a], kUrl[b], kUrl[c]};
        uint8_t out[2];
        size_t len;
        pki_err err;
        if (pki_base64_decode(out, sizeof(out), &len, text, 3, URL_NOPAD, &err)) {
          accepted++;
          if (len != 2 || seen[out[0] << 8 | out[1]]++) twice++;
        }
      }
    }
  }
  CHECK(accepted == 65536 && twice == 0);
}

/* Texts each flag setting must refuse, and why. */
static const struct {
  const char *text;
  size_t len;
  unsigned flags;
} kRefused[] = {
    /* Characters outside the alphabet, whitespace too: PEM's line breaks
     * are the PEM reader's to remove. */
    {"Zm9v!!!!", 8, STD_PAD},
    {"Zm 9", 4, LENIENT},
    {"Zm9v\r\n", 6, LENIENT},
    {"Zm9v\tZm8", 8, LENIENT},
    {"Zm\x00v", 4, LENIENT},
    {"Zm\xc3\xa9", 4, LENIENT},
    {"Zm9v.A", 6, LENIENT},
    /* '=' only at the end. */
    {"Zg==Zg==", 8, STD_PAD},
    {"Z=9v", 4, LENIENT},
    /* Partial padding, too much, none where it is required. */
    {"Zg=", 3, LENIENT},
    {"Zg=", 3, STD_PAD},
    {"Zg===", 5, LENIENT},
    {"Z===", 4, LENIENT},
    {"====", 4, LENIENT},
    {"=", 1, LENIENT},
    {"Zg", 2, STD_PAD},
    {"Zm8", 3, URL_PAD},
    /* Padding where there must be none. */
    {"Zg==", 4, URL_NOPAD},
    {"Zm9v=", 5, LENIENT},
    {"Zm9v====", 8, LENIENT},
    /* 4n + 1 characters: no encoder makes them. */
    {"Z", 1, LENIENT},
    {"Zm9vY", 5, URL_NOPAD},
};

TEST(bad_characters_and_padding) {
  for (size_t i = 0; i < sizeof(kRefused) / sizeof(kRefused[0]); i++) {
    CHECK(refused(kRefused[i].text, kRefused[i].len, kRefused[i].flags));
  }
}

TEST(sizes_and_room) {
  size_t len = 0;
  CHECK(pki_base64_encoded_len(&len, 0, STD_PAD) && len == 0);
  CHECK(pki_base64_encoded_len(&len, 1, STD_PAD) && len == 4);
  CHECK(pki_base64_encoded_len(&len, 1, URL_NOPAD) && len == 2);
  CHECK(pki_base64_encoded_len(&len, 5, URL_NOPAD) && len == 7);
  CHECK(pki_base64_encoded_len(&len, 6, URL_NOPAD) && len == 8);
  CHECK(!pki_base64_encoded_len(&len, SIZE_MAX, STD_PAD));
  CHECK(PKI_BASE64_ENCODED_MAX(5) == 8);
  CHECK(pki_base64_max_decoded_len(0) == 0);
  CHECK(pki_base64_max_decoded_len(2) == 1);
  CHECK(pki_base64_max_decoded_len(3) == 2);
  CHECK(pki_base64_max_decoded_len(8) == 6);
  CHECK(pki_base64_max_decoded_len(SIZE_MAX) <= SIZE_MAX / 4 * 3 + 2);
  /* Flags that do not say one alphabet and one padding rule. */
  char out[16];
  uint8_t bytes[16];
  pki_err err;
  CHECK(!pki_base64_encode(out, sizeof(out), &len, (const uint8_t *)"f", 1,
                           PKI_BASE64_ANY_ALPHABET | PKI_BASE64_NO_PAD, &err));
  CHECK(!pki_base64_encode(out, sizeof(out), &len, (const uint8_t *)"f", 1,
                           PKI_BASE64_STD | PKI_BASE64_PAD_OPTIONAL, &err));
  CHECK(!pki_base64_decode(bytes, sizeof(bytes), &len, "Zg", 2, PKI_BASE64_STD, &err));
  CHECK(!pki_base64_decode(bytes, sizeof(bytes), &len, "Zg", 2,
                           PKI_BASE64_STD | PKI_BASE64_NO_PAD | PKI_BASE64_PAD_OPTIONAL, &err));
  CHECK(!pki_base64_decode(bytes, sizeof(bytes), &len, "Zg", 2, PKI_BASE64_NO_PAD, &err));
  /* Room: the NUL counts when encoding; exact room is enough to decode. */
  CHECK(!pki_base64_encode(out, 4, &len, (const uint8_t *)"f", 1, STD_PAD, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(pki_base64_encode(out, 5, &len, (const uint8_t *)"f", 1, STD_PAD, &err) && len == 4);
  CHECK(pki_base64_encode(out, 3, &len, (const uint8_t *)"f", 1, URL_NOPAD, &err) && len == 2);
  CHECK(!pki_base64_decode(bytes, 2, &len, "Zm9v", 4, STD_PAD, &err));
  CHECK(pki_base64_decode(bytes, 3, &len, "Zm9v", 4, STD_PAD, &err) && len == 3);
  CHECK(pki_base64_decode(bytes, 0, &len, "", 0, STD_PAD, &err) && len == 0);
}

/* reference_encode is a second encoder, one bit at a time, to check
 * lib/base64 (which encodes through BoringSSL) against. */
static size_t reference_encode(char *out, const uint8_t *in, size_t len, int url, int pad) {
  const char *alphabet = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                             : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t n = 0, bits = len * 8;
  for (size_t bit = 0; bit < bits; bit += 6) {
    unsigned v = 0;
    for (size_t j = bit; j < bit + 6; j++) {
      unsigned b = j < bits ? (in[j / 8] >> (7 - j % 8)) & 1 : 0;
      v = v << 1 | b;
    }
    out[n++] = alphabet[v];
  }
  while (pad && n % 4 != 0) out[n++] = '=';
  out[n] = '\0';
  return n;
}

TEST(round_trip_every_length) {
  uint8_t in[64];
  for (size_t i = 0; i < sizeof(in); i++) in[i] = (uint8_t)(i * 151 + 7); /* all 6-bit values turn up */
  for (size_t len = 0; len <= sizeof(in); len++) {
    for (size_t f = 0; f < sizeof(kEncodeFlags) / sizeof(kEncodeFlags[0]); f++) {
      unsigned flags = kEncodeFlags[f];
      char text[PKI_BASE64_ENCODED_MAX(64) + 1], want[PKI_BASE64_ENCODED_MAX(64) + 1];
      size_t text_len = 0;
      pki_err err;
      REQUIRE(pki_base64_encode(text, sizeof(text), &text_len, in, len, flags, &err));
      size_t want_len = reference_encode(want, in, len, (flags & PKI_BASE64_URL) != 0,
                                         (flags & PKI_BASE64_PAD_REQUIRED) != 0);
      CHECK(text_len == want_len && strcmp(text, want) == 0);
      uint8_t back[64];
      size_t back_len = 0;
      CHECK(pki_base64_decode(back, sizeof(back), &back_len, text, text_len, flags, &err) &&
            back_len == len && memcmp(back, in, len) == 0);
      CHECK(pki_base64_decode(back, sizeof(back), &back_len, text, text_len, LENIENT, &err) &&
            back_len == len && memcmp(back, in, len) == 0);
      CHECK(pki_base64_max_decoded_len(text_len) >= len);
    }
  }
}

int main(void) {
  RUN(rfc4648_vectors);
  RUN(the_two_alphabets);
  RUN(non_canonical_refused);
  RUN(one_spelling_per_byte_string);
  RUN(bad_characters_and_padding);
  RUN(sizes_and_room);
  RUN(round_trip_every_length);
  return test_finish();
}
