/* pki_tree.h: where things live in a pki/ directory, as the seed lays it out.
 *
 *   root-ca/certs/root-ca.crt                   the offline root
 *   root-ca/private/root-ca.key.sealed          its key, sealed (key.h)
 *   root-ca/shares/custodian-<i>.share          M-of-N shares, when split
 *   intermediate-ca/<ca>/certs/<ca>.crt         each online CA
 *   intermediate-ca/<ca>/certs/<ca>-chain.crt   it and its parents below the root
 *   intermediate-ca/<ca>/private/<ca>.key.sealed
 *   intermediate-ca/<ca>/private/<ca>.key.pkcs11  or, for a key in a PKCS#11
 *                                               token, the RFC 7512 URI that
 *                                               names it (one line, 0644; no
 *                                               PIN: lib/pkcs11.h). The root's
 *                                               likewise, root-ca.key.pkcs11
 *   service-certificates/<dir>/<name>.crt       a service's certificate,
 *   service-certificates/<dir>/<name>.key       its key (PKCS#8, 0600),
 *   service-certificates/<dir>/<name>-chain.crt the intermediates to send with it
 *   trust-stores/<ca>-truststore.pem            a CA and its parents up to the root
 *   trust-stores/agent-truststore.pem           the seed's name for agents-ca's
 *   issued/<serial>.crt                         every certificate an intermediate
 *                                               signed offline (the ceremonies),
 *                                               for pkid to import
 *   crl/<ca>.crl, crl/<ca>.crl.pem              a CA's complete CRL, DER and PEM
 *                                               (pkid writes the intermediates';
 *                                               the root's is a ceremony's)
 *   crl/<ca>-delta.crl, crl/<ca>-delta.crl.pem  its delta CRL (intermediates)
 *   audit/audit.key.sealed                      the key that signs journal
 *   audit/audit.pub                             checkpoints (lib/checkpoint.h),
 *                                               sealed like a CA key; its public
 *                                               half (PEM), for verifiers
 *
 * The functions write a path into |out| and fail (PKI_ERR_INVALID) only if
 * it does not fit. */
#ifndef PKID_LIB_PKI_TREE_H
#define PKID_LIB_PKI_TREE_H

#include <stddef.h>

#include "lib/catalog.h"
#include "lib/cert.h"
#include "lib/err.h"

#define PKI_PATH_MAX 1024

typedef enum pki_tree_ca_file {
  PKI_TREE_CA_CERT,
  PKI_TREE_CA_CHAIN,
  PKI_TREE_CA_KEY,
  PKI_TREE_CA_KEY_PKCS11,
} pki_tree_ca_file;

int pki_tree_ca_path(char *out, size_t out_size, const char *dir,
                     const pki_catalog_ca *ca, pki_tree_ca_file which, pki_err *err);

/* pki_tree_service_path names |cert|'s file with its ".crt" suffix replaced
 * by |suffix| (".crt", ".key" or "-chain.crt"). */
int pki_tree_service_path(char *out, size_t out_size, const char *dir,
                          const pki_catalog_service *svc, const pki_catalog_cert *cert,
                          const char *suffix, pki_err *err);

int pki_tree_truststore_path(char *out, size_t out_size, const char *dir,
                             const char *ca_name, pki_err *err);

int pki_tree_share_path(char *out, size_t out_size, const char *dir, unsigned index,
                        pki_err *err);

/* pki_tree_audit_path names the audit key's sealed file or (|pub|) its
 * public half. */
int pki_tree_audit_path(char *out, size_t out_size, const char *dir, int pub, pki_err *err);

/* pki_tree_crl_dir names the folder of CRLs; pki_tree_crl_path one CRL
 * file of |ca_name|: complete or delta, DER or PEM. */
int pki_tree_crl_dir(char *out, size_t out_size, const char *dir, pki_err *err);
int pki_tree_crl_path(char *out, size_t out_size, const char *dir, const char *ca_name,
                      int delta, int pem, pki_err *err);

/* pki_tree_issued_dir names the folder of certificates signed offline. */
int pki_tree_issued_dir(char *out, size_t out_size, const char *dir, pki_err *err);

/* pki_tree_record_issued leaves a copy of |der|, a certificate one of the
 * intermediates signed offline, in the issued/ folder (as <serial>.crt,
 * PEM, written atomically), so that pkid learns of it at its next start or
 * reload: every certificate an intermediate signs must be known to pkid,
 * revocable and answered by OCSP. */
int pki_tree_record_issued(const char *dir, const uint8_t *der, size_t der_len, pki_err *err);

/* pki_tree_read_cert reads a PEM (or DER) certificate file into DER. */
int pki_tree_read_cert(uint8_t **out, size_t *out_len, const char *path, pki_err *err);

/* pki_tree_load_issuer loads |ca|'s certificate and key from |dir| and
 * opens the key with |secret|: the scrypt passphrase of a sealed key, or
 * the user PIN of the token that holds it (when its .key.pkcs11 file is
 * there). The token's key must be the catalogue's type for |ca| and hold
 * the certificate's public key. */
int pki_tree_load_issuer(pki_issuer *out, const char *dir, const pki_catalog_ca *ca,
                         const uint8_t *secret, size_t secret_len, pki_err *err);

/* pki_tree_ca_key_exists reports whether |ca|'s key, sealed or in a token,
 * is in |dir|. */
int pki_tree_ca_key_exists(const char *dir, const pki_catalog_ca *ca, pki_err *err);

/* pki_tree_write_key_uri writes |uri| to |ca|'s .key.pkcs11 file. */
int pki_tree_write_key_uri(const char *dir, const pki_catalog_ca *ca, const char *uri,
                           pki_err *err);

#endif /* PKID_LIB_PKI_TREE_H */
