/* hostport_test: "HOST:PORT" as pkid's listeners take it: strictly. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "lib/hostport.h"
#include "tests/unit/test.h"

static int parses(const char *text) {
  struct sockaddr_storage a;
  pki_err err;
  return pki_hostport_parse(&a, text, &err);
}

TEST(good_addresses) {
  struct sockaddr_storage a;
  pki_err err;
  char out[PKI_HOSTPORT_MAX];
  REQUIRE(pki_hostport_parse(&a, "127.0.0.1:8443", &err));
  CHECK(a.ss_family == AF_INET);
  CHECK(pki_hostport_format(out, sizeof(out), (struct sockaddr *)&a) == 8443);
  CHECK(strcmp(out, "127.0.0.1:8443") == 0);
  REQUIRE(pki_hostport_parse(&a, "[::1]:0", &err));
  CHECK(a.ss_family == AF_INET6);
  CHECK(pki_hostport_format(out, sizeof(out), (struct sockaddr *)&a) == 0);
  CHECK(strcmp(out, "[::1]:0") == 0);
  CHECK(parses("0.0.0.0:65535"));
  CHECK(parses("[2001:db8::7]:443"));
}

TEST(bad_addresses_are_refused_not_guessed) {
  /* Each of these once bound a port the kernel picked (atoi). */
  CHECK(!parses("127.0.0.1:abc"));
  CHECK(!parses("127.0.0.1:8443x"));
  CHECK(!parses("127.0.0.1:"));
  CHECK(!parses("127.0.0.1:-1"));
  CHECK(!parses("127.0.0.1:65536"));
  CHECK(!parses("127.0.0.1:123456"));
  CHECK(!parses("127.0.0.1: 80"));
  CHECK(!parses("127.0.0.1"));
  CHECK(!parses("localhost:80")); /* an address, not a name */
  CHECK(!parses("::1:80"));       /* IPv6 needs brackets */
  CHECK(!parses("[::1]80"));
  CHECK(!parses("[]:80"));
  CHECK(!parses("[127.0.0.1]:80"));
  CHECK(!parses(":80"));
  pki_err err;
  struct sockaddr_storage a;
  CHECK(!pki_hostport_parse(&a, "1.2.3.4:x", &err) && err.code == PKI_ERR_INVALID);
  CHECK(strstr(err.msg, "1.2.3.4:x") != NULL);
}

int main(void) {
  RUN(good_addresses);
  RUN(bad_addresses_are_refused_not_guessed);
  return test_finish();
}
