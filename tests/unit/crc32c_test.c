#include "lib/crc32c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/test.h"

TEST(known_answers) {
  CHECK(pki_crc32c(0, "123456789", 9) == 0xE3069283u);
  CHECK(pki_crc32c_sw(0, "123456789", 9) == 0xE3069283u);
  CHECK(pki_crc32c(0, "", 0) == 0);
  /* RFC 3720 (iSCSI) B.4 test vectors. */
  uint8_t buf[32];
  memset(buf, 0, sizeof(buf));
  CHECK(pki_crc32c(0, buf, 32) == 0x8A9136AAu);
  CHECK(pki_crc32c_sw(0, buf, 32) == 0x8A9136AAu);
  memset(buf, 0xff, sizeof(buf));
  CHECK(pki_crc32c(0, buf, 32) == 0x62A8AB43u);
  for (int i = 0; i < 32; i++) buf[i] = (uint8_t)i;
  CHECK(pki_crc32c(0, buf, 32) == 0x46DD794Eu);
  for (int i = 0; i < 32; i++) buf[i] = (uint8_t)(31 - i);
  CHECK(pki_crc32c(0, buf, 32) == 0x113FDB5Cu);
}

TEST(incremental_equals_whole) {
  const char *s = "The quick brown fox jumps over the lazy dog, twice over.";
  size_t n = strlen(s);
  uint32_t whole = pki_crc32c(0, s, n);
  for (size_t cut = 0; cut <= n; cut++) {
    CHECK(pki_crc32c(pki_crc32c(0, s, cut), s + cut, n - cut) == whole);
    CHECK(pki_crc32c_sw(pki_crc32c_sw(0, s, cut), s + cut, n - cut) == whole);
  }
}

/* Random lengths and misalignments: the hardware path (when present) and
 * the slicing-by-8 path must agree byte for byte. */
TEST(hardware_and_software_agree) {
  printf("  hardware crc32c: %s\n", pki_crc32c_hw_available() ? "yes" : "no");
  enum { MAX = 4096 };
  uint8_t *buf = malloc(MAX + 8);
  REQUIRE(buf != NULL);
  uint32_t x = 12345;
  for (int i = 0; i < MAX + 8; i++) {
    x = x * 1103515245u + 12345u;
    buf[i] = (uint8_t)(x >> 16);
  }
  for (int trial = 0; trial < 2000; trial++) {
    x = x * 1103515245u + 12345u;
    size_t len = (x >> 8) % MAX;
    size_t shift = (x >> 4) % 8;
    uint32_t seed = trial % 3 == 0 ? 0 : x;
    CHECK(pki_crc32c(seed, buf + shift, len) ==
          pki_crc32c_sw(seed, buf + shift, len));
  }
  free(buf);
}

int main(void) {
  RUN(known_answers);
  RUN(incremental_equals_whole);
  RUN(hardware_and_software_agree);
  return test_finish();
}
