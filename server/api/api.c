#include "server/api/api.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/mem.h>
#include <openssl/rand.h>

#include "lib/base64.h"
#include "lib/cert_info.h"
#include "lib/crl.h"
#include "lib/grpc_status.h"
#include "lib/log.h"
#include "lib/serial.h"
#include "proto/pki/v1/pki.pb-c.h"
#include "server/metrics/metrics.h"
#include "server/pipeline/event.h"

/* An issuance or a revocation the api has handed to the pipeline: the job,
 * and the call to answer when it comes back. */
typedef struct api_request {
  pkid_job job;
  pkid_api *api;
  pkid_pending pending; /* the call; NULL once the call has gone */
  uint64_t request_id;
  int streaming; /* answer as an IssueStream message */
  int counted;   /* in its caller's quota */
  char quota_key[512]; /* the caller's identity; "" for bootstrap */
} api_request;

static void on_job_done(pkid_job *job);

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* on_call_gone: the call was reset or its connection closed before the
 * job came back: a worker that has not signed it yet drops it. */
static void on_call_gone(pkid_pending *p) {
  api_request *r = (api_request *)((char *)p - offsetof(api_request, pending));
  atomic_store_explicit(&r->job.cancelled, 1, memory_order_relaxed);
}

static api_request *request_new(pkid_api *api, pki_record_type type, pki_err *err) {
  api_request *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    PKI_ERR_OOM(err);
    return NULL;
  }
  pkid_job_init(&r->job, type, on_job_done);
  r->api = api;
  r->pending.on_gone = on_call_gone;
  return r;
}

static void request_free(api_request *r) {
  pkid_call_untrack(&r->pending);
  if (r->counted) pkid_quota_release(r->api->quotas, r->quota_key);
  pkid_job_cleanup(&r->job);
  free(r);
}

/* submit hands |r| to the pipeline, answering |call| later, within the
 * caller's share (quota.h): past it, 0 with |*retry_ms|. */
static int submit(pkid_call *call, api_request *r, uint64_t *retry_ms, pki_err *err) {
  const pkid_peer *peer = pkid_call_peer(call);
  if (r->api->stopped) {
    PKI_ERR(err, PKI_ERR_UNAVAILABLE, "pkid's journal failed; it is restarting");
    return 0;
  }
  snprintf(r->quota_key, sizeof(r->quota_key), "%s", peer->identity);
  if (!pkid_quota_take(r->api->quotas, r->quota_key, now_ms(), retry_ms, err)) return 0;
  r->counted = 1;
  pkid_call_track(call, &r->pending);
  if (!pkid_workers_submit(r->api->workers, &r->job, err)) {
    pkid_call_untrack(&r->pending);
    *retry_ms = 100;
    pkid_metrics_limited("pool_full");
    return 0;
  }
  return 1;
}

/* --- who is calling ------------------------------------------------------------ */

/* caller_service finds the catalogue service of the caller, or fails. It
 * runs for every call (at its headers) and every message of a stream: a
 * certificate is the caller's identity only while it is valid, not revoked,
 * and from the CA the catalogue assigns to that identity. */
static const pki_catalog_service *caller_service(pkid_api *api, pkid_call *call,
                                                 pki_err *err) {
  const pkid_peer *peer = pkid_call_peer(call);
  if (peer->identity[0] == '\0') {
    PKI_ERR(err, PKI_ERR_AUTH, "a client certificate with a pkid identity is required");
    return NULL;
  }
  /* Checked at the handshake, and again now: a connection outlives the
   * certificate it was opened with (RFC 5280 6.1.3 (a)(2), at the time of
   * use). */
  int64_t now = (int64_t)time(NULL);
  if (now < peer->not_before || now > peer->not_after) {
    PKI_ERR(err, PKI_ERR_AUTH, "the client certificate is not valid now (notAfter %lld)",
            (long long)peer->not_after);
    return NULL;
  }
  /* A revoked certificate authorizes nothing, even on a connection opened
   * before the revocation. */
  pkid_cert_record rec;
  if (pkid_status_get(api->status, peer->serial.bytes, peer->serial.len, &rec) &&
      rec.revoked) {
    PKI_ERR(err, PKI_ERR_AUTH, "the client certificate is revoked");
    return NULL;
  }
  const pki_catalog_service *svc = pki_catalog_find_identity(api->cat, peer->identity);
  if (svc == NULL) {
    PKI_ERR(err, PKI_ERR_DENIED, "identity %s is not in the catalogue", peer->identity);
    return NULL;
  }
  /* Any of pkid's intermediates can sign a certificate that verifies: only
   * the one the catalogue names for this service may vouch for its
   * identity (its key identifier is the certificate's AKI). */
  const pkid_ca *ca = pkid_cas_find(api->cas, svc->ca);
  if (ca == NULL || peer->issuer_key_id_len != ca->issuer.ski_len ||
      memcmp(peer->issuer_key_id, ca->issuer.ski, ca->issuer.ski_len) != 0) {
    PKI_ERR(err, PKI_ERR_AUTH, "identity %s is vouched for only by CA '%s'", peer->identity,
            svc->ca);
    return NULL;
  }
  return svc;
}

/* --- authorization at the headers (rpc.h) ----------------------------------------- */

/* authorize_identity: the call needs a caller in the catalogue. */
static int authorize_identity(void *ctx, pkid_call *call, pki_err *err) {
  return caller_service(ctx, call, err) != NULL;
}

/* authorize_issue: a caller in the catalogue, or, where bootstrap is on, a
 * caller with no certificate, whose token is checked with the request. */
static int authorize_issue(void *ctx, pkid_call *call, pki_err *err) {
  pkid_api *api = ctx;
  if (pkid_call_peer(call)->identity[0] == '\0' && api->bootstrap) return 1;
  return authorize_identity(ctx, call, err);
}

