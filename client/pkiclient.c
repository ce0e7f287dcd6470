/* pkiclient.c: libpkiclient's methods: keys and CSRs made locally, the
 * pki.v1 messages, and the files results are written to. */
#include "client/pkiclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/mem.h>

#include "client/pkiclient_call.h"
#include "client/pkiclient_trust.h"
#include "lib/cert_info.h"
#include "lib/csr.h"
#include "lib/file.h"
#include "lib/grpc_status.h"
#include "lib/key.h"
#include "lib/pem.h"
#include "proto/pki/v1/pki.pb-c.h"

#define METHOD(name) "/pki.v1.Pki/" name

static void err_clear(pkc_error *err) {
  if (err == NULL) return;
  memset(err, 0, sizeof(*err));
}

/* Callers may pass a NULL pkc_error; the functions below then use one of
 * their own. */
#define ERR_OR_LOCAL(err) \
  pkc_error err##_local;  \
  if ((err) == NULL) (err) = &err##_local; \
  err_clear(err)

/* PKC_STATUS_* are gRPC's numbers, as lib/grpc_status.h's are. */
_Static_assert(PKC_STATUS_OK == PKI_GRPC_OK && PKC_STATUS_UNAVAILABLE == PKI_GRPC_UNAVAILABLE &&
                   PKC_STATUS_UNAUTHENTICATED == PKI_GRPC_UNAUTHENTICATED,
               "pkiclient.h and lib/grpc_status.h number gRPC statuses alike");

const char *pkc_status_name(int status) { return pki_grpc_status_name(status); }

int pkc_error_retryable(const pkc_error *err) {
  if (err == NULL || err->local) return 0;
  /* DEADLINE_EXCEEDED as well: the call does not retry it itself (the
   * caller chose the budget), but a caller may try again with a new one. */
  return pki_grpc_status_retryable(err->status) || err->status == PKC_STATUS_DEADLINE_EXCEEDED;
}

/* --- keys and CSRs --- */

static const struct {
  pkc_key_type type;
  const char *name;
  pki_key_type lib_type;
  unsigned bits;
} kKeyTypes[] = {
    {PKC_KEY_ECDSA_P256, "ecdsa-p256", PKI_KEY_ECDSA_P256, 256},
    {PKC_KEY_ECDSA_P384, "ecdsa-p384", PKI_KEY_ECDSA_P384, 384},
    {PKC_KEY_ED25519, "ed25519", PKI_KEY_ED25519, 256},
    {PKC_KEY_RSA_2048, "rsa-2048", PKI_KEY_RSA, 2048},
    {PKC_KEY_RSA_3072, "rsa-3072", PKI_KEY_RSA, 3072},
    {PKC_KEY_RSA_4096, "rsa-4096", PKI_KEY_RSA, 4096},
};
#define NUM_KEY_TYPES (sizeof(kKeyTypes) / sizeof(kKeyTypes[0]))

int pkc_key_type_parse(pkc_key_type *out, const char *text, pkc_error *err) {
  for (size_t i = 0; i < NUM_KEY_TYPES; i++) {
    if (text != NULL && strcmp(text, kKeyTypes[i].name) == 0) {
      *out = kKeyTypes[i].type;
      return 1;
    }
  }
  pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
              "unknown key type '%s' (ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-3072, "
              "rsa-4096)",
              text != NULL ? text : "");
  return 0;
}

/* A request's key and CSR, ready to send. */
typedef struct prepared {
  EVP_PKEY *key;   /* owned reference, or NULL for a caller's CSR */
  uint8_t *csr;    /* owned when |own_csr| */
  size_t csr_len;
  int own_csr;
} prepared;

static void prepared_cleanup(prepared *p) {
  EVP_PKEY_free(p->key);
  if (p->own_csr) free(p->csr);
  memset(p, 0, sizeof(*p));
}

