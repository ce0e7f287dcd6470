/* acme_state.c: the ACME server's durable state (see acme_state.h).
 *
 * Three arrays searched linearly: pkid expects hundreds to a few thousand
 * accounts, made and changed rarely, so a replay's quadratic checks cost
 * milliseconds and a hash table would be code for nothing. Every record is
 * checked in full before anything changes, so a refused one leaves the
 * state as it was. */
#include "server/store/acme_state.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "lib/jws.h"
#include "lib/record.h"

/* One record applied, as it was given: what a snapshot writes back. */
typedef struct applied {
  uint8_t kind;
  char *service;
  uint8_t *detail;
  size_t len;
  int64_t time;
} applied;

struct pkid_acme_state {
  pkid_acme_eab *eabs;
  size_t num_eabs, cap_eabs;
  pkid_acme_account *accounts;
  size_t num_accounts, cap_accounts;
  applied *recs;
  size_t num_recs, cap_recs;
};

pkid_acme_state *pkid_acme_state_new(void) { return calloc(1, sizeof(pkid_acme_state)); }

void pkid_acme_state_free(pkid_acme_state *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->num_eabs; i++) free(s->eabs[i].service);
  for (size_t i = 0; i < s->num_accounts; i++) {
    free(s->accounts[i].service);
    free(s->accounts[i].jwk);
    free(s->accounts[i].contact);
  }
  for (size_t i = 0; i < s->num_recs; i++) {
    free(s->recs[i].service);
    free(s->recs[i].detail);
  }
  free(s->eabs);
  free(s->accounts);
  free(s->recs);
  free(s);
}

/* grow makes room for one more element of |size| octets in |*arr|. */
static int grow(void **arr, size_t *cap, size_t num, size_t size) {
  if (num < *cap) return 1;
  size_t n = *cap == 0 ? 16 : *cap * 2;
  void *p = realloc(*arr, n * size);
  if (p == NULL) return 0;
  *arr = p;
  *cap = n;
  return 1;
}

/* --- lookups ---------------------------------------------------------------- */

static pkid_acme_eab *find_eab(const pkid_acme_state *s, const char *kid) {
  for (size_t i = 0; i < s->num_eabs; i++) {
    if (strcmp(s->eabs[i].kid, kid) == 0) return &s->eabs[i];
  }
  return NULL;
}

static pkid_acme_account *find_account(const pkid_acme_state *s, const char *id) {
  for (size_t i = 0; i < s->num_accounts; i++) {
    if (strcmp(s->accounts[i].id, id) == 0) return &s->accounts[i];
  }
  return NULL;
}

static pkid_acme_account *find_by_key(const pkid_acme_state *s, const uint8_t tp[32]) {
  for (size_t i = 0; i < s->num_accounts; i++) {
    if (memcmp(s->accounts[i].thumbprint, tp, 32) == 0) return &s->accounts[i];
  }
  return NULL;
}

const pkid_acme_eab *pkid_acme_state_eab(const pkid_acme_state *s, const char *kid) {
  return kid != NULL ? find_eab(s, kid) : NULL;
}

const pkid_acme_account *pkid_acme_state_account(const pkid_acme_state *s, const char *id) {
  return id != NULL ? find_account(s, id) : NULL;
}

const pkid_acme_account *pkid_acme_state_account_by_key(const pkid_acme_state *s,
                                                        const uint8_t thumbprint[32]) {
  return find_by_key(s, thumbprint);
}

size_t pkid_acme_state_num_accounts(const pkid_acme_state *s) { return s->num_accounts; }

/* --- checks ------------------------------------------------------------------ */

/* valid_kid: what pkictl and the api make are "eab-" and base64url, but
 * any printable ASCII is taken, so that a kid can always be named in a
 * log line or a problem document as it is. */
static int valid_kid(const char *kid, size_t len) {
  if (len == 0 || len > PKID_ACME_KID_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    if (kid[i] < 0x20 || kid[i] > 0x7e) return 0;
  }
  return 1;
}

/* valid_account_id: an id is the last segment of the account's URL, so
 * base64url's alphabet only. */
static int valid_account_id(const char *id, size_t len) {
  if (len == 0 || len > PKID_ACME_ACCOUNT_ID_MAX) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = id[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_')) {
      return 0;
    }
  }
  return 1;
}

