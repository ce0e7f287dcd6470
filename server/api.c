#include "server/api.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/cert_info.h"
#include "lib/serial.h"
#include "lib/token.h"
#include "proto/pki/v1/pki.pb-c.h"
#include "server/conn.h"
#include "server/issue.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/server.h"
#include "server/status.h"
#include "server/store.h"
#include "server/workers.h"

static pkid_api *api_of(pkid_call *call) { return call->conn->server->api; }

/* caller_service finds the catalogue service of the caller's identity, or
 * finishes the call with UNAUTHENTICATED / PERMISSION_DENIED. */
static const pki_catalog_service *caller_service(pkid_call *call) {
  const char *identity = call->conn->identity;
  if (identity[0] == '\0') {
    pkid_call_finish(call, GRPC_UNAUTHENTICATED,
                     "a client certificate with a pkid identity is required");
    return NULL;
  }
  /* A revoked certificate authorizes nothing, even on a connection opened
   * before the revocation. */
  pkid_cert_record rec;
  const pki_serial *serial = &call->conn->peer_serial;
  if (pkid_status_get(api_of(call)->status, serial->bytes, serial->len, &rec) && rec.revoked) {
    pkid_call_finish(call, GRPC_UNAUTHENTICATED, "the client certificate is revoked");
    return NULL;
  }
  const pki_catalog_service *svc = pki_catalog_find_identity(api_of(call)->cat, identity);
  if (svc == NULL) {
    pkid_call_finish(call, GRPC_PERMISSION_DENIED, "identity %s is not in the catalogue",
                     identity);
  }
  return svc;
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

/* reserve_ahead asks for the next block of serial sequence numbers once
 * half of the current one is used, so issuance never waits for it. */
static void reserve_ahead(pkid_api *api) {
  if (api->reserving || api->seq_end - api->next_seq > PKID_SERIAL_BLOCK / 2) return;
  pkid_job *job = calloc(1, sizeof(*job));
  if (job == NULL) return;
  job->kind = PKID_JOB_RESERVE;
  job->block_first = api->seq_end;
  job->block_count = PKID_SERIAL_BLOCK;
  if (!pkid_workers_submit(api->workers, job)) {
    free(job); /* the pool is full; the next issuance tries again */
    return;
  }
  api->reserving = 1;
}

/* job_for fills a job from an authorized request, or returns NULL having
 * set |err|. */
static pkid_job *job_for(pkid_call *call, const pki_catalog_service *svc,
                               pki_usage usage, const ProtobufCBinaryData *csr,
                               uint32_t validity_s, uint64_t request_id, pki_err *err) {
  pkid_api *api = api_of(call);
  const pkid_ca *ca = pkid_cas_find(api->cas, svc->ca);
  if (ca == NULL) {
    PKI_ERR(err, PKI_ERR_INTERNAL, "CA '%s' is not loaded", svc->ca);
    return NULL;
  }
  if (csr->len == 0) {
    PKI_ERR(err, PKI_ERR_INVALID, "csr is empty");
    return NULL;
  }
  if (api->next_seq >= api->seq_end) {
    /* Only if a burst used half a block before the next was durable. */
    PKI_ERR(err, PKI_ERR_INTERNAL, "serial numbers are being reserved; retry");
    return NULL;
  }
  pkid_job *job = calloc(1, sizeof(*job));
  if (job == NULL || (job->csr = malloc(csr->len)) == NULL) {
    free(job);
    PKI_ERR_OOM(err);
    return NULL;
  }
  job->kind = PKID_JOB_ISSUE;
  memcpy(job->csr, csr->data, csr->len);
  job->csr_len = csr->len;
  job->request_id = request_id;
  job->cat = api->cat;
  job->ca = ca;
  job->svc = svc;
  job->usage = usage;
  job->validity_s = validity_s;
  job->now = (int64_t)time(NULL);
  snprintf(job->identity, sizeof(job->identity), "%s", call->conn->identity);
  pki_serial_make(&job->serial, api->node, api->next_seq++, err);
  reserve_ahead(api);
  return job;
}

static void send_issue_response(pkid_call *call, const Pki__V1__IssueResponse *resp,
                                int streaming);
static void reply_revoked(pkid_job *job);
static void reply_status(pkid_call *call, const pkid_job *job, pkid_grpc_status status,
                         const char *message);

/* reply_issued answers |call| with the outcome of |job|: a message for a
 * stream (errors included, with their status), or message + OK / the error
 * status for a unary call. */
static void reply_issued(pkid_call *call, pkid_job *job, int streaming) {
  Pki__V1__IssueResponse resp = PKI__V1__ISSUE_RESPONSE__INIT;
  ProtobufCBinaryData chain[PKID_MAX_CHAIN];
  char serial_hex[2 * PKI_SERIAL_MAX + 1];
  resp.request_id = job->request_id;
  if (job->ok) {
    resp.certificate.data = job->cert;
    resp.certificate.len = job->cert_len;
    for (size_t i = 0; i < job->ca->num_chain; i++) {
      chain[i].data = job->ca->chain[i];
      chain[i].len = job->ca->chain_len[i];
    }
    resp.chain = chain;
    resp.n_chain = job->ca->num_chain;
    pki_serial_to_hex(serial_hex, &job->serial);
    resp.serial = serial_hex;
    resp.not_after = job->not_after;
    /* No log line per issuance: the journal is the audit trail, and the
     * metrics count them. */
  } else {
    pkid_log("info", "refused", "service", job->svc->name, "identity", job->identity,
             "reason", job->err.msg, NULL);
    if (!streaming) {
      pkid_call_fail_err(call, &job->err);
      return;
    }
    resp.status_code = (int32_t)pkid_grpc_status_from_err(job->err.code);
    resp.status_message = job->err.msg;
  }
  send_issue_response(call, &resp, streaming);
}

/* reply_status answers one request of a stream with a status and no
 * certificate. */
static void reply_status(pkid_call *call, const pkid_job *job, pkid_grpc_status status,
                         const char *message) {
  Pki__V1__IssueResponse resp = PKI__V1__ISSUE_RESPONSE__INIT;
  resp.request_id = job->request_id;
  resp.status_code = (int32_t)status;
  resp.status_message = (char *)message;
  send_issue_response(call, &resp, 1);
}

static void send_issue_response(pkid_call *call, const Pki__V1__IssueResponse *resp,
                                int streaming) {
  size_t len = pki__v1__issue_response__get_packed_size(resp);
  uint8_t *buf = malloc(len > 0 ? len : 1);
  if (buf == NULL) {
    pkid_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  pki__v1__issue_response__pack(resp, buf);
  pkid_call_send(call, buf, len);
  free(buf);
  if (!streaming) pkid_call_finish(call, GRPC_OK, "%s", "");
}

/* issue_one authorizes and runs one IssueRequest. */
/* bootstrap_service checks a bootstrap token presented without a client
 * certificate and takes it (marks it used); it returns the service the
 * token is for, or NULL having set |err|. */
static const pki_catalog_service *bootstrap_service(pkid_call *call,
                                                    const Pki__V1__IssueRequest *req,
                                                    pki_token *tok, pki_err *err) {
  pkid_api *api = api_of(call);
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
  if (!pkid_store_token_take(api->store, tok->id)) {
    PKI_ERR(err, PKI_ERR_AUTH, "bootstrap token already used");
    return NULL;
  }
  return svc;
}

static void issue_one(pkid_call *call, const Pki__V1__IssueRequest *req, int streaming) {
  pki_err err;
  pki_err_clear(&err);
  pki_token tok;
  const pki_catalog_service *svc = NULL;
  int bootstrap = call->conn->identity[0] == '\0' && req->bootstrap_token[0] != '\0';
  if (bootstrap) {
    /* First enrollment: no certificate yet, a one-time token instead. */
    svc = bootstrap_service(call, req, &tok, &err);
    if (svc == NULL) goto refuse;
  } else {
    const pki_catalog_service *caller = caller_service(call);
    if (caller == NULL) return;
    svc = caller;
    if (req->service[0] != '\0' && strcmp(req->service, caller->name) != 0) {
      svc = pki_catalog_find_service(api_of(call)->cat, req->service);
      if (svc == NULL) {
        PKI_ERR(&err, PKI_ERR_NOT_FOUND, "no service '%s' in the catalogue", req->service);
        goto refuse;
      }
      /* Only admin identities issue for others. */
      if (!(caller->permissions & PKI_PERM_ADMIN)) {
        PKI_ERR(&err, PKI_ERR_DENIED, "%s may not issue for service '%s'", caller->identity,
                svc->name);
        goto refuse;
      }
    }
  }
  pki_usage usage;
  if (!usage_from_proto(req->usage, &usage)) {
    PKI_ERR(&err, PKI_ERR_INVALID, "usage must be USAGE_SERVER or USAGE_CLIENT");
    goto refuse;
  }
  if (!service_has_usage(svc, usage)) {
    PKI_ERR(&err, PKI_ERR_INVALID, "service '%s' has no %s certificate", svc->name,
            usage == PKI_USAGE_SERVER ? "server" : "client");
    goto refuse;
  }
  pkid_job *job =
      job_for(call, svc, usage, &req->csr, req->validity_seconds, req->request_id, &err);
  if (job == NULL) goto refuse;
  job->streaming = streaming;
  if (bootstrap) {
    job->has_token = 1;
    memcpy(job->token_id, tok.id, sizeof(job->token_id));
    snprintf(job->identity, sizeof(job->identity), "bootstrap:%s", svc->name);
  }
  pkid_call_track(call, &job->pending);
  if (!pkid_workers_submit(api_of(call)->workers, job)) {
    pkid_call_untrack(&job->pending);
    if (bootstrap) pkid_store_token_release(api_of(call)->store, tok.id);
    pkid_job_free(job);
    if (!streaming) {
      pkid_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "pkid is at capacity; retry later");
      return;
    }
    pkid_job full = {.request_id = req->request_id};
    reply_status(call, &full, GRPC_RESOURCE_EXHAUSTED, "pkid is at capacity; retry later");
    return;
  }
  return;
refuse:
  if (bootstrap && svc != NULL) pkid_store_token_release(api_of(call)->store, tok.id);
  pkid_log("info", "refused", "identity", call->conn->identity, "reason", err.msg, NULL);
  if (!streaming) {
    pkid_call_fail_err(call, &err);
    return;
  }
  pkid_job refused = {.request_id = req->request_id};
  reply_status(call, &refused, pkid_grpc_status_from_err(err.code), err.msg);
}

void pkid_api_on_done(void *ctx, pkid_job *job) {
  pkid_api *api = ctx;
  /* Durable now: the index learns of it before anyone hears of it, and
   * the responder has its first OCSP response. */
  pkid_store_apply(api->store, job);
  if (job->ok && job->kind == PKID_JOB_ISSUE) pkid_counter_add(pkid_m.issued, 1);
  if (job->ok && job->kind == PKID_JOB_REVOKE) pkid_counter_add(pkid_m.revoked, 1);
  if (job->ok && job->ocsp != NULL) {
    pkid_status_set_response(api->status, job->serial.bytes, job->serial.len,
                             PKI_OCSP_HASH_SHA1, job->ocsp, job->ocsp_len,
                             job->ocsp_next_update);
    job->ocsp = NULL; /* the index owns it now */
  }
  if (job->kind == PKID_JOB_RESERVE) {
    api->reserving = 0;
    if (job->ok) api->seq_end = job->block_first + job->block_count;
    pkid_job_free(job);
    return;
  }
  if (job->kind == PKID_JOB_REVOKE) {
    reply_revoked(job);
    pkid_job_free(job);
    return;
  }
  /* A token whose issuance failed may be used again. */
  if (job->has_token && !job->ok) pkid_store_token_release(api->store, job->token_id);
  pkid_call *call = job->pending.call;
  if (call != NULL) {
    pkid_call_untrack(&job->pending);
    reply_issued(call, job, job->streaming);
    /* A stream ends once the client has said all and every answer is out. */
    if (job->streaming && call->half_closed && call->num_pending == 0) {
      pkid_call_finish(call, GRPC_OK, "%s", "");
    }
  }
  pkid_job_free(job);
}

static void on_issue(pkid_call *call, const uint8_t *msg, size_t len) {
  Pki__V1__IssueRequest *req = pki__v1__issue_request__unpack(NULL, len, msg);
  if (req == NULL) {
    pkid_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed IssueRequest");
    return;
  }
  issue_one(call, req, 0);
  pki__v1__issue_request__free_unpacked(req, NULL);
}

static void on_issue_stream(pkid_call *call, const uint8_t *msg, size_t len) {
  Pki__V1__IssueRequest *req = pki__v1__issue_request__unpack(NULL, len, msg);
  if (req == NULL) {
    /* A stream cannot say which request was garbage: end it. */
    pkid_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed IssueRequest on the stream");
    return;
  }
  issue_one(call, req, 1);
  pki__v1__issue_request__free_unpacked(req, NULL);
}

static void on_issue_stream_end(pkid_call *call) {
  if (call->num_pending == 0) pkid_call_finish(call, GRPC_OK, "%s", "");
}

/* on_renew issues a new certificate of the same service and usage as the
 * client certificate the call came with: holding it is the authorization. */
static void on_renew(pkid_call *call, const uint8_t *msg, size_t len) {
  Pki__V1__RenewRequest *req = pki__v1__renew_request__unpack(NULL, len, msg);
  if (req == NULL) {
    pkid_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed RenewRequest");
    return;
  }
  const pki_catalog_service *svc = caller_service(call);
  pki_cert_info info;
  pki_err err;
  if (svc == NULL) goto out;
  if (!pki_cert_info_parse(&info, call->conn->peer_leaf, call->conn->peer_leaf_len, &err)) {
    pkid_call_fail_err(call, &err);
    goto out;
  }
  pki_usage usage = (info.ext_key_usage & PKI_USAGE_CLIENT) ? PKI_USAGE_CLIENT
                                                            : PKI_USAGE_SERVER;
  pki_cert_info_cleanup(&info);
  Pki__V1__IssueRequest issue = PKI__V1__ISSUE_REQUEST__INIT;
  issue.csr = req->csr;
  issue.usage = usage == PKI_USAGE_CLIENT ? PKI__V1__USAGE__USAGE_CLIENT
                                          : PKI__V1__USAGE__USAGE_SERVER;
  issue.validity_seconds = req->validity_seconds;
  issue_one(call, &issue, 0);
out:
  pki__v1__renew_request__free_unpacked(req, NULL);
}

static void on_get_trust_bundle(pkid_call *call, const uint8_t *msg, size_t len) {
  Pki__V1__GetTrustBundleRequest *req =
      pki__v1__get_trust_bundle_request__unpack(NULL, len, msg);
  if (req == NULL) {
    pkid_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed GetTrustBundleRequest");
    return;
  }
  const pkid_cas *cas = api_of(call)->cas;
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
    pkid_call_finish(call, GRPC_NOT_FOUND, "no CA '%s'", req->ca);
  } else {
    size_t out_len = pki__v1__trust_bundle__get_packed_size(&bundle);
    uint8_t *out = malloc(out_len > 0 ? out_len : 1);
    if (out == NULL) {
      pkid_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
    } else {
      pki__v1__trust_bundle__pack(&bundle, out);
      pkid_call_send(call, out, out_len);
      free(out);
      pkid_call_finish(call, GRPC_OK, "%s", "");
    }
  }
  pki__v1__get_trust_bundle_request__free_unpacked(req, NULL);
}