int pkid_api_authorize_audit(void *ctx, pkid_call *call, pki_err *err) {
  const pki_catalog_service *svc = caller_service(ctx, call, err);
  if (svc == NULL) return 0;
  if (!(svc->permissions & PKI_PERM_AUDIT)) {
    PKI_ERR(err, PKI_ERR_DENIED, "%s may not read the audit trail (no audit permission)",
            svc->identity);
    return 0;
  }
  return 1;
}

/* authorize_any: the trust bundle is public (CA certificates are), to a
 * client the TLS layer let in. */
static int authorize_any(void *ctx, pkid_call *call, pki_err *err) {
  (void)ctx;
  (void)call;
  (void)err;
  return 1;
}

static int usage_from_proto(Pki__V1__Usage u, pki_usage *out) {
  switch (u) {
    case PKI__V1__USAGE__USAGE_SERVER: *out = PKI_USAGE_SERVER; return 1;
    case PKI__V1__USAGE__USAGE_CLIENT: *out = PKI_USAGE_CLIENT; return 1;
    default: return 0;
  }
}

static int service_has_usage(const pki_catalog_service *svc, pki_usage usage) {
  for (size_t i = 0; i < svc->num_certs; i++) {
    if (svc->certs[i].usage == usage) return 1;
  }
  return 0;
}

/* --- answers --------------------------------------------------------------------- */

/* send_packed packs |msg| and sends it; out of memory ends the call. */
static void send_packed(pkid_call *call, const ProtobufCMessage *msg) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(len > 0 ? len : 1);
  if (buf == NULL) {
    pki_err err;
    PKI_ERR_OOM(&err);
    pkid_call_fail(call, &err);
    return;
  }
  protobuf_c_message_pack(msg, buf);
  pkid_call_send(call, buf, len);
  free(buf);
}

/* unpack decodes a request message of type |d|, or ends the call with
 * INVALID_ARGUMENT naming it. Free with protobuf_c_message_free_unpacked. */
static void *unpack(pkid_call *call, const ProtobufCMessageDescriptor *d, const uint8_t *msg,
                    size_t len, const char *where) {
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, msg);
  if (m == NULL) {
    pki_err err;
    PKI_ERR(&err, PKI_ERR_INVALID, "malformed %s%s", d->short_name, where);
    pkid_call_fail(call, &err);
  }
  return m;
}

/* reply_unary sends |msg| and OK. */
static void reply_unary(pkid_call *call, const ProtobufCMessage *msg) {
  send_packed(call, msg);
  pkid_call_ok(call);
}

void pkid_api_on_refused(void *ctx, const pkid_call *call, int grpc_status,
                         const char *message) {
  pkid_api *api = ctx;
  if (api->refusals == NULL) return;
  const char *identity = pkid_call_peer(call)->identity;
  const pki_catalog_service *svc =
      identity[0] != '\0' ? pki_catalog_find_identity(api->cat, identity) : NULL;
  pkid_refusals_note(api->refusals, identity, svc != NULL ? svc->name : NULL,
                     pkid_call_method(call), grpc_status, message, (int64_t)time(NULL));
}

/* refuse answers one request that will not be issued: the call's status
 * for a unary call, an answer with the status for one of a stream. A
 * refusal worth retrying carries when (|retry_ms|, 0 for none): in the
 * grpc-retry-pushback-ms trailer, or in a stream's answer's message. */
static void refuse(pkid_api *api, pkid_call *call, uint64_t request_id, int streaming,
                   const pki_err *err, uint64_t retry_ms) {
  /* "Try again later" is counted by the metrics, not logged: under
   * overload a line per request would only add to the load. */
  static pki_log_limit refused_log = {.per_second = 50};
  if (err->code != PKI_ERR_EXHAUSTED && err->code != PKI_ERR_UNAVAILABLE &&
      pki_log_allow(&refused_log)) {
    pki_log("info", "refused", "identity", pkid_call_peer(call)->identity, "reason", err->msg,
            "suppressed", pki_log_suppressed(&refused_log), NULL);
  }
  if (!streaming) {
    pkid_call_fail_retry(call, err, retry_ms);
    return;
  }
  char msg[sizeof(err->msg) + 48];
  snprintf(msg, sizeof(msg), retry_ms > 0 ? "%s (retry in %llu ms)" : "%s", err->msg,
           (unsigned long long)retry_ms);
  Pki__V1__IssueResponse resp = PKI__V1__ISSUE_RESPONSE__INIT;
  resp.request_id = request_id;
  resp.status_code = (int32_t)pki_grpc_status_from_err(err->code);
  resp.status_message = msg;
  send_packed(call, &resp.base);
  /* The call goes on, so the rpc's hook does not hear of this one. */
  pkid_api_on_refused(api, call, resp.status_code, err->msg);
}

/* reply_issued answers |call| with the certificate of a durable job. */
static void reply_issued(pkid_call *call, const api_request *r) {
  const pkid_job *job = &r->job;
  const pkid_ca *ca = job->rec.ca;
  Pki__V1__IssueResponse resp = PKI__V1__ISSUE_RESPONSE__INIT;
  ProtobufCBinaryData chain[PKID_MAX_CHAIN];
  char serial_hex[2 * PKI_SERIAL_MAX + 1];
  resp.request_id = r->request_id;
  resp.certificate.data = job->cert;
  resp.certificate.len = job->rec.cert_len;
  for (size_t i = 0; i < ca->num_chain; i++) {
    chain[i].data = ca->chain[i];
    chain[i].len = ca->chain_len[i];
  }
  resp.chain = chain;
  resp.n_chain = ca->num_chain;
  pki_serial_to_hex(serial_hex, &job->rec.serial);
  resp.serial = serial_hex;
  resp.not_after = job->rec.not_after;
  /* No log line per issuance: the journal is the audit trail, and the
   * metrics count them. */
  if (r->streaming) {
    send_packed(call, &resp.base);
  } else {
    reply_unary(call, &resp.base);
  }
}

