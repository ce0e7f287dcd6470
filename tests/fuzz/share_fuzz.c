/* share_fuzz: pki_share_decode on arbitrary text. A share that decodes must
 * encode back to text that decodes to the same share. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/shamir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The decoder takes a C string: give it a NUL-terminated copy, so that
   * ASan sees any read past the end of the input. */
  char *text = malloc(size + 1);
  if (text == NULL) return 0;
  memcpy(text, data, size);
  text[size] = '\0';

  pki_share share;
  pki_err err = {0};
  if (pki_share_decode(&share, text, &err)) {
    char again[PKI_SHARE_TEXT_MAX];
    pki_share back;
    if (!pki_share_encode(again, sizeof(again), &share, &err) ||
        !pki_share_decode(&back, again, &err) ||
        memcmp(back.set_id, share.set_id, sizeof(share.set_id)) != 0 ||
        back.m != share.m || back.n != share.n || back.x != share.x ||
        back.len != share.len || memcmp(back.y, share.y, share.len) != 0) {
      abort();
    }
  } else if (err.code != PKI_ERR_INVALID || err.msg[0] == '\0') {
    abort();
  }
  free(text);
  return 0;
}
