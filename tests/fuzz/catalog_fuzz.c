/* catalog_fuzz: arbitrary bytes as a catalogue.
 *
 * Loading must either succeed or fail with a message; never crash, leak or
 * read out of bounds, whatever the YAML (aliases, tags, deep nesting, huge
 * numbers, NUL bytes). A catalogue that loads must answer its look-ups. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pki_err err;
  pki_err_clear(&err);
  pki_catalog *cat =
      pki_catalog_load_mem("fuzz.yaml", (const char *)data, size, &err);
  if (cat == NULL) {
    /* Every failure is bad input (or out of memory) and says what is
     * wrong. */
    if ((err.code != PKI_ERR_INVALID && err.code != PKI_ERR_INTERNAL && err.code != PKI_ERR_EXHAUSTED) ||
        err.msg[0] == '\0') {
      abort();
    }
    return 0;
  }
  if (pki_catalog_root(cat) == NULL) abort();
  for (size_t i = 0; i < cat->num_services; i++) {
    const pki_catalog_service *s = &cat->services[i];
    if (pki_catalog_find_service(cat, s->name) != s ||
        pki_catalog_find_identity(cat, s->identity) != s ||
        pki_catalog_find_ca(cat, s->ca) == NULL) {
      abort();
    }
  }
  pki_catalog_free(cat);
  return 0;
}