/* only_members checks that |obj| has no member outside |names|: the
 * records' layouts are exact, and one pkid does not know is from a newer
 * pkid or damage, neither of which should be half understood. */
static int only_members(json_t *obj, const char *const *names, size_t n, pki_err *err) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    size_t i = 0;
    while (i < n && strcmp(key, names[i]) != 0) i++;
    if (i == n) {
      PKI_ERR(err, PKI_ERR_INVALID, "ACME record: unknown member \"%.32s\"", key);
      return 0;
    }
  }
  return 1;
}

/* get_kid, get_account_id copy a checked string member into |out|. */
static int get_kid(json_t *obj, char out[PKID_ACME_KID_MAX + 1], pki_err *err) {
  json_t *v = json_object_get(obj, "kid");
  if (!json_is_string(v) || !valid_kid(json_string_value(v), json_string_length(v))) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME record: \"kid\" is missing or not a key id");
    return 0;
  }
  memcpy(out, json_string_value(v), json_string_length(v) + 1);
  return 1;
}

static int get_account_id(json_t *obj, char out[PKID_ACME_ACCOUNT_ID_MAX + 1], pki_err *err) {
  json_t *v = json_object_get(obj, "account");
  if (!json_is_string(v) || !valid_account_id(json_string_value(v), json_string_length(v))) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME record: \"account\" is missing or not an account id");
    return 0;
  }
  memcpy(out, json_string_value(v), json_string_length(v) + 1);
  return 1;
}

/* get_jwk reads the "jwk" member: its text (compact, sorted keys: the
 * same key always the same text) and its RFC 7638 thumbprint. */
static int get_jwk(json_t *obj, char **text, uint8_t tp[32], pki_err *err) {
  json_t *v = json_object_get(obj, "jwk");
  if (!json_is_object(v)) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME record: \"jwk\" is not a JSON object");
    return 0;
  }
  *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
  if (*text == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  EVP_PKEY *key = pki_jwk_parse(*text, strlen(*text), err);
  int ok = key != NULL && pki_jwk_thumbprint(tp, key, err);
  EVP_PKEY_free(key);
  if (!ok) {
    /* The api checked the key before journaling it: any refusal now,
     * even an unsupported type, is a record that does not apply. */
    if (err->code != PKI_ERR_EXHAUSTED) err->code = PKI_ERR_INVALID;
    pki_err_prefix(err, "ACME record: \"jwk\": ");
    free(*text);
    *text = NULL;
  }
  return ok;
}

/* get_contact reads the "contact" member (RFC 8555 7.1.2: an array of
 * URLs, each a string) as its JSON text; "[]" when absent. */
