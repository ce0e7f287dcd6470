/* names_test.c: name checks and RFC 5280 subtree matching. */
#include "lib/names.h"

#include <stdlib.h>
#include <string.h>

#include "tests/unit/test.h"

static int ok_name(pki_name_type type, const char *value) {
  pki_err err;
  pki_err_clear(&err);
  int ok = pki_name_check(type, value, &err);
  if (!ok && err.code != PKI_ERR_INVALID) return -1; /* wrong code */
  if (!ok && err.msg[0] == '\0') return -1;          /* no words */
  return ok;
}

static int ok_subtree(pki_name_type type, const char *value) {
  pki_err err;
  pki_err_clear(&err);
  int ok = pki_subtree_check(type, value, &err);
  if (!ok && err.code != PKI_ERR_INVALID) return -1;
  return ok;
}

static int in(pki_name_type type, const char *name, const char *subtree) {
  pki_name n = {type, (char *)name};
  pki_name s = {type, (char *)subtree};
  return pki_name_in_subtree(&n, &s);
}

TEST(labels) {
  CHECK(strcmp(pki_name_type_label(PKI_NAME_DNS), "DNS") == 0);
  CHECK(strcmp(pki_name_type_label(PKI_NAME_IP), "IP") == 0);
  CHECK(strcmp(pki_name_type_label(PKI_NAME_URI), "URI") == 0);
  CHECK(strcmp(pki_name_type_label(PKI_NAME_EMAIL), "email") == 0);
}

TEST(dns_good) {
  CHECK(ok_name(PKI_NAME_DNS, "localhost") == 1);
  CHECK(ok_name(PKI_NAME_DNS, "cybersec-framework.local") == 1);
  CHECK(ok_name(PKI_NAME_DNS, "api.cybersec-framework.local") == 1);
  CHECK(ok_name(PKI_NAME_DNS, "*.cybersec-framework.local") == 1);
  CHECK(ok_name(PKI_NAME_DNS, "A1.Example.COM") == 1);
  CHECK(ok_name(PKI_NAME_DNS, "xn--bcher-kva.example") == 1);
  char label63[80];
  memset(label63, 'a', 63);
  strcpy(label63 + 63, ".com");
  CHECK(ok_name(PKI_NAME_DNS, label63) == 1);
}

TEST(dns_bad) {
  CHECK(ok_name(PKI_NAME_DNS, "") == 0);
  CHECK(ok_name(PKI_NAME_DNS, NULL) == 0);
  CHECK(ok_name(PKI_NAME_DNS, "has space.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "tab\t.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "nl\n.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "caf\xc3\xa9.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "-a.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "a-.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "a..com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, ".a.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "a.com.") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "under_score.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "127.0.0.1") == 0);
  /* Wildcards: the whole leftmost label only, with two labels after. */
  CHECK(ok_name(PKI_NAME_DNS, "*.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "a.*.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "a*.b.com") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "*") == 0);
  CHECK(ok_name(PKI_NAME_DNS, "*.*.b.com") == 0);
  char label64[80];
  memset(label64, 'a', 64);
  strcpy(label64 + 64, ".com");
  CHECK(ok_name(PKI_NAME_DNS, label64) == 0);
  /* 254 characters: labels of 49 + dots. */
  char long_name[300];
  for (size_t i = 0; i < 254; i++) long_name[i] = (i % 50 == 49) ? '.' : 'a';
  long_name[254] = '\0';
  CHECK(ok_name(PKI_NAME_DNS, long_name) == 0);
  long_name[253] = '\0'; /* 253 is fine */
  CHECK(ok_name(PKI_NAME_DNS, long_name) == 1);
}

TEST(messages_are_clean) {
  /* A message quotes the name, but never the control character in it. */
  pki_err err;
  pki_err_clear(&err);
  CHECK(!pki_name_check(PKI_NAME_DNS, "evil\x1b[2J.example.com", &err));
  CHECK(strchr(err.msg, 0x1b) == NULL);
  CHECK(strstr(err.msg, "'evil...'") != NULL);
  CHECK(strstr(err.msg, "offset 4") != NULL);
}

