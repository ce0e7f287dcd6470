#include "lib/pkcs11.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "lib/sig.h"

/* The largest raw signature: r||s for P-384. */
#define RAW_SIG_MAX 96

/* DER OIDs for CKA_EC_PARAMS (RFC 5480 2.1.1.1, RFC 8410 3). */
static const uint8_t kP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t kP384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const uint8_t kEd25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
/* PKCS#11 3.0 also lets a token name the curve as a PrintableString. */
static const uint8_t kEd25519Name[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's',
                                       '2',  '5',  '5', '1', '9'};

/* A token this process is logged in to, and the PIN's digest: a login is
 * the application's, shared by all its sessions (PKCS#11 2.40 5.6), so a
 * second key on a logged-in token gets CKR_USER_ALREADY_LOGGED_IN whatever
 * PIN it gives; the digest is how its PIN is still checked. */
typedef struct p11_login {
  CK_SLOT_ID slot;
  uint8_t pin_sha256[SHA256_DIGEST_LENGTH];
} p11_login;

#define MAX_LOGINS 32

/* One loaded module, shared by every key on it (a module is initialized
 * once per process: PKCS#11 2.40 section 5.4, C_Initialize). */
typedef struct p11_module {
  char *path;
  CK_FUNCTION_LIST *fn;
  pthread_rwlock_t lock;     /* read: a call in progress; write: a reset */
  atomic_int broken;         /* a call failed inside the token: reset first */
  atomic_uint generation;    /* counts resets: older sessions and handles are gone */
  unsigned refs;             /* under g_modules_lock */
  struct p11_module *next;
  pthread_mutex_t logins_lock;
  p11_login logins[MAX_LOGINS]; /* forgotten at a reset, which logs out */
  size_t num_logins;
} p11_module;

static pthread_mutex_t g_modules_lock = PTHREAD_MUTEX_INITIALIZER;
static p11_module *g_modules;

struct pki_p11_key {
  atomic_uint refs;
  p11_module *module;
  P11KitUri *uri;
  char *uri_text;
  pki_key_type type;
  EVP_PKEY *pub;
  uint8_t *pin; /* kept to log in again after a reset; wiped at free */
  size_t pin_len;
  CK_SLOT_ID slot;
  CK_OBJECT_HANDLE object, public_object; /* public_object: 0 unless generated here */
  atomic_uint generation;                 /* the module's, when these were found */
  atomic_int ready;
  pthread_mutex_t lock; /* the idle sessions */
  CK_SESSION_HANDLE *idle;
  size_t num_idle, cap_idle;
};

static void rv_err(pki_err *err, pki_err_code code, const char *what, CK_RV rv) {
  PKI_ERR(err, code, "%s: %s (CKR 0x%lx)", what, p11_kit_strerror(rv), (unsigned long)rv);
}

/* --- modules ----------------------------------------------------------- */

static p11_module *module_get(const char *path, pki_err *err) {
  pthread_mutex_lock(&g_modules_lock);
  p11_module *m = g_modules;
  while (m != NULL && strcmp(m->path, path) != 0) m = m->next;
  if (m != NULL) {
    m->refs++;
    pthread_mutex_unlock(&g_modules_lock);
    return m;
  }
  if (access(path, R_OK) != 0) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "PKCS#11 module %s: not found", path);
    goto fail;
  }
  m = calloc(1, sizeof(*m));
  if (m == NULL || (m->path = strdup(path)) == NULL) {
    PKI_ERR_OOM(err);
    goto fail;
  }
  m->fn = p11_kit_module_load(path, 0);
  if (m->fn == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "PKCS#11 module %s: cannot be loaded: %s", path,
            p11_kit_message() != NULL ? p11_kit_message() : "not a PKCS#11 module");
    goto fail;
  }
  CK_RV rv = p11_kit_module_initialize(m->fn);
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "PKCS#11 module: C_Initialize", rv);
    pki_err_prefix(err, "%s: ", path);
    p11_kit_module_release(m->fn);
    m->fn = NULL;
    goto fail;
  }
  /* Writers first: a reset waits for the calls in progress, not for every
   * call that arrives after it. */
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&m->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  pthread_mutex_init(&m->logins_lock, NULL);
  m->refs = 1;
  m->next = g_modules;
  g_modules = m;
  pthread_mutex_unlock(&g_modules_lock);
  return m;
fail:
  if (m != NULL) free(m->path);
  free(m);
  pthread_mutex_unlock(&g_modules_lock);
  return NULL;
}

