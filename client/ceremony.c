#include "client/ceremony.h"

#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "lib/cert.h"
#include "lib/cert_info.h"
#include "lib/crl.h"
#include "lib/csr.h"
#include "lib/file.h"
#include "lib/key.h"
#include "lib/pem.h"
#include "lib/pkcs11.h"
#include "lib/pki_tree.h"
#include "lib/profile.h"
#include "lib/serial.h"
#include "lib/shamir.h"
#include "lib/token.h"

/* Node 0 of the serial space is the offline tool's; online nodes are 1+. */
#define OFFLINE_NODE 0

/* The root's CRL lists intermediates only: a few entries, far below this. */
#define ROOT_CRL_FILE_MAX (1 << 20)

/* add_share names one share in a ceremony log's shares field. */
static void add_share(char *list, unsigned x, const uint8_t *text, size_t len) {
  char fp[17];
  pki_ceremony_fingerprint(fp, text, len);
  size_t used = strcmp(list, "-") == 0 ? 0 : strlen(list);
  snprintf(list + used, PKI_CEREMONY_SHARES_MAX - used, "%s%u:%s", used > 0 ? "," : "", x, fp);
}

int ceremony_secret_from_shares(ceremony_root_key *out, const char *const *files,
                                size_t num_files, pki_err *err) {
  memset(out, 0, sizeof(*out));
  snprintf(out->how, sizeof(out->how), "shares");
  snprintf(out->shares, sizeof(out->shares), "-");
  pki_share *shares = calloc(num_files > 0 ? num_files : 1, sizeof(pki_share));
  if (shares == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  int ok = 0;
  for (size_t i = 0; i < num_files; i++) {
    uint8_t *text = NULL;
    size_t len;
    if (!pki_file_read(&text, &len, files[i], PKI_SHARE_TEXT_MAX * 4, err)) goto out;
    int decoded = pki_share_decode(&shares[i], (const char *)text, err);
    if (decoded) add_share(out->shares, shares[i].x, text, len);
    OPENSSL_cleanse(text, len);
    free(text);
    if (!decoded) {
      pki_err_prefix(err, "%s: ", files[i]);
      goto out;
    }
  }
  ok = pki_shamir_combine(out->secret.bytes, &out->secret.len, shares, num_files, err);
out:
  OPENSSL_cleanse(shares, (num_files > 0 ? num_files : 1) * sizeof(pki_share));
  free(shares);
  if (!ok) ceremony_root_key_cleanup(out);
  return ok;
}

int ceremony_secret_from_passphrase(ceremony_root_key *out, const char *file, const char *env,
                                    pki_err *err) {
  memset(out, 0, sizeof(*out));
  snprintf(out->how, sizeof(out->how), "passphrase");
  snprintf(out->shares, sizeof(out->shares), "-");
  return pki_secret_read(&out->secret, file, env, err);
}

void ceremony_root_key_cleanup(ceremony_root_key *k) { pki_secret_cleanup(&k->secret); }

static int write_file(const char *path, const void *data, size_t len, mode_t mode,
                      pki_err *err);

/* random_hex writes SECRET_RANDOM random bytes into |out| as hex digits
 * and a NUL: a secret that is text, as a passphrase file and a token's
 * PIN (PKCS#11 2.40 2.1) both need. The root's split secret is one, never
 * written whole, so that it can seal a key or be its token's PIN. */
#define SECRET_RANDOM 32
static void random_hex(char out[2 * SECRET_RANDOM + 1]) {
  uint8_t random[SECRET_RANDOM];
  RAND_bytes(random, sizeof(random));
  for (size_t i = 0; i < sizeof(random); i++) snprintf(out + 2 * i, 3, "%02x", random[i]);
  OPENSSL_cleanse(random, sizeof(random));
}

int ceremony_make_passphrase_file(const char *path, pki_err *err) {
  if (pki_file_exists(path)) return 1;
  char text[2 * SECRET_RANDOM + 2];
  random_hex(text);
  strcat(text, "\n");
  int ok = write_file(path, text, strlen(text), 0600, err);
  OPENSSL_cleanse(text, sizeof(text));
  return ok;
}

/* write_file writes |data| to |path| atomically, creating its directory;
 * directories holding private keys are 0700. */
static int write_file(const char *path, const void *data, size_t len, mode_t mode,
                      pki_err *err) {
  char dir[PKI_PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  if (!pki_mkdirs(dirname(dir), (mode & 0044) ? 0755 : 0700, err) ||
      !pki_file_write_atomic(path, data, len, mode, err)) {
    pki_err_prefix(err, "%s: ", path);
    return 0;
  }
  return 1;
}

/* write_pem writes certificates (DER) as one PEM file, in the order given. */
static int write_pem(const char *path, const uint8_t *const *ders, const size_t *lens,
                     size_t num, pki_err *err) {
  char *pem = NULL;
  size_t pem_len = 0;
  int ok = 1;
  for (size_t i = 0; ok && i < num; i++) {
    ok = pki_pem_append(&pem, &pem_len, "CERTIFICATE", ders[i], lens[i], err);
  }
  ok = ok && write_file(path, pem != NULL ? pem : "", pem_len, 0644, err);
  free(pem);
  return ok;
}

/* ca_chain reads the certificates from |ca| up to, not including, the root:
 * what a server sends after its own certificate. */
typedef struct chain {
  uint8_t *ders[8];
  size_t lens[8];
  size_t num;
} chain;

static void chain_cleanup(chain *c) {
  for (size_t i = 0; i < c->num; i++) free(c->ders[i]);
  memset(c, 0, sizeof(*c));
}

static int chain_load(chain *out, const pki_catalog *cat, const char *dir,
                      const pki_catalog_ca *ca, int with_root, pki_err *err) {
  memset(out, 0, sizeof(*out));
  while (ca != NULL && (ca->parent != NULL || with_root)) {
    char path[PKI_PATH_MAX];
    if (out->num == sizeof(out->ders) / sizeof(out->ders[0])) {
      PKI_ERR(err, PKI_ERR_INVALID, "CA chain too long");
      goto fail;
    }
    if (!pki_tree_ca_path(path, sizeof(path), dir, ca, PKI_TREE_CA_CERT, err) ||
        !pki_tree_read_cert(&out->ders[out->num], &out->lens[out->num], path, err)) {
      goto fail;
    }
    out->num++;
    ca = ca->parent != NULL ? pki_catalog_find_ca(cat, ca->parent) : NULL;
  }
  return 1;
fail:
  chain_cleanup(out);
  return 0;
}

static int64_t now_s(void) { return (int64_t)time(NULL); }

/* --- the ceremony log (lib/ceremony_log.h) --------------------------------- */

static void log_path(char out[PKI_PATH_MAX], const char *dir) {
  snprintf(out, PKI_PATH_MAX, "%s/" PKI_CEREMONY_LOG_FILE, dir);
}

/* log_check refuses to begin a step on a log that does not read cleanly:
 * its entry could not be appended after the signing. */
static int log_check(const char *dir, pki_err *err) {
  char path[PKI_PATH_MAX];
  log_path(path, dir);
  if (!pki_ceremony_log_read(path, NULL, NULL, NULL, err)) {
    pki_err_prefix(err, "refusing to sign with a broken ceremony log: ");
    return 0;
  }
  return 1;
}

/* log_step appends what a step signed, once its files are written. */
static int log_step(const char *dir, const char *kind, const char *ca, const char *name,
                    const char *serial, const uint8_t *signed_der, size_t len,
                    const char *key, const char *shares, pki_err *err) {
  pki_ceremony_entry e;
  memset(&e, 0, sizeof(e));
  snprintf(e.kind, sizeof(e.kind), "%s", kind);
  snprintf(e.ca, sizeof(e.ca), "%s", ca);
  snprintf(e.name, sizeof(e.name), "%s", name);
  snprintf(e.serial, sizeof(e.serial), "%s", serial);
  snprintf(e.key, sizeof(e.key), "%s", key);
  snprintf(e.shares, sizeof(e.shares), "%s", shares);
  SHA256(signed_der, len, e.sha256);
  char path[PKI_PATH_MAX];
  log_path(path, dir);
  if (!pki_ceremony_log_append(path, &e, err)) {
    pki_err_prefix(err, "%s '%s' is written but its ceremony log entry is not: ", kind, name);
    return 0;
  }
  return 1;
}

/* offline_serial gives serials to the offline tool: node 0, and as the
 * sequence the time in microseconds, so that two runs never share one even
 * without a journal; the random half makes them unpredictable regardless. */
static int offline_serial(pki_serial *out, pki_err *err) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  uint64_t us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
  return pki_serial_make(out, OFFLINE_NODE, us, err);
}

static int marshal_spki(uint8_t **out, size_t *out_len, const EVP_PKEY *key,
                        pki_err *err) {
  CBB cbb;
  if (!CBB_init(&cbb, 128) || !EVP_marshal_public_key(&cbb, key) ||
      !CBB_finish(&cbb, out, out_len)) {
    CBB_cleanup(&cbb);
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot encode the public key");
    return 0;
  }
  return 1;
}

/* truststore_write writes |ca| and its parents up to the root as
 * trust-stores/<name>-truststore.pem. */
static int truststore_write(const pki_catalog *cat, const char *dir,
                            const pki_catalog_ca *ca, const char *name, pki_err *err) {
  chain c;
  char path[PKI_PATH_MAX];
  if (!chain_load(&c, cat, dir, ca, 1, err)) return 0;
  int ok = pki_tree_truststore_path(path, sizeof(path), dir, name, err) &&
           write_pem(path, (const uint8_t *const *)c.ders, c.lens, c.num, err);
  chain_cleanup(&c);
  return ok;
}

/* A signed root CRL, DER and PEM, before it is written. */
typedef struct root_crl {
  uint8_t *der;
  size_t der_len;
  char *pem;
  size_t pem_len;
  ceremony_crl_info info;
} root_crl;

static void root_crl_cleanup(root_crl *c) {
  free(c->der);
  free(c->pem);
  memset(c, 0, sizeof(*c));
}

/* root_crl_sign signs the root's complete CRL number |number| holding
 * |entries|, valid from PKI_BACKDATE_S before |now| (clocks a little behind
 * still take it) for the root's crl_validity_days. No freshestCRL: the
 * root has no delta CRL. */
static int root_crl_sign(root_crl *out, const pki_catalog_ca *root, const pki_issuer *issuer,
                         uint64_t number, const pki_crl_entry *entries, size_t num, int64_t now,
                         pki_err *err) {
  memset(out, 0, sizeof(*out));
  pki_crl_params params;
  memset(&params, 0, sizeof(params));
  params.number = number;
  params.this_update = now - PKI_BACKDATE_S;
  params.next_update = now + (int64_t)root->crl_validity_days * 86400;
  if (!pki_crl_build(&out->der, &out->der_len, issuer, NULL, &params, entries, num, err) ||
      !pki_crl_to_pem(&out->pem, &out->pem_len, out->der, out->der_len, err)) {
    pki_err_prefix(err, "root CRL: ");
    root_crl_cleanup(out);
    return 0;
  }
  out->info.number = number;
  out->info.this_update = params.this_update;
  out->info.next_update = params.next_update;
  out->info.num_entries = num;
  return 1;
}

/* root_crl_write writes crl/<root>.crl and crl/<root>.crl.pem, 0644: pkid
 * serves them to anyone. */
static int root_crl_write(const root_crl *c, const char *dir, const pki_catalog_ca *root,
                          pki_err *err) {
  char der_path[PKI_PATH_MAX], pem_path[PKI_PATH_MAX];
  return pki_tree_crl_path(der_path, sizeof(der_path), dir, root->name, 0, 0, err) &&
         pki_tree_crl_path(pem_path, sizeof(pem_path), dir, root->name, 0, 1, err) &&
         write_file(der_path, c->der, c->der_len, 0644, err) &&
         write_file(pem_path, c->pem, c->pem_len, 0644, err);
}

/* --- where a new CA key is made --------------------------------------- */

/* A CA key being made: in memory, or in a token (ceremony_pkcs11). */
typedef struct new_key {
  EVP_PKEY *key;      /* the whole key, or its public half when |token| is set */
  pki_p11_key *token; /* NULL for a key in memory */
} new_key;

static int in_token(const ceremony_pkcs11 *where) { return where != NULL && where->uri != NULL; }

/* token_pin is the PIN that opens |where|'s token now: the one it was
 * initialized with, or else already the CA's |secret|. */
static const pki_secret *token_pin(const ceremony_pkcs11 *where, const pki_secret *secret) {
  return where->initial_pin != NULL ? where->initial_pin : secret;
}

static int new_key_make(new_key *out, const pki_catalog_ca *ca, const ceremony_pkcs11 *where,
                        const pki_secret *secret, pki_err *err) {
  memset(out, 0, sizeof(*out));
  if (!in_token(where)) {
    out->key = pki_key_generate(ca->key_type, ca->key_bits, err);
    return out->key != NULL;
  }
  const pki_secret *pin = token_pin(where, secret);
  out->token = pki_p11_key_generate(where->uri, ca->name, ca->key_type, pin->bytes, pin->len, err);
  if (out->token == NULL) {
    pki_err_prefix(err, "CA '%s': ", ca->name);
    return 0;
  }
  out->key = pki_p11_key_public(out->token);
  EVP_PKEY_up_ref(out->key);
  return 1;
}

/* new_key_keep records where the key is: sealed under |secret| in the
 * tree, or, in a token, the URI that names it (and |secret| is the token's
 * PIN from now on). */
static int new_key_keep(const new_key *k, const char *dir, const pki_catalog_ca *ca,
                        const pki_secret *secret, pki_err *err) {
  if (k->token != NULL) return pki_tree_write_key_uri(dir, ca, pki_p11_key_uri(k->token), err);
  char key_path[PKI_PATH_MAX], key_dir[PKI_PATH_MAX];
  if (!pki_tree_ca_path(key_path, sizeof(key_path), dir, ca, PKI_TREE_CA_KEY, err)) return 0;
  snprintf(key_dir, sizeof(key_dir), "%s", key_path);
  if (!pki_mkdirs(dirname(key_dir), 0700, err) ||
      !pki_key_write_sealed(key_path, k->key, secret->bytes, secret->len, err)) {
    pki_err_prefix(err, "%s: ", key_path);
    return 0;
  }
  return 1;
}

/* new_key_cleanup frees |k|; a token key made for a step that failed
 * (|ok| 0) is deleted from the token, so that nothing is left of it. */
static void new_key_cleanup(new_key *k, int ok) {
  EVP_PKEY_free(k->key);
  if (k->token != NULL && !ok) {
    pki_err ignored;
    pki_p11_key_destroy(k->token, &ignored);
  } else {
    pki_p11_key_free(k->token);
  }
  memset(k, 0, sizeof(*k));
}

/* ca_exists reports whether |ca|'s certificate or key is in |dir|. */
static int ca_exists(const char *dir, const pki_catalog_ca *ca, const char *cert_path) {
  pki_err ignored;
  return pki_file_exists(cert_path) || pki_tree_ca_key_exists(dir, ca, &ignored);
}

int ceremony_root(const pki_catalog *cat, const char *dir,
                  const pki_secret *passphrase, unsigned split_m,
                  unsigned split_n, const ceremony_pkcs11 *token, pki_err *err) {
  const pki_catalog_ca *root = pki_catalog_root(cat);
  char cert_path[PKI_PATH_MAX];
  if (!pki_tree_ca_path(cert_path, sizeof(cert_path), dir, root, PKI_TREE_CA_CERT, err)) {
    return 0;
  }
  if (ca_exists(dir, root, cert_path)) {
    PKI_ERR(err, PKI_ERR_EXISTS, "%s already holds a root CA; refusing to replace it", dir);
    return 0;
  }
  if (split_n == 0 && passphrase == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "the root key needs a passphrase or a split into shares");
    return 0;
  }
  if (in_token(token) && split_n > 0 && token->initial_pin == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "a split root's token PIN becomes the secret this ceremony makes: name the PIN "
            "the token has now with --token-pin-file");
    return 0;
  }
  if (!log_check(dir, err)) return 0;
  char made[PKI_CEREMONY_SHARES_MAX] = "-";

  new_key key;
  pki_issuer self, signer;
  pki_profile profile;
  pki_issue_request req;
  pki_share shares[255];
  pki_secret split_secret;
  root_crl crl;
  uint8_t *spki = NULL, *der = NULL;
  size_t der_len;
  int ok = 0;
  memset(&self, 0, sizeof(self));
  memset(&signer, 0, sizeof(signer));
  memset(&crl, 0, sizeof(crl));
  memset(&profile, 0, sizeof(profile));
  memset(&req, 0, sizeof(req));
  memset(&split_secret, 0, sizeof(split_secret));
  memset(&key, 0, sizeof(key));

  const pki_secret *seal = passphrase;
  if (split_n > 0) {
    random_hex((char *)split_secret.bytes);
    split_secret.len = 2 * SECRET_RANDOM;
    seal = &split_secret;
  }
  if (!new_key_make(&key, root, token, seal, err) ||
      !pki_profile_for_ca(&profile, cat, root, err)) {
    goto out;
  }
  int64_t now = now_s();
  if (!pki_issuer_init_self(&self, key.key, &profile, now - PKI_BACKDATE_S,
                            now + (int64_t)profile.validity_s, err)) {
    goto out;
  }
  pki_issuer_set_token(&self, key.token);
  req.profile = &profile;
  req.not_before = self.not_before;
  req.not_after = self.not_after;
  if (!offline_serial(&req.serial, err) ||
      !marshal_spki(&spki, &req.spki_len, key.key, err)) {
    goto out;
  }
  req.spki = spki;
  if (!pki_cert_issue(&der, &der_len, &self, &req, err)) goto out;
  /* Its first CRL, signed while the key is at hand and before anything is
   * written: number 1, nothing revoked yet. */
  if (!pki_issuer_init(&signer, der, der_len, key.key, err)) goto out;
  pki_issuer_set_token(&signer, key.token);
  if (!root_crl_sign(&crl, root, &signer, 1, NULL, 0, now, err)) goto out;

  if (split_n > 0) {
    if (!pki_shamir_split(shares, split_secret.bytes, split_secret.len, split_m, split_n,
                          err)) {
      goto out;
    }
    for (unsigned i = 0; i < split_n; i++) {
      char text[PKI_SHARE_TEXT_MAX + 1], path[PKI_PATH_MAX];
      if (!pki_share_encode(text, sizeof(text) - 1, &shares[i], err) ||
          !pki_tree_share_path(path, sizeof(path), dir, i + 1, err)) {
        goto out;
      }
      strcat(text, "\n");
      add_share(made, shares[i].x, (const uint8_t *)text, strlen(text));
      int written = write_file(path, text, strlen(text), 0600, err);
      OPENSSL_cleanse(text, sizeof(text));
      if (!written) goto out;
    }
  }
  /* The token's PIN becomes the root's secret: with a split, no one
   * custodian can log in to the token and use the root. */
  if (in_token(token) && token->initial_pin != NULL &&
      !pki_p11_set_pin(token->uri, token->initial_pin->bytes, token->initial_pin->len,
                       seal->bytes, seal->len, err)) {
    goto out;
  }
  if (!new_key_keep(&key, dir, root, seal, err)) goto out;
  const uint8_t *ders[1] = {der};
  if (!write_pem(cert_path, ders, &der_len, 1, err) ||
      !truststore_write(cat, dir, root, "root-ca", err) || !root_crl_write(&crl, dir, root, err)) {
    goto out;
  }
  char hex[PKI_CEREMONY_SERIAL_MAX];
  pki_serial_to_hex(hex, &req.serial);
  if (!log_step(dir, "root", root->name, root->name, hex, der, der_len, "new", made, err) ||
      !log_step(dir, "crl", root->name, root->name, "1", crl.der, crl.der_len, "new", "-",
                err)) {
    goto out;
  }
  ok = 1;
