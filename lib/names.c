/* names.c: checking and matching subject alternative names.
 *
 * Everything here works on the text form of names. The checks are strict on
 * purpose: a name pkid accepts must be one that every strict X.509 parser
 * and TLS stack accepts, so hostnames are LDH labels (RFC 1123), URIs are
 * plain RFC 3986 text with a host, and nothing outside printable ASCII gets
 * through.
 *
 * Subtree matching follows RFC 5280 4.2.1.10 to the letter, which is also
 * what OpenSSL does and stricter than Go, so that a name pkid considers
 * within a constraint is within it for every verifier:
 *  - DNS: "example.com" holds example.com and every name below it
 *    (a.example.com, not badexample.com); ".example.com" holds only the
 *    names below it.
 *  - URI: the host of the URI is compared. "host.example.com" holds exactly
 *    that host; ".example.com" holds every host below example.com. A URI
 *    whose host is an IP address lies in no URI subtree.
 *  - email: "user@example.com" holds that mailbox; "example.com" holds every
 *    mailbox on that host; ".example.com" every mailbox on hosts below it.
 *  - IP: a CIDR block holds the addresses of the same family within it.
 * A wildcard DNS name ("*.example.com") lies within a subtree when every
 * name it stands for does, and meets an excluded subtree when any does. */
#include "lib/names.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_MAX 253
#define LABEL_MAX 63
#define URI_MAX 2048
#define EMAIL_MAX 254
#define EMAIL_LOCAL_MAX 64
#define NAME_VALUE_MAX 4096

const char *pki_name_type_label(pki_name_type type) {
  switch (type) {
    case PKI_NAME_EMAIL: return "email";
    case PKI_NAME_DNS: return "DNS";
    case PKI_NAME_URI: return "URI";
    case PKI_NAME_IP: return "IP";
  }
  return "unknown";
}

/* Character classes in plain ASCII, independent of the locale. */
static int is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_alnum(char c) { return is_alpha(c) || is_digit(c); }

static char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static int mem_case_equal(const char *a, const char *b, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (to_lower(a[i]) != to_lower(b[i])) return 0;
  }
  return 1;
}

/* check_printable refuses the empty string, text longer than |max| and any
 * byte that is a space, a control character or not ASCII: none of them
 * belongs in a name, and they are how names get smuggled past a reader. */
static int check_printable(const char *value, size_t max, const char *what,
                           pki_err *err) {
  size_t len = strlen(value);
  if (len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "empty %s", what);
    return 0;
  }
  if (len > max) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s is %zu characters long, more than %zu",
            what, len, max);
    return 0;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c <= 0x20 || c >= 0x7f) {
      /* Quote only what comes before the byte, so that the message itself
       * carries no control characters. */
      PKI_ERR(err, PKI_ERR_INVALID,
              "%s '%.*s...' contains a space, a control character or a "
              "non-ASCII byte at offset %zu",
              what, (int)(i < 64 ? i : 64), value, i);
      return 0;
    }
  }
  return 1;
}

/* check_hostname validates |len| bytes of |name| as LDH labels separated by
 * dots. With |allow_wildcard|, the leftmost label may be exactly "*" when at
 * least two labels follow it: "*.example.com", not "*.com" or "a*.b.c". */