static int prepare(prepared *out, const pkc_issue_params *params, pkc_error *err) {
  memset(out, 0, sizeof(*out));
  if (params->csr != NULL) {
    out->csr = (uint8_t *)params->csr;
    out->csr_len = params->csr_len;
    return 1;
  }
  pki_err e;
  if (params->key != NULL) {
    EVP_PKEY_up_ref(params->key);
    out->key = params->key;
  } else {
    size_t i = 0;
    while (i < NUM_KEY_TYPES && kKeyTypes[i].type != params->key_type) i++;
    if (i == NUM_KEY_TYPES) {
      pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "unknown key type %d",
                  (int)params->key_type);
      return 0;
    }
    out->key = pki_key_generate(kKeyTypes[i].lib_type, kKeyTypes[i].bits, &e);
    if (out->key == NULL) {
      pkc_err_from_pki(err, &e);
      return 0;
    }
  }
  if (!pki_csr_build(&out->csr, &out->csr_len, out->key, params->common_name, NULL, 0, &e)) {
    pkc_err_from_pki(err, &e);
    prepared_cleanup(out);
    return 0;
  }
  out->own_csr = 1;
  return 1;
}

/* --- results --- */

static int copy_der(pkc_der *out, const ProtobufCBinaryData *in, pkc_error *err) {
  out->data = malloc(in->len > 0 ? in->len : 1);
  if (out->data == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return 0;
  }
  if (in->len > 0) memcpy(out->data, in->data, in->len);
  out->len = in->len;
  return 1;
}

static int copy_ders(pkc_der **out, size_t *out_num, ProtobufCBinaryData *in, size_t num,
                     pkc_error *err) {
  *out = calloc(num > 0 ? num : 1, sizeof(pkc_der));
  *out_num = 0;
  if (*out == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return 0;
  }
  for (size_t i = 0; i < num; i++) {
    if (!copy_der(&(*out)[i], &in[i], err)) return 0;
    (*out_num)++;
  }
  return 1;
}

static void free_ders(pkc_der *ders, size_t num) {
  for (size_t i = 0; i < num; i++) free(ders[i].data);
  free(ders);
}

void pkc_issued_cleanup(pkc_issued *issued) {
  if (issued == NULL) return;
  EVP_PKEY_free(issued->key);
  free(issued->cert.data);
  free_ders(issued->chain, issued->num_chain);
  memset(issued, 0, sizeof(*issued));
}

/* fill_issued takes a successful response; |*key| moves into |out|. */
static int fill_issued(pkc_issued *out, const Pki__V1__IssueResponse *resp, EVP_PKEY **key,
                       pkc_error *err) {
  if (resp->certificate.len == 0) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 0, "pkid answered with no certificate");
    return 0;
  }
  if (!copy_der(&out->cert, &resp->certificate, err) ||
      !copy_ders(&out->chain, &out->num_chain, resp->chain, resp->n_chain, err)) {
    return 0;
  }
  snprintf(out->serial, sizeof(out->serial), "%s", resp->serial != NULL ? resp->serial : "");
  out->not_after = resp->not_after;
  out->key = *key;
  *key = NULL;
  return 1;
}

static Pki__V1__Usage usage_to_proto(pkc_usage usage) {
  switch (usage) {
    case PKC_USAGE_SERVER: return PKI__V1__USAGE__USAGE_SERVER;
    case PKC_USAGE_CLIENT: return PKI__V1__USAGE__USAGE_CLIENT;
    default: return PKI__V1__USAGE__USAGE_UNSPECIFIED;
  }
}

/* unary_issue_like sends a packed request to |method| and reads an
 * IssueResponse into |out|. */
static int unary_issue_like(pkc_client *client, const char *method, const uint8_t *req,
                            size_t req_len, prepared *prep, pkc_issued *out,
                            pkc_error *err) {
  uint8_t *resp_buf;
  size_t resp_len;
  if (!pkc_call_unary(client, method, req, req_len, &resp_buf, &resp_len, err)) return 0;
  Pki__V1__IssueResponse *resp = pki__v1__issue_response__unpack(NULL, resp_len, resp_buf);
  free(resp_buf);
  if (resp == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "pkid's IssueResponse does not parse");
    return 0;
  }
  int ok = fill_issued(out, resp, &prep->key, err);
  pki__v1__issue_response__free_unpacked(resp, NULL);
  if (!ok) pkc_issued_cleanup(out);
  return ok;
}