out:
  OPENSSL_cleanse(shares, sizeof(shares));
  pki_secret_cleanup(&split_secret);
  root_crl_cleanup(&crl);
  pki_issuer_cleanup(&signer);
  pki_issuer_cleanup(&self);
  pki_profile_cleanup(&profile);
  new_key_cleanup(&key, ok);
  OPENSSL_free(spki);
  free(der);
  return ok;
}

/* sign_intermediate makes one intermediate below |parent|. */
static int sign_intermediate(const pki_catalog *cat, const char *dir,
                             const pki_catalog_ca *ca, const pki_issuer *parent,
                             const pki_secret *ca_passphrase, const ceremony_pkcs11 *token,
                             const char *key_how, const char *shares, pki_err *err) {
  char cert_path[PKI_PATH_MAX], chain_path[PKI_PATH_MAX];
  if (!pki_tree_ca_path(cert_path, sizeof(cert_path), dir, ca, PKI_TREE_CA_CERT, err) ||
      !pki_tree_ca_path(chain_path, sizeof(chain_path), dir, ca, PKI_TREE_CA_CHAIN, err)) {
    return 0;
  }
  if (ca_exists(dir, ca, cert_path)) {
    PKI_ERR(err, PKI_ERR_EXISTS, "CA '%s' already exists in %s; refusing to replace it",
            ca->name, dir);
    return 0;
  }
  new_key key;
  pki_profile profile;
  pki_issue_request req;
  uint8_t *spki = NULL, *der = NULL;
  size_t der_len;
  chain parents;
  int ok = 0;
  memset(&profile, 0, sizeof(profile));
  memset(&req, 0, sizeof(req));
  memset(&parents, 0, sizeof(parents));
  memset(&key, 0, sizeof(key));

  if (!new_key_make(&key, ca, token, ca_passphrase, err) ||
      !pki_profile_for_ca(&profile, cat, ca, err) ||
      !marshal_spki(&spki, &req.spki_len, key.key, err) || !offline_serial(&req.serial, err)) {
    goto out;
  }
  req.profile = &profile;
  req.spki = spki;
  pki_validity(&req.not_before, &req.not_after, parent, profile.validity_s, now_s());
  if (!pki_cert_issue(&der, &der_len, parent, &req, err)) {
    pki_err_prefix(err, "CA '%s': ", ca->name);
    goto out;
  }
  if (!new_key_keep(&key, dir, ca, ca_passphrase, err)) goto out;
  const uint8_t *ders[1] = {der};
  if (!write_pem(cert_path, ders, &der_len, 1, err)) goto out;
  /* A CA signed by another intermediate (load-balancer-ca) is that
   * intermediate's to vouch for: pkid learns of it too. */
  if (pki_catalog_find_ca(cat, ca->parent)->parent != NULL &&
      !pki_tree_record_issued(dir, der, der_len, err)) {
    goto out;
  }
  /* The chain file is this CA and its parents below the root. */
  if (!chain_load(&parents, cat, dir, ca, 0, err) ||
      !write_pem(chain_path, (const uint8_t *const *)parents.ders, parents.lens,
                 parents.num, err) ||
      !truststore_write(cat, dir, ca, ca->name, err)) {
    goto out;
  }
  /* The seed's clients trust agents through agent-truststore.pem. */
  if (strcmp(ca->name, "agents-ca") == 0 &&
      !truststore_write(cat, dir, ca, "agent", err)) {
    goto out;
  }
  char hex[PKI_CEREMONY_SERIAL_MAX];
  pki_serial_to_hex(hex, &req.serial);
  if (!log_step(dir, "intermediate", ca->parent, ca->name, hex, der, der_len, key_how, shares,
                err)) {
    goto out;
  }
  ok = 1;
out:
  chain_cleanup(&parents);
  pki_profile_cleanup(&profile);
  new_key_cleanup(&key, ok);
  OPENSSL_free(spki);
  free(der);
  return ok;
}

