/* audit.c: journal records as audit events (see audit.h). */
#include "lib/audit.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/crl.h"
#include "lib/usage.h"

static const char *const kEventNames[] = {
    [PKI_EVENT_REFUSED] = "refused",         [PKI_EVENT_RELOAD] = "reload",
    [PKI_EVENT_LB_ROTATION] = "lb_rotation", [PKI_EVENT_CEREMONY] = "ceremony",
    [PKI_EVENT_EAB_CREATED] = "eab_created", [PKI_EVENT_EAB_USED] = "eab_used",
    [PKI_EVENT_ACME_ACCOUNT] = "acme_account",
};

const char *pki_audit_kind_name(const pki_parsed_record *rec, char *buf, size_t size) {
  switch (rec->type) {
    case PKI_REC_SERIAL_BLOCK: return "serial_block";
    case PKI_REC_ISSUE: return rec->renews.len > 0 ? "renew" : "issue";
    case PKI_REC_REVOKE: return "revoke";
    case PKI_REC_TOKEN: return "token_used";
    case PKI_REC_CRL: return "crl";
    case PKI_REC_EVENT:
      if (rec->event_kind < sizeof(kEventNames) / sizeof(kEventNames[0]) &&
          kEventNames[rec->event_kind] != NULL) {
        return kEventNames[rec->event_kind];
      }
      snprintf(buf, size, "event_%u", rec->event_kind);
      return buf;
  }
  snprintf(buf, size, "record_%u", rec->type);
  return buf;
}

const char *pki_audit_outcome(const pki_parsed_record *rec) {
  if (rec->type != PKI_REC_EVENT) return "ok";
  switch (rec->event_outcome) {
    case PKI_OUTCOME_REFUSED: return "refused";
    case PKI_OUTCOME_FAILED: return "failed";
    default: return "ok";
  }
}

/* bytes_eq compares a payload string with a C string. */
static int bytes_eq(pki_bytes b, const char *s) {
  return strlen(s) == b.len && memcmp(b.data, s, b.len) == 0;
}

/* serial_eq compares a serial with hex text as numbers: any case, leading
 * zeros or not ("0a1b" and "a1b" name one serial). */
static int serial_eq(const pki_serial *serial, const char *hex) {
  static const char digits[] = "0123456789abcdef";
  char mine[2 * PKI_SERIAL_MAX + 1];
  size_t n = 0;
  for (size_t i = 0; i < serial->len; i++) {
    mine[n++] = digits[serial->bytes[i] >> 4];
    mine[n++] = digits[serial->bytes[i] & 15];
  }
  mine[n] = '\0';
  const char *a = mine, *b = hex;
  while (*a == '0') a++;
  while (*b == '0') b++;
  if (strlen(a) != strlen(b)) return 0;
  for (; *a != '\0'; a++, b++) {
    if (tolower((unsigned char)*b) != *a) return 0;
  }
  return 1;
}

int pki_audit_match(const pki_audit_filter *f, const pki_journal_record *r,
                    const pki_parsed_record *p) {
  char buf[32];
  if (f->from_ms != 0 && r->time < f->from_ms) return 0;
  if (f->to_ms != 0 && r->time >= f->to_ms) return 0;
  if (f->kind != NULL && strcmp(f->kind, pki_audit_kind_name(p, buf, sizeof(buf))) != 0) {
    return 0;
  }
  if (f->service != NULL && !bytes_eq(p->service, f->service)) return 0;
  if (f->identity != NULL && !bytes_eq(p->identity, f->identity)) return 0;
  if (f->serial != NULL && (p->serial.len == 0 || !serial_eq(&p->serial, f->serial))) return 0;
  return 1;
}

/* --- JSON ------------------------------------------------------------------ */

