/* api.h: the pki.v1.Pki service: who may call what, and the answers.
 *
 * Each method decodes its request (protobuf-c), authorizes it against the
 * caller (the call's peer: rpc.h) and the catalogue, and either answers at
 * once (status, trust bundle, refusals) or fills a job for the pipeline
 * (issuance, revocation) and answers when the job comes back durable.
 *
 * Errors: every refusal is a pki_err whose class says what kind it is
 * (PKI_ERR_AUTH: who you are is not established; PKI_ERR_DENIED: you may
 * not; PKI_ERR_EXHAUSTED or PKI_ERR_UNAVAILABLE: try again later; ...);
 * the rpc layer turns it into the gRPC status (pkid_call_fail), and in a
 * stream each answer carries the status of the same mapping. Loop thread. */
#ifndef PKID_SERVER_API_API_H
#define PKID_SERVER_API_API_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/token.h"
#include "server/api/audit_stream.h"
#include "server/api/quota.h"
#include "server/api/refusals.h"
#include "server/ca/ca.h"
#include "server/pipeline/serials.h"
#include "server/pipeline/workers.h"
#include "server/rpc/rpc.h"
#include "server/store/acme_state.h"
#include "server/store/status.h"
#include "server/store/store.h"

typedef struct pkid_api {
  const pki_catalog *cat; /* replaced by a reload; jobs in flight keep theirs */
  const pkid_cas *cas;
  pkid_serials *serials;
  pkid_workers *workers;
  pkid_store *store;
  pkid_status *status;
  pkid_quotas *quotas; /* each identity's share */
  pkid_refusals *refusals; /* refused requests, for the journal; NULL: none */
  int stopped; /* the journal failed: nothing more is accepted */
  int bootstrap; /* bootstrap tokens accepted (a token key was found) */
  uint8_t token_key[PKI_TOKEN_KEY_LEN];
  pkid_audit *audit; /* StreamAudit's streams (audit_stream.h) */
  pkid_acme_state *acme; /* the store's (pkid_store_acme); NULL: ACME is off */
  /* The key every EAB key is derived from (pkid_acme_eab_key), with
   * |acme| only. Never journaled, logged or sent. */
  uint8_t acme_eab_master[PKID_ACME_EAB_MASTER_LEN];
} pkid_api;

/* pkid_api_methods returns the method table served at /pki.v1.Pki/...;
 * the rpc's ctx for it is the pkid_api. */
const pkid_method *pkid_api_methods(size_t *out_num);

/* pkid_api_on_refused is the rpc's on_refused hook (rpc.h) for the api
 * (|ctx|): it counts the refusal in api->refusals, with the caller's
 * catalogue service where the identity has one. */
void pkid_api_on_refused(void *ctx, const pkid_call *call, int grpc_status,
                         const char *message);

/* pkid_api_authorize_audit: the caller is in the catalogue (as for every
 * method) and granted the audit permission; admin is not enough. At the
 * headers of a StreamAudit, and again at each of its turns. */
int pkid_api_authorize_audit(void *ctx, pkid_call *call, pki_err *err);

#endif /* PKID_SERVER_API_API_H */
