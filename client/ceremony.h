/* ceremony.h: the offline steps of the hierarchy, as pkictl runs them.
 *
 * Each step reads and writes a pki/ tree (lib/pki_tree.h) and refuses to
 * overwrite a CA that exists: a ceremony is never repeated by accident. A
 * step that fails on bad input writes nothing. Each step that signs
 * appends what it signed to |dir|/ceremony.log (lib/ceremony_log.h), which
 * pkid imports into its journal; a step refuses to start on a log that
 * does not read cleanly. */
#ifndef PKID_CLIENT_CEREMONY_H
#define PKID_CLIENT_CEREMONY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/ceremony_log.h"
#include "lib/err.h"
#include "lib/secret.h"
#include "lib/usage.h"

/* The root's secret, opened for a step, and how, for the ceremony log. */
typedef struct ceremony_root_key {
  pki_secret secret;
  char how[16];                         /* "shares" or "passphrase" */
  char shares[PKI_CEREMONY_SHARES_MAX]; /* "-" or the shares used, i:FP,... */
} ceremony_root_key;

/* Where a step makes CA keys: with |uri| NULL in memory, sealed to a file
 * under the CA's secret; otherwise inside the PKCS#11 token |uri| names
 * (lib/pkcs11.h: CKA_SENSITIVE, not extractable, labelled with the CA's
 * name), the tree keeping the key's URI. The token's user PIN is then the
 * CA's secret (the root's passphrase or split secret; the CA passphrase
 * for the intermediates), so that what opened a sealed key logs in to the
 * token. |initial_pin|, when not NULL, is the PIN the token has now (set
 * when it was initialized); the step changes it to the secret (C_SetPIN).
 * Without it the token's PIN must be the secret already. */
typedef struct ceremony_pkcs11 {
  const char *uri;
  const pki_secret *initial_pin;
} ceremony_pkcs11;

/* ceremony_secret_from_shares rebuilds the root's secret from share files. */
int ceremony_secret_from_shares(ceremony_root_key *out, const char *const *files,
                                size_t num_files, pki_err *err);

/* ceremony_secret_from_passphrase reads the root's passphrase (|file|, or
 * the environment variable |env|; lib/secret.h). */
int ceremony_secret_from_passphrase(ceremony_root_key *out, const char *file, const char *env,
                                    pki_err *err);

void ceremony_root_key_cleanup(ceremony_root_key *k);

/* ceremony_make_passphrase_file writes a random passphrase (32 random bytes
 * in hex) to |path| with mode 0600, unless the file exists already. */
int ceremony_make_passphrase_file(const char *path, pki_err *err);

/* ceremony_root makes the self-signed root in |dir|. With |split_n| > 0 its
 * key is sealed under a random secret split |split_m|-of-|split_n| into
 * share files under |dir|/root-ca/shares; otherwise under |passphrase|.
 * With |token| (NULL: in memory) the key is made in that token instead and
 * the secret becomes its PIN. It also signs the root's first CRL (see
 * ceremony_crl): cRLNumber 1, no entries. A step that fails after making a
 * key in a token deletes it. */
int ceremony_root(const pki_catalog *cat, const char *dir,
                  const pki_secret *passphrase, unsigned split_m,
                  unsigned split_n, const ceremony_pkcs11 *token, pki_err *err);

/* ceremony_intermediate has the root sign the intermediates (all when
 * |only| is NULL, in catalogue order so parents come first), each key
 * sealed under |ca_passphrase|. */
int ceremony_intermediate(const pki_catalog *cat, const char *dir,
                          const ceremony_root_key *root_key,
                          const pki_secret *ca_passphrase, const char *only,
                          const ceremony_pkcs11 *token, pki_err *err);

/* ceremony_issue_offline signs |service|'s certificates (those of |usage|,
 * or all when |usage| is 0) with its intermediate's key. With |csr_path|
 * the subject key comes from that CSR (one certificate only); otherwise a
 * key is made here and written beside the certificate (0600). */
int ceremony_issue_offline(const pki_catalog *cat, const char *dir,
                           const pki_secret *ca_passphrase, const char *service,
                           unsigned usage, const char *csr_path, pki_err *err);

/* The root's CRL (RFC 5280 section 5). The root's key is offline, so pkid
 * cannot sign the CRL that says whether an intermediate is revoked: the
 * ceremonies do, as a complete CRL with no delta, written to crl/root.crl
 * (DER) and crl/root.crl.pem (PEM), mode 0644, each file replaced
 * atomically. thisUpdate is PKI_BACKDATE_S ago, for relying parties whose
 * clocks are a little behind; nextUpdate is the root's crl_validity_days
 * after now. pkid serves the file and alerts once half of that has passed:
 * sign the next one before it runs out.
 *
 * ceremony_crl signs the next one: cRLNumber one more than the current
 * file's, whose entries it carries over. It refuses to go on when that
 * file is missing, does not parse, is a delta or is not the root's (issuer,
 * key identifier and signature), or when the clock here is before its
 * thisUpdate. With |revoke| it adds that intermediate's certificate (one
 * the root signed; the serial from its certificate file), revoked now for
 * |reason| (a pki_crl_reason); a certificate already listed is refused.
 * What it signed goes to |out| unless NULL. */
typedef struct ceremony_crl_info {
  uint64_t number; /* cRLNumber */
  int64_t this_update, next_update;
  size_t num_entries;
} ceremony_crl_info;

int ceremony_crl(const pki_catalog *cat, const char *dir, const ceremony_root_key *root_key,
                 const char *revoke, int reason, ceremony_crl_info *out, pki_err *err);

/* ceremony_crl_reason_parse reads a revocation reason as pkictl names it
 * ("ca-compromise"): those RFC 5280 5.3.1 gives for a CA certificate on a
 * complete CRL, so not certificate-hold (which this ceremony would have no
 * way to release), remove-from-crl (delta CRLs only) or aa-compromise
 * (attribute authorities). */
int ceremony_crl_reason_parse(int *out, const char *text, pki_err *err);

/* ceremony_token writes a one-time bootstrap token (lib/token.h) for
 * |service|, good for |ttl_s| seconds, into |out| (PKI_TOKEN_MAX_TEXT),
 * with the key |dir|/bootstrap/token.key (made when missing), and logs its
 * SHA-256: the id pkid journals when the token is used. */
int ceremony_token(const pki_catalog *cat, const char *dir, const char *service,
                   uint32_t ttl_s, char *out, pki_err *err);

/* ceremony_demo builds the whole hierarchy and every service's
 * certificates into |dir|: the root split 3-of-5, rebuilt from three
 * shares to sign the intermediates, whose keys are sealed under
 * |ca_passphrase|; or, with tokens, made in |root_token| and
 * |online_token| (either may be NULL). */
int ceremony_demo(const pki_catalog *cat, const char *dir,
                  const pki_secret *ca_passphrase, const ceremony_pkcs11 *root_token,
                  const ceremony_pkcs11 *online_token, pki_err *err);

#endif /* PKID_CLIENT_CEREMONY_H */
