/* audit_test: lib/record's EVENT and ISSUE (version 2) records and
 * lib/audit's reading of them: the JSON form field by field, escaping
 * whatever a hostile name holds into valid JSON, the filter's rules, and
 * records of a newer pkid refused rather than misread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "lib/audit.h"
#include "lib/record.h"
#include "tests/unit/test.h"

/* A refusal: 40 of them, identity |who|, detail |detail|. */
static size_t event_payload(uint8_t *out, size_t size, uint8_t version, uint8_t kind,
                            const char *who, const char *detail) {
  CBB cbb, c;
  size_t len;
  CBB_init_fixed(&cbb, out, size);
  CBB_add_u8(&cbb, version);
  CBB_add_u8(&cbb, kind);
  CBB_add_u8(&cbb, PKI_OUTCOME_REFUSED);
  CBB_add_u16_length_prefixed(&cbb, &c);
  CBB_add_bytes(&c, (const uint8_t *)who, strlen(who));
  CBB_add_u8_length_prefixed(&cbb, &c);
  CBB_add_bytes(&c, (const uint8_t *)"redis", 5);
  CBB_add_u8_length_prefixed(&cbb, &c);
  CBB_add_u8(&c, 0x0a);
  CBB_add_u8(&c, 0x1b);
  CBB_add_u32(&cbb, 40);
  CBB_add_u64(&cbb, 1795000000);
  CBB_add_u64(&cbb, 1795000009);
  CBB_add_u16_length_prefixed(&cbb, &c);
  CBB_add_bytes(&c, (const uint8_t *)detail, strlen(detail));
  if (!CBB_finish(&cbb, NULL, &len)) return 0;
  return len;
}

static char *json_of(const pki_journal_record *r, pki_parsed_record *p) {
  pki_err err;
  char *json = NULL;
  size_t len;
  if (!pki_record_parse(r, p, &err) || !pki_audit_json(r, p, &json, &len, &err)) return NULL;
  return json;
}

TEST(event_reads_as_json_in_field_order) {
  uint8_t buf[512];
  size_t len = event_payload(buf, sizeof(buf), 1, PKI_EVENT_REFUSED,
                             "spiffe://cybersec-framework.local/infrastructure/redis",
                             "Issue: PERMISSION_DENIED: no");
  REQUIRE(len > 0);
  pki_journal_record r = {.seq = 12, .time = 1795000009123u, .type = PKI_REC_EVENT,
                          .payload = buf, .len = len};
  pki_parsed_record p;
  char *json = json_of(&r, &p);
  REQUIRE(json != NULL);
  CHECK(strcmp(json,
               "{\"seq\":12,\"time\":\"2026-11-18T11:06:49.123Z\",\"kind\":\"refused\","
               "\"outcome\":\"refused\",\"identity\":"
               "\"spiffe://cybersec-framework.local/infrastructure/redis\",\"service\":\"redis\","
               "\"serial\":\"0a1b\",\"count\":40,\"first\":\"2026-11-18T11:06:40Z\","
               "\"last\":\"2026-11-18T11:06:49Z\",\"detail\":\"Issue: PERMISSION_DENIED: no\"}") ==
        0);
  OPENSSL_free(json);
}

TEST(hostile_strings_stay_valid_json) {
  uint8_t buf[512];
  /* A quote, a backslash, a newline, DEL, an octet that is not UTF-8, an
   * overlong '/', a surrogate, and a real two-octet character. */
  size_t len = event_payload(buf, sizeof(buf), 1, PKI_EVENT_REFUSED, "a\"b\\c\nd\x7f",
                             "\xff \xc0\xaf \xed\xa0\x80 \xc3\xa9");
  REQUIRE(len > 0);
  pki_journal_record r = {.seq = 1, .time = 1000, .type = PKI_REC_EVENT, .payload = buf,
                          .len = len};
  pki_parsed_record p;
  char *json = json_of(&r, &p);
  REQUIRE(json != NULL);
  CHECK(strstr(json, "\"identity\":\"a\\\"b\\\\c\\u000ad\\u007f\"") != NULL);
  CHECK(strstr(json, "\"detail\":\"\\u00ff \\u00c0\\u00af \\u00ed\\u00a0\\u0080 \xc3\xa9\"") !=
        NULL);
  OPENSSL_free(json);
}

TEST(filter_rules) {
  uint8_t buf[512];
  size_t len = event_payload(buf, sizeof(buf), 1, PKI_EVENT_REFUSED, "spiffe://x/redis", "d");
  pki_journal_record r = {.seq = 1, .time = 5000, .type = PKI_REC_EVENT, .payload = buf,
                          .len = len};
  pki_parsed_record p;
  pki_err err;
  REQUIRE(pki_record_parse(&r, &p, &err));
  pki_audit_filter f;
  memset(&f, 0, sizeof(f));
  CHECK(pki_audit_match(&f, &r, &p));
  f.serial = "A1B";  /* the serial 0a1b: leading zeros and case do not matter */
  CHECK(pki_audit_match(&f, &r, &p));
  f.serial = "00a1b";
  CHECK(pki_audit_match(&f, &r, &p));
  f.serial = "a1c";
  CHECK(!pki_audit_match(&f, &r, &p));
  memset(&f, 0, sizeof(f));
  f.kind = "refused";
  f.service = "redis";
  f.identity = "spiffe://x/redis";
  CHECK(pki_audit_match(&f, &r, &p));
  f.service = "redi"; /* exact, not a prefix */
  CHECK(!pki_audit_match(&f, &r, &p));
  memset(&f, 0, sizeof(f));
  f.from_ms = 5000;
  f.to_ms = 5001;
  CHECK(pki_audit_match(&f, &r, &p));
  f.from_ms = 5001;
  CHECK(!pki_audit_match(&f, &r, &p));
  f.from_ms = 0;
  f.to_ms = 5000; /* until is exclusive */
  CHECK(!pki_audit_match(&f, &r, &p));
}

