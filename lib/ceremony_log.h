/* ceremony_log.h: the offline ceremonies' own audit trail.
 *
 * The root's and the intermediates' keys are used on a machine pkid never
 * sees, so pkid's journal cannot record those signatures as they happen.
 * Each ceremony step (pkictl ceremony root, intermediate, crl, issue
 * --offline, and token create) appends one line to pki/ceremony.log
 * (mode 0644: it holds no secret), and pkid imports the lines it has not
 * journaled yet, each as an EVENT record whose detail is the line itself,
 * so the two trails stay one chain (server/audit/ceremonies.h).
 *
 *   pkid-ceremony 1 seq=N time=T kind=K ca=CA name=NAME serial=HEX
 *     sha256=HEX key=HOW shares=LIST prev=HEX hash=HEX
 *
 * on one line, the fields in that order, separated by one space:
 *   seq     1, 2, ... with no gap
 *   time    Unix seconds of the step
 *   kind    root, intermediate, issue (issue --offline), crl, token
 *   ca      the catalogue CA whose key signed (token: the service's CA, or -)
 *   name    what was signed: the CA's or service's catalogue name
 *   serial  the certificate's serial, the CRL's cRLNumber, in lower-case
 *           hex; - for a token
 *   sha256  SHA-256 of what was signed (the certificate's or CRL's DER; a
 *           token's text, which is the id pkid journals when it is used)
 *   key     how the signing key was unlocked: new (made in this step),
 *           shares, passphrase, token-key
 *   shares  - or the custodian shares used, as i:FP,... with i the share's
 *           index and FP the first 16 hex digits of the SHA-256 of its file
 *           (a fingerprint that names a share without revealing it)
 *   prev    the hash of the line before (64 zeros for seq 1)
 *   hash    SHA-256 of this line up to, not including, " hash="
 *
 * Names and values are [A-Za-z0-9._:,/-] only, so a line splits on spaces
 * and no field can forge another. Rewriting a line breaks every hash after
 * it; cutting the tail or rewriting it whole is caught by pkid, which
 * journaled the hashes it imported and refuses a log that no longer has
 * them. */
#ifndef PKID_LIB_CEREMONY_LOG_H
#define PKID_LIB_CEREMONY_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define PKI_CEREMONY_LOG_FILE "ceremony.log"
#define PKI_CEREMONY_FIELD_MAX 128  /* ca, name */
#define PKI_CEREMONY_SERIAL_MAX 41  /* 20 octets in hex, and the NUL */
#define PKI_CEREMONY_SHARES_MAX 4864 /* 255 shares of "iii:" and 16 digits, "," */
#define PKI_CEREMONY_LINE_MAX 6144  /* with the newline */

typedef struct pki_ceremony_entry {
  uint64_t seq;
  int64_t time;
  char kind[16];
  char ca[PKI_CEREMONY_FIELD_MAX];
  char name[PKI_CEREMONY_FIELD_MAX];
  char serial[PKI_CEREMONY_SERIAL_MAX];
  uint8_t sha256[32];
  char key[16];
  char shares[PKI_CEREMONY_SHARES_MAX];
  uint8_t prev[32];
  uint8_t hash[32];
} pki_ceremony_entry;

/* pki_ceremony_line_parse reads one line (|len| octets, without its
 * newline) and checks that its hash is its own; it does not know the line
 * before (see pki_ceremony_log_read). */
int pki_ceremony_line_parse(const char *line, size_t len, pki_ceremony_entry *out,
                            pki_err *err);

/* pki_ceremony_line_format writes |e| as a line with its newline into |out|
 * (PKI_CEREMONY_LINE_MAX octets), computing |e->hash| from the rest.
 * Returns the length, or 0 when a field holds an octet the format does not
 * allow or the line would not fit. */
size_t pki_ceremony_line_format(char *out, pki_ceremony_entry *e);

/* pki_ceremony_entry_fn sees each entry of a log in order, with its line
 * (without the newline). Returns 0 to stop with |err| set. */
typedef int (*pki_ceremony_entry_fn)(void *ctx, const pki_ceremony_entry *e, const char *line,
                                     size_t len, pki_err *err);

/* pki_ceremony_log_read reads the log at |path|, checking each line's hash,
 * that seq goes up by one and that each prev is the hash before it. A
 * missing file is an empty log. |fn| may be NULL; |last| (may be NULL)
 * gets the last entry (seq 0 when empty). A last line without its newline
 * (a step cut off while writing) is an error. */
int pki_ceremony_log_read(const char *path, pki_ceremony_entry_fn fn, void *ctx,
                          pki_ceremony_entry *last, pki_err *err);

/* pki_ceremony_log_append sets |e|'s seq, prev, hash (and time when 0)
 * from the log at |path|, which must read cleanly, and appends its line,
 * synced to disk before it returns. */
int pki_ceremony_log_append(const char *path, pki_ceremony_entry *e, pki_err *err);

/* pki_ceremony_fingerprint writes the share fingerprint of |data| (16 hex
 * digits and a NUL) into |out|. */
void pki_ceremony_fingerprint(char out[17], const uint8_t *data, size_t len);

#endif /* PKID_LIB_CEREMONY_LOG_H */