static void module_put(p11_module *m) {
  if (m == NULL) return;
  pthread_mutex_lock(&g_modules_lock);
  if (--m->refs > 0) {
    pthread_mutex_unlock(&g_modules_lock);
    return;
  }
  for (p11_module **p = &g_modules; *p != NULL; p = &(*p)->next) {
    if (*p == m) {
      *p = m->next;
      break;
    }
  }
  pthread_mutex_unlock(&g_modules_lock);
  p11_kit_module_finalize(m->fn);
  p11_kit_module_release(m->fn);
  pthread_rwlock_destroy(&m->lock);
  pthread_mutex_destroy(&m->logins_lock);
  free(m->path);
  free(m);
}

/* module_reset finalizes and initializes a broken module again: the only
 * way some tokens (SoftHSM2 among them) find a store that came back. The
 * caller holds the write lock. */
static int module_reset(p11_module *m, pki_err *err) {
  if (!atomic_load(&m->broken)) return 1;
  p11_kit_module_finalize(m->fn);
  pthread_mutex_lock(&m->logins_lock);
  m->num_logins = 0;
  pthread_mutex_unlock(&m->logins_lock);
  CK_RV rv = p11_kit_module_initialize(m->fn);
  atomic_fetch_add(&m->generation, 1);
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_Initialize", rv);
    pki_err_prefix(err, "PKCS#11 module %s: ", m->path);
    return 0;
  }
  atomic_store(&m->broken, 0);
  return 1;
}

/* --- URIs, tokens and objects ------------------------------------------ */

/* parse_uri parses |text| and takes the module path from it. */
static P11KitUri *parse_uri(const char *text, const char **module_path, pki_err *err) {
  P11KitUri *uri = p11_kit_uri_new();
  if (uri == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  int rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, uri);
  if (rc != P11_KIT_URI_OK) {
    PKI_ERR(err, PKI_ERR_INVALID, "'%s' is not a PKCS#11 URI (RFC 7512): %s", text,
            p11_kit_uri_message(rc));
    goto fail;
  }
  if (p11_kit_uri_get_pin_value(uri) != NULL || p11_kit_uri_get_pin_source(uri) != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "PKCS#11 URI '%s' carries a PIN (pin-value or pin-source): the PIN is read "
            "from the CA's secret file, never from a URI",
            text);
    goto fail;
  }
  *module_path = p11_kit_uri_get_module_path(uri);
  if (*module_path == NULL || (*module_path)[0] == '\0') {
    PKI_ERR(err, PKI_ERR_INVALID,
            "PKCS#11 URI '%s' names no module: add ?module-path=/path/to/module.so "
            "(RFC 7512 2.3)",
            text);
    goto fail;
  }
  return uri;
fail:
  p11_kit_uri_free(uri);
  return NULL;
}

/* find_slot finds the one token |uri| matches. */
static int find_slot(CK_SLOT_ID *out, const p11_module *m, P11KitUri *uri, const char *text,
                     pki_err *err) {
  CK_ULONG n = 0;
  CK_RV rv = m->fn->C_GetSlotList(CK_TRUE, NULL, &n);
  CK_SLOT_ID *slots = NULL;
  if (rv == CKR_OK && n > 0) {
    if ((slots = calloc(n, sizeof(*slots))) == NULL) {
      PKI_ERR_OOM(err);
      return 0;
    }
    rv = m->fn->C_GetSlotList(CK_TRUE, slots, &n);
  }
  if (rv != CKR_OK) {
    free(slots);
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_GetSlotList", rv);
    return 0;
  }
  size_t matches = 0;
  for (CK_ULONG i = 0; i < n; i++) {
    CK_TOKEN_INFO ti;
    if (m->fn->C_GetTokenInfo(slots[i], &ti) != CKR_OK) continue;
    if (!(ti.flags & CKF_TOKEN_INITIALIZED)) continue;
    if (p11_kit_uri_match_token_info(uri, &ti)) {
      if (matches++ == 0) *out = slots[i];
    }
  }
  free(slots);
  if (matches == 0) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no token matches '%s' in PKCS#11 module %s", text,
            m->path);
    return 0;
  }
  if (matches > 1) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "%zu tokens match '%s': name one (token=, serial=)", matches, text);
    return 0;
  }
  return 1;
}

/* login logs the application in to the token of |s| (PKCS#11 2.40 5.6:
 * every session of the application shares the login). */