/* reply_revoked answers a Revoke: when, and every serial revoked (the one
 * named first, then, by key, the others). */
static void reply_revoked(pkid_call *call, int64_t revoked_at, const pki_serial *named,
                          const pkid_record *others, size_t num_others) {
  Pki__V1__RevokeResponse resp = PKI__V1__REVOKE_RESPONSE__INIT;
  resp.revoked_at = revoked_at;
  size_t n = 1 + num_others;
  char *hex = malloc(n * (2 * PKI_SERIAL_MAX + 1));
  char **ptrs = malloc(n * sizeof(*ptrs));
  if (hex != NULL && ptrs != NULL) {
    for (size_t i = 0; i < n; i++) {
      ptrs[i] = hex + i * (2 * PKI_SERIAL_MAX + 1);
      pki_serial_to_hex(ptrs[i], i == 0 ? named : &others[i - 1].serial);
    }
    resp.revoked_serials = ptrs;
    resp.n_revoked_serials = n;
  }
  reply_unary(call, &resp.base);
  free(ptrs);
  free(hex);
}

/* on_job_done: the pipeline gives back a job, durable or failed. The
 * index learns of it before anyone hears of it, and the responder has its
 * first OCSP response. */
static void on_job_done(pkid_job *job) {
  api_request *r = (api_request *)((char *)job - offsetof(api_request, job));
  pkid_api *api = r->api;
  if (job->ok) {
    pkid_job_apply(job, api->store);
    pkid_counter_add(job->rec.type == PKI_REC_ISSUE ? pkid_m.issued : pkid_m.revoked,
                     1 + job->num_same_key);
  } else if (job->rec.has_token) {
    /* A token whose issuance failed may be used again. */
    pkid_store_token_release(api->store, job->rec.token_id);
  }
  if (job->rec.type == PKI_REC_REVOKE && job->ok) {
    char hex[2 * PKI_SERIAL_MAX + 1], reason[8];
    snprintf(reason, sizeof(reason), "%u", job->rec.reason);
    pki_serial_to_hex(hex, &job->rec.serial);
    pki_log("info", "revoked", "serial", hex, "reason", reason, "identity", job->identity, NULL);
    for (size_t i = 0; i < job->num_same_key; i++) {
      pki_serial_to_hex(hex, &job->same_key_recs[i].serial);
      pki_log("info", "revoked", "serial", hex, "reason", reason, "identity", job->identity,
              "by", "same_key", NULL);
    }
  }
  pkid_call *call = r->pending.call;
  if (call != NULL) {
    pkid_call_untrack(&r->pending);
    if (!job->ok) {
      refuse(api, call, r->request_id, r->streaming, &job->err, 0);
    } else if (job->rec.type == PKI_REC_ISSUE) {
      reply_issued(call, r);
    } else {
      reply_revoked(call, job->rec.revoked_at, &job->rec.serial, job->same_key_recs,
                    job->num_same_key);
    }
    /* A stream ends once the client has said all and every answer is out. */
    if (r->streaming && pkid_call_half_closed(call) && pkid_call_num_pending(call) == 0) {
      pkid_call_ok(call);
    }
  }
  request_free(r);
}

/* --- issuance ---------------------------------------------------------------------- */

/* bootstrap_service checks a bootstrap token presented without a client
 * certificate and takes it (marks it used); it returns the service the
 * token is for, or NULL. */
static const pki_catalog_service *bootstrap_service(pkid_api *api,
                                                    const Pki__V1__IssueRequest *req,
                                                    pki_token *tok, pki_err *err) {
  if (!api->bootstrap) {
    PKI_ERR(err, PKI_ERR_AUTH, "bootstrap enrollment is not enabled on this pkid");
    return NULL;
  }
  if (!pki_token_check(tok, req->bootstrap_token, strlen(req->bootstrap_token),
                       api->token_key, (int64_t)time(NULL), err)) {
    return NULL;
  }
  const pki_catalog_service *svc = pki_catalog_find_service(api->cat, tok->service);
  if (svc == NULL) {
    PKI_ERR(err, PKI_ERR_DENIED, "the token's service '%s' is not in the catalogue",
            tok->service);
    return NULL;
  }
  if (req->service[0] != '\0' && strcmp(req->service, svc->name) != 0) {
    PKI_ERR(err, PKI_ERR_DENIED, "the token is for service '%s', not '%s'", svc->name,
            req->service);
    return NULL;
  }
  if (!pkid_store_token_take(api->store, tok->id, err)) return NULL;
  return svc;
}

/* issue_service decides which service |req| is for and whether the caller
 * may have it. */
static const pki_catalog_service *issue_service(pkid_api *api, pkid_call *call,
                                                const Pki__V1__IssueRequest *req,
                                                pki_err *err) {
  const pki_catalog_service *caller = caller_service(api, call, err);
  if (caller == NULL) return NULL;
  if (req->service[0] == '\0' || strcmp(req->service, caller->name) == 0) return caller;
  const pki_catalog_service *svc = pki_catalog_find_service(api->cat, req->service);
  if (svc == NULL) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", req->service);
    return NULL;
  }
  /* Only admin identities issue for others. */
  if (!(caller->permissions & PKI_PERM_ADMIN)) {
    PKI_ERR(err, PKI_ERR_DENIED, "%s may not issue for service '%s'", caller->identity,
            svc->name);
    return NULL;
  }
  return svc;
}