static int check_hostname(const char *name, size_t len, int allow_wildcard,
                          const char *what, pki_err *err) {
  if (len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "empty %s", what);
    return 0;
  }
  if (len > DNS_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s is %zu characters long, more than %d",
            what, len, DNS_MAX);
    return 0;
  }
  size_t num_labels = 0;
  int wildcard = 0;
  const char *last_label = NULL;
  size_t last_len = 0;
  size_t i = 0;
  while (i <= len) {
    size_t start = i;
    while (i < len && name[i] != '.') i++;
    const char *label = name + start;
    size_t label_len = i - start;
    if (label_len == 0) {
      PKI_ERR(err, PKI_ERR_INVALID, "%s '%.*s' has an empty label", what,
              (int)len, name);
      return 0;
    }
    if (label_len > LABEL_MAX) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "%s '%.*s' has a label longer than %d characters", what,
              (int)len, name, LABEL_MAX);
      return 0;
    }
    if (label_len == 1 && label[0] == '*' && num_labels == 0 &&
        allow_wildcard) {
      wildcard = 1;
    } else {
      for (size_t j = 0; j < label_len; j++) {
        char c = label[j];
        if (c == '*') {
          PKI_ERR(err, PKI_ERR_INVALID,
                  "%s '%.*s': a wildcard is allowed only as the whole "
                  "leftmost label",
                  what, (int)len, name);
          return 0;
        }
        if (!is_alnum(c) && c != '-') {
          PKI_ERR(err, PKI_ERR_INVALID,
                  "%s '%.*s' has '%c'; only letters, digits, '-' and '.' are "
                  "allowed",
                  what, (int)len, name, c);
          return 0;
        }
      }
      if (label[0] == '-' || label[label_len - 1] == '-') {
        PKI_ERR(err, PKI_ERR_INVALID,
                "%s '%.*s' has a label that starts or ends with '-'", what,
                (int)len, name);
        return 0;
      }
    }
    num_labels++;
    last_label = label;
    last_len = label_len;
    i++; /* past the dot, or past the end */
  }
  if (wildcard && num_labels < 3) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s '%.*s': a wildcard needs at least two labels after it", what,
            (int)len, name);
    return 0;
  }
  /* An all-digit top label is never a hostname (RFC 3696 2); it is how an
   * IPv4 address written as a DNS name looks. */
  int all_digits = 1;
  for (size_t j = 0; j < last_len; j++) {
    if (!is_digit(last_label[j])) all_digits = 0;
  }
  if (all_digits) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%s '%.*s' looks like an IP address; give it as an IP name", what,
            (int)len, name);
    return 0;
  }
  return 1;
}

/* URI characters of RFC 3986: unreserved, reserved and '%'. */
static int is_uri_char(char c) {
  return is_alnum(c) || (c != '\0' && strchr("-._~:/?#[]@!$&'()*+,;=%", c));
}

/* uri_host finds the host of "scheme://host[:port]..." without
 * checking it. It sets |*is_ip_literal| for "[v6]" hosts and returns 0 when
 * there is no "scheme://" prefix. */
static int uri_host(const char *uri, const char **out_host, size_t *out_len,
                    int *out_is_literal, const char **out_after) {
  const char *sep = strstr(uri, "://");
  if (sep == NULL) return 0;
  const char *auth = sep + 3;
  size_t auth_len = strcspn(auth, "/?#");
  *out_is_literal = 0;
  *out_after = auth + auth_len;
  if (auth_len > 0 && auth[0] == '[') {
    const char *close = memchr(auth, ']', auth_len);
    if (close == NULL) return 0;
    *out_host = auth + 1;
    *out_len = (size_t)(close - auth - 1);
    *out_is_literal = 1;
    return 1;
  }
  const char *colon = memchr(auth, ':', auth_len);
  *out_host = auth;
  *out_len = colon != NULL ? (size_t)(colon - auth) : auth_len;
  return 1;
}

