#include "client/print.h"

#include <time.h>

#include <openssl/mem.h>
#include <openssl/sha.h>

#include "lib/der.h"

void print_hex(FILE *out, const uint8_t *p, size_t len, const char *sep) {
  for (size_t i = 0; i < len; i++) fprintf(out, "%s%02x", i > 0 ? sep : "", p[i]);
}

void print_time(FILE *out, int64_t t) {
  time_t tt = (time_t)t;
  struct tm tm;
  char buf[64];
  if (gmtime_r(&tt, &tm) == NULL) {
    fputs("-", out);
    return;
  }
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  fputs(buf, out);
}

void print_name(FILE *out, const CBS *name_el) {
  CBS name = *name_el, rdns;
  if (!CBS_get_asn1(&name, &rdns, CBS_ASN1_SEQUENCE)) {
    fprintf(out, "(malformed)");
    return;
  }
  int first = 1;
  while (CBS_len(&rdns) > 0) {
    CBS rdn, atv, oid, value;
    unsigned tag;
    if (!CBS_get_asn1(&rdns, &rdn, CBS_ASN1_SET)) break;
    while (CBS_len(&rdn) > 0 && CBS_get_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE) &&
           CBS_get_asn1(&atv, &oid, CBS_ASN1_OBJECT) && CBS_get_any_asn1(&atv, &value, &tag)) {
      const char *label = NULL;
      if (PKI_DER_OID_IS(&oid, PKI_OID_COMMON_NAME)) label = "CN";
      if (PKI_DER_OID_IS(&oid, PKI_OID_ORGANIZATION)) label = "O";
      char *text = label == NULL ? CBS_asn1_oid_to_text(&oid) : NULL;
      fprintf(out, "%s%s=", first ? "" : ", ", label != NULL ? label : text != NULL ? text : "?");
      for (size_t i = 0; i < CBS_len(&value); i++) {
        unsigned char c = CBS_data(&value)[i];
        fputc(c >= 0x20 && c < 0x7f ? c : '?', out);
      }
      OPENSSL_free(text);
      first = 0;
    }
  }
  if (first) fprintf(out, "(empty)");
}

void print_sha256_line(FILE *out, const uint8_t *der, size_t len) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(der, len, digest);
  fprintf(out, "  %-18s", "SHA-256:");
  print_hex(out, digest, sizeof(digest), ":");
  fputc('\n', out);
}
