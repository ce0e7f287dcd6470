/* ceremony_log_fuzz: the ceremony log's line parser on arbitrary octets;
 * a line that parses must format back to the same octets. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ceremony_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  pki_ceremony_entry e;
  pki_err err;
  if (pki_ceremony_line_parse((const char *)data, len, &e, &err)) {
    char line[PKI_CEREMONY_LINE_MAX];
    size_t n = pki_ceremony_line_format(line, &e);
    if (n != len + 1 || memcmp(line, data, len) != 0) abort();
  }
  return 0;
}