static int check_uri(const char *value, pki_err *err) {
  if (!check_printable(value, URI_MAX, "URI", err)) return 0;
  for (const char *p = value; *p != '\0'; p++) {
    if (!is_uri_char(*p)) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "URI '%.64s' has '%c', which RFC 3986 does not allow", value,
              *p);
      return 0;
    }
  }
  /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
  size_t i = 0;
  if (!is_alpha(value[0])) goto no_scheme;
  while (is_alnum(value[i]) || value[i] == '+' || value[i] == '-' ||
         value[i] == '.') {
    i++;
  }
  if (strncmp(value + i, "://", 3) != 0) goto no_scheme;

  const char *auth = value + i + 3;
  size_t auth_len = strcspn(auth, "/?#");
  if (memchr(auth, '@', auth_len) != NULL) {
    /* Userinfo has no place in a certificate: it can carry secrets and it
     * makes the host ambiguous to readers. */
    PKI_ERR(err, PKI_ERR_INVALID, "URI '%.64s' has userinfo ('@')", value);
    return 0;
  }
  const char *host;
  size_t host_len;
  int literal;
  const char *after;
  if (!uri_host(value, &host, &host_len, &literal, &after)) {
    PKI_ERR(err, PKI_ERR_INVALID, "URI '%.64s' has a malformed host", value);
    return 0;
  }
  const char *port = host + host_len + (literal ? 1 : 0);
  if (host_len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "URI '%.64s' has no host", value);
    return 0;
  }
  char buf[DNS_MAX + 1];
  if (literal) {
    uint8_t ip[16];
    if (host_len >= sizeof(buf)) goto bad_literal;
    memcpy(buf, host, host_len);
    buf[host_len] = '\0';
    if (inet_pton(AF_INET6, buf, ip) != 1) goto bad_literal;
  } else {
    uint8_t ip[4];
    int is_v4 = 0;
    if (host_len < sizeof(buf)) {
      memcpy(buf, host, host_len);
      buf[host_len] = '\0';
      is_v4 = inet_pton(AF_INET, buf, ip) == 1;
    }
    if (!is_v4 && !check_hostname(host, host_len, 0, "URI host", err)) {
      return 0;
    }
  }
  if (port < after) {
    /* ":" then 1 to 5 digits, at most 65535. */
    size_t n = (size_t)(after - port);
    unsigned long v = 0;
    if (port[0] != ':' || n < 2 || n > 6) goto bad_port;
    for (size_t j = 1; j < n; j++) {
      if (!is_digit(port[j])) goto bad_port;
      v = v * 10 + (unsigned long)(port[j] - '0');
    }
    if (v == 0 || v > 65535) goto bad_port;
  }
  return 1;

no_scheme:
  PKI_ERR(err, PKI_ERR_INVALID,
          "URI '%.64s' is not absolute: it needs scheme://host", value);
  return 0;
bad_literal:
  PKI_ERR(err, PKI_ERR_INVALID, "URI '%.64s' has a malformed IPv6 host",
          value);
  return 0;
bad_port:
  PKI_ERR(err, PKI_ERR_INVALID, "URI '%.64s' has a malformed port", value);
  return 0;
}

/* atext of RFC 5322 3.2.3, the characters of a dot-atom local part. */
static int is_atext(char c) {
  return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static int check_email(const char *value, pki_err *err) {
  if (!check_printable(value, EMAIL_MAX, "email address", err)) return 0;
  const char *at = strchr(value, '@');
  if (at == NULL || strchr(at + 1, '@') != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "email address '%.64s' must have exactly one '@'", value);
    return 0;
  }
  size_t local_len = (size_t)(at - value);
  if (local_len == 0 || local_len > EMAIL_LOCAL_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "email address '%.64s' must have 1 to %d characters before '@'",
            value, EMAIL_LOCAL_MAX);
    return 0;
  }
  /* A dot-atom: atext runs separated by single dots. Quoted local parts are
   * legal but exotic, and refused. */
  for (size_t i = 0; i < local_len; i++) {
    char c = value[i];
    int dot_ok = c == '.' && i > 0 && i + 1 < local_len && value[i + 1] != '.';
    if (!is_atext(c) && !dot_ok) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "email address '%.64s' has a malformed local part", value);
      return 0;
    }
  }
  return check_hostname(at + 1, strlen(at + 1), 0, "email domain", err);
}

