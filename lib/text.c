#include "lib/text.h"

#include <stdio.h>
#include <string.h>

void pki_text_hex(char *out, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

int pki_text_unhex(const char *text, uint8_t *out, size_t n) {
  if (strlen(text) != 2 * n) return 0;
  for (size_t i = 0; i < 2 * n; i++) {
    char c = text[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return 0;
    if (i % 2 == 0) out[i / 2] = (uint8_t)(d << 4);
    else out[i / 2] |= (uint8_t)d;
  }
  return 1;
}

int pki_text_u64(const char *text, uint64_t *out) {
  if (text[0] == '\0' || (text[0] == '0' && text[1] != '\0')) return 0;
  uint64_t v = 0;
  for (const char *c = text; *c != '\0'; c++) {
    if (*c < '0' || *c > '9') return 0;
    unsigned d = (unsigned)(*c - '0');
    if (v > (UINT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  *out = v;
  return 1;
}