static int login(p11_module *m, CK_SLOT_ID slot, CK_SESSION_HANDLE s, const uint8_t *pin,
                 size_t pin_len, pki_err *err) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(pin, pin_len, digest);
  CK_RV rv = m->fn->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)pin_len);
  if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
    int same = 1;
    pthread_mutex_lock(&m->logins_lock);
    size_t i = 0;
    while (i < m->num_logins && m->logins[i].slot != slot) i++;
    if (rv == CKR_OK && (i < m->num_logins || m->num_logins < MAX_LOGINS)) {
      /* The token took this PIN: it is the one to compare with. */
      if (i == m->num_logins) m->logins[m->num_logins++].slot = slot;
      memcpy(m->logins[i].pin_sha256, digest, sizeof(digest));
    } else if (rv == CKR_USER_ALREADY_LOGGED_IN && i < m->num_logins) {
      same = CRYPTO_memcmp(m->logins[i].pin_sha256, digest, sizeof(digest)) == 0;
    }
    pthread_mutex_unlock(&m->logins_lock);
    if (same) return 1;
    rv = CKR_PIN_INCORRECT;
  }
  if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
    PKI_ERR(err, PKI_ERR_AUTH, "the token refused the PIN (wrong PIN)");
  } else if (rv == CKR_PIN_LOCKED) {
    PKI_ERR(err, PKI_ERR_AUTH, "the token's user PIN is locked");
  } else {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_Login", rv);
  }
  return 0;
}

/* find_private finds the one private key |uri| names. */
static int find_private(CK_OBJECT_HANDLE *out, const p11_module *m, CK_SESSION_HANDLE s,
                        P11KitUri *uri, const char *text, pki_err *err) {
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE tmpl[3];
  CK_ULONG n = 0;
  tmpl[n++] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
  CK_ATTRIBUTE_PTR label = p11_kit_uri_get_attribute(uri, CKA_LABEL);
  CK_ATTRIBUTE_PTR id = p11_kit_uri_get_attribute(uri, CKA_ID);
  CK_ATTRIBUTE_PTR type = p11_kit_uri_get_attribute(uri, CKA_CLASS);
  if (label != NULL) tmpl[n++] = *label;
  if (id != NULL) tmpl[n++] = *id;
  if (label == NULL && id == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "PKCS#11 URI '%s' names no object (object= or id=)", text);
    return 0;
  }
  if (type != NULL && (type->ulValueLen != sizeof(cls) ||
                       memcmp(type->pValue, &cls, sizeof(cls)) != 0)) {
    PKI_ERR(err, PKI_ERR_INVALID, "PKCS#11 URI '%s' names an object that is not a private key",
            text);
    return 0;
  }
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  CK_RV rv = m->fn->C_FindObjectsInit(s, tmpl, n);
  if (rv == CKR_OK) {
    rv = m->fn->C_FindObjects(s, found, 2, &count);
    m->fn->C_FindObjectsFinal(s);
  }
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_FindObjects", rv);
    return 0;
  }
  if (count == 0) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no private key matches '%s' (object missing)", text);
    return 0;
  }
  if (count > 1) {
    PKI_ERR(err, PKI_ERR_INVALID, "more than one private key matches '%s'", text);
    return 0;
  }
  *out = found[0];
  return 1;
}

/* object_type tells the pki_key_type of a key object, or PKI_KEY_NONE. */
static pki_key_type object_type(const p11_module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h) {
  CK_KEY_TYPE kt;
  uint8_t params[64];
  CK_ATTRIBUTE a[2] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_EC_PARAMS, params, sizeof(params)}};
  if (m->fn->C_GetAttributeValue(s, h, a, 2) != CKR_OK) return PKI_KEY_NONE;
  size_t len = a[1].ulValueLen;
#define IS(oid) (len == sizeof(oid) && memcmp(params, oid, len) == 0)
  if (kt == CKK_EC && IS(kP256)) return PKI_KEY_ECDSA_P256;
  if (kt == CKK_EC && IS(kP384)) return PKI_KEY_ECDSA_P384;
  if (kt == CKK_EC_EDWARDS && (IS(kEd25519) || IS(kEd25519Name))) return PKI_KEY_ED25519;
#undef IS
  return PKI_KEY_NONE;
}

/* --- signing ----------------------------------------------------------- */

/* take_session pops an idle session or opens one. */
static int take_session(CK_SESSION_HANDLE *out, pki_p11_key *k, pki_err *err) {
  pthread_mutex_lock(&k->lock);
  if (k->num_idle > 0) {
    *out = k->idle[--k->num_idle];
    pthread_mutex_unlock(&k->lock);
    return 1;
  }
  pthread_mutex_unlock(&k->lock);
  CK_RV rv = k->module->fn->C_OpenSession(k->slot, CKF_SERIAL_SESSION, NULL, NULL, out);
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_OpenSession", rv);
    return 0;
  }
  return 1;
}