TEST(ip_names) {
  CHECK(ok_name(PKI_NAME_IP, "127.0.0.1") == 1);
  CHECK(ok_name(PKI_NAME_IP, "::1") == 1);
  CHECK(ok_name(PKI_NAME_IP, "2001:db8::7") == 1);
  CHECK(ok_name(PKI_NAME_IP, "") == 0);
  CHECK(ok_name(PKI_NAME_IP, "localhost") == 0);
  CHECK(ok_name(PKI_NAME_IP, "256.0.0.1") == 0);
  CHECK(ok_name(PKI_NAME_IP, "1.2.3") == 0);
  CHECK(ok_name(PKI_NAME_IP, " 1.2.3.4") == 0);
  CHECK(ok_name(PKI_NAME_IP, "fe80::1%eth0") == 0);
}

TEST(ip_parse_format) {
  uint8_t ip[16];
  size_t len = 0;
  REQUIRE(pki_ip_parse(ip, &len, "127.0.0.1"));
  CHECK(len == 4 && ip[0] == 127 && ip[3] == 1);
  REQUIRE(pki_ip_parse(ip, &len, "::1"));
  CHECK(len == 16 && ip[15] == 1 && ip[0] == 0);
  CHECK(!pki_ip_parse(ip, &len, "nope"));
  CHECK(!pki_ip_parse(ip, &len, NULL));

  char text[64];
  uint8_t v4[4] = {10, 1, 2, 3};
  CHECK(pki_ip_format(text, sizeof(text), v4, 4) && strcmp(text, "10.1.2.3") == 0);
  uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
  v6[15] = 7;
  CHECK(pki_ip_format(text, sizeof(text), v6, 16) &&
        strcmp(text, "2001:db8::7") == 0);
  CHECK(!pki_ip_format(text, sizeof(text), v4, 5));
  CHECK(!pki_ip_format(text, 4, v4, 4)); /* too small */
}

TEST(cidr_parse) {
  uint8_t addr[16], mask[16];
  size_t len;
  REQUIRE(pki_cidr_parse(addr, mask, &len, "127.0.0.0/8"));
  CHECK(len == 4 && addr[0] == 127 && mask[0] == 0xff && mask[1] == 0);
  REQUIRE(pki_cidr_parse(addr, mask, &len, "10.0.0.0/12"));
  CHECK(mask[1] == 0xf0 && mask[2] == 0);
  REQUIRE(pki_cidr_parse(addr, mask, &len, "::1/128"));
  CHECK(len == 16 && mask[15] == 0xff && addr[15] == 1);
  REQUIRE(pki_cidr_parse(addr, mask, &len, "0.0.0.0/0"));
  CHECK(mask[0] == 0);
  CHECK(!pki_cidr_parse(addr, mask, &len, "127.0.0.1/8"));  /* host bits */
  CHECK(!pki_cidr_parse(addr, mask, &len, "127.0.0.0/33"));
  CHECK(!pki_cidr_parse(addr, mask, &len, "::/129"));
  CHECK(!pki_cidr_parse(addr, mask, &len, "127.0.0.0"));
  CHECK(!pki_cidr_parse(addr, mask, &len, "127.0.0.0/"));
  CHECK(!pki_cidr_parse(addr, mask, &len, "127.0.0.0/08"));
  CHECK(!pki_cidr_parse(addr, mask, &len, "127.0.0.0/8x"));
  CHECK(!pki_cidr_parse(addr, mask, &len, "/8"));
}

