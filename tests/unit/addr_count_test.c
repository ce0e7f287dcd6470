/* addr_count_test: connections counted per client address: the limit per
 * address, IPv6 by /64, IPv4-mapped IPv6 as its IPv4 host, and removal
 * that keeps the rest of the table findable. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "lib/addr_count.h"
#include "tests/unit/test.h"

static struct sockaddr_storage v4(const char *text) {
  struct sockaddr_storage s;
  memset(&s, 0, sizeof(s));
  struct sockaddr_in *a = (struct sockaddr_in *)&s;
  a->sin_family = AF_INET;
  inet_pton(AF_INET, text, &a->sin_addr);
  return s;
}

static struct sockaddr_storage v6(const char *text) {
  struct sockaddr_storage s;
  memset(&s, 0, sizeof(s));
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s;
  a->sin6_family = AF_INET6;
  inet_pton(AF_INET6, text, &a->sin6_addr);
  return s;
}

#define SA(x) ((const struct sockaddr *)&(x))

TEST(limit_per_address) {
  pki_addr_count *c = pki_addr_count_new();
  REQUIRE(c != NULL);
  struct sockaddr_storage a = v4("127.0.0.1"), b = v4("127.0.0.2");
  CHECK(pki_addr_count_add(c, SA(a), 2) && pki_addr_count_add(c, SA(a), 2));
  CHECK(!pki_addr_count_add(c, SA(a), 2)); /* the third from one address */
  CHECK(pki_addr_count_add(c, SA(b), 2));   /* another address is let in */
  CHECK(pki_addr_count_get(c, SA(a)) == 2 && pki_addr_count_get(c, SA(b)) == 1);
  pki_addr_count_remove(c, SA(a));
  CHECK(pki_addr_count_add(c, SA(a), 2)); /* room again */
  pki_addr_count_free(c);
}

TEST(ipv6_counts_by_prefix) {
  pki_addr_count *c = pki_addr_count_new();
  struct sockaddr_storage a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
                          other = v6("2001:db8:1:3::1");
  CHECK(pki_addr_count_add(c, SA(a), 2) && pki_addr_count_add(c, SA(b), 2));
  CHECK(!pki_addr_count_add(c, SA(a), 2)); /* one /64, whatever the host part */
  CHECK(pki_addr_count_add(c, SA(other), 2));
  /* An IPv4-mapped address is its IPv4 host, not a /64. */
  struct sockaddr_storage m = v6("::ffff:10.0.0.1"), n = v6("::ffff:10.0.0.2"),
                          p = v4("10.0.0.1");
  CHECK(pki_addr_count_add(c, SA(m), 1) && pki_addr_count_add(c, SA(n), 1));
  CHECK(!pki_addr_count_add(c, SA(p), 1));
  pki_addr_count_free(c);
}

TEST(remove_keeps_the_others) {
  pki_addr_count *c = pki_addr_count_new();
  enum { N = 3000 };
  char text[32];
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof(text), "10.%d.%d.1", i / 250, i % 250);
    struct sockaddr_storage a = v4(text);
    CHECK(pki_addr_count_add(c, SA(a), 1));
  }
  for (int i = 0; i < N; i += 2) {
    snprintf(text, sizeof(text), "10.%d.%d.1", i / 250, i % 250);
    struct sockaddr_storage a = v4(text);
    pki_addr_count_remove(c, SA(a));
  }
  int ok = 1;
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof(text), "10.%d.%d.1", i / 250, i % 250);
    struct sockaddr_storage a = v4(text);
    ok &= pki_addr_count_get(c, SA(a)) == (i % 2 == 0 ? 0u : 1u);
  }
  CHECK(ok);
  /* Other families are not limited. */
  struct sockaddr_storage unix_addr;
  memset(&unix_addr, 0, sizeof(unix_addr));
  unix_addr.ss_family = AF_UNIX;
  CHECK(pki_addr_count_add(c, SA(unix_addr), 0));
  pki_addr_count_free(c);
}

int main(void) {
  RUN(limit_per_address);
  RUN(ipv6_counts_by_prefix);
  RUN(remove_keeps_the_others);
  return test_finish();
}