static void give_session(pki_p11_key *k, CK_SESSION_HANDLE s) {
  pthread_mutex_lock(&k->lock);
  if (k->num_idle == k->cap_idle) {
    size_t cap = k->cap_idle > 0 ? 2 * k->cap_idle : 8;
    CK_SESSION_HANDLE *grown = realloc(k->idle, cap * sizeof(*grown));
    if (grown == NULL) {
      pthread_mutex_unlock(&k->lock);
      k->module->fn->C_CloseSession(s);
      return;
    }
    k->idle = grown;
    k->cap_idle = cap;
  }
  k->idle[k->num_idle++] = s;
  pthread_mutex_unlock(&k->lock);
}

/* raw_sign signs |in| (a digest, or Ed25519's data) into r||s or the
 * EdDSA signature. The caller holds the module's lock (either way). A
 * failure inside the token marks the module broken. */
static int raw_sign(pki_p11_key *k, uint8_t *sig, size_t *sig_len, const uint8_t *in,
                    size_t in_len, pki_err *err) {
  CK_SESSION_HANDLE s;
  if (!take_session(&s, k, err)) goto broken;
  CK_MECHANISM mech = {k->type == PKI_KEY_ED25519 ? CKM_EDDSA : CKM_ECDSA, NULL, 0};
  CK_ULONG len = RAW_SIG_MAX;
  CK_RV rv = k->module->fn->C_SignInit(s, &mech, k->object);
  if (rv == CKR_OK) rv = k->module->fn->C_Sign(s, (CK_BYTE_PTR)in, in_len, sig, &len);
  if (rv != CKR_OK) {
    /* The session may hold a half-done operation: close it, not reuse it. */
    k->module->fn->C_CloseSession(s);
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_Sign", rv);
    goto broken;
  }
  give_session(k, s);
  *sig_len = len;
  return 1;
broken:
  atomic_store(&k->ready, 0);
  atomic_store(&k->module->broken, 1);
  return 0;
}

/* to_der turns |raw| into what pki_sig_sign gives. */
static int to_der(uint8_t **out, size_t *out_len, pki_key_type type, const uint8_t *raw,
                  size_t raw_len, pki_err *err) {
  if (type == PKI_KEY_ED25519) {
    if (raw_len != 64 || (*out = malloc(64)) == NULL) goto bad;
    memcpy(*out, raw, 64);
    *out_len = 64;
    return 1;
  }
  size_t half = type == PKI_KEY_ECDSA_P256 ? 32 : 48;
  if (raw_len != 2 * half) goto bad;
  ECDSA_SIG *sig = ECDSA_SIG_new();
  int ok = sig != NULL && BN_bin2bn(raw, half, sig->r) != NULL &&
           BN_bin2bn(raw + half, half, sig->s) != NULL;
  uint8_t *der = NULL;
  size_t der_len = 0;
  ok = ok && ECDSA_SIG_to_bytes(&der, &der_len, sig);
  ECDSA_SIG_free(sig);
  if (!ok) goto bad;
  /* lib/ hands out malloc'd buffers; BoringSSL's are OPENSSL_malloc'd. */
  *out = malloc(der_len);
  if (*out != NULL) memcpy(*out, der, der_len);
  OPENSSL_free(der);
  if (*out == NULL) goto bad;
  *out_len = der_len;
  return 1;
bad:
  PKI_ERR(err, PKI_ERR_INTERNAL, "the token gave a signature of an unexpected form");
  return 0;
}

/* sign_locked is pki_p11_key_sign under the module's lock. */
static int sign_locked(pki_p11_key *k, uint8_t **out, size_t *out_len, const uint8_t *data,
                       size_t data_len, pki_err *err) {
  uint8_t digest[EVP_MAX_MD_SIZE], raw[RAW_SIG_MAX];
  const uint8_t *in = data;
  size_t in_len = data_len, raw_len;
  const EVP_MD *md = pki_sig_md(k->type); /* CKM_ECDSA signs a digest */
  if (md != NULL) {
    unsigned n = 0;
    if (!EVP_Digest(data, data_len, digest, &n, md, NULL)) {
      PKI_ERR(err, PKI_ERR_INTERNAL, "digest failed");
      return 0;
    }
    in = digest;
    in_len = n;
  }
  return raw_sign(k, raw, &raw_len, in, in_len, err) &&
         to_der(out, out_len, k->type, raw, raw_len, err);
}

