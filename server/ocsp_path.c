#include "server/ocsp_path.h"

#include <string.h>

/* The longest request-target the responder decodes; the HTTP server's URI
 * limit (4 KiB by default) is below it. */
#define MAX_ENCODED 8192

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int pkid_percent_decode(char *out, size_t *out_len, const char *in, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (in[i] != '%') {
      out[n++] = in[i];
      continue;
    }
    if (len - i < 3) return 0;
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return 0;
    out[n++] = (char)(hi << 4 | lo);
    i += 2;
  }
  *out_len = n;
  return 1;
}

/* b64_value maps both alphabets (and ' ', a '+' that became a space). */
static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-' || c == ' ') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

int pkid_base64_decode(uint8_t *out, size_t out_cap, size_t *out_len, const char *in,
                       size_t len) {
  /* Padding: at most two '=', only at the end of a group of four. */
  size_t pad = 0;
  while (pad < len && pad < 2 && in[len - 1 - pad] == '=') pad++;
  if (pad > 0 && len % 4 != 0) return 0;
  len -= pad;
  if (len % 4 == 1) return 0;
  size_t need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
  if (need > out_cap) return 0;
  uint32_t acc = 0;
  size_t bits = 0, n = 0;
  for (size_t i = 0; i < len; i++) {
    int v = b64_value(in[i]);
    if (v < 0) return 0;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (uint8_t)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  *out_len = n;
  return 1;
}

int pkid_ocsp_get_request(uint8_t *out, size_t out_cap, size_t *out_len, const char *path,
                          size_t path_len, const char *prefix) {
  size_t prefix_len = strlen(prefix);
  if (path_len < prefix_len || memcmp(path, prefix, prefix_len) != 0) return 0;
  const char *rest = path + prefix_len;
  size_t rest_len = path_len - prefix_len;
  const char *q = memchr(rest, '?', rest_len);
  if (q != NULL) rest_len = (size_t)(q - rest);
  if (rest_len > MAX_ENCODED) return 0;
  char decoded[MAX_ENCODED];
  size_t decoded_len;
  if (!pkid_percent_decode(decoded, &decoded_len, rest, rest_len)) return 0;
  return pkid_base64_decode(out, out_cap, out_len, decoded, decoded_len);
}