static uint8_t *pack_issue_request(size_t *out_len, const pkc_issue_params *p,
                                   const prepared *prep, uint64_t request_id) {
  Pki__V1__IssueRequest req = PKI__V1__ISSUE_REQUEST__INIT;
  req.csr.data = prep->csr;
  req.csr.len = prep->csr_len;
  req.service = (char *)(p->service != NULL ? p->service : "");
  req.usage = usage_to_proto(p->usage);
  req.bootstrap_token = (char *)(p->bootstrap_token != NULL ? p->bootstrap_token : "");
  req.validity_seconds = p->validity_seconds;
  req.request_id = request_id;
  size_t len = pki__v1__issue_request__get_packed_size(&req);
  uint8_t *buf = malloc(len > 0 ? len : 1);
  if (buf == NULL) return NULL;
  pki__v1__issue_request__pack(&req, buf);
  *out_len = len;
  return buf;
}

int pkc_issue(pkc_client *client, const pkc_issue_params *params, pkc_issued *out,
              pkc_error *err) {
  ERR_OR_LOCAL(err);
  memset(out, 0, sizeof(*out));
  prepared prep;
  if (!prepare(&prep, params, err)) return 0;
  size_t len;
  uint8_t *req = pack_issue_request(&len, params, &prep, 0);
  int ok = 0;
  if (req == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
  } else {
    ok = unary_issue_like(client, METHOD("Issue"), req, len, &prep, out, err);
  }
  free(req);
  prepared_cleanup(&prep);
  return ok;
}

int pkc_renew(pkc_client *client, const pkc_issue_params *params, pkc_issued *out,
              pkc_error *err) {
  ERR_OR_LOCAL(err);
  memset(out, 0, sizeof(*out));
  prepared prep;
  if (!prepare(&prep, params, err)) return 0;
  Pki__V1__RenewRequest req = PKI__V1__RENEW_REQUEST__INIT;
  req.csr.data = prep.csr;
  req.csr.len = prep.csr_len;
  req.validity_seconds = params->validity_seconds;
  size_t len = pki__v1__renew_request__get_packed_size(&req);
  uint8_t *buf = malloc(len > 0 ? len : 1);
  int ok = 0;
  if (buf == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
  } else {
    pki__v1__renew_request__pack(&req, buf);
    ok = unary_issue_like(client, METHOD("Renew"), buf, len, &prep, out, err);
  }
  free(buf);
  prepared_cleanup(&prep);
  return ok;
}

/* --- the stream --- */

typedef struct stream_ctx {
  pkc_issued *out;
  prepared *preps;
  uint8_t *answered;
  size_t num, num_answered;
} stream_ctx;

static int on_stream_response(void *arg, const uint8_t *msg, size_t len, pkc_error *err) {
  stream_ctx *ctx = arg;
  Pki__V1__IssueResponse *resp = pki__v1__issue_response__unpack(NULL, len, msg);
  if (resp == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "an IssueResponse on the stream does not parse");
    return 0;
  }
  int ok = 1;
  uint64_t id = resp->request_id;
  if (id >= ctx->num || ctx->answered[id]) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "pkid answered request_id %llu, %s",
                (unsigned long long)id, id >= ctx->num ? "never asked" : "twice");
    ok = 0;
  } else {
    pkc_issued *o = &ctx->out[id];
    ctx->answered[id] = 1;
    ctx->num_answered++;
    if (resp->status_code != 0) {
      pkc_err_set(&o->error, resp->status_code, 0, "%s",
                  resp->status_message != NULL ? resp->status_message : "");
    } else if (fill_issued(o, resp, &ctx->preps[id].key, &o->error)) {
      err_clear(&o->error);
    }
  }
  pki__v1__issue_response__free_unpacked(resp, NULL);
  return ok;
}

static void prefix_request(pkc_error *err, size_t i) {
  char msg[sizeof(err->message)];
  snprintf(msg, sizeof(msg), "request %zu: %s", i, err->message);
  memcpy(err->message, msg, sizeof(msg));
}