/* make_audit_key makes the key that signs the journal's checkpoints
 * (lib/checkpoint.h) once, with the intermediates: sealed under the CA
 * passphrase like theirs, and its public half beside it for whoever checks
 * a checkpoint. An existing key is kept: checkpoints already handed out
 * must stay verifiable. */
static int make_audit_key(const char *dir, const pki_secret *ca_passphrase, pki_err *err) {
  char key_path[PKI_PATH_MAX], pub_path[PKI_PATH_MAX];
  if (!pki_tree_audit_path(key_path, sizeof(key_path), dir, 0, err) ||
      !pki_tree_audit_path(pub_path, sizeof(pub_path), dir, 1, err)) {
    return 0;
  }
  if (access(key_path, F_OK) == 0) return 1;
  EVP_PKEY *key = pki_key_generate(PKI_KEY_ED25519, 0, err);
  if (key == NULL) return 0;
  CBB cbb;
  uint8_t *spki = NULL;
  size_t spki_len = 0;
  char *pem = NULL;
  size_t pem_len = 0;
  char key_dir[PKI_PATH_MAX];
  snprintf(key_dir, sizeof(key_dir), "%s", key_path);
  int ok = CBB_init(&cbb, 64) && EVP_marshal_public_key(&cbb, key) &&
           CBB_finish(&cbb, &spki, &spki_len);
  if (!ok) {
    CBB_cleanup(&cbb);
    PKI_ERR(err, PKI_ERR_INTERNAL, "the audit key's public half cannot be encoded");
  }
  ok = ok && pki_pem_append(&pem, &pem_len, "PUBLIC KEY", spki, spki_len, err) &&
       pki_mkdirs(dirname(key_dir), 0700, err) &&
       pki_key_write_sealed(key_path, key, ca_passphrase->bytes, ca_passphrase->len, err) &&
       write_file(pub_path, pem, pem_len, 0644, err);
  OPENSSL_free(spki);
  free(pem);
  EVP_PKEY_free(key);
  return ok;
}

