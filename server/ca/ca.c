#include "server/ca/ca.h"

#include <stdlib.h>
#include <string.h>

#include "lib/der.h"
#include "lib/file.h"
#include "lib/pki_tree.h"

static int read_ca_cert(uint8_t **out, size_t *out_len, const char *dir,
                        const pki_catalog_ca *ca, pki_err *err) {
  char path[PKI_PATH_MAX];
  return pki_tree_ca_path(path, sizeof(path), dir, ca, PKI_TREE_CA_CERT, err) &&
         pki_tree_read_cert(out, out_len, path, err);
}

static int load_one(pkid_ca *out, const pki_catalog *cat, const char *dir,
                    const pki_catalog_ca *def, const uint8_t *secret, size_t secret_len,
                    pki_err *err) {
  out->def = def;
  if (!pki_tree_load_issuer(&out->issuer, dir, def, secret, secret_len, err) ||
      !pki_ocsp_signer_init(&out->ocsp, &out->issuer, err)) {
    return 0;
  }
  /* Walk up to the root: the chain is everything below it. */
  for (const pki_catalog_ca *ca = def; ca != NULL;
       ca = ca->parent != NULL ? pki_catalog_find_ca(cat, ca->parent) : NULL) {
    if (out->num_chain == PKID_MAX_CHAIN || out->num_parents_and_root == PKID_MAX_CHAIN) {
      PKI_ERR(err, PKI_ERR_INVALID, "CA '%s': chain too long", def->name);
      return 0;
    }
    uint8_t *der;
    size_t len;
    if (!read_ca_cert(&der, &len, dir, ca, err)) return 0;
    if (ca->parent != NULL) {
      out->chain[out->num_chain] = der;
      out->chain_len[out->num_chain++] = len;
      if (ca != def) {
        uint8_t *copy = malloc(len);
        if (copy == NULL) goto oom;
        memcpy(copy, der, len);
        out->parents_and_root[out->num_parents_and_root] = copy;
        out->parents_and_root_len[out->num_parents_and_root++] = len;
      }
    } else {
      out->parents_and_root[out->num_parents_and_root] = der;
      out->parents_and_root_len[out->num_parents_and_root++] = len;
    }
  }
  char path[PKI_PATH_MAX];
  uint8_t *pem;
  if (!pki_tree_truststore_path(path, sizeof(path), dir, def->name, err) ||
      !pki_file_read(&pem, &out->truststore_len, path, 1 << 20, err)) {
    return 0;
  }
  out->truststore_pem = (char *)pem;
  return 1;
oom:
  PKI_ERR_OOM(err);
  return 0;
}

int pkid_cas_load(pkid_cas *out, const pki_catalog *cat, const char *dir,
                  const uint8_t *secret, size_t secret_len, pki_err *err) {
  memset(out, 0, sizeof(*out));
  out->cas = calloc(cat->num_cas, sizeof(pkid_ca));
  if (out->cas == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  if (!read_ca_cert(&out->root, &out->root_len, dir, pki_catalog_root(cat), err)) goto fail;
  for (size_t i = 0; i < cat->num_cas; i++) {
    const pki_catalog_ca *def = &cat->cas[i];
    if (def->parent == NULL) continue;
    if (!load_one(&out->cas[out->num_cas++], cat, dir, def, secret, secret_len, err)) {
      pki_err_prefix(err, "CA '%s': ", def->name);
      goto fail;
    }
  }
  return 1;
fail:
  pkid_cas_cleanup(out);
  return 0;
}

const pkid_ca *pkid_cas_find(const pkid_cas *cas, const char *name) {
  for (size_t i = 0; i < cas->num_cas; i++) {
    if (strcmp(cas->cas[i].def->name, name) == 0) return &cas->cas[i];
  }
  return NULL;
}

size_t pkid_cas_index(const pkid_cas *cas, const pkid_ca *ca) {
  return (size_t)(ca - cas->cas);
}

const pkid_ca *pkid_cas_at(const pkid_cas *cas, size_t index) {
  return index < cas->num_cas ? &cas->cas[index] : NULL;
}

size_t pkid_cas_num_tokens(const pkid_cas *cas) {
  size_t n = 0;
  for (size_t i = 0; i < cas->num_cas; i++) n += cas->cas[i].issuer.token != NULL;
  return n;
}

int pkid_cas_tokens_ready(const pkid_cas *cas) {
  for (size_t i = 0; i < cas->num_cas; i++) {
    const pki_p11_key *token = cas->cas[i].issuer.token;
    if (token != NULL && !pki_p11_key_ready(token)) return 0;
  }
  return 1;
}

int pkid_cas_tokens_recover(const pkid_cas *cas, pki_err *err) {
  int ok = 1;
  for (size_t i = 0; i < cas->num_cas; i++) {
    pki_p11_key *token = cas->cas[i].issuer.token;
    pki_err e;
    if (token == NULL || pki_p11_key_recover(token, &e)) continue;
    if (ok) {
      *err = e;
      pki_err_prefix(err, "CA '%s': ", cas->cas[i].def->name);
    }
    ok = 0;
  }
  return ok;
}

void pkid_cas_cleanup(pkid_cas *cas) {
  if (cas == NULL) return;
  for (size_t i = 0; i < cas->num_cas; i++) {
    pkid_ca *ca = &cas->cas[i];
    pki_issuer_cleanup(&ca->issuer);
    for (size_t j = 0; j < ca->num_chain; j++) free(ca->chain[j]);
    for (size_t j = 0; j < ca->num_parents_and_root; j++) free(ca->parents_and_root[j]);
    free(ca->truststore_pem);
  }
  free(cas->cas);
  free(cas->root);
  memset(cas, 0, sizeof(*cas));
}