TEST(uri_names) {
  CHECK(ok_name(PKI_NAME_URI,
                "spiffe://cybersec-framework.local/agents/pki-agent") == 1);
  CHECK(ok_name(PKI_NAME_URI, "http://127.0.0.1:8081/") == 1);
  CHECK(ok_name(PKI_NAME_URI, "https://[::1]:443/x?y=1#z") == 1);
  CHECK(ok_name(PKI_NAME_URI, "http://example.com") == 1);
  CHECK(ok_name(PKI_NAME_URI, "") == 0);
  CHECK(ok_name(PKI_NAME_URI, "example.com/path") == 0);
  CHECK(ok_name(PKI_NAME_URI, "mailto:a@b.com") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http:///path") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://") == 0);
  CHECK(ok_name(PKI_NAME_URI, "1http://a.com/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://a b.com/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://a.com/\x01") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://user@a.com/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://a.com:0/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://a.com:65536/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://a.com:x/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://[::1/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://[nope]/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://-a.com/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://*.a.com/") == 0);
  CHECK(ok_name(PKI_NAME_URI, "http://a.com/<x>") == 0);
  char *big = malloc(2100);
  REQUIRE(big != NULL);
  strcpy(big, "http://a.com/");
  memset(big + 13, 'x', 2048 - 13);
  big[2048] = '\0';
  CHECK(ok_name(PKI_NAME_URI, big) == 1);
  big[2048] = 'x';
  big[2049] = '\0';
  CHECK(ok_name(PKI_NAME_URI, big) == 0);
  free(big);
}

TEST(email_names) {
  CHECK(ok_name(PKI_NAME_EMAIL, "pki@cybersec-framework.local") == 1);
  CHECK(ok_name(PKI_NAME_EMAIL, "first.last+tag@example.com") == 1);
  CHECK(ok_name(PKI_NAME_EMAIL, "") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, "nobody") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, "@example.com") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, "a@") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, "a@b@example.com") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, ".a@example.com") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, "a..b@example.com") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, "a b@example.com") == 0);
  CHECK(ok_name(PKI_NAME_EMAIL, "a@exa_mple.com") == 0);
}

TEST(subtree_check) {
  CHECK(ok_subtree(PKI_NAME_DNS, "cybersec-framework.local") == 1);
  CHECK(ok_subtree(PKI_NAME_DNS, ".example.com") == 1);
  CHECK(ok_subtree(PKI_NAME_DNS, "*.example.com") == 0);
  CHECK(ok_subtree(PKI_NAME_DNS, "") == 0);
  CHECK(ok_subtree(PKI_NAME_DNS, "..example.com") == 0);
  CHECK(ok_subtree(PKI_NAME_URI, "cybersec-framework.local") == 1);
  CHECK(ok_subtree(PKI_NAME_URI, "spiffe://x/") == 0);
  CHECK(ok_subtree(PKI_NAME_EMAIL, "example.com") == 1);
  CHECK(ok_subtree(PKI_NAME_EMAIL, ".example.com") == 1);
  CHECK(ok_subtree(PKI_NAME_EMAIL, "root@example.com") == 1);
  CHECK(ok_subtree(PKI_NAME_EMAIL, "root@") == 0);
  CHECK(ok_subtree(PKI_NAME_IP, "127.0.0.0/8") == 1);
  CHECK(ok_subtree(PKI_NAME_IP, "::1/128") == 1);
  CHECK(ok_subtree(PKI_NAME_IP, "127.0.0.1") == 0);
  CHECK(ok_subtree(PKI_NAME_IP, "127.0.0.1/8") == 0);
  CHECK(ok_subtree(PKI_NAME_IP, NULL) == 0);
}

TEST(dns_subtrees) {
  CHECK(in(PKI_NAME_DNS, "example.com", "example.com"));
  CHECK(in(PKI_NAME_DNS, "a.example.com", "example.com"));
  CHECK(in(PKI_NAME_DNS, "a.b.example.com", "example.com"));
  CHECK(in(PKI_NAME_DNS, "A.EXAMPLE.com", "example.COM"));
  CHECK(in(PKI_NAME_DNS, "*.example.com", "example.com"));
  CHECK(!in(PKI_NAME_DNS, "badexample.com", "example.com"));
  CHECK(!in(PKI_NAME_DNS, "example.com.evil", "example.com"));
  CHECK(!in(PKI_NAME_DNS, "com", "example.com"));
  /* A leading dot: below only. */
  CHECK(!in(PKI_NAME_DNS, "example.com", ".example.com"));
  CHECK(in(PKI_NAME_DNS, "a.example.com", ".example.com"));
  CHECK(!in(PKI_NAME_DNS, "aexample.com", ".example.com"));
  /* The empty subtree holds every name (RFC 5280). */
  CHECK(in(PKI_NAME_DNS, "anything.test", ""));
  /* Types must agree. */
  pki_name n = {PKI_NAME_DNS, "example.com"};
  pki_name s = {PKI_NAME_URI, "example.com"};
  CHECK(!pki_name_in_subtree(&n, &s));
  CHECK(!pki_name_in_subtree(NULL, &s));
}