int pkc_issue_stream(pkc_client *client, const pkc_issue_params *params, size_t num,
                     pkc_issued *out, pkc_error *err) {
  ERR_OR_LOCAL(err);
  if (num > 0) memset(out, 0, num * sizeof(*out));
  prepared *preps = calloc(num > 0 ? num : 1, sizeof(prepared));
  pkc_der *reqs = calloc(num > 0 ? num : 1, sizeof(pkc_der));
  uint8_t *answered = calloc(num > 0 ? num : 1, 1);
  int ok = 0;
  size_t i;
  if (preps == NULL || reqs == NULL || answered == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    goto out;
  }
  for (i = 0; i < num; i++) {
    if (!prepare(&preps[i], &params[i], err)) {
      prefix_request(err, i);
      goto out;
    }
    reqs[i].data = pack_issue_request(&reqs[i].len, &params[i], &preps[i], i);
    if (reqs[i].data == NULL) {
      pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "request %zu: out of memory", i);
      goto out;
    }
  }
  stream_ctx ctx = {.out = out, .preps = preps, .answered = answered, .num = num};
  ok = pkc_call_stream(client, METHOD("IssueStream"), reqs, num, on_stream_response, &ctx,
                       err);
  if (ok && ctx.num_answered != num) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 0, "pkid ended the stream after answering %zu of %zu",
                ctx.num_answered, num);
    ok = 0;
  }
  for (i = 0; i < num; i++) {
    if (!answered[i]) {
      out[i].error = *err;
      if (out[i].error.status == PKC_STATUS_OK) {
        pkc_err_set(&out[i].error, PKC_STATUS_INTERNAL, 1, "not answered");
      }
    }
  }
out:
  for (i = 0; preps != NULL && i < num; i++) prepared_cleanup(&preps[i]);
  for (i = 0; reqs != NULL && i < num; i++) free(reqs[i].data);
  free(preps);
  free(reqs);
  free(answered);
  if (!ok && err->status == PKC_STATUS_OK) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "the stream failed");
  }
  return ok;
}

/* --- revoke and status --- */

static int check_serial(const char *serial_hex, pkc_error *err) {
  if (serial_hex == NULL || serial_hex[0] == '\0') {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "a serial number is required");
    return 0;
  }
  return 1;
}

static int reason_valid(int r) { return r >= 0 && r <= 10 && r != 7; }

void pkc_revoked_cleanup(pkc_revoked *revoked) {
  if (revoked == NULL) return;
  for (size_t i = 0; i < revoked->num_serials; i++) free(revoked->serials[i]);
  free(revoked->serials);
  memset(revoked, 0, sizeof(*revoked));
}

int pkc_revoke_ex(pkc_client *client, const pkc_revoke_params *params, pkc_revoked *out,
                  pkc_error *err) {
  ERR_OR_LOCAL(err);
  memset(out, 0, sizeof(*out));
  if (!check_serial(params->serial, err)) return 0;
  if (!reason_valid((int)params->reason) || params->reason == PKC_REVOKE_REMOVE_FROM_CRL) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                "reason %d is not one to revoke for (RFC 5280 5.3.1: 0 to 10 but 7; "
                "removeFromCRL is only for delta CRLs)",
                (int)params->reason);
    return 0;
  }
  if (params->invalidity_date < 0) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "the invalidity date is before 1970");
    return 0;
  }
  if (params->same_key && params->reason != PKC_REVOKE_KEY_COMPROMISE) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1,
                "revoking every certificate of the same key is for keyCompromise only");
    return 0;
  }
  Pki__V1__RevokeRequest req = PKI__V1__REVOKE_REQUEST__INIT;
  req.serial = (char *)params->serial;
  req.reason = (Pki__V1__RevocationReason)params->reason;
  req.invalidity_date = params->invalidity_date;
  req.revoke_same_key = params->same_key ? 1 : 0;
  uint8_t buf[256], *resp_buf;
  size_t resp_len;
  if (pki__v1__revoke_request__get_packed_size(&req) > sizeof(buf)) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "serial '%.40s...' is too long",
                params->serial);
    return 0;
  }
  size_t len = pki__v1__revoke_request__pack(&req, buf);
  if (!pkc_call_unary(client, METHOD("Revoke"), buf, len, &resp_buf, &resp_len, err)) {
    return 0;
  }
  Pki__V1__RevokeResponse *resp = pki__v1__revoke_response__unpack(NULL, resp_len, resp_buf);
  free(resp_buf);
  if (resp == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "pkid's RevokeResponse does not parse");
    return 0;
  }
  out->revoked_at = resp->revoked_at;
  /* A pkid that predates revoked_serials names none: the one asked for. */
  size_t num = resp->n_revoked_serials > 0 ? resp->n_revoked_serials : 1;
  int ok = (out->serials = calloc(num, sizeof(char *))) != NULL;
  for (size_t i = 0; ok && i < num; i++) {
    const char *s = resp->n_revoked_serials > 0 ? resp->revoked_serials[i] : params->serial;
    ok = (out->serials[i] = strdup(s != NULL ? s : "")) != NULL;
    if (ok) out->num_serials++;
  }
  pki__v1__revoke_response__free_unpacked(resp, NULL);
  if (!ok) {
    pkc_revoked_cleanup(out);
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return 0;
  }
  return 1;
}