int pki_name_check(pki_name_type type, const char *value, pki_err *err) {
  if (value == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "missing name");
    return 0;
  }
  switch (type) {
    case PKI_NAME_DNS:
      if (!check_printable(value, DNS_MAX, "DNS name", err)) return 0;
      return check_hostname(value, strlen(value), 1, "DNS name", err);
    case PKI_NAME_IP: {
      uint8_t ip[16];
      size_t len;
      if (!check_printable(value, 45, "IP address", err)) return 0;
      if (!pki_ip_parse(ip, &len, value)) {
        PKI_ERR(err, PKI_ERR_INVALID, "'%s' is not an IPv4 or IPv6 address",
                value);
        return 0;
      }
      return 1;
    }
    case PKI_NAME_URI:
      return check_uri(value, err);
    case PKI_NAME_EMAIL:
      return check_email(value, err);
  }
  PKI_ERR(err, PKI_ERR_INVALID, "unknown name type %d", (int)type);
  return 0;
}

/* check_domain_subtree validates a DNS, URI or email domain subtree: a
 * hostname, optionally with a leading "." meaning "below, not at". */
static int check_domain_subtree(const char *value, const char *what,
                                pki_err *err) {
  if (!check_printable(value, DNS_MAX + 1, what, err)) return 0;
  const char *domain = value[0] == '.' ? value + 1 : value;
  return check_hostname(domain, strlen(domain), 0, what, err);
}

int pki_subtree_check(pki_name_type type, const char *value, pki_err *err) {
  if (value == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "missing subtree");
    return 0;
  }
  switch (type) {
    case PKI_NAME_DNS:
      return check_domain_subtree(value, "DNS subtree", err);
    case PKI_NAME_URI:
      return check_domain_subtree(value, "URI subtree", err);
    case PKI_NAME_EMAIL:
      if (strchr(value, '@') != NULL) return check_email(value, err);
      return check_domain_subtree(value, "email subtree", err);
    case PKI_NAME_IP: {
      uint8_t addr[16], mask[16];
      size_t len;
      if (!check_printable(value, 49, "IP subtree", err)) return 0;
      if (!pki_cidr_parse(addr, mask, &len, value)) {
        PKI_ERR(err, PKI_ERR_INVALID,
                "IP subtree '%s' is not a CIDR block like 10.0.0.0/8 with the "
                "host bits zero",
                value);
        return 0;
      }
      return 1;
    }
  }
  PKI_ERR(err, PKI_ERR_INVALID, "unknown name type %d", (int)type);
  return 0;
}

int pki_ip_parse(uint8_t out[16], size_t *out_len, const char *text) {
  if (text == NULL) return 0;
  if (inet_pton(AF_INET, text, out) == 1) {
    *out_len = 4;
    return 1;
  }
  if (inet_pton(AF_INET6, text, out) == 1) {
    *out_len = 16;
    return 1;
  }
  return 0;
}

int pki_ip_format(char *out, size_t out_size, const uint8_t *ip,
                  size_t ip_len) {
  int family;
  if (ip_len == 4) {
    family = AF_INET;
  } else if (ip_len == 16) {
    family = AF_INET6;
  } else {
    return 0;
  }
  if (out_size > 0xffff) out_size = 0xffff; /* inet_ntop takes a socklen_t */
  return inet_ntop(family, ip, out, (socklen_t)out_size) != NULL;
}

int pki_cidr_parse(uint8_t addr[16], uint8_t mask[16], size_t *out_len,
                   const char *text) {
  if (text == NULL) return 0;
  const char *slash = strchr(text, '/');
  if (slash == NULL || slash == text) return 0;
  char buf[64];
  size_t addr_len = (size_t)(slash - text);
  if (addr_len >= sizeof(buf)) return 0;
  memcpy(buf, text, addr_len);
  buf[addr_len] = '\0';
  uint8_t ip[16];
  size_t len;
  if (!pki_ip_parse(ip, &len, buf)) return 0;

  /* The prefix length: 1 to 3 digits, no leading zero, within the family. */
  const char *p = slash + 1;
  size_t digits = strlen(p);
  if (digits == 0 || digits > 3 || (digits > 1 && p[0] == '0')) return 0;
  unsigned prefix = 0;
  for (size_t i = 0; i < digits; i++) {
    if (!is_digit(p[i])) return 0;
    prefix = prefix * 10 + (unsigned)(p[i] - '0');
  }
  if (prefix > len * 8) return 0;

  uint8_t m[16];
  for (size_t i = 0; i < len; i++) {
    unsigned bits = prefix > i * 8 ? prefix - (unsigned)i * 8 : 0;
    m[i] = bits >= 8 ? 0xff : (uint8_t)(0xff00u >> bits);
  }
  /* Host bits set ("10.0.0.1/8") are almost always a typo for something
   * else; RFC 5280 does not define them either. */
  for (size_t i = 0; i < len; i++) {
    if ((ip[i] & (uint8_t)~m[i]) != 0) return 0;
  }
  memcpy(addr, ip, len);
  memcpy(mask, m, len);
  *out_len = len;
  return 1;
}

