/* addr_count.h: a listener's connections counted per client address, so
 * that one address cannot take every connection the listener allows.
 *
 * IPv4 addresses count one by one; IPv6 addresses by their /64 prefix,
 * since a single host commonly holds a whole /64 and could otherwise open
 * connections from 2^64 "addresses". Client addresses are chosen by the
 * client, so the table hashes them with SipHash under a random key: no one
 * can make them collide on purpose. Not thread-safe (one per loop). */
#ifndef PKID_LIB_ADDR_COUNT_H
#define PKID_LIB_ADDR_COUNT_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct pki_addr_count pki_addr_count;

/* pki_addr_count_new returns an empty table, or NULL when out of memory. */
pki_addr_count *pki_addr_count_new(void);
void pki_addr_count_free(pki_addr_count *c);

/* pki_addr_count_add counts one more connection from |addr| if that
 * address has fewer than |max|; 0 when it has |max| already (or memory ran
 * out): the caller refuses the connection. Other families than AF_INET and
 * AF_INET6 (a Unix socket) are not limited. */
int pki_addr_count_add(pki_addr_count *c, const struct sockaddr *addr, unsigned max);

/* pki_addr_count_remove forgets one connection from |addr| (one that
 * pki_addr_count_add counted). */
void pki_addr_count_remove(pki_addr_count *c, const struct sockaddr *addr);

/* pki_addr_count_get is how many connections |addr| has. */
unsigned pki_addr_count_get(const pki_addr_count *c, const struct sockaddr *addr);

#endif /* PKID_LIB_ADDR_COUNT_H */