/* utf8_len is the length of the UTF-8 sequence at |p| (at most |n|
 * octets), or 0 if it is not one (RFC 3629 section 4: no overlongs, no
 * surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const uint8_t *p, size_t n) {
  if (p[0] < 0x80) return 1;
  size_t len = p[0] >= 0xc2 && p[0] <= 0xdf   ? 2
               : p[0] >= 0xe0 && p[0] <= 0xef ? 3
               : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
                                              : 0;
  if (len == 0 || len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
  }
  if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
      (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90)) {
    return 0;
  }
  return len;
}

/* add_json_string writes |len| octets as a JSON string (RFC 8259 section
 * 7): quotes and backslashes escaped, control characters and octets that
 * are not UTF-8 as \u00XX. */
static int add_json_string(CBB *cbb, const uint8_t *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  if (!CBB_add_u8(cbb, '"')) return 0;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_len(s + i, len - i);
    uint8_t c = s[i];
    if (n > 1) {
      if (!CBB_add_bytes(cbb, s + i, n)) return 0;
      i += n;
      continue;
    }
    if (c == '"' || c == '\\') {
      if (!CBB_add_u8(cbb, '\\') || !CBB_add_u8(cbb, c)) return 0;
    } else if (n == 1 && c >= 0x20 && c != 0x7f) {
      if (!CBB_add_u8(cbb, c)) return 0;
    } else {
      uint8_t esc[6] = {'\\', 'u', '0', '0', (uint8_t)hex[c >> 4], (uint8_t)hex[c & 15]};
      if (!CBB_add_bytes(cbb, esc, sizeof(esc))) return 0;
    }
    i++;
  }
  return CBB_add_u8(cbb, '"');
}

static int add_text(CBB *cbb, const char *s) {
  return CBB_add_bytes(cbb, (const uint8_t *)s, strlen(s));
}

/* add_key writes ,"key": (no comma before the first field). */
static int add_key(CBB *cbb, const char *key) {
  return (CBB_len(cbb) <= 1 || CBB_add_u8(cbb, ',')) && CBB_add_u8(cbb, '"') &&
         add_text(cbb, key) && add_text(cbb, "\":");
}

static int field_str(CBB *cbb, const char *key, const char *value) {
  return add_key(cbb, key) && add_json_string(cbb, (const uint8_t *)value, strlen(value));
}

static int field_bytes(CBB *cbb, const char *key, pki_bytes b) {
  return b.len == 0 || (add_key(cbb, key) && add_json_string(cbb, b.data, b.len));
}

static int field_u64(CBB *cbb, const char *key, uint64_t v) {
  char num[24];
  snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
  return add_key(cbb, key) && add_text(cbb, num);
}

static int field_bool(CBB *cbb, const char *key, int v) {
  return add_key(cbb, key) && add_text(cbb, v ? "true" : "false");
}

static int field_hex(CBB *cbb, const char *key, const uint8_t *p, size_t len) {
  static const char hex[] = "0123456789abcdef";
  if (len == 0) return 1;
  if (!add_key(cbb, key) || !CBB_add_u8(cbb, '"')) return 0;
  for (size_t i = 0; i < len; i++) {
    if (!CBB_add_u8(cbb, (uint8_t)hex[p[i] >> 4]) || !CBB_add_u8(cbb, (uint8_t)hex[p[i] & 15])) {
      return 0;
    }
  }
  return CBB_add_u8(cbb, '"');
}

/* field_time writes Unix time |t| (seconds, or milliseconds with |ms|) as
 * RFC 3339 UTC; 0 is left out (not given). */
static int field_time(CBB *cbb, const char *key, uint64_t t, int ms) {
  if (t == 0) return 1;
  time_t secs = (time_t)(ms ? t / 1000 : t);
  struct tm tm;
  char text[40];
  if (gmtime_r(&secs, &tm) == NULL) return field_u64(cbb, key, t);
  size_t n = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
  if (ms) {
    snprintf(text + n, sizeof(text) - n, ".%03uZ", (unsigned)(t % 1000));
  } else {
    snprintf(text + n, sizeof(text) - n, "Z");
  }
  return field_str(cbb, key, text);
}

