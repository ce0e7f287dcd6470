#include "lib/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* Reflected form of the Castagnoli polynomial 0x1EDC6F41. */
#define CRC32C_POLY 0x82F63B78u

/* table[k][b] is the CRC of byte b followed by k zero bytes: slicing-by-8
 * folds eight input bytes per step with eight lookups. Built once, at first
 * use, so the source holds no 8 KiB literal. */
static uint32_t table[8][256];
static int have_hw;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void) {
  for (uint32_t b = 0; b < 256; b++) {
    uint32_t c = b;
    for (int i = 0; i < 8; i++) c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
    table[0][b] = c;
  }
  for (uint32_t b = 0; b < 256; b++) {
    for (int k = 1; k < 8; k++) {
      table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xff];
    }
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc32c_sw_raw(uint32_t c, const uint8_t *p, size_t len) {
  while (len > 0 && ((uintptr_t)p & 7) != 0) {
    c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    len--;
  }
  while (len >= 8) {
    /* Little-endian assembly of the word, whatever the host order. */
    uint32_t lo = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                  (uint32_t)p[3] << 24;
    uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                  (uint32_t)p[7] << 24;
    lo ^= c;
    c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
        table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
        table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
        table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len > 0) {
    c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    len--;
  }
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw_raw(uint32_t c, const uint8_t *p, size_t len) {
  while (len > 0 && ((uintptr_t)p & 7) != 0) {
    c = _mm_crc32_u8(c, *p++);
    len--;
  }
  uint64_t c64 = c;
  while (len >= 8) {
    uint64_t v;
    memcpy(&v, p, 8); /* the instruction takes the word in host (little) order */
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    len -= 8;
  }
  c = (uint32_t)c64;
  while (len > 0) {
    c = _mm_crc32_u8(c, *p++);
    len--;
  }
  return c;
}
#endif

uint32_t pki_crc32c_sw(uint32_t crc, const void *data, size_t len) {
  pthread_once(&init_once, crc32c_init);
  return ~crc32c_sw_raw(~crc, data, len);
}

uint32_t pki_crc32c(uint32_t crc, const void *data, size_t len) {
  pthread_once(&init_once, crc32c_init);
#if defined(__x86_64__)
  if (have_hw) return ~crc32c_hw_raw(~crc, data, len);
#endif
  return ~crc32c_sw_raw(~crc, data, len);
}

int pki_crc32c_hw_available(void) {
  pthread_once(&init_once, crc32c_init);
  return have_hw;
}