static int get_contact(json_t *obj, char **text, pki_err *err) {
  json_t *v = json_object_get(obj, "contact");
  if (v != NULL) {
    size_t i;
    json_t *e;
    int ok = json_is_array(v);
    json_array_foreach(v, i, e) ok = ok && json_is_string(e);
    if (!ok) {
      PKI_ERR(err, PKI_ERR_INVALID, "ACME record: \"contact\" is not an array of strings");
      return 0;
    }
  }
  *text = v != NULL ? json_dumps(v, JSON_COMPACT) : strdup("[]");
  if (*text == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  return 1;
}

static json_t *load_detail(const uint8_t *detail, size_t len, pki_err *err) {
  json_error_t jerr;
  /* Duplicate members refused: which one applies would be the parser's
   * choice, not the record's. */
  json_t *v = json_loadb((const char *)detail, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(v)) {
    json_decref(v);
    PKI_ERR(err, PKI_ERR_INVALID, "ACME record: the detail is not a JSON object: %s",
            v == NULL ? jerr.text : "another type");
    return NULL;
  }
  return v;
}

/* --- applying ---------------------------------------------------------------- */

static int apply_eab_created(pkid_acme_state *s, const char *service, const uint8_t *detail,
                             size_t len, int64_t time, pki_err *err) {
  if (!valid_kid((const char *)detail, len)) {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_CREATED: the detail is not a key id");
    return 0;
  }
  pkid_acme_eab e;
  memset(&e, 0, sizeof(e));
  memcpy(e.kid, detail, len);
  if (service[0] == '\0') {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_CREATED: kid %s names no service", e.kid);
    return 0;
  }
  if (find_eab(s, e.kid) != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_CREATED: kid %s made twice", e.kid);
    return 0;
  }
  e.created = time;
  e.service = strdup(service);
  if (e.service == NULL ||
      !grow((void **)&s->eabs, &s->cap_eabs, s->num_eabs, sizeof(*s->eabs))) {
    free(e.service);
    PKI_ERR_OOM(err);
    return 0;
  }
  s->eabs[s->num_eabs++] = e;
  return 1;
}

static int apply_eab_used(pkid_acme_state *s, const char *service, const uint8_t *detail,
                          size_t len, int64_t time, pki_err *err) {
  static const char *const kMembers[] = {"kid", "account", "jwk", "contact"};
  pkid_acme_account a;
  memset(&a, 0, sizeof(a));
  json_t *v = load_detail(detail, len, err);
  if (v == NULL || !only_members(v, kMembers, 4, err) || !get_kid(v, a.kid, err) ||
      !get_account_id(v, a.id, err)) {
    goto fail;
  }
  pkid_acme_eab *e = find_eab(s, a.kid);
  if (e == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_USED: unknown kid %s", a.kid);
    goto fail;
  }
  if (e->account[0] != '\0') {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_USED: kid %s already bound account %s", a.kid, e->account);
    goto fail;
  }
  if (strcmp(e->service, service) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_USED: kid %s is service %s's, not %.64s's", a.kid,
            e->service, service);
    goto fail;
  }
  if (find_account(s, a.id) != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_USED: account %s made twice", a.id);
    goto fail;
  }
  if (!get_jwk(v, &a.jwk, a.thumbprint, err) || !get_contact(v, &a.contact, err)) goto fail;
  /* RFC 8555 7.3.1: a key names one account, deactivated or not. */
  const pkid_acme_account *other = find_by_key(s, a.thumbprint);
  if (other != NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "EAB_USED: account %s's key is account %s's already", a.id,
            other->id);
    goto fail;
  }
  a.service = strdup(service);
  a.created = time;
  if (a.service == NULL ||
      !grow((void **)&s->accounts, &s->cap_accounts, s->num_accounts, sizeof(*s->accounts))) {
    PKI_ERR_OOM(err);
    goto fail;
  }
  memcpy(e->account, a.id, sizeof(a.id));
  s->accounts[s->num_accounts++] = a;
  json_decref(v);
  return 1;
fail:
  free(a.service);
  free(a.jwk);
  free(a.contact);
  json_decref(v);
  return 0;
}

static int apply_account(pkid_acme_state *s, const char *service, const uint8_t *detail,
                         size_t len, pki_err *err) {
  static const char *const kMembers[] = {"account", "jwk", "contact", "status"};
  char id[PKID_ACME_ACCOUNT_ID_MAX + 1];
  char *jwk = NULL, *contact = NULL;
  uint8_t tp[32];
  json_t *v = load_detail(detail, len, err);
  if (v == NULL || !only_members(v, kMembers, 4, err) || !get_account_id(v, id, err)) goto fail;
  pkid_acme_account *a = find_account(s, id);
  if (a == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME_ACCOUNT: no account %s", id);
    goto fail;
  }
  if (strcmp(a->service, service) != 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME_ACCOUNT: account %s is service %s's, not %.64s's", id,
            a->service, service);
    goto fail;
  }
  /* RFC 8555 7.3.6: deactivation is final; nothing changes after it. */
  if (a->deactivated) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME_ACCOUNT: account %s is deactivated", id);
    goto fail;
  }
  json_t *status = json_object_get(v, "status");
  if (status != NULL && !(json_is_string(status) &&
                          strcmp(json_string_value(status), "deactivated") == 0)) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME_ACCOUNT: \"status\" can only be \"deactivated\"");
    goto fail;
  }
  int has_jwk = json_object_get(v, "jwk") != NULL;
  int has_contact = json_object_get(v, "contact") != NULL;
  if (!has_jwk && !has_contact && status == NULL) {
    PKI_ERR(err, PKI_ERR_INVALID, "ACME_ACCOUNT: account %s: the record changes nothing", id);
    goto fail;
  }
  if (has_jwk) {
    if (!get_jwk(v, &jwk, tp, err)) goto fail;
    const pkid_acme_account *other = find_by_key(s, tp);
    if (other != NULL && other != a) {
      PKI_ERR(err, PKI_ERR_INVALID, "ACME_ACCOUNT: account %s's new key is account %s's", id,
              other->id);
      goto fail;
    }
  }
  if (has_contact && !get_contact(v, &contact, err)) goto fail;
  if (has_jwk) {
    free(a->jwk);
    a->jwk = jwk;
    memcpy(a->thumbprint, tp, 32);
  }
  if (has_contact) {
    free(a->contact);
    a->contact = contact;
  }
  if (status != NULL) a->deactivated = 1;
  json_decref(v);
  return 1;
