/* csr_fuzz: arbitrary bytes as a DER certification request.
 *
 * pki_csr_parse must either accept the request or refuse it with one of
 * its documented codes and a message; never crash, leak or read out of
 * bounds. A request it accepts must hold a key of an accepted type and
 * names that pass pkid's own checks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pki_csr csr;
  pki_err err;
  pki_err_clear(&err);
  if (!pki_csr_parse(&csr, data, size, &err)) {
    if ((err.code != PKI_ERR_INVALID && err.code != PKI_ERR_UNSUPPORTED &&
         err.code != PKI_ERR_AUTH && err.code != PKI_ERR_INTERNAL && err.code != PKI_ERR_EXHAUSTED) ||
        err.msg[0] == '\0') {
      abort();
    }
    return 0;
  }
  if (csr.key == NULL || csr.key_type == PKI_KEY_NONE ||
      (csr.num_names > 0) != (csr.names != NULL)) {
    abort();
  }
  for (size_t i = 0; i < csr.num_names; i++) {
    pki_err_clear(&err);
    if (!pki_name_check(csr.names[i].type, csr.names[i].value, &err)) abort();
  }
  pki_csr_cleanup(&csr);
  return 0;
}