/* parse_serial reads a hex serial from a request, or finishes the call. */
static int parse_serial(pkid_call *call, const char *hex, pki_serial *out) {
  pki_err err;
  if (!pki_serial_from_hex(out, hex, &err)) {
    pkid_call_fail_err(call, &err);
    return 0;
  }
  return 1;
}

static void on_revoke(pkid_call *call, const uint8_t *msg, size_t len) {
  Pki__V1__RevokeRequest *req = pki__v1__revoke_request__unpack(NULL, len, msg);
  if (req == NULL) {
    pkid_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed RevokeRequest");
    return;
  }
  pkid_api *api = api_of(call);
  const pki_catalog_service *caller = caller_service(call);
  pki_serial serial;
  pkid_cert_record rec;
  if (caller == NULL || !parse_serial(call, req->serial, &serial)) goto out;
  if (!pkid_status_get(api->status, serial.bytes, serial.len, &rec)) {
    pkid_call_finish(call, GRPC_NOT_FOUND, "pkid issued no certificate %s", req->serial);
    goto out;
  }
  /* A holder revokes its own service's certificates; an admin any. */
  if (!(caller->permissions & PKI_PERM_ADMIN) &&
      (rec.service >= api->cat->num_services || &api->cat->services[rec.service] != caller)) {
    pkid_call_finish(call, GRPC_PERMISSION_DENIED, "%s may not revoke %s", caller->identity,
                     req->serial);
    goto out;
  }
  if ((unsigned)req->reason > 5) {
    pkid_call_finish(call, GRPC_INVALID_ARGUMENT, "unknown revocation reason %d",
                     (int)req->reason);
    goto out;
  }
  if (rec.revoked) {
    /* Revocation is final and idempotent: report the first. */
    Pki__V1__RevokeResponse resp = PKI__V1__REVOKE_RESPONSE__INIT;
    resp.revoked_at = rec.revoked_at;
    uint8_t buf[16];
    pki__v1__revoke_response__pack(&resp, buf);
    pkid_call_send(call, buf, pki__v1__revoke_response__get_packed_size(&resp));
    pkid_call_finish(call, GRPC_OK, "%s", "");
    goto out;
  }
  pkid_job *job = calloc(1, sizeof(*job));
  if (job == NULL) {
    pkid_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  job->kind = PKID_JOB_REVOKE;
  job->ca = rec.ca < api->cas->num_cas ? &api->cas->cas[rec.ca] : NULL;
  if (job->ca == NULL) {
    free(job);
    pkid_call_finish(call, GRPC_FAILED_PRECONDITION, "the CA of %s is not loaded", req->serial);
    goto out;
  }
  job->serial = serial;
  job->reason = (uint8_t)req->reason;
  job->now = (int64_t)time(NULL);
  snprintf(job->identity, sizeof(job->identity), "%s", call->conn->identity);
  pkid_call_track(call, &job->pending);
  if (!pkid_workers_submit(api->workers, job)) {
    pkid_call_untrack(&job->pending);
    pkid_job_free(job);
    pkid_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "pkid is at capacity; retry later");
  }
out:
  pki__v1__revoke_request__free_unpacked(req, NULL);
}

