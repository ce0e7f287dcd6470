/* acme.c: pkid's ACME server (see acme.h). */
#include "server/acme/acme.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "lib/base64.h"
#include "lib/csr.h"
#include "lib/jws.h"
#include "lib/log.h"
#include "lib/names.h"
#include "lib/pem.h"
#include "lib/record.h"
#include "server/acme/nonces.h"
#include "server/acme/orders.h"
#include "server/acme/problem.h"
#include "server/acme/request.h"
#include "server/acme/validate.h"
#include "server/http/http.h"
#include "server/metrics/metrics.h"
#include "server/pipeline/event.h"
#include "server/pipeline/job.h"

#define BASE_MAX 300       /* "https://" and a Host of at most 255 */
#define URL_MAX 512
#define NONCE_WINDOW 65536 /* nonces outstanding: 8 KiB of bitmap */
#define MAX_VALIDATIONS 64 /* in flight at once, on libuv's pool */
#define MAX_RESERVED 256   /* new accounts waiting for their journal commit */
#define RETRY_AFTER_S 1    /* while an order or challenge is processing */
#define RENEWAL_INFO_RETRY_S 21600 /* RFC 9773 4.2: how often to ask again */

struct pkid_acme {
  pkid_acme_config cfg;
  pkid_acme_deps d;
  pkid_http_server *http;
  pkid_acme_nonces *nonces;
  pkid_acme_orders *orders;
  uv_timer_t sweep;
  int sweep_open;
  unsigned validations; /* in flight */
  /* Keys and EAB kids of new accounts not yet durable: a second request
   * for either must not race the first into the journal. */
  char reserved[MAX_RESERVED][PKID_ACME_KID_MAX + 1];
  uint8_t reserved_key[MAX_RESERVED][32];
  int reserved_used[MAX_RESERVED];
};

/* --- responses --------------------------------------------------------------------- */

/* Where a response goes: now (|req|) or after a commit (|d|), and what it
 * needs from the request. */
typedef struct acme_out {
  pkid_acme *a;
  pkid_http_req *req;
  pkid_http_deferred *d;
  const char *resource; /* the metrics' label */
  char base[BASE_MAX];  /* "https://HOST" */
} acme_out;

static int64_t now_s(void) { return (int64_t)time(NULL); }

static void rfc3339(char out[32], int64_t t) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void b64url(char *out, size_t out_size, const uint8_t *in, size_t n) {
  size_t len;
  pki_err err;
  if (!pki_base64_encode(out, out_size, &len, in, n, PKI_BASE64_URL | PKI_BASE64_NO_PAD, &err)) {
    out[0] = '\0';
  }
}

/* send answers with |status| and |body|, adding what every ACME response
 * carries: a fresh nonce (RFC 8555 6.5), the directory's Link (7.1), and
 * no caching. */
static void send_raw(acme_out *out, int status, const char *headers, const char *ctype,
                     const void *body, size_t len) {
  char nonce[PKID_ACME_NONCE_TEXT];
  char h[2048];
  pkid_acme_nonce_make(out->a->nonces, nonce);
  snprintf(h, sizeof(h),
           "Content-Type: %s\r\nReplay-Nonce: %s\r\nLink: <%s/acme/directory>;rel=\"index\"\r\n"
           "Cache-Control: no-store\r\n%s",
           ctype, nonce, out->base, headers != NULL ? headers : "");
  if (out->d != NULL) {
    pkid_http_respond_deferred(out->d, status, h, body, len);
    out->d = NULL;
  } else if (out->req != NULL) {
    pkid_http_respond(out->req, status, h, body, len);
    out->req = NULL;
  }
  pkid_metrics_acme(out->resource, status);
}

/* send_json answers with |doc| (its reference is taken). */
static void send_json(acme_out *out, int status, const char *headers, json_t *doc) {
  char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  if (text == NULL) {
    const char *oom = "{\"type\":\"urn:ietf:params:acme:error:serverInternal\"}";
    send_raw(out, 500, NULL, "application/problem+json", oom, strlen(oom));
    return;
  }
  send_raw(out, status, headers, "application/json", text, strlen(text));
  free(text);
}

/* problem_at answers with an RFC 7807 document of ACME's |type| (RFC 8555
 * 6.7) and HTTP |status| (0: the type's own; 404 for what does not exist,
 * 409 for a key change's conflict); |headers| may add Retry-After or
 * Location. */
static void problem_at(acme_out *out, int status, pkid_acme_error type, const char *headers,
                       const char *fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  size_t len = 0;
  char *doc = pkid_acme_problem(type, detail, &len);
  if (doc == NULL) {
    status = 500;
    doc = strdup("{\"type\":\"urn:ietf:params:acme:error:serverInternal\"}");
    len = doc != NULL ? strlen(doc) : 0;
  }
  send_raw(out, status != 0 ? status : pkid_acme_error_status(type), headers,
           "application/problem+json", doc != NULL ? doc : "", len);
  free(doc);
}

#define problem_h(out, type, headers, ...) problem_at((out), 0, (type), (headers), __VA_ARGS__)
#define problem(out, type, ...) problem_h((out), (type), NULL, __VA_ARGS__)

/* problem_from answers a pki_err from a lower layer with its nearest type. */
static void problem_from(acme_out *out, const pki_err *err) {
  switch (err->code) {
    case PKI_ERR_EXHAUSTED:
      problem_h(out, PKID_ACME_RATE_LIMITED, "Retry-After: 1\r\n", "%s", err->msg);
      return;
    case PKI_ERR_UNAVAILABLE:
      problem_h(out, PKID_ACME_SERVER_INTERNAL, "Retry-After: 1\r\n", "%s", err->msg);
      return;
    case PKI_ERR_INTERNAL:
    case PKI_ERR_IO:
      problem(out, PKID_ACME_SERVER_INTERNAL, "%s", err->msg);
      return;
    default:
      problem(out, PKID_ACME_MALFORMED, "%s", err->msg);
  }
}

/* defer keeps |out| for an answer after a commit; 0 (and a problem sent)
 * when memory ran out. */
static int defer(acme_out *out) {
  out->d = pkid_http_defer(out->req);
  if (out->d == NULL) {
    problem(out, PKID_ACME_SERVER_INTERNAL, "out of memory");
    out->req = NULL; /* answered: the work goes on, its answer is dropped */
    return 0;
  }
  out->req = NULL;
  return 1;
}

/* --- objects as JSON ---------------------------------------------------------------- */

static json_t *time_json(int64_t t) {
  char buf[32];
  rfc3339(buf, t);
  return json_string(buf);
}

static json_t *account_json(const acme_out *out, const pkid_acme_account *acct) {
  char orders[URL_MAX];
  snprintf(orders, sizeof(orders), "%s/acme/acct/%s/orders", out->base, acct->id);
  json_t *contact = json_loads(acct->contact, 0, NULL);
  return json_pack("{s:s, s:o, s:s, s:b, s:o}", "status",
                   acct->deactivated ? "deactivated" : "valid", "contact",
                   contact != NULL ? contact : json_array(), "orders", orders,
                   "termsOfServiceAgreed", 1, "createdAt", time_json(acct->created));
}

static json_t *problem_json(const pkid_acme_failure *p) {
  return json_pack("{s:s, s:s, s:i}", "type", pkid_acme_error_type(p->type), "detail", p->detail,
                   "status", pkid_acme_error_status(p->type));
}

static json_t *chall_json(const acme_out *out, const pkid_acme_order *ord, size_t i, int t) {
  const pkid_acme_chall *c = &ord->authz[i].chall[t];
  char url[URL_MAX];
  snprintf(url, sizeof(url), "%s/acme/chall/%s/%zu/%d", out->base, ord->id, i, t);
  json_t *doc = json_pack("{s:s, s:s, s:s, s:s}", "type", pkid_acme_chall_type_name(c->type),
                          "url", url, "token", c->token, "status",
                          pkid_acme_status_name(c->status));
  if (doc == NULL) return NULL;
  if (c->status == PKID_ACME_VALID) json_object_set_new(doc, "validated", time_json(c->validated));
  if (c->error.set) json_object_set_new(doc, "error", problem_json(&c->error));
  return doc;
}

static json_t *authz_json(const acme_out *out, const pkid_acme_order *ord, size_t i) {
  const pkid_acme_authz *a = &ord->authz[i];
  json_t *challs = json_array();
  for (int t = 0; t < PKID_ACME_NUM_CHALL_TYPES; t++) {
    /* Once one challenge is valid, the others are no longer offered
     * (RFC 8555 7.1.4: "the server... SHOULD... only the one used"). */
    if (a->status == PKID_ACME_VALID && a->chall[t].status != PKID_ACME_VALID) continue;
    json_array_append_new(challs, chall_json(out, ord, i, t));
  }
  return json_pack("{s:{s:s, s:s}, s:s, s:o, s:o}", "identifier", "type", "dns", "value", a->name,
                   "status", pkid_acme_status_name(a->status), "expires",
                   time_json(ord->created + PKID_ACME_PENDING_S), "challenges", challs);
}

