#include "client/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cli_parse_u64(uint64_t *out, const char *text, uint64_t min, uint64_t max) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) return 0;
  *out = v;
  return 1;
}

pkc_key_type cli_key_type(const pki_catalog_service *svc) {
  switch (svc->key_type) {
    case PKI_KEY_ECDSA_P384: return PKC_KEY_ECDSA_P384;
    case PKI_KEY_ED25519: return PKC_KEY_ED25519;
    case PKI_KEY_RSA:
      return svc->key_bits >= 4096 ? PKC_KEY_RSA_4096
             : svc->key_bits >= 3072 ? PKC_KEY_RSA_3072
                                     : PKC_KEY_RSA_2048;
    default: return PKC_KEY_ECDSA_P256;
  }
}

void cli_format_time(char *out, size_t size, int64_t t) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (gmtime_r(&tt, &tm) == NULL) {
    snprintf(out, size, "-");
    return;
  }
  strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void cli_on_stop_signals(void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
}