int pki_p11_key_sign(pki_p11_key *k, uint8_t **out, size_t *out_len, const uint8_t *data,
                     size_t data_len, pki_err *err) {
  /* Never wait on a recovery (the write lock, held while the module is
   * initialized again, which a network HSM may take seconds over): a key
   * that is not ready, or a reset in progress, fails the call at once. The
   * check is repeated under the lock: a recovery that ran just before has
   * either found the object again or left the key not ready. */
  int locked = pki_p11_key_ready(k) && pthread_rwlock_tryrdlock(&k->module->lock) == 0;
  if (!locked || !pki_p11_key_ready(k)) {
    if (locked) pthread_rwlock_unlock(&k->module->lock);
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "the PKCS#11 token of '%s' is unavailable; recovering",
            k->uri_text);
    return 0;
  }
  int ok = sign_locked(k, out, out_len, data, data_len, err);
  pthread_rwlock_unlock(&k->module->lock);
  if (!ok) pki_err_prefix(err, "PKCS#11 key '%s': ", k->uri_text);
  return ok;
}

/* verify_probe signs a fixed message and checks it under |k->pub|: the
 * object is the key it is said to be, and the token signs with it. */
static int verify_probe(pki_p11_key *k, pki_err *err) {
  static const uint8_t kProbe[] = "pkid: a PKCS#11 key checks that it signs as expected";
  uint8_t *sig = NULL;
  size_t sig_len = 0;
  if (!sign_locked(k, &sig, &sig_len, kProbe, sizeof(kProbe), err)) return 0;
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  int ok = EVP_DigestVerifyInit(&ctx, NULL, pki_sig_md(k->type), NULL, k->pub) &&
           EVP_DigestVerify(&ctx, sig, sig_len, kProbe, sizeof(kProbe));
  EVP_MD_CTX_cleanup(&ctx);
  free(sig);
  if (!ok) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "the token's key does not match the CA certificate (its signature does not "
            "verify under the certificate's public key)");
  }
  return ok;
}

/* attach finds |k|'s token and object and logs in, with the module's
 * lock held; after it the key is ready. */
static int attach(pki_p11_key *k, pki_err *err) {
  const p11_module *m = k->module;
  CK_SESSION_HANDLE s;
  if (!find_slot(&k->slot, m, k->uri, k->uri_text, err)) return 0;
  CK_RV rv = m->fn->C_OpenSession(k->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_OpenSession", rv);
    return 0;
  }
  if (!login(k->module, k->slot, s, k->pin, k->pin_len, err) ||
      !find_private(&k->object, m, s, k->uri, k->uri_text, err)) {
    m->fn->C_CloseSession(s);
    return 0;
  }
  pki_key_type found = object_type(m, s, k->object);
  if (found != k->type) {
    m->fn->C_CloseSession(s);
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "'%s' holds an %s key, not the %s key the catalogue names",
            k->uri_text, found == PKI_KEY_NONE ? "unsupported" : pki_key_type_name(found, 0),
            pki_key_type_name(k->type, 0));
    return 0;
  }
  give_session(k, s);
  atomic_store(&k->generation, atomic_load(&k->module->generation));
  atomic_store(&k->ready, 1);
  if (!verify_probe(k, err)) {
    atomic_store(&k->ready, 0);
    return 0;
  }
  return 1;
}

/* drop_sessions forgets the idle sessions: closed, or gone with a reset. */
static void drop_sessions(pki_p11_key *k, int close) {
  pthread_mutex_lock(&k->lock);
  for (size_t i = 0; close && i < k->num_idle; i++) k->module->fn->C_CloseSession(k->idle[i]);
  k->num_idle = 0;
  pthread_mutex_unlock(&k->lock);
}

/* --- keys -------------------------------------------------------------- */

