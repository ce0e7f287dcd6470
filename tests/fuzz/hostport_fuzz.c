/* hostport_fuzz: "HOST:PORT" parsing on arbitrary text; whatever parses
 * must format back to an address that parses to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lib/hostport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  char text[128];
  if (len >= sizeof(text)) return 0;
  memcpy(text, data, len);
  text[len] = '\0';
  struct sockaddr_storage a, b;
  pki_err err;
  if (!pki_hostport_parse(&a, text, &err)) return 0;
  char out[PKI_HOSTPORT_MAX];
  pki_hostport_format(out, sizeof(out), (const struct sockaddr *)&a);
  if (!pki_hostport_parse(&b, out, &err) || memcmp(&a, &b, sizeof(a)) != 0) __builtin_trap();
  return 0;
}
