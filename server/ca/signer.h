/* signer.h: how one thread signs for the CAs: a pkid_signers holds, for
 * each loaded CA, the pki_signer that thread uses with its key.
 *
 * For an ECDSA P-256 CA that is a pool of nonces prepared ahead
 * (lib/ecdsa_batch.h): the owner refills it while idle, so a signature on
 * the request path costs two multiplications. Under sustained load the
 * pool runs dry; the signer then prepares a batch of nonces on the spot,
 * since a nonce of a batch (one inversion shared by all) costs less than
 * BoringSSL's own signing (bench/ecdsa_batch_speed: 9.6 us a signature
 * against 14.4 us; one nonce alone would cost 23.6). Other key types have no
 * signer (NULL): lib/ signs with the key, or through the token that holds
 * it (pki_issuer_sign).
 *
 * Threads: a pkid_signers belongs to one thread (its pools are not
 * thread-safe); each worker makes its own. Errors: 1/0 and a pki_err. */
#ifndef PKID_SERVER_CA_SIGNER_H
#define PKID_SERVER_CA_SIGNER_H

#include <stddef.h>

#include "lib/err.h"
#include "lib/sig.h"
#include "server/ca/ca.h"

typedef struct pkid_signers pkid_signers;

/* pkid_signers_new makes signers for every CA of |cas| (which must outlive
 * them), each P-256 pool holding up to |pool_capacity| nonces, empty. */
pkid_signers *pkid_signers_new(const pkid_cas *cas, size_t pool_capacity, pki_err *err);

/* pkid_signers_free wipes every prepared nonce. NULL is fine. */
void pkid_signers_free(pkid_signers *s);

/* pkid_signers_for returns the signer for |ca|, or NULL to sign with the
 * key directly. */
const pki_signer *pkid_signers_for(const pkid_signers *s, const pkid_ca *ca);

/* pkid_signers_refill prepares nonces |step| at a time, in every pool
 * missing at least |step| of its capacity, for as long as
 * |keep_going(ctx)| says so: the caller's idle time becomes signing time
 * saved later. A pool short of fewer waits: a batch shares one inversion
 * (14 us) among its nonces, and refilling after every job at low load
 * made batches of one or two, each nonce paying most of an inversion. */
void pkid_signers_refill(pkid_signers *s, size_t step, int (*keep_going)(void *ctx),
                         void *ctx);

#endif /* PKID_SERVER_CA_SIGNER_H */