static pki_p11_key *key_new(const char *uri_text, pki_key_type type, const uint8_t *pin,
                            size_t pin_len, pki_err *err) {
  pki_p11_key *k = calloc(1, sizeof(*k));
  if (k == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  atomic_init(&k->refs, 1);
  pthread_mutex_init(&k->lock, NULL);
  k->type = type;
  const char *module_path;
  if ((k->uri = parse_uri(uri_text, &module_path, err)) == NULL) goto fail;
  if ((k->uri_text = strdup(uri_text)) == NULL ||
      (k->pin = malloc(pin_len > 0 ? pin_len : 1)) == NULL) {
    PKI_ERR_OOM(err);
    goto fail;
  }
  memcpy(k->pin, pin, pin_len);
  k->pin_len = pin_len;
  if ((k->module = module_get(module_path, err)) == NULL) goto fail;
  return k;
fail:
  pki_p11_key_free(k);
  return NULL;
}

pki_p11_key *pki_p11_key_open(const char *uri, pki_key_type type, const EVP_PKEY *expected,
                              const uint8_t *pin, size_t pin_len, pki_err *err) {
  pki_p11_key *k = key_new(uri, type, pin, pin_len, err);
  if (k == NULL) return NULL;
  k->pub = (EVP_PKEY *)expected;
  EVP_PKEY_up_ref(k->pub);
  pthread_rwlock_rdlock(&k->module->lock);
  int ok = attach(k, err);
  pthread_rwlock_unlock(&k->module->lock);
  if (!ok) {
    pki_p11_key_free(k);
    return NULL;
  }
  return k;
}

/* public_from_point makes an EVP_PKEY from a public key object's
 * CKA_EC_POINT: a DER OCTET STRING around the point (PKCS#11 2.40 2.3.3;
 * some tokens give the bare point, told apart by its length). */
static EVP_PKEY *public_from_point(pki_key_type type, const uint8_t *p, size_t len,
                                   pki_err *err) {
  size_t want = type == PKI_KEY_ECDSA_P256 ? 65 : type == PKI_KEY_ECDSA_P384 ? 97 : 32;
  if (len == want + 2 && p[0] == 0x04 && p[1] == want) {
    p += 2;
    len -= 2;
  }
  EVP_PKEY *pkey = NULL;
  if (len == want && type == PKI_KEY_ED25519) {
    pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p, len);
  } else if (len == want) {
    EC_KEY *ec = EC_KEY_new_by_curve_name(type == PKI_KEY_ECDSA_P256 ? NID_X9_62_prime256v1
                                                                     : NID_secp384r1);
    EC_POINT *pt = ec != NULL ? EC_POINT_new(EC_KEY_get0_group(ec)) : NULL;
    if (pt != NULL && EC_POINT_oct2point(EC_KEY_get0_group(ec), pt, p, len, NULL) &&
        EC_KEY_set_public_key(ec, pt) && (pkey = EVP_PKEY_new()) != NULL &&
        !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
      EVP_PKEY_free(pkey);
      pkey = NULL;
    }
    if (pkey != NULL) ec = NULL; /* the EVP_PKEY owns it */
    EC_POINT_free(pt);
    EC_KEY_free(ec);
  }
  if (pkey == NULL) PKI_ERR(err, PKI_ERR_INTERNAL, "the token gave a public key pkid cannot read");
  return pkey;
}

/* label_taken reports whether the token holds any object labelled |label|. */
static int label_taken(const p11_module *m, CK_SESSION_HANDLE s, const char *label,
                       int *taken, pki_err *err) {
  CK_ATTRIBUTE tmpl = {CKA_LABEL, (void *)label, strlen(label)};
  CK_OBJECT_HANDLE h;
  CK_ULONG count = 0;
  CK_RV rv = m->fn->C_FindObjectsInit(s, &tmpl, 1);
  if (rv == CKR_OK) {
    rv = m->fn->C_FindObjects(s, &h, 1, &count);
    m->fn->C_FindObjectsFinal(s);
  }
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_FindObjects", rv);
    return 0;
  }
  *taken = count > 0;
  return 1;
}

/* object_uri names the new key: the token's URI with its object added. */
static char *object_uri(const char *token_uri, const char *label, pki_err *err) {
  const char *module_path;
  P11KitUri *uri = parse_uri(token_uri, &module_path, err);
  if (uri == NULL) return NULL;
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_ATTRIBUTE a[2] = {{CKA_LABEL, (void *)label, strlen(label)}, {CKA_CLASS, &cls, sizeof(cls)}};
  char *text = NULL;
  if (p11_kit_uri_set_attribute(uri, &a[0]) != P11_KIT_URI_OK ||
      p11_kit_uri_set_attribute(uri, &a[1]) != P11_KIT_URI_OK ||
      p11_kit_uri_format(uri, P11_KIT_URI_FOR_ANY, &text) != P11_KIT_URI_OK) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "cannot name the new key in '%s'", token_uri);
    text = NULL;
  }
  p11_kit_uri_free(uri);
  return text;
}

