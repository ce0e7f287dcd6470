/* idset.h: a set of 32-octet ids, such as SHA-256 outputs: the bootstrap
 * tokens used, the keys revoked for keyCompromise.
 *
 * Open addressing with linear probing, at most half full. The ids are
 * digests, so their first octets are a fine hash: no one can choose ids
 * that collide without finding SHA-256 preimages. The all-zero id marks an
 * empty slot and cannot be stored (it is no digest anyone meets).
 *
 * One thread at a time; no locks. Errors: pkid_idset_add returns 0 only
 * when out of memory. */
#ifndef PKID_SERVER_STORE_IDSET_H
#define PKID_SERVER_STORE_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct pkid_idset {
  uint8_t (*ids)[32]; /* NULL until the first add */
  size_t mask;        /* capacity - 1 */
  size_t count;
} pkid_idset;

/* pkid_idset_add adds |id|; |*out_added| (may be NULL) says whether it was
 * new. Returns 0 only when out of memory (nothing changed). */
int pkid_idset_add(pkid_idset *s, const uint8_t id[32], int *out_added);

/* pkid_idset_has reports whether |id| is in the set. */
int pkid_idset_has(const pkid_idset *s, const uint8_t id[32]);

/* pkid_idset_remove takes |id| out, if it is there. */
void pkid_idset_remove(pkid_idset *s, const uint8_t id[32]);

/* pkid_idset_foreach calls |fn| for every id, in no order, until it
 * returns 0; it returns 0 then, else 1. */
int pkid_idset_foreach(const pkid_idset *s, int (*fn)(void *ctx, const uint8_t id[32]),
                       void *ctx);

/* pkid_idset_cleanup frees the set, leaving it empty. */
void pkid_idset_cleanup(pkid_idset *s);

#endif /* PKID_SERVER_STORE_IDSET_H */