int pkc_revoke(pkc_client *client, const char *serial_hex, pkc_revocation_reason reason,
               int64_t *out_revoked_at, pkc_error *err) {
  pkc_revoke_params p = {.serial = serial_hex, .reason = reason};
  pkc_revoked r;
  if (!pkc_revoke_ex(client, &p, &r, err)) return 0;
  if (out_revoked_at != NULL) *out_revoked_at = r.revoked_at;
  pkc_revoked_cleanup(&r);
  return 1;
}

int pkc_report_rotation(pkc_client *client, const char *frontend, const char *serial_hex,
                        const char *previous_hex, pkc_error *err) {
  ERR_OR_LOCAL(err);
  if (!check_serial(serial_hex, err)) return 0;
  if (previous_hex != NULL && previous_hex[0] != '\0' && !check_serial(previous_hex, err)) {
    return 0;
  }
  Pki__V1__RotationReport req = PKI__V1__ROTATION_REPORT__INIT;
  req.frontend = (char *)frontend;
  req.serial = (char *)serial_hex;
  req.previous_serial = (char *)(previous_hex != NULL ? previous_hex : "");
  uint8_t buf[1024], *resp_buf;
  size_t resp_len;
  if (pki__v1__rotation_report__get_packed_size(&req) > sizeof(buf)) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "frontend '%.40s...' is too long", frontend);
    return 0;
  }
  size_t len = pki__v1__rotation_report__pack(&req, buf);
  if (!pkc_call_unary(client, METHOD("ReportRotation"), buf, len, &resp_buf, &resp_len, err)) {
    return 0;
  }
  free(resp_buf);
  return 1;
}

/* --- ACME --- */

void pkc_acme_eab_cleanup(pkc_acme_eab *eab) {
  if (eab == NULL) return;
  OPENSSL_cleanse(eab, sizeof(*eab));
}

/* eab_text: a kid or a key is base64url (and a kid's "eab-"): nothing a
 * terminal or an ACME client's configuration would take otherwise. */
static int eab_text(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_')) {
      return 0;
    }
  }
  return 1;
}

int pkc_create_acme_eab(pkc_client *client, const char *service, pkc_acme_eab *out,
                        pkc_error *err) {
  ERR_OR_LOCAL(err);
  memset(out, 0, sizeof(*out));
  if (service == NULL || service[0] == '\0') {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "a service is required");
    return 0;
  }
  Pki__V1__CreateAcmeEabRequest req = PKI__V1__CREATE_ACME_EAB_REQUEST__INIT;
  req.service = (char *)service;
  uint8_t buf[512], *resp_buf;
  size_t resp_len;
  if (pki__v1__create_acme_eab_request__get_packed_size(&req) > sizeof(buf)) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "service '%.40s...' is too long", service);
    return 0;
  }
  size_t len = pki__v1__create_acme_eab_request__pack(&req, buf);
  if (!pkc_call_unary(client, METHOD("CreateAcmeEab"), buf, len, &resp_buf, &resp_len, err)) {
    return 0;
  }
  Pki__V1__CreateAcmeEabResponse *resp =
      pki__v1__create_acme_eab_response__unpack(NULL, resp_len, resp_buf);
  if (resp_buf != NULL) OPENSSL_cleanse(resp_buf, resp_len);
  free(resp_buf);
  if (resp == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "pkid's CreateAcmeEabResponse does not parse");
    return 0;
  }
  int ok = resp->kid != NULL && resp->hmac_key != NULL &&
           eab_text(resp->kid, sizeof(out->kid) - 1) &&
           eab_text(resp->hmac_key, sizeof(out->hmac_key) - 1);
  if (ok) {
    snprintf(out->kid, sizeof(out->kid), "%s", resp->kid);
    snprintf(out->hmac_key, sizeof(out->hmac_key), "%s", resp->hmac_key);
  } else {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1,
                "pkid answered CreateAcmeEab with no key id or key, or not in base64url");
  }
  if (resp->hmac_key != NULL) OPENSSL_cleanse(resp->hmac_key, strlen(resp->hmac_key));
  pki__v1__create_acme_eab_response__free_unpacked(resp, NULL);
  return ok;
}