pki_p11_key *pki_p11_key_generate(const char *token_uri, const char *label,
                                  pki_key_type type, const uint8_t *pin, size_t pin_len,
                                  pki_err *err) {
  if (type != PKI_KEY_ECDSA_P256 && type != PKI_KEY_ECDSA_P384 && type != PKI_KEY_ED25519) {
    PKI_ERR(err, PKI_ERR_UNSUPPORTED, "a token key must be ecdsa-p256, ecdsa-p384 or ed25519");
    return NULL;
  }
  char *uri = object_uri(token_uri, label, err);
  if (uri == NULL) return NULL;
  pki_p11_key *k = key_new(uri, type, pin, pin_len, err);
  free(uri);
  if (k == NULL) return NULL;
  const p11_module *m = k->module;
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  int ok = 0, taken = 1;
  pthread_rwlock_rdlock(&k->module->lock);
  if (!find_slot(&k->slot, m, k->uri, token_uri, err)) goto out;
  CK_RV rv = m->fn->C_OpenSession(k->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_OpenSession", rv);
    goto out;
  }
  if (!login(k->module, k->slot, s, pin, pin_len, err) || !label_taken(m, s, label, &taken, err)) goto out;
  if (taken) {
    PKI_ERR(err, PKI_ERR_EXISTS, "the token already holds an object labelled '%s'", label);
    goto out;
  }
  const uint8_t *params = type == PKI_KEY_ECDSA_P256   ? kP256
                          : type == PKI_KEY_ECDSA_P384 ? kP384
                                                       : kEd25519;
  size_t params_len = type == PKI_KEY_ECDSA_P256   ? sizeof(kP256)
                      : type == PKI_KEY_ECDSA_P384 ? sizeof(kP384)
                                                   : sizeof(kEd25519);
  uint8_t id[16];
  RAND_bytes(id, sizeof(id));
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE pub_tmpl[] = {
      {CKA_TOKEN, &yes, sizeof(yes)},     {CKA_VERIFY, &yes, sizeof(yes)},
      {CKA_ENCRYPT, &no, sizeof(no)},     {CKA_WRAP, &no, sizeof(no)},
      {CKA_DERIVE, &no, sizeof(no)},      {CKA_EC_PARAMS, (void *)params, params_len},
      {CKA_LABEL, (void *)label, strlen(label)}, {CKA_ID, id, sizeof(id)},
  };
  /* The key never leaves the token: sensitive (its value is never given
   * out) and not extractable (not even wrapped); PKCS#11 2.40 4.9. It
   * signs and does nothing else. */
  CK_ATTRIBUTE priv_tmpl[] = {
      {CKA_TOKEN, &yes, sizeof(yes)},       {CKA_PRIVATE, &yes, sizeof(yes)},
      {CKA_SENSITIVE, &yes, sizeof(yes)},   {CKA_EXTRACTABLE, &no, sizeof(no)},
      {CKA_SIGN, &yes, sizeof(yes)},        {CKA_DECRYPT, &no, sizeof(no)},
      {CKA_UNWRAP, &no, sizeof(no)},        {CKA_DERIVE, &no, sizeof(no)},
      {CKA_LABEL, (void *)label, strlen(label)},
      {CKA_ID, id, sizeof(id)},
  };
  CK_MECHANISM mech = {type == PKI_KEY_ED25519 ? CKM_EC_EDWARDS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN,
                       NULL, 0};
  rv = m->fn->C_GenerateKeyPair(s, &mech, pub_tmpl, sizeof(pub_tmpl) / sizeof(pub_tmpl[0]),
                                priv_tmpl, sizeof(priv_tmpl) / sizeof(priv_tmpl[0]),
                                &k->public_object, &k->object);
  if (rv != CKR_OK) {
    rv_err(err, rv == CKR_MECHANISM_INVALID ? PKI_ERR_UNSUPPORTED : PKI_ERR_UNAVAILABLE,
           "C_GenerateKeyPair", rv);
    goto out;
  }
  uint8_t point[128];
  CK_ATTRIBUTE a = {CKA_EC_POINT, point, sizeof(point)};
  rv = m->fn->C_GetAttributeValue(s, k->public_object, &a, 1);
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_GetAttributeValue(CKA_EC_POINT)", rv);
    goto out;
  }
  if ((k->pub = public_from_point(type, point, a.ulValueLen, err)) == NULL) goto out;
  give_session(k, s);
  s = CK_INVALID_HANDLE;
  atomic_store(&k->generation, atomic_load(&k->module->generation));
  atomic_store(&k->ready, 1);
  ok = verify_probe(k, err);
out:
  if (s != CK_INVALID_HANDLE) m->fn->C_CloseSession(s);
  pthread_rwlock_unlock(&k->module->lock);
  if (!ok) {
    pki_err_prefix(err, "PKCS#11 token '%s': ", token_uri);
    if (k->object != 0) {
      pki_err ignored;
      pki_p11_key_destroy(k, &ignored);
    } else {
      pki_p11_key_free(k);
    }
    return NULL;
  }
  return k;
}