TEST(issue_version_2_names_what_it_renews) {
  uint8_t buf[512];
  CBB cbb, c;
  size_t len;
  CBB_init_fixed(&cbb, buf, sizeof(buf));
  CBB_add_u8(&cbb, 2);
  CBB_add_u8_length_prefixed(&cbb, &c);
  CBB_add_u8(&c, 0x42);
  CBB_add_u8_length_prefixed(&cbb, &c);
  CBB_add_bytes(&c, (const uint8_t *)"agents-ca", 9);
  CBB_add_u8_length_prefixed(&cbb, &c);
  CBB_add_bytes(&c, (const uint8_t *)"redis", 5);
  CBB_add_u16_length_prefixed(&cbb, &c);
  CBB_add_bytes(&c, (const uint8_t *)"me", 2);
  CBB_add_u8(&cbb, 2);
  CBB_add_u64(&cbb, 1795000000);
  CBB_add_u64(&cbb, 1797000000);
  for (int i = 0; i < 32; i++) CBB_add_u8(&cbb, 0x11);
  CBB_add_u24_length_prefixed(&cbb, &c);
  CBB_add_bytes(&c, (const uint8_t *)"DER", 3);
  REQUIRE(CBB_flush(&cbb));
  size_t v1_len = CBB_len(&cbb);
  CBB_add_u8_length_prefixed(&cbb, &c);
  CBB_add_u8(&c, 0x41);
  REQUIRE(CBB_finish(&cbb, NULL, &len));
  pki_journal_record r = {.seq = 3, .time = 1000, .type = PKI_REC_ISSUE, .payload = buf,
                          .len = len};
  pki_parsed_record p;
  char *json = json_of(&r, &p);
  REQUIRE(json != NULL);
  CHECK(strstr(json, "\"kind\":\"renew\"") != NULL);
  CHECK(strstr(json, "\"serial\":\"42\",\"ca\":\"agents-ca\",\"renews\":\"41\"") != NULL);
  CHECK(strstr(json, "\"usage\":\"client\",\"not_before\":\"2026-11-18T11:06:40Z\"") != NULL);
  OPENSSL_free(json);
  /* Version 1 (before renewals were told apart) is an issuance. */
  buf[0] = 1;
  r.len = v1_len;
  json = json_of(&r, &p);
  REQUIRE(json != NULL);
  CHECK(strstr(json, "\"kind\":\"issue\"") != NULL && strstr(json, "renews") == NULL);
  OPENSSL_free(json);
}

TEST(newer_or_malformed_records_are_refused) {
  uint8_t buf[512];
  size_t len = event_payload(buf, sizeof(buf), 2, PKI_EVENT_RELOAD, "x", "y");
  pki_journal_record r = {.seq = 1, .time = 1, .type = PKI_REC_EVENT, .payload = buf,
                          .len = len};
  pki_parsed_record p;
  pki_err err;
  CHECK(!pki_record_parse(&r, &p, &err) && err.code == PKI_ERR_UNSUPPORTED);
  r.type = 7;
  CHECK(!pki_record_parse(&r, &p, &err) && err.code == PKI_ERR_UNSUPPORTED);
  /* A trailing octet, a count of 0, a window that ends before it begins. */
  len = event_payload(buf, sizeof(buf), 1, PKI_EVENT_RELOAD, "x", "y");
  r.type = PKI_REC_EVENT;
  r.len = len + 1;
  CHECK(!pki_record_parse(&r, &p, &err) && err.code == PKI_ERR_INVALID);
  r.len = len;
  CHECK(pki_record_parse(&r, &p, &err));
  size_t count_at = len - 2 - 1 - 8 - 8 - 4; /* detail "y", two times, the count */
  memset(buf + count_at, 0, 4);
  CHECK(!pki_record_parse(&r, &p, &err) && err.code == PKI_ERR_INVALID);
  /* An event kind this pkid does not know still reads, by number. */
  len = event_payload(buf, sizeof(buf), 1, 99, "x", "y");
  r.len = len;
  char *json = json_of(&r, &p);
  REQUIRE(json != NULL);
  CHECK(strstr(json, "\"kind\":\"event_99\"") != NULL);
  OPENSSL_free(json);
}

int main(void) {
  RUN(event_reads_as_json_in_field_order);
  RUN(hostile_strings_stay_valid_json);
  RUN(filter_rules);
  RUN(issue_version_2_names_what_it_renews);
  RUN(newer_or_malformed_records_are_refused);
  return test_finish();
}