TEST(uri_subtrees) {
  const char *id = "spiffe://cybersec-framework.local/agents/pki-agent";
  CHECK(in(PKI_NAME_URI, id, "cybersec-framework.local"));
  CHECK(in(PKI_NAME_URI, id, ".local"));
  CHECK(!in(PKI_NAME_URI, id, "other.local"));
  /* A host subtree is that host only (RFC 5280 4.2.1.10). */
  CHECK(!in(PKI_NAME_URI, "https://a.cybersec-framework.local/",
            "cybersec-framework.local"));
  CHECK(in(PKI_NAME_URI, "https://a.cybersec-framework.local/",
           ".cybersec-framework.local"));
  CHECK(!in(PKI_NAME_URI, "https://badcybersec-framework.local/",
            ".cybersec-framework.local"));
  CHECK(in(PKI_NAME_URI, "https://Example.COM:8443/x", "example.com"));
  CHECK(!in(PKI_NAME_URI, "https://[::1]/", "example.com"));
  CHECK(!in(PKI_NAME_URI, "no-scheme", "example.com"));
}

TEST(email_subtrees) {
  CHECK(in(PKI_NAME_EMAIL, "root@example.com", "root@example.com"));
  CHECK(in(PKI_NAME_EMAIL, "root@EXAMPLE.com", "root@example.com"));
  CHECK(!in(PKI_NAME_EMAIL, "Root@example.com", "root@example.com"));
  CHECK(!in(PKI_NAME_EMAIL, "admin@example.com", "root@example.com"));
  CHECK(in(PKI_NAME_EMAIL, "admin@example.com", "example.com"));
  CHECK(!in(PKI_NAME_EMAIL, "admin@mail.example.com", "example.com"));
  CHECK(in(PKI_NAME_EMAIL, "admin@mail.example.com", ".example.com"));
  CHECK(!in(PKI_NAME_EMAIL, "admin@example.com", ".example.com"));
  CHECK(!in(PKI_NAME_EMAIL, "admin@badexample.com", "example.com"));
}

TEST(ip_subtrees) {
  CHECK(in(PKI_NAME_IP, "127.0.0.1", "127.0.0.0/8"));
  CHECK(in(PKI_NAME_IP, "127.255.0.9", "127.0.0.0/8"));
  CHECK(!in(PKI_NAME_IP, "128.0.0.1", "127.0.0.0/8"));
  CHECK(in(PKI_NAME_IP, "10.15.0.1", "10.0.0.0/12"));
  CHECK(!in(PKI_NAME_IP, "10.16.0.1", "10.0.0.0/12"));
  CHECK(in(PKI_NAME_IP, "::1", "::1/128"));
  CHECK(!in(PKI_NAME_IP, "::2", "::1/128"));
  CHECK(!in(PKI_NAME_IP, "::ffff:127.0.0.1", "127.0.0.0/8")); /* family */
  CHECK(!in(PKI_NAME_IP, "127.0.0.1", "::/0"));
  CHECK(in(PKI_NAME_IP, "8.8.8.8", "0.0.0.0/0"));
  CHECK(!in(PKI_NAME_IP, "junk", "0.0.0.0/0"));
}

