#include "lib/pki_tree.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>

#include "lib/cert_info.h"
#include "lib/file.h"
#include "lib/key.h"
#include "lib/pem.h"
#include "lib/pkcs11.h"

static int path_fmt(char *out, size_t out_size, pki_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int path_fmt(char *out, size_t out_size, pki_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, out_size, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= out_size) {
    PKI_ERR(err, PKI_ERR_INVALID, "path too long");
    return 0;
  }
  return 1;
}

int pki_tree_ca_path(char *out, size_t out_size, const char *dir,
                     const pki_catalog_ca *ca, pki_tree_ca_file which, pki_err *err) {
  if (ca->parent == NULL) {
    switch (which) {
      case PKI_TREE_CA_CERT:
        return path_fmt(out, out_size, err, "%s/root-ca/certs/root-ca.crt", dir);
      case PKI_TREE_CA_CHAIN:
        PKI_ERR(err, PKI_ERR_INVALID, "the root has no chain file");
        return 0;
      case PKI_TREE_CA_KEY:
        return path_fmt(out, out_size, err, "%s/root-ca/private/root-ca.key.sealed", dir);
      case PKI_TREE_CA_KEY_PKCS11:
        return path_fmt(out, out_size, err, "%s/root-ca/private/root-ca.key.pkcs11", dir);
    }
  }
  switch (which) {
    case PKI_TREE_CA_CERT:
      return path_fmt(out, out_size, err, "%s/intermediate-ca/%s/certs/%s.crt", dir,
                      ca->name, ca->name);
    case PKI_TREE_CA_CHAIN:
      return path_fmt(out, out_size, err, "%s/intermediate-ca/%s/certs/%s-chain.crt", dir,
                      ca->name, ca->name);
    case PKI_TREE_CA_KEY:
      return path_fmt(out, out_size, err, "%s/intermediate-ca/%s/private/%s.key.sealed",
                      dir, ca->name, ca->name);
    case PKI_TREE_CA_KEY_PKCS11:
      return path_fmt(out, out_size, err, "%s/intermediate-ca/%s/private/%s.key.pkcs11",
                      dir, ca->name, ca->name);
  }
  PKI_ERR(err, PKI_ERR_INVALID, "unknown CA file");
  return 0;
}

int pki_tree_service_path(char *out, size_t out_size, const char *dir,
                          const pki_catalog_service *svc, const pki_catalog_cert *cert,
                          const char *suffix, pki_err *err) {
  size_t len = strlen(cert->file);
  if (len > 4 && strcmp(cert->file + len - 4, ".crt") == 0) len -= 4;
  return path_fmt(out, out_size, err, "%s/service-certificates/%s/%.*s%s", dir, svc->dir,
                  (int)len, cert->file, suffix);
}

int pki_tree_truststore_path(char *out, size_t out_size, const char *dir,
                             const char *ca_name, pki_err *err) {
  return path_fmt(out, out_size, err, "%s/trust-stores/%s-truststore.pem", dir, ca_name);
}

int pki_tree_share_path(char *out, size_t out_size, const char *dir, unsigned index,
                        pki_err *err) {
  return path_fmt(out, out_size, err, "%s/root-ca/shares/custodian-%u.share", dir, index);
}

int pki_tree_audit_path(char *out, size_t out_size, const char *dir, int pub, pki_err *err) {
  return path_fmt(out, out_size, err, "%s/audit/audit.%s", dir, pub ? "pub" : "key.sealed");
}

int pki_tree_crl_dir(char *out, size_t out_size, const char *dir, pki_err *err) {
  return path_fmt(out, out_size, err, "%s/crl", dir);
}

int pki_tree_crl_path(char *out, size_t out_size, const char *dir, const char *ca_name,
                      int delta, int pem, pki_err *err) {
  return path_fmt(out, out_size, err, "%s/crl/%s%s.crl%s", dir, ca_name,
                  delta ? "-delta" : "", pem ? ".pem" : "");
}

int pki_tree_issued_dir(char *out, size_t out_size, const char *dir, pki_err *err) {
  return path_fmt(out, out_size, err, "%s/issued", dir);
}

int pki_tree_record_issued(const char *dir, const uint8_t *der, size_t der_len, pki_err *err) {
  pki_cert_info info;
  if (!pki_cert_info_parse(&info, der, der_len, err)) return 0;
  /* The file is named by the serial, in hex, without a sign octet. */
  CBS serial = info.serial;
  if (CBS_len(&serial) > 1 && CBS_data(&serial)[0] == 0) CBS_skip(&serial, 1);
  char hex[2 * 32 + 1];
  size_t n = 0;
  for (size_t i = 0; i < CBS_len(&serial) && n + 2 < sizeof(hex); i++) {
    n += (size_t)snprintf(hex + n, sizeof(hex) - n, "%02x", CBS_data(&serial)[i]);
  }
  pki_cert_info_cleanup(&info);
  char folder[PKI_PATH_MAX], path[PKI_PATH_MAX];
  char *pem = NULL;
  size_t pem_len = 0;
  int ok = pki_tree_issued_dir(folder, sizeof(folder), dir, err) &&
           path_fmt(path, sizeof(path), err, "%s/%s.crt", folder, hex) &&
           pki_mkdirs(folder, 0755, err) &&
           pki_pem_append(&pem, &pem_len, "CERTIFICATE", der, der_len, err) &&
           pki_file_write_atomic(path, pem, pem_len, 0644, err);
  free(pem);
  return ok;
}

