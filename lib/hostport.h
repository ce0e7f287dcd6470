/* hostport.h: the "HOST:PORT" addresses of pkid's listeners and clients.
 *
 * HOST is an IPv4 address in dotted form or an IPv6 address in brackets
 * ("[::1]:8443"), never a name: a listener binds an address, and resolving
 * names is a decision for the operator, not for pkid at start-up. PORT is
 * 0 to 65535 in decimal digits only; 0 asks the kernel to pick one (tests
 * do), and anything else ("abc", "8443x", "", "-1") is an error, never a
 * port chosen silently. */
#ifndef PKID_LIB_HOSTPORT_H
#define PKID_LIB_HOSTPORT_H

#include <stddef.h>
#include <sys/socket.h>

#include "lib/err.h"

/* The longest text pki_hostport_format writes, with its NUL:
 * "[" INET6_ADDRSTRLEN "]:" five digits. */
#define PKI_HOSTPORT_MAX 56

/* pki_hostport_parse reads |text| into |out| (an AF_INET or AF_INET6
 * address). PKI_ERR_INVALID, naming |text|, when it is not HOST:PORT. */
int pki_hostport_parse(struct sockaddr_storage *out, const char *text, pki_err *err);

/* pki_hostport_format writes |addr| as "HOST:PORT" ("[HOST]:PORT" for
 * IPv6) into |out| and returns the port; "?" and 0 for another family. */
int pki_hostport_format(char *out, size_t out_size, const struct sockaddr *addr);

#endif /* PKID_LIB_HOSTPORT_H */