/* email_at finds the last '@'; it returns NULL when there is none. */
static const char *email_at(const char *email) { return strrchr(email, '@'); }

int pki_name_equal(const pki_name *a, const pki_name *b) {
  if (a == NULL || b == NULL || a->value == NULL || b->value == NULL) return 0;
  if (a->type != b->type) return 0;
  switch (a->type) {
    case PKI_NAME_DNS:
      return strcasecmp(a->value, b->value) == 0;
    case PKI_NAME_IP: {
      uint8_t ia[16], ib[16];
      size_t la, lb;
      if (pki_ip_parse(ia, &la, a->value) && pki_ip_parse(ib, &lb, b->value)) {
        return la == lb && memcmp(ia, ib, la) == 0;
      }
      return strcmp(a->value, b->value) == 0;
    }
    case PKI_NAME_EMAIL: {
      /* The local part is case-sensitive (RFC 5321 2.4), the domain not. */
      const char *at_a = email_at(a->value), *at_b = email_at(b->value);
      if (at_a == NULL || at_b == NULL) return strcmp(a->value, b->value) == 0;
      size_t la = (size_t)(at_a - a->value), lb = (size_t)(at_b - b->value);
      return la == lb && memcmp(a->value, b->value, la) == 0 &&
             strcasecmp(at_a, at_b) == 0;
    }
    case PKI_NAME_URI:
      return strcmp(a->value, b->value) == 0;
  }
  return 0;
}

/* dns_in_subtree: the DNS rule. |sub| "d" holds d and names ending in ".d";
 * ".d" holds only names ending in ".d". An empty subtree holds every name
 * (RFC 5280: adding zero or more labels to the empty name). */
static int dns_in_subtree(const char *name, size_t len, const char *sub) {
  size_t sub_len = strlen(sub);
  if (sub_len == 0) return 1;
  if (sub[0] == '.') {
    return len > sub_len && mem_case_equal(name + len - sub_len, sub, sub_len);
  }
  if (len == sub_len) return mem_case_equal(name, sub, len);
  return len > sub_len && name[len - sub_len - 1] == '.' &&
         mem_case_equal(name + len - sub_len, sub, sub_len);
}

/* host_in_subtree: the URI and email rule. |sub| "h" holds exactly host h;
 * ".d" holds hosts ending in ".d". */
static int host_in_subtree(const char *host, size_t len, const char *sub) {
  size_t sub_len = strlen(sub);
  if (sub_len == 0) return 0;
  if (sub[0] == '.') {
    return len > sub_len && mem_case_equal(host + len - sub_len, sub, sub_len);
  }
  return len == sub_len && mem_case_equal(host, sub, len);
}