int pki_tree_read_cert(uint8_t **out, size_t *out_len, const char *path, pki_err *err) {
  uint8_t *pem = NULL;
  size_t pem_len;
  if (!pki_file_read(&pem, &pem_len, path, 1 << 20, err)) return 0;
  /* A certificate file may be PEM or, as some tools write it, DER. */
  static const char *const kLabels[] = {"CERTIFICATE"};
  int ok = pki_pem_decode(out, out_len, NULL, kLabels, 1, pem, pem_len, PKI_PEM_OR_DER, err);
  free(pem);
  if (!ok) pki_err_prefix(err, "%s: ", path);
  return ok;
}

/* read_key_uri reads a .key.pkcs11 file: one URI, one line. */
static char *read_key_uri(const char *path, pki_err *err) {
  uint8_t *text;
  size_t len;
  if (!pki_file_read(&text, &len, path, 4096, err)) return NULL;
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) {
    text[--len] = '\0';
  }
  if (len == 0 || memchr(text, '\n', len) != NULL || strlen((char *)text) != len) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: not one line holding a PKCS#11 URI", path);
    free(text);
    return NULL;
  }
  return (char *)text;
}

/* load_token_key opens |ca|'s key in the token |uri_path| names, checked
 * against the certificate |der|, and makes the issuer sign through it. */
static int load_token_key(pki_issuer *out, const uint8_t *der, size_t der_len,
                          const char *uri_path, const pki_catalog_ca *ca, const uint8_t *pin,
                          size_t pin_len, pki_err *err) {
  pki_cert_info info;
  if (!pki_cert_info_parse(&info, der, der_len, err)) return 0;
  CBS spki = info.spki;
  EVP_PKEY *pub = EVP_parse_public_key(&spki);
  pki_cert_info_cleanup(&info);
  if (pub == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "the CA certificate's public key does not parse");
    return 0;
  }
  char *uri = read_key_uri(uri_path, err);
  pki_p11_key *key = uri != NULL ? pki_p11_key_open(uri, ca->key_type, pub, pin, pin_len, err)
                                 : NULL;
  int ok = key != NULL && pki_issuer_init(out, der, der_len, pub, err);
  if (ok) pki_issuer_set_token(out, key);
  if (key == NULL && uri != NULL) pki_err_prefix(err, "%s: ", uri_path);
  pki_p11_key_free(key);
  EVP_PKEY_free(pub);
  free(uri);
  return ok;
}

int pki_tree_load_issuer(pki_issuer *out, const char *dir, const pki_catalog_ca *ca,
                         const uint8_t *secret, size_t secret_len, pki_err *err) {
  char cert_path[PKI_PATH_MAX], key_path[PKI_PATH_MAX], uri_path[PKI_PATH_MAX];
  if (!pki_tree_ca_path(cert_path, sizeof(cert_path), dir, ca, PKI_TREE_CA_CERT, err) ||
      !pki_tree_ca_path(key_path, sizeof(key_path), dir, ca, PKI_TREE_CA_KEY, err) ||
      !pki_tree_ca_path(uri_path, sizeof(uri_path), dir, ca, PKI_TREE_CA_KEY_PKCS11, err)) {
    return 0;
  }
  uint8_t *der = NULL;
  size_t der_len;
  if (!pki_tree_read_cert(&der, &der_len, cert_path, err)) return 0;
  if (pki_file_exists(uri_path)) {
    int ok = load_token_key(out, der, der_len, uri_path, ca, secret, secret_len, err);
    free(der);
    return ok;
  }
  EVP_PKEY *key = pki_key_read_sealed(key_path, secret, secret_len, err);
  if (key == NULL) {
    pki_err_prefix(err, "%s: ", key_path);
    free(der);
    return 0;
  }
  int ok = pki_issuer_init(out, der, der_len, key, err);
  if (!ok) pki_err_prefix(err, "%s: ", cert_path);
  EVP_PKEY_free(key);
  free(der);
  return ok;
}

int pki_tree_ca_key_exists(const char *dir, const pki_catalog_ca *ca, pki_err *err) {
  char key_path[PKI_PATH_MAX], uri_path[PKI_PATH_MAX];
  return pki_tree_ca_path(key_path, sizeof(key_path), dir, ca, PKI_TREE_CA_KEY, err) &&
         pki_tree_ca_path(uri_path, sizeof(uri_path), dir, ca, PKI_TREE_CA_KEY_PKCS11, err) &&
         (pki_file_exists(key_path) || pki_file_exists(uri_path));
}

int pki_tree_write_key_uri(const char *dir, const pki_catalog_ca *ca, const char *uri,
                           pki_err *err) {
  char path[PKI_PATH_MAX], parent[PKI_PATH_MAX];
  if (!pki_tree_ca_path(path, sizeof(path), dir, ca, PKI_TREE_CA_KEY_PKCS11, err)) return 0;
  snprintf(parent, sizeof(parent), "%s", path);
  char *slash = strrchr(parent, '/');
  if (slash != NULL) *slash = '\0';
  size_t len = strlen(uri);
  char *line = malloc(len + 2);
  if (line == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(line, uri, len);
  memcpy(line + len, "\n", 2);
  /* The URI names the key and its token, no secret: 0644. */
  int ok = pki_mkdirs(parent, 0700, err) && pki_file_write_atomic(path, line, len + 1, 0644, err);
  free(line);
  if (!ok) pki_err_prefix(err, "%s: ", path);
  return ok;
}