int ceremony_intermediate(const pki_catalog *cat, const char *dir,
                          const ceremony_root_key *root_key,
                          const pki_secret *ca_passphrase, const char *only,
                          const ceremony_pkcs11 *token, pki_err *err) {
  const pki_catalog_ca *root = pki_catalog_root(cat);
  if (only != NULL) {
    const pki_catalog_ca *ca = pki_catalog_find_ca(cat, only);
    if (ca == NULL || ca->parent == NULL) {
      PKI_ERR(err, PKI_ERR_NOT_FOUND, "no intermediate CA '%s' in the catalogue", only);
      return 0;
    }
  }
  pki_issuer root_issuer;
  if (!log_check(dir, err) ||
      !pki_tree_load_issuer(&root_issuer, dir, root, root_key->secret.bytes,
                            root_key->secret.len, err)) {
    return 0;
  }
  /* The online token's PIN becomes the CA passphrase, which pkid reads at
   * start, first: a child intermediate's parent is opened with it. */
  if (in_token(token) && token->initial_pin != NULL &&
      !pki_p11_set_pin(token->uri, token->initial_pin->bytes, token->initial_pin->len,
                       ca_passphrase->bytes, ca_passphrase->len, err)) {
    pki_issuer_cleanup(&root_issuer);
    return 0;
  }
  const ceremony_pkcs11 *online = token;
  ceremony_pkcs11 set = {0};
  if (in_token(token)) {
    set.uri = token->uri; /* its PIN is the passphrase now */
    online = &set;
  }
  int ok = 1;
  /* cas[] lists parents before children, so each parent exists when needed. */
  for (size_t i = 0; ok && i < cat->num_cas; i++) {
    const pki_catalog_ca *ca = &cat->cas[i];
    if (ca->parent == NULL || (only != NULL && strcmp(only, ca->name) != 0)) continue;
    if (strcmp(ca->parent, root->name) == 0) {
      ok = sign_intermediate(cat, dir, ca, &root_issuer, ca_passphrase, online, root_key->how,
                             root_key->shares, err);
      continue;
    }
    pki_issuer parent;
    const pki_catalog_ca *parent_ca = pki_catalog_find_ca(cat, ca->parent);
    ok = pki_tree_load_issuer(&parent, dir, parent_ca, ca_passphrase->bytes,
                              ca_passphrase->len, err) &&
         sign_intermediate(cat, dir, ca, &parent, ca_passphrase, online, "passphrase", "-", err);
    pki_issuer_cleanup(&parent);
  }
  pki_issuer_cleanup(&root_issuer);
  return ok && make_audit_key(dir, ca_passphrase, err);
}