static json_t *order_json(const acme_out *out, const pkid_acme_order *ord) {
  char url[URL_MAX];
  json_t *ids = json_array(), *authzs = json_array();
  for (size_t i = 0; i < ord->num_authz; i++) {
    json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", ord->authz[i].name));
    snprintf(url, sizeof(url), "%s/acme/authz/%s/%zu", out->base, ord->id, i);
    json_array_append_new(authzs, json_string(url));
  }
  snprintf(url, sizeof(url), "%s/acme/order/%s/finalize", out->base, ord->id);
  json_t *doc = json_pack("{s:s, s:o, s:o, s:o, s:s}", "status", pkid_acme_status_name(ord->status),
                          "expires", time_json(ord->expires), "identifiers", ids,
                          "authorizations", authzs, "finalize", url);
  if (doc == NULL) return NULL;
  if (ord->status == PKID_ACME_VALID) {
    snprintf(url, sizeof(url), "%s/acme/cert/%s", out->base, ord->id);
    json_object_set_new(doc, "certificate", json_string(url));
  }
  if (ord->replaces[0] != '\0') json_object_set_new(doc, "replaces", json_string(ord->replaces));
  if (ord->error.set) json_object_set_new(doc, "error", problem_json(&ord->error));
  return doc;
}

static void location(char *out, size_t size, const acme_out *o, const char *what,
                     const char *id) {
  snprintf(out, size, "Location: %s/acme/%s/%s\r\n", o->base, what, id);
}

/* --- the request: JWS, nonce, url, key --------------------------------------------- */

typedef struct acme_req {
  acme_out out;
  const char *rest; /* the path after "/acme/", query cut */
  size_t rest_len;
  pki_jws jws;
  const pkid_acme_account *acct; /* a "kid" request's account */
  EVP_PKEY *key;                 /* the key that signed (jws.jwk or the account's) */
  uint8_t thumbprint[32];
  char url[URL_MAX];
} acme_req;

static int path_is(const acme_req *r, const char *s) {
  return r->rest_len == strlen(s) && memcmp(r->rest, s, r->rest_len) == 0;
}

/* path_id matches "PREFIX/ID[/TAIL]": |id| gets ID; |tail| what follows
 * the next '/', or "" (NULL |tail|: there must be none). */
static int path_id(const acme_req *r, const char *prefix, char *id, size_t id_size,
                   const char **tail) {
  size_t p = strlen(prefix);
  if (r->rest_len <= p || memcmp(r->rest, prefix, p) != 0) return 0;
  const char *s = r->rest + p, *end = r->rest + r->rest_len;
  const char *slash = memchr(s, '/', (size_t)(end - s));
  size_t n = (size_t)((slash != NULL ? slash : end) - s);
  if (n == 0 || n >= id_size) return 0;
  memcpy(id, s, n);
  id[n] = '\0';
  if (slash == NULL) {
    if (tail != NULL) *tail = "";
    return 1;
  }
  if (tail == NULL) return 0;
  *tail = slash + 1;
  return 1;
}

static const pki_catalog *catalog(const pkid_acme *a) { return *a->d.cat; }

/* begin fills |r| from the HTTP request: its base URL and resource path. */
static int begin(pkid_acme *a, pkid_http_req *req, acme_req *r, const char *resource) {
  memset(r, 0, sizeof(*r));
  r->out.a = a;
  r->out.req = req;
  r->out.resource = resource;
  snprintf(r->out.base, sizeof(r->out.base), "https://%s", req->host);
  const char *q = memchr(req->path, '?', req->path_len);
  size_t len = q != NULL ? (size_t)(q - req->path) : req->path_len;
  r->rest = req->path + 6; /* "/acme/" is the route */
  r->rest_len = len >= 6 ? len - 6 : 0;
  /* The Host goes into every URL pkid answers: a name, an address, a
   * port, nothing that could end a header or a JSON string. */
  if (req->host[0] == '\0' ||
      strspn(req->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") !=
          strlen(req->host)) {
    snprintf(r->out.base, sizeof(r->out.base), "https://invalid");
    problem(&r->out, PKID_ACME_MALFORMED, "the request has no Host header, or a bad one");
    return 0;
  }
  snprintf(r->url, sizeof(r->url), "%s%.*s", r->out.base, (int)len, req->path);
  return 1;
}

static void end(acme_req *r) {
  pki_jws_cleanup(&r->jws);
  EVP_PKEY_free(r->key);
}

/* account_key parses an account's stored JWK. */
static EVP_PKEY *account_key(const pkid_acme_account *acct, pki_err *err) {
  return pki_jwk_parse(acct->jwk, strlen(acct->jwk), err);
}

/* verify checks a POST's JWS: RFC 8555 6.2 (the signature), 6.4 (the
 * URL), 6.5 (the nonce), with a "jwk" only where |jwk_ok| (new-account,
 * revoke-cert), otherwise a "kid" naming a valid account. */
static int verify(acme_req *r, const pkid_http_req *req, int jwk_ok) {
  pkid_acme *a = r->out.a;
  pki_err err;
  if (strncmp(req->content_type, "application/jose+json", 21) != 0) {
    problem_h(&r->out, PKID_ACME_MALFORMED, "", "Content-Type must be application/jose+json");
    return 0;
  }
  if (!pki_jws_parse(&r->jws, req->body, req->body_len, &err)) {
    problem(&r->out,
            err.code == PKI_ERR_UNSUPPORTED ? PKID_ACME_BAD_SIGNATURE_ALGORITHM
                                            : PKID_ACME_MALFORMED,
            "%s", err.msg);
    return 0;
  }
  if (r->jws.alg == PKI_JWS_HS256) {
    problem(&r->out, PKID_ACME_BAD_SIGNATURE_ALGORITHM,
            "a request is signed with ES256, ES384, RS256 or EdDSA, not a MAC");
    return 0;
  }
  /* The nonce first: a request refused for anything else still used it,
   * and a replay is told so whatever else is wrong with it. */
  if (r->jws.nonce == NULL ||
      !pkid_acme_nonce_use(a->nonces, r->jws.nonce, strlen(r->jws.nonce))) {
    problem(&r->out, PKID_ACME_BAD_NONCE, "the nonce is missing, used, or not one pkid gave");
    return 0;
  }
  if (r->jws.url == NULL || strcmp(r->jws.url, r->url) != 0) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "the JWS's url is not the URL requested (%s)",
            r->url);
    return 0;
  }
  if (r->jws.jwk != NULL) {
    if (!jwk_ok) {
      problem(&r->out, PKID_ACME_MALFORMED, "this resource takes a \"kid\", not a \"jwk\"");
      return 0;
    }
    r->key = r->jws.jwk;
    EVP_PKEY_up_ref(r->key);
  } else {
    char prefix[BASE_MAX + 16];
    snprintf(prefix, sizeof(prefix), "%s/acme/acct/", r->out.base);
    size_t p = strlen(prefix);
    if (strncmp(r->jws.kid, prefix, p) != 0 ||
        (r->acct = pkid_acme_state_account(pkid_store_acme(a->d.store), r->jws.kid + p)) ==
            NULL) {
      problem(&r->out, PKID_ACME_ACCOUNT_DOES_NOT_EXIST, "no account %s", r->jws.kid);
      return 0;
    }
    if (r->acct->deactivated) {
      problem(&r->out, PKID_ACME_UNAUTHORIZED, "the account is deactivated");
      return 0;
    }
    if ((r->key = account_key(r->acct, &err)) == NULL) {
      problem(&r->out, PKID_ACME_SERVER_INTERNAL, "the account's key: %s", err.msg);
      return 0;
    }
  }
  if (!pki_jws_verify(&r->jws, r->key, &err)) {
    problem(&r->out,
            err.code == PKI_ERR_UNSUPPORTED ? PKID_ACME_BAD_SIGNATURE_ALGORITHM
                                            : PKID_ACME_MALFORMED,
            "the JWS does not verify: %s", err.msg);
    return 0;
  }
  if (!pki_jwk_thumbprint(r->thumbprint, r->key, &err)) {
    problem(&r->out, PKID_ACME_BAD_PUBLIC_KEY, "%s", err.msg);
    return 0;
  }
  return 1;
}

/* --- journaling ---------------------------------------------------------------------
 *
 * An account change is answered once its EVENT is durable: the answer
 * waits (pkid_http_defer) for the commit, then the state takes the record
 * (store/acme_state.h), as a replay would. */