/* reply_revoked answers a revocation once it is durable. */
static void reply_revoked(pkid_job *job) {
  pkid_call *call = job->pending.call;
  char hex[2 * PKI_SERIAL_MAX + 1];
  pki_serial_to_hex(hex, &job->serial);
  if (job->ok) {
    pkid_log("info", "revoked", "serial", hex, "identity", job->identity, NULL);
  }
  if (call == NULL) return;
  pkid_call_untrack(&job->pending);
  if (!job->ok) {
    pkid_call_fail_err(call, &job->err);
    return;
  }
  Pki__V1__RevokeResponse resp = PKI__V1__REVOKE_RESPONSE__INIT;
  resp.revoked_at = job->now;
  uint8_t buf[16];
  pki__v1__revoke_response__pack(&resp, buf);
  pkid_call_send(call, buf, pki__v1__revoke_response__get_packed_size(&resp));
  pkid_call_finish(call, GRPC_OK, "%s", "");
}

static void on_get_status(pkid_call *call, const uint8_t *msg, size_t len) {
  Pki__V1__GetStatusRequest *req = pki__v1__get_status_request__unpack(NULL, len, msg);
  if (req == NULL) {
    pkid_call_finish(call, GRPC_INVALID_ARGUMENT, "malformed GetStatusRequest");
    return;
  }
  pkid_api *api = api_of(call);
  pki_serial serial;
  pkid_cert_record rec;
  if (caller_service(call) == NULL || !parse_serial(call, req->serial, &serial)) goto out;
  if (!pkid_status_get(api->status, serial.bytes, serial.len, &rec)) {
    pkid_call_finish(call, GRPC_NOT_FOUND, "pkid issued no certificate %s", req->serial);
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
  if (rec.ca < api->cas->num_cas) st.issuer = (char *)api->cas->cas[rec.ca].def->name;
  st.not_before = rec.not_before;
  st.not_after = rec.not_after;
  st.revoked_at = rec.revoked_at;
  st.revocation_reason = (Pki__V1__RevocationReason)rec.reason;
  size_t out_len = pki__v1__certificate_status__get_packed_size(&st);
  uint8_t *out = malloc(out_len > 0 ? out_len : 1);
  if (out == NULL) {
    pkid_call_finish(call, GRPC_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  pki__v1__certificate_status__pack(&st, out);
  pkid_call_send(call, out, out_len);
  free(out);
  pkid_call_finish(call, GRPC_OK, "%s", "");
out:
  pki__v1__get_status_request__free_unpacked(req, NULL);
}

static const pkid_method kMethods[] = {
    {"/pki.v1.Pki/Issue", 0, on_issue, NULL},
    {"/pki.v1.Pki/IssueStream", 1, on_issue_stream, on_issue_stream_end},
    {"/pki.v1.Pki/Renew", 0, on_renew, NULL},
    {"/pki.v1.Pki/Revoke", 0, on_revoke, NULL},
    {"/pki.v1.Pki/GetStatus", 0, on_get_status, NULL},
    {"/pki.v1.Pki/GetTrustBundle", 0, on_get_trust_bundle, NULL},
};

const pkid_method *pkid_api_methods(size_t *out_num) {
  *out_num = sizeof(kMethods) / sizeof(kMethods[0]);
  return kMethods;
}
