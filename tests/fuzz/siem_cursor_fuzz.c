/* siem_cursor_fuzz: the SIEM feed's cursor file parser on arbitrary
 * octets; what parses must format back to the same octets. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/audit/siem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  pki_journal_pos pos;
  pki_err err;
  if (pkid_siem_cursor_parse(data, len, &pos, &err)) {
    char text[PKID_SIEM_CURSOR_MAX];
    size_t n = pkid_siem_cursor_format(text, &pos);
    if (n != len || memcmp(text, data, len) != 0) abort();
  }
  return 0;
}
