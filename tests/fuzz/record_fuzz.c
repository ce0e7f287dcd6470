/* record_fuzz: lib/record's parser on arbitrary payloads of every type
 * (the first octet picks it), and what parses through lib/audit's JSON
 * and filter: the JSON must hold no raw control character and be one
 * object, whatever a record holds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>

#include "lib/audit.h"
#include "lib/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  if (len < 1) return 0;
  pki_journal_record r = {.seq = 7, .time = 1795000000123u, .type = data[0],
                          .payload = data + 1, .len = len - 1};
  pki_parsed_record p;
  pki_err err;
  if (!pki_record_parse(&r, &p, &err)) return 0;
  char *json;
  size_t json_len;
  if (!pki_audit_json(&r, &p, &json, &json_len, &err)) return 0;
  if (json_len < 2 || json[0] != '{' || json[json_len - 1] != '}' || strlen(json) != json_len) {
    abort();
  }
  for (size_t i = 0; i < json_len; i++) {
    if ((unsigned char)json[i] < 0x20) abort();
  }
  OPENSSL_free(json);
  pki_audit_filter f = {.service = "redis", .serial = "0a", .kind = "issue"};
  pki_audit_match(&f, &r, &p);
  return 0;
}