int pki_name_in_subtree(const pki_name *name, const pki_name *subtree) {
  if (name == NULL || subtree == NULL || name->value == NULL ||
      subtree->value == NULL || name->type != subtree->type) {
    return 0;
  }
  switch (name->type) {
    case PKI_NAME_DNS:
      return dns_in_subtree(name->value, strlen(name->value), subtree->value);
    case PKI_NAME_URI: {
      const char *host, *after;
      size_t host_len;
      int literal;
      if (!uri_host(name->value, &host, &host_len, &literal, &after)) return 0;
      if (literal || host_len == 0) return 0;
      return host_in_subtree(host, host_len, subtree->value);
    }
    case PKI_NAME_EMAIL: {
      const char *at = email_at(name->value);
      if (at == NULL) return 0;
      if (strchr(subtree->value, '@') != NULL) {
        return pki_name_equal(name, subtree);
      }
      return host_in_subtree(at + 1, strlen(at + 1), subtree->value);
    }
    case PKI_NAME_IP: {
      uint8_t ip[16], addr[16], mask[16];
      size_t ip_len, len;
      if (!pki_ip_parse(ip, &ip_len, name->value) ||
          !pki_cidr_parse(addr, mask, &len, subtree->value) || ip_len != len) {
        return 0;
      }
      for (size_t i = 0; i < len; i++) {
        if ((ip[i] & mask[i]) != addr[i]) return 0;
      }
      return 1;
    }
  }
  return 0;
}

/* wildcard_meets: a wildcard "*.b" stands for every "x.b" with x one label
 * (RFC 6125 6.4.3), so it meets a subtree "x.b", which holds x.b, though
 * not all of "*.b" lies within it. A subtree ".x.b" holds only names below
 * x.b, which "*.b" does not stand for; deeper subtrees neither. */
static int wildcard_meets(const char *name, const char *sub) {
  if (strncmp(name, "*.", 2) != 0 || sub[0] == '.') return 0;
  const char *base = name + 2;
  size_t base_len = strlen(base), sub_len = strlen(sub);
  if (sub_len <= base_len + 1 || sub[sub_len - base_len - 1] != '.' ||
      !mem_case_equal(sub + sub_len - base_len, base, base_len)) {
    return 0;
  }
  return memchr(sub, '.', sub_len - base_len - 1) == NULL; /* one label in front */
}

pki_name_verdict pki_name_constraints_check(const pki_name *name, const pki_name *permitted,
                                            size_t num_permitted, const pki_name *excluded,
                                            size_t num_excluded, size_t *out_excluded) {
  int constrained = 0, inside = 0;
  for (size_t i = 0; i < num_permitted; i++) {
    if (permitted[i].type != name->type) continue;
    constrained = 1;
    if (pki_name_in_subtree(name, &permitted[i])) inside = 1;
  }
  if (constrained && !inside) return PKI_NAME_NOT_PERMITTED;
  for (size_t i = 0; i < num_excluded; i++) {
    if (pki_name_in_subtree(name, &excluded[i]) ||
        (name->type == PKI_NAME_DNS && excluded[i].type == PKI_NAME_DNS &&
         wildcard_meets(name->value, excluded[i].value))) {
      if (out_excluded != NULL) *out_excluded = i;
      return PKI_NAME_EXCLUDED;
    }
  }
  return PKI_NAME_ALLOWED;
}

void pki_names_free(pki_name *names, size_t num) {
  if (names == NULL) return;
  for (size_t i = 0; i < num; i++) free(names[i].value);
  free(names);
}

int pki_names_push(pki_name **names, size_t *num, pki_name_type type,
                   const char *value, size_t value_len, pki_err *err) {
  if (value == NULL || value_len > NAME_VALUE_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "name is missing or longer than %d bytes",
            NAME_VALUE_MAX);
    return 0;
  }
  /* A NUL inside would make the C string say less than the DER does. */
  if (memchr(value, '\0', value_len) != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "name contains a NUL byte");
    return 0;
  }
  char *copy = malloc(value_len + 1);
  if (copy == NULL) goto oom;
  memcpy(copy, value, value_len);
  copy[value_len] = '\0';
  pki_name *grown = realloc(*names, (*num + 1) * sizeof(pki_name));
  if (grown == NULL) {
    free(copy);
    goto oom;
  }
  grown[*num].type = type;
  grown[*num].value = copy;
  *names = grown;
  (*num)++;
  return 1;

oom:
  PKI_ERR_OOM(err);
  return 0;
}