/* The reasons a ceremony may give for revoking an intermediate, by the
 * names pkictl revoke uses. */
static const struct {
  const char *name;
  int reason;
} kCaReasons[] = {
    {"unspecified", PKI_CRL_REASON_UNSPECIFIED},
    {"key-compromise", PKI_CRL_REASON_KEY_COMPROMISE},
    {"ca-compromise", PKI_CRL_REASON_CA_COMPROMISE},
    {"affiliation-changed", PKI_CRL_REASON_AFFILIATION_CHANGED},
    {"superseded", PKI_CRL_REASON_SUPERSEDED},
    {"cessation-of-operation", PKI_CRL_REASON_CESSATION_OF_OPERATION},
    {"privilege-withdrawn", PKI_CRL_REASON_PRIVILEGE_WITHDRAWN},
};

#define NUM_CA_REASONS (sizeof(kCaReasons) / sizeof(kCaReasons[0]))

static int ca_reason_allowed(int reason) {
  for (size_t i = 0; i < NUM_CA_REASONS; i++) {
    if (kCaReasons[i].reason == reason) return 1;
  }
  return 0;
}

int ceremony_crl_reason_parse(int *out, const char *text, pki_err *err) {
  for (size_t i = 0; text != NULL && i < NUM_CA_REASONS; i++) {
    if (strcmp(text, kCaReasons[i].name) == 0) {
      *out = kCaReasons[i].reason;
      return 1;
    }
  }
  PKI_ERR(err, PKI_ERR_INVALID,
          "the reason for revoking a CA is ca-compromise, key-compromise, superseded, "
          "cessation-of-operation, affiliation-changed, privilege-withdrawn or unspecified, "
          "not '%.64s'",
          text != NULL ? text : "");
  return 0;
}