fail:
  free(jwk);
  free(contact);
  json_decref(v);
  return 0;
}

int pkid_acme_state_apply(pkid_acme_state *s, int kind, const char *service,
                          const uint8_t *detail, size_t len, int64_t time, pki_err *err) {
  if (kind != PKI_EVENT_EAB_CREATED && kind != PKI_EVENT_EAB_USED &&
      kind != PKI_EVENT_ACME_ACCOUNT) {
    return 1;
  }
  if (service == NULL) service = "";
  if (detail == NULL) len = 0;
  /* Room for the record and its copies first: once the state has
   * changed, keeping the record cannot fail, or a snapshot would lose a
   * change the state shows. */
  applied r = {.kind = (uint8_t)kind, .service = strdup(service), .len = len, .time = time};
  r.detail = malloc(len > 0 ? len : 1);
  if (r.service == NULL || r.detail == NULL ||
      !grow((void **)&s->recs, &s->cap_recs, s->num_recs, sizeof(*s->recs))) {
    free(r.service);
    free(r.detail);
    PKI_ERR_OOM(err);
    return 0;
  }
  if (len > 0) memcpy(r.detail, detail, len);
  int ok;
  if (kind == PKI_EVENT_EAB_CREATED) {
    ok = apply_eab_created(s, service, r.detail, len, time, err);
  } else if (kind == PKI_EVENT_EAB_USED) {
    ok = apply_eab_used(s, service, r.detail, len, time, err);
  } else {
    ok = apply_account(s, service, r.detail, len, err);
  }
  if (!ok) {
    free(r.service);
    free(r.detail);
    return 0;
  }
  s->recs[s->num_recs++] = r;
  return 1;
}

int pkid_acme_state_each(const pkid_acme_state *s,
                         int (*fn)(void *ctx, int kind, const char *service,
                                   const uint8_t *detail, size_t len, int64_t time),
                         void *ctx) {
  for (size_t i = 0; i < s->num_recs; i++) {
    const applied *r = &s->recs[i];
    if (!fn(ctx, r->kind, r->service, r->detail, r->len, r->time)) return 0;
  }
  return 1;
}

/* --- EAB keys ---------------------------------------------------------------- */

void pkid_acme_eab_key(uint8_t out[PKID_ACME_EAB_KEY_LEN],
                       const uint8_t master[PKID_ACME_EAB_MASTER_LEN], const char *kid) {
  /* The label names the derivation, and the 0x00 ends it, so that no kid
   * can make the input of another derivation from the same master key. */
  static const char kLabel[] = "pkid acme eab v1"; /* its NUL is the 0x00 */
  HMAC_CTX ctx;
  unsigned len = 0;
  HMAC_CTX_init(&ctx);
  int ok = HMAC_Init_ex(&ctx, master, PKID_ACME_EAB_MASTER_LEN, EVP_sha256(), NULL) &&
           HMAC_Update(&ctx, (const uint8_t *)kLabel, sizeof(kLabel)) &&
           HMAC_Update(&ctx, (const uint8_t *)kid, strlen(kid)) && HMAC_Final(&ctx, out, &len) &&
           len == PKID_ACME_EAB_KEY_LEN;
  HMAC_CTX_cleanup(&ctx);
  /* Only an allocation can fail here, and there is no error to return: a
   * random key then, which no client holds, fails the binding closed
   * rather than leaving a key anyone could guess (zeros). */
  if (!ok) RAND_bytes(out, PKID_ACME_EAB_KEY_LEN);
}