int pki_p11_key_destroy(pki_p11_key *k, pki_err *err) {
  if (k == NULL) return 1;
  CK_SESSION_HANDLE s;
  int ok = 0;
  pthread_rwlock_rdlock(&k->module->lock);
  if (take_session(&s, k, err)) {
    CK_RV rv = k->module->fn->C_DestroyObject(s, k->object);
    if (rv == CKR_OK && k->public_object != 0) {
      rv = k->module->fn->C_DestroyObject(s, k->public_object);
    }
    ok = rv == CKR_OK;
    if (!ok) rv_err(err, PKI_ERR_UNAVAILABLE, "C_DestroyObject", rv);
    k->module->fn->C_CloseSession(s);
  }
  pthread_rwlock_unlock(&k->module->lock);
  pki_p11_key_free(k);
  return ok;
}

int pki_p11_set_pin(const char *uri_text, const uint8_t *old_pin, size_t old_len,
                    const uint8_t *new_pin, size_t new_len, pki_err *err) {
  const char *module_path;
  P11KitUri *uri = parse_uri(uri_text, &module_path, err);
  if (uri == NULL) return 0;
  p11_module *m = module_get(module_path, err);
  int ok = 0;
  CK_SLOT_ID slot;
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  if (m == NULL || !find_slot(&slot, m, uri, uri_text, err)) goto out;
  CK_RV rv = m->fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_OpenSession", rv);
    goto out;
  }
  if (!login(m, slot, s, old_pin, old_len, err)) goto out;
  rv = m->fn->C_SetPIN(s, (CK_UTF8CHAR_PTR)old_pin, old_len, (CK_UTF8CHAR_PTR)new_pin, new_len);
  if (rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID) {
    CK_TOKEN_INFO ti;
    m->fn->C_GetTokenInfo(slot, &ti);
    PKI_ERR(err, PKI_ERR_INVALID, "the token takes PINs of %lu to %lu characters, not %zu",
            (unsigned long)ti.ulMinPinLen, (unsigned long)ti.ulMaxPinLen, new_len);
    goto out;
  }
  if (rv != CKR_OK) {
    rv_err(err, PKI_ERR_UNAVAILABLE, "C_SetPIN", rv);
    goto out;
  }
  /* Still logged in (other keys of this process may use the token), now
   * under the new PIN. */
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(new_pin, new_len, digest);
  pthread_mutex_lock(&m->logins_lock);
  for (size_t i = 0; i < m->num_logins; i++) {
    if (m->logins[i].slot == slot) memcpy(m->logins[i].pin_sha256, digest, sizeof(digest));
  }
  pthread_mutex_unlock(&m->logins_lock);
  ok = 1;
out:
  if (!ok) pki_err_prefix(err, "PKCS#11 token '%s': ", uri_text);
  if (s != CK_INVALID_HANDLE) m->fn->C_CloseSession(s);
  module_put(m);
  p11_kit_uri_free(uri);
  return ok;
}

pki_p11_key *pki_p11_key_up_ref(pki_p11_key *k) {
  if (k != NULL) atomic_fetch_add(&k->refs, 1);
  return k;
}

void pki_p11_key_free(pki_p11_key *k) {
  if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1) return;
  if (k->module != NULL) {
    pthread_rwlock_rdlock(&k->module->lock);
    if (atomic_load(&k->generation) == atomic_load(&k->module->generation)) drop_sessions(k, 1);
    pthread_rwlock_unlock(&k->module->lock);
    module_put(k->module);
  }
  if (k->pin != NULL) OPENSSL_cleanse(k->pin, k->pin_len);
  free(k->pin);
  free(k->idle);
  EVP_PKEY_free(k->pub);
  p11_kit_uri_free(k->uri);
  free(k->uri_text);
  pthread_mutex_destroy(&k->lock);
  free(k);
}

EVP_PKEY *pki_p11_key_public(const pki_p11_key *k) { return k->pub; }

const char *pki_p11_key_uri(const pki_p11_key *k) { return k->uri_text; }

int pki_p11_key_ready(const pki_p11_key *k) {
  return atomic_load(&k->ready) && !atomic_load(&k->module->broken) &&
         atomic_load(&k->generation) == atomic_load(&k->module->generation);
}

int pki_p11_key_recover(pki_p11_key *k, pki_err *err) {
  if (pki_p11_key_ready(k)) return 1;
  pthread_rwlock_wrlock(&k->module->lock);
  int ok = module_reset(k->module, err);
  if (ok) {
    /* A reset closed every session; without one, the key's sessions may
     * still be open but its handles are suspect: close them. */
    drop_sessions(k, atomic_load(&k->generation) == atomic_load(&k->module->generation));
    ok = attach(k, err);
  }
  pthread_rwlock_unlock(&k->module->lock);
  if (!ok) pki_err_prefix(err, "PKCS#11 key '%s': ", k->uri_text);
  return ok;
}