typedef struct journaled {
  acme_out out;
  int kind;
  char service[256];
  char *detail;
  int64_t time;
  int reserved; /* the reservation slot of a new account, or -1 */
  int status;   /* the answer's HTTP status */
  char account[PKID_ACME_ACCOUNT_ID_MAX + 1];
} journaled;

static void unreserve(pkid_acme *a, int slot) {
  if (slot >= 0) a->reserved_used[slot] = 0;
}

static void on_journaled(void *ctx, int ok, const pki_err *err) {
  journaled *j = ctx;
  pkid_acme *a = j->out.a;
  pki_err aerr;
  unreserve(a, j->reserved);
  pkid_acme_state *st = pkid_store_acme(a->d.store);
  if (ok && !pkid_acme_state_apply(st, j->kind, j->service, (const uint8_t *)j->detail,
                                   strlen(j->detail), j->time, &aerr)) {
    /* Checked before it was journaled, on this thread: cannot happen. */
    pki_log("error", "acme_state_refused", "reason", aerr.msg, NULL);
    ok = 0;
    err = &aerr;
  }
  const pkid_acme_account *acct = pkid_acme_state_account(st, j->account);
  if (!ok || acct == NULL) {
    problem_from(&j->out, err);
  } else {
    char loc[URL_MAX + 16];
    location(loc, sizeof(loc), &j->out, "acct", acct->id);
    send_json(&j->out, j->status, loc, account_json(&j->out, acct));
  }
  free(j->detail);
  free(j);
}

/* journal submits an ACME EVENT and answers |r| when it is durable with
 * the account |account| (|status|). |detail| is taken. */
static void journal(acme_req *r, int kind, const char *service, const char *account,
                    char *detail, int reserved, int status) {
  pkid_acme *a = r->out.a;
  pki_err err;
  journaled *j = calloc(1, sizeof(*j));
  if (j == NULL || detail == NULL) {
    free(j);
    free(detail);
    unreserve(a, reserved);
    problem(&r->out, PKID_ACME_SERVER_INTERNAL, "out of memory");
    return;
  }
  j->kind = kind;
  snprintf(j->service, sizeof(j->service), "%s", service);
  snprintf(j->account, sizeof(j->account), "%s", account);
  j->detail = detail;
  j->time = now_s();
  j->reserved = reserved;
  j->status = status;
  char who[64];
  snprintf(who, sizeof(who), "acme:%s", account);
  pkid_event ev = {
      .kind = (pki_event_kind)kind,
      .outcome = PKI_OUTCOME_OK,
      .identity = who,
      .service = service,
      .first = j->time,
      .detail = detail,
  };
  if (strlen(detail) >= PKID_EVENT_DETAIL_MAX) {
    PKI_ERR(&err, PKI_ERR_INVALID, "the account's record is too long to journal");
    goto fail;
  }
  if (!pkid_event_submit(a->d.workers, &ev, on_journaled, j, &err)) goto fail;
  j->out = r->out;
  defer(&j->out); /* failing, it answered; the event goes on */
  r->out.req = NULL;
  return;
fail:
  unreserve(a, reserved);
  free(j->detail);
  free(j);
  problem_from(&r->out, &err);
}

/* jwk_json is |key|'s public JWK as the account record keeps it: RFC
 * 7638's members, the same text its thumbprint hashes (lib/jws.h). NULL
 * when it cannot be written. */
static json_t *jwk_json(const EVP_PKEY *key) {
  char buf[PKI_JWK_JSON_MAX];
  size_t len;
  pki_err err;
  return pki_jwk_json(buf, sizeof(buf), &len, key, &err) ? json_loadb(buf, len, 0, NULL) : NULL;
}

/* reserve holds |kid| and |thumbprint| for a new account until its
 * commit; -1 when either is held already or there is no room. */
static int reserve(pkid_acme *a, const char *kid, const uint8_t thumbprint[32]) {
  int slot = -1;
  for (int i = 0; i < MAX_RESERVED; i++) {
    if (!a->reserved_used[i]) {
      if (slot < 0) slot = i;
      continue;
    }
    if (strcmp(a->reserved[i], kid) == 0 || memcmp(a->reserved_key[i], thumbprint, 32) == 0) {
      return -1;
    }
  }
  if (slot < 0) return -1;
  a->reserved_used[slot] = 1;
  snprintf(a->reserved[slot], sizeof(a->reserved[slot]), "%s", kid);
  memcpy(a->reserved_key[slot], thumbprint, 32);
  return slot;
}

/* --- accounts ----------------------------------------------------------------------- */

/* check_eab verifies an External Account Binding (RFC 8555 7.3.4): an
 * HS256 JWS by a key pkid made, over the account's own key, for this URL.
 * Returns the binding, or NULL with a problem sent. */
static const pkid_acme_eab *check_eab(acme_req *r, const char *eab_text) {
  pkid_acme *a = r->out.a;
  pki_err err;
  pki_jws eab;
  const pkid_acme_eab *binding = NULL;
  memset(&eab, 0, sizeof(eab));
  if (!pki_jws_parse(&eab, (const uint8_t *)eab_text, strlen(eab_text), &err)) {
    problem(&r->out, PKID_ACME_MALFORMED, "externalAccountBinding: %s", err.msg);
    goto out;
  }
  if (eab.alg != PKI_JWS_HS256 || eab.kid == NULL) {
    problem(&r->out, PKID_ACME_BAD_SIGNATURE_ALGORITHM,
            "externalAccountBinding must be an HS256 JWS with a \"kid\"");
    goto out;
  }
  if (eab.nonce != NULL) {
    problem(&r->out, PKID_ACME_MALFORMED, "externalAccountBinding must not have a nonce");
    goto out;
  }
  if (eab.url == NULL || strcmp(eab.url, r->url) != 0) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "externalAccountBinding's url is not %s", r->url);
    goto out;
  }
  const pkid_acme_eab *b = pkid_acme_state_eab(pkid_store_acme(a->d.store), eab.kid);
  if (b == NULL) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "no external account key \"%.64s\"", eab.kid);
    goto out;
  }
  uint8_t key[PKID_ACME_EAB_KEY_LEN];
  pkid_acme_eab_key(key, a->d.eab_master, b->kid);
  int mac_ok = pki_jws_verify_mac(&eab, key, sizeof(key), &err);
  OPENSSL_cleanse(key, sizeof(key));
  if (!mac_ok) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "externalAccountBinding's MAC does not verify");
    goto out;
  }
  EVP_PKEY *bound = pki_jwk_parse((const char *)eab.payload, eab.payload_len, &err);
  uint8_t tp[32];
  int same = bound != NULL && pki_jwk_thumbprint(tp, bound, &err) &&
             CRYPTO_memcmp(tp, r->thumbprint, 32) == 0;
  EVP_PKEY_free(bound);
  if (!same) {
    problem(&r->out, PKID_ACME_MALFORMED,
            "externalAccountBinding's payload is not the account's key");
    goto out;
  }
  if (b->account[0] != '\0') {
    problem(&r->out, PKID_ACME_UNAUTHORIZED,
            "the external account key \"%s\" is bound to an account already", b->kid);
    goto out;
  }
  binding = b;
out:
  pki_jws_cleanup(&eab);
  return binding;
}

static void new_account(acme_req *r) {
  pkid_acme *a = r->out.a;
  pkid_acme_state *st = pkid_store_acme(a->d.store);
  pkid_acme_account_req req;
  pkid_acme_error type;
  pki_err err;
  if (r->jws.jwk == NULL) {
    problem(&r->out, PKID_ACME_MALFORMED, "newAccount carries the account's key as a \"jwk\"");
    return;
  }
  if (!pkid_acme_parse_account(&req, r->jws.payload, r->jws.payload_len, &type, &err)) {
    problem(&r->out, type, "%s", err.msg);
    return;
  }
  const pkid_acme_account *acct = pkid_acme_state_account_by_key(st, r->thumbprint);
  if (acct != NULL) {
    /* The key has an account: its URL, whatever else was asked (7.3.1). */
    char loc[URL_MAX + 16];
    location(loc, sizeof(loc), &r->out, "acct", acct->id);
    if (acct->deactivated) {
      problem_h(&r->out, PKID_ACME_UNAUTHORIZED, loc, "the account is deactivated");
    } else {
      send_json(&r->out, 200, loc, account_json(&r->out, acct));
    }
    goto out;
  }
  if (req.only_existing) {
    problem(&r->out, PKID_ACME_ACCOUNT_DOES_NOT_EXIST, "no account has this key");
    goto out;
  }
  if (req.eab == NULL) {
    problem(&r->out, PKID_ACME_EXTERNAL_ACCOUNT_REQUIRED,
            "pkid binds each account to a catalogue service: make an external account key "
            "with 'pkictl acme eab create --service NAME'");
    goto out;
  }
  const pkid_acme_eab *eab = check_eab(r, req.eab);
  if (eab == NULL) goto out;
  if (pki_catalog_find_service(catalog(a), eab->service) == NULL) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "the key's service '%s' is no longer in the catalogue",
            eab->service);
    goto out;
  }
  int slot = reserve(a, eab->kid, r->thumbprint);
  if (slot < 0) {
    problem_h(&r->out, PKID_ACME_RATE_LIMITED, "Retry-After: 1\r\n",
              "an account for this key or external account key is being made");
    goto out;
  }
  uint8_t raw[16];
  char id[PKID_ACME_ID_TEXT];
  RAND_bytes(raw, sizeof(raw));
  b64url(id, sizeof(id), raw, sizeof(raw));
  json_t *detail = json_pack("{s:s, s:s, s:o, s:o}", "kid", eab->kid, "account", id, "jwk",
                             jwk_json(r->key), "contact",
                             req.contact != NULL ? json_loads(req.contact, 0, NULL) : json_array());
  char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(detail);
  char service[256];
  snprintf(service, sizeof(service), "%s", eab->service);
  journal(r, PKI_EVENT_EAB_USED, service, id, text, slot, 201);
