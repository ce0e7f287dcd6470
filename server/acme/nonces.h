/* nonces.h: ACME's anti-replay nonces (RFC 8555 6.5), each accepted once.
 *
 * A nonce is 16 octets in base64url (22 characters, RFC 8555 6.5.1): a
 * 64-bit sequence number and the first 8 octets of an HMAC-SHA256 of it
 * under a key made at start. The MAC makes a nonce pkid did not hand out
 * fail without any lookup; the sequence number indexes a bitmap of the
 * last |window| nonces handed out, whose bit says "used". So memory is
 * window/8 bytes whatever clients do, and a nonce is refused (badNonce)
 * when it was not made here, was used, or is older than the window. A
 * client refused retries with the Replay-Nonce of the error response (RFC
 * 8555 6.5: every response carries a fresh one).
 *
 * The key lives in memory only: a restart, or another node of the fleet,
 * refuses this node's nonces, and the client retries once.
 *
 * Threads: one thread (pkid's loop). */
#ifndef PKID_SERVER_ACME_NONCES_H
#define PKID_SERVER_ACME_NONCES_H

#include <stddef.h>
#include <stdint.h>

/* A nonce's text and a NUL. */
#define PKID_ACME_NONCE_TEXT 23

typedef struct pkid_acme_nonces pkid_acme_nonces;

/* pkid_acme_nonces_new keeps the last |window| nonces usable (rounded up
 * to a multiple of 64; at least 64). NULL when memory runs out. */
pkid_acme_nonces *pkid_acme_nonces_new(size_t window);

void pkid_acme_nonces_free(pkid_acme_nonces *n);

/* pkid_acme_nonce_make writes a fresh nonce into |out|. */
void pkid_acme_nonce_make(pkid_acme_nonces *n, char out[PKID_ACME_NONCE_TEXT]);

/* pkid_acme_nonce_use accepts |text| (|len| characters, as the JWS's
 * "nonce" gave it) once: 1 when it is a nonce made here, within the
 * window, not used before, and from then on used; else 0. */
int pkid_acme_nonce_use(pkid_acme_nonces *n, const char *text, size_t len);

#endif /* PKID_SERVER_ACME_NONCES_H */
