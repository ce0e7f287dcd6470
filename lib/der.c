#include "lib/der.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>

int pki_der_finish(CBB *cbb, uint8_t **out, size_t *out_len) {
  uint8_t *data;
  size_t len;
  if (!CBB_finish(cbb, &data, &len)) return 0;
  uint8_t *copy = malloc(len > 0 ? len : 1);
  if (copy == NULL) {
    OPENSSL_free(data);
    return 0;
  }
  memcpy(copy, data, len);
  OPENSSL_free(data);
  *out = copy;
  *out_len = len;
  return 1;
}

int pki_der_add_oid(CBB *cbb, const uint8_t *oid, size_t oid_len) {
  CBB child;
  return CBB_add_asn1(cbb, &child, CBS_ASN1_OBJECT) &&
         CBB_add_bytes(&child, oid, oid_len) && CBB_flush(cbb);
}

int pki_der_get_optional_bool(CBS *cbs, int *out) {
  *out = 0;
  if (!CBS_peek_asn1_tag(cbs, CBS_ASN1_BOOLEAN)) return 1;
  return CBS_get_asn1_bool(cbs, out) && *out == 1;
}

/* ---- Time (RFC 5280 4.1.2.5) ------------------------------------------ */

/* The dates are proleptic Gregorian, computed as in H. Hinnant's
 * "chrono-Compatible Low-Level Date Algorithms": gmtime_r and timegm take
 * the time zone lock and, with snprintf, cost some 5,000 instructions a
 * time, where a certificate and its OCSP response carry five. */

/* civil_from_days is the date |days| after 1970-01-01. */
static void civil_from_days(int64_t days, int *out_year, int *out_month, int *out_day) {
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;                                      /* [0, 146096] */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
  int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11], from March */
  *out_day = (int)(doy - (153 * mp + 2) / 5 + 1);
  *out_month = (int)(mp < 10 ? mp + 3 : mp - 9);
  *out_year = (int)(yoe + era * 400 + (*out_month <= 2));
}

/* days_from_civil is civil_from_days's inverse: the days from 1970-01-01
 * to a valid date. */
static int64_t days_from_civil(int year, int month, int day) {
  int64_t y = year - (month <= 2);
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400; /* [0, 399] */
  int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* [0, 146096] */
  return era * 146097 + doe - 719468;
}

static int days_in_month(int year, int month) {
  static const uint8_t kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
  return month == 2 && leap ? 29 : kDays[month - 1];
}

/* kDigits holds "00" to "99": two digits with no division. */
static const char kDigits[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static uint8_t *put2(uint8_t *p, int v) {
  memcpy(p, kDigits + 2 * v, 2);
  return p + 2;
}

size_t pki_der_put_time(uint8_t out[PKI_DER_TIME_MAX], int64_t t, int generalized) {
  if (t < (generalized ? PKI_DER_T_0000 : PKI_DER_T_1950) || t >= PKI_DER_T_10000) return 0;
  if (t >= PKI_DER_T_2050) generalized = 1;
  int64_t days = t / 86400, secs = t % 86400;
  if (secs < 0) days--, secs += 86400;
  int year, month, day;
  civil_from_days(days, &year, &month, &day);
  uint8_t *p = out;
  *p++ = generalized ? CBS_ASN1_GENERALIZEDTIME : CBS_ASN1_UTCTIME;
  *p++ = generalized ? 15 : 13;
  if (generalized) p = put2(p, year / 100);
  p = put2(p, year % 100);
  p = put2(p, month);
  p = put2(p, day);
  p = put2(p, (int)(secs / 3600));
  p = put2(p, (int)(secs / 60 % 60));
  p = put2(p, (int)(secs % 60));
  *p++ = 'Z';
  return (size_t)(p - out);
}

int pki_der_add_time(CBB *cbb, int64_t t) {
  uint8_t el[PKI_DER_TIME_MAX];
  size_t n = pki_der_put_time(el, t, 0);
  return n != 0 && CBB_add_bytes(cbb, el, n);
}

int pki_der_add_generalized_time(CBB *cbb, int64_t t) {
  uint8_t el[PKI_DER_TIME_MAX];
  size_t n = pki_der_put_time(el, t, 1);
  return n != 0 && CBB_add_bytes(cbb, el, n);
}

/* digits reads |n| decimal digits from |p|; -1 if any is not a digit. */
static int digits(const uint8_t *p, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

int pki_der_get_time(CBS *cbs, int64_t *out) {
  CBS t;
  unsigned tag;
  if (!CBS_get_any_asn1(cbs, &t, &tag)) return 0;
  const uint8_t *p = CBS_data(&t);
  size_t len = CBS_len(&t);
  int year;
  if (tag == CBS_ASN1_UTCTIME && len == 13) {
    int yy = digits(p, 2);
    if (yy < 0) return 0;
    year = yy < 50 ? 2000 + yy : 1900 + yy; /* RFC 5280 4.1.2.5.1 */
    p += 2;
  } else if (tag == CBS_ASN1_GENERALIZEDTIME && len == 15) {
    year = digits(p, 4);
    if (year < 0) return 0;
    p += 4;
  } else {
    return 0;
  }
  int mon = digits(p, 2), day = digits(p + 2, 2), hour = digits(p + 4, 2);
  int min = digits(p + 6, 2), sec = digits(p + 8, 2);
  if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour < 0 ||
      hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59 || p[10] != 'Z') {
    return 0;
  }
  *out = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
  return 1;
}

static int add_rdn(CBB *name, const uint8_t *oid, size_t oid_len, const char *value) {
  CBB rdn, atv, str;
  return CBB_add_asn1(name, &rdn, CBS_ASN1_SET) &&
         CBB_add_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE) &&
         pki_der_add_oid(&atv, oid, oid_len) &&
         CBB_add_asn1(&atv, &str, CBS_ASN1_UTF8STRING) &&
         CBB_add_bytes(&str, (const uint8_t *)value, strlen(value)) &&
         CBB_flush(name);
}

