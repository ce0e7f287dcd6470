#include "lib/shamir.h"

#include <stdio.h>
#include <string.h>

#include "tests/unit/test.h"

/* test_crc32 is an independent CRC-32 (IEEE) for making share lines by
 * hand; the library's own is checked through the text it accepts. */
/* gf_ref_mul is a plain shift-and-add product in GF(2^8), as reference. */
static uint8_t gf_ref_mul(uint8_t a, uint8_t b) {
  uint8_t r = 0;
  while (b != 0) {
    if (b & 1) r ^= a;
    a = (uint8_t)((a & 0x80) ? (a << 1) ^ 0x1b : a << 1);
    b >>= 1;
  }
  return r;
}

static uint32_t test_crc32(const char *s) {
  uint32_t crc = 0xffffffff;
  for (; *s != '\0'; s++) {
    crc ^= (uint8_t)*s;
    for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0xedb88320 : crc >> 1;
  }
  return ~crc;
}

/* combine_two rebuilds a one-byte secret from the shares (x1, y1) and
 * (x2, 0) of a 2-of-255 set. Lagrange at 0 gives y1 * x2 / (x1 ^ x2), so
 * with chosen x the result is one field product or one inverse. */
static int combine_two(uint8_t *out, uint8_t x1, uint8_t y1, uint8_t x2) {
  pki_share s[2];
  memset(s, 0, sizeof(s));
  for (int i = 0; i < 2; i++) {
    memcpy(s[i].set_id, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    s[i].m = 2;
    s[i].n = 255;
    s[i].len = 1;
  }
  s[0].x = x1;
  s[0].y[0] = y1;
  s[1].x = x2;
  s[1].y[0] = 0;
  uint8_t buf[PKI_SHAMIR_MAX_SECRET];
  size_t len = 0;
  pki_err err = {0};
  if (!pki_shamir_combine(buf, &len, s, 2, &err) || len != 1) return 0;
  *out = buf[0];
  return 1;
}

static const uint8_t kSecret[32] = {
    0x00, 0x01, 0x02, 0x03, 0x10, 0x20, 0x30, 0x40, 0x53, 0xca, 0xff, 0xfe,
    0x80, 0x7f, 0x55, 0xaa, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67,
    0x89, 0xab, 0xcd, 0xef, 0x11, 0x22, 0x33, 0x44,
};

TEST(gf_known_answers) {
  uint8_t v = 0;
  /* x1 ^ x2 = 1, so the result is y1 * x2. FIPS 197 section 4.2:
   * {57} x {83} = {c1} and {57} x {13} = {fe}; {53} x {ca} = {01}. */
  CHECK(combine_two(&v, 0x82, 0x57, 0x83) && v == 0xc1);
  CHECK(combine_two(&v, 0x12, 0x57, 0x13) && v == 0xfe);
  CHECK(combine_two(&v, 0xcb, 0x53, 0xca) && v == 0x01);
  CHECK(combine_two(&v, 0xca, 0xca, 0xcb) && v == gf_ref_mul(0xca, 0xcb));
  /* x2 = 1 and y1 = 1: the result is the inverse of x1 ^ 1. */
  CHECK(combine_two(&v, 0x52, 0x01, 0x01) && v == 0xca);
  CHECK(combine_two(&v, 0xcb, 0x01, 0x01) && v == 0x53);
  /* Every inverse, against a plain reference multiplication. */
  int bad = 0;
  for (int a = 2; a < 256; a++) {
    if (!combine_two(&v, (uint8_t)(a ^ 1), 1, 1) || gf_ref_mul(v, (uint8_t)a) != 1) bad++;
  }
  CHECK(bad == 0);
}

TEST(crc32_known_answer) {
  /* The standard check value of CRC-32/ISO-HDLC, for the test's copy. */
  CHECK(test_crc32("123456789") == 0xcbf43926);
}

TEST(every_subset_of_3_of_5_rebuilds) {
  pki_share shares[5];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(shares, kSecret, sizeof(kSecret), 3, 5, &err));
  int tried = 0;
  /* Every ordered choice of 3 distinct shares, so order does not matter
   * either; and every choice of 4 and all 5. */
  for (int a = 0; a < 5; a++) {
    for (int b = 0; b < 5; b++) {
      for (int c = 0; c < 5; c++) {
        if (a == b || b == c || a == c) continue;
        pki_share pick[3] = {shares[a], shares[b], shares[c]};
        uint8_t out[PKI_SHAMIR_MAX_SECRET];
        size_t out_len = 0;
        CHECK(pki_shamir_combine(out, &out_len, pick, 3, &err));
        CHECK(out_len == sizeof(kSecret));
        CHECK(memcmp(out, kSecret, sizeof(kSecret)) == 0);
        tried++;
      }
    }
  }
  CHECK(tried == 60);
  for (int skip = 0; skip < 5; skip++) {
    pki_share pick[4];
    int k = 0;
    for (int i = 0; i < 5; i++) {
      if (i != skip) pick[k++] = shares[i];
    }
    uint8_t out[PKI_SHAMIR_MAX_SECRET];
    size_t out_len = 0;
    CHECK(pki_shamir_combine(out, &out_len, pick, 4, &err));
    CHECK(memcmp(out, kSecret, sizeof(kSecret)) == 0);
  }
  uint8_t out[PKI_SHAMIR_MAX_SECRET];
  size_t out_len = 0;
  CHECK(pki_shamir_combine(out, &out_len, shares, 5, &err));
  CHECK(memcmp(out, kSecret, sizeof(kSecret)) == 0);
}

