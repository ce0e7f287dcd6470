/* secret.h: a passphrase, or the random secret rebuilt from custodian
 * shares: what opens sealed CA keys (lib/key.h). pkid and pkictl read it
 * the same way, from a file or from the environment.
 *
 * A secret never goes to a log, a command line or a core dump; callers wipe
 * it (pki_secret_cleanup) as soon as the keys are open. */
#ifndef PKID_LIB_SECRET_H
#define PKID_LIB_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define PKI_SECRET_MAX 256

typedef struct pki_secret {
  uint8_t bytes[PKI_SECRET_MAX];
  size_t len;
} pki_secret;

/* pki_secret_read takes a passphrase from |file| (its first line; a
 * trailing newline is not part of it) or, when |file| is NULL, from the
 * environment variable |env|.
 *
 * A file must be its reader's own and readable by no one else (mode 0600
 * or 0400): one that group or others can read, or that another user owns,
 * is refused (PKI_ERR_DENIED), as ssh refuses such a private key. One
 * exception: a file directly in $CREDENTIALS_DIRECTORY, systemd's private
 * directory of the service's credentials (systemd.exec(5), LoadCredential=).
 * systemd 254 and later grant the service read access there with an ACL,
 * so the file is root's and stat shows group read (the ACL mask); it is
 * accepted when it is root's or the reader's and neither others nor the
 * group may write it or others read it. A
 * variable is wiped and removed once read, so that it is neither in
 * /proc/PID/environ nor passed to anything the process starts. */
int pki_secret_read(pki_secret *out, const char *file, const char *env, pki_err *err);

/* pki_secret_cleanup wipes |secret|. */
void pki_secret_cleanup(pki_secret *secret);

#endif /* PKID_LIB_SECRET_H */
