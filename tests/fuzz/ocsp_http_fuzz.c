/* ocsp_http_fuzz: arbitrary bytes as the request-target of a GET to the
 * OCSP responder, through server/http/ocsp_path.c.
 *
 * Percent-decoding and base64 decoding read what anyone on the network
 * sends: they must accept or refuse, never read or write out of bounds
 * (the output buffers here are exactly as large as promised), and what
 * they accept must be consistent: base64 output within 3/4 of the input,
 * percent-decoding never longer than its input, and the path decoder the
 * same as the two steps done by hand. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/http/ocsp_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 16384) return 0;
  const char *in = (const char *)data;

  char *pct = malloc(size + 1);
  size_t pct_len = 0;
  int pct_ok = pkid_percent_decode(pct, &pct_len, in, size);
  if (pct_ok && pct_len > size) abort();

  size_t cap = size / 4 * 3 + 3;
  uint8_t *raw = malloc(cap);
  size_t raw_len = 0;
  if (pkid_ocsp_base64_decode(raw, cap, &raw_len, in, size) && raw_len > cap) abort();
  /* Too small a buffer is refused, not overrun. */
  if (size >= 8) {
    uint8_t *tiny = malloc(1);
    size_t tiny_len;
    if (pkid_ocsp_base64_decode(tiny, 1, &tiny_len, in, size) && tiny_len > 1) abort();
    free(tiny);
  }

  /* The path decoder: prefix "/" over "/" + input equals the steps above
   * when there is no query string. */
  char *path = malloc(size + 1);
  path[0] = '/';
  memcpy(path + 1, in, size);
  uint8_t *der = malloc(4096);
  size_t der_len = 0;
  int path_ok = pkid_ocsp_get_request(der, 4096, &der_len, path, size + 1, "/");
  if (memchr(in, '?', size) == NULL && pct_ok && size <= 8192) {
    uint8_t *again = malloc(4096);
    size_t again_len = 0;
    int ok = pkid_ocsp_base64_decode(again, 4096, &again_len, pct, pct_len);
    if (ok != path_ok || (ok && (again_len != der_len || memcmp(again, der, der_len) != 0))) {
      abort();
    }
    free(again);
  }
  pkid_ocsp_get_request(der, 4096, &der_len, path, size + 1, "/ocsp/");
  free(der);
  free(path);
  free(raw);
  free(pct);
  return 0;
}
