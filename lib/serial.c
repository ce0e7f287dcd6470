#include "lib/serial.h"

#include <string.h>

#include <openssl/rand.h>

int pki_serial_make(pki_serial *out, uint16_t node, uint64_t seq, pki_err *err) {
  (void)err; /* RAND_bytes aborts rather than fail in BoringSSL */
  uint8_t *p = out->bytes;
  p[0] = 0x01;
  p[1] = (uint8_t)(node >> 8);
  p[2] = (uint8_t)node;
  for (int i = 0; i < 8; i++) p[3 + i] = (uint8_t)(seq >> (56 - 8 * i));
  RAND_bytes(p + 11, 8);
  out->len = PKI_SERIAL_LEN;
  return 1;
}

void pki_serial_to_hex(char *out, const pki_serial *serial) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < serial->len; i++) {
    out[2 * i] = hex[serial->bytes[i] >> 4];
    out[2 * i + 1] = hex[serial->bytes[i] & 0xf];
  }
  out[2 * serial->len] = '\0';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int pki_serial_from_hex(pki_serial *out, const char *hex, pki_err *err) {
  uint8_t buf[2 * PKI_SERIAL_MAX + 2];
  size_t n = 0;
  for (const char *c = hex; *c != '\0'; c++) {
    if (*c == ':') continue;
    int v = hexval(*c);
    if (v < 0 || n >= sizeof(buf)) {
      PKI_ERR(err, PKI_ERR_INVALID, "serial '%.64s' is not hex of at most %d octets",
              hex, PKI_SERIAL_MAX);
      return 0;
    }
    buf[n++] = (uint8_t)v;
  }
  /* An odd count of digits has an implied leading zero. */
  size_t odd = n % 2, len = (n + 1) / 2;
  if (n == 0 || len > PKI_SERIAL_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "serial '%.64s' must be 1 to %d octets", hex,
            PKI_SERIAL_MAX);
    return 0;
  }
  memset(out, 0, sizeof(*out));
  for (size_t i = 0; i < len; i++) {
    uint8_t hi = (i == 0 && odd) ? 0 : buf[2 * i - odd];
    uint8_t lo = buf[2 * i + 1 - odd];
    out->bytes[i] = (uint8_t)(hi << 4 | lo);
  }
  out->len = len;
  /* Strip leading zero octets: a serial is compared as the INTEGER's value. */
  size_t skip = 0;
  while (skip + 1 < out->len && out->bytes[skip] == 0) skip++;
  memmove(out->bytes, out->bytes + skip, out->len - skip);
  out->len -= skip;
  if (out->len == 1 && out->bytes[0] == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "serial must be positive");
    return 0;
  }
  return 1;
}