int pkc_status(pkc_client *client, const char *serial_hex, pkc_cert_status *out,
               pkc_error *err) {
  ERR_OR_LOCAL(err);
  memset(out, 0, sizeof(*out));
  if (!check_serial(serial_hex, err)) return 0;
  Pki__V1__GetStatusRequest req = PKI__V1__GET_STATUS_REQUEST__INIT;
  req.serial = (char *)serial_hex;
  uint8_t buf[256], *resp_buf;
  size_t resp_len;
  if (pki__v1__get_status_request__get_packed_size(&req) > sizeof(buf)) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "serial '%.40s...' is too long",
                serial_hex);
    return 0;
  }
  size_t len = pki__v1__get_status_request__pack(&req, buf);
  if (!pkc_call_unary(client, METHOD("GetStatus"), buf, len, &resp_buf, &resp_len, err)) {
    return 0;
  }
  Pki__V1__CertificateStatus *st = pki__v1__certificate_status__unpack(NULL, resp_len, resp_buf);
  free(resp_buf);
  if (st == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "pkid's CertificateStatus does not parse");
    return 0;
  }
  snprintf(out->serial, sizeof(out->serial), "%s", st->serial != NULL ? st->serial : "");
  out->state = (pkc_cert_state)st->state;
  snprintf(out->service, sizeof(out->service), "%s", st->service != NULL ? st->service : "");
  snprintf(out->identity, sizeof(out->identity), "%s",
           st->identity != NULL ? st->identity : "");
  out->usage = st->usage == PKI__V1__USAGE__USAGE_SERVER   ? PKC_USAGE_SERVER
               : st->usage == PKI__V1__USAGE__USAGE_CLIENT ? PKC_USAGE_CLIENT
                                                           : 0;
  snprintf(out->issuer, sizeof(out->issuer), "%s", st->issuer != NULL ? st->issuer : "");
  out->not_before = st->not_before;
  out->not_after = st->not_after;
  out->revoked_at = st->revoked_at;
  out->revocation_reason = (pkc_revocation_reason)st->revocation_reason;
  out->invalidity_date = st->invalidity_date;
  pki__v1__certificate_status__free_unpacked(st, NULL);
  return 1;
}

/* --- the trust bundle --- */

void pkc_trust_bundle_cleanup(pkc_trust_bundle *bundle) {
  if (bundle == NULL) return;
  free(bundle->root.data);
  for (size_t i = 0; i < bundle->num_stores; i++) {
    pkc_trust_store *s = &bundle->stores[i];
    free(s->ca);
    free(s->cert.data);
    free_ders(s->chain, s->num_chain);
    free(s->pem);
  }
  free(bundle->stores);
  memset(bundle, 0, sizeof(*bundle));
}

static int copy_string(char **out, const char *in, pkc_error *err) {
  *out = strdup(in != NULL ? in : "");
  if (*out == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return 0;
  }
  return 1;
}