TEST(shares_differ_between_splits) {
  pki_share s1[3], s2[3];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(s1, kSecret, sizeof(kSecret), 2, 3, &err));
  REQUIRE(pki_shamir_split(s2, kSecret, sizeof(kSecret), 2, 3, &err));
  CHECK(memcmp(s1[0].set_id, s2[0].set_id, 8) != 0);
  CHECK(memcmp(s1[0].y, s2[0].y, sizeof(kSecret)) != 0);
  /* No share is the secret itself when M > 1. */
  CHECK(memcmp(s1[0].y, kSecret, sizeof(kSecret)) != 0);
}

TEST(edge_sizes) {
  pki_err err = {0};
  uint8_t secret[PKI_SHAMIR_MAX_SECRET];
  for (size_t i = 0; i < sizeof(secret); i++) secret[i] = (uint8_t)(i * 13);
  uint8_t out[PKI_SHAMIR_MAX_SECRET];
  size_t out_len = 0;

  pki_share one[1];
  REQUIRE(pki_shamir_split(one, secret, 1, 1, 1, &err));
  CHECK(pki_shamir_combine(out, &out_len, one, 1, &err));
  CHECK(out_len == 1 && out[0] == secret[0]);

  static pki_share many[255];
  REQUIRE(pki_shamir_split(many, secret, sizeof(secret), 255, 255, &err));
  CHECK(pki_shamir_combine(out, &out_len, many, 255, &err));
  CHECK(out_len == sizeof(secret) && memcmp(out, secret, sizeof(secret)) == 0);
  CHECK(!pki_shamir_combine(out, &out_len, many + 1, 254, &err));
  CHECK(err.code == PKI_ERR_AUTH);

  pki_share s[3];
  CHECK(!pki_shamir_split(s, secret, 0, 2, 3, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(!pki_shamir_split(s, secret, PKI_SHAMIR_MAX_SECRET + 1, 2, 3, &err));
  CHECK(!pki_shamir_split(s, secret, 16, 4, 3, &err));
  CHECK(!pki_shamir_split(s, secret, 16, 0, 3, &err));
  CHECK(!pki_shamir_split(many, secret, 16, 2, 256, &err));
  CHECK(err.code == PKI_ERR_INVALID);
}

TEST(too_few_shares_refused) {
  pki_share shares[5];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(shares, kSecret, sizeof(kSecret), 3, 5, &err));
  uint8_t out[PKI_SHAMIR_MAX_SECRET];
  size_t out_len = 0;
  CHECK(!pki_shamir_combine(out, &out_len, shares + 1, 2, &err));
  CHECK(err.code == PKI_ERR_AUTH);
  CHECK(strcmp(err.msg, "too few shares: 2 given, 3 needed") == 0);
  CHECK(!pki_shamir_combine(out, &out_len, shares, 0, &err));
  CHECK(err.code == PKI_ERR_AUTH);
}

TEST(mixed_sets_refused) {
  pki_share a[3], b[3];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(a, kSecret, sizeof(kSecret), 2, 3, &err));
  REQUIRE(pki_shamir_split(b, kSecret, sizeof(kSecret), 2, 3, &err));
  pki_share pick[2] = {a[0], b[1]};
  uint8_t out[PKI_SHAMIR_MAX_SECRET];
  size_t out_len = 0;
  CHECK(!pki_shamir_combine(out, &out_len, pick, 2, &err));
  CHECK(err.code == PKI_ERR_AUTH);
  CHECK(strstr(err.msg, "another set") != NULL);

  /* Same set id but different parameters. */
  pki_share c = a[1];
  c.m = 3;
  pki_share pick2[2] = {a[0], c};
  CHECK(!pki_shamir_combine(out, &out_len, pick2, 2, &err));
  CHECK(err.code == PKI_ERR_AUTH);
  c = a[1];
  c.len = 16;
  pki_share pick3[2] = {a[0], c};
  CHECK(!pki_shamir_combine(out, &out_len, pick3, 2, &err));
  CHECK(err.code == PKI_ERR_AUTH);
}