/* issue_job fills the job of an authorized request. */
static int issue_job(pkid_api *api, api_request *r, const pki_catalog_service *svc,
                     const Pki__V1__IssueRequest *req, pki_err *err) {
  pkid_job *job = &r->job;
  pki_usage usage;
  if (!usage_from_proto(req->usage, &usage)) {
    PKI_ERR(err, PKI_ERR_INVALID, "usage must be USAGE_SERVER or USAGE_CLIENT");
    return 0;
  }
  if (!service_has_usage(svc, usage)) {
    PKI_ERR(err, PKI_ERR_INVALID, "service '%s' has no %s certificate", svc->name,
            usage == PKI_USAGE_SERVER ? "server" : "client");
    return 0;
  }
  const pkid_ca *ca = pkid_cas_find(api->cas, svc->ca);
  if (ca == NULL) {
    PKI_ERR(err, PKI_ERR_PRECONDITION, "CA '%s' is not loaded", svc->ca);
    return 0;
  }
  if (req->csr.len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "csr is empty");
    return 0;
  }
  if ((job->csr = malloc(req->csr.len)) == NULL) {
    PKI_ERR_OOM(err);
    return 0;
  }
  memcpy(job->csr, req->csr.data, req->csr.len);
  job->csr_len = req->csr.len;
  job->cat = api->cat;
  job->svc = svc;
  job->validity_s = req->validity_seconds;
  job->now = (int64_t)time(NULL);
  job->rec.ca = ca;
  job->rec.service = svc->name;
  job->rec.usage = usage;
  return pkid_serials_next(api->serials, &job->rec.serial, err);
}

/* issue_one authorizes and submits one IssueRequest; |renews| (NULL: a new
 * issuance) is the certificate a Renew replaces, for the record. */
static void issue_one(pkid_api *api, pkid_call *call, const Pki__V1__IssueRequest *req,
                      int streaming, const pki_serial *renews) {
  pki_err err;
  pki_err_clear(&err);
  pki_token tok;
  const pki_catalog_service *svc;
  uint64_t retry_ms = 0;
  int bootstrap = pkid_call_peer(call)->identity[0] == '\0' && req->bootstrap_token[0] != '\0';
  api_request *r = request_new(api, PKI_REC_ISSUE, &err);
  if (r == NULL) goto refuse;
  r->request_id = req->request_id;
  r->streaming = streaming;
  /* First enrollment: no certificate yet, a one-time token instead. */
  svc = bootstrap ? bootstrap_service(api, req, &tok, &err) : issue_service(api, call, req, &err);
  if (svc == NULL) goto refuse;
  if (bootstrap) {
    r->job.rec.has_token = 1;
    memcpy(r->job.rec.token_id, tok.id, sizeof(r->job.rec.token_id));
    char who[512];
    snprintf(who, sizeof(who), "bootstrap:%s", svc->name);
    pkid_job_set_identity(&r->job, who);
  } else {
    pkid_job_set_identity(&r->job, pkid_call_peer(call)->identity);
  }
  if (renews != NULL) r->job.rec.renews = *renews;
  if (!issue_job(api, r, svc, req, &err) || !submit(call, r, &retry_ms, &err)) {
    if (bootstrap) pkid_store_token_release(api->store, tok.id);
    goto refuse;
  }
  return;
refuse:
  if (r != NULL) request_free(r);
  refuse(api, call, req->request_id, streaming, &err, retry_ms);
}

/* issue_message decodes one IssueRequest, alone or one of a stream. A
 * stream cannot say which of its requests was garbage: it ends. */