out:
  pkid_acme_account_req_cleanup(&req);
}

/* own checks the request's account is |id|'s. */
static int own(acme_req *r, const char *id) {
  if (r->acct != NULL && strcmp(r->acct->id, id) == 0) return 1;
  problem(&r->out, PKID_ACME_UNAUTHORIZED, "this is not the signer's account");
  return 0;
}

static void account_change(acme_req *r, const char *member, json_t *value) {
  json_t *detail = json_pack("{s:s, s:o}", "account", r->acct->id, member, value);
  char *text = detail != NULL ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(detail);
  journal(r, PKI_EVENT_ACME_ACCOUNT, r->acct->service, r->acct->id, text, -1, 200);
}

typedef struct order_list {
  const acme_out *out;
  json_t *urls;
} order_list;

static void add_order_url(void *ctx, const pkid_acme_order *ord) {
  order_list *l = ctx;
  char url[URL_MAX];
  snprintf(url, sizeof(url), "%s/acme/order/%s", l->out->base, ord->id);
  json_array_append_new(l->urls, json_string(url));
}

static void account(acme_req *r, const char *id, const char *tail) {
  pkid_acme *a = r->out.a;
  if (!own(r, id)) return;
  if (strcmp(tail, "orders") == 0) {
    /* 7.1.2.1: the account's orders pkid still holds. */
    order_list l = {&r->out, json_array()};
    pkid_acme_orders_each(a->orders, id, now_s(), add_order_url, &l);
    send_json(&r->out, 200, NULL, json_pack("{s:o}", "orders", l.urls));
    return;
  }
  if (tail[0] != '\0') {
    problem(&r->out, PKID_ACME_MALFORMED, "no such resource");
    return;
  }
  if (pkid_acme_post_as_get(r->jws.payload_len)) {
    char loc[URL_MAX + 16];
    location(loc, sizeof(loc), &r->out, "acct", id);
    send_json(&r->out, 200, loc, account_json(&r->out, r->acct));
    return;
  }
  pkid_acme_account_req req;
  pkid_acme_error type;
  pki_err err;
  if (!pkid_acme_parse_account(&req, r->jws.payload, r->jws.payload_len, &type, &err)) {
    problem(&r->out, type, "%s", err.msg);
    return;
  }
  if (req.deactivate) {
    account_change(r, "status", json_string("deactivated"));
  } else if (req.contact != NULL) {
    account_change(r, "contact", json_loads(req.contact, 0, NULL));
  } else {
    send_json(&r->out, 200, NULL, account_json(&r->out, r->acct));
  }
  pkid_acme_account_req_cleanup(&req);
}

/* key_change replaces the account's key (RFC 8555 7.3.5): the inner JWS,
 * signed by the new key, names the account and its old key. */
static void key_change(acme_req *r) {
  pkid_acme *a = r->out.a;
  pki_err err;
  pki_jws inner;
  char *acct_url = NULL, *old_key = NULL;
  pkid_acme_error type;
  memset(&inner, 0, sizeof(inner));
  if (r->acct == NULL) {
    problem(&r->out, PKID_ACME_MALFORMED, "keyChange is signed by the account's key (a kid)");
    return;
  }
  if (!pki_jws_parse(&inner, r->jws.payload, r->jws.payload_len, &err)) {
    problem(&r->out,
            err.code == PKI_ERR_UNSUPPORTED ? PKID_ACME_BAD_SIGNATURE_ALGORITHM
                                            : PKID_ACME_MALFORMED,
            "the inner JWS: %s", err.msg);
    goto out;
  }
  if (inner.jwk == NULL || inner.nonce != NULL || inner.url == NULL ||
      strcmp(inner.url, r->url) != 0) {
    problem(&r->out, PKID_ACME_MALFORMED,
            "the inner JWS needs a \"jwk\", this URL, and no nonce (RFC 8555 7.3.5)");
    goto out;
  }
  if (!pki_jws_verify(&inner, inner.jwk, &err)) {
    problem(&r->out, PKID_ACME_MALFORMED, "the inner JWS does not verify: %s", err.msg);
    goto out;
  }
  if (!pkid_acme_parse_key_change(&acct_url, &old_key, inner.payload, inner.payload_len, &type,
                                  &err)) {
    problem(&r->out, type, "%s", err.msg);
    goto out;
  }
  EVP_PKEY *old = pki_jwk_parse(old_key, strlen(old_key), &err);
  uint8_t old_tp[32], new_tp[32];
  int old_ok = old != NULL && pki_jwk_thumbprint(old_tp, old, &err) &&
               memcmp(old_tp, r->thumbprint, 32) == 0;
  EVP_PKEY_free(old);
  if (strcmp(acct_url, r->jws.kid) != 0 || !old_ok) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED,
            "the inner JWS's account and oldKey must be the signer's");
    goto out;
  }
  if (!pki_jwk_thumbprint(new_tp, inner.jwk, &err)) {
    problem(&r->out, PKID_ACME_BAD_PUBLIC_KEY, "%s", err.msg);
    goto out;
  }
  const pkid_acme_account *other =
      pkid_acme_state_account_by_key(pkid_store_acme(a->d.store), new_tp);
  if (other != NULL) {
    char loc[URL_MAX + 16];
    location(loc, sizeof(loc), &r->out, "acct", other->id);
    /* 7.3.5: 409 Conflict with the other account's URL. */
    problem_at(&r->out, 409, PKID_ACME_MALFORMED, loc, "the new key has an account already");
    goto out;
  }
  account_change(r, "jwk", jwk_json(inner.jwk));
out:
  free(acct_url);
  free(old_key);
  pki_jws_cleanup(&inner);
}

/* --- orders ------------------------------------------------------------------------- */

static int service_has_dns(const pki_catalog_service *svc, const char *name) {
  for (size_t i = 0; i < svc->num_names; i++) {
    if (svc->names[i].type == PKI_NAME_DNS && strcasecmp(svc->names[i].value, name) == 0) {
      return 1;
    }
  }
  return 0;
}

static void send_order(acme_out *out, int status, const pkid_acme_order *ord) {
  char h[URL_MAX + 64];
  location(h, sizeof(h), out, "order", ord->id);
  if (ord->status == PKID_ACME_PROCESSING) {
    size_t n = strlen(h);
    snprintf(h + n, sizeof(h) - n, "Retry-After: %d\r\n", RETRY_AFTER_S);
  }
  send_json(out, status, h, order_json(out, ord));
}

static void new_order(acme_req *r) {
  pkid_acme *a = r->out.a;
  pkid_acme_order_req req;
  pkid_acme_error type;
  pki_err err;
  if (r->acct == NULL) {
    problem(&r->out, PKID_ACME_MALFORMED, "newOrder is signed by an account's key (a kid)");
    return;
  }
  if (!pkid_acme_parse_order(&req, r->jws.payload, r->jws.payload_len, &type, &err)) {
    problem(&r->out, type, "%s", err.msg);
    return;
  }
  const pki_catalog_service *svc = pki_catalog_find_service(catalog(a), r->acct->service);
  if (svc == NULL) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "the account's service '%s' is not in the catalogue",
            r->acct->service);
    return;
  }
  for (size_t i = 0; i < req.num_names; i++) {
    if (!service_has_dns(svc, req.names[i])) {
      problem(&r->out, PKID_ACME_REJECTED_IDENTIFIER,
              "%s is not a name of service '%s' in the catalogue", req.names[i], svc->name);
      return;
    }
  }
  pkid_acme_order *ord = pkid_acme_order_new(a->orders, r->acct->id, svc->name, &req, now_s(), &err);
  if (ord == NULL) {
    if (err.code == PKI_ERR_EXHAUSTED) pkid_metrics_limited("acme_orders");
    problem_h(&r->out, PKID_ACME_RATE_LIMITED, "Retry-After: 60\r\n", "%s", err.msg);
    return;
  }
  send_order(&r->out, 201, ord);
}