TEST(duplicate_refused) {
  pki_share s[3];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(s, kSecret, sizeof(kSecret), 2, 3, &err));
  pki_share pick[2] = {s[1], s[1]};
  uint8_t out[PKI_SHAMIR_MAX_SECRET];
  size_t out_len = 0;
  CHECK(!pki_shamir_combine(out, &out_len, pick, 2, &err));
  CHECK(err.code == PKI_ERR_AUTH);
  CHECK(strstr(err.msg, "both share number 2") != NULL);
  /* A third, good share does not make a duplicate acceptable. */
  pki_share pick3[3] = {s[0], s[1], s[1]};
  CHECK(!pki_shamir_combine(out, &out_len, pick3, 3, &err));
  CHECK(err.code == PKI_ERR_AUTH);
}

TEST(malformed_struct_refused) {
  pki_share s[3];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(s, kSecret, sizeof(kSecret), 2, 3, &err));
  uint8_t out[PKI_SHAMIR_MAX_SECRET];
  size_t out_len = 0;
  pki_share bad[2] = {s[0], s[1]};
  bad[1].x = 0;
  CHECK(!pki_shamir_combine(out, &out_len, bad, 2, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  bad[1] = s[1];
  bad[1].x = 4; /* beyond N */
  CHECK(!pki_shamir_combine(out, &out_len, bad, 2, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  char text[PKI_SHARE_TEXT_MAX];
  CHECK(!pki_share_encode(text, sizeof(text), &bad[1], &err));
}

TEST(encode_decode_round_trip) {
  pki_share shares[5];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(shares, kSecret, sizeof(kSecret), 3, 5, &err));
  pki_share decoded[5];
  for (int i = 0; i < 5; i++) {
    char text[PKI_SHARE_TEXT_MAX];
    REQUIRE(pki_share_encode(text, sizeof(text), &shares[i], &err));
    CHECK(strncmp(text, "pkid-share-v1:", 14) == 0);
    REQUIRE(pki_share_decode(&decoded[i], text, &err));
    CHECK(memcmp(decoded[i].set_id, shares[i].set_id, 8) == 0);
    CHECK(decoded[i].m == 3 && decoded[i].n == 5 && decoded[i].x == i + 1);
    CHECK(decoded[i].len == sizeof(kSecret));
    CHECK(memcmp(decoded[i].y, shares[i].y, sizeof(kSecret)) == 0);
  }
  uint8_t out[PKI_SHAMIR_MAX_SECRET];
  size_t out_len = 0;
  CHECK(pki_shamir_combine(out, &out_len, decoded + 2, 3, &err));
  CHECK(memcmp(out, kSecret, sizeof(kSecret)) == 0);
}

TEST(longest_share_fits) {
  pki_share s[255];
  uint8_t secret[PKI_SHAMIR_MAX_SECRET] = {0};
  pki_err err = {0};
  REQUIRE(pki_shamir_split(s, secret, sizeof(secret), 255, 255, &err));
  char text[PKI_SHARE_TEXT_MAX];
  REQUIRE(pki_share_encode(text, sizeof(text), &s[254], &err));
  pki_share d;
  CHECK(pki_share_decode(&d, text, &err));
  CHECK(d.x == 255 && d.len == PKI_SHAMIR_MAX_SECRET);
  char small[40];
  CHECK(!pki_share_encode(small, sizeof(small), &s[0], &err));
}

/* A share made by hand, so the text format is pinned down. */
static void make_line(char *out, size_t size, const char *body) {
  snprintf(out, size, "%s:%08x", body, test_crc32(body));
}

TEST(decode_known_text) {
  char line[PKI_SHARE_TEXT_MAX];
  /* The checksum was computed with Python's zlib.crc32. */
  snprintf(line, sizeof(line), "%s",
           "pkid-share-v1:0011223344556677:2:3:1:abcd:3044b08d");
  pki_share s;
  pki_err err = {0};
  REQUIRE(pki_share_decode(&s, line, &err));
  static const uint8_t id[8] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77};
  CHECK(memcmp(s.set_id, id, 8) == 0);
  CHECK(s.m == 2 && s.n == 3 && s.x == 1 && s.len == 2);
  CHECK(s.y[0] == 0xab && s.y[1] == 0xcd);
  char again[PKI_SHARE_TEXT_MAX];
  REQUIRE(pki_share_encode(again, sizeof(again), &s, &err));
  CHECK(strcmp(again, line) == 0);

  /* White space around it is fine; hex in capitals is fine. */
  char padded[PKI_SHARE_TEXT_MAX + 8];
  snprintf(padded, sizeof(padded), "  \t%s\r\n", line);
  CHECK(pki_share_decode(&s, padded, &err));
  for (char *p = line + strlen("pkid-share-v1:"); *p != '\0'; p++) {
    if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
  }
  CHECK(pki_share_decode(&s, line, &err));
  CHECK(s.y[0] == 0xab);
}

static int decode_fails(const char *text) {
  pki_share s;
  pki_err err = {0};
  int ok = pki_share_decode(&s, text, &err);
  return !ok && err.code == PKI_ERR_INVALID && err.msg[0] != '\0';
}

/* decode_body_fails checks that |body| with a correct checksum is refused,
 * so the field checks themselves are tested. */
static int decode_body_fails(const char *body) {
  char line[PKI_SHARE_TEXT_MAX * 2];
  make_line(line, sizeof(line), body);
  return decode_fails(line);
}

TEST(decode_refuses_bad_fields) {
  CHECK(decode_fails(""));
  CHECK(decode_fails("   \n"));
  CHECK(decode_fails("hello"));
  CHECK(decode_body_fails("pkid-share-v2:0011223344556677:2:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:001122334455667:2:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:00112233445566778:2:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:001122334455667g:2:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:0:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:02:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:+2:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:256:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:4:3:1:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:3:4:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:3:0:abcd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:3:1:abc"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:3:1:"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:3:1:ab cd"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:3:1:abcd:ef"));
  CHECK(decode_body_fails("pkid-share-v1:0011223344556677:2:3:abcd"));
  CHECK(decode_body_fails("pkid-share-v1: 0011223344556677:2:3:1:abcd"));
  char long_y[2 * PKI_SHAMIR_MAX_SECRET + 3];
  memset(long_y, 'a', sizeof(long_y) - 1);
  long_y[sizeof(long_y) - 1] = '\0';
  char body[PKI_SHARE_TEXT_MAX * 2];
  snprintf(body, sizeof(body), "pkid-share-v1:0011223344556677:2:3:1:%s",
           long_y);
  CHECK(decode_body_fails(body));
  /* Checksum field itself. */
  CHECK(decode_fails("pkid-share-v1:0011223344556677:2:3:1:abcd:1234567"));
  CHECK(decode_fails("pkid-share-v1:0011223344556677:2:3:1:abcd:123456789"));
  CHECK(decode_fails("pkid-share-v1:0011223344556677:2:3:1:abcd:zzzzzzzz"));
}

TEST(corrupted_text_refused) {
  pki_share s[3];
  pki_err err = {0};
  REQUIRE(pki_shamir_split(s, kSecret, sizeof(kSecret), 2, 3, &err));
  char text[PKI_SHARE_TEXT_MAX];
  REQUIRE(pki_share_encode(text, sizeof(text), &s[1], &err));
  size_t len = strlen(text);
  /* Change each character to another plausible one: every change must be
   * refused, most by the checksum. */
  int accepted = 0;
  for (size_t i = 0; i < len; i++) {
    char saved = text[i];
    text[i] = saved == '1' ? '2' : '1';
    pki_share d;
    if (pki_share_decode(&d, text, &err)) accepted++;
    else CHECK(err.code == PKI_ERR_INVALID);
    text[i] = saved;
  }
  CHECK(accepted == 0);
  /* Transposed neighbours in the value. */
  char *y = strrchr(text, ':') - 4;
  if (y[0] != y[1]) {
    char t = y[0];
    y[0] = y[1];
    y[1] = t;
    pki_share d;
    CHECK(!pki_share_decode(&d, text, &err));
    CHECK(strstr(err.msg, "checksum") != NULL);
  }
  /* Truncated. */
  text[len - 1] = '\0';
  pki_share d;
  CHECK(!pki_share_decode(&d, text, &err));
  /* Trailing garbage after the share. */
  REQUIRE(pki_share_encode(text, sizeof(text), &s[1], &err));
  char longer[PKI_SHARE_TEXT_MAX + 8];
  snprintf(longer, sizeof(longer), "%s x", text);
  CHECK(!pki_share_decode(&d, longer, &err));
}

int main(void) {
  RUN(gf_known_answers);
  RUN(crc32_known_answer);
  RUN(every_subset_of_3_of_5_rebuilds);
  RUN(shares_differ_between_splits);
  RUN(edge_sizes);
  RUN(too_few_shares_refused);
  RUN(mixed_sets_refused);
  RUN(duplicate_refused);
  RUN(malformed_struct_refused);
  RUN(encode_decode_round_trip);
  RUN(longest_share_fits);
  RUN(decode_known_text);
  RUN(decode_refuses_bad_fields);
  RUN(corrupted_text_refused);
  return test_finish();
}