static void issue_message(pkid_api *api, pkid_call *call, const uint8_t *msg, size_t len,
                          int streaming) {
  Pki__V1__IssueRequest *req = unpack(call, &pki__v1__issue_request__descriptor, msg, len,
                                      streaming ? " on the stream" : "");
  if (req == NULL) return;
  issue_one(api, call, req, streaming, NULL);
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void on_issue(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  issue_message(ctx, call, msg, len, 0);
}

static void on_issue_stream(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  issue_message(ctx, call, msg, len, 1);
}

static void on_issue_stream_end(void *ctx, pkid_call *call) {
  (void)ctx;
  if (pkid_call_num_pending(call) == 0) pkid_call_ok(call);
}

/* on_renew issues a new certificate of the same service and usage as the
 * client certificate the call came with: holding it is the authorization. */
static void on_renew(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  pkid_api *api = ctx;
  pki_err err;
  Pki__V1__RenewRequest *req = unpack(call, &pki__v1__renew_request__descriptor, msg, len, "");
  if (req == NULL) return;
  const pkid_peer *peer = pkid_call_peer(call);
  pki_cert_info info;
  if (caller_service(api, call, &err) == NULL ||
      !pki_cert_info_parse(&info, peer->leaf, peer->leaf_len, &err)) {
    pkid_call_fail(call, &err);
    goto out;
  }
  int client = (info.ext_key_usage & PKI_USAGE_CLIENT) != 0;
  pki_cert_info_cleanup(&info);
  Pki__V1__IssueRequest issue = PKI__V1__ISSUE_REQUEST__INIT;
  issue.csr = req->csr;
  issue.usage = client ? PKI__V1__USAGE__USAGE_CLIENT : PKI__V1__USAGE__USAGE_SERVER;
  issue.validity_seconds = req->validity_seconds;
  issue_one(api, call, &issue, 0, &peer->serial);
out:
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* --- the trust bundle ------------------------------------------------------------------ */

static void on_get_trust_bundle(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  pkid_api *api = ctx;
  pki_err err;
  Pki__V1__GetTrustBundleRequest *req =
      unpack(call, &pki__v1__get_trust_bundle_request__descriptor, msg, len, "");
  if (req == NULL) return;
  const pkid_cas *cas = api->cas;
  Pki__V1__TrustBundle bundle = PKI__V1__TRUST_BUNDLE__INIT;
  Pki__V1__TrustBundle__Store stores[16], *store_ptrs[16];
  ProtobufCBinaryData chains[16][PKID_MAX_CHAIN];
  bundle.root.data = cas->root;
  bundle.root.len = cas->root_len;
  bundle.stores = store_ptrs;
  for (size_t i = 0; i < cas->num_cas && bundle.n_stores < 16; i++) {
    const pkid_ca *ca = &cas->cas[i];
    if (req->ca[0] != '\0' && strcmp(req->ca, ca->def->name) != 0) continue;
    Pki__V1__TrustBundle__Store *s = &stores[bundle.n_stores];
    pki__v1__trust_bundle__store__init(s);
    s->ca = (char *)ca->def->name;
    s->certificate.data = ca->chain[0];
    s->certificate.len = ca->chain_len[0];
    for (size_t j = 0; j < ca->num_parents_and_root; j++) {
      chains[bundle.n_stores][j].data = ca->parents_and_root[j];
      chains[bundle.n_stores][j].len = ca->parents_and_root_len[j];
    }
    s->chain = chains[bundle.n_stores];
    s->n_chain = ca->num_parents_and_root;
    s->pem = ca->truststore_pem;
    store_ptrs[bundle.n_stores++] = s;
  }
  if (req->ca[0] != '\0' && bundle.n_stores == 0) {
    PKI_ERR(&err, PKI_ERR_NOT_FOUND, "no CA '%s'", req->ca);
    pkid_call_fail(call, &err);
  } else {
    reply_unary(call, &bundle.base);
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* --- revocation and status ---------------------------------------------------------------- */

/* find_record reads a hex serial from a request and finds what pkid knows
 * of it. */
static int find_record(pkid_api *api, const char *hex, pki_serial *serial,
                       pkid_cert_record *rec, pki_err *err) {
  if (!pki_serial_from_hex(serial, hex, err)) return 0;
  if (!pkid_status_get(api->status, serial->bytes, serial->len, rec)) {
    PKI_ERR(err, PKI_ERR_NOT_FOUND, "pkid issued no certificate %s", hex);
    return 0;
  }
  return 1;
}

/* may_see: a certificate's status (service, CA, validity) is for its
 * holder's service and for admins, not for any identity that asks. */
static int may_see(const pkid_api *api, const pki_catalog_service *caller,
                   const pkid_cert_record *rec, const char *hex, pki_err *err) {
  if ((caller->permissions & PKI_PERM_ADMIN) ||
      (rec->service < api->cat->num_services && &api->cat->services[rec->service] == caller)) {
    return 1;
  }
  PKI_ERR(err, PKI_ERR_DENIED, "%s may not see %s", caller->identity, hex);
  return 0;
}

static void on_revoke(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  pkid_api *api = ctx;
  pki_err err;
  Pki__V1__RevokeRequest *req = unpack(call, &pki__v1__revoke_request__descriptor, msg, len, "");
  if (req == NULL) return;
  const pki_catalog_service *caller = caller_service(api, call, &err);
  pki_serial serial;
  pkid_cert_record rec;
  api_request *r = NULL;
  uint64_t retry_ms = 0;
  if (caller == NULL || !find_record(api, req->serial, &serial, &rec, &err)) goto fail;
  /* A holder revokes its own service's certificates; an admin any. */
  if (!may_see(api, caller, &rec, req->serial, &err)) {
    PKI_ERR(&err, PKI_ERR_DENIED, "%s may not revoke %s", caller->identity, req->serial);
    goto fail;
  }
  /* Any CRLReason but removeFromCRL, which only delta CRLs use (RFC 5280
   * 5.3.1). */
  if (!pki_crl_reason_valid((int)req->reason) ||
      req->reason == PKI__V1__REVOCATION_REASON__REVOCATION_REASON_REMOVE_FROM_CRL) {
    PKI_ERR(&err, PKI_ERR_INVALID, "revocation reason %d is not one a revocation may give",
            (int)req->reason);
    goto fail;
  }
  int key_compromise = req->reason == PKI__V1__REVOCATION_REASON__REVOCATION_REASON_KEY_COMPROMISE;
  if (req->revoke_same_key && !key_compromise) {
    PKI_ERR(&err, PKI_ERR_INVALID, "revoke_same_key needs reason keyCompromise");
    goto fail;
  }
  int64_t now = (int64_t)time(NULL);
  /* invalidityDate: when the key or the certificate went bad, which is
   * before it is reported, not after (RFC 5280 5.3.2). */
  if (req->invalidity_date < 0 || req->invalidity_date > now) {
    PKI_ERR(&err, PKI_ERR_INVALID, "invalidity_date %lld is not a time in the past",
            (long long)req->invalidity_date);
    goto fail;
  }
  if (rec.revoked &&
      (!key_compromise || pkid_store_key_searched(api->store, &serial, req->revoke_same_key))) {
    /* Revocation is final and idempotent: report the first. A later
     * keyCompromise still goes on, once: its key must get nothing more,
     * and with revoke_same_key its other certificates go too. */
    reply_revoked(call, rec.revoked_at, &serial, NULL, 0);
    goto out;
  }
  const pkid_ca *ca = pkid_cas_at(api->cas, rec.ca);
  if (ca == NULL) {
    PKI_ERR(&err, PKI_ERR_PRECONDITION, "the CA of %s is not loaded", req->serial);
    goto fail;
  }
  if ((r = request_new(api, PKI_REC_REVOKE, &err)) == NULL) goto fail;
  r->job.rec.ca = ca;
  r->job.rec.serial = serial;
  r->job.rec.reason = (uint8_t)req->reason;
  r->job.rec.invalidity_date = req->invalidity_date;
  r->job.same_key = req->revoke_same_key;
  r->job.now = r->job.rec.revoked_at = now;
  pkid_job_set_identity(&r->job, pkid_call_peer(call)->identity);
  if (!submit(call, r, &retry_ms, &err)) goto fail;
  goto out;
fail:
  if (r != NULL) request_free(r);
  pkid_call_fail_retry(call, &err, retry_ms);
out:
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void on_get_status(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  pkid_api *api = ctx;
  pki_err err;
  Pki__V1__GetStatusRequest *req =
      unpack(call, &pki__v1__get_status_request__descriptor, msg, len, "");
  if (req == NULL) return;
  pki_serial serial;
  pkid_cert_record rec;
  const pki_catalog_service *caller = caller_service(api, call, &err);
  if (caller == NULL || !find_record(api, req->serial, &serial, &rec, &err) ||
      !may_see(api, caller, &rec, req->serial, &err)) {
    pkid_call_fail(call, &err);
    goto out;
  }
  Pki__V1__CertificateStatus st = PKI__V1__CERTIFICATE_STATUS__INIT;
  char hex[2 * PKI_SERIAL_MAX + 1];
  pki_serial_to_hex(hex, &serial);
  st.serial = hex;
  if (rec.revoked) {
    st.state = PKI__V1__CERTIFICATE_STATUS__STATE__STATE_REVOKED;
  } else if (rec.not_after < (int64_t)time(NULL)) {
    st.state = PKI__V1__CERTIFICATE_STATUS__STATE__STATE_EXPIRED;
  } else {
    st.state = PKI__V1__CERTIFICATE_STATUS__STATE__STATE_GOOD;
  }
  if (rec.service < api->cat->num_services) {
    st.service = api->cat->services[rec.service].name;
  }
  st.usage = rec.usage == PKI_USAGE_CLIENT ? PKI__V1__USAGE__USAGE_CLIENT
                                           : PKI__V1__USAGE__USAGE_SERVER;
  const pkid_ca *ca = pkid_cas_at(api->cas, rec.ca);
  if (ca != NULL) st.issuer = (char *)ca->def->name;
  st.not_before = rec.not_before;
  st.not_after = rec.not_after;
  st.revoked_at = rec.revoked_at;
  st.revocation_reason = (Pki__V1__RevocationReason)rec.reason;
  if (rec.revoked && rec.ca < api->cas->num_cas) {
    const pkid_revoked *e = pkid_ca_crls_find(&api->store->crls[rec.ca], &serial);
    if (e != NULL) st.invalidity_date = e->invalidity_date;
  }
  reply_unary(call, &st.base);
out:
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* --- load balancers' rotations ------------------------------------------------------ */

/* A ReportRotation call waiting for its record to be durable. */
typedef struct rotation_call {
  pkid_pending pending; /* the call; NULL once it has gone */
  pkid_api *api;
  char quota_key[512]; /* in the caller's share, as an issuance is */
} rotation_call;

static void on_rotation_journaled(void *ctx, int ok, const pki_err *err) {
  rotation_call *rc = ctx;
  pkid_quota_release(rc->api->quotas, rc->quota_key);
  pkid_call *call = rc->pending.call;
  if (call != NULL) {
    pkid_call_untrack(&rc->pending);
    if (ok) {
      Pki__V1__RotationReceipt resp = PKI__V1__ROTATION_RECEIPT__INIT;
      reply_unary(call, &resp.base);
    } else {
      pkid_call_fail(call, err);
    }
  }
  free(rc);
}

/* printable_name: a load balancer's name for a certificate is a path or a
 * label, shown to auditors: printable ASCII, 1 to 255 octets. */
static int printable_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 255) return 0;
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
  }
  return 1;
}

static void on_report_rotation(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  pkid_api *api = ctx;
  pki_err err;
  Pki__V1__RotationReport *req =
      unpack(call, &pki__v1__rotation_report__descriptor, msg, len, "");
  if (req == NULL) return;
  const pki_catalog_service *caller = caller_service(api, call, &err);
  pki_serial serial, previous;
  pkid_cert_record rec;
  rotation_call *rc = NULL;
  uint64_t retry_ms = 0;
  if (caller == NULL || !find_record(api, req->serial, &serial, &rec, &err)) goto fail;
  /* A load balancer reports its own service's certificates; an admin any. */
  if (!may_see(api, caller, &rec, req->serial, &err)) {
    PKI_ERR(&err, PKI_ERR_DENIED, "%s may not report %s: not its service's certificate",
            caller->identity, req->serial);
    goto fail;
  }
  if (!printable_name(req->frontend)) {
    PKI_ERR(&err, PKI_ERR_INVALID, "frontend must be 1 to 255 printable ASCII characters");
    goto fail;
  }
  if (req->previous_serial[0] != '\0' &&
      !pki_serial_from_hex(&previous, req->previous_serial, &err)) {
    goto fail;
  }
  if (api->stopped) {
    PKI_ERR(&err, PKI_ERR_UNAVAILABLE, "pkid's journal failed; it is restarting");
    goto fail;
  }
  char hex[2 * PKI_SERIAL_MAX + 1], prev_hex[2 * PKI_SERIAL_MAX + 1], detail[512];
  pki_serial_to_hex(hex, &serial);
  if (req->previous_serial[0] != '\0') {
    pki_serial_to_hex(prev_hex, &previous);
    snprintf(detail, sizeof(detail), "%s: %s in service, replacing %s", req->frontend, hex,
             prev_hex);
  } else {
    snprintf(detail, sizeof(detail), "%s: %s in service", req->frontend, hex);
  }
  if ((rc = calloc(1, sizeof(*rc))) == NULL) {
    PKI_ERR_OOM(&err);
    goto fail;
  }
  rc->api = api;
  snprintf(rc->quota_key, sizeof(rc->quota_key), "%s", pkid_call_peer(call)->identity);
  if (!pkid_quota_take(api->quotas, rc->quota_key, now_ms(), &retry_ms, &err)) {
    free(rc);
    goto fail;
  }
  pkid_event ev = {.kind = PKI_EVENT_LB_ROTATION,
                   .outcome = PKI_OUTCOME_OK,
                   .identity = pkid_call_peer(call)->identity,
                   .service = rec.service < api->cat->num_services
                                  ? api->cat->services[rec.service].name
                                  : NULL,
                   .serial = &serial,
                   .detail = detail};
  pkid_call_track(call, &rc->pending);
  if (!pkid_event_submit(api->workers, &ev, on_rotation_journaled, rc, &err)) {
    pkid_call_untrack(&rc->pending);
    pkid_quota_release(api->quotas, rc->quota_key);
    free(rc);
    retry_ms = 100;
    goto fail;
  }
  goto out;
fail:
  pkid_call_fail_retry(call, &err, retry_ms);
out:
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* --- ACME external account binding keys (RFC 8555 7.3.4) --------------------------- */

/* The kid's random part: 16 octets, 22 base64url characters after "eab-". */
#define EAB_KID_RANDOM 16
#define EAB_KID_PREFIX "eab-"

/* A CreateAcmeEab call waiting for its record to be durable. */
typedef struct eab_call {
  pkid_pending pending; /* the call; NULL once it has gone */
  pkid_api *api;
  char quota_key[512]; /* in the caller's share, as an issuance is */
  char kid[PKID_ACME_KID_MAX + 1];
  char *service; /* a copy: a reload may free the catalogue before the record is durable */
  int64_t time;  /* the record's, which a replay applies it with */
} eab_call;

/* reply_eab answers with |kid| and its key, derived again from the master
 * key rather than kept since the request: the key exists in pkid's memory
 * only while it is being sent. Our copies are wiped; the ones the rpc and
 * TLS layers make on the way out are theirs. */
static void reply_eab(pkid_call *call, const pkid_api *api, const char *kid) {
  uint8_t key[PKID_ACME_EAB_KEY_LEN];
  char text[PKI_BASE64_ENCODED_MAX(PKID_ACME_EAB_KEY_LEN) + 1];
  uint8_t buf[256]; /* a kid and 43 characters, with their tags */
  size_t text_len;
  pki_err err;
  pkid_acme_eab_key(key, api->acme_eab_master, kid);
  int ok = pki_base64_encode(text, sizeof(text), &text_len, key, sizeof(key),
                             PKI_BASE64_URL | PKI_BASE64_NO_PAD, &err);
  OPENSSL_cleanse(key, sizeof(key));
  Pki__V1__CreateAcmeEabResponse resp = PKI__V1__CREATE_ACME_EAB_RESPONSE__INIT;
  resp.kid = (char *)kid;
  resp.hmac_key = text;
  if (ok && protobuf_c_message_get_packed_size(&resp.base) > sizeof(buf)) {
    PKI_ERR(&err, PKI_ERR_INTERNAL, "the CreateAcmeEabResponse does not fit its buffer");
    ok = 0;
  }
  if (ok) {
    /* Packed here, not by send_packed: its heap buffer would be freed
     * with the key still in it. */
    size_t len = protobuf_c_message_pack(&resp.base, buf);
    pkid_call_send(call, buf, len);
    OPENSSL_cleanse(buf, sizeof(buf));
    pkid_call_ok(call);
  } else {
    pkid_call_fail(call, &err);
  }
  OPENSSL_cleanse(text, sizeof(text));
}

static void on_eab_journaled(void *ctx, int ok, const pki_err *err) {
  eab_call *ec = ctx;
  pkid_api *api = ec->api;
  pkid_quota_release(api->quotas, ec->quota_key);
  pki_err apply_err;
  int applied = 0;
  if (ok) {
    /* The record is durable, so the state learns of the kid whether or
     * not the caller is still there to hear of it: a replay would apply
     * it too, and the state is what the journal says. */
    applied = pkid_acme_state_apply(api->acme, PKI_EVENT_EAB_CREATED, ec->service,
                                    (const uint8_t *)ec->kid, strlen(ec->kid), ec->time,
                                    &apply_err);
    if (!applied) {
      pki_log("error", "acme_eab_apply_failed", "kid", ec->kid, "service", ec->service,
              "reason", apply_err.msg, NULL);
    }
  }
  pkid_call *call = ec->pending.call;
  if (call != NULL) {
    pkid_call_untrack(&ec->pending);
    if (!ok) {
      pkid_call_fail(call, err);
    } else if (!applied) {
      pkid_call_fail(call, &apply_err);
    } else {
      reply_eab(call, api, ec->kid);
    }
  }
  free(ec->service);
  free(ec);
}

/* new_kid makes a key id no key of the state has: 128 random bits, so a
 * second try is for a broken RNG more than for chance. */
static int new_kid(const pkid_api *api, char kid[PKID_ACME_KID_MAX + 1], pki_err *err) {
  for (int attempt = 0; attempt < 4; attempt++) {
    uint8_t rnd[EAB_KID_RANDOM];
    size_t len;
    RAND_bytes(rnd, sizeof(rnd));
    memcpy(kid, EAB_KID_PREFIX, sizeof(EAB_KID_PREFIX) - 1);
    if (!pki_base64_encode(kid + sizeof(EAB_KID_PREFIX) - 1,
                           PKID_ACME_KID_MAX + 1 - (sizeof(EAB_KID_PREFIX) - 1), &len, rnd,
                           sizeof(rnd), PKI_BASE64_URL | PKI_BASE64_NO_PAD, err)) {
      return 0;
    }
    if (pkid_acme_state_eab(api->acme, kid) == NULL) return 1;
  }
  PKI_ERR(err, PKI_ERR_INTERNAL, "no new EAB key id after 4 tries: the RNG repeats itself");
  return 0;
}

static void on_create_acme_eab(void *ctx, pkid_call *call, const uint8_t *msg, size_t len) {
  pkid_api *api = ctx;
  pki_err err;
  Pki__V1__CreateAcmeEabRequest *req =
      unpack(call, &pki__v1__create_acme_eab_request__descriptor, msg, len, "");
  if (req == NULL) return;
  const pki_catalog_service *caller = caller_service(api, call, &err);
  const pki_catalog_service *svc = NULL;
  eab_call *ec = NULL;
  uint64_t retry_ms = 0;
  if (caller == NULL) goto fail;
  /* An EAB key lets whoever holds it obtain the service's certificates
   * over ACME: making one is an admin's act, as issuing for another
   * service is. */
  if (!(caller->permissions & PKI_PERM_ADMIN)) {
    PKI_ERR(&err, PKI_ERR_DENIED, "%s may not create ACME EAB keys (no admin permission)",
            caller->identity);
    goto fail;
  }
  if (req->service[0] == '\0') {
    PKI_ERR(&err, PKI_ERR_INVALID, "service is required");
    goto fail;
  }
  if ((svc = pki_catalog_find_service(api->cat, req->service)) == NULL) {
    PKI_ERR(&err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", req->service);
    goto fail;
  }
  if (!service_has_usage(svc, PKI_USAGE_SERVER)) {
    PKI_ERR(&err, PKI_ERR_INVALID,
            "service '%s' has no server certificate, and ACME issues only server "
            "certificates",
            svc->name);
    goto fail;
  }
  if (api->acme == NULL) {
    PKI_ERR(&err, PKI_ERR_PRECONDITION, "ACME is not enabled on this pkid (--acme-listen)");
    goto fail;
  }
  if (api->stopped) {
    PKI_ERR(&err, PKI_ERR_UNAVAILABLE, "pkid's journal failed; it is restarting");
    goto fail;
  }
  if ((ec = calloc(1, sizeof(*ec))) == NULL || (ec->service = strdup(svc->name)) == NULL) {
    PKI_ERR_OOM(&err);
    goto fail;
  }
  ec->api = api;
  ec->time = (int64_t)time(NULL);
  if (!new_kid(api, ec->kid, &err)) goto fail;
  snprintf(ec->quota_key, sizeof(ec->quota_key), "%s", pkid_call_peer(call)->identity);
  if (!pkid_quota_take(api->quotas, ec->quota_key, now_ms(), &retry_ms, &err)) goto fail;
  /* The kid only: the key is derived from it and never journaled. */
  pkid_event ev = {.kind = PKI_EVENT_EAB_CREATED,
                   .outcome = PKI_OUTCOME_OK,
                   .identity = pkid_call_peer(call)->identity,
                   .service = ec->service,
                   .first = ec->time,
                   .last = ec->time,
                   .detail = ec->kid};
  pkid_call_track(call, &ec->pending);
  if (!pkid_event_submit(api->workers, &ev, on_eab_journaled, ec, &err)) {
    pkid_call_untrack(&ec->pending);
    pkid_quota_release(api->quotas, ec->quota_key);
    retry_ms = 100;
    goto fail;
  }
  goto out;
fail:
  if (ec != NULL) {
    free(ec->service);
    free(ec);
  }
  pkid_call_fail_retry(call, &err, retry_ms);
out:
  protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Request messages: a CSR is a few hundred bytes (an RSA-4096 one with
 * many names a few KiB); the others hold a serial or a CA's name. */
#define CSR_MESSAGE_MAX (16 * 1024)
#define SMALL_MESSAGE_MAX 1024

static const pkid_method kMethods[] = {
    {"/pki.v1.Pki/Issue", 0, CSR_MESSAGE_MAX, authorize_issue, on_issue, NULL, NULL},
    {"/pki.v1.Pki/IssueStream", 1, CSR_MESSAGE_MAX, authorize_issue, on_issue_stream,
     on_issue_stream_end, NULL},
    {"/pki.v1.Pki/Renew", 0, CSR_MESSAGE_MAX, authorize_identity, on_renew, NULL, NULL},
    {"/pki.v1.Pki/Revoke", 0, SMALL_MESSAGE_MAX, authorize_identity, on_revoke, NULL, NULL},
    {"/pki.v1.Pki/GetStatus", 0, SMALL_MESSAGE_MAX, authorize_identity, on_get_status, NULL,
     NULL},
    {"/pki.v1.Pki/GetTrustBundle", 0, SMALL_MESSAGE_MAX, authorize_any, on_get_trust_bundle,
     NULL, NULL},
    {"/pki.v1.Pki/ReportRotation", 0, SMALL_MESSAGE_MAX, authorize_identity,
     on_report_rotation, NULL, NULL},
    {"/pki.v1.Pki/CreateAcmeEab", 0, SMALL_MESSAGE_MAX, authorize_identity,
     on_create_acme_eab, NULL, NULL},
    /* Server streaming: one request, events as the client reads them. */
    {"/pki.v1.Pki/StreamAudit", 0, SMALL_MESSAGE_MAX, pkid_api_authorize_audit,
     pkid_audit_on_request, NULL, pkid_audit_on_sent},
};

const pkid_method *pkid_api_methods(size_t *out_num) {
  *out_num = sizeof(kMethods) / sizeof(kMethods[0]);
  return kMethods;
}