/* find_order finds the signer's order |id|, or answers 404. */
static pkid_acme_order *find_order(acme_req *r, const char *id) {
  pkid_acme_order *ord = pkid_acme_order_find(r->out.a->orders, id, strlen(id), now_s());
  if (ord == NULL || r->acct == NULL || strcmp(ord->account, r->acct->id) != 0) {
    /* Someone else's order is as good as none, to the asker. */
    problem_at(&r->out, 404, PKID_ACME_MALFORMED, NULL,
               "no such order (orders live an hour, and not across a restart)");
    return NULL;
  }
  return ord;
}

/* --- challenges --------------------------------------------------------------------- */

typedef struct validation {
  uv_work_t work;
  pkid_acme *a;
  char order[PKID_ACME_ID_TEXT];
  size_t authz;
  int type;
  char name[PKID_ACME_MAX_NAME + 1];
  char token[PKID_ACME_TOKEN_TEXT];
  char key_authorization[PKID_ACME_TOKEN_TEXT + 64];
  char mapped[64]; /* test mode's address for the name, "" if none */
  unsigned port, timeout_ms, attempts;
  int ok;
  pki_err err;
  char where[80];
} validation;

/* resolve finds the name's address: test mode's map, else the system
 * resolver (the first address it gives). */
static int resolve(validation *v, char *out, size_t out_size, pki_err *err) {
  if (v->mapped[0] != '\0') {
    snprintf(out, out_size, strchr(v->mapped, ':') != NULL ? "[%s]:%u" : "%s:%u", v->mapped,
             v->port);
    return 1;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(v->name, NULL, &hints, &res);
  if (rc != 0 || res == NULL) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "%s does not resolve: %s", v->name, gai_strerror(rc));
    return 0;
  }
  char ip[INET6_ADDRSTRLEN] = "";
  if (res->ai_family == AF_INET) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
    snprintf(out, out_size, "%s:%u", ip, v->port);
  } else {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip, sizeof(ip));
    snprintf(out, out_size, "[%s]:%u", ip, v->port);
  }
  freeaddrinfo(res);
  return 1;
}

/* run_validation: libuv's pool. A connection that fails is tried again
 * after a second (a client may be a moment late to listen); a wrong answer
 * is final. */
static void run_validation(uv_work_t *w) {
  validation *v = w->data;
  for (unsigned i = 0; i < v->attempts; i++) {
    if (i > 0) sleep(1);
    pki_err_clear(&v->err);
    if (!resolve(v, v->where, sizeof(v->where), &v->err)) continue;
    v->ok = v->type == PKID_ACME_HTTP_01
                ? pkid_acme_http01(v->name, v->where, v->token, v->key_authorization,
                                   v->timeout_ms, &v->err)
                : pkid_acme_tls_alpn01(v->name, v->where, v->key_authorization, v->timeout_ms,
                                       &v->err);
    if (v->ok || v->err.code != PKI_ERR_UNAVAILABLE) return;
  }
}

static void order_failed(pkid_acme *a, const pkid_acme_order *ord);

static void on_validated(uv_work_t *w, int status) {
  validation *v = w->data;
  pkid_acme *a = v->a;
  a->validations--;
  int64_t now = now_s();
  pkid_acme_order *ord = pkid_acme_order_find(a->orders, v->order, strlen(v->order), now);
  if (status == 0 && ord != NULL && v->authz < ord->num_authz) {
    pkid_acme_authz *az = &ord->authz[v->authz];
    pkid_acme_chall *c = &az->chall[v->type];
    if (v->ok) {
      c->status = PKID_ACME_VALID;
      c->validated = now;
      az->status = PKID_ACME_VALID;
    } else {
      c->status = PKID_ACME_INVALID;
      c->error.set = 1;
      c->error.type = v->err.code == PKI_ERR_UNAVAILABLE ? PKID_ACME_CONNECTION
                      : v->err.code == PKI_ERR_INVALID   ? PKID_ACME_TLS
                                                         : PKID_ACME_INCORRECT_RESPONSE;
      snprintf(c->error.detail, sizeof(c->error.detail), "%s at %s: %s",
               pkid_acme_chall_type_name(c->type), v->where, v->err.msg);
      az->status = PKID_ACME_INVALID;
    }
    pki_log(v->ok ? "info" : "warn", "acme_challenge", "order", ord->id, "name", az->name,
            "type", pkid_acme_chall_type_name(c->type), "result", v->ok ? "valid" : "invalid",
            "reason", v->ok ? "" : c->error.detail, NULL);
    pkid_acme_order_update(a->orders, ord);
    if (ord->status == PKID_ACME_INVALID) order_failed(a, ord);
  }
  free(v);
}

/* validate starts a challenge's check; 0 when too many run already. */
static int validate(pkid_acme *a, pkid_acme_order *ord, size_t i, int t,
                    const uint8_t thumbprint[32]) {
  if (a->validations >= MAX_VALIDATIONS) return 0;
  validation *v = calloc(1, sizeof(*v));
  if (v == NULL) return 0;
  v->a = a;
  memcpy(v->order, ord->id, sizeof(v->order));
  v->authz = i;
  v->type = t;
  memcpy(v->name, ord->authz[i].name, sizeof(v->name));
  memcpy(v->token, ord->authz[i].chall[t].token, sizeof(v->token));
  /* The key authorization: token || '.' || the account key's thumbprint
   * (RFC 8555 8.1). */
  char tp[64];
  b64url(tp, sizeof(tp), thumbprint, 32);
  snprintf(v->key_authorization, sizeof(v->key_authorization), "%s.%s", v->token, tp);
  v->port = t == PKID_ACME_HTTP_01 ? a->cfg.http_port : a->cfg.tls_port;
  v->timeout_ms = a->cfg.validate_timeout_ms;
  v->attempts = a->cfg.validate_attempts;
  size_t n = strlen(v->name);
  for (size_t k = 0; k < a->cfg.num_resolve; k++) {
    const char *e = a->cfg.resolve[k];
    if (strncasecmp(e, v->name, n) == 0 && e[n] == '=') {
      snprintf(v->mapped, sizeof(v->mapped), "%s", e + n + 1);
    }
  }
  v->work.data = v;
  if (uv_queue_work(a->d.loop, &v->work, run_validation, on_validated) != 0) {
    free(v);
    return 0;
  }
  a->validations++;
  return 1;
}

static void challenge(acme_req *r, const char *id, const char *tail) {
  pkid_acme *a = r->out.a;
  unsigned long i, t;
  char *e1, *e2;
  i = strtoul(tail, &e1, 10);
  if (*e1 != '/' || (t = strtoul(e1 + 1, &e2, 10), *e2 != '\0') || e1 == tail) {
    problem(&r->out, PKID_ACME_MALFORMED, "no such challenge");
    return;
  }
  pkid_acme_order *ord = find_order(r, id);
  if (ord == NULL) return;
  if (i >= ord->num_authz || t >= PKID_ACME_NUM_CHALL_TYPES) {
    problem(&r->out, PKID_ACME_MALFORMED, "no such challenge");
    return;
  }
  pkid_acme_authz *az = &ord->authz[i];
  pkid_acme_chall *c = &az->chall[t];
  /* A POST of {} asks for validation (7.5.1); POST-as-GET only reads. */
  if (!pkid_acme_post_as_get(r->jws.payload_len) && c->status == PKID_ACME_PENDING &&
      az->status == PKID_ACME_PENDING) {
    json_t *doc = json_loadb((const char *)r->jws.payload, r->jws.payload_len, 0, NULL);
    int is_object = json_is_object(doc);
    json_decref(doc);
    if (!is_object) {
      problem(&r->out, PKID_ACME_MALFORMED, "a challenge's response is a JSON object, {}");
      return;
    }
    if (!validate(a, ord, i, (int)t, r->thumbprint)) {
      pkid_metrics_limited("acme_validations");
      problem_h(&r->out, PKID_ACME_RATE_LIMITED, "Retry-After: 1\r\n",
                "too many validations in progress");
      return;
    }
    c->status = PKID_ACME_PROCESSING;
  }
  char h[URL_MAX + 64];
  snprintf(h, sizeof(h), "Link: <%s/acme/authz/%s/%lu>;rel=\"up\"\r\n%s", r->out.base, ord->id, i,
           c->status == PKID_ACME_PROCESSING ? "Retry-After: 1\r\n" : "");
  send_json(&r->out, 200, h, chall_json(&r->out, ord, i, (int)t));
}

