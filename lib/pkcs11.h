/* pkcs11.h: CA keys held in PKCS#11 tokens (an HSM; SoftHSM2 in tests),
 * reached through p11-kit, which loads the module and parses the URIs.
 *
 * A key is named by an RFC 7512 URI: the token (token=, serial=,
 * manufacturer=, model=; one token must match), the object (object=, the
 * CKA_LABEL, and/or id=), and in the query the module that reaches the
 * token (module-path=, section 2.3), e.g.
 *   pkcs11:token=pkid-online;object=services-ca;type=private
 *     ?module-path=/usr/lib/softhsm/libsofthsm2.so
 * The PIN comes from the caller, read from a file; a URI that carries one
 * (pin-value=, pin-source=) is refused, so that no PIN sits in a file that
 * is not kept secret or on a command line.
 *
 * Keys made here (pki_p11_key_generate) are CKA_SENSITIVE and not
 * CKA_EXTRACTABLE: the token refuses to hand out their value, so the key
 * never leaves it. Signing: ECDSA keys sign the digest (SHA-256 for P-256,
 * SHA-384 for P-384) with CKM_ECDSA, whose r||s is re-encoded as a DER
 * ECDSA-Sig-Value (RFC 5480 2.2 / RFC 5758 3.2); Ed25519 keys sign the
 * data with CKM_EDDSA (RFC 8410). The result is what pki_sig_sign gives.
 *
 * Threads: a pki_p11_key signs from any number of threads at once. Each
 * call takes a session from the key's pool, opening one when all are busy
 * (so N workers hold at most N sessions); one login serves them all.
 * Modules are loaded once per process and shared by every key on them.
 *
 * Failure: a call that fails inside the token (it was removed, reset, its
 * store went away, its sessions were closed) fails with PKI_ERR_UNAVAILABLE
 * and marks the module broken; every key on it is then not ready and fails
 * at once, without touching the token, until pki_p11_key_recover has
 * finalized and initialized the module again, logged in and found the
 * object again, holding the same public key. Signing never blocks on that
 * recovery: the owner runs it (pkid, once a second, off its loop).
 * Errors: 1/0 (or NULL) and a pki_err naming the module, token or object. */
#ifndef PKID_LIB_PKCS11_H
#define PKID_LIB_PKCS11_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/err.h"
#include "lib/key.h"

typedef struct pki_p11_key pki_p11_key;

/* pki_p11_key_open opens the private key |uri| names, logging in to its
 * token with |pin|. The object must be a |type| key (PKI_ERR_UNSUPPORTED
 * otherwise) whose signature verifies under |expected|, the public key of
 * its CA's certificate (PKI_ERR_INVALID otherwise): a probe signature is
 * made and checked before the key is used. Other errors: PKI_ERR_NOT_FOUND
 * for a module, token or object that is not there, PKI_ERR_AUTH for a PIN
 * the token refuses. */
pki_p11_key *pki_p11_key_open(const char *uri, pki_key_type type, const EVP_PKEY *expected,
                              const uint8_t *pin, size_t pin_len, pki_err *err);

/* pki_p11_key_generate makes a new |type| key pair (a CA key type) in the
 * token |token_uri| names, its objects labelled |label|, logged in with
 * |pin|, and opens it. A token that holds an object labelled |label|
 * already is refused (PKI_ERR_EXISTS): a ceremony never replaces a key. */
pki_p11_key *pki_p11_key_generate(const char *token_uri, const char *label,
                                  pki_key_type type, const uint8_t *pin, size_t pin_len,
                                  pki_err *err);

/* pki_p11_key_destroy deletes from the token the key pair that
 * pki_p11_key_generate made, for a ceremony that failed after making it,
 * and frees |k|. */
int pki_p11_key_destroy(pki_p11_key *k, pki_err *err);

/* pki_p11_set_pin changes the user PIN of the token |uri| names from |old|
 * to |new| (C_SetPIN): how a ceremony hands a token from the PIN it was
 * initialized with to the CA's secret. */
int pki_p11_set_pin(const char *uri, const uint8_t *old_pin, size_t old_len,
                    const uint8_t *new_pin, size_t new_len, pki_err *err);

/* pki_p11_key_up_ref takes another reference; pki_p11_key_free drops one,
 * and the last logs out, wipes the PIN kept for re-login and unloads the
 * module when no other key uses it. NULL is fine. */
pki_p11_key *pki_p11_key_up_ref(pki_p11_key *k);
void pki_p11_key_free(pki_p11_key *k);

/* pki_p11_key_public is the key's public half (owned by |k|). */
EVP_PKEY *pki_p11_key_public(const pki_p11_key *k);

/* pki_p11_key_uri is the URI that names the key (for a generated key: the
 * token's URI with its object, label and class added), without a PIN. */
const char *pki_p11_key_uri(const pki_p11_key *k);

/* pki_p11_key_sign has pki_sig_sign's contract: it signs |data| (not a
 * digest) into a malloc'd DER ECDSA-Sig-Value or 64 Ed25519 octets. */
int pki_p11_key_sign(pki_p11_key *k, uint8_t **out, size_t *out_len, const uint8_t *data,
                     size_t data_len, pki_err *err);

/* pki_p11_key_ready reports whether signing is expected to work: no call
 * has found the token failing since it was last opened or recovered. */
int pki_p11_key_ready(const pki_p11_key *k);

/* pki_p11_key_recover makes a key that is not ready usable again, as the
 * header describes; it does nothing to a ready key. It fails with
 * PKI_ERR_UNAVAILABLE while the token is still away. */
int pki_p11_key_recover(pki_p11_key *k, pki_err *err);

#endif /* PKID_LIB_PKCS11_H */