TEST(equal) {
  pki_name a = {PKI_NAME_DNS, "Example.com"}, b = {PKI_NAME_DNS, "example.COM"};
  CHECK(pki_name_equal(&a, &b));
  pki_name c = {PKI_NAME_IP, "::1"}, d = {PKI_NAME_IP, "0:0::0001"};
  CHECK(pki_name_equal(&c, &d));
  pki_name e = {PKI_NAME_IP, "127.0.0.1"};
  CHECK(!pki_name_equal(&c, &e));
  pki_name f = {PKI_NAME_URI, "spiffe://x.y/a"}, g = {PKI_NAME_URI, "spiffe://x.y/A"};
  CHECK(!pki_name_equal(&f, &g));
  pki_name h = {PKI_NAME_EMAIL, "a@X.com"}, i = {PKI_NAME_EMAIL, "a@x.com"};
  CHECK(pki_name_equal(&h, &i));
  pki_name j = {PKI_NAME_DNS, "a@x.com"};
  CHECK(!pki_name_equal(&i, &j)); /* different types */
  CHECK(!pki_name_equal(NULL, &j));
}

TEST(push_and_free) {
  pki_name *names = NULL;
  size_t num = 0;
  pki_err err;
  pki_err_clear(&err);
  for (int i = 0; i < 50; i++) {
    REQUIRE(pki_names_push(&names, &num, PKI_NAME_DNS, "abcdef", 3, &err));
  }
  CHECK(num == 50);
  CHECK(strcmp(names[49].value, "abc") == 0);
  CHECK(names[0].type == PKI_NAME_DNS);
  CHECK(!pki_names_push(&names, &num, PKI_NAME_DNS, "a\0b", 3, &err));
  CHECK(err.code == PKI_ERR_INVALID);
  CHECK(num == 50);
  pki_names_free(names, num);
  pki_names_free(NULL, 0);
}

TEST(constraints_verdicts) {
  /* Permitted: DNS example.com and IP 10.0.0.0/8. Excluded, by index: */
  static const pki_name kPermitted[] = {{PKI_NAME_DNS, "example.com"},
                                        {PKI_NAME_IP, "10.0.0.0/8"}};
  static const pki_name kExcluded[] = {{PKI_NAME_DNS, "bad.example.com"},   /* 0 */
                                       {PKI_NAME_DNS, ".deep.example.com"}, /* 1 */
                                       {PKI_NAME_URI, "wild.example.com"},  /* 2 */
                                       {PKI_NAME_IP, "10.9.0.0/16"}};       /* 3 */
  static const struct {
    pki_name_type type;
    const char *name;
    pki_name_verdict want;
    size_t excluded; /* for PKI_NAME_EXCLUDED */
  } kCases[] = {
      {PKI_NAME_DNS, "example.com", PKI_NAME_ALLOWED, 0},
      {PKI_NAME_DNS, "WWW.Example.COM", PKI_NAME_ALLOWED, 0},
      {PKI_NAME_DNS, "*.ok.example.com", PKI_NAME_ALLOWED, 0},
      {PKI_NAME_DNS, "example.org", PKI_NAME_NOT_PERMITTED, 0},
      {PKI_NAME_DNS, "badexample.com", PKI_NAME_NOT_PERMITTED, 0},
      /* A wildcard is within a subtree only when all it stands for is. */
      {PKI_NAME_DNS, "*.com", PKI_NAME_NOT_PERMITTED, 0},
      {PKI_NAME_IP, "10.1.2.3", PKI_NAME_ALLOWED, 0},
      {PKI_NAME_IP, "11.1.2.3", PKI_NAME_NOT_PERMITTED, 0},
      {PKI_NAME_IP, "::1", PKI_NAME_NOT_PERMITTED, 0},
      /* No permitted subtree of its type: not constrained by them. */
      {PKI_NAME_URI, "https://anything.org/", PKI_NAME_ALLOWED, 0},
      {PKI_NAME_EMAIL, "a@example.org", PKI_NAME_ALLOWED, 0},
      /* Excluded subtrees, with the one that matched. */
      {PKI_NAME_DNS, "bad.example.com", PKI_NAME_EXCLUDED, 0},
      {PKI_NAME_DNS, "x.BAD.example.com", PKI_NAME_EXCLUDED, 0},
      {PKI_NAME_DNS, "a.deep.example.com", PKI_NAME_EXCLUDED, 1},
      {PKI_NAME_DNS, "deep.example.com", PKI_NAME_ALLOWED, 0},
      {PKI_NAME_URI, "https://wild.example.com:8443/x", PKI_NAME_EXCLUDED, 2},
      {PKI_NAME_IP, "10.9.255.1", PKI_NAME_EXCLUDED, 3},
      {PKI_NAME_IP, "10.10.0.1", PKI_NAME_ALLOWED, 0},
      /* Outside both: reported outside the permitted subtrees. */
      {PKI_NAME_IP, "192.168.0.1", PKI_NAME_NOT_PERMITTED, 0},
      /* "*.example.com" stands for bad.example.com, though it does not lie
       * within that subtree; "*.deep.example.com" lies within
       * ".deep.example.com". */
      {PKI_NAME_DNS, "*.example.com", PKI_NAME_EXCLUDED, 0},
      {PKI_NAME_DNS, "*.deep.example.com", PKI_NAME_EXCLUDED, 1},
      {PKI_NAME_DNS, "*.bad.example.com", PKI_NAME_EXCLUDED, 0},
  };
  for (size_t i = 0; i < sizeof(kCases) / sizeof(kCases[0]); i++) {
    pki_name n = {kCases[i].type, (char *)kCases[i].name};
    size_t ex = 99;
    pki_name_verdict got = pki_name_constraints_check(&n, kPermitted, 2, kExcluded, 4, &ex);
    int ok = got == kCases[i].want &&
             ex == (got == PKI_NAME_EXCLUDED ? kCases[i].excluded : 99);
    if (!ok) fprintf(stderr, "  %s: verdict %d, excluded %zu\n", kCases[i].name, got, ex);
    CHECK(ok);
  }
}