static void authorization(acme_req *r, const char *id, const char *tail) {
  char *end;
  unsigned long i = strtoul(tail, &end, 10);
  pkid_acme_order *ord;
  if (*end != '\0' || end == tail) {
    problem(&r->out, PKID_ACME_MALFORMED, "no such authorization");
    return;
  }
  if ((ord = find_order(r, id)) == NULL) return;
  if (i >= ord->num_authz) {
    problem(&r->out, PKID_ACME_MALFORMED, "no such authorization");
    return;
  }
  if (!pkid_acme_post_as_get(r->jws.payload_len)) {
    /* 7.5.2: a client may deactivate an authorization it holds. */
    json_t *doc = json_loadb((const char *)r->jws.payload, r->jws.payload_len, 0, NULL);
    const char *st = json_string_value(json_object_get(doc, "status"));
    int deactivate = st != NULL && strcmp(st, "deactivated") == 0;
    json_decref(doc);
    if (!deactivate) {
      problem(&r->out, PKID_ACME_MALFORMED, "an authorization may only become \"deactivated\"");
      return;
    }
    ord->authz[i].status = PKID_ACME_DEACTIVATED;
    pkid_acme_order_update(r->out.a->orders, ord);
  }
  send_json(&r->out, 200, NULL, authz_json(&r->out, ord, i));
}

/* --- finalize ----------------------------------------------------------------------- */

typedef struct finalizing {
  pkid_job job;
  acme_out out;
  char order[PKID_ACME_ID_TEXT];
} finalizing;

/* chain_pem is the certificate and its CA's chain, PEM (RFC 8555 7.4.2:
 * application/pem-certificate-chain, the end entity first). */
static char *chain_pem(const pkid_job *job, size_t *len) {
  const pkid_ca *ca = job->rec.ca;
  char *text = NULL;
  size_t text_len = 0;
  pki_err err;
  for (size_t i = 0; i <= ca->num_chain; i++) {
    const uint8_t *der = i == 0 ? job->cert : ca->chain[i - 1];
    size_t der_len = i == 0 ? job->rec.cert_len : ca->chain_len[i - 1];
    if (!pki_pem_append(&text, &text_len, "CERTIFICATE", der, der_len, &err)) {
      free(text);
      return NULL;
    }
  }
  *len = text_len;
  return text;
}

static void order_failed(pkid_acme *a, const pkid_acme_order *ord) {
  /* The order's outcome, for the audit trail: why it failed. */
  char who[64], detail[512];
  snprintf(who, sizeof(who), "acme:%s", ord->account);
  snprintf(detail, sizeof(detail), "acme order %s invalid: %s: %s", ord->id,
           pkid_acme_error_type(ord->error.type), ord->error.detail);
  pkid_event ev = {
      .kind = PKI_EVENT_REFUSED,
      .outcome = PKI_OUTCOME_REFUSED,
      .identity = who,
      .service = ord->service,
      .detail = detail,
  };
  pki_err err;
  if (!pkid_event_submit(a->d.workers, &ev, NULL, NULL, &err)) {
    pki_log("error", "event_not_journaled", "identity", who, "detail", detail, "error", err.msg,
            NULL);
  }
}

static void on_finalized(pkid_job *job) {
  finalizing *f = (finalizing *)((char *)job - offsetof(finalizing, job));
  pkid_acme *a = f->out.a;
  int64_t now = now_s();
  pkid_acme_order *ord = pkid_acme_order_find(a->orders, f->order, strlen(f->order), now);
  if (job->ok) {
    pkid_job_apply(job, a->d.store);
    pkid_counter_add(pkid_m.issued, 1);
  }
  if (ord == NULL) {
    problem(&f->out, PKID_ACME_SERVER_INTERNAL, "the order is gone");
  } else if (job->ok) {
    size_t len = 0;
    char *pem = chain_pem(job, &len);
    ord->serial = job->rec.serial;
    if (pem != NULL) {
      pkid_acme_order_finish(a->orders, ord, pem, len, NULL, now);
      send_order(&f->out, 200, ord);
    } else {
      ord->status = PKID_ACME_READY;
      problem(&f->out, PKID_ACME_SERVER_INTERNAL, "out of memory");
    }
  } else if (job->err.code == PKI_ERR_EXHAUSTED || job->err.code == PKI_ERR_UNAVAILABLE ||
             job->err.code == PKI_ERR_IO || job->err.code == PKI_ERR_INTERNAL) {
    /* pkid could not, this time: the order stays ready for another try. */
    ord->status = PKID_ACME_READY;
    problem_from(&f->out, &job->err);
  } else {
    pkid_acme_failure p = {1, PKID_ACME_BAD_CSR, ""};
    snprintf(p.detail, sizeof(p.detail), "%s", job->err.msg);
    pkid_acme_order_finish(a->orders, ord, NULL, 0, &p, now);
    order_failed(a, ord);
    problem(&f->out, PKID_ACME_BAD_CSR, "%s", job->err.msg);
  }
  pkid_job_cleanup(job);
  free(f);
}

/* csr_matches: the CSR asks for exactly the order's names (RFC 8555 7.4),
 * and its key is not the account's (11.1: the two keys have different
 * jobs, and a client that mixes them has lost track of one). */
static int csr_matches(acme_req *r, const pkid_acme_order *ord, const uint8_t *der,
                       size_t len) {
  pki_csr csr;
  pki_err err;
  if (!pki_csr_parse(&csr, der, len, &err)) {
    problem(&r->out, PKID_ACME_BAD_CSR, "%s", err.msg);
    return 0;
  }
  int ok = 0;
  size_t dns = 0;
  for (size_t i = 0; i < csr.num_names; i++) {
    if (csr.names[i].type != PKI_NAME_DNS) {
      problem(&r->out, PKID_ACME_BAD_CSR, "the CSR asks for a %s name; an order names DNS only",
              pki_name_type_label(csr.names[i].type));
      goto out;
    }
    size_t k;
    for (k = 0; k < ord->num_authz; k++) {
      if (strcasecmp(ord->authz[k].name, csr.names[i].value) == 0) break;
    }
    if (k == ord->num_authz) {
      problem(&r->out, PKID_ACME_BAD_CSR, "the CSR asks for %s, which the order does not name",
              csr.names[i].value);
      goto out;
    }
    dns++;
  }
  if (dns < ord->num_authz) {
    problem(&r->out, PKID_ACME_BAD_CSR, "the CSR must ask for every name of the order");
    goto out;
  }
  if (csr.common_name[0] != '\0') {
    size_t k;
    for (k = 0; k < ord->num_authz; k++) {
      if (strcasecmp(ord->authz[k].name, csr.common_name) == 0) break;
    }
    if (k == ord->num_authz) {
      problem(&r->out, PKID_ACME_BAD_CSR, "the CSR's common name is not a name of the order");
      goto out;
    }
  }
  if (EVP_PKEY_cmp(csr.key, r->key) == 1) {
    problem(&r->out, PKID_ACME_BAD_CSR, "the certificate's key must not be the account's key");
    goto out;
  }
  ok = 1;
out:
  pki_csr_cleanup(&csr);
  return ok;
}

static void finalize(acme_req *r, pkid_acme_order *ord) {
  pkid_acme *a = r->out.a;
  pkid_acme_error type;
  pki_err err;
  uint8_t *csr = NULL;
  size_t csr_len = 0;
  if (ord->status != PKID_ACME_READY) {
    problem(&r->out, PKID_ACME_ORDER_NOT_READY, "the order is %s, not ready",
            pkid_acme_status_name(ord->status));
    return;
  }
  if (!pkid_acme_parse_finalize(&csr, &csr_len, r->jws.payload, r->jws.payload_len, &type,
                                &err)) {
    problem(&r->out, type, "%s", err.msg);
    return;
  }
  if (!csr_matches(r, ord, csr, csr_len)) {
    free(csr);
    return;
  }
  const pki_catalog *cat = catalog(a);
  const pki_catalog_service *svc = pki_catalog_find_service(cat, ord->service);
  const pkid_ca *ca = svc != NULL ? pkid_cas_find(a->d.cas, svc->ca) : NULL;
  if (ca == NULL) {
    free(csr);
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "service '%s' or its CA is gone", ord->service);
    return;
  }
  finalizing *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    free(csr);
    problem(&r->out, PKID_ACME_SERVER_INTERNAL, "out of memory");
    return;
  }
  pkid_job *job = &f->job;
  pkid_job_init(job, PKI_REC_ISSUE, on_finalized);
  char who[64];
  snprintf(who, sizeof(who), "acme:%s", ord->account);
  pkid_job_set_identity(job, who);
  job->csr = csr;
  job->csr_len = csr_len;
  job->cat = cat;
  job->svc = svc;
  job->now = now_s();
  job->rec.ca = ca;
  job->rec.service = svc->name;
  job->rec.usage = PKI_USAGE_SERVER;
  snprintf(job->common_name, sizeof(job->common_name), "%s", ord->authz[0].name);
  memcpy(f->order, ord->id, sizeof(f->order));
  if (!pkid_serials_next(a->d.serials, &job->rec.serial, &err) ||
      !pkid_workers_submit(a->d.workers, job, &err)) {
    pkid_job_cleanup(job);
    free(f);
    if (err.code == PKI_ERR_EXHAUSTED) pkid_metrics_limited("pool_full");
    problem_from(&r->out, &err);
    return;
  }
  ord->status = PKID_ACME_PROCESSING;
  f->out = r->out;
  defer(&f->out);
  r->out.req = NULL;
}

