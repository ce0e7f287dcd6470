/* issue.h: one issuance, from a checked request to a signed certificate.
 *
 * The loop thread decides who may have what (api.c) and fills a job; the
 * work (CSR parse and proof-of-possession check, build, lint, sign) is
 * pkid_issue_run, which touches only the job and read-only shared state,
 * so it can run on a worker thread. */
#ifndef PKID_SERVER_ISSUE_H
#define PKID_SERVER_ISSUE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/catalog.h"
#include "lib/err.h"
#include "lib/serial.h"
#include "lib/usage.h"
#include "server/ca.h"
#include "server/grpc.h"

typedef struct pkid_issue_job {
  pkid_pending pending; /* the call to answer; loop thread only */
  uint64_t request_id;
  int streaming; /* answer as an IssueStream message */
  /* Inputs, fixed before the job leaves the loop. */
  const pki_catalog *cat;
  const pkid_ca *ca;
  const pki_catalog_service *svc;
  pki_usage usage;
  uint32_t validity_s;
  int64_t now;
  pki_serial serial;
  uint8_t *csr; /* owned */
  size_t csr_len;
  char identity[512]; /* who asked */
  /* Outputs. */
  int ok;
  pki_err err;
  uint8_t *cert; /* owned, DER */
  size_t cert_len;
  int64_t not_after;
  uint8_t key_hash[32]; /* SHA-256 of the subject's SPKI */
  struct pkid_issue_job *next; /* for batches */
} pkid_issue_job;

/* pkid_issue_run does the work of |job| and sets ok, err and the outputs. */
void pkid_issue_run(pkid_issue_job *job);

/* pkid_issue_job_free frees a job and what it owns. */
void pkid_issue_job_free(pkid_issue_job *job);

#endif /* PKID_SERVER_ISSUE_H */