/* serial_value is a serial's octets without leading zeros, for comparing. */
static void serial_value(const pki_serial *s, const uint8_t **out, size_t *out_len) {
  size_t skip = 0;
  while (skip + 1 < s->len && s->bytes[skip] == 0) skip++;
  *out = s->bytes + skip;
  *out_len = s->len - skip;
}

static int serial_equal(const pki_serial *a, const pki_serial *b) {
  const uint8_t *av, *bv;
  size_t an, bn;
  serial_value(a, &av, &an);
  serial_value(b, &bv, &bn);
  return an == bn && memcmp(av, bv, an) == 0;
}

/* check_current_crl refuses to follow |crl| (read from |path|) unless it is
 * a complete CRL of |root|: its issuer name and key identifier, and its
 * signature under the root's key. Following anything else would carry
 * another CA's entries, or a forger's, into the root's next CRL. */
static int check_current_crl(const pki_crl *crl, const char *path, const pki_issuer *root,
                             int64_t now, pki_err *err) {
  const char *problem = NULL;
  if (crl->is_delta) {
    problem = "it is a delta CRL";
  } else if (!crl->has_number) {
    problem = "it has no cRLNumber";
  } else if (crl->number_u64 >= UINT64_MAX - 1) {
    problem = "its cRLNumber is too large to follow";
  } else if (!CBS_mem_equal(&crl->issuer, root->name, root->name_len)) {
    problem = "its issuer is not the root";
  } else if (crl->aki_len != root->ski_len || memcmp(crl->aki, root->ski, root->ski_len) != 0) {
    problem = "its authorityKeyIdentifier is not the root's key";
  }
  if (problem != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s is not the root's complete CRL (%s); refusing to go on",
            path, problem);
    return 0;
  }
  if (!pki_crl_verify(crl, root->key, err)) {
    pki_err_prefix(err, "%s: its signature is not the root's; refusing to go on: ", path);
    return 0;
  }
  /* A clock behind the last CRL's would date the next one before it. */
  if (now < crl->this_update) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "the clock here (%lld) is before %s's thisUpdate (%lld): check the clock",
            (long long)now, path, (long long)crl->this_update);
    return 0;
  }
  return 1;
}

/* revoked_entry fills |out| for the certificate of |ca| in |dir|, which
 * must be one |root| signed, revoked at |now| for |reason|. */
static int revoked_entry(pki_crl_entry *out, const char *dir, const pki_catalog_ca *ca,
                         const pki_issuer *root, int reason, int64_t now, pki_err *err) {
  char path[PKI_PATH_MAX];
  uint8_t *der = NULL;
  size_t der_len;
  pki_cert_info info, root_info;
  memset(&info, 0, sizeof(info));
  memset(&root_info, 0, sizeof(root_info));
  int ok = 0;
  if (!pki_tree_ca_path(path, sizeof(path), dir, ca, PKI_TREE_CA_CERT, err) ||
      !pki_tree_read_cert(&der, &der_len, path, err)) {
    goto out;
  }
  if (!pki_cert_info_parse(&info, der, der_len, err) ||
      !pki_cert_info_parse(&root_info, root->cert, root->cert_len, err)) {
    pki_err_prefix(err, "%s: ", path);
    goto out;
  }
  if (!info.is_ca || !CBS_mem_equal(&info.issuer, root->name, root->name_len) ||
      !pki_cert_verify_signature(&info, &root_info.spki, err)) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s is not a CA certificate the root signed", path);
    goto out;
  }
  CBS serial = info.serial;
  if (CBS_len(&serial) > 1 && CBS_data(&serial)[0] == 0) CBS_skip(&serial, 1);
  if (CBS_len(&serial) == 0 || CBS_len(&serial) > PKI_SERIAL_MAX) {
    PKI_ERR(err, PKI_ERR_INVALID, "%s: its serial is not 1 to 20 octets", path);
    goto out;
  }
  memset(out, 0, sizeof(*out));
  memcpy(out->serial.bytes, CBS_data(&serial), CBS_len(&serial));
  out->serial.len = CBS_len(&serial);
  out->revocation_date = now;
  /* RFC 5280 5.3.1: unspecified is better left out than written. */
  out->reason = reason == PKI_CRL_REASON_UNSPECIFIED ? -1 : reason;
  ok = 1;
out:
  pki_cert_info_cleanup(&root_info);
  pki_cert_info_cleanup(&info);
  free(der);
  return ok;
}

