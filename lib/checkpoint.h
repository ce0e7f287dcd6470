/* checkpoint.h: a signed statement of a journal's head, so that cutting or
 * rewriting the journal is evident to anyone who kept a checkpoint.
 *
 * A journal's records are chained (lib/journal.h: each record's hash covers
 * the one before), so (seq, chain hash after it) names the whole prefix up
 * to seq. A checkpoint is that pair, with the origin (which journal) and
 * the time, signed with a key kept for audit alone (Ed25519,
 * pki/audit/audit.key, sealed like a CA key). It is text in the signed-note
 * form of Go's checksum database and C2SP's tlog-checkpoint: a body of
 * lines, a blank line, and a signature line
 *
 *   pkid journal checkpoint
 *   origin pkid node 1
 *   seq 1204
 *   chain 6f1e...(64 hex digits)
 *   time 1796224000123
 *
 *   — pkid-audit BASE64(key id (4 octets) || Ed25519 signature (64))
 *
 * where the key id is the first 4 octets of the SHA-256 of the public
 * key's SubjectPublicKeyInfo and the signature covers the body's octets,
 * its last newline included. A journal holds a checkpoint's prefix when its
 * record |seq| exists and has the chain hash named. Parsing is strict:
 * anything else is refused. Errors: 1/0 and a pki_err, as in lib/. */
#ifndef PKID_LIB_CHECKPOINT_H
#define PKID_LIB_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "lib/err.h"
#include "lib/journal.h"

#define PKI_CHECKPOINT_ORIGIN_MAX 128
#define PKI_CHECKPOINT_MAX 1024 /* octets of text, at most */

typedef struct pki_checkpoint {
  char origin[PKI_CHECKPOINT_ORIGIN_MAX]; /* printable ASCII, no newline */
  uint64_t seq;                           /* the last record covered (>= 1) */
  uint8_t chain[PKI_JOURNAL_HASH_LEN];    /* the chain hash after it */
  uint64_t time_ms;                       /* Unix ms, when it was signed */
  uint8_t key_id[4];
  uint8_t sig[64];
  /* From pki_checkpoint_parse: the signed body, for the check. */
  size_t body_len;
  uint8_t body[PKI_CHECKPOINT_MAX];
} pki_checkpoint;

/* pki_checkpoint_sign fills |cp|'s key id and signature with |key| (an
 * Ed25519 private key) and writes its text into |out| (malloc'd,
 * NUL-terminated; |*out_len| without the NUL). */
int pki_checkpoint_sign(char **out, size_t *out_len, pki_checkpoint *cp, EVP_PKEY *key,
                        pki_err *err);

/* pki_checkpoint_parse reads a checkpoint's text (PKI_ERR_INVALID, saying
 * where, for anything but the form above). It does not check the
 * signature. */
int pki_checkpoint_parse(pki_checkpoint *out, const uint8_t *text, size_t len, pki_err *err);

/* pki_checkpoint_verify checks |cp|'s signature with |pub| (an Ed25519
 * public key): PKI_ERR_AUTH when another key made it or it was altered. */
int pki_checkpoint_verify(const pki_checkpoint *cp, EVP_PKEY *pub, pki_err *err);

/* pki_checkpoint_key_id is the first 4 octets of SHA-256(SPKI of |key|). */
int pki_checkpoint_key_id(uint8_t out[4], EVP_PKEY *key, pki_err *err);

#endif /* PKID_LIB_CHECKPOINT_H */
