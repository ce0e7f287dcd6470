/* acme_request_fuzz: an ACME request payload (JSON), as the server's
 * parsers of server/acme/request.h read it after the JWS verified: every
 * parser runs on every input, and a success must leave what it promises
 * (names lowercased and within bounds, a reason RFC 5280 defines). */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/acme/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  pkid_acme_error type;
  pki_err err;
  pkid_acme_account_req acct;
  if (pkid_acme_parse_account(&acct, data, len, &type, &err)) {
    pkid_acme_account_req_cleanup(&acct);
  }
  static pkid_acme_order_req order;
  if (pkid_acme_parse_order(&order, data, len, &type, &err)) {
    if (order.num_names == 0 || order.num_names > PKID_ACME_MAX_IDENTIFIERS) abort();
    for (size_t i = 0; i < order.num_names; i++) {
      size_t n = strlen(order.names[i]);
      if (n == 0 || n > PKID_ACME_MAX_NAME || order.names[i][0] == '*') abort();
      for (size_t k = 0; k < n; k++) {
        if (isupper((unsigned char)order.names[i][k])) abort();
      }
    }
  }
  uint8_t *der = NULL;
  size_t der_len;
  if (pkid_acme_parse_finalize(&der, &der_len, data, len, &type, &err)) free(der);
  int reason;
  if (pkid_acme_parse_revoke(&der, &der_len, &reason, data, len, &type, &err)) {
    if (reason < 0 || reason > 10 || reason == 7 || reason == 8) abort();
    free(der);
  }
  char *account, *old_key;
  if (pkid_acme_parse_key_change(&account, &old_key, data, len, &type, &err)) {
    free(account);
    free(old_key);
  }
  return 0;
}