int ceremony_crl(const pki_catalog *cat, const char *dir, const ceremony_root_key *root_key,
                 const char *revoke, int reason, ceremony_crl_info *out, pki_err *err) {
  const pki_catalog_ca *root = pki_catalog_root(cat), *target = NULL;
  if (revoke != NULL) {
    target = pki_catalog_find_ca(cat, revoke);
    if (target == NULL) {
      PKI_ERR(err, PKI_ERR_NOT_FOUND, "no CA '%.64s' in the catalogue", revoke);
      return 0;
    }
    if (target->parent == NULL) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "the root cannot be revoked on its own CRL: replace it (a new root ceremony, "
              "and trust bundles with the new root)");
      return 0;
    }
    if (strcmp(target->parent, root->name) != 0) {
      PKI_ERR(err, PKI_ERR_INVALID,
              "CA '%s' is signed by '%s', not the root: it is revoked on %s's CRL, which pkid "
              "signs (pkictl revoke)",
              target->name, target->parent, target->parent);
      return 0;
    }
    if (!ca_reason_allowed(reason)) {
      PKI_ERR(err, PKI_ERR_INVALID, "CRLReason %d is not one for revoking a CA here", reason);
      return 0;
    }
  }
  char path[PKI_PATH_MAX];
  if (!pki_tree_crl_path(path, sizeof(path), dir, root->name, 0, 0, err)) return 0;

  pki_issuer issuer;
  pki_crl current;
  root_crl next;
  uint8_t *text = NULL;
  size_t text_len;
  pki_crl_entry *entries = NULL;
  int ok = 0;
  memset(&current, 0, sizeof(current));
  memset(&next, 0, sizeof(next));
  if (!log_check(dir, err) || !pki_tree_load_issuer(&issuer, dir, root, root_key->secret.bytes,
                                                     root_key->secret.len, err)) {
    return 0;
  }
  int64_t now = now_s();
  if (!pki_file_exists(path)) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND,
            "%s is missing: 'pkictl ceremony root' writes the root's first CRL. If it was "
            "lost, put back the last one published (pkid serves it): the next must not reuse "
            "its cRLNumber",
            path);
    goto out;
  }
  if (!pki_file_read(&text, &text_len, path, ROOT_CRL_FILE_MAX, err)) goto out;
  if (!pki_crl_parse(&current, text, text_len, err)) {
    pki_err_prefix(err, "%s: refusing to go on: ", path);
    goto out;
  }
  if (!check_current_crl(&current, path, &issuer, now, err)) goto out;
  size_t num = current.num_entries;
  entries = calloc(num + 1, sizeof(pki_crl_entry));
  if (entries == NULL) {
    PKI_ERR_OOM(err);
    goto out;
  }
  if (num > 0) memcpy(entries, current.entries, num * sizeof(pki_crl_entry));
  if (target != NULL) {
    if (!revoked_entry(&entries[num], dir, target, &issuer, reason, now, err)) goto out;
    for (size_t i = 0; i < num; i++) {
      if (serial_equal(&entries[i].serial, &entries[num].serial)) {
        char hex[2 * PKI_SERIAL_MAX + 1];
        pki_serial_to_hex(hex, &entries[num].serial);
        PKI_ERR(err, PKI_ERR_EXISTS, "CA '%s' (serial %s) is already on the root's CRL",
                target->name, hex);
        goto out;
      }
    }
    num++;
  }
  if (!root_crl_sign(&next, root, &issuer, current.number_u64 + 1, entries, num, now, err) ||
      !root_crl_write(&next, dir, root, err)) {
    goto out;
  }
  char number[PKI_CEREMONY_SERIAL_MAX];
  snprintf(number, sizeof(number), "%" PRIx64, next.info.number);
  if (!log_step(dir, "crl", root->name, revoke != NULL ? revoke : root->name, number, next.der,
                next.der_len, root_key->how, root_key->shares, err)) {
    goto out;
  }
  if (out != NULL) *out = next.info;
  ok = 1;
out:
  root_crl_cleanup(&next);
  free(entries);
  pki_crl_cleanup(&current);
  free(text);
  pki_issuer_cleanup(&issuer);
  return ok;
}

/* issue_one signs one certificate of |svc| and writes it, its chain and
 * (when made here) its key. */
