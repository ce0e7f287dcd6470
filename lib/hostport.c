#include "lib/hostport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* parse_port reads 1 to 5 decimal digits, at most 65535. */
static int parse_port(const char *s, int *out) {
  size_t n = strlen(s);
  if (n == 0 || n > 5) return 0;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  if (v > 65535) return 0;
  *out = (int)v;
  return 1;
}

int pki_hostport_parse(struct sockaddr_storage *out, const char *text, pki_err *err) {
  char host[64];
  int port;
  memset(out, 0, sizeof(*out));
  const char *colon = strrchr(text, ':');
  if (colon == NULL || (size_t)(colon - text) >= sizeof(host) || !parse_port(colon + 1, &port)) {
    goto bad;
  }
  memcpy(host, text, (size_t)(colon - text));
  host[colon - text] = '\0';
  if (host[0] == '[') {
    size_t n = strlen(host);
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (n < 3 || host[n - 1] != ']') goto bad;
    host[n - 1] = '\0';
    if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1) goto bad;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    return 1;
  }
  struct sockaddr_in *a4 = (struct sockaddr_in *)out;
  if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) goto bad;
  a4->sin_family = AF_INET;
  a4->sin_port = htons((uint16_t)port);
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INVALID,
          "'%s' is not HOST:PORT (an IPv4 address or [IPv6], and a port 0-65535)", text);
  return 0;
}

int pki_hostport_format(char *out, size_t out_size, const struct sockaddr *addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;
    inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof(host));
    port = ntohs(a6->sin6_port);
    snprintf(out, out_size, "[%s]:%d", host, port);
  } else if (addr->sa_family == AF_INET) {
    const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
    inet_ntop(AF_INET, &a4->sin_addr, host, sizeof(host));
    port = ntohs(a4->sin_port);
    snprintf(out, out_size, "%s:%d", host, port);
  } else {
    snprintf(out, out_size, "?");
  }
  return port;
}
