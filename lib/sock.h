/* sock.h: blocking-style stream sockets with a deadline, for the small
 * clients (lib/http_get.c, client/haproxy.c) and pkid's ACME validator.
 *
 * Every descriptor is non-blocking underneath and every wait is a poll(2)
 * bounded by |deadline_ms| (a CLOCK_MONOTONIC time from sock_deadline), so
 * a peer that stops answering costs at most the caller's budget. Name
 * resolution (getaddrinfo) is the one wait that is not bounded.
 *
 * Errors are lib/'s pki_err: PKI_ERR_UNAVAILABLE for what may work later
 * (refused, unreachable, timed out, reset), PKI_ERR_INVALID for a bad
 * address. Writes never raise SIGPIPE (MSG_NOSIGNAL). */
#ifndef PKID_LIB_SOCK_H
#define PKID_LIB_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/err.h"

/* sock_deadline is now (CLOCK_MONOTONIC) plus |timeout_ms|, in ms. */
uint64_t sock_deadline(uint64_t timeout_ms);

/* sock_connect_tcp resolves |host| (an address or a name) and connects to
 * the first address of |port| that accepts before the deadline; it
 * returns the descriptor, or -1 with |err| set. |what| names the peer in
 * messages ("haproxy", "http://..."). */
int sock_connect_tcp(const char *host, const char *port, uint64_t deadline_ms,
                     const char *what, pki_err *err);

/* sock_connect_unix connects to the unix stream socket at |path|. */
int sock_connect_unix(const char *path, uint64_t deadline_ms, const char *what, pki_err *err);

/* sock_send_all writes all |len| bytes. */
int sock_send_all(int fd, const void *data, size_t len, uint64_t deadline_ms, const char *what,
                  pki_err *err);

/* sock_recv reads what is there (at most |cap| bytes), waiting for some
 * until the deadline; |*out_n| is 0 at end of stream. */
int sock_recv(int fd, void *buf, size_t cap, size_t *out_n, uint64_t deadline_ms,
              const char *what, pki_err *err);

#endif /* PKID_LIB_SOCK_H */
