/* ceremony.h: the offline steps of the hierarchy, as pkictl runs them.
 *
 * Each step reads and writes a pki/ tree (lib/pki_tree.h) and refuses to
 * overwrite a CA that exists: a ceremony is never repeated by accident. A
 * step that fails on bad input writes nothing. */
#ifndef PKID_CLIENT_CEREMONY_H
#define PKID_CLIENT_CEREMONY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/secret.h"
#include "lib/usage.h"

/* ceremony_secret_from_shares rebuilds the root's secret from share files. */
int ceremony_secret_from_shares(pki_secret *out, const char *const *files,
                                size_t num_files, pki_err *err);

/* ceremony_make_passphrase_file writes a random passphrase (32 random bytes
 * in hex) to |path| with mode 0600, unless the file exists already. */
int ceremony_make_passphrase_file(const char *path, pki_err *err);

/* ceremony_root makes the self-signed root in |dir|. With |split_n| > 0 its
 * key is sealed under a random secret split |split_m|-of-|split_n| into
 * share files under |dir|/root-ca/shares; otherwise under |passphrase|. */
int ceremony_root(const pki_catalog *cat, const char *dir,
                  const pki_secret *passphrase, unsigned split_m,
                  unsigned split_n, pki_err *err);

/* ceremony_intermediate has the root sign the intermediates (all when
 * |only| is NULL, in catalogue order so parents come first), each key
 * sealed under |ca_passphrase|. */
int ceremony_intermediate(const pki_catalog *cat, const char *dir,
                          const pki_secret *root_secret,
                          const pki_secret *ca_passphrase, const char *only,
                          pki_err *err);

/* ceremony_issue_offline signs |service|'s certificates (those of |usage|,
 * or all when |usage| is 0) with its intermediate's key. With |csr_path|
 * the subject key comes from that CSR (one certificate only); otherwise a
 * key is made here and written beside the certificate (0600). */
int ceremony_issue_offline(const pki_catalog *cat, const char *dir,
                           const pki_secret *ca_passphrase, const char *service,
                           unsigned usage, const char *csr_path, pki_err *err);

/* ceremony_demo builds the whole hierarchy and every service's
 * certificates into |dir|: the root split 3-of-5, rebuilt from three
 * shares to sign the intermediates, whose keys are sealed under
 * |ca_passphrase|. */
int ceremony_demo(const pki_catalog *cat, const char *dir,
                  const pki_secret *ca_passphrase, pki_err *err);

#endif /* PKID_CLIENT_CEREMONY_H */
