/* http_response_fuzz: arbitrary bytes as an HTTP/1.1 response to pkictl's
 * GET, through lib/http_get.c's reader (http_parser underneath).
 *
 * Whoever answers at a CRL's URL controls these bytes. The reader must
 * accept or refuse, never read or write out of bounds, and keep its
 * promises: a body within the limit, an ETag that is safe to send back
 * (no CR, LF or NUL; quoted), and the same outcome however the bytes are
 * split across reads. The first byte picks the limit and the split. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http_get.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct outcome {
  int ok, done, status;
  size_t body_len;
  uint8_t *body;
  char etag[HTTP_GET_ETAG_MAX];
} outcome;

/* run feeds |data| in pieces of |step| bytes (0: all at once), then EOF. */
static void run(outcome *o, const uint8_t *data, size_t size, size_t step, size_t max_body) {
  http_get_response resp;
  http_get_parser p;
  pki_err err;
  pki_err_clear(&err);
  http_get_parser_init(&p, &resp, max_body);
  int ok = 1;
  size_t off = 0;
  while (ok && off < size) {
    size_t n = step == 0 || size - off < step ? size - off : step;
    ok = http_get_parser_feed(&p, data + off, n, &err);
    off += n;
  }
  if (ok && !p.done) ok = http_get_parser_feed(&p, NULL, 0, &err);
  memset(o, 0, sizeof(*o));
  o->ok = ok;
  o->done = p.done;
  if (ok) {
    if (!p.done) abort(); /* success means a whole response */
    o->status = resp.status;
    o->body_len = resp.body_len;
    o->body = resp.body;
    resp.body = NULL;
    memcpy(o->etag, resp.etag, sizeof(o->etag));
    if (o->body_len > max_body) abort();
    if ((o->body == NULL) != (o->body_len == 0)) abort();
    if (o->body != NULL && o->body[o->body_len] != '\0') abort();
    size_t elen = strnlen(o->etag, sizeof(o->etag));
    if (elen == sizeof(o->etag)) abort();
    if (elen > 0 && (o->etag[elen - 1] != '"' || strpbrk(o->etag, "\r\n ") != NULL)) abort();
  }
  http_get_response_cleanup(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  size_t step = data[0] & 0x0f;
  size_t max_body = (data[0] & 0x80) ? 16 : 4096;
  data++;
  size--;
  outcome whole, split;
  run(&whole, data, size, 0, max_body);
  run(&split, data, size, step == 0 ? 1 : step, max_body);
  /* The split must not change what was read. */
  if (whole.ok != split.ok) abort();
  if (whole.ok && (whole.status != split.status || whole.body_len != split.body_len ||
                   strcmp(whole.etag, split.etag) != 0 ||
                   (whole.body_len > 0 && memcmp(whole.body, split.body, whole.body_len) != 0))) {
    abort();
  }
  free(whole.body);
  free(split.body);
  return 0;
}