static int add_fields(CBB *cbb, const pki_journal_record *r, const pki_parsed_record *p) {
  char kind[32];
  uint8_t digest[SHA256_DIGEST_LENGTH];
  if (!field_u64(cbb, "seq", r->seq) || !field_time(cbb, "time", r->time, 1) ||
      !field_str(cbb, "kind", pki_audit_kind_name(p, kind, sizeof(kind))) ||
      !field_str(cbb, "outcome", pki_audit_outcome(p)) ||
      !field_bytes(cbb, "identity", p->identity) || !field_bytes(cbb, "service", p->service) ||
      !field_hex(cbb, "serial", p->serial.bytes, p->serial.len) ||
      !field_bytes(cbb, "ca", p->ca)) {
    return 0;
  }
  switch (p->type) {
    case PKI_REC_SERIAL_BLOCK:
      return field_u64(cbb, "node", p->block_node) && field_u64(cbb, "first", p->block_first) &&
             field_u64(cbb, "count", p->block_count);
    case PKI_REC_ISSUE: {
      const char *usage = p->usage == PKI_USAGE_SERVER   ? "server"
                          : p->usage == PKI_USAGE_CLIENT ? "client"
                                                         : "unknown";
      SHA256(p->cert.data, p->cert.len, digest);
      return field_hex(cbb, "renews", p->renews.bytes, p->renews.len) &&
             field_str(cbb, "usage", usage) &&
             field_time(cbb, "not_before", p->not_before, 0) &&
             field_time(cbb, "not_after", p->not_after, 0) &&
             field_hex(cbb, "key_sha256", p->key_hash, 32) &&
             field_hex(cbb, "cert_sha256", digest, sizeof(digest));
    }
    case PKI_REC_REVOKE: {
      const char *reason = pki_crl_reason_name(p->reason);
      return field_str(cbb, "reason", reason != NULL ? reason : "unknown") &&
             field_time(cbb, "revoked_at", p->revoked_at, 0) &&
             field_time(cbb, "invalidity_date", p->invalidity_date, 0) &&
             (!(p->flags & PKI_REVOKE_HAS_KEY) || field_hex(cbb, "key_sha256", p->key_hash, 32)) &&
             (!(p->flags & PKI_REVOKE_BY_KEY) || field_bool(cbb, "same_key", 1));
    }
    case PKI_REC_TOKEN:
      return field_hex(cbb, "token_sha256", p->token_id, 32);
    case PKI_REC_CRL:
      return field_u64(cbb, "number", p->crl_number) &&
             field_u64(cbb, "base_number", p->crl_base) &&
             field_time(cbb, "this_update", p->crl_this_update, 0) &&
             field_time(cbb, "next_update", p->crl_next_update, 0) &&
             field_u64(cbb, "entries", p->crl_entries) &&
             field_u64(cbb, "delta_entries", p->crl_delta_entries);
    case PKI_REC_EVENT:
      return field_u64(cbb, "count", p->event_count) &&
             field_time(cbb, "first", p->event_first, 0) &&
             field_time(cbb, "last", p->event_last, 0) && field_bytes(cbb, "detail", p->detail);
  }
  return 1;
}

int pki_audit_json(const pki_journal_record *r, const pki_parsed_record *p, char **out,
                   size_t *out_len, pki_err *err) {
  CBB cbb;
  uint8_t *buf;
  size_t len;
  if (!CBB_init(&cbb, 256) || !CBB_add_u8(&cbb, '{') || !add_fields(&cbb, r, p) ||
      !CBB_add_u8(&cbb, '}') || !CBB_add_u8(&cbb, 0) || !CBB_finish(&cbb, &buf, &len)) {
    CBB_cleanup(&cbb);
    PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory writing an audit event");
    return 0;
  }
  *out = (char *)buf;
  *out_len = len - 1;
  return 1;
}
