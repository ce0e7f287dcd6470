#include "server/http/ocsp_path.h"

#include <string.h>

#include "lib/base64.h"

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

int pkid_ocsp_base64_decode(uint8_t *out, size_t out_cap, size_t *out_len, const char *in,
                            size_t len) {
  if (len > MAX_ENCODED) return 0;
  char text[MAX_ENCODED];
  for (size_t i = 0; i < len; i++) text[i] = in[i] == ' ' ? '+' : in[i];
  pki_err err;
  return pki_base64_decode(out, out_cap, out_len, text, len,
                           PKI_BASE64_ANY_ALPHABET | PKI_BASE64_PAD_OPTIONAL, &err);
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
  return pkid_ocsp_base64_decode(out, out_cap, out_len, decoded, decoded_len);
}
