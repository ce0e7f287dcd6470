/* base64_fuzz: lib/base64's decoder on arbitrary text under every
 * alphabet and padding rule. Whatever decodes must encode back to the same
 * text, up to the leniency the flags allow (the other alphabet, padding
 * left out), so that each byte string has one spelling; and the output
 * must fit the sizes the header promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

#define MAX_TEXT 4096

static const unsigned kAlphabets[] = {PKI_BASE64_STD, PKI_BASE64_URL,
                                      PKI_BASE64_ANY_ALPHABET};
static const unsigned kPaddings[] = {PKI_BASE64_PAD_REQUIRED, PKI_BASE64_PAD_OPTIONAL,
                                     PKI_BASE64_NO_PAD};

/* check_round_trip encodes |bytes| again and compares with |text|. */
static void check_round_trip(const char *text, size_t len, const uint8_t *bytes,
                             size_t num_bytes, unsigned alphabet, unsigned padding) {
  /* With both alphabets, compare in the standard one. */
  static char want[MAX_TEXT], got[MAX_TEXT + 4];
  memcpy(want, text, len);
  if (alphabet == PKI_BASE64_ANY_ALPHABET) {
    for (size_t i = 0; i < len; i++) {
      if (want[i] == '-') want[i] = '+';
      if (want[i] == '_') want[i] = '/';
    }
    alphabet = PKI_BASE64_STD;
  }
  int padded = padding == PKI_BASE64_PAD_REQUIRED ||
               (padding == PKI_BASE64_PAD_OPTIONAL && len > 0 && text[len - 1] == '=');
  size_t got_len;
  pki_err err;
  if (!pki_base64_encode(got, sizeof(got), &got_len, bytes, num_bytes,
                         alphabet | (padded ? PKI_BASE64_PAD_REQUIRED : PKI_BASE64_NO_PAD),
                         &err)) {
    abort();
  }
  if (got_len != len || memcmp(got, want, len) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  if (len > MAX_TEXT) return 0;
  const char *text = (const char *)data;
  static uint8_t out[MAX_TEXT];
  size_t max = pki_base64_max_decoded_len(len);
  for (size_t a = 0; a < sizeof(kAlphabets) / sizeof(kAlphabets[0]); a++) {
    for (size_t p = 0; p < sizeof(kPaddings) / sizeof(kPaddings[0]); p++) {
      unsigned flags = kAlphabets[a] | kPaddings[p];
      size_t out_len = 0;
      pki_err err;
      if (!pki_base64_decode(out, sizeof(out), &out_len, text, len, flags, &err)) {
        if (err.code != PKI_ERR_INVALID) abort();
        continue;
      }
      if (out_len > max) abort();
      check_round_trip(text, len, out, out_len, kAlphabets[a], kPaddings[p]);
      /* Exactly enough room is enough; one byte less is not. */
      size_t again_len;
      if (!pki_base64_decode(out, out_len, &again_len, text, len, flags, &err) ||
          again_len != out_len) {
        abort();
      }
      if (out_len > 0 && pki_base64_decode(out, out_len - 1, &again_len, text, len, flags, &err)) {
        abort();
      }
    }
  }
  /* Flags that name no padding rule are refused. */
  size_t out_len;
  pki_err err;
  if (pki_base64_decode(out, sizeof(out), &out_len, text, len, PKI_BASE64_STD, &err)) abort();
  return 0;
}