int pki_der_add_name(CBB *cbb, const char *organization, const char *common_name) {
  CBB name;
  if (!CBB_add_asn1(cbb, &name, CBS_ASN1_SEQUENCE)) return 0;
  if (organization != NULL && organization[0] != '\0' &&
      !add_rdn(&name, PKI_OID_ORGANIZATION, sizeof(PKI_OID_ORGANIZATION), organization)) {
    return 0;
  }
  if (common_name != NULL && common_name[0] != '\0' &&
      !add_rdn(&name, PKI_OID_COMMON_NAME, sizeof(PKI_OID_COMMON_NAME), common_name)) {
    return 0;
  }
  return CBB_flush(cbb);
}

int pki_der_name_get_cn(const CBS *name_in, char *out, size_t out_size) {
  CBS el = *name_in, name;
  if (!CBS_get_asn1(&el, &name, CBS_ASN1_SEQUENCE)) return 0;
  while (CBS_len(&name) > 0) {
    CBS rdn;
    if (!CBS_get_asn1(&name, &rdn, CBS_ASN1_SET)) return 0;
    while (CBS_len(&rdn) > 0) {
      CBS atv, oid, value;
      unsigned tag;
      if (!CBS_get_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE) ||
          !CBS_get_asn1(&atv, &oid, CBS_ASN1_OBJECT) ||
          !CBS_get_any_asn1(&atv, &value, &tag) || CBS_len(&atv) != 0) {
        return 0;
      }
      if (PKI_DER_OID_IS(&oid, PKI_OID_COMMON_NAME)) {
        if (CBS_len(&value) >= out_size || CBS_contains_zero_byte(&value)) return 0;
        memcpy(out, CBS_data(&value), CBS_len(&value));
        out[CBS_len(&value)] = '\0';
        return 1;
      }
    }
  }
  return 0;
}

int pki_der_add_general_name(CBB *cbb, const pki_name *name, pki_err *err) {
  CBB child;
  unsigned tag = CBS_ASN1_CONTEXT_SPECIFIC | (unsigned)name->type;
  if (name->type == PKI_NAME_IP) {
    uint8_t ip[16];
    size_t ip_len;
    if (!pki_ip_parse(ip, &ip_len, name->value)) {
      PKI_ERR(err, PKI_ERR_INVALID, "'%s' is not an IP address", name->value);
      return 0;
    }
    if (!CBB_add_asn1(cbb, &child, tag) || !CBB_add_bytes(&child, ip, ip_len) ||
        !CBB_flush(cbb)) {
      goto oom;
    }
    return 1;
  }
  if (!CBB_add_asn1(cbb, &child, tag) ||
      !CBB_add_bytes(&child, (const uint8_t *)name->value, strlen(name->value)) ||
      !CBB_flush(cbb)) {
    goto oom;
  }
  return 1;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory encoding a name");
  return 0;
}

/* ia5_ok reports whether |s| is printable ASCII without NUL: what pkid
 * accepts in a DNS name, URI or email address. */
static int ia5_ok(const CBS *s) {
  for (size_t i = 0; i < CBS_len(s); i++) {
    uint8_t c = CBS_data(s)[i];
    if (c < 0x21 || c > 0x7e) return 0;
  }
  return CBS_len(s) > 0;
}