int pkc_trust_bundle_get(pkc_client *client, const char *ca_name, pkc_trust_bundle *out,
                         pkc_error *err) {
  ERR_OR_LOCAL(err);
  memset(out, 0, sizeof(*out));
  Pki__V1__GetTrustBundleRequest req = PKI__V1__GET_TRUST_BUNDLE_REQUEST__INIT;
  req.ca = (char *)(ca_name != NULL ? ca_name : "");
  size_t len = pki__v1__get_trust_bundle_request__get_packed_size(&req);
  uint8_t *buf = malloc(len > 0 ? len : 1), *resp_buf = NULL;
  size_t resp_len;
  if (buf == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
    return 0;
  }
  pki__v1__get_trust_bundle_request__pack(&req, buf);
  int ok = pkc_call_unary(client, METHOD("GetTrustBundle"), buf, len, &resp_buf, &resp_len, err);
  free(buf);
  if (!ok) return 0;
  Pki__V1__TrustBundle *tb = pki__v1__trust_bundle__unpack(NULL, resp_len, resp_buf);
  free(resp_buf);
  if (tb == NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "pkid's TrustBundle does not parse");
    return 0;
  }
  ok = copy_der(&out->root, &tb->root, err) &&
       (out->stores = calloc(tb->n_stores > 0 ? tb->n_stores : 1, sizeof(pkc_trust_store))) !=
           NULL;
  if (ok) {
    for (size_t i = 0; i < tb->n_stores && ok; i++) {
      const Pki__V1__TrustBundle__Store *in = tb->stores[i];
      pkc_trust_store *s = &out->stores[i];
      out->num_stores++;
      ok = copy_string(&s->ca, in->ca, err) && copy_der(&s->cert, &in->certificate, err) &&
           copy_ders(&s->chain, &s->num_chain, in->chain, in->n_chain, err) &&
           copy_string(&s->pem, in->pem, err);
    }
  } else if (out->root.data != NULL) {
    pkc_err_set(err, PKC_STATUS_INTERNAL, 1, "out of memory");
  }
  pki__v1__trust_bundle__free_unpacked(tb, NULL);
  if (!ok) {
    pkc_trust_bundle_cleanup(out);
    return 0;
  }
  out->root_trusted = pkc_certs_contains(&client->roots, out->root.data, out->root.len);
  return 1;
}

/* --- files --- */

/* pem_append adds one PEM certificate block of |der| to the text |*buf|. */
static int pem_append(char **buf, size_t *len, const pkc_der *der, pkc_error *err) {
  pki_err e;
  if (!pki_pem_append(buf, len, "CERTIFICATE", der->data, der->len, &e)) {
    pkc_err_from_pki(err, &e);
    return 0;
  }
  return 1;
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode,
                      pkc_error *err) {
  pki_err e;
  if (!pki_file_write_atomic(path, data, len, mode, &e)) {
    pkc_err_from_pki(err, &e);
    return 0;
  }
  return 1;
}

int pkc_issued_write(const pkc_issued *issued, const char *key_path, const char *cert_path,
                     const char *chain_path, pkc_error *err) {
  ERR_OR_LOCAL(err);
  if (cert_path == NULL || issued->cert.len == 0) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "no certificate or no path for it");
    return 0;
  }
  char *cert = NULL, *chain = NULL;
  size_t cert_len = 0, chain_len = 0;
  int ok = pem_append(&cert, &cert_len, &issued->cert, err);
  for (size_t i = 0; ok && i < issued->num_chain; i++) {
    ok = chain_path == NULL ? pem_append(&cert, &cert_len, &issued->chain[i], err)
                            : pem_append(&chain, &chain_len, &issued->chain[i], err);
  }
  if (ok && key_path != NULL && issued->key != NULL) {
    pki_err e;
    if (!pki_key_write_pem(key_path, issued->key, &e)) {
      pkc_err_from_pki(err, &e);
      ok = 0;
    }
  }
  if (ok && chain_path != NULL) {
    ok = write_file(chain_path, chain != NULL ? chain : "", chain_len, 0644, err);
  }
  if (ok) ok = write_file(cert_path, cert, cert_len, 0644, err);
  free(cert);
  free(chain);
  return ok;
}

/* check_store checks that a trust store's PEM is what |root| certifies:
 * the last certificate is |root| itself, self-signed, and each one before
 * is signed by the one after it. */
