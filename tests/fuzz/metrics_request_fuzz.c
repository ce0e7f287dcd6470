/* metrics_request_fuzz: arbitrary bytes as an HTTP/1.1 request to the
 * /metrics page of `pkictl agent` and `pkictl lb watch`, through
 * client/metrics_http.c's router (http_parser underneath).
 *
 * Anyone who reaches --metrics-listen controls these bytes. The router
 * must answer or ask for more, never read out of bounds; and since the
 * server routes the bytes received so far each time more arrive, any
 * answer given for a prefix must stay the answer for the whole. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "client/metrics_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 2048) return 0; /* the prefix check below is quadratic */
  const char *req = (const char *)data;
  metrics_http_answer whole = metrics_http_route(req, size);
  if (whole > METRICS_HTTP_INCOMPLETE) abort();
  /* The first prefix that is answered decides; the server stops there. */
  for (size_t n = 0; n <= size; n++) {
    metrics_http_answer a = metrics_http_route(req, n);
    if (a == METRICS_HTTP_INCOMPLETE) continue;
    if (a != whole) abort();
    break;
  }
  return 0;
}