static void order(acme_req *r, const char *id, const char *tail) {
  pkid_acme_order *ord = find_order(r, id);
  if (ord == NULL) return;
  if (strcmp(tail, "finalize") == 0) {
    finalize(r, ord);
  } else if (tail[0] == '\0') {
    send_order(&r->out, 200, ord);
  } else {
    problem(&r->out, PKID_ACME_MALFORMED, "no such resource");
  }
}

static void certificate(acme_req *r, const char *id) {
  pkid_acme_order *ord = find_order(r, id);
  if (ord == NULL) return;
  if (ord->status != PKID_ACME_VALID) {
    problem(&r->out, PKID_ACME_MALFORMED, "the order has no certificate");
    return;
  }
  /* The issuer's certificate, where the catalogue publishes it (the
   * caIssuers URL the certificate carries): Link rel="up", as RFC 8555
   * 7.4.2's chains are followed up. */
  const pki_catalog *cat = catalog(r->out.a);
  const pki_catalog_service *svc = pki_catalog_find_service(cat, ord->service);
  const pki_catalog_ca *ca = svc != NULL ? pki_catalog_find_ca(cat, svc->ca) : NULL;
  char h[URL_MAX + 32] = "";
  if (ca != NULL && ca->cert_url != NULL) {
    snprintf(h, sizeof(h), "Link: <%s>;rel=\"up\"\r\n", ca->cert_url);
  }
  send_raw(&r->out, 200, h, "application/pem-certificate-chain", ord->chain_pem,
           ord->chain_pem_len);
}

/* --- revocation --------------------------------------------------------------------- */

typedef struct revoking {
  pkid_job job;
  acme_out out;
} revoking;

static void on_revoked(pkid_job *job) {
  revoking *v = (revoking *)((char *)job - offsetof(revoking, job));
  if (job->ok) {
    pkid_job_apply(job, v->out.a->d.store);
    pkid_counter_add(pkid_m.revoked, 1);
    char hex[2 * PKI_SERIAL_MAX + 1], reason[8];
    pki_serial_to_hex(hex, &job->rec.serial);
    snprintf(reason, sizeof(reason), "%u", job->rec.reason);
    pki_log("info", "revoked", "serial", hex, "reason", reason, "identity", job->identity, NULL);
    send_raw(&v->out, 200, NULL, "application/json", "", 0);
  } else {
    problem_from(&v->out, &job->err);
  }
  pkid_job_cleanup(job);
  free(v);
}

/* revoke_cert (RFC 8555 7.6): the certificate must be one pkid issued
 * (its CA's signature verifies) and the signer either the account of its
 * service or the certificate's own key. */
static void revoke_cert(acme_req *r) {
  pkid_acme *a = r->out.a;
  uint8_t *der = NULL;
  size_t der_len;
  int reason;
  pkid_acme_error type;
  pki_err err;
  X509 *x = NULL;
  EVP_PKEY *cert_key = NULL;
  if (!pkid_acme_parse_revoke(&der, &der_len, &reason, r->jws.payload, r->jws.payload_len, &type,
                              &err)) {
    problem(&r->out, type, "%s", err.msg);
    return;
  }
  const uint8_t *p = der;
  x = d2i_X509(NULL, &p, (long)der_len);
  pkid_cert_record rec;
  const ASN1_INTEGER *sn = x != NULL ? X509_get0_serialNumber(x) : NULL;
  pki_serial serial;
  memset(&serial, 0, sizeof(serial));
  if (sn == NULL || p != der + der_len || (size_t)sn->length > sizeof(serial.bytes)) {
    problem(&r->out, PKID_ACME_MALFORMED, "\"certificate\" is not a DER certificate");
    goto out;
  }
  memcpy(serial.bytes, sn->data, (size_t)sn->length);
  serial.len = (uint8_t)sn->length;
  const pkid_ca *ca = NULL;
  if (!pkid_status_get(a->d.status, serial.bytes, serial.len, &rec) ||
      (ca = pkid_cas_at(a->d.cas, rec.ca)) == NULL ||
      X509_verify(x, (EVP_PKEY *)ca->issuer.key) != 1) {
    problem(&r->out, PKID_ACME_UNAUTHORIZED, "pkid did not issue this certificate");
    goto out;
  }
  const pki_catalog *cat = catalog(a);
  if (r->acct != NULL) {
    if (rec.service >= cat->num_services ||
        strcmp(cat->services[rec.service].name, r->acct->service) != 0) {
      problem(&r->out, PKID_ACME_UNAUTHORIZED, "the certificate is not of the account's service");
      goto out;
    }
  } else {
    cert_key = X509_get_pubkey(x);
    if (cert_key == NULL || EVP_PKEY_cmp(cert_key, r->key) != 1) {
      problem(&r->out, PKID_ACME_UNAUTHORIZED, "the JWS is not signed by the certificate's key");
      goto out;
    }
  }
  if (rec.revoked) {
    problem(&r->out, PKID_ACME_ALREADY_REVOKED, "the certificate is revoked already");
    goto out;
  }
  revoking *v = calloc(1, sizeof(*v));
  if (v == NULL) {
    problem(&r->out, PKID_ACME_SERVER_INTERNAL, "out of memory");
    goto out;
  }
  pkid_job_init(&v->job, PKI_REC_REVOKE, on_revoked);
  char who[64];
  if (r->acct != NULL) {
    snprintf(who, sizeof(who), "acme:%s", r->acct->id);
  } else {
    snprintf(who, sizeof(who), "acme:certificate-key");
  }
  pkid_job_set_identity(&v->job, who);
  v->job.rec.ca = ca;
  v->job.rec.serial = serial;
  v->job.rec.reason = (uint8_t)reason;
  v->job.now = v->job.rec.revoked_at = now_s();
  if (!pkid_workers_submit(a->d.workers, &v->job, &err)) {
    free(v);
    problem_from(&r->out, &err);
    goto out;
  }
  v->out = r->out;
  defer(&v->out);
  r->out.req = NULL;
out:
  EVP_PKEY_free(cert_key);
  X509_free(x);
  free(der);
}

/* --- GET: directory, nonces, renewal information ----------------------------------- */

static void directory(acme_out *out) {
  char u[6][URL_MAX];
  const char *names[] = {"new-nonce", "new-account", "new-order", "revoke-cert", "key-change",
                         "renewal-info"};
  for (int i = 0; i < 6; i++) snprintf(u[i], sizeof(u[i]), "%s/acme/%s", out->base, names[i]);
  send_json(out, 200, NULL,
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:b, s:s}}", "newNonce", u[0],
                      "newAccount", u[1], "newOrder", u[2], "revokeCert", u[3], "keyChange", u[4],
                      "renewalInfo", u[5], "meta", "externalAccountRequired", 1, "website",
                      "https://github.com/pkid/pkid"));
}

/* renewal_window is when the catalogue wants the certificate renewed:
 * the service's renew_before before its end, or its rotation after its
 * start, else at two thirds of its life (as pkictl agent renews), until
 * half of what is left after that. */
static void renewal_window(const pki_catalog_service *svc, const pkid_cert_record *rec,
                           int64_t now, int64_t *start, int64_t *end) {
  int64_t life = rec->not_after - rec->not_before;
  int64_t at = rec->not_before + life * 2 / 3;
  if (svc != NULL && svc->renew_before_s != 0) {
    at = rec->not_after - (int64_t)svc->renew_before_s;
  } else if (svc != NULL && svc->rotation_s != 0) {
    at = rec->not_before + (int64_t)svc->rotation_s;
  }
  if (at < rec->not_before) at = rec->not_before;
  *start = at;
  *end = at + (rec->not_after - at) / 2;
  if (*end <= *start) *end = *start + 1;
  if (rec->revoked) {
    /* RFC 9773 4.2: a window in the past says "now". */
    *start = now - 7200;
    *end = now - 3600;
  }
}

/* renewal_info (RFC 9773 4.1): the certificate is named by
 * base64url(AKI keyIdentifier) "." base64url(serial's DER content). */
