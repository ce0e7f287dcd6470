/* pem_fuzz: lib/pem's reader on arbitrary text, with and without the DER
 * fallback. What it reads must survive a round trip through the writer;
 * what it takes for DER must be the text itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/pem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

static const char *const kLabels[] = {"CERTIFICATE", "PRIVATE KEY", "CERTIFICATE REQUEST"};
#define NUM_LABELS (sizeof(kLabels) / sizeof(kLabels[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  for (unsigned flags = 0; flags <= PKI_PEM_OR_DER; flags++) {
    uint8_t *der = NULL;
    size_t der_len = 0;
    const char *label = NULL;
    pki_err err;
    if (!pki_pem_decode(&der, &der_len, &label, kLabels, NUM_LABELS, data, len, flags, &err)) {
      if (der != NULL || err.code == PKI_OK) abort();
      continue;
    }
    if (label == NULL) {
      if (!(flags & PKI_PEM_OR_DER) || der_len != len || memcmp(der, data, len) != 0) abort();
      free(der);
      continue;
    }
    char *text = NULL;
    size_t text_len = 0;
    uint8_t *back = NULL;
    size_t back_len = 0;
    const char *back_label = NULL;
    if (!pki_pem_append(&text, &text_len, label, der, der_len, &err) ||
        !pki_pem_decode(&back, &back_len, &back_label, kLabels, NUM_LABELS,
                        (const uint8_t *)text, text_len, 0, &err) ||
        back_label != label || back_len != der_len || memcmp(back, der, der_len) != 0) {
      abort();
    }
    free(back);
    free(text);
    free(der);
  }
  return 0;
}