int pki_der_get_general_name(CBS *cbs, pki_name **names, size_t *num_names,
                             pki_err *err) {
  CBS value;
  unsigned tag;
  if (!CBS_get_any_asn1(cbs, &value, &tag)) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed GeneralName");
    return 0;
  }
  if ((tag & CBS_ASN1_CLASS_MASK) != CBS_ASN1_CONTEXT_SPECIFIC) {
    PKI_ERR(err, PKI_ERR_INVALID, "GeneralName without a context tag");
    return 0;
  }
  unsigned number = tag & CBS_ASN1_TAG_NUMBER_MASK;
  int constructed = (tag & CBS_ASN1_CONSTRUCTED) != 0;
  switch (number) {
    case PKI_NAME_EMAIL:
    case PKI_NAME_DNS:
    case PKI_NAME_URI:
      if (constructed || !ia5_ok(&value)) {
        PKI_ERR(err, PKI_ERR_INVALID, "malformed %s name",
                pki_name_type_label((pki_name_type)number));
        return 0;
      }
      return pki_names_push(names, num_names, (pki_name_type)number,
                            (const char *)CBS_data(&value), CBS_len(&value), err);
    case PKI_NAME_IP: {
      char text[64];
      if (constructed || !pki_ip_format(text, sizeof(text), CBS_data(&value), CBS_len(&value))) {
        PKI_ERR(err, PKI_ERR_INVALID, "malformed IP address name (%zu octets)",
                CBS_len(&value));
        return 0;
      }
      return pki_names_push(names, num_names, PKI_NAME_IP, text, strlen(text), err);
    }
    default:
      PKI_ERR(err, PKI_ERR_UNSUPPORTED,
              "GeneralName of kind [%u] is not supported (only DNS, IP, URI, email)",
              number);
      return 0;
  }
}

int pki_der_add_subtree(CBB *cbb, const pki_name *subtree, pki_err *err) {
  CBB seq, child;
  if (!CBB_add_asn1(cbb, &seq, CBS_ASN1_SEQUENCE)) goto oom;
  if (subtree->type == PKI_NAME_IP) {
    uint8_t addr[16], mask[16];
    size_t len;
    if (!pki_cidr_parse(addr, mask, &len, subtree->value)) {
      PKI_ERR(err, PKI_ERR_INVALID, "'%s' is not a CIDR block", subtree->value);
      return 0;
    }
    if (!CBB_add_asn1(&seq, &child, CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_IP) ||
        !CBB_add_bytes(&child, addr, len) || !CBB_add_bytes(&child, mask, len)) {
      goto oom;
    }
  } else if (!pki_der_add_general_name(&seq, subtree, err)) {
    return 0;
  }
  if (!CBB_flush(cbb)) goto oom;
  return 1;
oom:
  PKI_ERR(err, PKI_ERR_EXHAUSTED, "out of memory encoding a name constraint");
  return 0;
}

static int prefix_len(const uint8_t *mask, size_t len, int *out) {
  int bits = 0;
  size_t i = 0;
  for (; i < len && mask[i] == 0xff; i++) bits += 8;
  if (i < len) {
    uint8_t m = mask[i];
    while (m & 0x80) {
      bits++;
      m = (uint8_t)(m << 1);
    }
    if (m != 0) return 0;
    for (i++; i < len; i++) {
      if (mask[i] != 0) return 0;
    }
  }
  *out = bits;
  return 1;
}

int pki_der_get_subtree(CBS *cbs, pki_name **subtrees, size_t *num, pki_err *err) {
  CBS seq;
  if (!CBS_get_asn1(cbs, &seq, CBS_ASN1_SEQUENCE) || CBS_len(&seq) == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "malformed GeneralSubtree");
    return 0;
  }
  if (CBS_peek_asn1_tag(&seq, CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_IP)) {
    CBS ip;
    int bits;
    char addr[64], text[80];
    if (!CBS_get_asn1(&seq, &ip, CBS_ASN1_CONTEXT_SPECIFIC | PKI_NAME_IP) ||
        (CBS_len(&ip) != 8 && CBS_len(&ip) != 32) ||
        !pki_ip_format(addr, sizeof(addr), CBS_data(&ip), CBS_len(&ip) / 2) ||
        !prefix_len(CBS_data(&ip) + CBS_len(&ip) / 2, CBS_len(&ip) / 2, &bits)) {
      PKI_ERR(err, PKI_ERR_INVALID, "malformed IP name constraint");
      return 0;
    }
    snprintf(text, sizeof(text), "%s/%d", addr, bits);
    if (!pki_names_push(subtrees, num, PKI_NAME_IP, text, strlen(text), err)) return 0;
  } else if (!pki_der_get_general_name(&seq, subtrees, num, err)) {
    return 0;
  }
  /* minimum defaults to 0 and maximum is absent (RFC 5280 4.2.1.10), so DER
   * leaves nothing after the base. */
  if (CBS_len(&seq) != 0) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "GeneralSubtree with minimum or maximum");
    return 0;
  }
  return 1;
}

int pki_der_oid_ok(const CBS *oid) {
  const uint8_t *p = CBS_data(oid);
  size_t len = CBS_len(oid);
  if (len == 0 || (p[len - 1] & 0x80) != 0) return 0;
  int start = 1;
  for (size_t i = 0; i < len; i++) {
    if (start && p[i] == 0x80) return 0;
    start = (p[i] & 0x80) == 0;
  }
  return 1;
}