static void renewal_info(acme_out *out, const char *id) {
  pkid_acme *a = out->a;
  const char *dot = strchr(id, '.');
  uint8_t aki[64], sn[PKI_SERIAL_MAX + 1];
  size_t aki_len, sn_len;
  pki_err err;
  if (dot == NULL ||
      !pki_base64_decode(aki, sizeof(aki), &aki_len, id, (size_t)(dot - id),
                         PKI_BASE64_URL | PKI_BASE64_NO_PAD, &err) ||
      !pki_base64_decode(sn, sizeof(sn), &sn_len, dot + 1, strlen(dot + 1),
                         PKI_BASE64_URL | PKI_BASE64_NO_PAD, &err) ||
      sn_len == 0 || sn_len > PKI_SERIAL_MAX) {
    problem(out, PKID_ACME_MALFORMED, "not a certificate identifier (RFC 9773 4.1)");
    return;
  }
  pkid_cert_record rec;
  const pkid_ca *ca = NULL;
  if (!pkid_status_get(a->d.status, sn, sn_len, &rec) ||
      (ca = pkid_cas_at(a->d.cas, rec.ca)) == NULL || ca->issuer.ski_len != aki_len ||
      memcmp(ca->issuer.ski, aki, aki_len) != 0) {
    problem_at(out, 404, PKID_ACME_MALFORMED, NULL, "pkid issued no such certificate");
    return;
  }
  const pki_catalog *cat = catalog(a);
  const pki_catalog_service *svc =
      rec.service < cat->num_services ? &cat->services[rec.service] : NULL;
  int64_t start, end;
  renewal_window(svc, &rec, now_s(), &start, &end);
  char h[64];
  snprintf(h, sizeof(h), "Retry-After: %d\r\n", RENEWAL_INFO_RETRY_S);
  send_json(out, 200, h,
            json_pack("{s:{s:o, s:o}}", "suggestedWindow", "start", time_json(start), "end",
                      time_json(end)));
}

static void on_get(void *ctx, pkid_http_req *req) {
  pkid_acme *a = ctx;
  acme_req r;
  if (!begin(a, req, &r, "get")) return;
  char id[128];
  if (path_is(&r, "directory")) {
    r.out.resource = "directory";
    directory(&r.out);
  } else if (path_is(&r, "new-nonce")) {
    /* 7.2: 200 to HEAD, 204 to GET. */
    r.out.resource = "new-nonce";
    send_raw(&r.out, req->method_name[0] == 'H' ? 200 : 204, NULL, "application/json", "", 0);
  } else if (path_id(&r, "renewal-info/", id, sizeof(id), NULL)) {
    r.out.resource = "renewal-info";
    renewal_info(&r.out, id);
  } else {
    /* 6.3: everything else is read by POST-as-GET. */
    problem_h(&r.out, PKID_ACME_MALFORMED, "Allow: POST\r\n",
              "this resource is read with POST-as-GET (RFC 8555 6.3)");
  }
}

static void on_post(void *ctx, pkid_http_req *req) {
  pkid_acme *a = ctx;
  acme_req r;
  char id[64];
  const char *tail;
  if (!begin(a, req, &r, "post")) return;
  int jwk_ok = path_is(&r, "new-account") || path_is(&r, "revoke-cert");
  if (!verify(&r, req, jwk_ok)) goto out;
  if (path_is(&r, "new-account")) {
    r.out.resource = "new-account";
    new_account(&r);
  } else if (path_is(&r, "new-order")) {
    r.out.resource = "new-order";
    new_order(&r);
  } else if (path_is(&r, "revoke-cert")) {
    r.out.resource = "revoke-cert";
    revoke_cert(&r);
  } else if (path_is(&r, "key-change")) {
    r.out.resource = "key-change";
    key_change(&r);
  } else if (path_id(&r, "acct/", id, sizeof(id), &tail)) {
    r.out.resource = "account";
    account(&r, id, tail);
  } else if (path_id(&r, "order/", id, sizeof(id), &tail)) {
    r.out.resource = strcmp(tail, "finalize") == 0 ? "finalize" : "order";
    order(&r, id, tail);
  } else if (path_id(&r, "authz/", id, sizeof(id), &tail)) {
    r.out.resource = "authz";
    authorization(&r, id, tail);
  } else if (path_id(&r, "chall/", id, sizeof(id), &tail)) {
    r.out.resource = "challenge";
    challenge(&r, id, tail);
  } else if (path_id(&r, "cert/", id, sizeof(id), NULL)) {
    r.out.resource = "certificate";
    certificate(&r, id);
  } else {
    problem_at(&r.out, 404, PKID_ACME_MALFORMED, NULL, "no such resource");
  }
out:
  end(&r);
}

/* --- life --------------------------------------------------------------------------- */

static void on_sweep(uv_timer_t *t) {
  pkid_acme *a = t->data;
  pkid_acme_orders_sweep(a->orders, now_s());
}

int pkid_acme_check_config(const pkid_acme_config *cfg, pki_err *err) {
  if (!cfg->test_mode && ((cfg->http_port != 0 && cfg->http_port != 80) ||
                          (cfg->tls_port != 0 && cfg->tls_port != 443) || cfg->num_resolve != 0)) {
    PKI_ERR(err, PKI_ERR_INVALID,
            "--acme-http-port, --acme-tls-port and --acme-resolve are for tests: they need "
            "--acme-test-mode");
    return 0;
  }
  for (size_t i = 0; i < cfg->num_resolve; i++) {
    const char *eq = strchr(cfg->resolve[i], '=');
    uint8_t ip[16];
    size_t ip_len;
    if (eq == NULL || eq == cfg->resolve[i] || !pki_ip_parse(ip, &ip_len, eq + 1)) {
      PKI_ERR(err, PKI_ERR_INVALID, "--acme-resolve '%s' is not NAME=IP", cfg->resolve[i]);
      return 0;
    }
  }
  return 1;
}

pkid_acme *pkid_acme_start(const pkid_acme_config *cfg, const pkid_acme_deps *deps,
                           pki_err *err) {
  if (!pkid_acme_check_config(cfg, err)) return NULL;
  pkid_acme *a = calloc(1, sizeof(*a));
  if (a == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  a->cfg = *cfg;
  a->d = *deps;
  if (a->cfg.http_port == 0) a->cfg.http_port = 80;
  if (a->cfg.tls_port == 0) a->cfg.tls_port = 443;
  if (a->cfg.validate_timeout_ms == 0) a->cfg.validate_timeout_ms = 5000;
  if (a->cfg.validate_attempts == 0) a->cfg.validate_attempts = 3;
  if (a->cfg.max_orders == 0) a->cfg.max_orders = 100000;
  if (a->cfg.max_pending_per_account == 0) a->cfg.max_pending_per_account = 100;
  a->nonces = pkid_acme_nonces_new(NONCE_WINDOW);
  a->orders = pkid_acme_orders_new(a->cfg.max_orders, a->cfg.max_pending_per_account);
  pkid_http_limits limits = pkid_http_default_limits();
  limits.max_body_bytes = PKI_JWS_MAX;
  a->http = pkid_http_new(deps->loop, &limits);
  if (a->nonces == NULL || a->orders == NULL || a->http == NULL) {
    PKI_ERR_OOM(err);
    goto fail;
  }
  pkid_http_route(a->http, "GET", "/acme/", on_get, a);
  pkid_http_route(a->http, "POST", "/acme/", on_post, a);
  pkid_http_set_tls(a->http, deps->ssl_ctx);
  if (!pkid_http_listen(a->http, cfg->listen, err)) goto fail;
  uv_timer_init(deps->loop, &a->sweep);
  a->sweep.data = a;
  a->sweep_open = 1;
  uv_timer_start(&a->sweep, on_sweep, 60000, 60000);
  uv_unref((uv_handle_t *)&a->sweep);
  return a;
fail:
  if (a->http != NULL) pkid_http_stop(a->http, 0, NULL, NULL);
  pkid_acme_nonces_free(a->nonces);
  pkid_acme_orders_free(a->orders);
  free(a);
  return NULL;
}

int pkid_acme_address(const pkid_acme *a, char *out, size_t out_size) {
  return pkid_http_address(a->http, out, out_size);
}

void pkid_acme_stop(pkid_acme *a, unsigned grace_ms, void (*done)(void *arg), void *arg) {
  if (a->sweep_open) {
    uv_timer_stop(&a->sweep);
    uv_close((uv_handle_t *)&a->sweep, NULL);
    a->sweep_open = 0;
  }
  pkid_http_stop(a->http, grace_ms, done, arg);
  a->http = NULL;
}

void pkid_acme_free(pkid_acme *a) {
  if (a == NULL) return;
  pkid_acme_nonces_free(a->nonces);
  pkid_acme_orders_free(a->orders);
  free(a);
}