static int issue_one(const pki_catalog *cat, const char *dir, const pki_issuer *issuer,
                     const pki_catalog_service *svc, const pki_catalog_cert *cert,
                     const char *csr_path, pki_err *err) {
  const pki_catalog_ca *ca = pki_catalog_find_ca(cat, svc->ca);
  char cert_path[PKI_PATH_MAX], key_path[PKI_PATH_MAX], chain_path[PKI_PATH_MAX],
      ca_chain_path[PKI_PATH_MAX];
  if (!pki_tree_service_path(cert_path, sizeof(cert_path), dir, svc, cert, ".crt", err) ||
      !pki_tree_service_path(key_path, sizeof(key_path), dir, svc, cert, ".key", err) ||
      !pki_tree_service_path(chain_path, sizeof(chain_path), dir, svc, cert, "-chain.crt",
                             err) ||
      !pki_tree_ca_path(ca_chain_path, sizeof(ca_chain_path), dir, ca, PKI_TREE_CA_CHAIN,
                        err)) {
    return 0;
  }
  EVP_PKEY *key = NULL;
  pki_profile profile;
  pki_csr csr;
  pki_issue_request req;
  uint8_t *csr_file = NULL, *csr_der = NULL, *der = NULL, *ca_chain = NULL;
  size_t csr_file_len, csr_der_len = 0, der_len, ca_chain_len;
  int ok = 0;
  memset(&profile, 0, sizeof(profile));
  memset(&csr, 0, sizeof(csr));
  memset(&req, 0, sizeof(req));

  if (!pki_profile_for_service(&profile, cat, svc, cert->usage, err)) goto out;
  if (csr_path != NULL) {
    /* PEM under either label tools use (RFC 7468 section 7 and the older
     * "NEW" one), or DER. */
    static const char *const kCsrLabels[] = {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"};
    if (!pki_file_read(&csr_file, &csr_file_len, csr_path, PKI_CSR_MAX_LEN * 2, err) ||
        !pki_pem_decode(&csr_der, &csr_der_len, NULL, kCsrLabels, 2, csr_file, csr_file_len,
                        PKI_PEM_OR_DER, err)) {
      pki_err_prefix(err, "%s: ", csr_path);
      goto out;
    }
  } else {
    /* The key is made here and never leaves this machine; the CSR still
     * goes through the same parse and proof-of-possession check. */
    if ((key = pki_key_generate(svc->key_type, svc->key_bits, err)) == NULL ||
        !pki_csr_build(&csr_der, &csr_der_len, key, svc->name, profile.names,
                       profile.num_names, err)) {
      goto out;
    }
  }
  if (!pki_csr_parse(&csr, csr_der, csr_der_len, err)) {
    if (csr_path != NULL) pki_err_prefix(err, "%s: ", csr_path);
    goto out;
  }
  req.profile = &profile;
  req.spki = CBS_data(&csr.spki);
  req.spki_len = CBS_len(&csr.spki);
  /* Names asked for in the CSR must each be in the profile; lint refuses
   * the certificate otherwise. No names asked: all of the profile's. */
  if (csr.num_names > 0) {
    req.names = csr.names;
    req.num_names = csr.num_names;
  }
  pki_validity(&req.not_before, &req.not_after, issuer, profile.validity_s, now_s());
  if (!offline_serial(&req.serial, err) || !pki_cert_issue(&der, &der_len, issuer, &req, err)) {
    pki_err_prefix(err, "%s: ", profile.name);
    goto out;
  }
  /* The service's chain file is its CA's, copied. */
  if (!pki_file_read(&ca_chain, &ca_chain_len, ca_chain_path, 1 << 20, err)) goto out;
  char key_dir[PKI_PATH_MAX];
  snprintf(key_dir, sizeof(key_dir), "%s", key_path);
  if (!pki_mkdirs(dirname(key_dir), 0755, err) ||
      (key != NULL && !pki_key_write_pem(key_path, key, err)) ||
      !write_file(chain_path, ca_chain, ca_chain_len, 0644, err)) {
    goto out;
  }
  const uint8_t *ders[1] = {der};
  /* Issued offline: pkid learns of it from the issued/ folder. */
  if (!write_pem(cert_path, ders, &der_len, 1, err) ||
      !pki_tree_record_issued(dir, der, der_len, err)) {
    goto out;
  }
  char hex[PKI_CEREMONY_SERIAL_MAX];
  pki_serial_to_hex(hex, &req.serial);
  if (!log_step(dir, "issue", svc->ca, svc->name, hex, der, der_len, "passphrase", "-", err)) {
    goto out;
  }
  ok = 1;
out:
  pki_csr_cleanup(&csr);
  pki_profile_cleanup(&profile);
  EVP_PKEY_free(key);
  free(csr_file);
  free(csr_der);
  free(ca_chain);
  free(der);
  return ok;
}

int ceremony_issue_offline(const pki_catalog *cat, const char *dir,
                           const pki_secret *ca_passphrase, const char *service,
                           unsigned usage, const char *csr_path, pki_err *err) {
  const pki_catalog_service *svc = pki_catalog_find_service(cat, service);
  if (svc == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", service);
    return 0;
  }
  const pki_catalog_cert *chosen[PKI_CATALOG_MAX_CERTS];
  size_t num = 0;
  for (size_t i = 0; i < svc->num_certs; i++) {
    if (usage == 0 || svc->certs[i].usage == usage) chosen[num++] = &svc->certs[i];
  }
  if (num == 0) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "service '%s' has no %s certificate", service,
            usage == PKI_USAGE_SERVER ? "server" : "client");
    return 0;
  }
  if (csr_path != NULL && num > 1) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "a CSR makes one certificate: say which with --usage server|client");
    return 0;
  }
  pki_issuer issuer;
  if (!log_check(dir, err)) return 0;
  if (!pki_tree_load_issuer(&issuer, dir, pki_catalog_find_ca(cat, svc->ca),
                            ca_passphrase->bytes, ca_passphrase->len, err)) {
    return 0;
  }
  int ok = 1;
  for (size_t i = 0; ok && i < num; i++) {
    ok = issue_one(cat, dir, &issuer, svc, chosen[i], csr_path, err);
  }
  pki_issuer_cleanup(&issuer);
  return ok;
}

int ceremony_demo(const pki_catalog *cat, const char *dir,
                  const pki_secret *ca_passphrase, const ceremony_pkcs11 *root_token,
                  const ceremony_pkcs11 *online_token, pki_err *err) {
  if (!ceremony_root(cat, dir, NULL, 3, 5, root_token, err)) return 0;
  /* Custodians 1, 3 and 5 come to the intermediate ceremony. */
  char paths[3][PKI_PATH_MAX];
  const char *files[3];
  const unsigned custodians[3] = {1, 3, 5};
  for (int i = 0; i < 3; i++) {
    if (!pki_tree_share_path(paths[i], sizeof(paths[i]), dir, custodians[i], err)) return 0;
    files[i] = paths[i];
  }
  ceremony_root_key root_key;
  if (!ceremony_secret_from_shares(&root_key, files, 3, err)) return 0;
  int ok = ceremony_intermediate(cat, dir, &root_key, ca_passphrase, NULL, online_token, err);
  ceremony_root_key_cleanup(&root_key);
  for (size_t i = 0; ok && i < cat->num_services; i++) {
    ok = ceremony_issue_offline(cat, dir, ca_passphrase, cat->services[i].name, 0, NULL,
                                err);
  }
  return ok;
}

int ceremony_token(const pki_catalog *cat, const char *dir, const char *service,
                   uint32_t ttl_s, char *out, pki_err *err) {
  const pki_catalog_service *svc = pki_catalog_find_service(cat, service);
  if (svc == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "--service must name a catalogue service");
    return 0;
  }
  char key_path[PKI_PATH_MAX];
  uint8_t key[PKI_TOKEN_KEY_LEN];
  snprintf(key_path, sizeof(key_path), "%s/bootstrap/token.key", dir);
  int ok = log_check(dir, err) && pki_token_key_load(key, key_path, 1, err) &&
           pki_token_make(out, PKI_TOKEN_MAX_TEXT, key, svc->name, now_s() + ttl_s, err) &&
           log_step(dir, "token", svc->ca, svc->name, "-", (const uint8_t *)out, strlen(out),
                    "token-key", "-", err);
  OPENSSL_cleanse(key, sizeof(key));
  return ok;
}