static int check_store(const pkc_trust_store *s, const pkc_der *root, pkc_error *err) {
  char what[256];
  snprintf(what, sizeof(what), "the trust store of CA '%s'", s->ca);
  pkc_certs certs;
  if (!pkc_certs_from_pem(&certs, (const uint8_t *)s->pem, strlen(s->pem), what, err)) {
    err->status = PKC_STATUS_FAILED_PRECONDITION;
    return 0;
  }
  int ok = 0;
  const pkc_der *last = &certs.certs[certs.num - 1];
  if (last->len != root->len || memcmp(last->data, root->data, root->len) != 0) {
    char got[256];
    pkc_cert_describe(got, sizeof(got), last->data, last->len);
    pkc_err_set(err, PKC_STATUS_FAILED_PRECONDITION, 1,
                "%s does not end with the bundle's root but with %s: not installed", what,
                got);
    goto out;
  }
  for (size_t i = 0; i < certs.num; i++) {
    const pkc_der *child = &certs.certs[i];
    const pkc_der *parent = i + 1 < certs.num ? &certs.certs[i + 1] : child;
    pki_cert_info ci, pi;
    memset(&ci, 0, sizeof(ci));
    memset(&pi, 0, sizeof(pi));
    pki_err e;
    pki_err_clear(&e);
    int good = pki_cert_info_parse(&ci, child->data, child->len, &e) &&
               pki_cert_info_parse(&pi, parent->data, parent->len, &e) &&
               CBS_mem_equal(&ci.issuer, CBS_data(&pi.subject), CBS_len(&pi.subject)) &&
               pki_cert_verify_signature(&ci, &pi.spki, &e);
    pki_cert_info_cleanup(&ci);
    pki_cert_info_cleanup(&pi);
    if (!good) {
      char got[256];
      pkc_cert_describe(got, sizeof(got), child->data, child->len);
      pkc_err_set(err, PKC_STATUS_FAILED_PRECONDITION, 1,
                  "%s: certificate %zu (%s) is not certified by the %s after it%s%s: not "
                  "installed",
                  what, i + 1, got, i + 1 < certs.num ? "certificate" : "root, itself",
                  e.msg[0] != '\0' ? ": " : "", e.msg);
      goto out;
    }
  }
  ok = 1;
out:
  pkc_certs_cleanup(&certs);
  return ok;
}

int pkc_trust_bundle_write(const pkc_trust_bundle *bundle, const char *ca_name,
                           const char *path, pkc_error *err) {
  return pkc_trust_bundle_write_ex(bundle, ca_name, path, 0, err);
}

int pkc_trust_bundle_write_ex(const pkc_trust_bundle *bundle, const char *ca_name,
                              const char *path, unsigned flags, pkc_error *err) {
  ERR_OR_LOCAL(err);
  if ((flags & ~PKC_BUNDLE_ACCEPT_NEW_ROOT) != 0) {
    pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "unknown flags 0x%x", flags);
    return 0;
  }
  if (bundle->root.len > 0 && !bundle->root_trusted &&
      !(flags & PKC_BUNDLE_ACCEPT_NEW_ROOT)) {
    char got[256];
    pkc_cert_describe(got, sizeof(got), bundle->root.data, bundle->root.len);
    pkc_err_set(err, PKC_STATUS_FAILED_PRECONDITION, 1,
                "the bundle's root (%s) is not the root this client trusts: a new root is "
                "installed only when the caller asks for it",
                got);
    return 0;
  }
  if (ca_name == NULL) {
    char *pem = NULL;
    size_t len = 0;
    if (bundle->root.len == 0) {
      pkc_err_set(err, PKC_STATUS_INVALID_ARGUMENT, 1, "the bundle has no root certificate");
      return 0;
    }
    if (!pem_append(&pem, &len, &bundle->root, err)) return 0;
    int ok = write_file(path, pem, len, 0644, err);
    free(pem);
    return ok;
  }
  for (size_t i = 0; i < bundle->num_stores; i++) {
    const pkc_trust_store *s = &bundle->stores[i];
    if (strcmp(s->ca, ca_name) == 0) {
      if (bundle->root.len == 0) {
        pkc_err_set(err, PKC_STATUS_FAILED_PRECONDITION, 1,
                    "the bundle has no root certificate to check CA '%s''s store against",
                    ca_name);
        return 0;
      }
      return check_store(s, &bundle->root, err) &&
             write_file(path, s->pem, strlen(s->pem), 0644, err);
    }
  }
  pkc_err_set(err, PKC_STATUS_NOT_FOUND, 1, "the bundle has no store for CA '%s'", ca_name);
  return 0;
}