TEST(constraints_wildcards_meet_excluded) {
  size_t ex;
  static const pki_name kPermitted[] = {{PKI_NAME_DNS, "example.com"}};
  static const pki_name kExcluded[] = {{PKI_NAME_URI, "x.example.com"},
                                       {PKI_NAME_DNS, "a.b.example.com"},
                                       {PKI_NAME_DNS, ".b.example.com"},
                                       {PKI_NAME_DNS, "X.Example.com"}};
  pki_name star = {PKI_NAME_DNS, "*.example.com"};
  /* A URI subtree of the same host does not constrain DNS names; nor do
   * subtrees two labels or more below the wildcard's base. */
  CHECK(pki_name_constraints_check(&star, kPermitted, 1, kExcluded, 3, &ex) ==
        PKI_NAME_ALLOWED);
  CHECK(pki_name_constraints_check(&star, kPermitted, 1, kExcluded, 4, &ex) ==
        PKI_NAME_EXCLUDED &&
        ex == 3);
  pki_name deeper = {PKI_NAME_DNS, "*.b.example.com"};
  CHECK(pki_name_constraints_check(&deeper, kPermitted, 1, kExcluded, 4, &ex) ==
        PKI_NAME_EXCLUDED &&
        ex == 1);
  /* The index may be left out. */
  CHECK(pki_name_constraints_check(&star, kPermitted, 1, kExcluded, 4, NULL) ==
        PKI_NAME_EXCLUDED);
  /* No constraints at all: everything is allowed. */
  CHECK(pki_name_constraints_check(&star, NULL, 0, NULL, 0, NULL) == PKI_NAME_ALLOWED);
}

int main(void) {
  RUN(labels);
  RUN(dns_good);
  RUN(dns_bad);
  RUN(messages_are_clean);
  RUN(ip_names);
  RUN(ip_parse_format);
  RUN(cidr_parse);
  RUN(uri_names);
  RUN(email_names);
  RUN(subtree_check);
  RUN(dns_subtrees);
  RUN(uri_subtrees);
  RUN(email_subtrees);
  RUN(ip_subtrees);
  RUN(equal);
  RUN(push_and_free);
  RUN(constraints_verdicts);
  RUN(constraints_wildcards_meet_excluded);
  return test_finish();
}
